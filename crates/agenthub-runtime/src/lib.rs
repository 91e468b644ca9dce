//! [`AgentRuntime`] composes an environment backend and a process backend into one call:
//! manifest → validation → environment → process → one [`ExecutionResponse`].
//!
//! ```no_run
//! use agenthub_runtime::{AgentRuntime, Call, Config};
//!
//! let runtime = AgentRuntime::builder(Config::load()?).build()?;
//! let response = runtime.call_blocking(Call::new("./examples/agents/hello", "greet").param("name", "World"));
//! println!("{}", serde_json::to_string(&response)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The facade: [`AgentRuntime::builder`] → [`RuntimeBuilder::build`]; one [`Call`] value for
//! [`AgentRuntime::call`] (async) and [`AgentRuntime::call_blocking`]; handles on what the
//! runtime keeps: [`AgentRuntime::workers`], [`AgentRuntime::ray`],
//! [`AgentRuntime::installer`]; [`AgentRuntime::shutdown`] stops this runtime only. The
//! Phase-1 names (`execute_agent`, `load_agent_manifest`, `validate_method`,
//! `get_agent_info`, `cleanup_processes`) are kept in one block that delegates.

use tracing::Instrument as _;

mod call;
mod cancel;
mod history;
mod oneshot;
mod outcome;
mod ray;
mod sandbox;
pub mod tools;
pub use sandbox::sandbox_summary;
mod warm;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use agenthub_catalog::{
    AgentInfo, AgentSummary, Example, LoadedAgent, PermissionsReport, WarmDispatch, agent_info, example_call,
    list_agents, load_agent, warm_dispatch,
};
pub use agenthub_catalog::{
    DoctorProblem, DoctorReport, EnvReport, HomeReport, InterpreterReport, SandboxReport, Severity,
    ToolReport, ToolsReport, doctor,
};
pub use agenthub_catalog::{
    GcError, GcReport, collect_unused_environments, environment_status, remove_environment,
};
pub use agenthub_catalog::{
    MAX_WALK_DEPTH, MAX_WALK_ENTRIES, Problem, Validation, validate_agent, validate_installed,
};
pub use agenthub_core::{
    AgentId, AgentManifest, AgentRuntimeError, Config, EnvBackendKind, EnvironmentConfig, ExecutionRequest,
    ExecutionResponse, MethodSpec, Params, RuntimeConfig,
};
use agenthub_core::{ExecutionMode, validate_parameters};
pub use agenthub_env::{BuildProgress, EnvBuild, EnvState, EnvStatus, Freed, UvOrigin};
pub use agenthub_env::{DynEnvironmentBackend, EnvMarker, EnvironmentManager, ReadyEnvironment};
pub use agenthub_env::{EnvError, EnvironmentBackend, set_stream_tool_output};
pub use agenthub_install::{
    InstallError, InstallOptions, Installed, Installer, MAX_COPY_BYTES, MAX_COPY_DEPTH, MAX_COPY_ENTRIES,
    NoProgress, Progress, Removed, STAGING_MARKER, leftover_staging,
};
pub use agenthub_install::{Scaffold, ScaffoldError, TEMPLATE_METHODS, init_agent};
pub use agenthub_process::{DynProcessBackend, ProcessManager};
use agenthub_process::{EnvSpec, ProcessLimits};
pub use agenthub_process::{ProcessBackend, ProcessBackendKind};
/// Re-exported so that custom backends can be written without naming the crate.
pub use async_trait::async_trait;
pub use call::{Call, RayHandle, RuntimeBuilder, Workers};
pub use cancel::{CALL_VAR, CallCancel};
pub use ray::{RayPool, RayStatus};

/// Where uv is looked for besides `PATH` and installed when needed: `<home>/tools/uv`,
/// per `install.provision_uv`, within the build limits.
pub fn uv_provision(config: &Config) -> agenthub_env::UvProvision {
    agenthub_env::UvProvision::from_config(config)
}

/// Runs agents: resolves them, validates calls, prepares environments and runs processes.
///
/// `Send + Sync`: share one behind an `Arc` and call it from many tasks.
pub struct AgentRuntime {
    config: Config,
    environments: EnvironmentManager,
    processes: ProcessManager,
    slots: async_lock::Semaphore,
    /// When stale processes of dead runtimes were last swept (`cleanup_interval`).
    last_sweep: Mutex<Instant>,
    /// Warm mode: agents whose `agent.py` and environment were checked, with the stamps of
    /// the files that decided it; while none changed, calls skip re-reading them.
    checked: Mutex<std::collections::HashMap<std::path::PathBuf, warm::Checked>>,
    /// Warm mode: the sandbox last resolved for an agent, with the stamps of its files and
    /// the call's grants then; while neither changed, calls reuse it (resolving reads the
    /// install record and `pyvenv.cfg` and walks paths: tens of microseconds a warm call
    /// should not pay).
    sandboxes: Mutex<std::collections::HashMap<(std::path::PathBuf, bool), CachedSandbox>>,
    /// Warm workers (`runtime.mode: warm`).
    pools: Arc<warm::Pools>,
    /// Where installs (also auto-installs) report their steps.
    progress: Arc<dyn Progress>,
    /// The Ray target (`runtime.target: ray`), connected on first use.
    ray: Arc<ray::RayTarget>,
    /// Set by [`AgentRuntime::shutdown`]: this runtime runs no more calls.
    shut_down: std::sync::atomic::AtomicBool,
    /// Who makes this runtime's calls, unless a call says otherwise (run history).
    caller: agenthub_core::Caller,
    /// Run history (`history.enabled`): one record per call, written off the call's path.
    #[cfg(feature = "history")]
    recorder: Option<Arc<agenthub_history::Recorder>>,
}

/// How `runtime.mode: isolated` serves an agent, decided when its zygote (a warm worker)
/// has imported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Each call runs in a fresh fork of the zygote, which exits after the call.
    Forked,
    /// The import left threads running, so forking is unsafe: calls are served warm.
    Warm {
        /// What the zygote saw (e.g. "the import left 1 Python threads running").
        reason: String,
    },
}

/// The largest request a one-shot call can pass: Linux limits one command-line argument
/// to 32 pages (`MAX_ARG_STRLEN`, 128 KiB) including its terminating NUL.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024 - 1;

impl std::fmt::Debug for AgentRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRuntime")
            .field("home", &self.config.home)
            .field("environments", &self.environments)
            .field("processes", &self.processes)
            .finish_non_exhaustive()
    }
}

