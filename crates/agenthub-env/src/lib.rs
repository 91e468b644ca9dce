//! Virtual environments for agents: the [`EnvironmentBackend`] trait, its uv, pip and
//! virtualenv implementations, and the [`EnvironmentManager`] that keys, locks, builds and
//! reuses one environment per agent. Installer tools are run with argument vectors only.

mod backends;
mod layout;
mod manager;
mod progress;
mod provision;
mod requirements;
mod status;
mod tools;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agenthub_core::{AgentRuntimeError, EnvBackendKind};
use async_trait::async_trait;

#[cfg(feature = "pip")]
pub use backends::PipBackend;
#[cfg(feature = "uv")]
pub use backends::UvBackend;
#[cfg(feature = "virtualenv")]
pub use backends::VirtualenvBackend;
pub use backends::{
    Interpreter, backend_for, default_backend, find_python, python_candidates, select_backend, tool_version,
    uv_export_lock, venv_interpreter,
};
pub use layout::{BUILDS_MARKER, Freed, LAST_FAILURE};
pub use manager::{
    Activation, DEFAULT_BUILD_TIMEOUT, DEFAULT_PROBE_TIMEOUT, EnvMarker, EnvironmentManager, MARKER_FILE,
    ReadyEnvironment, environment_key, read_marker,
};
pub use progress::{BuildProgress, EnvBuild};
pub use provision::{
    FoundUv, TOOL_MARKER, UV_STAGING_PREFIX, UvOrigin, UvProvision, ensure_uv, find_uv, provisioned_uv,
    remove_uv_staging_leftovers, uv_staging_leftovers,
};
pub use requirements::{
    InstallArg, MAX_LOCK_BYTES, MAX_REQUIREMENTS_BYTES, RequirementSet, RequirementSource, requirement_lines,
};
pub use status::{
    EnvState, EnvStatus, collect_unused, environment_status, environment_status_with, remove_environment,
    unused_builds,
};
pub use tools::{BuildContext, build_sandbox, set_stream_tool_output, stream_tool_output};

/// Shared handle to an environment backend.
pub type DynEnvironmentBackend = Arc<dyn EnvironmentBackend>;

/// Creates virtual environments and installs requirements into them.
///
/// Implementations run their installer tools to completion on the calling thread (the
/// manager calls them on a build thread of its own), in `ctx.agent_dir`, and stop them at
/// `ctx.deadline`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait EnvironmentBackend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> EnvBackendKind;

    /// Creates an empty environment at `venv` with the interpreter at `python`.
    async fn create_venv(&self, venv: &Path, python: &Path, ctx: &BuildContext) -> Result<(), EnvError>;

    /// Creates an empty environment at `venv`, letting the backend itself find an
    /// interpreter for `python` (a path, or PEP 440 specifiers such as `>=3.9`), never
    /// downloading one. Returns `Ok(false)` when this backend cannot find interpreters
    /// itself: the manager then probes with [`find_python`] and calls
    /// [`Self::create_venv`]. Saves the probe's interpreter start (uv finds interpreters
    /// without running them).
    async fn create_venv_discovering(
        &self,
        venv: &Path,
        python: &str,
        ctx: &BuildContext,
    ) -> Result<bool, EnvError> {
        let _ = (venv, python, ctx);
        Ok(false)
    }

    /// Installs requirements into `venv`.
    async fn install(
        &self,
        venv: &Path,
        requirements: &[InstallArg],
        ctx: &BuildContext,
    ) -> Result<(), EnvError>;

    /// The environment's Python executable.
    fn python_executable(&self, venv: &Path) -> PathBuf {
        venv.join("bin").join("python")
    }
}

