//! [`Runtime`]: one `AgentRuntime` for Python, the [`Agent`]s it loads and [`Cancel`].
//!
//! Invariants:
//! - only the process that made a runtime uses or drops it: after `fork()` the child's copy
//!   refuses calls (the Python package makes the child a runtime of its own) and, when it is
//!   collected, is leaked instead of dropped, so the child never kills the parent's workers
//!   or removes what the parent's runtime owns;
//! - the GIL is released for everything that may block (loading, installing, building,
//!   calling).

#![allow(clippy::needless_pass_by_value, reason = "pyo3 extracts arguments as owned values")]

use std::mem::ManuallyDrop;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agenthub_core::{AgentRuntimeError, Config, ConfigError, Grants, Params};
use agenthub_runtime::{AgentRuntime, Call, CallCancel, ExecutionResponse, LoadedAgent, ProcessBackendKind};
use agenthub_tools::ToolHost;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::interrupt;
use crate::tools::Tools;

/// A value that only the process that made it drops: in a forked child it is leaked.
pub(crate) struct Owned<T> {
    value: ManuallyDrop<T>,
    pid: u32,
}

impl<T> Owned<T> {
    fn new(value: T) -> Self {
        Self { value: ManuallyDrop::new(value), pid: std::process::id() }
    }

    /// The value, in the process that made it; an error naming the owner elsewhere.
    pub(crate) fn get(&self) -> PyResult<&T> {
        if std::process::id() == self.pid {
            Ok(&self.value)
        } else {
            Err(PyRuntimeError::new_err(format!(
                "this agenthub runtime was made by process {} and cannot be used after fork(): make a new one \
                 in this process (agenthub.load_agent and the Phase-1 classes do so by themselves)",
                self.pid
            )))
        }
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if std::process::id() == self.pid {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.value) };
        }
        // In a forked child the value is leaked: dropping it would end the parent's workers.
    }
}

/// The agenthub runtime: `Runtime(home=None, settings=[], auto_install=None)`.
#[pyclass(frozen, module = "agenthub._native")]
pub(crate) struct Runtime {
    inner: Owned<Arc<AgentRuntime>>,
    /// Serves tools to calls that have them; made on first use.
    host: Owned<OnceLock<ToolHost>>,
}

/// An agent the runtime loaded (resolved, its manifest parsed and validated).
#[pyclass(frozen, module = "agenthub._native")]
pub(crate) struct Agent {
    pub(crate) loaded: Arc<LoadedAgent>,
    /// `ns/name` when it is installed.
    installed: Option<String>,
}

/// Cancels one call from another thread or task: `Cancel()`, passed to `Runtime.call`.
#[pyclass(frozen, module = "agenthub._native")]
#[derive(Default)]
pub(crate) struct Cancel {
    pub(crate) inner: CallCancel,
}

#[pymethods]
impl Cancel {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Cancels the call: one not started never starts; a process serving it is killed.
    fn cancel(&self) {
        self.inner.cancel();
    }

    /// Whether `cancel()` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }
}

/// The configuration keys `settings` accepts (config.yaml's, `runtime.max_execution_time`…).
#[pyfunction]
pub(crate) fn config_keys() -> Vec<String> {
    agenthub_core::configuration_table()
        .lines()
        .filter_map(|line| line.strip_prefix("| `").and_then(|rest| rest.split('`').next()))
        .map(str::to_owned)
        .collect()
}

/// Reports install steps and notices to Python's `logging` (logger `agenthub`): notices as
/// warnings (shown by default), steps at info.
struct LogProgress;

impl LogProgress {
    fn log(level: &str, message: &str) {
        Python::attach(|py| {
            let logged = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", ("agenthub",)))
                .and_then(|logger| logger.call_method1(level, (message,)));
            match logged {
                Ok(_) => {}
                // A Ctrl-C that Python noticed while it logged (on the main thread, during a
                // call): tripped again, so the call's end raises it.
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) => {
                    // SAFETY: the GIL is held; this only sets the interpreter's SIGINT flag.
                    unsafe { pyo3::ffi::PyErr_SetInterrupt() };
                }
                Err(e) => e.print(py),
            }
        });
    }
}

impl agenthub_runtime::BuildProgress for LogProgress {}

impl agenthub_runtime::Progress for LogProgress {
    fn step(&self, message: &str) {
        Self::log("info", message);
    }

    fn notice(&self, message: &str) {
        Self::log("warning", message);
    }
}