impl AgentRuntime {
    /// A runtime over the given backends.
    pub fn new(config: Config, environment: DynEnvironmentBackend, process: DynProcessBackend) -> Self {
        let rt = &config.runtime;
        let processes = ProcessManager::with_run_dir(process, config.home.join("run"));
        let environments = EnvironmentManager::new(environment, config.environment.clone())
            .with_build_limits(
                rt.build_timeout.as_duration(),
                Duration::try_from_secs_f64(rt.subprocess_timeout.as_secs_f64())
                    .unwrap_or(agenthub_env::DEFAULT_PROBE_TIMEOUT),
                rt.kill_agents_with_runtime,
            )
            .with_uv_provision(uv_provision(&config))
            .with_process_registry(processes.registry())
            // Installers and build backends run in the build sandbox unless the user turned
            // the sandbox off: their own PID namespace, so nothing of a build outlives
            // agenthub, also when it is killed with SIGKILL (docs/design/sandbox.md).
            .with_sandboxed_builds(rt.sandbox_mode != agenthub_core::SandboxMode::Off);
        let slots = async_lock::Semaphore::new(rt.concurrency_limit());
        let ray = Arc::new(ray::RayTarget::new(processes.registry(), environments.clone()));
        let pools = warm::Pools::new(
            warm::PoolSettings {
                workers_per_agent: rt.workers_per_agent.max(1),
                max_calls: rt.max_calls_per_worker,
                idle_timeout: rt.worker_idle_timeout.as_duration(),
                init_timeout: rt.worker_init_timeout.as_duration(),
                recycle_bytes: rt.worker_recycle_bytes(),
                dispatch: rt.worker_dispatch,
                isolated: rt.mode == ExecutionMode::Isolated,
            },
            processes.registry(),
        );
        Self {
            environments,
            processes,
            slots,
            last_sweep: Mutex::new(Instant::now()),
            checked: Mutex::new(std::collections::HashMap::new()),
            sandboxes: Mutex::new(std::collections::HashMap::new()),
            pools,
            progress: Arc::new(NoProgress),
            ray,
            shut_down: std::sync::atomic::AtomicBool::new(false),
            caller: agenthub_core::Caller::Library,
            #[cfg(feature = "history")]
            recorder: agenthub_history::Recorder::new(&config.home, &config.history).map(Arc::new),
            config,
        }
    }

    /// Names who makes this runtime's calls in run history (the CLI, the MCP server, the
    /// Python package); a [`Call`] may say otherwise.
    #[must_use]
    pub fn with_caller(mut self, caller: agenthub_core::Caller) -> Self {
        self.caller = caller;
        self
    }

    /// Waits until the run history has written the records of the calls answered so far,
    /// at most `timeout`; true when it has (or there is no history).
    pub fn flush_history(&self, timeout: Duration) -> bool {
        #[cfg(feature = "history")]
        if let Some(recorder) = &self.recorder {
            return recorder.flush(timeout);
        }
        let _ = timeout;
        true
    }

    /// How a runtime is put together: `AgentRuntime::builder(config)…build()`.
    pub fn builder(config: Config) -> RuntimeBuilder {
        RuntimeBuilder::new(config)
    }

    /// Runs one [`Call`]: always one response (never an error, never a panic).
    pub async fn call(&self, call: Call) -> ExecutionResponse {
        let started = Instant::now();
        let Call { target, method, params, cancel, timeout, grants, tools, nested, caller, trace_parent } =
            call;
        let loaded;
        let agent = match target {
            call::Target::Loaded(agent) => {
                loaded = agent;
                &*loaded
            }
            call::Target::Named(name) => match self.load_or_install(&name).await {
                Ok(agent) => {
                    loaded = Arc::new(agent);
                    &*loaded
                }
                Err(err) => {
                    let response = ExecutionResponse::failed(err, started.elapsed());
                    self.record_unloaded(&name, &method, caller.as_ref(), &response);
                    return response;
                }
            },
        };
        let options = CallOptions {
            cancel: cancel.as_ref(),
            timeout,
            grants: &grants,
            tools: tools.as_ref(),
            nested,
            caller: caller.as_ref(),
            parent: trace_parent.as_ref(),
        };
        self.execute_loaded_since(agent, &method, params, started, options).await
    }

    /// [`Self::call`] on the calling thread, for the std process backend (the tokio backend
    /// needs a tokio runtime: use the async method there).
    pub fn call_blocking(&self, call: Call) -> ExecutionResponse {
        pollster::block_on(self.call(call))
    }

