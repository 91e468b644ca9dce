//! Configuration (SPEC §6): Phase-1 defaults, then `<home>/config.yaml`, then `AGENTHUB_*`.
//!
//! Every setting is declared once, in `settings.rs` (see `setting.rs` for the macro): the
//! section structs, their defaults, [`CONFIG_VARS`], how variables apply, the range checks
//! of [`Config::validate`], the "did you mean" for unknown variables and the README's table
//! all come from there.

mod setting;
mod settings;
mod types;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent_file::{open_regular, read_bounded};
use crate::text::edit_distance;
use setting::Rejected;

pub(crate) use settings::SETTINGS;
pub use settings::{CONFIG_VARS, EnvironmentConfig, HistoryConfig, InstallConfig, RayConfig, RuntimeConfig};
pub use types::{
    AgentGrants, AgentTools, EnvBackendKind, ExecutionMode, ExecutionTarget, LogLevel, PythonRequest,
    Seconds, ToolAssignment, WorkerDispatch, parse_agent_tool,
};

/// The Ray version agenthub's own driver Python gets by default.
pub const DEFAULT_RAY_VERSION: &str = "2.60.0";

/// Variables agents always get from the caller when `env_clear` is on: none is a secret,
/// and tools break without them.
pub const BASE_ENV_VARS: [&str; 8] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ"];

/// `AGENTHUB_*` variables other parts of agenthub read: allowed, not configuration.
pub const NON_CONFIG_VARS: [&str; 9] = [
    "AGENTHUB_HOME",
    "AGENTHUB_RUN_ID",
    "AGENTHUB_BIN",
    "AGENTHUB_CALL_ID",
    // What an agent with tools is given (SPEC §9): an agent that runs agenthub itself
    // passes them on.
    "AGENTHUB_MCP_HOST",
    "AGENTHUB_MCP_PORT",
    "AGENTHUB_MCP_PROTOCOL",
    "AGENTHUB_MCP_URL",
    "AGENTHUB_MCP_TOKEN",
];

/// The longest duration configuration accepts, in seconds (about 31 years): far from where
/// `Instant + duration` could overflow.
pub const MAX_SECONDS: f64 = 1e9;

/// `max_memory_usage` above this many MiB would overflow when converted to bytes.
pub const MAX_MEMORY_MIB: u64 = u64::MAX / (1024 * 1024);

/// The configuration reference as a Markdown table (key, variable, default, what it
/// accepts, what it does), one row per setting: the README's table.
pub fn configuration_table() -> String {
    setting::markdown_table(SETTINGS)
}

/// The largest `config.yaml` read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl RuntimeConfig {
    /// `worker_recycle_memory` in bytes; `None` when off.
    pub fn worker_recycle_bytes(&self) -> Option<u64> {
        (self.worker_recycle_memory > 0).then(|| self.worker_recycle_memory.saturating_mul(1024 * 1024))
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
}

impl EnvironmentConfig {
    /// `python_version` parsed: `None` when it is not set (or, before [`Config::validate`]
    /// has passed, when it does not parse).
    pub fn python_request(&self) -> Option<PythonRequest> {
        self.python_version.as_deref().and_then(|v| PythonRequest::parse(v).ok())
    }
}

/// The default registry template: `ns/name` is a GitHub repository.
pub const DEFAULT_REGISTRY: &str = "https://github.com/{ns}/{name}.git";

impl InstallConfig {
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
    /// Run history.
    pub history: HistoryConfig,
    /// What the user grants installed agents beyond their declaration, by `ns/name`
    /// (`grants:` in config.yaml); see [`Config::grants_for`].
    pub grants: AgentGrants,
    /// The tools each installed agent gets, by `ns/name` (`tools:` in config.yaml); see
    /// [`Config::tools_for`].
    pub tools: AgentTools,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    runtime: RuntimeConfig,
    environment: EnvironmentConfig,
    registry: String,
    install: InstallConfig,
    ray: RayConfig,
    history: HistoryConfig,
    grants: AgentGrants,
    tools: AgentTools,
}

