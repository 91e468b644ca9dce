//! [`StdProcessBackend`]: runs a child with `std::process` and one `poll(2)` loop, no async
//! runtime needed. Its future completes without ever returning `Pending`, so any executor
//! (or `pollster::block_on`) drives it; it blocks the calling thread while the child runs.

use std::os::fd::AsRawFd;

use async_trait::async_trait;

use crate::linux;
use crate::supervisor::{FALLBACK_TICK, Spawned, Stream, Supervisor};
use crate::{ProcessBackend, ProcessError, ProcessOutput, ProcessSpec};

/// Runs children on the calling thread with `std::process` and `poll(2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdProcessBackend;

impl StdProcessBackend {
    /// Runs `spec` to completion on this thread.
    pub fn run_blocking(&self, spec: &ProcessSpec) -> Result<ProcessOutput, ProcessError> {
        let mut child = Spawned::spawn(spec)?;
        let mut sup = Supervisor::new(&child, spec.limits);
        let reaped = loop {
            let mut timeout = Supervisor::poll_timeout(sup.tick());
            if child.pidfd.is_none() {
                let tick = FALLBACK_TICK.as_millis() as i32;
                timeout = if timeout < 0 { tick } else { timeout.min(tick) };
            }
            let exited = wait_once(&mut child, &mut sup, timeout)?;
            if (exited || child.pidfd.is_none())
                && let Some(reaped) = child.reap(exited)?
            {
                break reaped;
            }
        };
        sup.mark_reaped();
        drain(&mut child, &mut sup)?;
        Ok(sup.finish(reaped))
    }
}

/// One `poll(2)` over the open pipes and the pidfd; returns whether the pidfd fired.
fn wait_once(child: &mut Spawned, sup: &mut Supervisor, timeout_ms: i32) -> Result<bool, ProcessError> {
    let mut fds = Vec::with_capacity(3);
    let slots = [child.stdout.as_ref(), child.stderr.as_ref()].map(|p| p.map(AsRawFd::as_raw_fd));
    fds.extend(slots.iter().flatten());
    if let Some(pidfd) = &child.pidfd {
        fds.push(pidfd.as_raw_fd());
    }
    if fds.is_empty() {
        // Both pipes closed and no pidfd: only the fallback tick is left to wait on.
        std::thread::sleep(FALLBACK_TICK);
        return Ok(false);
    }
    let ready = linux::poll_readable(&fds, timeout_ms).map_err(ProcessError::Io)?;
    let mut i = 0;
    for (slot, stream) in slots.iter().zip([Stream::Stdout, Stream::Stderr]) {
        if slot.is_some() {
            if ready[i] {
                read_pipe(child, sup, stream);
            }
            i += 1;
        }
    }
    Ok(child.pidfd.is_some() && ready[i])
}

fn read_pipe(child: &mut Spawned, sup: &mut Supervisor, stream: Stream) {
    let pipe = match stream {
        Stream::Stdout => &mut child.stdout,
        Stream::Stderr => &mut child.stderr,
    };
    if let Some(file) = pipe
        && !sup.read_from(file, stream)
    {
        *pipe = None;
    }
}

/// Reads what is left in the pipes after exit, for a bounded time.
fn drain(child: &mut Spawned, sup: &mut Supervisor) -> Result<(), ProcessError> {
    child.pidfd = None;
    let deadline = Supervisor::drain_deadline();
    while child.stdout.is_some() || child.stderr.is_some() {
        let now = linux::clock_now();
        if now >= deadline {
            break;
        }
        wait_once(child, sup, Supervisor::poll_timeout(Some(deadline.saturating_sub(now))))?;
    }
    Ok(())
}

#[async_trait]
impl ProcessBackend for StdProcessBackend {
    async fn run(&self, spec: &ProcessSpec) -> Result<ProcessOutput, ProcessError> {
        self.run_blocking(spec)
    }

    fn kind(&self) -> crate::ProcessBackendKind {
        crate::ProcessBackendKind::Std
    }
}
