//! One call's tools ([`CallScope`], the runtime's [`CallTools`]): what a tool call of that
//! call may do, and what it did.
//!
//! Invariants:
//! - only the set's tools are callable: any other name is an MCP error, recorded as
//!   `ToolNotAssigned` (the name cut at 64 characters, as it is told back), and nothing is run;
//! - an agent tool runs as a call of its own (`Call::nested`): the callee's environment,
//!   limits, sandbox and declared permissions, the grants config.yaml gives the callee, and
//!   never the caller's grants; its tools are the callee's own (config.yaml);
//! - a tool call that would call an agent already on the chain of calls above it (a cycle),
//!   or go deeper than `max_tool_depth`, is refused before anything runs;
//! - every tool call is bounded by `tool_timeout` and ends when the calling call ends
//!   ([`CallTools::finish`]) or its MCP session does; at most [`MAX_PARALLEL`] run at once
//!   per call and [`MAX_WAITING`] more wait for a turn (each holds its arguments, up to the
//!   endpoint's body limit; more are refused as `ToolBusyError`), and at most
//!   [`MAX_RECORDS`] are recorded.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use agenthub_core::ToolCallRecord;
use agenthub_runtime::tools::{CallTools, ToolServer};
use agenthub_runtime::{Call, CallCancel};
use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Map, Value as Json, json};
use tokio_util::sync::CancellationToken;

use crate::HostInner;
use crate::set::{Source, ToolSet};

/// Tool calls of one call that run at once; more wait for one to end.
pub const MAX_PARALLEL: usize = 8;

/// Tool calls of one call that may wait for one of the [`MAX_PARALLEL`] to end; more are
/// refused at once.
pub const MAX_WAITING: usize = 32;

/// Tool calls recorded per call (`tool_calls` in the response); later ones run unrecorded.
pub const MAX_RECORDS: usize = 10_000;

/// The tools of one call.
pub(crate) struct CallScope {
    pub(crate) host: Arc<HostInner>,
    pub(crate) set: Arc<ToolSet>,
    /// The agents of the calls from the top one down to this one.
    pub(crate) chain: Vec<String>,
    pub(crate) ended: CancellationToken,
    pub(crate) records: Mutex<Vec<ToolCallRecord>>,
    /// Tool calls running (a function tool's holds its turn until the function returns,
    /// also when the agent was told it timed out or was cancelled).
    pub(crate) parallel: Arc<tokio::sync::Semaphore>,
    /// Tool calls running or waiting for a turn.
    pub(crate) admitted: tokio::sync::Semaphore,
    /// The call's run id: its agent tools' calls name it as their caller.
    pub(crate) run_id: std::sync::OnceLock<agenthub_core::RunId>,
    /// The call's span: each tool call's `execute_tool` span is its child.
    pub(crate) span: std::sync::OnceLock<tracing::Span>,
}