    /// The warm workers this runtime keeps.
    pub fn workers(&self) -> Workers<'_> {
        Workers { runtime: self }
    }

    /// The Ray target of this runtime.
    pub fn ray(&self) -> RayHandle<'_> {
        RayHandle { runtime: self }
    }

    /// Stops this runtime, and only this one: the calls it is running are killed (a
    /// cancelled `ExecutionError`), its warm workers are shut down, and every later call
    /// is refused with the same error. Other runtimes in the process are not touched (the
    /// CLI's signal handler stops everything through `agenthub_process::shutdown`).
    /// Returns how many processes were killed.
    pub fn shutdown(&self) -> usize {
        self.shut_down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.pools.close();
        let killed = self.processes.registry().kill_all();
        killed + self.pools.restart(None)
    }

    /// Whether [`Self::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Reports install steps (of `install`, `update` and auto-install on first use) and
    /// the environment builds of this runtime's calls to `progress` instead of nowhere.
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.environments = self.environments.clone().with_progress(progress.clone());
        self.progress = progress;
        self
    }

    /// An installer for this runtime's home, building environments like this runtime.
    pub fn installer(&self) -> Installer {
        Installer::new(self.config.clone(), self.environments.clone(), Arc::clone(&self.progress))
    }

    /// The agent an id names, when auto-install is on (`install.auto_install`, off by
    /// default for the library) and nothing is at its directory: never for paths.
    fn auto_install_candidate(&self, agent: &str) -> Option<AgentId> {
        if !self.config.install.auto_install_or(false) {
            return None;
        }
        let agenthub_core::AgentRef::Id(id) = agenthub_core::AgentRef::parse(agent).ok()? else {
            return None;
        };
        let dir = self.config.agents_root().join(id.namespace()).join(id.name());
        matches!(std::fs::symlink_metadata(&dir), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
            .then_some(id)
    }

    /// Loads an agent, installing it from the registry first when it is an id that is not
    /// installed and auto-install is on (`install.auto_install`); the install runs on a
    /// thread of its own. `execute_agent` calls this.
    ///
    /// An id that also names something relative to the working directory
    /// (`agents/summarizer` where `./agents/summarizer` exists) is never installed: whoever
    /// typed it most likely meant that directory, and installing would run a stranger's
    /// code instead. It is `AgentNotFoundError`, saying to write `./agents/summarizer`.
    pub async fn load_or_install(&self, agent: &str) -> Result<LoadedAgent, AgentRuntimeError> {
        match self.load_agent(agent) {
            Err(AgentRuntimeError::AgentNotFound { .. })
                if let Some(id) = self.auto_install_candidate(agent) =>
            {
                if std::fs::symlink_metadata(agent).is_ok() {
                    return Err(AgentRuntimeError::AgentNotFound {
                        agent: agent.to_owned(),
                        reason: format!(
                            "it is not installed, and it was not installed from the registry because ./{agent} exists here: to run that directory, write ./{agent}"
                        ),
                    });
                }
                let installer = self.installer();
                let url = agenthub_core::registry_url(&self.config.registry, &id);
                self.progress.notice(&format!(
                    "{id} is not installed: installing it from {url} (first use; turn this off with install.auto_install: false)"
                ));
                let installed = on_thread("agenthub-install", move || installer.install_missing(&id)).await?;
                match installed.unwrap_or(Err(InstallError::Cancelled)) {
                    Ok(installed) => {
                        if installed.permissions.asks_for_access() {
                            self.progress.notice(&format!(
                                "{0} asks for access beyond its own directory: {1} (`agenthub info {0}` shows it)",
                                installed.agent,
                                installed.permissions.describe().join(", ")
                            ));
                        }
                        self.load_agent(agent)
                    }
                    // Nothing to fetch there: the agent is still not found, now with why.
                    Err(
                        e @ (InstallError::Git { .. }
                        | InstallError::GitTimeout { .. }
                        | InstallError::GitMissing
                        | InstallError::RefNotFound { .. }
                        | InstallError::Source(_)),
                    ) => Err(AgentRuntimeError::AgentNotFound {
                        agent: agent.to_owned(),
                        reason: format!(
                            "it is not installed, and installing it from {url} failed: {e}{}",
                            e.stderr()
                                .map(|s| {
                                    let fatal = s.lines().find(|l| l.starts_with("fatal:"));
                                    format!(" ({})", fatal.or_else(|| s.lines().last()).unwrap_or_default())
                                })
                                .unwrap_or_default()
                        ),
                    }),
                    Err(e) => Err(e.into()),
                }
            }
            other => other,
        }
    }

    /// A runtime with the default backends: the environment backend the configuration
    /// picks (SPEC §3) and the std process backend (tokio when std is compiled out).
    pub fn from_config(config: Config) -> Result<Self, AgentRuntimeError> {
        Self::builder(config).build()
    }

    /// A runtime with the named backends (`None`: the configuration's choice).
    pub fn with_backends(
        config: Config,
        environment: Option<EnvBackendKind>,
        process: ProcessBackendKind,
    ) -> Result<Self, AgentRuntimeError> {
        let builder = Self::builder(config).process_backend(process);
        match environment {
            Some(kind) => builder.environment_backend(kind),
            None => builder,
        }
        .build()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The environment manager.
    pub fn environments(&self) -> &EnvironmentManager {
        &self.environments
    }

    /// The process manager.
    pub fn processes(&self) -> &ProcessManager {
        &self.processes
    }

    /// Resolves an id or path and parses its manifest.
    pub fn load_agent(&self, agent: &str) -> Result<LoadedAgent, AgentRuntimeError> {
        load_agent(&self.config, agent)
    }

    /// The installed agents, sorted by id; broken manifests are listed with their error.
    pub fn list_agents(&self) -> Vec<AgentSummary> {
        list_agents(&self.config)
    }

    /// Makes sure the agent's environment matches its requirements (building it if
    /// needed) and returns it.
    pub async fn ensure_environment(&self, agent: &str) -> Result<ReadyEnvironment, AgentRuntimeError> {
        let loaded = self.load_agent(agent)?;
        self.environments
            .ensure_environment(&loaded.location.dir, &loaded.manifest)
            .await
            .map_err(|e| e.into_runtime_error(Some(agent)))
    }

    /// Builds the agent's environment from scratch and swaps it in; the current one stays
    /// in use if the build fails.
    pub async fn rebuild_environment(&self, agent: &str) -> Result<ReadyEnvironment, AgentRuntimeError> {
        let loaded = self.load_agent(agent)?;
        self.environments
            .rebuild_environment(&loaded.location.dir, &loaded.manifest)
            .await
            .map_err(|e| e.into_runtime_error(Some(agent)))
    }

    /// Runs `method` of an already loaded agent.
    pub async fn execute(&self, agent: &LoadedAgent, method: &str, params: Params) -> ExecutionResponse {
        self.execute_loaded_since(agent, method, params, Instant::now(), CallOptions::default()).await
    }

    /// [`Self::execute`] that `cancel` can stop from another thread: a call cancelled before
    /// it runs never starts a process; a warm worker serving it is killed (never reused; the
    /// next call starts a fresh one); a one-shot process running it is killed. A cancelled
    /// call's response is an `ExecutionError` saying so. See [`CallCancel`].
    pub async fn execute_cancellable(
        &self,
        agent: &LoadedAgent,
        method: &str,
        params: Params,
        cancel: &CallCancel,
    ) -> ExecutionResponse {
        let options = CallOptions { cancel: Some(cancel), ..CallOptions::default() };
        self.execute_loaded_since(agent, method, params, Instant::now(), options).await
    }

    /// [`Self::execute_cancellable`] on the calling thread, for the std process backend.
    pub fn execute_cancellable_blocking(
        &self,
        agent: &LoadedAgent,
        method: &str,
        params: Params,
        cancel: &CallCancel,
    ) -> ExecutionResponse {
        pollster::block_on(self.execute_cancellable(agent, method, params, cancel))
    }

    /// [`Self::execute_agent`] on the calling thread, for the std process backend (the
    /// tokio backend needs a tokio runtime: use the async method there).
    pub fn execute_agent_blocking(&self, agent: &str, method: &str, params: Params) -> ExecutionResponse {
        pollster::block_on(self.execute_agent(agent, method, params))
    }

    /// [`Self::execute`] on the calling thread, for the std process backend.
    pub fn execute_blocking(&self, agent: &LoadedAgent, method: &str, params: Params) -> ExecutionResponse {
        pollster::block_on(self.execute(agent, method, params))
    }

    /// Shuts down the warm workers of `agent` (or of every agent with `None`) that are
    /// idle; the next call starts fresh ones. Needed after changes the runtime does not
    /// watch (see docs/design/workers.md). Returns how many were shut down.
    pub fn restart_workers(&self, agent: Option<&str>) -> Result<usize, AgentRuntimeError> {
        let dir = agent.map(|a| self.load_agent(a).map(|l| l.location.dir)).transpose()?;
        Ok(self.pools.restart(dir.as_deref()))
    }

    /// Starts `workers_per_agent` warm workers for `agent` ahead of its calls (building its
    /// environment first if needed); returns how many were started, 0 when they already run
    /// or the agent is served one-shot. Each start may take `worker_init_timeout`; calls made
    /// meanwhile (from other threads) wait for these workers at most their own timeout.
    pub async fn prestart_workers(&self, agent: &str) -> Result<usize, AgentRuntimeError> {
        let call = prestart_call(&self.config, &self.environments, agent).await?;
        if self.processes.backend_kind() == ProcessBackendKind::Std {
            return self.pools.prestart(&call);
        }
        let pools = Arc::clone(&self.pools);
        on_thread("agenthub-prestart", move || pools.prestart(&call)).await?.unwrap_or(Ok(0))
    }

    /// [`Self::prestart_workers`] on the calling thread.
    pub fn prestart_workers_blocking(&self, agent: &str) -> Result<usize, AgentRuntimeError> {
        pollster::block_on(self.prestart_workers(agent))
    }

    /// [`Self::prestart_workers`] on a thread of its own: returns at once. Calls that find
    /// the workers still starting wait for them, each at most its own timeout (a hanging
    /// import costs a call its timeout, not `worker_init_timeout`); dropping the runtime
    /// kills workers still starting. Failures are left for the calls to report.
    pub fn prestart_workers_in_background(&self, agent: &str) {
        let (config, environments) = (self.config.clone(), self.environments.clone());
        let pools = Arc::downgrade(&self.pools);
        let agent = agent.to_owned();
        let spawned = std::thread::Builder::new().name("agenthub-prestart".to_owned()).spawn(move || {
            let prestarted = pollster::block_on(prestart_call(&config, &environments, &agent))
                // The runtime may be gone by the time the environment is ready.
                .map(|call| pools.upgrade().map_or(Ok(0), |pools| pools.prestart(&call)));
            match prestarted.and_then(|started| started) {
                Ok(started) => tracing::debug!(agent, started, "warm workers started ahead of calls"),
                Err(e) => tracing::debug!(agent, error = %e, "could not start warm workers ahead of calls"),
            }
        });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "could not start a thread to start warm workers");
        }
    }

    /// In warm mode, the environment found ready for `dir` by an earlier call when none of
    /// the files that decided it has changed since (a few `stat`s instead of reading and
    /// hashing them).
    fn checked_before(&self, dir: &Path, warm: bool, stamps: &warm::Stamps) -> Option<ReadyEnvironment> {
        if !warm || warm::is_racy(stamps) {
            return None;
        }
        let checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        checked.get(dir).filter(|(was, _)| was == stamps).map(|(_, env)| env.clone())
    }

    /// Remembers `env` as checked for `dir` with the stamps taken *before* the check: a file
    /// changed during the check shows as a difference at the next call.
    fn remember_checked(&self, dir: &Path, env: &ReadyEnvironment, stamps: &warm::Stamps) {
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if warm::is_racy(stamps) || env.built {
            checked.remove(dir);
        } else {
            checked.insert(dir.to_path_buf(), (*stamps, env.clone()));
        }
    }

    /// The sandbox of a call of `agent` (see [`call_sandbox`]), reused in warm mode while the
    /// agent's files and the grants are those it was resolved for.
    fn sandbox_for(
        &self,
        agent: &LoadedAgent,
        env: &ReadyEnvironment,
        grants: &agenthub_core::Grants,
        tools: bool,
        warm: bool,
        stamps: &warm::Stamps,
    ) -> Result<Arc<sandbox::CallSandbox>, AgentRuntimeError> {
        let dir = &agent.location.dir;
        let cacheable = warm && !warm::is_racy(stamps) && !env.built;
        if cacheable {
            let cache = self.sandboxes.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, _, boxed)) =
                cache.get(&(dir.clone(), tools)).filter(|(s, g, _)| s == stamps && g == grants)
            {
                return Ok(Arc::clone(boxed));
            }
        }
        let boxed = Arc::new(call_sandbox(&self.config, agent, env, grants, tools)?);
        if cacheable {
            let mut cache = self.sandboxes.lock().unwrap_or_else(PoisonError::into_inner);
            cache.insert((dir.clone(), tools), (*stamps, grants.clone(), Arc::clone(&boxed)));
        }
        Ok(boxed)
    }

    /// How many warm workers are alive (idle or serving a call).
    pub fn worker_count(&self) -> usize {
        self.pools.worker_count()
    }

    /// Pids of the idle warm workers.
    pub fn idle_worker_pids(&self) -> Vec<u32> {
        self.pools.idle_pids()
    }

    /// Clears what runtimes that died left behind, at most once per `cleanup_interval`
    /// (0 turns it off): a long-lived runtime does it on the next call after the interval.
    fn sweep_if_due(&self) {
        let interval = Duration::try_from_secs_f64(self.config.runtime.cleanup_interval.as_secs_f64())
            .unwrap_or(Duration::MAX);
        if interval.is_zero() {
            return;
        }
        let mut last = self.last_sweep.lock().unwrap_or_else(PoisonError::into_inner);
        if last.elapsed() >= interval {
            *last = Instant::now();
            drop(last);
            let cleared = self.processes.clear_stale();
            if cleared > 0 {
                tracing::info!(cleared, "cleared processes left by runtimes that died");
            }
        }
    }

    /// A warm call: on this thread with the std backend (whose calls block their thread
    /// anyway), else on a thread of its own so that an async executor is never blocked.
    async fn run_warm(&self, call: warm::WarmCall) -> warm::WarmOutcome {
        if self.processes.backend_kind() == ProcessBackendKind::Std {
            return self.pools.call(&call);
        }
        let pools = Arc::clone(&self.pools);
        let answer = agenthub_process::on_thread("agenthub-warm-call", move || {
            let outcome = pools.call(&call);
            // The pools go before the answer: whoever drops the runtime after it is answered
            // drops the last handle, and with it every worker.
            drop(pools);
            outcome
        })
        .await;
        let failed = |message: String| {
            warm::WarmOutcome::Failed(AgentRuntimeError::Execution {
                message,
                return_code: None,
                signal: None,
                stderr: None,
            })
        };
        match answer {
            Ok(Some(outcome)) => outcome,
            Ok(None) => failed("The warm call's thread ended without an answer".to_owned()),
            Err(e) => failed(format!("Could not start a thread for the call: {e}")),
        }
    }

    /// Connects to the Ray cluster (`ray.address`, else `RAY_ADDRESS`, else a local one)
    /// through agenthub's driver, if not connected yet, and reports what it found.
    pub fn ray_status(&self) -> Result<RayStatus, AgentRuntimeError> {
        self.ray.status(&self.config)
    }

    /// Runs a call on the Ray cluster on a thread of its own (the driver answers calls out
    /// of order; the thread waits for this one's answer).
    async fn run_ray(
        &self,
        call: ray::RayCall,
    ) -> Result<agenthub_process::ProcessOutput, AgentRuntimeError> {
        let (target, config) = (Arc::clone(&self.ray), self.config.clone());
        on_thread("agenthub-ray-call", move || target.call(&config, &call)).await?.unwrap_or_else(|| {
            Err(AgentRuntimeError::Execution {
                message: "The Ray call's thread ended without an answer".to_owned(),
                return_code: None,
                signal: None,
                stderr: None,
            })
        })
    }

    async fn execute_loaded_since(
        &self,
        agent: &LoadedAgent,
        method: &str,
        params: Params,
        started: Instant,
        options: CallOptions<'_>,
    ) -> ExecutionResponse {
        let CallOptions { timeout, tools, caller, parent, .. } = options;
        let mut trace = history::CallTrace::new();
        // As configured; the call path says when it took another (a warm call run one-shot).
        trace.mode = match (self.config.runtime.target, self.config.runtime.mode) {
            (agenthub_core::ExecutionTarget::Ray, _) => "ray",
            (_, ExecutionMode::Warm) => "warm",
            (_, ExecutionMode::Isolated) => "isolated",
            (_, ExecutionMode::Oneshot) => "oneshot",
        };
        let span = call_span(agent, method, &trace.id, parent);
        trace.span = span.clone();
        if let Some(tools) = tools {
            tools.started(&trace.id, &span);
        }
        let payload = self.payloads_recorded().then(|| params_text(&params));
        #[cfg(feature = "history")]
        if let Some(recorder) = &self.recorder {
            recorder.prepare();
        }
        if self.is_shut_down() {
            let response = ExecutionResponse::failed(
                AgentRuntimeError::Execution {
                    message: "The call was cancelled: this runtime was shut down".to_owned(),
                    return_code: None,
                    signal: None,
                    stderr: None,
                },
                started.elapsed(),
            );
            self.record(trace, agent, method, caller, &response, payload);
            return response;
        }
        // A call's own timeout stands in for the configured one, in its limits and in what
        // its response says about them.
        let with_timeout;
        let rt = match timeout {
            Some(t) => {
                with_timeout = RuntimeConfig {
                    max_execution_time: agenthub_core::Seconds::new(t.as_secs_f64()),
                    ..self.config.runtime.clone()
                };
                &with_timeout
            }
            None => &self.config.runtime,
        };
        let mut response =
            match self.run(agent, method, params, rt, options, &mut trace).instrument(span.clone()).await {
                Ok(response) => response,
                Err(err) => ExecutionResponse::failed(err, started.elapsed()),
            };
        // The call is over: its tool calls still in flight end with it.
        if let Some(tools) = tools {
            response.tool_calls = tools.finish();
        }
        response.execution_time = started.elapsed();
        if !span.is_disabled() {
            span.record("agenthub.mode", trace.mode);
            if let Some(error) = response.error() {
                span.record("error.type", error.error_type());
                // The message may carry what the agent wrote: bounded.
                span.record("otel.status_description", bounded(&error.to_string(), 1024));
            }
        }
        self.record(trace, agent, method, caller, &response, payload);
        response
    }

    /// Whether run history records parameters and results.
    #[cfg_attr(not(feature = "history"), allow(clippy::unused_self))]
    fn payloads_recorded(&self) -> bool {
        #[cfg(feature = "history")]
        return self.recorder.as_ref().is_some_and(|r| r.records_payloads());
        #[cfg(not(feature = "history"))]
        false
    }

    /// Hands the record of a call to run history.
    #[allow(clippy::needless_pass_by_value, reason = "the trace is consumed into the record")]
    #[cfg_attr(not(feature = "history"), allow(clippy::unused_self))]
    fn record(
        &self,
        trace: history::CallTrace,
        agent: &LoadedAgent,
        method: &str,
        caller: Option<&agenthub_core::Caller>,
        response: &ExecutionResponse,
        params: Option<String>,
    ) {
        #[cfg(feature = "history")]
        if let Some(recorder) = &self.recorder {
            let installed_as = agent.location.id.as_ref().map(ToString::to_string);
            let named = history::Named {
                agent: installed_as.clone().unwrap_or_else(|| agent.location.dir.display().to_string()),
                installed_as,
                dir: &agent.location.dir,
                version: Some(agent.manifest.version.clone()).filter(|v| !v.is_empty()),
                method,
            };
            history::record(recorder, trace, named, caller.unwrap_or(&self.caller), response, params);
        }
        #[cfg(not(feature = "history"))]
        let _ = (trace, agent, method, caller, response, params);
    }

    /// Hands the record of a call whose agent could not be loaded to run history.
    #[cfg_attr(not(feature = "history"), allow(clippy::unused_self))]
    fn record_unloaded(
        &self,
        name: &str,
        method: &str,
        caller: Option<&agenthub_core::Caller>,
        response: &ExecutionResponse,
    ) {
        #[cfg(feature = "history")]
        if let Some(recorder) = &self.recorder {
            let named = history::Named {
                agent: name.to_owned(),
                installed_as: None,
                dir: std::path::Path::new(""),
                version: None,
                method,
            };
            let mut trace = history::CallTrace::new();
            let now = std::time::SystemTime::now();
            trace.started_at = now.checked_sub(response.execution_time).unwrap_or(now);
            history::record(recorder, trace, named, caller.unwrap_or(&self.caller), response, None);
        }
        #[cfg(not(feature = "history"))]
        let _ = (name, method, caller, response);
    }

    async fn run(
        &self,
        agent: &LoadedAgent,
        method: &str,
        params: Params,
        rt: &RuntimeConfig,
        options: CallOptions<'_>,
        trace: &mut history::CallTrace,
    ) -> Result<ExecutionResponse, AgentRuntimeError> {
        let CallOptions { cancel, grants, tools, nested, .. } = options;
        let span = &trace.span.clone();
        let manifest = &agent.manifest;
        let spec = manifest.method(method).ok_or_else(|| AgentRuntimeError::MethodNotFound {
            method: method.to_owned(),
            available: manifest.method_names(),
        })?;
        let parameters = validate_parameters(method, spec, params)?;
        let dir = &agent.location.dir;
        let request = tools::with_context(
            ExecutionRequest { method: method.to_owned(), parameters, tool_context: None },
            tools,
        );
        // Isolated mode is warm workers whose calls each run in a fork (warm/bootstrap.py).
        let warm = matches!(self.config.runtime.mode, ExecutionMode::Warm | ExecutionMode::Isolated);
        if !warm {
            check_request_size(&request, false)?;
        }
        if self.config.runtime.target == agenthub_core::ExecutionTarget::Ray {
            trace.mode = "ray";
            if tools.is_some() {
                return Err(AgentRuntimeError::NotRun {
                    message: "Tools for agents are not available on the Ray target".to_owned(),
                    suggestion: "Run the call locally (`--target local`), or without tools".to_owned(),
                });
            }
            check_agent_script(dir)?;
            let (requirements, key) = ray::requirements(dir, manifest, &self.config)?;
            let call = ray::RayCall {
                agent_dir: dir.clone(),
                key,
                requirements,
                method: method.to_owned(),
                request,
                timeout: Some(rt.max_execution_time.as_duration()),
                methods: manifest.method_names(),
            };
            if cancel.is_some_and(CallCancel::is_cancelled) {
                return Err(cancelled());
            }
            let output = self.run_ray(call).await?;
            trace.output(&output, false);
            // A call on the cluster is not stopped by a cancellation; its answer is dropped.
            if cancel.is_some_and(CallCancel::is_cancelled) {
                return Err(cancelled());
            }
            return Ok(outcome::response_from(&output, rt));
        }
        // Calls beyond `max_concurrency` wait here, after validation and before any work.
        let waiting = Instant::now();
        let _slot = if nested { None } else { Some(self.slots.acquire().await) };
        if !nested {
            trace.slot = Some(waiting.elapsed());
        }
        if cancel.is_some_and(CallCancel::is_cancelled) {
            return Err(cancelled());
        }
        self.sweep_if_due();
        let stamps = if warm { warm::stamps(dir, &self.config.environment.venv_location) } else { [None; 6] };
        let checking = Instant::now();
        let env = if let Some(env) = self.checked_before(dir, warm, &stamps) {
            env
        } else {
            check_agent_script(dir)?;
            let env_span = tracing::info_span!(
                target: "agenthub::call",
                parent: span,
                "environment",
                otel.name = "environment",
                agenthub.environment.built = tracing::field::Empty,
            );
            let env = self
                .environments
                .ensure_environment(dir, manifest)
                .instrument(env_span.clone())
                .await
                .map_err(|e| e.into_runtime_error(Some(&agent.location.name)))?;
            env_span.record("agenthub.environment.built", env.built);
            if warm {
                self.remember_checked(dir, &env, &stamps);
            }
            trace.environment = Some(checking.elapsed());
            trace.environment_built = env.built;
            env
        };
        let activation = EnvironmentManager::activate_environment(&env.venv);
        let trace_context = trace_headers(span);
        let limits = call_limits(rt);
        let boxed = self.sandbox_for(agent, &env, grants, tools.is_some(), warm, &stamps)?;
        if warm {
            trace.mode =
                if self.config.runtime.mode == ExecutionMode::Isolated { "isolated" } else { "warm" };
            let call = warm::WarmCall {
                agent_dir: dir.clone(),
                python: env.python.clone(),
                env: sandboxed_env(agent_env(rt, activation.clone()), &boxed),
                limits,
                die_with_parent: rt.kill_agents_with_runtime,
                sandbox: boxed.sandbox.clone(),
                version: worker_version(&env, &boxed, tools.is_some(), &stamps),
                methods: manifest.method_names(),
                method: method.to_owned(),
                request: request.clone(),
                cancel: cancel.cloned(),
                tools: tools.cloned(),
                // From here on the call's timeout bounds everything it waits for: a worker
                // slot, a worker's start, its answer.
                deadline: limits.timeout.and_then(|t| Instant::now().checked_add(t)),
                span: span.clone(),
                trace: trace_context.clone(),
            };
            match self.run_warm(call).await {
                _ if cancel.is_some_and(CallCancel::is_cancelled) => return Err(cancelled()),
                warm::WarmOutcome::Ran(output, startup) => {
                    trace.startup = startup;
                    trace.output(&output, false);
                    let mut response = outcome::response_from(&output, rt);
                    sandbox::explain_denial(&mut response, &boxed);
                    return Ok(response);
                }
                warm::WarmOutcome::Failed(err) => return Err(err),
                warm::WarmOutcome::Cancelled => return Err(cancelled()),
                warm::WarmOutcome::OneShot => {
                    trace.mode = "oneshot";
                    check_request_size(&request, true)?;
                }
            }
        }
        oneshot::run(
            &self.processes,
            oneshot::OneShot {
                python: env.python,
                dir,
                request,
                activation,
                limits,
                sandbox: &boxed,
                tools,
                trace: trace_context,
            },
            rt,
            cancel,
            trace,
        )
        .await
    }
}

