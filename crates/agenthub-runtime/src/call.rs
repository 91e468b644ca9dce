//! The facade's vocabulary: [`Call`] (one call, for blocking and async execution alike),
//! [`RuntimeBuilder`] (how an [`AgentRuntime`] is put together), and the handles on what a
//! runtime keeps running ([`Workers`], [`RayHandle`]).

use std::sync::Arc;
use std::time::Duration;

use agenthub_core::{AgentRuntimeError, Config, EnvBackendKind, Grants, Params};
use agenthub_env::DynEnvironmentBackend;
use agenthub_process::DynProcessBackend;
use serde_json::Value as Json;

use crate::tools::CallTools;
use crate::{AgentRuntime, CallCancel, LoadedAgent, ProcessBackendKind, Progress, RayStatus};

/// What a [`Call`] runs: an agent named by id or path (loaded, and auto-installed where that
/// is on, when the call runs), or one already loaded.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Named(String),
    Loaded(Arc<LoadedAgent>),
}

/// One call of an agent's method: the agent, the method and its parameters, and optionally
/// a cancellation handle and a timeout of its own. Run it with [`AgentRuntime::call`] (async)
/// or [`AgentRuntime::call_blocking`].
///
/// ```no_run
/// use agenthub_runtime::{AgentRuntime, Call, Config};
/// use std::time::Duration;
///
/// let runtime = AgentRuntime::builder(Config::load()?).build()?;
/// let call = Call::new("./examples/agents/hello", "greet").param("name", "World").timeout(Duration::from_secs(5));
/// let response = runtime.call_blocking(call);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Call {
    pub(crate) target: Target,
    pub(crate) method: String,
    pub(crate) params: Params,
    pub(crate) cancel: Option<CallCancel>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) grants: Grants,
    pub(crate) tools: Option<Arc<dyn CallTools>>,
    pub(crate) nested: bool,
    pub(crate) caller: Option<agenthub_core::Caller>,
    pub(crate) trace_parent: Option<tracing::Span>,
}

impl Call {
    /// A call of `method` on `agent`: an id `namespace/name` or a path (`./`, `../`, `/`, `~`).
    pub fn new(agent: impl Into<String>, method: impl Into<String>) -> Self {
        Self::of(Target::Named(agent.into()), method.into())
    }

    /// A call of `method` on an agent already loaded (see [`AgentRuntime::load_agent`]).
    pub fn loaded(agent: &LoadedAgent, method: impl Into<String>) -> Self {
        Self::of(Target::Loaded(Arc::new(agent.clone())), method.into())
    }

    /// A call of `method` on an agent already loaded and shared: no copy of its manifest
    /// is made, so calls in a loop cost nothing for it (see [`Self::loaded`]).
    pub fn shared(agent: &Arc<LoadedAgent>, method: impl Into<String>) -> Self {
        Self::of(Target::Loaded(Arc::clone(agent)), method.into())
    }

    fn of(target: Target, method: String) -> Self {
        Self {
            target,
            method,
            params: Params::new(),
            cancel: None,
            timeout: None,
            grants: Grants::default(),
            tools: None,
            nested: false,
            caller: None,
            trace_parent: None,
        }
    }

    /// All parameters at once (replacing any set before).
    pub fn params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }

    /// One parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<Json>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// A handle that stops the call from another thread (see [`CallCancel`]).
    pub fn cancel(mut self, cancel: &CallCancel) -> Self {
        self.cancel = Some(cancel.clone());
        self
    }

    /// A time limit for this call instead of `runtime.max_execution_time`. Like the
    /// configured one, it bounds everything the call waits for once it has an environment:
    /// a warm worker's slot and start, and the agent's answer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// What the user grants this call beyond the agent's declaration (`--allow-net`,
    /// `--allow-read`, `--allow-write`, `--allow-env`), on top of what config.yaml grants
    /// the agent (`grants`). Relative paths are inside the agent directory: make a user's
    /// relative paths absolute first. See [`agenthub_core::SandboxPolicy::resolve`].
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    /// The tools this call's agent gets (SPEC §9): its request carries their `tool_context`,
    /// its process reaches them over MCP (see [`crate::tools`]), and its response lists the
    /// `tool_calls` it made. `agenthub-tools` makes them.
    pub fn tools(mut self, tools: Arc<dyn CallTools>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Marks a call made on behalf of a call that is running (a tool call): it does not wait
    /// for one of the runtime's `max_concurrency` slots, since its caller holds one and
    /// waits for it (callers that each wait for a tool call would otherwise hold every slot
    /// and wait forever).
    pub fn nested(mut self) -> Self {
        self.nested = true;
        self
    }

    /// Who makes this call, as run history records it, instead of the runtime's caller
    /// (see [`AgentRuntime::with_caller`]).
    pub fn caller(mut self, caller: agenthub_core::Caller) -> Self {
        self.caller = Some(caller);
        self
    }

    /// The span this call's `invoke_agent` span is a child of, instead of the current one
    /// (a tool call made on another thread, an MCP request's span).
    pub fn trace_parent(mut self, span: tracing::Span) -> Self {
        self.trace_parent = Some(span);
        self
    }

    /// What the user grants this call (see [`Self::grants`]).
    pub fn granted(&self) -> &Grants {
        &self.grants
    }

    /// The method called.
    pub fn method(&self) -> &str {
        &self.method
    }
}

