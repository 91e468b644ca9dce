//! The error taxonomy of SPEC §5: one variant per `error_type`.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::manifest::ManifestError;

/// Every way an agent execution can fail, one variant per `error_type` of SPEC §5.
///
/// Variants carry data, not prose: the response serialiser turns them into the
/// `error`, `error_type`, `suggestion` and detail fields of the JSON response. Crates
/// below the runtime have their own error types and convert into this one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentRuntimeError {
    /// No agent at that id or path.
    #[error("Agent '{agent}' not found: {reason}")]
    AgentNotFound {
        /// The id or path as the caller wrote it.
        agent: String,
        /// Why it did not resolve (no such directory, leaves the agents root, …).
        reason: String,
    },
    /// The manifest is missing, unparsable or invalid.
    #[error(transparent)]
    InvalidManifest(#[from] ManifestError),
    /// The method is not in the manifest's interface.
    #[error("Method '{method}' not found in agent interface")]
    MethodNotFound {
        /// The method asked for.
        method: String,
        /// The methods the manifest declares, in declaration order.
        available: Vec<String>,
    },
    /// Missing required, unknown, or wrongly typed parameters.
    #[error("Invalid parameters for '{method}': {}", problems.join("; "))]
    InvalidParameters {
        /// The method being called.
        method: String,
        /// One entry per problem, each naming its parameter.
        problems: Vec<String>,
        /// The method's signature, e.g. `greet(name: string)`.
        signature: String,
    },
    /// Creating the virtual environment or installing dependencies failed.
    #[error("{message}")]
    Environment {
        /// What failed.
        message: String,
        /// The tail of the installer's stderr, when there was one.
        stderr: Option<String>,
        /// What to do next.
        suggestion: String,
    },
    /// The agent ran past its time limit; its whole process group was killed.
    #[error("Agent timed out after {}", format_duration(*limit))]
    Timeout {
        /// The limit that was exceeded.
        limit: Duration,
        /// The tail of the agent's stderr.
        stderr: Option<String>,
    },
    /// The agent exceeded its memory cap or the stdout cap.
    #[error("{limit}")]
    ResourceLimit {
        /// Which limit was exceeded.
        limit: ResourceLimit,
        /// Peak resident memory of the agent, when known.
        peak_memory_bytes: Option<u64>,
        /// The tail of the agent's stderr.
        stderr: Option<String>,
    },
    /// The agent reported its own failure with `{"error": ...}`.
    #[error("{message}")]
    Agent {
        /// The agent's message, exactly as it printed it.
        message: String,
        /// The agent's exit code.
        return_code: Option<i32>,
        /// The tail of the agent's stderr.
        stderr: Option<String>,
    },
    /// The agent's stdout is not a JSON object with `result` or `error`.
    #[error("Agent broke the protocol: {detail}")]
    Protocol {
        /// What was wrong with the output.
        detail: String,
        /// The agent's exit code.
        return_code: Option<i32>,
        /// The tail of the agent's stderr.
        stderr: Option<String>,
    },
    /// Any other failure: non-zero exit without JSON, a signal, a spawn failure.
    #[error("{message}")]
    Execution {
        /// What happened.
        message: String,
        /// The agent's exit code, when it exited.
        return_code: Option<i32>,
        /// The signal that killed the agent, when one did.
        signal: Option<i32>,
        /// The tail of the agent's stderr.
        stderr: Option<String>,
    },
    /// The agent was not started: something it needs is missing or refused (no `agent.py`,
    /// a file of the agent refused, a request the OS cannot pass). An `ExecutionError`
    /// with a suggestion.
    #[error("{message}")]
    NotRun {
        /// What is missing or wrong.
        message: String,
        /// What to do about it.
        suggestion: String,
    },
    /// An error of an agent that ran in the sandbox and was (likely) stopped by it: the
    /// error as it was, with a suggestion that names the sandbox and the grant that would
    /// allow what was refused.
    #[error("{error}")]
    Sandboxed {
        /// The error the call ended with.
        error: Box<AgentRuntimeError>,
        /// What the sandbox refused and how to allow it.
        hint: String,
    },
}