/// The span of one call (OpenTelemetry's `GenAI` `invoke_agent`), a child of `parent` or
/// else of the current span. Exported only when the binary installed an exporter; otherwise
/// disabled at its call site (no field is even formatted).
fn call_span(
    agent: &LoadedAgent,
    method: &str,
    run: &agenthub_core::RunId,
    parent: Option<&tracing::Span>,
) -> tracing::Span {
    let parent = parent.map_or_else(|| tracing::Span::current().id(), tracing::Span::id);
    tracing::info_span!(
        target: "agenthub::call",
        parent: parent,
        "invoke_agent",
        otel.name = %format_args!("invoke_agent {}", bounded(&agent.manifest.name, 256)),
        otel.kind = "internal",
        gen_ai.operation.name = "invoke_agent",
        gen_ai.provider.name = "agenthub",
        gen_ai.agent.name = bounded(&agent.manifest.name, 256),
        gen_ai.agent.id = %agent.location.id.as_ref().map_or_else(|| agent.location.dir.display().to_string(), ToString::to_string),
        gen_ai.agent.version = bounded(&agent.manifest.version, 256),
        agenthub.method = bounded(method, 256),
        agenthub.run.id = %run,
        agenthub.mode = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    )
}

/// `text` cut to at most `max` bytes on a character boundary.
fn bounded(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The call's trace context for its agent process (`TRACEPARENT`, `TRACESTATE`), when it
/// is traced.
fn trace_headers(span: &tracing::Span) -> Option<(String, Option<String>)> {
    #[cfg(feature = "otel")]
    return agenthub_telemetry::trace_headers(span).map(|h| (h.traceparent, h.tracestate));
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        None
    }
}

