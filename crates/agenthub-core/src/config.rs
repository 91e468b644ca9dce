//! Configuration (SPEC §6): Phase-1 defaults, then `<home>/config.yaml`, then `AGENTHUB_*`.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent_file::{open_regular, read_bounded};
use crate::manifest::PythonConstraint;

/// Which tool builds virtual environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EnvBackendKind {
    /// `uv venv` + `uv pip install`.
    Uv,
    /// `python -m venv` + `pip install`.
    Pip,
    /// `virtualenv` + `pip install`.
    Virtualenv,
}

impl EnvBackendKind {
    /// The backend's name as written in config and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uv => "uv",
            Self::Pip => "pip",
            Self::Virtualenv => "virtualenv",
        }
    }
}

impl std::str::FromStr for EnvBackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uv" => Ok(Self::Uv),
            "pip" => Ok(Self::Pip),
            "virtualenv" => Ok(Self::Virtualenv),
            other => Err(format!("unknown environment backend `{other}` (use uv, pip or virtualenv)")),
        }
    }
}

/// How calls run: a fresh interpreter per call, or warm workers that import the agent once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ExecutionMode {
    /// `python agent.py '<request>'` per call (SPEC §4).
    #[default]
    Oneshot,
    /// Long-lived workers per agent (docs/design/workers.md); agents that cannot be served
    /// warm fall back to one-shot.
    Warm,
}

impl std::str::FromStr for ExecutionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "oneshot" => Ok(Self::Oneshot),
            "warm" => Ok(Self::Warm),
            other => Err(format!("unknown mode `{other}` (use oneshot or warm)")),
        }
    }
}

/// Where calls run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ExecutionTarget {
    /// On this machine (one-shot or warm, by `mode`).
    #[default]
    Local,
    /// In Ray actors on the cluster named by `ray.address` / `RAY_ADDRESS`.
    Ray,
}

impl std::str::FromStr for ExecutionTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(Self::Local),
            "ray" => Ok(Self::Ray),
            other => Err(format!("unknown target `{other}` (use local or ray)")),
        }
    }
}

/// The Ray version agenthub's own driver Python gets by default.
pub const DEFAULT_RAY_VERSION: &str = "2.60.0";

/// The Ray execution target (`target: ray`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RayConfig {
    /// The cluster (`ray://host:10001`, `host:6379`, `auto`); none: Ray's own
    /// `RAY_ADDRESS`, else `auto` (a cluster started on this machine).
    pub address: Option<String>,
    /// A Python that has `ray` installed, to run agenthub's driver with
    /// (`AGENTHUB_RAY_PYTHON`).
    pub python: Option<PathBuf>,
    /// The Ray version of the Python agenthub builds for its driver when `python` is not
    /// set (`<home>/tools/ray-<version>`); it must be the cluster's (`AGENTHUB_RAY_VERSION`).
    pub version: String,
    /// Ray actors per agent (calls beyond that queue on them).
    pub actors_per_agent: usize,
    /// How long connecting to the cluster may take, in seconds.
    pub connect_timeout: f64,
}

impl Default for RayConfig {
    fn default() -> Self {
        Self {
            address: None,
            python: None,
            version: DEFAULT_RAY_VERSION.to_owned(),
            actors_per_agent: 2,
            connect_timeout: 60.0,
        }
    }
}

impl RayConfig {
    /// `connect_timeout` as a duration (saturated like [`RuntimeConfig::execution_timeout`]).
    pub fn connect_timeout(&self) -> Duration {
        secs(self.connect_timeout)
    }
}

/// How a warm worker calls a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerDispatch {
    /// `main()`-replay when `agent.py` calls `main()` under `if __name__ == "__main__"`,
    /// else one-shot.
    #[default]
    Auto,
    /// `main()`-replay only.
    Main,
    /// One instance of the agent's class, its methods called with the parameters.
    Instance,
}

impl WorkerDispatch {
    /// The name the worker bootstrap takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Main => "main",
            Self::Instance => "instance",
        }
    }
}

impl std::str::FromStr for WorkerDispatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "main" => Ok(Self::Main),
            "instance" => Ok(Self::Instance),
            other => Err(format!("unknown worker dispatch `{other}` (use auto, main or instance)")),
        }
    }
}

/// Runtime limits and behaviour (`RuntimeConfig` of the Phase-1 design).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Wall-clock limit of one execution, in seconds (greater than 0, at most
    /// [`MAX_SECONDS`]).
    pub max_execution_time: f64,
    /// Resident-memory cap of one agent, in MB (MiB); 0 means no cap.
    pub max_memory_usage: u64,
    /// Limit for the short probes run around environment building (asking an installer or
    /// interpreter for its version), in seconds.
    pub subprocess_timeout: f64,
    /// Seconds between sweeps of stale run records (of runtimes that died) by a long-lived
    /// runtime; 0 turns the sweep off.
    pub cleanup_interval: f64,
    /// `error`, `warn`, `info`, `debug` or `trace` (any case).
    pub log_level: String,
    /// Prefer uv for environments when it is on PATH.
    pub use_uv: bool,
    /// Force an environment backend (overrides `use_uv`).
    pub env_backend: Option<EnvBackendKind>,
    /// Cap on an agent's stdout, in bytes.
    pub max_stdout_bytes: u64,
    /// How long a timed-out agent gets between SIGTERM and SIGKILL, in seconds.
    pub kill_grace_period: f64,
    /// Wall-clock limit of building one environment (creating it and installing its
    /// requirements), in seconds.
    pub build_timeout: f64,
    /// Pass agents only [`BASE_ENV_VARS`] and `env_allow`, not the whole caller's
    /// environment. Off by default: agents usually need API keys from it.
    pub env_clear: bool,
    /// Variables passed to agents when `env_clear` is on (turning it on when set by flag).
    pub env_allow: Vec<String>,
    /// How many agents one runtime runs at once; further calls wait. 0 = twice the CPUs.
    pub max_concurrency: usize,
    /// Agents get SIGKILL when the thread that started them dies (`PR_SET_PDEATHSIG`).
    /// The CLI turns it on; libraries on multi-threaded runtimes should leave it off.
    pub kill_agents_with_runtime: bool,
    /// `oneshot` (default) or `warm`.
    pub mode: ExecutionMode,
    /// Warm workers per agent (at least 1; all together bounded by `max_concurrency`).
    pub workers_per_agent: usize,
    /// A worker is replaced after this many calls (with up to 10% jitter); 0 = never.
    pub max_calls_per_worker: u64,
    /// An idle worker exits after this many seconds.
    pub worker_idle_timeout: f64,
    /// How long a worker may take to import its agent, in seconds.
    pub worker_init_timeout: f64,
    /// A worker whose resident memory passes this many MiB after a call is replaced; 0 = off.
    pub worker_recycle_memory: u64,
    /// How warm workers call methods: `auto`, `main` or `instance`.
    pub worker_dispatch: WorkerDispatch,
    /// Where calls run: `local` (default) or `ray`.
    pub target: ExecutionTarget,
}

