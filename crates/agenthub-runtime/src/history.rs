//! What the runtime tells run history about a call (`agenthub-history`): a [`CallTrace`]
//! filled along the call's path, turned into one record when the call is answered. The
//! runtime only emits; the history crate writes off the call's path, and the CLI queries.
//! Without the `history` feature the trace is filled and dropped.

#![cfg_attr(not(feature = "history"), allow(dead_code, unused_imports))]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agenthub_core::{Caller, ExecutionResponse, RunId};
use agenthub_process::ProcessOutput;

/// Where one call's time went, and how its process ended, as the call path learns it.
#[derive(Debug)]
pub(crate) struct CallTrace {
    pub(crate) id: RunId,
    pub(crate) started_at: SystemTime,
    pub(crate) mode: &'static str,
    pub(crate) slot: Option<Duration>,
    pub(crate) environment: Option<Duration>,
    pub(crate) environment_built: bool,
    pub(crate) startup: Option<Duration>,
    pub(crate) call: Option<Duration>,
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) stderr_tail: Option<String>,
    /// The call's `invoke_agent` span (disabled when nothing exports traces).
    pub(crate) span: tracing::Span,
}

impl CallTrace {
    pub(crate) fn new() -> Self {
        Self {
            id: RunId::new(),
            started_at: SystemTime::now(),
            mode: "oneshot",
            slot: None,
            environment: None,
            environment_built: false,
            startup: None,
            call: None,
            exit_code: None,
            signal: None,
            stderr_tail: None,
            span: tracing::Span::none(),
        }
    }

    /// What the agent's process left: its time, its exit (a one-shot process's), its
    /// stderr's end.
    pub(crate) fn output(&mut self, output: &ProcessOutput, exited: bool) {
        self.call = Some(output.wall_time);
        if exited {
            self.exit_code = output.status.code();
            self.signal = output.status.signal();
        }
        if !output.stderr_tail.is_empty() {
            self.stderr_tail = output.stderr_text();
        }
    }
}

/// The agent a record names: its id when installed, else its directory.
pub(crate) struct Named<'a> {
    pub(crate) agent: String,
    /// The id it is installed as, when it is.
    pub(crate) installed_as: Option<String>,
    pub(crate) dir: &'a std::path::Path,
    pub(crate) version: Option<String>,
    pub(crate) method: &'a str,
}

/// Longest agent name, version or method name a record keeps.
#[cfg(feature = "history")]
const MAX_NAME_BYTES: usize = 1024;

/// The record of a call answered with `response`.
#[cfg(feature = "history")]
pub(crate) fn record(
    recorder: &agenthub_history::Recorder,
    trace: CallTrace,
    named: Named<'_>,
    caller: &Caller,
    response: &ExecutionResponse,
    params: Option<String>,
) {
    use agenthub_history::{Durations, MAX_PAYLOAD_BYTES, MAX_STDERR_BYTES, RunRecord, cap_text};
    let error = response.error();
    let stderr = trace.stderr_tail.or_else(|| error.and_then(|e| e.stderr().map(str::to_owned)));
    let result = recorder
        .records_payloads()
        .then(|| response.outcome.as_ref().ok().map(|r| cap_text(&r.to_string(), MAX_PAYLOAD_BYTES, false)))
        .flatten();
    let record = RunRecord {
        id: trace.id.to_string(),
        started_at_ms: trace
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        // A manifest's strings are the agent author's: bounded, as every record repeats them.
        agent: cap_text(&named.agent, MAX_NAME_BYTES, false),
        agent_dir: named.dir.to_path_buf(),
        installed_as: named.installed_as,
        version: named.version.map(|v| cap_text(&v, MAX_NAME_BYTES, false)),
        commit: None,
        method: cap_text(named.method, MAX_NAME_BYTES, false),
        mode: trace.mode.to_owned(),
        error_type: error.map(|e| e.error_type().to_owned()),
        error_message: error.map(|e| cap_text(&e.to_string(), MAX_STDERR_BYTES, false)),
        durations: Durations {
            total: response.execution_time,
            slot: trace.slot,
            environment: trace.environment,
            startup: trace.startup,
            call: trace.call,
            tools: response.tool_calls.iter().map(|t| Duration::from_secs_f64(t.duration.max(0.0))).sum(),
        },
        environment_built: trace.environment_built,
        memory_bytes: response.memory_usage_bytes,
        exit_code: trace.exit_code.or_else(|| error.and_then(agenthub_core::AgentRuntimeError::return_code)),
        signal: trace.signal.or_else(|| error.and_then(agenthub_core::AgentRuntimeError::signal)),
        stderr_tail: stderr.map(|s| cap_text(&s, MAX_STDERR_BYTES, true)),
        caller: caller.as_str().to_owned(),
        parent_id: caller.parent().map(ToString::to_string),
        tool_calls: u32::try_from(response.tool_calls.len()).unwrap_or(u32::MAX),
        params,
        result,
    };
    recorder.record(record);
}