impl std::fmt::Debug for CallScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallScope")
            .field("tools", &self.set.tools().len())
            .field("chain", &self.chain)
            .field("ended", &self.ended.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl CallTools for CallScope {
    fn context(&self) -> &Json {
        self.set.context()
    }

    fn server(&self) -> Arc<dyn ToolServer> {
        Arc::clone(&self.host.server)
    }

    fn finish(&self) -> Vec<ToolCallRecord> {
        self.ended.cancel();
        std::mem::take(&mut *self.records.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn started(&self, run_id: &agenthub_core::RunId, span: &tracing::Span) {
        let _ = self.run_id.set(run_id.clone());
        let _ = self.span.set(span.clone());
    }
}

impl CallScope {
    pub(crate) fn new(host: Arc<HostInner>, set: Arc<ToolSet>, chain: Vec<String>) -> Self {
        Self {
            host,
            set,
            chain,
            ended: CancellationToken::new(),
            records: Mutex::new(Vec::new()),
            parallel: Arc::new(tokio::sync::Semaphore::new(MAX_PARALLEL)),
            admitted: tokio::sync::Semaphore::new(MAX_PARALLEL + MAX_WAITING),
            run_id: std::sync::OnceLock::new(),
            span: std::sync::OnceLock::new(),
        }
    }

    /// Records a tool call's end (in `tool_calls`, and on its span: the current one, since
    /// every tool call runs inside its own; see [`Self::call`]).
    fn record(&self, name: &str, started: Instant, outcome: &str) {
        if outcome != "ok" {
            let span = tracing::Span::current();
            span.record("error.type", outcome);
            span.record("otel.status_description", outcome);
        }
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if records.len() < MAX_RECORDS && !self.ended.is_cancelled() {
            records.push(ToolCallRecord {
                name: name.to_owned(),
                duration: (started.elapsed().as_secs_f64() * 1e6).round() / 1e6,
                outcome: outcome.to_owned(),
            });
        }
    }

    /// The MCP tools the call may use.
    pub(crate) fn listed(&self) -> Vec<rmcp::model::Tool> {
        self.set.listed().to_vec()
    }

    /// Runs the tool `name` with `arguments` for this call; `session` ends with the MCP
    /// session that asked. Traced as OpenTelemetry's `GenAI` `execute_tool {name}`, a child of
    /// the call's span.
    pub(crate) async fn call(
        &self,
        name: &str,
        arguments: Map<String, Json>,
        session: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        let parent = self.span.get().and_then(tracing::Span::id);
        let span = tracing::info_span!(
            target: "agenthub::tools",
            parent: parent,
            "execute_tool",
            otel.name = %format_args!("execute_tool {}", shown(name)),
            otel.kind = "internal",
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = %shown(name),
            gen_ai.tool.call.id = %agenthub_core::RunId::new(),
            error.type = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        tracing::Instrument::instrument(self.call_traced(name, arguments, session), span).await
    }

    async fn call_traced(
        &self,
        name: &str,
        arguments: Map<String, Json>,
        session: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        let started = Instant::now();
        if self.ended.is_cancelled() {
            return Err(ErrorData::internal_error("the call these tools were given to has ended", None));
        }
        let Some(tool) = self.set.get(name) else {
            let name = shown(name);
            self.record(&name, started, "ToolNotAssigned");
            let names: Vec<&str> = self.set.tools().iter().map(|t| t.name.as_str()).collect();
            return Err(ErrorData::invalid_params(
                format!("Unknown tool: {name} (this call was not given it)"),
                Some(json!({"available": names})),
            ));
        };
        let Ok(_admitted) = self.admitted.try_acquire() else {
            self.record(name, started, "ToolBusyError");
            return Err(ErrorData::invalid_request(
                format!(
                    "ToolBusyError: too many tool calls at once ({MAX_PARALLEL} run and {MAX_WAITING} may wait for \
                     a turn): try again when one has ended"
                ),
                None,
            ));
        };
        let stop = CancellationToken::new();
        let permit = tokio::select! {
            permit = Arc::clone(&self.parallel).acquire_owned() => permit.map_err(|_| ErrorData::internal_error("the call has ended", None))?,
            () = self.ended.cancelled() => return Err(self.cancelled(name, started)),
            () = session.cancelled() => return Err(self.cancelled(name, started)),
        };
        let timeout = self.host.options.tool_timeout;
        let (result, outcome) = match &tool.source {
            Source::Agent { agent, method } => {
                let key = self.host.agent_key(agent);
                if let Some(at) = self.chain.iter().position(|k| k == &key) {
                    let mut cycle: Vec<&str> = self.chain[at..].iter().map(String::as_str).collect();
                    cycle.push(&key);
                    let text = format!(
                        "ToolCycleError: calling {name} would call {key} again, which is already running above \
                         this call ({}); agenthub refuses cycles of agent tools",
                        cycle.join(" -> ")
                    );
                    (CallToolResult::error(vec![ContentBlock::text(text)]), "ToolCycleError".to_owned())
                } else if self.chain.len() > self.host.options.max_depth {
                    let text = format!(
                        "ToolDepthError: calling {name} would nest tool calls {} deep (runtime.max_tool_depth is {})",
                        self.chain.len() + 1,
                        self.host.options.max_depth
                    );
                    (CallToolResult::error(vec![ContentBlock::text(text)]), "ToolDepthError".to_owned())
                } else {
                    let mut chain = self.chain.clone();
                    chain.push(key);
                    let nested = match self.host.callee_tools(agent, chain).await {
                        Ok(nested) => nested,
                        Err(e) => {
                            self.record(name, started, "ToolError");
                            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                                "ToolError: the tools of {name}'s agent could not be made ready: {e}"
                            ))]));
                        }
                    };
                    let cancel = CallCancel::new();
                    let mut call = Call::shared(agent, method.clone())
                        .params(arguments)
                        .cancel(&cancel)
                        .timeout(timeout)
                        .nested();
                    if let Some(nested) = nested {
                        call = call.tools(nested);
                    }
                    if let Some(parent) = self.run_id.get() {
                        call = call.caller(agenthub_core::Caller::Tool { parent: parent.clone() });
                    }
                    call = call.trace_parent(tracing::Span::current());
                    let runtime = Arc::clone(&self.host.runtime);
                    let mut task = tokio::task::spawn_blocking(move || runtime.call_blocking(call));
                    let joined = tokio::select! {
                        joined = &mut task => joined,
                        () = self.ended.cancelled() => { cancel.cancel(); let _ = task.await; return Err(self.cancelled(name, started)); }
                        () = session.cancelled() => { cancel.cancel(); let _ = task.await; return Err(self.cancelled(name, started)); }
                    };
                    let response = joined.map_err(|e| {
                        ErrorData::internal_error(format!("the tool call's thread failed: {e}"), None)
                    })?;
                    let outcome = response.error().map_or("ok", agenthub_core::AgentRuntimeError::error_type);
                    (agenthub_mcp::tool_result(&response, tool.output_schema.is_some()), outcome.to_owned())
                }
            }
            Source::Upstream { upstreams, server, tool: upstream_name } => {
                let called = upstreams.call(server, upstream_name, arguments, timeout, stop.clone());
                tokio::select! {
                    called = called => match called {
                        Ok(result) => {
                            let outcome = if result.is_error == Some(true) { "ToolError" } else { "ok" };
                            (result, outcome.to_owned())
                        }
                        Err(e) => {
                            let kind = crate::upstream_error_type(&e);
                            (CallToolResult::error(vec![ContentBlock::text(format!("{kind}: {e}"))]), kind.to_owned())
                        }
                    },
                    () = self.ended.cancelled() => { stop.cancel(); return Err(self.cancelled(name, started)); }
                    () = session.cancelled() => { stop.cancel(); return Err(self.cancelled(name, started)); }
                }
            }
            Source::Function(function) => {
                let function = Arc::clone(function);
                // The function runs to its end whatever happens here (it cannot be stopped),
                // and keeps its turn until then: a call that times out or is cancelled does
                // not let more than MAX_PARALLEL functions run at once.
                let task = tokio::task::spawn_blocking(move || {
                    let _turn = permit;
                    function.call(arguments)
                });
                let joined = tokio::select! {
                    joined = tokio::time::timeout(timeout, task) => joined,
                    () = self.ended.cancelled() => return Err(self.cancelled(name, started)),
                    () = session.cancelled() => return Err(self.cancelled(name, started)),
                };
                match joined {
                    Ok(Ok(Ok(value))) => {
                        let text = match &value {
                            Json::String(text) => text.clone(),
                            other => other.to_string(),
                        };
                        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                        if value.is_object() {
                            result.structured_content = Some(value);
                        }
                        (result, "ok".to_owned())
                    }
                    Ok(Ok(Err(text))) => (
                        CallToolResult::error(vec![ContentBlock::text(format!("ToolError: {text}"))]),
                        "ToolError".to_owned(),
                    ),
                    Ok(Err(e)) => (
                        CallToolResult::error(vec![ContentBlock::text(format!(
                            "ToolError: the tool failed: {e}"
                        ))]),
                        "ToolError".to_owned(),
                    ),
                    Err(_) => (
                        CallToolResult::error(vec![ContentBlock::text(format!(
                            "TimeoutError: {name} did not answer within {}s (runtime.tool_timeout)",
                            timeout.as_secs_f64()
                        ))]),
                        "TimeoutError".to_owned(),
                    ),
                }
            }
        };
        self.record(name, started, &outcome);
        Ok(result)
    }

    fn cancelled(&self, name: &str, started: Instant) -> ErrorData {
        self.record(name, started, "Cancelled");
        ErrorData::internal_error("the tool call was cancelled: the call that made it has ended", None)
    }
}

/// The name of a tool that was not assigned, as it is recorded and told back: the agent
/// chose it, and a tool's name is at most 64 characters, so longer ones are cut there.
pub(crate) fn shown(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_names_are_shown_cut_at_64_characters() {
        assert_eq!(super::shown("add"), "add");
        assert_eq!(super::shown(&"x".repeat(64)), "x".repeat(64));
        assert_eq!(super::shown(&"é".repeat(1_000_000)), format!("{}…", "é".repeat(64)));
    }
}