impl Default for ConfigFile {
    fn default() -> Self {
        Self {
            runtime: RuntimeConfig::default(),
            environment: EnvironmentConfig::default(),
            registry: DEFAULT_REGISTRY.to_owned(),
            install: InstallConfig::default(),
            ray: RayConfig::default(),
            history: HistoryConfig::default(),
            grants: AgentGrants::new(),
            tools: AgentTools::new(),
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
        let parsed: ConfigFile = match file.filter(|text| !text.trim().is_empty()) {
            None => ConfigFile::default(),
            Some(text) => {
                let file_error = |message| ConfigError::File { path: home.join("config.yaml"), message };
                // serde names a duplicate key without its line (at the top) or with its
                // mapping's: the tree reader says where the second one is.
                if let Err(crate::yaml::YamlError::Syntax(message)) = crate::yaml::parse_document(text)
                    && message.starts_with("duplicate key")
                {
                    return Err(file_error(message));
                }
                serde_yaml::from_str(text).map_err(|e| file_error(closest_field(&e.to_string())))?
            }
        };
        let mut config = Self {
            home,
            runtime: parsed.runtime,
            environment: parsed.environment,
            registry: parsed.registry,
            install: parsed.install,
            ray: parsed.ray,
            history: parsed.history,
            grants: parsed.grants,
            tools: parsed.tools,
        };
        for (name, value) in vars {
            if !name.as_encoded_bytes().starts_with(b"AGENTHUB_") {
                continue;
            }
            let name = name.to_string_lossy().into_owned();
            if NON_CONFIG_VARS.contains(&name.as_str()) {
                continue;
            }
            let Some(setting) = SETTINGS.iter().find(|s| s.var == Some(name.as_str())) else {
                let suggestion = suggest_variable(&name);
                return Err(ConfigError::UnknownVariable { name, suggestion });
            };
            let variable_error = |message: String| ConfigError::Variable {
                name: name.clone(),
                value: value.to_string_lossy().into_owned(),
                message,
            };
            let text = value.to_str().ok_or_else(|| variable_error("not valid UTF-8".to_owned()))?;
            (setting.apply)(&mut config, text).map_err(|rejected| match rejected {
                Rejected::Value(message) => variable_error(message),
                Rejected::Range(message) => invalid(setting.key, message),
            })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting's range, as declared in `settings.rs`, in declaration order:
    /// timeouts finite, greater than 0 and at most [`MAX_SECONDS`]; `cleanup_interval`
    /// from 0 (off); `max_memory_usage` at most [`MAX_MEMORY_MIB`]; `venv_location` one
    /// plain path component; `python_version` a constraint or a path; and so on.
    /// [`Self::from_sources`] calls it; call it again after changing settings (from flags).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for setting in SETTINGS {
            (setting.check)(self).map_err(|message| invalid(setting.key, message))?;
        }
        Ok(())
    }

    /// Sets one setting by its config.yaml key (`runtime.max_execution_time`), from text
    /// as its `AGENTHUB_*` variable would give it, then checks its range. For embedders
    /// that take settings by name (the Python package's keyword arguments). An unknown key
    /// is an error naming the closest one.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
            let closest = SETTINGS.iter().map(|s| (edit_distance(key, s.key), s.key)).min();
            let message = match closest {
                Some((distance, k)) if distance <= (k.len() / 3).max(1) => {
                    format!("no such setting; did you mean {k}?")
                }
                _ => "no such setting (`agenthub doctor` and the README list them)".to_owned(),
            };
            return Err(invalid(key, message));
        };
        (setting.apply)(self, value).map_err(|rejected| match rejected {
            Rejected::Value(message) | Rejected::Range(message) => invalid(setting.key, message),
        })?;
        (setting.check)(self).map_err(|message| invalid(setting.key, message))
    }

    /// Where installed agents live: `<home>/agents`.
    pub fn agents_root(&self) -> PathBuf {
        self.home.join("agents")
    }

    /// The tools config.yaml gives the installed agent `id` (none when it has no entry).
    pub fn tools_for(&self, id: &crate::AgentId) -> ToolAssignment {
        self.tools.get(&id.to_string()).cloned().unwrap_or_default()
    }

    /// What config.yaml grants the installed agent `id` (nothing when it has no entry).
    pub fn grants_for(&self, id: &crate::AgentId) -> crate::Grants {
        self.grants.get(&id.to_string()).cloned().unwrap_or_default()
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

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), message }
}

