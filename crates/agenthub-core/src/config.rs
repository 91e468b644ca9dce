//! Configuration (SPEC §6): Phase-1 defaults, then `<home>/config.yaml`, then `AGENTHUB_*`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// Runtime limits and behaviour (`RuntimeConfig` of the Phase-1 design).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Wall-clock limit of one execution, in seconds.
    pub max_execution_time: f64,
    /// Resident-memory cap of one agent, in MB (MiB).
    pub max_memory_usage: u64,
    /// Limit for spawning an agent, in seconds.
    pub subprocess_timeout: f64,
    /// How often a long-lived runtime sweeps stale processes, in seconds.
    pub cleanup_interval: f64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub log_level: String,
    /// Prefer uv for environments when it is on PATH.
    pub use_uv: bool,
    /// Force an environment backend (overrides `use_uv`).
    pub env_backend: Option<EnvBackendKind>,
    /// Cap on an agent's stdout, in bytes.
    pub max_stdout_bytes: u64,
    /// How long a timed-out agent gets between SIGTERM and SIGKILL, in seconds.
    pub kill_grace_period: f64,
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
}

/// Variables agents always get from the caller when `env_clear` is on: none is a secret,
/// and tools break without them.
pub const BASE_ENV_VARS: [&str; 8] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ"];

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
            env_clear: false,
            env_allow: Vec::new(),
            max_concurrency: 0,
            kill_agents_with_runtime: false,
        }
    }
}

impl RuntimeConfig {
    /// `max_execution_time` as a duration.
    pub fn execution_timeout(&self) -> Duration {
        secs(self.max_execution_time)
    }

    /// `max_memory_usage` in bytes; 0 means no cap.
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        (self.max_memory_usage > 0).then(|| self.max_memory_usage * 1024 * 1024)
    }

    /// `max_concurrency`, with 0 resolved to twice the available CPUs.
    pub fn concurrency_limit(&self) -> usize {
        match self.max_concurrency {
            0 => std::thread::available_parallelism().map_or(2, std::num::NonZero::get) * 2,
            n => n,
        }
    }

    /// `kill_grace_period` as a duration.
    pub fn grace_period(&self) -> Duration {
        secs(self.kill_grace_period)
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

/// Environment management (`EnvironmentConfig` of the Phase-1 design).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Python to build with: a version (`3.11`) or a path; none = the manifest's
    /// constraint, else the `python3` on PATH.
    pub python_version: Option<String>,
    /// Name of the environment directory inside the agent directory.
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

/// All configuration, with the home directory it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// `$AGENTHUB_HOME`, default `~/.agenthub`.
    pub home: PathBuf,
    /// Runtime settings.
    pub runtime: RuntimeConfig,
    /// Environment settings.
    pub environment: EnvironmentConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    runtime: RuntimeConfig,
    environment: EnvironmentConfig,
}

/// Why configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No `$AGENTHUB_HOME` and no home directory.
    #[error("cannot find a home directory; set AGENTHUB_HOME")]
    NoHome,
    /// The config file exists but could not be read or parsed.
    #[error("invalid {}: {message}", path.display())]
    File {
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
        /// Its value.
        value: String,
        /// What was expected.
        message: String,
    },
}