/// Variables agents always get from the caller when `env_clear` is on: none is a secret,
/// and tools break without them.
pub const BASE_ENV_VARS: [&str; 8] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ"];

/// The `AGENTHUB_*` variables that set configuration.
pub const CONFIG_VARS: [&str; 36] = [
    "AGENTHUB_MAX_EXECUTION_TIME",
    "AGENTHUB_MAX_MEMORY_USAGE",
    "AGENTHUB_SUBPROCESS_TIMEOUT",
    "AGENTHUB_CLEANUP_INTERVAL",
    "AGENTHUB_LOG_LEVEL",
    "AGENTHUB_USE_UV",
    "AGENTHUB_ENV_BACKEND",
    "AGENTHUB_MAX_STDOUT_BYTES",
    "AGENTHUB_KILL_GRACE_PERIOD",
    "AGENTHUB_BUILD_TIMEOUT",
    "AGENTHUB_ENV_CLEAR",
    "AGENTHUB_ENV_ALLOW",
    "AGENTHUB_MAX_CONCURRENCY",
    "AGENTHUB_KILL_AGENTS_WITH_RUNTIME",
    "AGENTHUB_PYTHON_VERSION",
    "AGENTHUB_VENV_LOCATION",
    "AGENTHUB_DEPENDENCY_CACHE",
    "AGENTHUB_AUTO_CLEANUP",
    "AGENTHUB_MAX_VENV_SIZE",
    "AGENTHUB_RUN_INSTALLATION_COMMANDS",
    "AGENTHUB_MODE",
    "AGENTHUB_WORKERS_PER_AGENT",
    "AGENTHUB_MAX_CALLS_PER_WORKER",
    "AGENTHUB_WORKER_IDLE_TIMEOUT",
    "AGENTHUB_WORKER_INIT_TIMEOUT",
    "AGENTHUB_WORKER_RECYCLE_MEMORY",
    "AGENTHUB_WORKER_DISPATCH",
    "AGENTHUB_REGISTRY",
    "AGENTHUB_AUTO_INSTALL",
    "AGENTHUB_PROVISION_UV",
    "AGENTHUB_GIT_TIMEOUT",
    "AGENTHUB_TARGET",
    "AGENTHUB_RAY_PYTHON",
    "AGENTHUB_RAY_ACTORS_PER_AGENT",
    "AGENTHUB_RAY_CONNECT_TIMEOUT",
    "AGENTHUB_RAY_VERSION",
];

/// `AGENTHUB_*` variables other parts of agenthub read: allowed, not configuration.
pub const NON_CONFIG_VARS: [&str; 4] =
    ["AGENTHUB_HOME", "AGENTHUB_RUN_ID", "AGENTHUB_BIN", "AGENTHUB_CALL_ID"];

/// The longest duration configuration accepts, in seconds (about 31 years): far from where
/// `Instant + duration` could overflow.
pub const MAX_SECONDS: f64 = 1e9;

/// `max_memory_usage` above this many MiB would overflow when converted to bytes.
pub const MAX_MEMORY_MIB: u64 = u64::MAX / (1024 * 1024);

/// The largest `config.yaml` read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_execution_time: 30.0,
            max_memory_usage: 1024,
            subprocess_timeout: 5.0,
            cleanup_interval: 60.0,
            log_level: "INFO".to_owned(),
            use_uv: true,
            env_backend: None,
            max_stdout_bytes: 16 * 1024 * 1024,
            kill_grace_period: 1.0,
            build_timeout: 600.0,
            env_clear: false,
            env_allow: Vec::new(),
            max_concurrency: 0,
            kill_agents_with_runtime: false,
            mode: ExecutionMode::Oneshot,
            workers_per_agent: 1,
            max_calls_per_worker: 1000,
            worker_idle_timeout: 300.0,
            worker_init_timeout: 60.0,
            worker_recycle_memory: 1024,
            worker_dispatch: WorkerDispatch::Auto,
            target: ExecutionTarget::Local,
        }
    }
}

impl RuntimeConfig {
    /// `worker_idle_timeout` as a duration (saturated like [`Self::execution_timeout`]).
    pub fn worker_idle_timeout(&self) -> Duration {
        secs(self.worker_idle_timeout)
    }

