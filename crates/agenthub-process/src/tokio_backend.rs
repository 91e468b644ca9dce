//! [`TokioProcessBackend`]: the same supervision as the std backend, driven by tokio's
//! reactor (`AsyncFd` on the pipes and the pidfd), so thousands of agents can run on a
//! few threads. Dropping the future kills and reaps the child.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

use crate::supervisor::{FALLBACK_TICK, Spawned, Stream, Supervisor};
use crate::{ProcessBackend, ProcessError, ProcessOutput, ProcessSpec};

/// Runs children on a tokio runtime (needs tokio's `net` and `time` drivers); called
/// outside one, it drives the call on a current-thread runtime of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioProcessBackend;

struct AsyncPipes {
    stdout: Option<AsyncFd<File>>,
    stderr: Option<AsyncFd<File>>,
}

/// Registers an owned fd with the reactor for readability.
fn register<T: AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` is an owned `File` or `OwnedFd`: its fd stays open and the same for as
    // long as the `AsyncFd` owns it.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(io::Error::from)
}

async fn readable(pipe: Option<&AsyncFd<File>>) -> Option<AsyncFdReadyGuard<'_, File>> {
    match pipe {
        Some(fd) => fd.readable().await.ok(),
        None => std::future::pending().await,
    }
}

impl AsyncPipes {
    /// Waits for one pipe event, the pidfd, or `wake`; returns whether the pidfd fired.
    async fn wait_once(
        &mut self,
        sup: &mut Supervisor,
        pidfd: Option<&AsyncFd<OwnedFd>>,
        wait: Option<Duration>,
    ) -> bool {
        let sleep = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        let exited = async {
            match pidfd {
                Some(fd) => {
                    let _ = fd.readable().await;
                }
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            guard = readable(self.stdout.as_ref()) => Some((Stream::Stdout, read_ready(sup, Stream::Stdout, guard))),
            guard = readable(self.stderr.as_ref()) => Some((Stream::Stderr, read_ready(sup, Stream::Stderr, guard))),
            () = exited => return true,
            () = sleep => None,
        };
        match event {
            Some((Stream::Stdout, false)) => self.stdout = None,
            Some((Stream::Stderr, false)) => self.stderr = None,
            _ => {}
        }
        false
    }
}

/// Reads a ready pipe; returns whether it is still open.
fn read_ready(sup: &mut Supervisor, stream: Stream, guard: Option<AsyncFdReadyGuard<'_, File>>) -> bool {
    let Some(mut guard) = guard else { return false };
    let open = sup.read_from(guard.get_inner(), stream);
    // read_from returns only at WouldBlock (still open) or at the end (closed).
    guard.clear_ready();
    open
}

impl TokioProcessBackend {
    async fn run_async(&self, spec: &ProcessSpec) -> Result<ProcessOutput, ProcessError> {
        let mut child = Spawned::spawn(spec)?;
        let mut sup = Supervisor::new(&child, spec.limits);
        let wrap = |f: Option<File>| f.map(register).transpose();
        let mut pipes = AsyncPipes {
            stdout: wrap(child.stdout.take()).map_err(ProcessError::Io)?,
            stderr: wrap(child.stderr.take()).map_err(ProcessError::Io)?,
        };
        let pidfd = child.pidfd.take().map(register).transpose().map_err(ProcessError::Io)?;
        let reaped = loop {
            let mut wait = sup.tick();
            if pidfd.is_none() {
                wait = Some(wait.map_or(FALLBACK_TICK, |w| w.min(FALLBACK_TICK)));
            }
            let exited = pipes.wait_once(&mut sup, pidfd.as_ref(), wait).await;
            if (exited || pidfd.is_none())
                && let Some(reaped) = child.reap(exited)?
            {
                break reaped;
            }
        };
        sup.mark_reaped();
        let deadline = Supervisor::drain_deadline();
        while pipes.stdout.is_some() || pipes.stderr.is_some() {
            let now = crate::linux::clock_now();
            if now >= deadline {
                break;
            }
            pipes.wait_once(&mut sup, None, Some(deadline.saturating_sub(now))).await;
        }
        Ok(sup.finish(reaped))
    }
}

#[async_trait]
impl ProcessBackend for TokioProcessBackend {
    /// Outside a tokio runtime (a blocking wrapper such as `pollster::block_on`), builds a
    /// current-thread runtime for the call and blocks on it, as the std backend does.
    async fn run(&self, spec: &ProcessSpec) -> Result<ProcessOutput, ProcessError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return self.run_async(spec).await;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ProcessError::Io)?;
        runtime.block_on(self.run_async(spec))
    }

    fn kind(&self) -> crate::ProcessBackendKind {
        crate::ProcessBackendKind::Tokio
    }
}
