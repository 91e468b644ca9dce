//! [`ProcessManager`]: the Phase-1 interface over a [`ProcessBackend`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use crate::registry::ProcessRegistry;
use crate::{EnvSpec, ProcessBackend, ProcessError, ProcessLimits, ProcessOutput, ProcessSpec, linux};

/// Shared handle to a process backend.
pub type DynProcessBackend = Arc<dyn ProcessBackend>;

/// One agent call: `<python> <script> '<request json>'` in the agent directory.
#[derive(Debug, Clone)]
pub struct AgentInvocation {
    /// The environment's Python.
    pub python: PathBuf,
    /// The agent directory (the working directory).
    pub agent_dir: PathBuf,
    /// The script, relative to the agent directory.
    pub script: OsString,
    /// The request JSON, passed as the one argument.
    pub request_json: String,
    /// The environment to run it with.
    pub env: EnvSpec,
    /// Its limits.
    pub limits: ProcessLimits,
    /// How it and its descendants are contained.
    pub containment: crate::Containment,
    /// See [`ProcessSpec::die_with_parent`].
    pub die_with_parent: bool,
    /// See [`ProcessSpec::sandbox`].
    pub sandbox: Option<crate::sandbox::Sandbox>,
}

/// Runs agent processes through a backend and keeps track of them.
pub struct ProcessManager {
    backend: DynProcessBackend,
    registry: Arc<ProcessRegistry>,
}

impl std::fmt::Debug for ProcessManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessManager")
            .field("backend", &self.backend.kind())
            .field("running", &self.registry.running())
            .finish()
    }
}

impl ProcessManager {
    /// A manager over `backend`.
    pub fn new(backend: DynProcessBackend) -> Self {
        Self { backend, registry: Arc::new(ProcessRegistry::new()) }
    }

    /// A manager that records running agents in `run_dir` (see
    /// [`ProcessRegistry::with_run_dir`]), so a later runtime can clean up after this one.
    pub fn with_run_dir(backend: DynProcessBackend, run_dir: PathBuf) -> Self {
        Self { backend, registry: Arc::new(ProcessRegistry::with_run_dir(run_dir)) }
    }

    /// The registry that records this manager's processes (for long-lived workers, which
    /// are spawned outside a backend).
    pub fn registry(&self) -> Arc<ProcessRegistry> {
        Arc::clone(&self.registry)
    }

    /// The backend's kind.
    pub fn backend_kind(&self) -> crate::ProcessBackendKind {
        self.backend.kind()
    }

    /// Runs one agent call to completion.
    pub async fn execute_agent(&self, call: AgentInvocation) -> Result<ProcessOutput, ProcessError> {
        let spec = ProcessSpec {
            program: call.python,
            args: vec![call.script, call.request_json.into()],
            cwd: call.agent_dir,
            env: call.env,
            limits: call.limits,
            registry: Some(Arc::clone(&self.registry)),
            containment: call.containment,
            die_with_parent: call.die_with_parent,
            sandbox: call.sandbox,
        };
        self.backend.run(&spec).await
    }

    /// Kills all agents this manager is running, and what crashed runtimes left behind
    /// (stale run records and cgroups); returns how many processes groups were killed.
    pub fn cleanup_processes(&self) -> usize {
        self.registry.kill_all() + self.clear_stale()
    }

    /// Clears what runtimes that died left behind: stale run records (after checking that
    /// each names the process it was written for) and per-call cgroups; returns how many
    /// were cleared. Calls in flight, of this runtime or another live one, are untouched.
    pub fn clear_stale(&self) -> usize {
        self.registry.clear_stale_records() + crate::containment::sweep_stale_cgroups()
    }

    /// Whether a process with this pid is alive (not a zombie).
    pub fn is_process_running(&self, pid: u32) -> bool {
        linux::pid_alive(pid)
    }

    /// Pids of the agents running now.
    pub fn running_processes(&self) -> Vec<u32> {
        self.registry.running()
    }
}