/// Failures to build an environment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// No interpreter on this machine satisfies the constraint.
    #[error("failed to find a Python for {wanted}; tried: {}", if tried.is_empty() { "none found on PATH".to_owned() } else { tried.join(", ") })]
    NoPython {
        /// The constraint.
        wanted: String,
        /// The interpreters looked at.
        tried: Vec<String>,
    },
    /// An installer tool is not installed.
    #[error("failed to find `{tool}` on PATH")]
    ToolNotFound {
        /// The tool.
        tool: &'static str,
    },
    /// The backend was not compiled into this build.
    #[error("the `{kind}` environment backend is not compiled in (enable the `{kind}` feature)")]
    BackendNotCompiled {
        /// The backend.
        kind: &'static str,
    },
    /// An installer tool could not be started.
    #[error("failed to run `{}`", program.display())]
    Spawn {
        /// The tool.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An installer tool exited non-zero.
    #[error("`{command}` failed ({status})")]
    CommandFailed {
        /// The command line, for the message.
        command: String,
        /// Its exit status.
        status: String,
        /// The tail of its stderr.
        stderr: String,
    },
    /// A file operation failed.
    #[error("failed to {action} `{}`", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An installation command of the manifest does not split into words (open quote).
    #[error("failed to split installation command `{command}` into arguments")]
    BadInstallCommand {
        /// The command as written.
        command: String,
    },
    /// A build (or one of its tools) ran past `build_timeout`; the tool was killed.
    #[error("`{command}` did not finish within the build time limit of {}s", limit.as_secs_f64())]
    BuildTimeout {
        /// The command line that was running.
        command: String,
        /// The build's limit.
        limit: std::time::Duration,
        /// The tail of its stderr.
        stderr: String,
    },
    /// The build was cancelled (agenthub is shutting down, e.g. on Ctrl-C).
    #[error("the environment build was cancelled")]
    Cancelled,
    /// Another process held the build lock for longer than `build_timeout`.
    #[error("another process is building this environment (waited {}s for `{}`)", limit.as_secs_f64(), path.display())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long was waited.
        limit: std::time::Duration,
    },
    /// Something agenthub did not make is where it would build, replace or delete.
    #[error("`{}` is {what}", path.display())]
    NotOurs {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// `venv_location` is not one plain directory name.
    #[error("venv_location `{value}` is not one plain directory name")]
    BadVenvLocation {
        /// The configured value.
        value: String,
    },
    /// A file of the agent directory could not be read safely.
    #[error(transparent)]
    AgentFile(agenthub_core::AgentFileError),
    /// A dependency list holds an installer option instead of a requirement.
    #[error("`{requirement}` in {list} is not a requirement")]
    BadRequirement {
        /// The entry.
        requirement: String,
        /// Which list.
        list: String,
    },
    /// `pyproject.toml` could not be read as TOML with string dependencies.
    #[error("invalid `{}`: {message}", path.display())]
    Pyproject {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl EnvError {
    /// What the user can do next, for an agent this error does not know the name of (see
    /// [`Self::suggestion_for`]).
    pub fn suggestion(&self) -> String {
        self.suggestion_for(None)
    }

    /// What the user can do next; commands it suggests name `agent` as the caller named it
    /// (`agenthub env rebuild ./my-agent`).
    pub fn suggestion_for(&self, agent: Option<&str>) -> String {
        let agent = agent.map_or_else(|| "<agent>".to_owned(), agenthub_core::shell_quote);
        match self {
            Self::NoPython { .. } => "Install a matching Python, or set `python_version` in config.yaml \
                (or AGENTHUB_PYTHON_VERSION) to a version or an interpreter path"
                .to_owned(),
            Self::ToolNotFound { tool } if tool.starts_with("uv") => {
                "Install uv with `python3 -m pip install uv`, or pick another backend with `--env-backend pip`".to_owned()
            }
            Self::ToolNotFound { .. } => {
                "Install virtualenv with `python3 -m pip install virtualenv`, or use `--env-backend uv` or `pip`".to_owned()
            }
            Self::BackendNotCompiled { .. } => "Pick a compiled-in backend with `--env-backend`".to_owned(),
            Self::CommandFailed { .. } | Self::Spawn { .. } => format!(
                "Check the agent's requirements and the installer's output above, then retry; \
                 `agenthub env rebuild {agent}` rebuilds from scratch"
            ),
            Self::Io { source, path, .. } => agenthub_core::io_error_suggestion(source, path),
            Self::BuildTimeout { .. } => "Check that the package index answers (the installer's output is above), \
                or raise runtime.build_timeout (AGENTHUB_BUILD_TIMEOUT)"
                .to_owned(),
            Self::Cancelled => "The environment in use was not touched; run the command again".to_owned(),
            Self::LockTimeout { .. } => "Wait for the other build to finish, then retry (or raise runtime.build_timeout)".to_owned(),
            Self::NotOurs { path, .. } => format!(
                "agenthub never deletes or replaces what it did not make: move `{}` away, or set \
                 environment.venv_location (AGENTHUB_VENV_LOCATION) to another name such as .agenthub-venv",
                path.display()
            ),
            Self::BadVenvLocation { .. } => "Set venv_location to one directory name such as .venv".to_owned(),
            Self::AgentFile(e) => e.suggestion(),
            Self::BadRequirement { .. } => {
                "Dependencies must be PEP 508 requirements; put installer options in requirements.txt".to_owned()
            }
            Self::Pyproject { .. } => "Fix pyproject.toml: [project].dependencies must be a list of strings".to_owned(),
            Self::BadInstallCommand { .. } => "Fix the quoting of installation.commands in agent.yaml".to_owned(),
        }
    }
}

impl From<EnvError> for AgentRuntimeError {
    fn from(err: EnvError) -> Self {
        err.into_runtime_error(None)
    }
}

impl EnvError {
    /// The `EnvironmentError` response of a failed build of `agent`'s environment (as the
    /// caller named it, for the commands the suggestion gives; `None` when unknown).
    pub fn into_runtime_error(self, agent: Option<&str>) -> AgentRuntimeError {
        let err = self;
        let suggestion = err.suggestion_for(agent);
        let mut message = format!("Environment setup failed: {err}");
        if let Some(source) = std::error::Error::source(&err) {
            let _ = write!(message, ": {source}");
        }
        let stderr = match &err {
            EnvError::CommandFailed { stderr, .. } | EnvError::BuildTimeout { stderr, .. }
                if !stderr.is_empty() =>
            {
                Some(stderr.clone())
            }
            _ => None,
        };
        AgentRuntimeError::Environment { message, stderr, suggestion }
    }
}
