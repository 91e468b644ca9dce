//! Turning a finished agent process into a response (SPEC §4 and §5).

use agenthub_core::{
    AgentReply, AgentRuntimeError, ExecutionResponse, ResourceLimit, RuntimeConfig, read_agent_output,
};
use agenthub_process::{ExitStatus, ProcessOutput, Termination};

/// Maps what the process did to the one response of SPEC §5.
pub(crate) fn response_from(output: &ProcessOutput, config: &RuntimeConfig) -> ExecutionResponse {
    let stderr = output.stderr_text();
    let mut noise = None;
    let outcome = match output.termination {
        Some(Termination::Timeout) => {
            Err(AgentRuntimeError::Timeout { limit: config.max_execution_time.as_duration(), stderr })
        }
        Some(Termination::MemoryLimit) => Err(AgentRuntimeError::ResourceLimit {
            limit: ResourceLimit::Memory { limit_bytes: config.memory_limit_bytes().unwrap_or(0) },
            peak_memory_bytes: output.peak_rss_bytes,
            stderr,
        }),
        Some(Termination::StdoutLimit) => Err(AgentRuntimeError::ResourceLimit {
            limit: ResourceLimit::Stdout { limit_bytes: config.max_stdout_bytes },
            peak_memory_bytes: output.peak_rss_bytes,
            stderr,
        }),
        Some(Termination::Cancelled) => Err(AgentRuntimeError::Execution {
            message: "Call cancelled: agenthub is shutting down (a signal such as Ctrl-C); the agent and \
                      everything it started were killed"
                .to_owned(),
            return_code: output.status.code(),
            signal: output.status.signal(),
            stderr,
        }),
        None => match (read_agent_output(&output.stdout), output.status) {
            (Ok(parsed), status) => {
                noise = parsed.noise;
                match parsed.reply {
                    AgentReply::Result(value) if status.success() => Ok(value),
                    AgentReply::Error(message) => {
                        Err(AgentRuntimeError::Agent { message, return_code: status.code(), stderr })
                    }
                    AgentReply::Result(_) => Err(AgentRuntimeError::Execution {
                        message: format!("Agent printed a result but {}", describe(status)),
                        return_code: status.code(),
                        signal: status.signal(),
                        stderr,
                    }),
                }
            }
            (Err(violation), ExitStatus::Exited(0)) => Err(AgentRuntimeError::Protocol {
                detail: violation.to_string(),
                return_code: Some(0),
                stderr,
            }),
            (Err(_), status) => Err(AgentRuntimeError::Execution {
                message: format!("Agent {} without printing a JSON response", describe(status)),
                return_code: status.code(),
                signal: status.signal(),
                stderr,
            }),
        },
    };
    ExecutionResponse {
        outcome,
        execution_time: output.wall_time,
        memory_usage_bytes: output.peak_rss_bytes,
        stdout_noise: noise,
        tool_calls: Vec::new(),
    }
}

fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("exited with code {code}"),
        ExitStatus::Signaled(sig) => match signal_name(sig) {
            Some(name) => format!("was killed by signal {sig} ({name})"),
            None => format!("was killed by signal {sig}"),
        },
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use serde_json::json;

    fn output(status: ExitStatus, stdout: &str, termination: Option<Termination>) -> ProcessOutput {
        ProcessOutput {
            pid: 1,
            status,
            termination,
            stdout: stdout.as_bytes().to_vec(),
            stderr_tail: b"some stderr\n".to_vec(),
            stderr_truncated: false,
            wall_time: Duration::from_millis(5),
            peak_rss_bytes: Some(10 << 20),
        }
    }

    fn error_type(out: &ProcessOutput) -> &'static str {
        response_from(out, &RuntimeConfig::default()).error().map_or("ok", AgentRuntimeError::error_type)
    }

    #[test]
    fn each_way_of_ending_maps_to_its_error_type() {
        use ExitStatus::{Exited, Signaled};
        let cases = [
            (output(Exited(0), r#"{"result": 1}"#, None), "ok"),
            (output(Exited(1), r#"{"error": "boom"}"#, None), "AgentError"),
            (output(Exited(0), r#"{"error": "boom"}"#, None), "AgentError"),
            (output(Exited(3), "", None), "ExecutionError"),
            (output(Exited(2), r#"{"result": 1}"#, None), "ExecutionError"),
            (output(Signaled(11), "", None), "ExecutionError"),
            (output(Exited(0), "not json", None), "ProtocolError"),
            (output(Exited(0), "[1]", None), "ProtocolError"),
            (output(Signaled(9), "", Some(Termination::Timeout)), "TimeoutError"),
            (output(Signaled(9), "", Some(Termination::MemoryLimit)), "ResourceLimitError"),
            (output(Signaled(9), "xxx", Some(Termination::StdoutLimit)), "ResourceLimitError"),
        ];
        for (out, want) in cases {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(error_type(&out), want, "stdout {stdout:?}");
        }
    }

    #[test]
    fn signal_and_stderr_reach_the_response() {
        let r =
            response_from(&output(ExitStatus::Signaled(11), "", None), &RuntimeConfig::default()).to_json();
        assert_eq!(r["signal"], 11);
        assert_eq!(r["stderr"], "some stderr");
        assert_eq!(r["error"], "Agent was killed by signal 11 (SIGSEGV) without printing a JSON response");
    }

    #[test]
    fn noise_and_memory_are_reported_on_success() {
        let r = response_from(
            &output(ExitStatus::Exited(0), "hi\n{\"result\": 2}", None),
            &RuntimeConfig::default(),
        );
        assert_eq!(r.result(), Some(&json!(2)));
        assert_eq!(r.stdout_noise.as_deref(), Some("hi"));
        assert_eq!(r.to_json()["memory_usage"], "10.0MB");
    }
}