    /// `worker_init_timeout` as a duration (saturated like [`Self::execution_timeout`]).
    pub fn worker_init_timeout(&self) -> Duration {
        secs(self.worker_init_timeout)
    }

    /// `worker_recycle_memory` in bytes; `None` when off.
    pub fn worker_recycle_bytes(&self) -> Option<u64> {
        (self.worker_recycle_memory > 0).then(|| self.worker_recycle_memory.saturating_mul(1024 * 1024))
    }

    /// `max_execution_time` as a duration (saturated to `0..=MAX_SECONDS`, also when not
    /// validated).
    pub fn execution_timeout(&self) -> Duration {
        secs(self.max_execution_time)
    }

    /// `max_memory_usage` in bytes; `None` means no cap. Saturates instead of wrapping
    /// (validation refuses values past [`MAX_MEMORY_MIB`]).
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        (self.max_memory_usage > 0).then(|| self.max_memory_usage.saturating_mul(1024 * 1024))
    }

    /// `max_concurrency`, with 0 resolved to twice the available CPUs.
    pub fn concurrency_limit(&self) -> usize {
        match self.max_concurrency {
            0 => std::thread::available_parallelism().map_or(2, std::num::NonZero::get) * 2,
            n => n,
        }
    }

    /// `kill_grace_period` as a duration (saturated like [`Self::execution_timeout`]).
    pub fn grace_period(&self) -> Duration {
        secs(self.kill_grace_period)
    }

    /// `build_timeout` as a duration (saturated like [`Self::execution_timeout`]).
    pub fn build_timeout(&self) -> Duration {
        secs(self.build_timeout)
    }

    /// `subprocess_timeout` as a duration (saturated like [`Self::execution_timeout`]).
    pub fn subprocess_timeout(&self) -> Duration {
        secs(self.subprocess_timeout)
    }

    /// `cleanup_interval` as a duration; `None` when the sweep is off (0).
    pub fn cleanup_interval(&self) -> Option<Duration> {
        Some(secs(self.cleanup_interval)).filter(|d| !d.is_zero())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("runtime.max_execution_time", self.max_execution_time),
            ("runtime.kill_grace_period", self.kill_grace_period),
            ("runtime.build_timeout", self.build_timeout),
            ("runtime.subprocess_timeout", self.subprocess_timeout),
            ("runtime.worker_idle_timeout", self.worker_idle_timeout),
            ("runtime.worker_init_timeout", self.worker_init_timeout),
        ];
        for (key, value) in positive {
            check_seconds(key, value)?;
        }
        let interval = self.cleanup_interval;
        if !(interval.is_finite() && (0.0..=MAX_SECONDS).contains(&interval)) {
            return Err(invalid(
                "runtime.cleanup_interval",
                format!("must be a number of seconds from 0 (off) to {MAX_SECONDS:.0}, got {interval}"),
            ));
        }
        if self.max_memory_usage > MAX_MEMORY_MIB {
            return Err(invalid(
                "runtime.max_memory_usage",
                format!(
                    "must be a whole number of MiB from 0 (no cap) to {MAX_MEMORY_MIB}, got {}",
                    self.max_memory_usage
                ),
            ));
        }
        if self.workers_per_agent == 0 || self.workers_per_agent > 1024 {
            return Err(invalid(
                "runtime.workers_per_agent",
                format!("must be a whole number from 1 to 1024, got {}", self.workers_per_agent),
            ));
        }
        if self.worker_recycle_memory > MAX_MEMORY_MIB {
            return Err(invalid(
                "runtime.worker_recycle_memory",
                format!("must be a whole number of MiB from 0 (off) to {MAX_MEMORY_MIB}"),
            ));
        }
        if !LOG_LEVELS.contains(&self.log_level.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                "runtime.log_level",
                format!("must be one of {}, got `{}`", LOG_LEVELS.join(", "), self.log_level),
            ));
        }
        Ok(())
    }
}

/// Seconds as a duration, clamped to `0..=MAX_SECONDS` (NaN is 0): never panics, and an
/// `Instant` plus the result never overflows.
fn secs(s: f64) -> Duration {
    let clamped = if s.is_nan() { 0.0 } else { s.clamp(0.0, MAX_SECONDS) };
    Duration::from_secs_f64(clamped)
}

/// A duration setting: finite, greater than 0, at most [`MAX_SECONDS`].
fn check_seconds(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 && value <= MAX_SECONDS {
        return Ok(());
    }
    Err(invalid(
        key,
        format!("must be a number of seconds greater than 0 and at most {MAX_SECONDS:.0}, got {value}"),
    ))
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), message }
}

/// The Python an environment is built with, from `python_version`: a version constraint
/// (`3.11`, `3.11+`, `>=3.10,<3.13`) or an interpreter path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonRequest {
    /// Any interpreter on PATH that satisfies the constraint.
    Version(PythonConstraint),
    /// This interpreter (`~/` expanded).
    Path(PathBuf),
}

impl PythonRequest {
    /// A value with a path separator, or starting with `.`, `~` or `/`, is a path;
    /// anything else must be a version constraint.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let is_path = raw.contains(std::path::MAIN_SEPARATOR) || raw.starts_with(['.', '~', '/']);
        if is_path {
            return Ok(Self::Path(crate::agent::expand_tilde(raw)));
        }
        PythonConstraint::parse(raw)
            .map(Self::Version)
            .map_err(|e| format!("{e}; to name an interpreter, give its path (containing `/`)"))
    }
}