/// Parameters as run history stores them (`history.record_payloads`).
fn params_text(params: &Params) -> String {
    #[cfg(feature = "history")]
    return agenthub_history::cap_text(
        &serde_json::to_string(params).unwrap_or_default(),
        agenthub_history::MAX_PAYLOAD_BYTES,
        false,
    );
    #[cfg(not(feature = "history"))]
    serde_json::to_string(params).unwrap_or_default()
}

/// The Phase-1 interface (the design document's `AgentRuntime`), kept by name: each
/// delegates to the facade above.
impl AgentRuntime {
    /// Runs `method` of `agent` (an id or a path) with `params`: always one response.
    pub async fn execute_agent(&self, agent: &str, method: &str, params: Params) -> ExecutionResponse {
        self.call(Call::new(agent, method).params(params)).await
    }

    /// Loads and validates an agent's manifest (Phase-1 `load_agent_manifest`).
    pub fn load_agent_manifest(&self, agent: &str) -> Result<AgentManifest, AgentRuntimeError> {
        self.load_agent(agent).map(|a| a.manifest)
    }

    /// Whether the agent's interface has `method`.
    pub fn validate_method(&self, agent: &str, method: &str) -> Result<bool, AgentRuntimeError> {
        Ok(self.load_agent_manifest(agent)?.method(method).is_some())
    }

