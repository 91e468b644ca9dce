//! The types settings have: the closed sets (`EnvBackendKind`, `ExecutionMode`, …), units
//! (`Seconds`) and `PythonRequest`. Each says how it is read from a variable (`FromVar`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MAX_SECONDS;
use super::setting::{FromVar, Rejected};
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

/// How calls run: a fresh interpreter per call, warm workers that import the agent once, or
/// a fork of such a worker per call.
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
    /// A warm worker per agent version imports the agent once (the *zygote*) and each call
    /// runs in a fresh fork of it that exits after the call: nothing a call does is seen by
    /// the next (docs/design/workers.md). An agent whose import leaves threads running is
    /// served warm instead.
    Isolated,
}

impl std::str::FromStr for ExecutionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "oneshot" => Ok(Self::Oneshot),
            "warm" => Ok(Self::Warm),
            "isolated" => Ok(Self::Isolated),
            other => Err(format!("unknown mode `{other}` (use oneshot, warm or isolated)")),
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

/// `grants` in config.yaml: what the user grants each installed agent (by `ns/name`).
pub type AgentGrants = std::collections::BTreeMap<String, crate::Grants>;

impl FromVar for AgentGrants {
    const ACCEPTS: &'static str = "per-agent grants (config.yaml only)";

    fn from_var(_: &str) -> Result<Self, Rejected> {
        Err(Rejected::Value("grants are set in config.yaml only".to_owned()))
    }
}

/// `tools` in config.yaml: the tools each installed agent gets (by `ns/name`).
pub type AgentTools = std::collections::BTreeMap<String, ToolAssignment>;

/// The tools one agent gets (`tools: {ns/name: ...}` in config.yaml; `--tool` and
/// `--tools-from` on the command line).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolAssignment {
    /// Other agents' methods: `ns/name` (every method) or `ns/name.method`.
    pub agents: Vec<String>,
    /// An `{"mcpServers": {...}}` file whose servers' tools the agent gets.
    pub mcp_servers: Option<std::path::PathBuf>,
}

impl ToolAssignment {
    /// Whether it assigns nothing.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.mcp_servers.is_none()
    }

    /// Checks every agent tool names an id (and a method name when it has one).
    pub fn check(&self) -> Result<(), String> {
        for tool in &self.agents {
            parse_agent_tool(tool)?;
        }
        Ok(())
    }
}

/// `ns/name` or `ns/name.method`: the agent id and the method, if one is named.
pub fn parse_agent_tool(tool: &str) -> Result<(crate::AgentId, Option<String>), String> {
    let (id, method) = match tool.rsplit_once('.') {
        // `ns/name.method`, unless the dot is inside the name (`ns/my.agent` has no method
        // after a `/`-free tail only when the tail is a valid method name).
        Some((id, method))
            if id.contains('/')
                && !method.is_empty()
                && method.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && id.parse::<crate::AgentId>().is_ok() =>
        {
            (id, Some(method.to_owned()))
        }
        _ => (tool, None),
    };
    let id = id.parse::<crate::AgentId>().map_err(|e| {
        format!("`{tool}` is not an agent tool ({e}): write `ns/name` for every method or `ns/name.method` for one")
    })?;
    Ok((id, method))
}

impl FromVar for AgentTools {
    const ACCEPTS: &'static str = "per-agent tools (config.yaml only)";

    fn from_var(_: &str) -> Result<Self, Rejected> {
        Err(Rejected::Value("tools are set in config.yaml only".to_owned()))
    }
}

impl FromVar for crate::SandboxMode {
    const ACCEPTS: &'static str = "`default`, `strict` or `off`";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(value.parse()?)
    }
}

impl FromVar for Option<EnvBackendKind> {
    const ACCEPTS: &'static str = "`uv`, `pip`, `virtualenv`, or unset (by `use_uv`)";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(Some(value.parse()?))
    }
}

impl FromVar for ExecutionMode {
    const ACCEPTS: &'static str = "`oneshot`, `warm` or `isolated`";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(value.trim().parse()?)
    }
}

impl FromVar for ExecutionTarget {
    const ACCEPTS: &'static str = "`local` or `ray`";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(value.trim().parse()?)
    }
}

impl FromVar for WorkerDispatch {
    const ACCEPTS: &'static str = "`auto` (main()-replay, else one-shot), `main` or `instance`";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(value.trim().parse()?)
    }
}

/// How much agenthub logs (to stderr); written in any case (`INFO`, `warn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// What agenthub does, in a line per step.
    #[default]
    Info,
    /// More detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Every level, quietest first.
    pub const ALL: [Self; 5] = [Self::Error, Self::Warn, Self::Info, Self::Debug, Self::Trace];

    /// The level's name, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    /// A level's name in any case; nothing else (not even surrounding white space).
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        Self::ALL.into_iter().find(|l| l.as_str() == lower).ok_or_else(|| {
            let names = Self::ALL.map(Self::as_str).join(", ");
            format!("must be one of {names}, got `{s}`")
        })
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LogLevel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl FromVar for LogLevel {
    const ACCEPTS: &'static str = "`error`, `warn`, `info`, `debug` or `trace`, any case";

    /// An unknown level is out of range (named by its key, as from config.yaml).
    fn from_var(value: &str) -> Result<Self, Rejected> {
        value.parse().map_err(Rejected::Range)
    }
}

/// A duration setting, in seconds as written (`30`, `2.5`; YAML integers and floats alike).
///
/// It holds what was written: `Config::validate` checks each setting's range (every
/// `Config` from `Config::load`/`from_sources` has passed it), and [`Self::as_duration`]
/// saturates, so an unvalidated value can neither panic nor overflow an `Instant`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seconds(f64);

impl Seconds {
    /// A number of seconds (not checked: see [`Self::as_duration`]).
    pub const fn new(secs: f64) -> Self {
        Self(secs)
    }

    /// The number as written.
    pub const fn as_secs_f64(self) -> f64 {
        self.0
    }

    /// As a duration, clamped to `0..=MAX_SECONDS` (NaN is 0): never panics, and an
    /// `Instant` plus the result never overflows.
    pub fn as_duration(self) -> Duration {
        let clamped = if self.0.is_nan() { 0.0 } else { self.0.clamp(0.0, MAX_SECONDS) };
        Duration::from_secs_f64(clamped)
    }

    /// Finite, greater than 0 and at most [`MAX_SECONDS`].
    pub(crate) fn is_positive_in_range(self) -> bool {
        self.0.is_finite() && self.0 > 0.0 && self.0 <= MAX_SECONDS
    }
}

impl fmt::Display for Seconds {
    /// The number as written (`30`, `2.5`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromVar for Seconds {
    const ACCEPTS: &'static str = "seconds";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        let secs = value.trim().parse().map_err(|_| "expected a number of seconds".to_owned())?;
        Ok(Self(secs))
    }
}