impl std::fmt::Display for PythonRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Version(c) => f.write_str(c.as_str()),
            Self::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Environment management (`EnvironmentConfig` of the Phase-1 design).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Python to build with: a version (`3.11`) or a path; none = the manifest's
    /// constraint, else the `python3` on PATH. See [`Self::python_request`].
    pub python_version: Option<String>,
    /// Name of the environment directory inside the agent directory: one plain path
    /// component (not empty, `.`, `..`, nor containing `/`).
    pub venv_location: String,
    /// Let the installer use its download cache.
    pub dependency_cache: bool,
    /// Remove a half-built environment when a build fails.
    pub auto_cleanup: bool,
    /// Warn when an environment grows past this many MB.
    pub max_venv_size: u64,
    /// Run the manifest's `installation.commands` after installing requirements (split
    /// like a shell would, run without one). Off by default: a manifest is untrusted input.
    pub run_installation_commands: bool,
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        Self {
            python_version: None,
            venv_location: ".venv".to_owned(),
            dependency_cache: true,
            auto_cleanup: true,
            max_venv_size: 500,
            run_installation_commands: false,
        }
    }
}

impl EnvironmentConfig {
    /// `python_version` parsed: `None` when it is not set (or, before [`Config::validate`]
    /// has passed, when it does not parse).
    pub fn python_request(&self) -> Option<PythonRequest> {
        self.python_version.as_deref().and_then(|v| PythonRequest::parse(v).ok())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(raw) = &self.python_version {
            PythonRequest::parse(raw).map_err(|m| invalid("environment.python_version", m))?;
        }
        let venv = &self.venv_location;
        let mut components = Path::new(venv).components();
        let plain = matches!(components.next(), Some(Component::Normal(_)))
            && components.next().is_none()
            && !venv.contains(['/', '\0']);
        if !plain {
            return Err(invalid(
                "environment.venv_location",
                format!(
                    "must be the name of a directory inside the agent directory (one path component, not `.` or `..`), got `{venv}`"
                ),
            ));
        }
        Ok(())
    }
}

/// The default registry template: `ns/name` is a GitHub repository.
pub const DEFAULT_REGISTRY: &str = "https://github.com/{ns}/{name}.git";

/// Installing agents (`agenthub install`, auto-install on first use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstallConfig {
    /// Install an agent named `ns/name` that is not installed when it is first called.
    /// `None` (not set) means on for the CLI and off for the library.
    pub auto_install: Option<bool>,
    /// When uv is needed (an agent ships `uv.lock`) and not found, install it once into
    /// `<home>/tools/uv` with `python3 -m pip`.
    pub provision_uv: bool,
    /// Wall-clock limit of one git command (clone, fetch, checkout), in seconds.
    pub git_timeout: f64,
}

impl Default for InstallConfig {
    fn default() -> Self {
        Self { auto_install: None, provision_uv: true, git_timeout: 300.0 }
    }
}

impl InstallConfig {
    /// `git_timeout` as a duration (saturated like [`RuntimeConfig::execution_timeout`]).
    pub fn git_timeout(&self) -> Duration {
        secs(self.git_timeout)
    }

    /// Whether calls of `ns/name` install missing agents, given the caller's default
    /// (`true` for the CLI, `false` for the library).
    pub fn auto_install_or(&self, default: bool) -> bool {
        self.auto_install.unwrap_or(default)
    }
}

/// All configuration, with the home directory it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// `$AGENTHUB_HOME`, default `~/.agenthub`.
    pub home: PathBuf,
    /// Runtime settings.
    pub runtime: RuntimeConfig,
    /// Environment settings.
    pub environment: EnvironmentConfig,
    /// Where `ns/name` is installed from: a URL template with `{ns}` and `{name}`
    /// (`registry:` in config.yaml, `AGENTHUB_REGISTRY`); default [`DEFAULT_REGISTRY`].
    pub registry: String,
    /// Installing agents.
    pub install: InstallConfig,
    /// The Ray target.
    pub ray: RayConfig,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    runtime: RuntimeConfig,
    environment: EnvironmentConfig,
    registry: String,
    install: InstallConfig,
    ray: RayConfig,
}

impl Default for ConfigFile {
    fn default() -> Self {
        Self {
            runtime: RuntimeConfig::default(),
            environment: EnvironmentConfig::default(),
            registry: DEFAULT_REGISTRY.to_owned(),
            install: InstallConfig::default(),
            ray: RayConfig::default(),
        }
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No `$AGENTHUB_HOME` and no home directory.
    #[error("cannot find a home directory; set AGENTHUB_HOME")]
    NoHome,
    /// The config file exists but could not be parsed.
    #[error("invalid {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The config file exists but is not a regular file, is too large, or cannot be read.
    #[error("cannot read {}: {message}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An `AGENTHUB_*` variable has a value of the wrong kind.
    #[error("invalid {name}={value}: {message}")]
    Variable {
        /// The variable.
        name: String,
        /// Its value (lossily decoded when it is not UTF-8).
        value: String,
        /// What was expected.
        message: String,
    },
    /// An `AGENTHUB_*` variable agenthub does not know (a typo would otherwise be ignored).
    #[error("unknown variable {name}")]
    UnknownVariable {
        /// The variable.
        name: String,
        /// What to set instead: the closest known name, or the list.
        suggestion: String,
    },
    /// A setting is out of its range.
    #[error("invalid {key}: {message}")]
    Invalid {
        /// The setting, as a config key: `runtime.max_execution_time`.
        key: String,
        /// What is accepted, and the value given.
        message: String,
    },
}

impl ConfigError {
    /// What the user can do about it.
    pub fn suggestion(&self) -> Option<String> {
        Some(match self {
            Self::NoHome => "Set AGENTHUB_HOME or pass --home".to_owned(),
            Self::File { path, .. } => format!("Fix {} at the position shown", path.display()),
            Self::Unreadable { path, .. } => {
                format!(
                    "Make {} a regular file of at most {MAX_CONFIG_BYTES} bytes, or remove it",
                    path.display()
                )
            }
            Self::Variable { name, .. } => format!("Fix or unset {name}"),
            Self::UnknownVariable { suggestion, .. } => suggestion.clone(),
            Self::Invalid { key, .. } => {
                format!("Fix `{key}` in config.yaml, its AGENTHUB_* variable, or the flag that sets it")
            }
        })
    }
}

impl Config {
    /// Loads configuration from the process environment and `<home>/config.yaml`, the home
    /// being `$AGENTHUB_HOME`, else `~/.agenthub`. Same as `load_from(None)`.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(None)
    }