    /// The agent's manifest, location and environment state.
    pub fn get_agent_info(&self, agent: &str) -> Result<AgentInfo, AgentRuntimeError> {
        agent_info(&self.config, agent)
    }

    /// Kills every agent this runtime is running; returns how many.
    pub fn cleanup_processes(&self) -> usize {
        self.processes.cleanup_processes()
    }
}

impl Drop for AgentRuntime {
    /// Kills warm workers still being started ahead of calls (a background prestart with a
    /// hanging import must not keep them, or the pools, alive); idle workers are shut down
    /// when the last handle on the pools goes.
    fn drop(&mut self) {
        self.pools.close();
    }
}

/// The process limits of one call.
fn call_limits(rt: &RuntimeConfig) -> ProcessLimits {
    ProcessLimits {
        timeout: Some(rt.max_execution_time.as_duration()),
        grace_period: rt.kill_grace_period.as_duration(),
        max_stdout_bytes: usize::try_from(rt.max_stdout_bytes).unwrap_or(usize::MAX),
        max_memory_bytes: rt.memory_limit_bytes(),
        ..ProcessLimits::default()
    }
}

/// The warm call that starts `agent`'s workers ahead of its calls, once its environment is
/// ready (built if needed).
async fn prestart_call(
    config: &Config,
    environments: &EnvironmentManager,
    agent: &str,
) -> Result<warm::WarmCall, AgentRuntimeError> {
    let loaded = load_agent(config, agent)?;
    let dir = &loaded.location.dir;
    check_agent_script(dir)?;
    let env = environments
        .ensure_environment(dir, &loaded.manifest)
        .await
        .map_err(|e| e.into_runtime_error(Some(agent)))?;
    let rt = &config.runtime;
    let boxed = call_sandbox(config, &loaded, &env, &agenthub_core::Grants::default(), false)?;
    Ok(warm::WarmCall {
        agent_dir: dir.clone(),
        python: env.python.clone(),
        env: sandboxed_env(agent_env(rt, EnvironmentManager::activate_environment(&env.venv)), &boxed),
        limits: call_limits(rt),
        die_with_parent: rt.kill_agents_with_runtime,
        sandbox: boxed.sandbox.clone(),
        version: worker_version(&env, &boxed, false, &warm::stamps(dir, &config.environment.venv_location)),
        methods: loaded.manifest.method_names(),
        method: String::new(),
        request: String::new(),
        cancel: None,
        tools: None,
        deadline: None,
        span: tracing::Span::none(),
        trace: None,
    })
}

