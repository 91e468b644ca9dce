//! What to run ([`ProcessSpec`]) and what came of it ([`ProcessOutput`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::containment::Containment;
use crate::registry::ProcessRegistry;

/// One child process to run to completion.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments (never passed through a shell).
    pub args: Vec<OsString>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// How its environment is built.
    pub env: EnvSpec,
    /// Time, output and memory limits.
    pub limits: ProcessLimits,
    /// Where running children are recorded while they run.
    pub registry: Option<Arc<ProcessRegistry>>,
    /// How the child and its descendants are contained and killed.
    pub containment: Containment,
    /// SIGKILL the child when the spawning thread dies (`PR_SET_PDEATHSIG`), so a runtime
    /// killed with SIGKILL takes its agents along. Costs a `fork` instead of `posix_spawn`;
    /// only safe when the spawning thread lives as long as the child (not on a tokio
    /// blocking pool, whose idle threads exit).
    pub die_with_parent: bool,
    /// The sandbox to run it in; `None` runs it with the caller's rights.
    pub sandbox: Option<crate::sandbox::Sandbox>,
}

impl ProcessSpec {
    /// A spec with default limits, the caller's environment and no registry.
    pub fn new(program: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: EnvSpec::default(),
            limits: ProcessLimits::default(),
            registry: None,
            containment: Containment::Auto,
            die_with_parent: false,
            sandbox: None,
        }
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the limits.
    #[must_use]
    pub fn limits(mut self, limits: ProcessLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// The child's environment: the caller's (or none), plus and minus some variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSpec {
    /// Start from an empty environment instead of the caller's.
    pub clear: bool,
    /// Variables to set.
    pub set: Vec<(OsString, OsString)>,
    /// Variables to remove.
    pub remove: Vec<OsString>,
}

/// Limits on one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Wall-clock limit (on a clock that keeps running while the runtime is stopped);
    /// `None`, or a duration too large to add to a clock reading, waits forever.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL after a timeout.
    pub grace_period: Duration,
    /// Stdout beyond this many bytes stops the child (never buffered past the cap).
    pub max_stdout_bytes: usize,
    /// How much of the end of stderr is kept.
    pub stderr_tail_bytes: usize,
    /// Memory cap in bytes over the call's whole tree (anonymous plus shared memory);
    /// `None` for none.
    pub max_memory_bytes: Option<u64>,
    /// How often the tree's memory is sampled when there is a cap (at least 1 ms).
    pub memory_sample_interval: Duration,
    /// Also copy the child's stderr to this process's stderr as it arrives (installer
    /// output under the CLI's `-v`); the tail is kept either way.
    pub echo_stderr: bool,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(30)),
            grace_period: Duration::from_secs(1),
            max_stdout_bytes: 16 * 1024 * 1024,
            stderr_tail_bytes: 64 * 1024,
            max_memory_bytes: Some(1024 * 1024 * 1024),
            memory_sample_interval: Duration::from_millis(10),
            echo_stderr: false,
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }

    /// The exit code, when it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            Self::Exited(code) => Some(code),
            Self::Signaled(_) => None,
        }
    }

    /// The signal, when one killed it.
    pub fn signal(self) -> Option<i32> {
        match self {
            Self::Signaled(sig) => Some(sig),
            Self::Exited(_) => None,
        }
    }
}

/// `exit status 3` or `killed by signal 9`, as messages about tools that failed put it.
impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exit status {code}"),
            Self::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// Why the supervisor stopped a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It ran past `timeout`.
    Timeout,
    /// The memory of its tree went past `max_memory_bytes`.
    MemoryLimit,
    /// It wrote more than `max_stdout_bytes` to stdout.
    StdoutLimit,
    /// [`crate::shutdown`] killed it: the runtime is shutting down.
    Cancelled,
}

/// What came of running a [`ProcessSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutput {
    /// The child's pid (also its process-group id).
    pub pid: u32,
    /// How it ended.
    pub status: ExitStatus,
    /// Set when the supervisor stopped it.
    pub termination: Option<Termination>,
    /// Everything it wrote to stdout, up to the cap.
    pub stdout: Vec<u8>,
    /// The last `stderr_tail_bytes` of its stderr.
    pub stderr_tail: Vec<u8>,
    /// Whether stderr was longer than the tail kept.
    pub stderr_truncated: bool,
    /// From spawn to exit.
    pub wall_time: Duration,
    /// Peak memory of the child's tree, in bytes: the largest sample over the tree, or the
    /// child's own `wait4` peak when larger; `None` when unknown.
    pub peak_rss_bytes: Option<u64>,
}

impl ProcessOutput {
    /// The stderr tail as text, `None` when empty.
    pub fn stderr_text(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.stderr_tail);
        let text = text.trim_end();
        (!text.is_empty()).then(|| if self.stderr_truncated { format!("…{text}") } else { text.to_owned() })
    }
}