/// serde's "unknown field `x`, expected one of `a`, `b`, …" with the one close name in place
/// of the whole list ("did you mean" and the name), as unknown variables are told;
/// the list stays when no name is close. The position serde gives is kept.
fn closest_field(message: &str) -> String {
    let Some((before, rest)) = message.split_once("unknown field `") else { return message.to_owned() };
    let Some((field, rest)) = rest.split_once('`') else { return message.to_owned() };
    let Some(list) = rest.strip_prefix(", expected one of ") else { return message.to_owned() };
    let (list, position) = list.split_once(" at line ").map_or((list, None), |(l, p)| (l, Some(p)));
    let known = list.split(", ").map(|k| k.trim_matches('`'));
    let Some(close) = crate::text::closest_name(field, known) else { return message.to_owned() };
    let position = position.map(|p| format!(" at line {p}")).unwrap_or_default();
    format!("{before}unknown field `{field}`, did you mean `{close}`?{position}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_configuration_sample_loads() {
        let readme = include_str!("../../../../README.md");
        let section = &readme[readme.find("## Configuration").unwrap()..];
        let sample = section.split("```yaml\n").nth(1).unwrap().split("```").next().unwrap();
        let config = with_file(sample).unwrap_or_else(|e| panic!("README's sample: {e}"));
        assert_eq!(config.runtime.mode, ExecutionMode::Warm);
        let id: crate::AgentId = "acme/summarizer".parse().unwrap();
        assert_eq!(config.grants_for(&id).net, [crate::HostPattern::parse("localhost:11434").unwrap()]);
        assert!(config.grants_for(&"acme/other".parse().unwrap()).is_empty());
    }

    #[test]
    fn settings_are_set_by_key_and_checked() {
        let mut config = with_file("").unwrap();
        config.set("runtime.max_execution_time", "2.5").unwrap();
        assert_eq!(config.runtime.max_execution_time, Seconds::new(2.5));
        config.set("runtime.mode", "warm").unwrap();
        assert_eq!(config.runtime.mode, ExecutionMode::Warm);
        let err = config.set("runtime.max_execution_time", "-1").unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "runtime.max_execution_time"),
            "{err}"
        );
        let err = config.set("runtime.max_execution_tim", "1").unwrap_err();
        assert!(err.to_string().contains("did you mean runtime.max_execution_time"), "{err}");
        assert!(config.set("runtime.mode", "sideways").is_err());
    }

    #[test]
    fn tools_per_agent() {
        let config =
            with_file("tools:\n  acme/analyst:\n    agents: [acme/calc.add, acme/search]\n    mcp_servers: /srv/mcp.json\n")
                .unwrap();
        let id: crate::AgentId = "acme/analyst".parse().unwrap();
        let tools = config.tools_for(&id);
        assert_eq!(tools.agents, ["acme/calc.add", "acme/search"]);
        assert_eq!(tools.mcp_servers.as_deref(), Some(Path::new("/srv/mcp.json")));
        assert!(config.tools_for(&"acme/other".parse().unwrap()).is_empty());
        let err = with_file("tools:\n  not-an-id:\n    agents: [a/b]\n").unwrap_err();
        assert!(err.to_string().contains("`not-an-id` is not an agent id"), "{err}");
        let err = with_file("tools:\n  a/b:\n    agents: [calc]\n").unwrap_err();
        assert!(err.to_string().contains("`calc` is not an agent tool"), "{err}");
        let err = with_file("tools:\n  a/b:\n    agent: [c/d]\n").unwrap_err();
        assert!(err.to_string().contains("agent"), "{err}");
        assert_eq!(crate::parse_agent_tool("acme/calc.add").unwrap().1.as_deref(), Some("add"));
        assert_eq!(crate::parse_agent_tool("acme/calc").unwrap().1, None);
    }

    #[test]
    fn sandbox_mode_and_grants() {
        assert_eq!(
            with_var("AGENTHUB_SANDBOX", "strict").unwrap().runtime.sandbox_mode,
            crate::SandboxMode::Strict
        );
        let err = with_var("AGENTHUB_SANDBOX", "strikt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid AGENTHUB_SANDBOX=strikt: unknown sandbox mode `strikt` (did you mean `strict`? use default, strict or off)"
        );
        assert_eq!(
            with_file("runtime:\n  sandbox_mode: off\n").unwrap().runtime.sandbox_mode,
            crate::SandboxMode::Off
        );
        let err = with_file("grants:\n  not-an-id:\n    env: [A]\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, message } if key == "grants" && message.contains("`not-an-id` is not an agent id")),
            "{err:?}"
        );
        let err = with_file("grants:\n  a/b:\n    net: [localhost]\n").unwrap_err();
        assert!(err.to_string().contains("name the port it may reach"), "{err}");
        let err = with_file("grants:\n  a/b:\n    env: [A-B]\n").unwrap_err();
        assert!(err.to_string().contains("invalid grants: a/b: `A-B` is not a variable name"), "{err}");
        let err = with_file("grants:\n  a/b:\n    reed: [x]\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `reed`, did you mean `read`?"), "{err}");
    }

    #[test]
    fn an_unknown_key_names_the_closest_one() {
        let err = with_file("runtime:\n  max_execuiton_time: 5\n").unwrap_err().to_string();
        assert!(
            err.contains("unknown field `max_execuiton_time`, did you mean `max_execution_time`? at line 2"),
            "{err}"
        );
        assert!(!err.contains("worker_dispatch"), "{err}");
        let err = with_file("runtim:\n  max_execution_time: 5\n").unwrap_err().to_string();
        assert!(err.contains("did you mean `runtime`?"), "{err}");
        // Nothing close: the list stays.
        let err = with_file("runtime:\n  zzzzzz: 5\n").unwrap_err().to_string();
        assert!(err.contains("expected one of `max_execution_time`"), "{err}");
    }

    use super::*;
    use std::os::unix::ffi::OsStringExt;
    use std::time::{Duration, Instant};

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
    fn a_duplicate_key_is_named_with_its_line() {
        let err = with_file("# settings\ninstall:\n  git_timeout: 5\ninstall:\n  provision_uv: false\n")
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid /h/config.yaml: duplicate key `install` at line 4 column 1");
        let err = with_file("runtime:\n  log_level: info\n  mode: warm\n  log_level: warn\n").unwrap_err();
        assert_eq!(err.to_string(), "invalid /h/config.yaml: duplicate key `log_level` at line 4 column 3");
    }

    #[test]
    fn phase1_defaults() {
        let c = Config::from_sources("/h".into(), None, []).unwrap();
        assert_eq!(c.runtime.max_execution_time, Seconds::new(30.0));
        assert_eq!(c.runtime.max_memory_usage, 1024);
        assert_eq!(c.runtime.subprocess_timeout, Seconds::new(5.0));
        assert_eq!(c.runtime.cleanup_interval, Seconds::new(60.0));
        assert_eq!(c.runtime.build_timeout.as_duration(), Duration::from_secs(600));
        assert_eq!(c.runtime.log_level, LogLevel::Info);
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
        assert_eq!(c.runtime.max_execution_time, Seconds::new(2.5));
        assert!(!c.runtime.use_uv);
        assert_eq!(c.environment.venv_location, "venv");
        assert_eq!(c.runtime.max_execution_time.as_duration(), Duration::from_millis(2500));
        assert_eq!(c.runtime.build_timeout.as_duration(), Duration::from_secs(90));
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
            let value = Seconds::new(value);
            let r = RuntimeConfig {
                max_execution_time: value,
                kill_grace_period: value,
                build_timeout: value,
                subprocess_timeout: value,
                cleanup_interval: value,
                ..RuntimeConfig::default()
            };
            for s in [r.max_execution_time, r.kill_grace_period, r.build_timeout, r.subprocess_timeout] {
                let d = s.as_duration();
                assert!(d <= Duration::from_secs_f64(MAX_SECONDS));
                let _ = Instant::now() + d;
            }
            let _ = r.cleanup_interval.as_duration();
        }
        let off = RuntimeConfig { cleanup_interval: Seconds::new(0.0), ..RuntimeConfig::default() };
        assert!(off.cleanup_interval.as_duration().is_zero());
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
        assert_eq!(
            Config::load_from(Some(ok.clone())).unwrap().runtime.max_execution_time,
            Seconds::new(7.0)
        );

        let linked = tmp.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(ok.join("config.yaml"), linked.join("config.yaml")).unwrap();
        assert_eq!(Config::load_from(Some(linked)).unwrap().runtime.max_execution_time, Seconds::new(7.0));

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
    fn log_level_is_read_in_any_case_from_file_and_variable() {
        assert_eq!(with_file("runtime:\n  log_level: Debug\n").unwrap().runtime.log_level, LogLevel::Debug);
        assert_eq!(with_var("AGENTHUB_LOG_LEVEL", "WARN").unwrap().runtime.log_level, LogLevel::Warn);
        let err = with_file("runtime:\n  log_level: verbose\n").unwrap_err();
        assert!(
            err.to_string().contains("must be one of error, warn, info, debug, trace, got `verbose`"),
            "{err}"
        );
    }

    #[test]
    fn seconds_read_integers_and_fractions_and_print_as_written() {
        let c = with_file("runtime:\n  max_execution_time: 30\n  kill_grace_period: 30.5\n").unwrap();
        assert_eq!(c.runtime.max_execution_time.as_duration(), Duration::from_secs(30));
        assert_eq!(c.runtime.kill_grace_period.as_duration(), Duration::from_millis(30_500));
        assert_eq!(c.runtime.kill_grace_period.to_string(), "30.5");
        assert_eq!(serde_json::to_value(c.runtime.max_execution_time).unwrap(), serde_json::json!(30.0));
        let err = with_file("runtime:\n  max_execution_time: soon\n").unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err:?}");
    }

    /// Every declared key is where serde reads it, and its default there is the declared one.
    #[test]
    fn every_setting_is_declared_once_and_where_the_file_has_it() {
        let defaults = serde_json::to_value(Config::from_sources("/h".into(), None, []).unwrap()).unwrap();
        let mut vars = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for s in SETTINGS {
            assert!(keys.insert(s.key), "{} declared twice", s.key);
            if let Some(var) = s.var {
                assert!(var.starts_with("AGENTHUB_") && vars.insert(var), "{var}");
            }
            let value = s.key.split('.').fold(&defaults, |v, k| &v[k]);
            assert_eq!(setting::show(value), (s.default)(), "{}", s.key);
            let yaml = match s.key.split_once('.') {
                Some((section, field)) => format!("{section}:\n  {field}: {value}\n"),
                None => format!("{}: {value}\n", s.key),
            };
            assert!(with_file(&yaml).is_ok(), "{yaml}");
            assert!(!s.doc.is_empty() && !s.doc.contains('\n'), "{}", s.key);
            // The README's ranges are written out; they must say what the checks do.
            if s.accepts.starts_with("seconds,") {
                assert!(s.accepts.ends_with(&format!("{MAX_SECONDS:.0}")), "{}", s.key);
            }
            if s.accepts.starts_with("MiB,") {
                assert!(s.accepts.ends_with(&MAX_MEMORY_MIB.to_string()), "{}", s.key);
            }
        }
        assert_eq!(CONFIG_VARS.len(), vars.len());
        assert!(CONFIG_VARS.iter().all(|v| vars.contains(v)));
    }

    const README_BEGIN: &str =
        "<!-- configuration-table:begin (generated from crates/agenthub-core/src/config/settings.rs) -->\n";
    const README_END: &str = "<!-- configuration-table:end -->";

    /// The README's table is the one the declarations make; `UPDATE_README=1` rewrites it.
    #[test]
    fn readme_has_the_generated_configuration_table() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (Some(begin), Some(end)) = (readme.find(README_BEGIN), readme.find(README_END)) else {
            panic!("README.md lacks the configuration-table markers")
        };
        let start = begin + README_BEGIN.len();
        let table = configuration_table();
        if readme[start..end] == table {
            return;
        }
        if std::env::var_os("UPDATE_README").is_some() {
            std::fs::write(&path, format!("{}{table}{}", &readme[..start], &readme[end..])).unwrap();
            return;
        }
        panic!(
            "README.md's configuration table is not the generated one; run \
             `UPDATE_README=1 cargo test -p agenthub-core readme`. Expected:\n{table}"
        );
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