/// What a warm worker serves: the environment, the sandbox, and whether it has a tool
/// endpoint (workers with one serve calls with tools, and only those).
fn worker_version(
    env: &agenthub_env::ReadyEnvironment,
    boxed: &sandbox::CallSandbox,
    tools: bool,
    stamps: &warm::Stamps,
) -> warm::Version {
    let tools = if tools { "|tools" } else { "" };
    warm::Version::new(&format!("{}|{}{tools}", env.key, boxed.fingerprint()), stamps)
}

/// The error of a call stopped through its [`CallCancel`].
fn cancelled() -> AgentRuntimeError {
    AgentRuntimeError::Execution {
        message: "Call cancelled by its caller; the process serving it, if any, was killed".to_owned(),
        return_code: None,
        signal: None,
        stderr: None,
    }
}

/// Runs `work` on a thread of its own and waits for it without blocking the executor:
/// `Ok(None)` when the thread ended without an answer (it panicked).
async fn on_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<Option<T>, AgentRuntimeError> {
    agenthub_process::on_thread(name, work).await.map_err(|e| AgentRuntimeError::NotRun {
        message: format!("Could not start a thread ({name}): {e}"),
        suggestion: "Retry; the process is short of threads (see ulimit -u)".to_owned(),
    })
}

/// A one-shot call passes the request as one argument, which Linux bounds. `warm_fallback`:
/// warm mode is on but the agent cannot be served warm.
fn check_request_size(request: &str, warm_fallback: bool) -> Result<(), AgentRuntimeError> {
    if request.len() <= MAX_REQUEST_BYTES {
        return Ok(());
    }
    Err(AgentRuntimeError::NotRun {
        message: format!(
            "The request is {} bytes; a one-shot call passes it as one command-line argument, \
             which Linux limits to {MAX_REQUEST_BYTES} bytes",
            request.len()
        ),
        suggestion: if warm_fallback {
            "This agent runs one-shot even in warm mode, because agent.py has no \
             `if __name__ == \"__main__\": main()` to replay: add one (warm workers have no such \
             limit), or pass large inputs by file path or URL"
                .to_owned()
        } else {
            "Pass large inputs by file path or URL instead of inline, or use warm workers \
             (runtime.mode: warm, `agenthub batch`), which have no such limit"
                .to_owned()
        },
    })
}

/// `agent.py` must be a regular file inside the agent directory (not a symlink out of it,
/// not a FIFO).
fn check_agent_script(dir: &Path) -> Result<(), AgentRuntimeError> {
    match agenthub_core::open_agent_file(dir, Path::new("agent.py")) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(AgentRuntimeError::NotRun {
            message: format!("No agent.py in {}", dir.display()),
            suggestion: "An agent needs agent.py beside agent.yaml: a script that reads the JSON request \
                         from its first argument and prints one JSON object"
                .to_owned(),
        }),
        Err(e) => Err(AgentRuntimeError::NotRun {
            message: format!("Refusing to run agent.py: {e}"),
            suggestion: e.suggestion(),
        }),
    }
}

