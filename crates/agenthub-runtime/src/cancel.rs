//! [`CallCancel`]: stopping one call from another thread (an MCP client's
//! `notifications/cancelled`, a user closing a request).
//!
//! Invariants:
//! - a call cancelled before it reaches a process never starts one;
//! - a warm call cancelled while its worker serves it kills that worker: SIGKILL through a
//!   pidfd opened while the worker's owner held it unreaped, so the signal can never reach a
//!   process that reused the pid. The pool never reuses the worker, and the rest of its tree
//!   is killed when the call reaps it, as for any worker that died;
//! - the call's response is then a cancelled `ExecutionError`.
//!
//! A one-shot call (an agent that cannot be served warm) is not stopped once its process
//! runs: it ends as it would have, at the latest at its timeout.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

/// A handle that cancels one call made with [`crate::AgentRuntime::execute_cancellable`].
/// Clones share the state; cancelling is idempotent.
#[derive(Debug, Clone, Default)]
pub struct CallCancel {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    cancelled: bool,
    /// A pidfd of the warm worker serving the call, while it does.
    worker: Option<OwnedFd>,
    /// Whether `cancel` signalled that worker.
    killed: bool,
}

impl CallCancel {
    /// A handle for a call not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the call: one not started yet never starts; a warm worker serving it is
    /// killed.
    pub fn cancel(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.cancelled = true;
        if let Some(fd) = state.worker.as_ref() {
            state.killed |= pidfd_kill(fd);
        }
    }

    /// Whether [`Self::cancel`] has been called.
    pub fn is_cancelled(&self) -> bool {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).cancelled
    }

    /// The worker `pid` (not reaped: its owner holds it) starts serving the call. `false`
    /// when the call is already cancelled: then the request must not be sent.
    pub(crate) fn attach(&self, pid: u32) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.cancelled {
            return false;
        }
        state.worker = pidfd_open(pid);
        true
    }

    /// The worker is done with the call (before its owner may reap it); whether it was
    /// killed by a cancellation meanwhile.
    pub(crate) fn detach(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.worker = None;
        state.killed
    }
}

/// A pidfd for `pid`, `None` when the kernel has none (Linux < 5.3) or the process is gone.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SIGKILL to the process behind `fd`; whether it was sent.
fn pidfd_kill(fd: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    sent == 0
}