    /// Loads configuration from the process environment and `<home>/config.yaml`; `home`
    /// (the CLI's `--home`) overrides `$AGENTHUB_HOME`. The file is read the same way
    /// whichever home is used: it may be a symlink (it is the user's file) but must be a
    /// regular file of at most [`MAX_CONFIG_BYTES`]; otherwise the error says why.
    pub fn load_from(home: Option<PathBuf>) -> Result<Self, ConfigError> {
        let home = match home {
            Some(home) => home,
            None => match std::env::var_os("AGENTHUB_HOME").filter(|h| !h.is_empty()) {
                Some(home) => PathBuf::from(home),
                None => std::env::home_dir().ok_or(ConfigError::NoHome)?.join(".agenthub"),
            },
        };
        let path = home.join("config.yaml");
        let unreadable = |e: crate::AgentFileError| ConfigError::Unreadable {
            path: path.clone(),
            message: match &e {
                crate::AgentFileError::Io { source, .. } => source.to_string(),
                crate::AgentFileError::NotRegular { kind, .. } => format!("it is {kind}, not a regular file"),
                crate::AgentFileError::TooLarge { limit, .. } => format!("it is larger than {limit} bytes"),
                other => other.to_string(),
            },
        };
        let text = match open_regular(&path).map_err(unreadable)? {
            Some(file) => Some(read_bounded(file, path.clone(), MAX_CONFIG_BYTES).map_err(unreadable)?),
            None => None,
        };
        Self::from_sources(home, text.as_deref(), std::env::vars_os())
    }