/// The agent's environment: the caller's (or, with `env_clear`, only the base set and the
/// allow-list), plus the activation variables.
fn agent_env(rt: &RuntimeConfig, activation: agenthub_env::Activation) -> EnvSpec {
    let mut set: Vec<(std::ffi::OsString, std::ffi::OsString)> = Vec::new();
    if rt.env_clear {
        let allowed =
            agenthub_core::BASE_ENV_VARS.iter().copied().chain(rt.env_allow.iter().map(String::as_str));
        for name in allowed {
            if let Some(value) = std::env::var_os(name) {
                set.push((name.into(), value));
            }
        }
    }
    // Activation comes last: its PATH (venv first) wins over the caller's.
    set.extend(activation.set.into_iter().map(|(k, v)| (k.into(), v)));
    EnvSpec { clear: rt.env_clear, set, remove: activation.remove.into_iter().map(Into::into).collect() }
}

/// A warm agent's resolved sandbox, with the stamps of its files and the grants it was
/// resolved for.
type CachedSandbox = (warm::Stamps, agenthub_core::Grants, Arc<sandbox::CallSandbox>);

/// What a call carries besides its method and parameters.
#[derive(Clone, Copy)]
struct CallOptions<'a> {
    cancel: Option<&'a CallCancel>,
    timeout: Option<Duration>,
    grants: &'a agenthub_core::Grants,
    tools: Option<&'a Arc<dyn tools::CallTools>>,
    nested: bool,
    /// Who makes the call, when not the runtime's caller.
    caller: Option<&'a agenthub_core::Caller>,
    /// The span the call's span is a child of, when not the current one.
    parent: Option<&'a tracing::Span>,
}

/// No grants, for calls that carry none.
static NO_GRANTS: std::sync::LazyLock<agenthub_core::Grants> = std::sync::LazyLock::new(Default::default);

impl Default for CallOptions<'_> {
    fn default() -> Self {
        Self {
            cancel: None,
            timeout: None,
            grants: &NO_GRANTS,
            tools: None,
            nested: false,
            caller: None,
            parent: None,
        }
    }
}

/// The sandbox a call of `agent` runs in: its policy resolved from the mode, what it
/// declared (for an installed agent, the declaration approved at install), and what the user
/// granted (config.yaml for the id, then the call's own grants).
fn call_sandbox(
    config: &Config,
    agent: &LoadedAgent,
    env: &agenthub_env::ReadyEnvironment,
    call_grants: &agenthub_core::Grants,
    tools: bool,
) -> Result<sandbox::CallSandbox, AgentRuntimeError> {
    sandbox::log_summary_once(config);
    let mode = config.runtime.sandbox_mode;
    if mode == agenthub_core::SandboxMode::Off || config.runtime.target == agenthub_core::ExecutionTarget::Ray
    {
        return Ok(sandbox::CallSandbox::off());
    }
    let dir = &agent.location.dir;
    // Named by its path under the agents root, an installed agent is still held to what was
    // approved at install (and gets its grants and its home): a path is no way around them.
    let (declared, key, grants) = match &agenthub_core::installed_id(config, &agent.location) {
        Some(id) => {
            let record = agenthub_core::read_home_install_record(&config.home, id);
            let (approved, warning) = agenthub_core::approved_permissions(
                &id.to_string(),
                &agent.manifest.permissions,
                record.as_ref().and_then(|r| r.permissions.as_ref()),
            );
            if let Some(warning) = warning {
                tracing::warn!("{warning}");
            }
            (approved, id.to_string(), config.grants_for(id).merged(call_grants))
        }
        None => (agent.manifest.permissions.clone(), format!("path-{}", dir.display()), call_grants.clone()),
    };
    let user_home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let policy = agenthub_core::SandboxPolicy::resolve(
        mode,
        &declared,
        &grants,
        dir,
        user_home.as_deref(),
        &config.home,
    )
    .map_err(|e| AgentRuntimeError::NotRun { suggestion: e.suggestion(), message: e.to_string() })?;
    sandbox::for_call(&policy, &config.home, &key, dir, &env.venv, &env.python, tools)
}

/// `env` with the sandbox's variables set (its `HOME`, the proxy's), and in strict mode
/// only the allowed names of the caller's environment.
fn sandboxed_env(mut env: EnvSpec, boxed: &sandbox::CallSandbox) -> EnvSpec {
    if let Some(only) = &boxed.env_only {
        let mut kept: Vec<(std::ffi::OsString, std::ffi::OsString)> =
            only.iter().filter_map(|name| std::env::var_os(name).map(|value| (name.into(), value))).collect();
        // The activation's variables (PATH with the venv first, VIRTUAL_ENV) stay.
        kept.extend(env.set.into_iter().filter(|(k, _)| k != "HOME" && k != "TMPDIR"));
        env.set = kept;
        env.clear = true;
    }
    env.set.retain(|(k, _)| !boxed.env.iter().any(|(name, _)| name == k));
    env.set.extend(boxed.env.iter().cloned());
    env
}

/// The environment backend `kind` names (`None`: the configuration's choice, SPEC §3).
fn environment_backend(
    config: &Config,
    kind: Option<EnvBackendKind>,
) -> Result<DynEnvironmentBackend, AgentRuntimeError> {
    let rt = &config.runtime;
    Ok(agenthub_env::select_backend(
        kind.or(rt.env_backend),
        rt.use_uv,
        config.environment.dependency_cache,
        Some(&uv_provision(config)),
    )?)
}

fn process_backend(kind: ProcessBackendKind) -> Result<DynProcessBackend, AgentRuntimeError> {
    let not_compiled = |name: &str| AgentRuntimeError::NotRun {
        message: format!("the `{name}` process backend is not compiled in"),
        suggestion: format!("Enable the `{name}` feature of agenthub-runtime, or pick another backend"),
    };
    match kind {
        #[cfg(feature = "std")]
        ProcessBackendKind::Std => Ok(Arc::new(agenthub_process::StdProcessBackend)),
        #[cfg(feature = "tokio")]
        ProcessBackendKind::Tokio => Ok(Arc::new(agenthub_process::TokioProcessBackend)),
        #[allow(
            unreachable_patterns,
            reason = "reachable only when a backend feature is off; `expect` would fail in the feature matrix"
        )]
        other => Err(not_compiled(other.name())),
    }
}
