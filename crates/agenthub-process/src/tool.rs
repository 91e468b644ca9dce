//! Running a helper tool (an installer, git) to completion under supervision: an argument
//! vector, its own process group, a deadline shared by every tool of one task, a stdout
//! cap and a stderr tail, and no memory cap.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{
    EnvSpec, ExitStatus, ProcessError, ProcessLimits, ProcessRegistry, ProcessSpec, StdProcessBackend,
    Termination,
};

/// One run of a helper tool, on the calling thread ([`StdProcessBackend`]).
#[derive(Debug, Clone)]
pub struct ToolRun {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments (never passed through a shell).
    pub args: Vec<OsString>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// How its environment is built.
    pub env: EnvSpec,
    /// When it must be done; `None` for no limit. A deadline already passed runs nothing.
    pub deadline: Option<Instant>,
    /// Stdout kept, at most; past it the tool is stopped ([`ToolOutcome::StdoutCapped`]).
    pub max_stdout_bytes: usize,
    /// How much of the end of its stderr is kept.
    pub stderr_tail_bytes: usize,
    /// Copy its stderr to ours as it arrives.
    pub echo_stderr: bool,
    /// See [`ProcessSpec::die_with_parent`].
    pub die_with_parent: bool,
    /// Where it is recorded while it runs.
    pub registry: Option<Arc<ProcessRegistry>>,
    /// The sandbox it runs in (environment builds: the host network, writes only where the
    /// build goes and the installers' caches; a PID namespace, so nothing it starts outlives it).
    pub sandbox: Option<crate::sandbox::Sandbox>,
}

/// How a tool run ended. Being cancelled by [`crate::shutdown`] is
/// [`ProcessError::Cancelled`], as a spawn refused after it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOutcome {
    /// It exited with code 0 within its limits: its stdout.
    Succeeded(Vec<u8>),
    /// It ran into the deadline and was killed, or the deadline had passed before it started
    /// (then `stderr` is `None`).
    TimedOut {
        /// The tail of its stderr.
        stderr: Option<String>,
    },
    /// It printed more than `max_stdout_bytes` and was stopped.
    StdoutCapped {
        /// How it ended.
        status: ExitStatus,
        /// The tail of its stderr.
        stderr: Option<String>,
    },
    /// It failed: a non-zero exit or a signal.
    Failed {
        /// How it ended.
        status: ExitStatus,
        /// The tail of its stderr.
        stderr: Option<String>,
    },
}

impl ToolRun {
    /// A run of `program` in `cwd` without arguments, with the caller's environment, no
    /// deadline and the default output limits.
    pub fn new(program: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> Self {
        let limits = ProcessLimits::default();
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: EnvSpec::default(),
            deadline: None,
            max_stdout_bytes: limits.max_stdout_bytes,
            stderr_tail_bytes: limits.stderr_tail_bytes,
            echo_stderr: false,
            die_with_parent: false,
            registry: None,
            sandbox: None,
        }
    }

    /// Runs it to completion: SIGTERM to its group at the deadline, SIGKILL 500 ms later.
    pub fn run(self) -> Result<ToolOutcome, ProcessError> {
        let timeout = match self.deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(ToolOutcome::TimedOut { stderr: None });
                }
                Some(left)
            }
            None => None,
        };
        let mut spec = ProcessSpec::new(self.program, self.cwd).args(self.args);
        spec.env = self.env;
        spec.limits = ProcessLimits {
            timeout,
            grace_period: Duration::from_millis(500),
            max_stdout_bytes: self.max_stdout_bytes,
            stderr_tail_bytes: self.stderr_tail_bytes,
            max_memory_bytes: None,
            echo_stderr: self.echo_stderr,
            ..ProcessLimits::default()
        };
        spec.die_with_parent = self.die_with_parent;
        spec.registry = self.registry;
        spec.sandbox = self.sandbox;
        let out = StdProcessBackend.run_blocking(&spec)?;
        let stderr = out.stderr_text();
        Ok(match out.termination {
            Some(Termination::Timeout) => ToolOutcome::TimedOut { stderr },
            Some(Termination::Cancelled) => return Err(ProcessError::Cancelled),
            Some(Termination::StdoutLimit) => ToolOutcome::StdoutCapped { status: out.status, stderr },
            None if out.status.success() => ToolOutcome::Succeeded(out.stdout),
            Some(Termination::MemoryLimit) | None => ToolOutcome::Failed { status: out.status, stderr },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> ToolRun {
        ToolRun { args: vec!["-c".into(), script.into()], ..ToolRun::new("/bin/sh", "/") }
    }

    #[test]
    fn outcomes_name_how_the_tool_ended() {
        assert_eq!(sh("printf hi").run().unwrap(), ToolOutcome::Succeeded(b"hi".to_vec()));
        assert_eq!(
            sh("echo oops >&2; exit 3").run().unwrap(),
            ToolOutcome::Failed { status: ExitStatus::Exited(3), stderr: Some("oops".into()) }
        );
        let capped = ToolRun { max_stdout_bytes: 4, ..sh("yes") }.run().unwrap();
        assert!(matches!(capped, ToolOutcome::StdoutCapped { .. }), "{capped:?}");
        let slow =
            ToolRun { deadline: Instant::now().checked_add(Duration::from_millis(100)), ..sh("sleep 5") };
        assert!(matches!(slow.run().unwrap(), ToolOutcome::TimedOut { .. }));
        let late = ToolRun { deadline: Some(Instant::now()), ..sh("touch /nonexistent/never") };
        assert_eq!(late.run().unwrap(), ToolOutcome::TimedOut { stderr: None });
    }

    #[test]
    fn exit_statuses_read_as_messages_say_them() {
        assert_eq!(ExitStatus::Exited(3).to_string(), "exit status 3");
        assert_eq!(ExitStatus::Signaled(9).to_string(), "killed by signal 9");
    }
}