/// What to do about Python's `No module named 'x'` (a `ModuleNotFoundError`) in an agent's
/// error or stderr: the module's package goes in the manifest's `dependencies`. The last
/// such line counts (the one that ended the agent).
fn missing_module(text: &str) -> Option<String> {
    const SAID: &str = "No module named '";
    let at = text.rfind(SAID)? + SAID.len();
    let name = &text[at..at + text[at..].find('\'')?];
    let valid = !name.is_empty()
        && name.split('.').all(|part| {
            part.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
    let top = name.split('.').next().filter(|_| valid)?;
    Some(format!(
        "The module `{top}` is not installed in the agent's environment: add the package that provides it \
         to `dependencies` in agent.yaml (`dependencies: [\"{top}\"]` when the names match); the next call \
         rebuilds the environment"
    ))
}

/// The limit behind a [`AgentRuntimeError::ResourceLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceLimit {
    /// Resident memory went past this many bytes.
    Memory {
        /// The cap in bytes.
        limit_bytes: u64,
    },
    /// Stdout went past this many bytes.
    Stdout {
        /// The cap in bytes.
        limit_bytes: u64,
    },
}

impl fmt::Display for ResourceLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory { limit_bytes } => {
                write!(f, "Agent exceeded the memory limit of {}", format_bytes(*limit_bytes))
            }
            Self::Stdout { limit_bytes } => {
                write!(f, "Agent wrote more than {} to stdout", format_bytes(*limit_bytes))
            }
        }
    }
}

impl AgentRuntimeError {
    /// The `error_type` string of SPEC §5.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::AgentNotFound { .. } => "AgentNotFoundError",
            Self::InvalidManifest(_) => "InvalidManifestError",
            Self::MethodNotFound { .. } => "MethodNotFoundError",
            Self::InvalidParameters { .. } => "InvalidParametersError",
            Self::Environment { .. } => "EnvironmentError",
            Self::Timeout { .. } => "TimeoutError",
            Self::ResourceLimit { .. } => "ResourceLimitError",
            Self::Agent { .. } => "AgentError",
            Self::Protocol { .. } => "ProtocolError",
            Self::Execution { .. } | Self::NotRun { .. } => "ExecutionError",
            Self::Sandboxed { error, .. } => error.error_type(),
        }
    }

    /// What the user can do next, when there is something to say.
    pub fn suggestion(&self) -> Option<String> {
        match self {
            Self::AgentNotFound { .. } => Some(
                "Run `agenthub list` to see installed agents, or pass a path starting with `./` or `/`"
                    .to_owned(),
            ),
            Self::InvalidManifest(err) => Some(err.suggestion()),
            Self::MethodNotFound { method, available } => {
                let close = crate::text::closest_name(method, available.iter().map(String::as_str));
                let guess = close.map(|m| format!("Did you mean `{m}`? ")).unwrap_or_default();
                Some(format!("{guess}Available methods: {}", available.join(", ")))
            }
            Self::InvalidParameters { signature, .. } => Some(format!("Expected: {signature}")),
            Self::Environment { suggestion, .. } | Self::NotRun { suggestion, .. } => {
                Some(suggestion.clone())
            }
            Self::Timeout { limit, .. } => Some(format!(
                "Raise the limit with `--timeout {}` or `max_execution_time` in config.yaml",
                (limit.as_secs() * 2).max(1)
            )),
            Self::ResourceLimit { limit: ResourceLimit::Memory { limit_bytes }, .. } => Some(format!(
                "Raise the cap with `--max-memory {}` (MB) or `max_memory_usage` in config.yaml",
                (limit_bytes / (1024 * 1024) * 2).max(1)
            )),
            Self::ResourceLimit { limit: ResourceLimit::Stdout { .. }, .. } => {
                Some("Return less data, or write large output to a file and return its path".to_owned())
            }
            Self::Protocol { .. } => {
                Some("Print one JSON object to stdout; logs belong on stderr".to_owned())
            }
            Self::Agent { message, stderr, .. } => {
                missing_module(message).or_else(|| stderr.as_deref().and_then(missing_module))
            }
            Self::Execution { stderr: Some(stderr), .. } => Some(
                missing_module(stderr)
                    .unwrap_or_else(|| "See the agent's stderr above for the cause".to_owned()),
            ),
            Self::Execution { .. } => None,
            Self::Sandboxed { hint, .. } => Some(hint.clone()),
        }
    }

    /// The methods an agent offers, for [`AgentRuntimeError::MethodNotFound`].
    pub fn available_methods(&self) -> Option<&[String]> {
        match self {
            Self::MethodNotFound { available, .. } => Some(available),
            Self::Sandboxed { error, .. } => error.available_methods(),
            _ => None,
        }
    }

    /// The agent's exit code, when the error came from a finished agent.
    pub fn return_code(&self) -> Option<i32> {
        match self {
            Self::Agent { return_code, .. }
            | Self::Protocol { return_code, .. }
            | Self::Execution { return_code, .. } => *return_code,
            Self::Sandboxed { error, .. } => error.return_code(),
            _ => None,
        }
    }

    /// The signal that killed the agent.
    pub fn signal(&self) -> Option<i32> {
        match self {
            Self::Execution { signal, .. } => *signal,
            Self::Sandboxed { error, .. } => error.signal(),
            _ => None,
        }
    }

    /// The tail of the agent's (or installer's) stderr.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Self::Environment { stderr, .. }
            | Self::Timeout { stderr, .. }
            | Self::ResourceLimit { stderr, .. }
            | Self::Agent { stderr, .. }
            | Self::Protocol { stderr, .. }
            | Self::Execution { stderr, .. } => stderr.as_deref(),
            Self::Sandboxed { error, .. } => error.stderr(),
            _ => None,
        }
    }

    /// Peak memory recorded with a resource-limit error.
    pub fn peak_memory_bytes(&self) -> Option<u64> {
        match self {
            Self::ResourceLimit { peak_memory_bytes, .. } => *peak_memory_bytes,
            Self::Sandboxed { error, .. } => error.peak_memory_bytes(),
            _ => None,
        }
    }
}

