//! Virtual environments for agents: the [`EnvironmentBackend`] trait, its uv, pip and
//! virtualenv implementations, and the [`EnvironmentManager`] that keys, locks, builds and
//! reuses one environment per agent. Installer tools are run with argument vectors only.

mod backends;
mod manager;
mod requirements;

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
pub use backends::{Interpreter, backend_for, default_backend, find_python, uv_export_lock};
pub use manager::{Activation, EnvMarker, EnvironmentManager, MARKER_FILE, ReadyEnvironment, read_marker};
pub use requirements::{RequirementSet, RequirementSource, requirement_lines};

/// Shared handle to an environment backend.
pub type DynEnvironmentBackend = Arc<dyn EnvironmentBackend>;

/// Creates virtual environments and installs requirements into them.
///
/// Implementations run their installer tools to completion on the calling thread.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait EnvironmentBackend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> EnvBackendKind;

    /// Creates an empty environment at `venv` with the interpreter at `python`.
    async fn create_venv(&self, venv: &Path, python: &Path) -> Result<(), EnvError>;

    /// Installs requirements (PEP 508 strings, or options like `-r file`) into `venv`.
    async fn install(&self, venv: &Path, requirements: &[String]) -> Result<(), EnvError>;

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
    /// What the user can do next.
    pub fn suggestion(&self) -> String {
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
            Self::CommandFailed { .. } | Self::Spawn { .. } => "Check the agent's requirements and the installer's \
                output above, then retry; `agenthub env rebuild AGENT` rebuilds from scratch"
                .to_owned(),
            Self::Io { .. } => "Check that the agent directory is writable and the disk has room".to_owned(),
            Self::Pyproject { .. } => "Fix pyproject.toml: [project].dependencies must be a list of strings".to_owned(),
            Self::BadInstallCommand { .. } => "Fix the quoting of installation.commands in agent.yaml".to_owned(),
        }
    }
}

impl From<EnvError> for AgentRuntimeError {
    fn from(err: EnvError) -> Self {
        let suggestion = err.suggestion();
        let mut message = format!("Environment setup failed: {err}");
        if let Some(source) = std::error::Error::source(&err) {
            let _ = write!(message, ": {source}");
        }
        let stderr = match &err {
            EnvError::CommandFailed { stderr, .. } if !stderr.is_empty() => Some(stderr.clone()),
            _ => None,
        };
        Self::Environment { message, stderr, suggestion }
    }
}
