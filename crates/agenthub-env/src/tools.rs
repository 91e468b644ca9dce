//! Running installer tools (uv, pip, virtualenv, interpreter probes, installation
//! commands) under the same supervision as agents: argument vectors only, their own process
//! group (and cgroup where possible), a deadline, killed with the caller when asked, and in
//! the agent directory so relative paths in requirements never reach the caller's.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenthub_process::{EnvSpec, ProcessRegistry, ToolOutcome, ToolRun};

use crate::EnvError;

/// How much of a tool's stderr errors keep.
const STDERR_TAIL: usize = 64 * 1024;

/// How much of a tool's stdout is kept (`uv export` of a large lock).
const STDOUT_CAP: usize = 64 * 1024 * 1024;

static STREAM_OUTPUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Streams the output (stderr) of every installer tool to this process's stderr as it
/// runs, process-wide (the CLI's `-v`). Off by default: errors carry the tail instead.
pub fn set_stream_tool_output(on: bool) {
    STREAM_OUTPUT.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether installer output is streamed (see [`set_stream_tool_output`]).
pub fn stream_tool_output() -> bool {
    STREAM_OUTPUT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Where and how long installer tools may run during one build.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The agent directory: the tools' working directory.
    pub agent_dir: PathBuf,
    /// When the whole build must be done; `None` for no limit.
    pub deadline: Option<Instant>,
    /// The build's time limit, for messages.
    pub limit: Duration,
    /// SIGKILL the tools when the building thread dies (see
    /// `agenthub_process::ProcessSpec::die_with_parent`).
    pub die_with_parent: bool,
    /// Where the tools are recorded while they run (`None`: nowhere). With a run directory,
    /// a tool that has no cgroup gets a run record, so that what it leaves when this process
    /// is killed with `SIGKILL` (a build backend below uv) is found by the next runtime's sweep.
    pub registry: Option<Arc<ProcessRegistry>>,
    /// The sandbox the tools run in (see [`build_sandbox`]); `None` runs them unsandboxed.
    pub sandbox: Option<agenthub_process::sandbox::Sandbox>,
}

/// The sandbox an environment build runs in: the host's network (the package index), read
/// anywhere (the host's `/tmp` too), write only `targets` (the environment being built, the
/// agent directory for in-tree builds), the installers' caches and a temporary directory of
/// its own (its `TMPDIR`); and its own
/// PID namespace, so a build backend never outlives the build, also when agenthub is killed.
pub fn build_sandbox(targets: &[&Path]) -> agenthub_process::sandbox::Sandbox {
    let mut write: Vec<PathBuf> = targets.iter().map(|p| p.to_path_buf()).collect();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let xdg_cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cache")));
    let xdg_data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".local").join("share")));
    let mut caches: Vec<PathBuf> = ["UV_CACHE_DIR", "PIP_CACHE_DIR", "UV_PYTHON_INSTALL_DIR"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(PathBuf::from))
        .collect();
    if let Some(cache) = xdg_cache {
        caches.push(cache.join("uv"));
        caches.push(cache.join("pip"));
        caches.push(cache.join("virtualenv"));
    }
    if let Some(data) = xdg_data {
        caches.push(data.join("uv"));
        caches.push(data.join("virtualenv"));
    }
    for cache in caches {
        // The installers make these on first use; they must exist to be granted.
        if std::fs::create_dir_all(&cache).is_ok() {
            write.push(cache);
        }
    }
    agenthub_process::sandbox::Sandbox {
        read: vec![PathBuf::from("/")],
        write,
        network: agenthub_process::sandbox::SandboxNetwork::Host,
        require_all: false,
        // Requirements may name paths under the host's /tmp (`--find-links /tmp/wheels`).
        host_tmp: true,
        on_listeners: None,
    }
}

impl BuildContext {
    /// A context for a build in `agent_dir` that must end within `limit`.
    pub fn new(agent_dir: &Path, limit: Duration, die_with_parent: bool) -> Self {
        Self {
            agent_dir: agent_dir.to_path_buf(),
            deadline: Instant::now().checked_add(limit),
            limit,
            die_with_parent,
            registry: None,
            sandbox: None,
        }
    }

    /// A context for a short helper (an interpreter probe) in the current directory.
    pub(crate) fn probe(limit: Duration) -> Self {
        Self::new(&std::env::temp_dir(), limit, false)
    }
}

/// One tool invocation.
pub(crate) struct Tool<'a> {
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
}

impl<'a> Tool<'a> {
    pub(crate) fn new<I, S>(program: &'a Path, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self { program, args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(), env: Vec::new() }
    }

    #[must_use]
    pub(crate) fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.into(), value.as_ref().to_owned()));
        self
    }

    fn command_line(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the tool to completion in `ctx.agent_dir`; its stdout on success, else an error
    /// with its stderr tail. A tool still running at the deadline is killed with its group.
    pub(crate) fn run(self, ctx: &BuildContext) -> Result<String, EnvError> {
        let command = self.command_line();
        let run = ToolRun {
            args: self.args,
            env: EnvSpec {
                clear: false,
                set: self.env,
                remove: vec!["PYTHONHOME".into(), "VIRTUAL_ENV".into()],
            },
            deadline: ctx.deadline,
            max_stdout_bytes: STDOUT_CAP,
            stderr_tail_bytes: STDERR_TAIL,
            echo_stderr: stream_tool_output(),
            die_with_parent: ctx.die_with_parent,
            registry: ctx.registry.clone(),
            sandbox: ctx.sandbox.clone(),
            ..ToolRun::new(self.program, &ctx.agent_dir)
        };
        tracing::debug!(%command, "running installer tool");
        let outcome = run.run().map_err(|e| match e {
            agenthub_process::ProcessError::Cancelled => EnvError::Cancelled,
            agenthub_process::ProcessError::Spawn { program, source } => EnvError::Spawn { program, source },
            other => EnvError::Spawn {
                program: self.program.to_path_buf(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        match outcome {
            ToolOutcome::Succeeded(stdout) => Ok(String::from_utf8_lossy(&stdout).into_owned()),
            ToolOutcome::TimedOut { stderr } => {
                Err(EnvError::BuildTimeout { command, limit: ctx.limit, stderr: stderr.unwrap_or_default() })
            }
            ToolOutcome::StdoutCapped { status, stderr } | ToolOutcome::Failed { status, stderr } => {
                Err(EnvError::CommandFailed {
                    command,
                    status: status.to_string(),
                    stderr: stderr.unwrap_or_default(),
                })
            }
        }
    }
}