/// What to do about an I/O error on `path`, by its kind: permissions or disk space are
/// suggested only when they are the cause.
pub fn io_error_suggestion(err: &io::Error, path: &Path) -> String {
    let path = path.display();
    match err.kind() {
        io::ErrorKind::PermissionDenied => format!("Check the permissions of {path}"),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            format!("Free disk space (or quota) for {path}")
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            format!("{path} is on a read-only file system; use a writable location")
        }
        io::ErrorKind::NotFound => format!("Check that {path} exists"),
        io::ErrorKind::InvalidData => format!("{path} is not valid UTF-8 text; fix its encoding"),
        io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            format!("Check what {path} is: a file where a directory belongs, or the reverse")
        }
        _ => format!("See the error about {path} above"),
    }
}

/// Formats a byte count the way responses show memory: `11.4MB` (binary megabytes).
pub fn format_bytes(bytes: u64) -> String {
    format!("{:.1}MB", bytes as f64 / (1024.0 * 1024.0))
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 { format!("{secs:.0}s") } else { format!("{secs:.2}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_spec_error_type() {
        let cases = [
            (
                AgentRuntimeError::AgentNotFound { agent: "a/b".into(), reason: "gone".into() },
                "AgentNotFoundError",
            ),
            (
                AgentRuntimeError::MethodNotFound { method: "x".into(), available: vec![] },
                "MethodNotFoundError",
            ),
            (AgentRuntimeError::Timeout { limit: Duration::from_secs(1), stderr: None }, "TimeoutError"),
            (
                AgentRuntimeError::Protocol { detail: "d".into(), return_code: None, stderr: None },
                "ProtocolError",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.error_type(), want);
        }
    }

    #[test]
    fn a_missing_module_suggests_adding_it_to_dependencies() {
        let agent = |message: &str, stderr: Option<&str>| AgentRuntimeError::Agent {
            message: message.into(),
            return_code: Some(1),
            stderr: stderr.map(Into::into),
        };
        let want = "The module `requests` is not installed in the agent's environment: add the package that \
                    provides it to `dependencies` in agent.yaml (`dependencies: [\"requests\"]` when the names \
                    match); the next call rebuilds the environment";
        let said = agent("ModuleNotFoundError: No module named 'requests'", None).suggestion();
        assert_eq!(said.as_deref(), Some(want));
        let said =
            agent("boom", Some("Traceback ...\nModuleNotFoundError: No module named 'requests.adapters'\n"))
                .suggestion();
        assert_eq!(said.as_deref(), Some(want));
        let crash = AgentRuntimeError::Execution {
            message: "Agent exited with code 1 without printing a JSON response".into(),
            return_code: Some(1),
            signal: None,
            stderr: Some(
                "  File \"agent.py\", line 3\nModuleNotFoundError: No module named 'requests'".into(),
            ),
        };
        assert_eq!(crash.suggestion().as_deref(), Some(want));
        assert_eq!(agent("ValueError: no", Some("Traceback")).suggestion(), None);
        assert_eq!(agent("No module named '$(rm -rf)'", None).suggestion(), None);
    }

    #[test]
    fn method_not_found_suggests_the_methods() {
        let err = AgentRuntimeError::MethodNotFound {
            method: "nope".into(),
            available: vec!["greet".into(), "echo".into()],
        };
        assert_eq!(err.to_string(), "Method 'nope' not found in agent interface");
        assert_eq!(err.suggestion().as_deref(), Some("Available methods: greet, echo"));
        assert_eq!(err.available_methods().map(<[String]>::len), Some(2));
    }

    #[test]
    fn not_run_is_an_execution_error_with_its_suggestion() {
        let err = AgentRuntimeError::NotRun {
            message: "No agent.py in /a".into(),
            suggestion: "Create agent.py".into(),
        };
        assert_eq!(err.error_type(), "ExecutionError");
        assert_eq!(err.suggestion().as_deref(), Some("Create agent.py"));
        assert_eq!(err.to_string(), "No agent.py in /a");
        let json = crate::ExecutionResponse::failed(err, Duration::ZERO).to_json();
        assert_eq!(
            json,
            serde_json::json!({"error": "No agent.py in /a", "error_type": "ExecutionError", "suggestion": "Create agent.py", "execution_time": 0.0})
        );
    }

    #[test]
    fn io_suggestions_name_only_the_real_cause() {
        let path = Path::new("/x/f");
        let kinds = [
            (io::ErrorKind::PermissionDenied, "permissions"),
            (io::ErrorKind::StorageFull, "disk space"),
            (io::ErrorKind::InvalidData, "UTF-8"),
            (io::ErrorKind::NotFound, "exists"),
            (io::ErrorKind::Other, "above"),
        ];
        for (kind, want) in kinds {
            let s = io_error_suggestion(&io::Error::from(kind), path);
            assert!(s.contains(want), "{kind:?}: {s}");
            assert_eq!(s.contains("permission"), kind == io::ErrorKind::PermissionDenied, "{s}");
            assert_eq!(s.contains("disk"), kind == io::ErrorKind::StorageFull, "{s}");
        }
    }

    #[test]
    fn memory_is_shown_in_binary_megabytes() {
        assert_eq!(format_bytes(11_953_766), "11.4MB");
        assert_eq!(format_bytes(0), "0.0MB");
    }

    #[test]
    fn timeout_message_and_suggestion_name_the_limit() {
        let err = AgentRuntimeError::Timeout { limit: Duration::from_secs(3), stderr: None };
        assert_eq!(err.to_string(), "Agent timed out after 3s");
        assert!(err.suggestion().unwrap().contains("--timeout 6"));
    }
}
