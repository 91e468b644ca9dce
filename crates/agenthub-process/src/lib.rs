//! Runs agent processes: each in its own process group, with a timeout that kills the whole
//! group (SIGTERM, grace, SIGKILL), a stdout cap, a stderr tail, a memory cap over the
//! whole process tree and peak-memory measurement; [`shutdown`] kills every call at once. Backends: [`StdProcessBackend`] and [`TokioProcessBackend`].
//!
//! Linux only: it relies on pidfds, `prctl`, cgroups and `/proc`.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "agenthub-process supports Linux only: it relies on pidfd_open, prctl(PR_SET_PDEATHSIG), cgroups and /proc"
);

mod containment;
#[cfg(target_os = "linux")]
mod linux;
mod manager;
mod memory;
mod registry;
pub mod sandbox;
mod spec;
#[cfg(feature = "std")]
mod std_backend;
mod supervisor;
mod thread;
#[cfg(feature = "tokio")]
mod tokio_backend;
#[cfg(feature = "std")]
mod tool;
#[cfg(feature = "std")]
mod worker;

use std::path::PathBuf;

use async_trait::async_trait;

pub use containment::{Containment, RUN_ID_VAR};
#[cfg(target_os = "linux")]
pub use linux::{pidfd_kill, pidfd_open, sandboxed_program};
pub use manager::{AgentInvocation, DynProcessBackend, ProcessManager};
pub use registry::ProcessRegistry;
pub use spec::{EnvSpec, ExitStatus, ProcessLimits, ProcessOutput, ProcessSpec, Termination};
#[cfg(feature = "std")]
pub use std_backend::StdProcessBackend;
pub use thread::on_thread;
#[cfg(feature = "tokio")]
pub use tokio_backend::TokioProcessBackend;
#[cfg(feature = "std")]
pub use tool::{ToolOutcome, ToolRun};
#[cfg(feature = "std")]
pub use worker::{Received, Worker};

/// Runs one child process to completion under its limits.
///
/// A limit that is hit is not an error: it is reported in [`ProcessOutput::termination`].
/// Errors are failures to run at all.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ProcessBackend: Send + Sync {
    /// Spawns `spec` in its own process group and waits for it under its limits.
    async fn run(&self, spec: &ProcessSpec) -> Result<ProcessOutput, ProcessError>;

    /// Which kind of backend it is: whether a call blocks the calling thread.
    fn kind(&self) -> ProcessBackendKind;
}

/// The kinds of process backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessBackendKind {
    /// `std::process` and `poll(2)` on the calling thread ([`StdProcessBackend`]): a call
    /// blocks its thread until the child is done.
    #[default]
    Std,
    /// tokio's reactor ([`TokioProcessBackend`]); calls must run inside a tokio runtime.
    Tokio,
}

impl ProcessBackendKind {
    /// A short name for logs and messages (`std`, `tokio`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Std => "std",
            Self::Tokio => "tokio",
        }
    }
}

/// Failures to run a child at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started.
    #[error("failed to spawn `{}`", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for or reading from the child failed.
    #[error("failed to supervise the child process")]
    Io(#[source] std::io::Error),
    /// [`shutdown`] has been called: no new call starts.
    #[error("the call was cancelled: the runtime is shutting down")]
    Cancelled,
    /// The sandbox could not be set up as required (strict mode on a kernel without a
    /// layer it needs, or a layer that failed to apply).
    #[error("sandbox: {0}")]
    Sandbox(String),
}

/// Kills the whole tree of every call running in this process (all backends, all
/// [`ProcessManager`]s) and makes every later spawn fail with [`ProcessError::Cancelled`];
/// returns how many calls were killed.
///
/// A running call killed here still returns its [`ProcessOutput`], with
/// [`Termination::Cancelled`]. Meant for an ordinary thread that handles SIGTERM, SIGINT
/// and SIGHUP (signal-hook's iterator), not for a signal handler: it takes a lock and
/// reads `/proc`.
pub fn shutdown() -> usize {
    containment::shutdown()
}

/// Whether [`shutdown`] has been called.
pub fn is_shut_down() -> bool {
    containment::is_shut_down()
}

impl From<ProcessError> for agenthub_core::AgentRuntimeError {
    fn from(err: ProcessError) -> Self {
        if let ProcessError::Sandbox(reason) = &err {
            return Self::NotRun {
                message: format!("The sandbox could not be set up for this call: {reason}"),
                suggestion:
                    "Run `agenthub doctor` to see which sandbox layers this machine has; `--sandbox default` \
                             runs calls with the layers there are"
                        .to_owned(),
            };
        }
        let message = match std::error::Error::source(&err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        };
        Self::Execution { message, return_code: None, signal: None, stderr: None }
    }
}