/// A configuration error: `ValueError` with the suggestion.
fn config_error(e: &ConfigError) -> PyErr {
    let help = e.suggestion().map(|s| format!(" ({s})")).unwrap_or_default();
    PyValueError::new_err(format!("{e}{help}"))
}

/// The exception of `agenthub.errors` for a response that failed.
pub(crate) fn raise(py: Python<'_>, response: &ExecutionResponse) -> PyErr {
    let text = serde_json::to_string(response).unwrap_or_default();
    match py.import("agenthub.errors").and_then(|errors| errors.call_method1("_from_response", (text,))) {
        Ok(exception) => PyErr::from_value(exception),
        Err(e) => e,
    }
}

/// An error found before anything ran, raised as its `agenthub.errors` class.
pub(crate) fn raise_error(py: Python<'_>, error: AgentRuntimeError) -> PyErr {
    raise(py, &ExecutionResponse::failed(error, Duration::ZERO))
}

/// A call's time limit in seconds: positive and finite.
fn limit(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
        PyValueError::new_err(format!("timeout must be a positive number of seconds, not {seconds}"))
    })
}

/// A JSON object given as text by the Python side.
fn object(text: &str, what: &str) -> PyResult<Params> {
    serde_json::from_str(text)
        .map_err(|e| PyValueError::new_err(format!("{what} must be a JSON object: {e}")))
}

impl Runtime {
    pub(crate) fn runtime(&self) -> PyResult<&Arc<AgentRuntime>> {
        self.inner.get()
    }

    pub(crate) fn host(&self) -> PyResult<&ToolHost> {
        let runtime = self.runtime()?;
        Ok(self.host.get()?.get_or_init(|| {
            ToolHost::new(Arc::clone(runtime), agenthub_tools::HostOptions::from_config(runtime.config()))
        }))
    }
}

#[pymethods]
impl Runtime {
    /// A runtime over `home` (else `$AGENTHUB_HOME`, else `~/.agenthub`) and its
    /// config.yaml, with `settings` (`(key, value)` pairs, config.yaml keys, values as
    /// their `AGENTHUB_*` variables take them) applied over it.
    #[new]
    #[pyo3(signature = (home=None, settings=Vec::new(), auto_install=None))]
    fn new(
        py: Python<'_>,
        home: Option<PathBuf>,
        settings: Vec<(String, String)>,
        auto_install: Option<bool>,
    ) -> PyResult<Self> {
        let mut config = Config::load_from(home).map_err(|e| config_error(&e))?;
        for (key, value) in &settings {
            config.set(key, value).map_err(|e| config_error(&e))?;
        }
        if let Some(auto) = auto_install {
            config.install.auto_install = Some(auto);
        }
        config.validate().map_err(|e| config_error(&e))?;
        init_logging(&config);
        let runtime = py
            .detach(|| AgentRuntime::with_backends(config, None, ProcessBackendKind::Std))
            .map_err(|e| raise_error(py, e))?
            .with_progress(Arc::new(LogProgress))
            .with_caller(agenthub_core::Caller::Python);
        Ok(Self { inner: Owned::new(Arc::new(runtime)), host: Owned::new(OnceLock::new()) })
    }

    /// The home this runtime uses.
    #[getter]
    fn home(&self) -> PyResult<PathBuf> {
        Ok(self.runtime()?.config().home.clone())
    }

    /// The execution mode (`oneshot`, `warm`, `isolated`).
    #[getter]
    fn mode(&self) -> PyResult<String> {
        Ok(format!("{:?}", self.runtime()?.config().runtime.mode).to_lowercase())
    }

    /// Loads an agent (an id `ns/name` or a path), installing an id that is not installed
    /// when auto-install is on.
    fn load(&self, py: Python<'_>, agent: &str) -> PyResult<Agent> {
        let runtime = Arc::clone(self.runtime()?);
        let loaded = interrupt::run(py, None, || pollster::block_on(runtime.load_or_install(agent)))?
            .map_err(|e| raise_error(py, e))?;
        let installed =
            agenthub_core::installed_id(runtime.config(), &loaded.location).map(|id| id.to_string());
        Ok(Agent { loaded: Arc::new(loaded), installed })
    }