    /// Builds configuration from a home, the config file's text, and variables (the
    /// process's are `std::env::vars_os()`; pass `[]` for none), then validates it.
    ///
    /// Variables that are not UTF-8 are ignored unless they are `AGENTHUB_*` ones; an
    /// unknown `AGENTHUB_*` variable is an error (see [`CONFIG_VARS`], [`NON_CONFIG_VARS`]).
    pub fn from_sources(
        home: PathBuf,
        file: Option<&str>,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, ConfigError> {
        let parsed: ConfigFile = match file.map(str::trim) {
            None | Some("") => ConfigFile::default(),
            Some(text) => serde_yaml::from_str(text)
                .map_err(|e| ConfigError::File { path: home.join("config.yaml"), message: e.to_string() })?,
        };
        let mut config = Self {
            home,
            runtime: parsed.runtime,
            environment: parsed.environment,
            registry: parsed.registry,
            install: parsed.install,
            ray: parsed.ray,
        };
        for (name, value) in vars {
            if !name.as_encoded_bytes().starts_with(b"AGENTHUB_") {
                continue;
            }
            let name = name.to_string_lossy().into_owned();
            if NON_CONFIG_VARS.contains(&name.as_str()) {
                continue;
            }
            if !CONFIG_VARS.contains(&name.as_str()) {
                let suggestion = suggest_variable(&name);
                return Err(ConfigError::UnknownVariable { name, suggestion });
            }
            let variable_error = |message: String| ConfigError::Variable {
                name: name.clone(),
                value: value.to_string_lossy().into_owned(),
                message,
            };
            let text = value.to_str().ok_or_else(|| variable_error("not valid UTF-8".to_owned()))?;
            let key = &name["AGENTHUB_".len()..];
            config.apply_variable(key, text).map_err(variable_error)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting's range: timeouts finite, greater than 0 and at most
    /// [`MAX_SECONDS`]; `cleanup_interval` from 0 (off); `max_memory_usage` at most
    /// [`MAX_MEMORY_MIB`]; a known `log_level`; `venv_location` one plain path component;
    /// `python_version` a constraint or a path. [`Self::from_sources`] calls it; call it
    /// again after changing settings (from flags).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.runtime.validate()?;
        self.environment.validate()?;
        check_seconds("install.git_timeout", self.install.git_timeout)?;
        check_seconds("ray.connect_timeout", self.ray.connect_timeout)?;
        let version = &self.ray.version;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
            return Err(invalid(
                "ray.version",
                format!("must be a Ray release such as 2.60.0, got `{version}`"),
            ));
        }
        if !(1..=1024).contains(&self.ray.actors_per_agent) {
            return Err(invalid(
                "ray.actors_per_agent",
                format!("must be a whole number from 1 to 1024, got {}", self.ray.actors_per_agent),
            ));
        }
        if !(self.registry.contains("{ns}") && self.registry.contains("{name}")) {
            return Err(invalid(
                "registry",
                format!(
                    "must be a URL template with {{ns}} and {{name}}, such as {DEFAULT_REGISTRY}, got `{}`",
                    self.registry
                ),
            ));
        }
        Ok(())
    }

    fn apply_variable(&mut self, key: &str, value: &str) -> Result<(), String> {
        let r = &mut self.runtime;
        let e = &mut self.environment;
        match key {
            "MAX_EXECUTION_TIME" => r.max_execution_time = parse_seconds(value)?,
            "MAX_MEMORY_USAGE" => r.max_memory_usage = parse_whole(value, u64::MAX)?,
            "SUBPROCESS_TIMEOUT" => r.subprocess_timeout = parse_seconds(value)?,
            "CLEANUP_INTERVAL" => r.cleanup_interval = parse_seconds(value)?,
            "LOG_LEVEL" => value.clone_into(&mut r.log_level),
            "USE_UV" => r.use_uv = parse_bool(value)?,
            "ENV_BACKEND" => r.env_backend = Some(value.parse()?),
            "MAX_STDOUT_BYTES" => r.max_stdout_bytes = parse_whole(value, u64::MAX)?,
            "KILL_GRACE_PERIOD" => r.kill_grace_period = parse_seconds(value)?,
            "BUILD_TIMEOUT" => r.build_timeout = parse_seconds(value)?,
            "ENV_CLEAR" => r.env_clear = parse_bool(value)?,
            "MAX_CONCURRENCY" => r.max_concurrency = parse_whole(value, usize::MAX)?,
            "KILL_AGENTS_WITH_RUNTIME" => r.kill_agents_with_runtime = parse_bool(value)?,
            "MODE" => r.mode = value.trim().parse()?,
            "WORKERS_PER_AGENT" => r.workers_per_agent = parse_whole(value, 1024)?,
            "MAX_CALLS_PER_WORKER" => r.max_calls_per_worker = parse_whole(value, u64::MAX)?,
            "WORKER_IDLE_TIMEOUT" => r.worker_idle_timeout = parse_seconds(value)?,
            "WORKER_INIT_TIMEOUT" => r.worker_init_timeout = parse_seconds(value)?,
            "WORKER_RECYCLE_MEMORY" => r.worker_recycle_memory = parse_whole(value, u64::MAX)?,
            "WORKER_DISPATCH" => r.worker_dispatch = value.trim().parse()?,
            "ENV_ALLOW" => {
                r.env_allow =
                    value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect();
            }
            "PYTHON_VERSION" => e.python_version = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "VENV_LOCATION" => value.clone_into(&mut e.venv_location),
            "DEPENDENCY_CACHE" => e.dependency_cache = parse_bool(value)?,
            "AUTO_CLEANUP" => e.auto_cleanup = parse_bool(value)?,
            "MAX_VENV_SIZE" => e.max_venv_size = parse_whole(value, u64::MAX)?,
            "RUN_INSTALLATION_COMMANDS" => e.run_installation_commands = parse_bool(value)?,
            "REGISTRY" => value.trim().clone_into(&mut self.registry),
            "AUTO_INSTALL" => self.install.auto_install = Some(parse_bool(value)?),
            "PROVISION_UV" => self.install.provision_uv = parse_bool(value)?,
            "GIT_TIMEOUT" => self.install.git_timeout = parse_seconds(value)?,
            "TARGET" => r.target = value.trim().parse()?,
            "RAY_PYTHON" => {
                self.ray.python = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty());
            }
            "RAY_ACTORS_PER_AGENT" => self.ray.actors_per_agent = parse_whole(value, 1024)?,
            "RAY_CONNECT_TIMEOUT" => self.ray.connect_timeout = parse_seconds(value)?,
            "RAY_VERSION" => value.trim().clone_into(&mut self.ray.version),
            _ => return Err("not a configuration variable".to_owned()),
        }
        Ok(())
    }

    /// Where installed agents live: `<home>/agents`.
    pub fn agents_root(&self) -> PathBuf {
        self.home.join("agents")
    }

    /// The environment directory of the agent in `agent_dir`.
    pub fn venv_dir(&self, agent_dir: &Path) -> PathBuf {
        agent_dir.join(&self.environment.venv_location)
    }
}