impl Config {
    /// Loads configuration from the process environment and `<home>/config.yaml`.
    pub fn load() -> Result<Self, ConfigError> {
        let home = match std::env::var_os("AGENTHUB_HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home),
            None => std::env::home_dir().ok_or(ConfigError::NoHome)?.join(".agenthub"),
        };
        let path = home.join("config.yaml");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ConfigError::File { path, message: e.to_string() }),
        };
        Self::from_sources(home, text.as_deref(), std::env::vars())
    }

    /// Builds configuration from a home, the config file's text, and variables.
    pub fn from_sources(
        home: PathBuf,
        file: Option<&str>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parsed: ConfigFile = match file.map(str::trim) {
            None | Some("") => ConfigFile::default(),
            Some(text) => serde_yaml::from_str(text)
                .map_err(|e| ConfigError::File { path: home.join("config.yaml"), message: e.to_string() })?,
        };
        let mut config = Self { home, runtime: parsed.runtime, environment: parsed.environment };
        for (name, value) in vars {
            if let Some(key) = name.strip_prefix("AGENTHUB_") {
                config.apply_variable(key, &value).map_err(|message| ConfigError::Variable {
                    name: name.clone(),
                    value: value.clone(),
                    message,
                })?;
            }
        }
        Ok(config)
    }

    fn apply_variable(&mut self, key: &str, value: &str) -> Result<(), String> {
        let r = &mut self.runtime;
        let e = &mut self.environment;
        match key {
            "MAX_EXECUTION_TIME" => r.max_execution_time = parse(value)?,
            "MAX_MEMORY_USAGE" => r.max_memory_usage = parse(value)?,
            "SUBPROCESS_TIMEOUT" => r.subprocess_timeout = parse(value)?,
            "CLEANUP_INTERVAL" => r.cleanup_interval = parse(value)?,
            "LOG_LEVEL" => value.clone_into(&mut r.log_level),
            "USE_UV" => r.use_uv = parse_bool(value)?,
            "ENV_BACKEND" => r.env_backend = Some(value.parse()?),
            "MAX_STDOUT_BYTES" => r.max_stdout_bytes = parse(value)?,
            "KILL_GRACE_PERIOD" => r.kill_grace_period = parse(value)?,
            "ENV_CLEAR" => r.env_clear = parse_bool(value)?,
            "MAX_CONCURRENCY" => r.max_concurrency = parse(value)?,
            "ENV_ALLOW" => {
                r.env_allow =
                    value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect();
            }
            "PYTHON_VERSION" => e.python_version = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "VENV_LOCATION" => value.clone_into(&mut e.venv_location),
            "DEPENDENCY_CACHE" => e.dependency_cache = parse_bool(value)?,
            "AUTO_CLEANUP" => e.auto_cleanup = parse_bool(value)?,
            "MAX_VENV_SIZE" => e.max_venv_size = parse(value)?,
            "RUN_INSTALLATION_COMMANDS" => e.run_installation_commands = parse_bool(value)?,
            _ => {} // AGENTHUB_HOME and variables of other tools.
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

fn parse<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value.trim().parse().map_err(|_| "expected a number".to_owned())
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

    #[test]
    fn phase1_defaults() {
        let c = Config::from_sources("/h".into(), None, []).unwrap();
        assert_eq!(c.runtime.max_execution_time, 30.0);
        assert_eq!(c.runtime.max_memory_usage, 1024);
        assert_eq!(c.runtime.subprocess_timeout, 5.0);
        assert_eq!(c.runtime.cleanup_interval, 60.0);
        assert_eq!(c.runtime.log_level, "INFO");
        assert!(c.runtime.use_uv);
        assert_eq!(c.environment.venv_location, ".venv");
        assert!(c.environment.dependency_cache && c.environment.auto_cleanup);
        assert_eq!(c.environment.max_venv_size, 500);
        assert_eq!(c.agents_root(), PathBuf::from("/h/agents"));
    }

    #[test]
    fn variables_override_the_file() {
        let file =
            "runtime:\n  max_execution_time: 10\n  use_uv: false\nenvironment:\n  venv_location: venv\n";
        let vars = [("AGENTHUB_MAX_EXECUTION_TIME".to_owned(), "2.5".to_owned())];
        let c = Config::from_sources("/h".into(), Some(file), vars).unwrap();
        assert_eq!(c.runtime.max_execution_time, 2.5);
        assert!(!c.runtime.use_uv);
        assert_eq!(c.environment.venv_location, "venv");
        assert_eq!(c.runtime.execution_timeout(), Duration::from_millis(2500));
    }

    #[test]
    fn env_allow_list_from_variables() {
        let vars = [
            ("AGENTHUB_ENV_CLEAR".to_owned(), "1".to_owned()),
            ("AGENTHUB_ENV_ALLOW".to_owned(), "OPENAI_API_KEY, HF_HOME,".to_owned()),
        ];
        let c = Config::from_sources("/h".into(), None, vars).unwrap();
        assert!(c.runtime.env_clear);
        assert_eq!(c.runtime.env_allow, ["OPENAI_API_KEY", "HF_HOME"]);
        assert!(!Config::from_sources("/h".into(), None, []).unwrap().runtime.env_clear);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let err = Config::from_sources("/h".into(), Some("runtime:\n  max_exec_time: 3\n"), []).unwrap_err();
        assert!(err.to_string().contains("max_exec_time"), "{err}");
        let vars = [("AGENTHUB_USE_UV".to_owned(), "maybe".to_owned())];
        let err = Config::from_sources("/h".into(), None, vars).unwrap_err();
        assert_eq!(err.to_string(), "invalid AGENTHUB_USE_UV=maybe: expected true or false");
    }
}