    /// Runs `method` of a loaded agent with `params` (a JSON object as text); returns the
    /// SPEC §5 response as JSON text. Never raises for what the call did; raises
    /// `KeyboardInterrupt` when Ctrl-C cancelled it.
    #[pyo3(signature = (agent, method, params, timeout=None, grants=None, tools=None, cancel=None))]
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        py: Python<'_>,
        agent: &Agent,
        method: &str,
        params: &str,
        timeout: Option<f64>,
        grants: Option<&str>,
        tools: Option<&Tools>,
        cancel: Option<&Cancel>,
    ) -> PyResult<String> {
        let runtime = Arc::clone(self.runtime()?);
        let mut call = Call::shared(&agent.loaded, method).params(object(params, "parameters")?);
        if let Some(seconds) = timeout {
            call = call.timeout(limit(seconds)?);
        }
        if let Some(grants) = grants {
            let grants: Grants = serde_json::from_str(grants)
                .map_err(|e| PyValueError::new_err(format!("invalid grants: {e}")))?;
            call = call.grants(grants);
        }
        if let Some(tools) = tools {
            call = call.tools(self.host()?.call_tools(&tools.set, &agent.loaded));
        }
        let cancel = cancel.map(|c| c.inner.clone()).unwrap_or_default();
        call = call.cancel(&cancel);
        let response = interrupt::run(py, Some(&cancel), || runtime.call_blocking(call))?;
        serde_json::to_string(&response).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Runs `method` of `agent` (an id or a path, loaded for this call): the Phase-1
    /// `execute_agent`. Returns the response as JSON text.
    #[pyo3(signature = (agent, method, params, timeout=None))]
    fn execute(
        &self,
        py: Python<'_>,
        agent: &str,
        method: &str,
        params: &str,
        timeout: Option<f64>,
    ) -> PyResult<String> {
        let runtime = Arc::clone(self.runtime()?);
        let mut call = Call::new(agent, method).params(object(params, "parameters")?);
        if let Some(seconds) = timeout {
            call = call.timeout(limit(seconds)?);
        }
        let cancel = CallCancel::new();
        call = call.cancel(&cancel);
        let response = interrupt::run(py, Some(&cancel), || runtime.call_blocking(call))?;
        serde_json::to_string(&response).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// The agent's manifest as JSON text (raises `AgentNotFoundError`,
    /// `InvalidManifestError`).
    fn manifest(&self, py: Python<'_>, agent: &str) -> PyResult<String> {
        let runtime = self.runtime()?;
        let manifest = runtime.load_agent_manifest(agent).map_err(|e| raise_error(py, e))?;
        serde_json::to_string(&manifest).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// What `agenthub info --json` says of the agent, as JSON text.
    fn info(&self, py: Python<'_>, agent: &str) -> PyResult<String> {
        let runtime = self.runtime()?;
        let info = runtime.get_agent_info(agent).map_err(|e| raise_error(py, e))?;
        serde_json::to_string(&info).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Makes sure the agent's environment matches its requirements (building it if
    /// needed); returns its directory.
    fn ensure_environment(&self, py: Python<'_>, agent: &str) -> PyResult<PathBuf> {
        let runtime = Arc::clone(self.runtime()?);
        let ready = interrupt::run(py, None, || pollster::block_on(runtime.ensure_environment(agent)))?
            .map_err(|e| raise_error(py, e))?;
        Ok(ready.venv)
    }

    /// Creates an empty environment for the agent directory if it has none (Phase-1
    /// `create_environment`); returns its directory.
    fn create_environment(&self, py: Python<'_>, agent_path: PathBuf) -> PyResult<PathBuf> {
        let runtime = Arc::clone(self.runtime()?);
        let shown = agent_path.display().to_string();
        interrupt::run(py, None, || {
            pollster::block_on(runtime.environments().create_environment(&agent_path))
        })?
        .map_err(|e| raise_error(py, e.into_runtime_error(Some(&shown))))
    }

    /// Installs requirements into an environment (Phase-1 `install_dependencies`).
    fn install_dependencies(&self, py: Python<'_>, venv: PathBuf, requirements: Vec<String>) -> PyResult<()> {
        let runtime = Arc::clone(self.runtime()?);
        interrupt::run(py, None, || {
            pollster::block_on(runtime.environments().install_dependencies(&venv, &requirements))
        })?
        .map_err(|e| raise_error(py, e.into_runtime_error(None)))
    }

    /// The Python executable of an environment.
    fn python_executable(&self, venv: PathBuf) -> PyResult<PathBuf> {
        Ok(self.runtime()?.environments().get_python_executable(&venv))
    }

    /// Where the environment of the agent directory is (whether or not it exists).
    fn venv_path(&self, agent_path: PathBuf) -> PyResult<PathBuf> {
        Ok(self.runtime()?.environments().venv_path(&agent_path))
    }

    /// Starts the agent's warm workers on a thread of its own (returns at once).
    fn prestart(&self, agent: &Agent) -> PyResult<()> {
        self.runtime()?.prestart_workers_in_background(&agent.loaded.location.dir.to_string_lossy());
        Ok(())
    }

    /// The tools `agents` (`ns/name[.method]`, paths), `servers_files` (`{"mcpServers"}`
    /// files) and `functions` (`(name, description, input schema JSON, callable)`) give a
    /// call; MCP servers are started once per runtime.
    #[pyo3(signature = (agents=Vec::new(), servers_files=Vec::new(), functions=Vec::new()))]
    fn tools(
        &self,
        py: Python<'_>,
        agents: Vec<String>,
        servers_files: Vec<PathBuf>,
        functions: Vec<(String, String, String, Py<PyAny>)>,
    ) -> PyResult<Tools> {
        let functions = functions
            .into_iter()
            .map(|(name, description, schema, callable)| {
                crate::tools::function_tool(name, description, &schema, callable)
            })
            .collect::<PyResult<Vec<_>>>()?;
        let assignment = agenthub_tools::Assignment { agents, servers_files, functions };
        let host = self.host()?;
        let set = interrupt::run(py, None, || host.tool_set(&assignment))?
            .map_err(|e| raise_error(py, AgentRuntimeError::from(e)))?;
        Ok(Tools { set })
    }

    /// Kills every agent process this runtime is running; returns how many.
    fn cleanup_processes(&self) -> PyResult<usize> {
        Ok(self.runtime()?.cleanup_processes())
    }

    /// Whether `pid` is a process of this runtime that is still running.
    fn is_process_running(&self, pid: u32) -> PyResult<bool> {
        Ok(self.runtime()?.processes().is_process_running(pid))
    }

    /// The process ids of the warm workers that are idle now.
    fn idle_worker_pids(&self) -> PyResult<Vec<u32>> {
        Ok(self.runtime()?.idle_worker_pids())
    }

    /// Stops this runtime: its calls are killed, its workers shut down, later calls refused.
    fn shutdown(&self) -> PyResult<usize> {
        let runtime = self.runtime()?;
        if let Some(host) = self.host.get()?.get() {
            host.shutdown();
        }
        Ok(runtime.shutdown())
    }
}

#[pymethods]
impl Agent {
    /// The manifest as JSON text.
    #[getter]
    fn manifest_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.loaded.manifest).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// The agent's directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.loaded.location.dir.clone()
    }

    /// `ns/name` when it is installed, else `None`.
    #[getter]
    fn installed_id(&self) -> Option<String> {
        self.installed.clone()
    }
}

/// Logs of the runtime (warnings and errors by default, `runtime.log_level` when lower)
/// go to stderr, once per process.
/// Logs of the runtime to stderr (warnings unless configured otherwise); traces to an OTLP
/// collector when the standard `OTEL_*` variables ask for them (agenthub-telemetry), as the
/// CLI does. Once per process.
fn init_logging(config: &Config) {
    use agenthub_core::LogLevel;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter};
    static ONCE: std::sync::Once = std::sync::Once::new();
    let level = match config.runtime.log_level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn | LogLevel::Info => LevelFilter::WARN,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    ONCE.call_once(|| {
        let log = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .without_time()
            .with_filter(level.and(tracing_subscriber::filter::filter_fn(is_event)));
        if let Some(exporter) = agenthub_telemetry::export::install(log) {
            *EXPORTER.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((std::process::id(), exporter));
        }
    });
}

/// Whether `meta` is an event's (a log line), not a span's.
fn is_event(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_event()
}

/// The trace exporter, with the pid of the process that made it (its thread is not in a
/// forked child).
static EXPORTER: std::sync::Mutex<Option<(u32, agenthub_telemetry::export::Exporter)>> =
    std::sync::Mutex::new(None);

/// Sends the spans still queued to the collector (waiting at most `timeout` seconds) and
/// stops tracing; returns a warning when spans were lost. Called at interpreter exit. A
/// forked child does not touch its parent's exporter.
#[pyfunction]
pub(crate) fn flush_traces(py: Python<'_>, timeout: f64) -> Option<String> {
    let taken = EXPORTER.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let (pid, exporter) = taken?;
    if pid != std::process::id() {
        // Leaked, not shut down: its thread lives in the parent only.
        std::mem::forget(exporter);
        return None;
    }
    let timeout = std::time::Duration::try_from_secs_f64(timeout).unwrap_or(std::time::Duration::ZERO);
    py.detach(|| exporter.shutdown(timeout))
}
