//! [`CallCancel`]: stopping one call from another thread (an MCP client's
//! `notifications/cancelled`, a user closing a request).
//!
//! Invariants:
//! - a call cancelled before it reaches a process never starts one;
//! - a warm call cancelled while its worker serves it kills that worker: SIGKILL through a
//!   pidfd opened while the worker's owner held it unreaped, so the signal can never reach a
//!   process that reused the pid. The pool never reuses the worker, and the rest of its tree
//!   is killed when the call reaps it, as for any worker that died;
//! - a one-shot call cancelled while its process runs has that process killed: the process
//!   carries a marker variable ([`CALL_VAR`]) unique to the call, and a thread looks for it
//!   among the runtime's registered processes (a pidfd opened first, the marker checked
//!   through `/proc/<pid>/environ` after, so again no stranger is hit) until it is found or
//!   the call ends; the supervisor then kills the rest of its tree as for any agent that
//!   died;
//! - the call's response is then a cancelled `ExecutionError`.
//!
//! A call on the Ray target (`runtime.target: ray`) is not stopped on the cluster: one
//! cancelled before it is sent is not sent, and the answer of one cancelled meanwhile is
//! replaced by the cancellation.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agenthub_process::{ProcessRegistry, pidfd_kill, pidfd_open, sandboxed_program};

/// The variable that marks the process of one cancellable one-shot call (listed in
/// `agenthub_core::NON_CONFIG_VARS`, so an agent that runs agenthub itself is not refused).
pub const CALL_VAR: &str = "AGENTHUB_CALL_ID";

/// How often a cancelled one-shot call's process is looked for until it is found.
const HUNT_TICK: Duration = Duration::from_millis(10);

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
    /// Whether `cancel` signalled the call's process.
    killed: bool,
    /// The one-shot process serving the call, while it may run: where it is registered and
    /// its `CALL_VAR=<id>` entry.
    one_shot: Option<(Arc<ProcessRegistry>, String)>,
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
        let first = !state.cancelled;
        state.cancelled = true;
        if let Some(fd) = state.worker.as_ref() {
            state.killed |= pidfd_kill(fd);
        }
        if first && state.one_shot.is_some() {
            let this = self.clone();
            let hunt =
                std::thread::Builder::new().name("agenthub-cancel".to_owned()).spawn(move || this.hunt());
            if let Err(e) = hunt {
                tracing::warn!(error = %e, "could not start a thread to stop a cancelled call");
            }
        }
    }

    /// Kills the cancelled one-shot call's process once it shows up (it may be starting
    /// still); ends when it is killed or the call is over.
    fn hunt(&self) {
        loop {
            {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let Some((registry, entry)) = state.one_shot.as_ref() else { return };
                if let Some(fd) = find_marked(registry, entry)
                    && pidfd_kill(&fd)
                {
                    state.killed = true;
                    return;
                }
            }
            std::thread::sleep(HUNT_TICK);
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

    /// A one-shot process for the call is about to start; returns the `(name, value)` it must
    /// carry, or `None` when the call is already cancelled (then it must not start).
    pub(crate) fn attach_one_shot(&self, registry: Arc<ProcessRegistry>) -> Option<(&'static str, String)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.cancelled {
            return None;
        }
        let id = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        state.one_shot = Some((registry, format!("{CALL_VAR}={id}")));
        Some((CALL_VAR, id))
    }

    /// The one-shot process has been reaped; whether a cancellation killed it.
    pub(crate) fn detach_one_shot(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.one_shot = None;
        state.killed
    }
}

/// A pidfd of the registered process whose environment holds `entry` (`NAME=value`), or,
/// for a sandbox's waiter (a fork of this process, with its environment), whose program's
/// does: the waiter is what is killed, and its sandbox dies with it. The pidfd is opened
/// before the environment is read, so a pid reused in between cannot match.
fn find_marked(registry: &ProcessRegistry, entry: &str) -> Option<OwnedFd> {
    let carries = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|environ| environ.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
    };
    registry.running().into_iter().find_map(|pid| {
        let fd = pidfd_open(pid)?;
        (carries(pid) || sandboxed_program(pid).is_some_and(carries)).then_some(fd)
    })
}