/// Builds an [`AgentRuntime`]: the configuration, then any backend or progress reporter that
/// differs from the defaults (the environment backend the configuration picks, SPEC §3; the
/// std process backend, tokio when std is compiled out; no progress output).
///
/// ```no_run
/// use agenthub_runtime::{AgentRuntime, Config, EnvBackendKind};
///
/// let runtime = AgentRuntime::builder(Config::load()?).environment_backend(EnvBackendKind::Uv).build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct RuntimeBuilder {
    config: Config,
    environment: Option<DynEnvironmentBackend>,
    environment_kind: Option<EnvBackendKind>,
    process: Option<DynProcessBackend>,
    process_kind: ProcessBackendKind,
    progress: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("home", &self.config.home)
            .field("environment_kind", &self.environment_kind)
            .field("process_kind", &self.process_kind)
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    pub(crate) fn new(config: Config) -> Self {
        let process_kind =
            if cfg!(feature = "std") { ProcessBackendKind::Std } else { ProcessBackendKind::Tokio };
        Self {
            config,
            environment: None,
            environment_kind: None,
            process: None,
            process_kind,
            progress: None,
        }
    }

    /// One of the built-in environment backends, instead of the configuration's choice.
    pub fn environment_backend(mut self, kind: EnvBackendKind) -> Self {
        self.environment_kind = Some(kind);
        self
    }

    /// An environment backend of your own (or a test double).
    pub fn environment(mut self, backend: DynEnvironmentBackend) -> Self {
        self.environment = Some(backend);
        self
    }

    /// One of the built-in process backends.
    pub fn process_backend(mut self, kind: ProcessBackendKind) -> Self {
        self.process_kind = kind;
        self
    }

    /// A process backend of your own (or a test double).
    pub fn process(mut self, backend: DynProcessBackend) -> Self {
        self.process = Some(backend);
        self
    }

    /// Where installs (also auto-installs) report their steps.
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The runtime; fails when a chosen backend is not compiled in or its tool is missing.
    pub fn build(self) -> Result<AgentRuntime, AgentRuntimeError> {
        let environment = match self.environment {
            Some(backend) => backend,
            None => crate::environment_backend(&self.config, self.environment_kind)?,
        };
        let process = match self.process {
            Some(backend) => backend,
            None => crate::process_backend(self.process_kind)?,
        };
        let runtime = AgentRuntime::new(self.config, environment, process);
        Ok(match self.progress {
            Some(progress) => runtime.with_progress(progress),
            None => runtime,
        })
    }
}

/// The warm workers of one runtime (`runtime.mode: warm`), from [`AgentRuntime::workers`].
#[derive(Debug, Clone, Copy)]
pub struct Workers<'a> {
    pub(crate) runtime: &'a AgentRuntime,
}

impl Workers<'_> {
    /// How many are alive (idle or serving a call).
    pub fn count(&self) -> usize {
        self.runtime.pools.worker_count()
    }

    /// Pids of the idle ones.
    pub fn idle_pids(&self) -> Vec<u32> {
        self.runtime.pools.idle_pids()
    }

    /// Isolated mode (`runtime.mode: isolated`): how the agent in `agent_dir` (its
    /// [`LoadedAgent`](crate::LoadedAgent) location) is served, as its last zygote announced
    /// when it started; `None` before one started (or in another mode).
    pub fn isolation(&self, agent_dir: &std::path::Path) -> Option<crate::Isolation> {
        self.runtime.pools.isolation(agent_dir)
    }

    /// Shuts down the idle workers of `agent` (of every agent with `None`); the next call
    /// starts fresh ones. Needed after changes the runtime does not watch (see
    /// docs/design/workers.md). Returns how many were shut down.
    pub fn restart(&self, agent: Option<&str>) -> Result<usize, AgentRuntimeError> {
        self.runtime.restart_workers(agent)
    }

    /// Starts `workers_per_agent` workers for `agent` ahead of its calls and waits for them
    /// (see [`AgentRuntime::prestart_workers`]).
    pub fn prestart_blocking(&self, agent: &str) -> Result<usize, AgentRuntimeError> {
        self.runtime.prestart_workers_blocking(agent)
    }

    /// Starts them on a thread of its own and returns at once (see
    /// [`AgentRuntime::prestart_workers_in_background`]).
    pub fn prestart_in_background(&self, agent: &str) {
        self.runtime.prestart_workers_in_background(agent);
    }
}

/// The Ray target of one runtime (`runtime.target: ray`), from [`AgentRuntime::ray`].
#[derive(Debug, Clone, Copy)]
pub struct RayHandle<'a> {
    pub(crate) runtime: &'a AgentRuntime,
}

impl RayHandle<'_> {
    /// Connects (if needed) and reports the cluster and this runtime's actor pools.
    pub fn status(&self) -> Result<RayStatus, AgentRuntimeError> {
        self.runtime.ray_status()
    }
}