/// "Did you mean …" for an unknown variable: the closest known name by edit distance when
/// it is close, else the list.
fn suggest_variable(name: &str) -> String {
    let short = |v: &'static str| v.trim_start_matches("AGENTHUB_");
    let wanted = name.trim_start_matches("AGENTHUB_");
    let known = CONFIG_VARS.iter().chain(&NON_CONFIG_VARS).copied();
    match known.clone().map(|k| (edit_distance(wanted, short(k)), k)).min() {
        Some((distance, k)) if distance <= (short(k).len() / 3).max(1) => format!("Did you mean {k}?"),
        _ => format!(
            "Unset it; known variables: AGENTHUB_ + {}",
            known.map(short).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Levenshtein distance over bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn parse_seconds(value: &str) -> Result<f64, String> {
    value.trim().parse().map_err(|_| "expected a number of seconds".to_owned())
}

fn parse_whole<T: std::str::FromStr>(value: &str, max: impl std::fmt::Display) -> Result<T, String> {
    value.trim().parse().map_err(|_| format!("expected a whole number from 0 to {max}"))
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

#[cfg(test)]
#[expect(clippy::float_cmp, reason = "defaults and parsed values are exact")]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;
    use std::time::Instant;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    fn with_var(name: &str, value: &str) -> Result<Config, ConfigError> {
        Config::from_sources("/h".into(), None, vars(&[(name, value)]))
    }

    fn with_file(text: &str) -> Result<Config, ConfigError> {
        Config::from_sources("/h".into(), Some(text), [])
    }

    #[test]
    fn phase1_defaults() {
        let c = Config::from_sources("/h".into(), None, []).unwrap();
        assert_eq!(c.runtime.max_execution_time, 30.0);
        assert_eq!(c.runtime.max_memory_usage, 1024);
        assert_eq!(c.runtime.subprocess_timeout, 5.0);
        assert_eq!(c.runtime.cleanup_interval, 60.0);
        assert_eq!(c.runtime.build_timeout(), Duration::from_secs(600));
        assert_eq!(c.runtime.log_level, "INFO");
        assert!(c.runtime.use_uv);
        assert_eq!(c.environment.venv_location, ".venv");
        assert!(c.environment.dependency_cache && c.environment.auto_cleanup);
        assert_eq!(c.environment.max_venv_size, 500);
        assert_eq!(c.agents_root(), PathBuf::from("/h/agents"));
        assert_eq!(c.environment.python_request(), None);
    }

    #[test]
    fn variables_override_the_file() {
        let file =
            "runtime:\n  max_execution_time: 10\n  use_uv: false\nenvironment:\n  venv_location: venv\n";
        let vars = vars(&[("AGENTHUB_MAX_EXECUTION_TIME", "2.5"), ("AGENTHUB_BUILD_TIMEOUT", "90")]);
        let c = Config::from_sources("/h".into(), Some(file), vars).unwrap();
        assert_eq!(c.runtime.max_execution_time, 2.5);
        assert!(!c.runtime.use_uv);
        assert_eq!(c.environment.venv_location, "venv");
        assert_eq!(c.runtime.execution_timeout(), Duration::from_millis(2500));
        assert_eq!(c.runtime.build_timeout(), Duration::from_secs(90));
    }

    #[test]
    fn env_allow_list_from_variables() {
        let vars = vars(&[("AGENTHUB_ENV_CLEAR", "1"), ("AGENTHUB_ENV_ALLOW", "OPENAI_API_KEY, HF_HOME,")]);
        let c = Config::from_sources("/h".into(), None, vars).unwrap();
        assert!(c.runtime.env_clear);
        assert_eq!(c.runtime.env_allow, ["OPENAI_API_KEY", "HF_HOME"]);
        assert!(!Config::from_sources("/h".into(), None, []).unwrap().runtime.env_clear);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let err = with_file("runtime:\n  max_exec_time: 3\n").unwrap_err();
        assert!(err.to_string().contains("max_exec_time"), "{err}");
        let err = with_var("AGENTHUB_USE_UV", "maybe").unwrap_err();
        assert_eq!(err.to_string(), "invalid AGENTHUB_USE_UV=maybe: expected true or false");
        let err = with_var("AGENTHUB_MAX_STDOUT_BYTES", "-1").unwrap_err();
        assert!(err.to_string().contains("from 0 to 18446744073709551615"), "{err}");
    }

    #[test]
    fn non_utf8_variables_elsewhere_are_ignored_and_ours_are_named() {
        let foreign = (OsString::from_vec(b"LC_\xff".to_vec()), OsString::from_vec(b"\xfe\xff".to_vec()));
        let other = (OsString::from("PATH_X"), OsString::from_vec(b"\xff".to_vec()));
        assert!(Config::from_sources("/h".into(), None, [foreign, other]).is_ok());
        let ours = (OsString::from("AGENTHUB_LOG_LEVEL"), OsString::from_vec(b"in\xffo".to_vec()));
        let err = Config::from_sources("/h".into(), None, [ours]).unwrap_err();
        assert!(matches!(&err, ConfigError::Variable { name, .. } if name == "AGENTHUB_LOG_LEVEL"), "{err}");
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn unknown_agenthub_variables_are_reported_with_the_closest_name() {
        let err = with_var("AGENTHUB_MAX_EXECUTON_TIME", "3").unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownVariable {
                name: "AGENTHUB_MAX_EXECUTON_TIME".into(),
                suggestion: "Did you mean AGENTHUB_MAX_EXECUTION_TIME?".into()
            }
        );
        assert_eq!(err.suggestion().as_deref(), Some("Did you mean AGENTHUB_MAX_EXECUTION_TIME?"));
        let far = with_var("AGENTHUB_FROBNICATE", "1").unwrap_err();
        assert!(far.suggestion().unwrap().contains("known variables"), "{far:?}");
        for allowed in NON_CONFIG_VARS {
            assert!(with_var(allowed, "x").is_ok(), "{allowed}");
        }
        for name in CONFIG_VARS {
            let err = with_var(name, "\u{1}definitely wrong");
            assert!(!matches!(err, Err(ConfigError::UnknownVariable { .. })), "{name}: {err:?}");
        }
    }

    #[test]
    fn durations_out_of_range_are_usage_errors_naming_key_and_range() {
        let keys = [
            ("MAX_EXECUTION_TIME", "runtime.max_execution_time"),
            ("KILL_GRACE_PERIOD", "runtime.kill_grace_period"),
            ("BUILD_TIMEOUT", "runtime.build_timeout"),
            ("SUBPROCESS_TIMEOUT", "runtime.subprocess_timeout"),
        ];
        for (var, key) in keys {
            for bad in ["0", "-1", "NaN", "inf", "-inf", "1e19"] {
                let err = with_var(&format!("AGENTHUB_{var}"), bad).unwrap_err();
                let ConfigError::Invalid { key: named, message } = &err else {
                    panic!("{var}={bad}: {err:?}")
                };
                assert_eq!(named, key);
                assert!(message.contains("greater than 0 and at most 1000000000"), "{message}");
            }
            assert!(with_var(&format!("AGENTHUB_{var}"), "0.5").is_ok());
        }
        assert!(with_var("AGENTHUB_CLEANUP_INTERVAL", "0").is_ok());
        for bad in ["-1", "NaN", "inf"] {
            let err = with_var("AGENTHUB_CLEANUP_INTERVAL", bad).unwrap_err();
            assert!(err.to_string().contains("runtime.cleanup_interval"), "{err}");
        }
        let err = with_file("runtime:\n  max_execution_time: .inf\n").unwrap_err();
        assert!(err.to_string().starts_with("invalid runtime.max_execution_time"), "{err}");
    }

    #[test]
    fn durations_saturate_even_unvalidated() {
        for value in [f64::INFINITY, f64::NAN, -1.0, 1e300, f64::MAX] {
            let r = RuntimeConfig {
                max_execution_time: value,
                kill_grace_period: value,
                build_timeout: value,
                subprocess_timeout: value,
                cleanup_interval: value,
                ..RuntimeConfig::default()
            };
            for d in [r.execution_timeout(), r.grace_period(), r.build_timeout(), r.subprocess_timeout()] {
                assert!(d <= Duration::from_secs_f64(MAX_SECONDS));
                let _ = Instant::now() + d;
            }
            let _ = r.cleanup_interval();
        }
        let off = RuntimeConfig { cleanup_interval: 0.0, ..RuntimeConfig::default() };
        assert_eq!(off.cleanup_interval(), None);
    }

    #[test]
    fn memory_cap_never_wraps() {
        let err = with_var("AGENTHUB_MAX_MEMORY_USAGE", "17592186044416").unwrap_err();
        assert!(err.to_string().contains("from 0 (no cap) to 17592186044415"), "{err}");
        let max = with_var("AGENTHUB_MAX_MEMORY_USAGE", "17592186044415").unwrap();
        assert_eq!(max.runtime.memory_limit_bytes(), Some(17_592_186_044_415 * 1024 * 1024));
        let unchecked = RuntimeConfig { max_memory_usage: u64::MAX, ..RuntimeConfig::default() };
        assert_eq!(unchecked.memory_limit_bytes(), Some(u64::MAX));
        assert_eq!(with_var("AGENTHUB_MAX_MEMORY_USAGE", "0").unwrap().runtime.memory_limit_bytes(), None);
    }

    #[test]
    fn venv_location_is_one_plain_component() {
        for good in [".venv", "venv", "env-3.11"] {
            assert!(with_var("AGENTHUB_VENV_LOCATION", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "/tmp/x", "a/b", "a/", "./a", "../x", "a\0b"] {
            let err = with_var("AGENTHUB_VENV_LOCATION", bad).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key, .. } if key == "environment.venv_location"),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn log_level_must_be_known() {
        for good in ["INFO", "warn", "Trace", "error", "debug"] {
            assert!(with_var("AGENTHUB_LOG_LEVEL", good).is_ok(), "{good}");
        }
        let err = with_var("AGENTHUB_LOG_LEVEL", "verbose").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid runtime.log_level: must be one of error, warn, info, debug, trace, got `verbose`"
        );
    }

    #[test]
    fn python_version_is_parsed_once_into_a_request() {
        let c = with_var("AGENTHUB_PYTHON_VERSION", "3.11+").unwrap();
        let Some(PythonRequest::Version(v)) = c.environment.python_request() else { panic!() };
        assert!(v.allows(3, 12, 0) && !v.allows(3, 10, 0));
        for path in ["/usr/bin/python3", "./py/bin/python", "bin/python", ".venv/bin/python"] {
            let c = with_var("AGENTHUB_PYTHON_VERSION", path).unwrap();
            assert_eq!(c.environment.python_request(), Some(PythonRequest::Path(path.into())), "{path}");
        }
        if let Some(home) = std::env::home_dir() {
            let c = with_var("AGENTHUB_PYTHON_VERSION", "~/py/bin/python").unwrap();
            assert_eq!(c.environment.python_request(), Some(PythonRequest::Path(home.join("py/bin/python"))));
        }
        let err = with_var("AGENTHUB_PYTHON_VERSION", "python3.11").unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "environment.python_version"),
            "{err:?}"
        );
    }

    #[test]
    fn config_file_is_read_the_same_way_from_any_home() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = tmp.path().join("ok");
        std::fs::create_dir(&ok).unwrap();
        std::fs::write(ok.join("config.yaml"), "runtime:\n  max_execution_time: 7\n").unwrap();
        assert_eq!(Config::load_from(Some(ok.clone())).unwrap().runtime.max_execution_time, 7.0);

        let linked = tmp.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(ok.join("config.yaml"), linked.join("config.yaml")).unwrap();
        assert_eq!(Config::load_from(Some(linked)).unwrap().runtime.max_execution_time, 7.0);

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(Config::load_from(Some(empty.clone())).unwrap().home, empty);

        let fifo = tmp.path().join("fifo");
        std::fs::create_dir(&fifo).unwrap();
        let c = std::ffi::CString::new(fifo.join("config.yaml").into_os_string().into_vec()).unwrap();
        // SAFETY: mkfifo reads a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let dir = tmp.path().join("dir");
        std::fs::create_dir_all(dir.join("config.yaml")).unwrap();
        let big = tmp.path().join("big");
        std::fs::create_dir(&big).unwrap();
        std::fs::write(big.join("config.yaml"), format!("# {}\n", "x".repeat(2 << 20))).unwrap();
        let zero = tmp.path().join("zero");
        std::fs::create_dir(&zero).unwrap();
        std::os::unix::fs::symlink("/dev/zero", zero.join("config.yaml")).unwrap();
        for (home, want) in
            [(fifo, "a FIFO"), (dir, "a directory"), (big, "larger than 1048576 bytes"), (zero, "a device")]
        {
            let started = Instant::now();
            let err = Config::load_from(Some(home.clone())).unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(5));
            assert!(
                matches!(&err, ConfigError::Unreadable { path, .. } if *path == home.join("config.yaml")),
                "{err:?}"
            );
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
