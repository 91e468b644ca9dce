//! The MCP handler: tools/list from the manifests, tools/call through the runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agenthub_runtime::{AgentRuntime, Call, CallCancel, LoadedAgent};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CustomRequest, CustomResult, ErrorCode, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt as _};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::tools::{ToolSpec, tools_of};
use crate::transport::{Hangup, LineTransport};
use crate::{McpError, Options, SHUTDOWN_GRACE};

/// An MCP server over one runtime and a fixed set of agents. Cheap to clone (shared state).
#[derive(Clone)]
pub struct McpServer {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<AgentRuntime>,
    tools: Vec<ToolSpec>,
    /// The tools as listed (built once).
    listed: Vec<Tool>,
    by_name: HashMap<String, usize>,
    options: Options,
    /// Cancelled when the stdio session's input ends or its output closes, or by
    /// [`McpServer::shutdown`]: every call in flight, of every session, is cancelled. (One of
    /// many HTTP sessions ending cancels its own calls only, through their `context.ct`.)
    closing: CancellationToken,
    /// Blocking jobs (calls, worker restarts) still running.
    running: Arc<AtomicUsize>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer").field("tools", &self.inner.by_name.len()).finish_non_exhaustive()
    }
}

/// Counts a blocking job for as long as it lives.
struct Job(Arc<AtomicUsize>);

impl Job {
    fn start(running: &Arc<AtomicUsize>) -> Self {
        running.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(running))
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl McpServer {
    /// A server for the methods of `agents`, run by `runtime` (which should be in warm
    /// mode; agents that cannot be warm are run one-shot).
    pub fn new(
        runtime: Arc<AgentRuntime>,
        agents: Vec<LoadedAgent>,
        options: Options,
    ) -> Result<Self, McpError> {
        let agents: Vec<Arc<LoadedAgent>> = agents.into_iter().map(Arc::new).collect();
        let tools = tools_of(&agents);
        if tools.is_empty() {
            return Err(McpError::NoTools("the agents declare no methods".to_owned()));
        }
        let listed = tools
            .iter()
            .map(|t| {
                let tool = Tool::new(t.name.clone(), t.description.clone(), Arc::new(t.input_schema.clone()));
                match &t.output_schema {
                    Some(schema) => tool.with_raw_output_schema(Arc::new(schema.clone())),
                    None => tool,
                }
            })
            .collect();
        let by_name = tools.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                runtime,
                tools,
                listed,
                by_name,
                options,
                closing: CancellationToken::new(),
                running: Arc::new(AtomicUsize::new(0)),
            }),
        })
    }

    /// The tools, in the order they are listed.
    pub fn tools(&self) -> &[ToolSpec] {
        &self.inner.tools
    }

    /// Serves one client on `read` and `write` until `read` ends or `write` fails (the client
    /// closed it); then cancels the calls in flight and returns once none is running (bounded
    /// by [`SHUTDOWN_GRACE`], after which the runtime's processes are killed).
    pub async fn serve<R, W>(self, read: R, write: W) -> Result<(), McpError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        self.serve_until_hangup(read, write, Box::pin(std::future::pending())).await
    }

    /// Ends the server, for a server shared by many sessions (HTTP, [`crate::serve_http`] with
    /// a clone per session): cancels every call in flight and refuses new ones, then returns once
    /// none is running (bounded by [`SHUTDOWN_GRACE`], after which the runtime's processes are
    /// killed).
    pub async fn shutdown(&self) {
        self.inner.closing.cancel();
        self.inner.wait_for_jobs().await;
    }

    /// [`McpServer::serve`], also ending when `hangup` resolves (the output was found closed
    /// without a write).
    pub(crate) async fn serve_until_hangup<R, W>(
        self,
        read: R,
        write: W,
        hangup: Hangup,
    ) -> Result<(), McpError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let closing = self.inner.closing.clone();
        let transport = LineTransport::new(read, write, closing.clone(), hangup);
        let output_closed = transport.output_closed();
        let inner = Arc::clone(&self.inner);
        let outcome = match self.serve_with_ct(transport, CancellationToken::new()).await {
            Ok(running) => running.waiting().await.map(|_| ()).map_err(|e| McpError::Session(e.to_string())),
            // The input ended before a session started: nothing to do, not an error.
            Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => Ok(()),
            // The output closed during the handshake: the client is gone, as at EOF.
            Err(_) if output_closed.is_cancelled() => Ok(()),
            Err(e) => Err(McpError::Handshake(e.to_string())),
        };
        closing.cancel();
        inner.wait_for_jobs().await;
        outcome
    }
}

impl Inner {
    /// Waits until no blocking job runs: [`SHUTDOWN_GRACE`], then every process of the
    /// runtime is killed, then as long again.
    async fn wait_for_jobs(&self) {
        if !self.wait_idle(SHUTDOWN_GRACE).await {
            let killed = self.runtime.cleanup_processes();
            tracing::warn!(killed, "calls still running at shutdown were killed");
            if !self.wait_idle(SHUTDOWN_GRACE).await {
                tracing::warn!("calls still running after their processes were killed");
            }
        }
    }

    async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.running.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Starts the agent's workers again in the background (after one was killed).
    fn top_up_workers(self: &Arc<Self>, agent: &LoadedAgent) {
        // Workers started ahead serve calls without tools only.
        if self.options.tools.as_ref().is_some_and(|f| (f.0)(agent).is_some()) {
            return;
        }
        if self.closing.is_cancelled() {
            return;
        }
        let job = Job::start(&self.running);
        let runtime = Arc::clone(&self.runtime);
        let dir = agent.location.dir.to_string_lossy().into_owned();
        drop(tokio::task::spawn_blocking(move || {
            let _job = job;
            if let Err(e) = runtime.prestart_workers_blocking(&dir) {
                tracing::debug!(error = %e, "could not restart workers after a cancellation");
            }
        }));
    }

    async fn call(
        self: &Arc<Self>,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(&index) = self.by_name.get(request.name.as_ref()) else {
            let names: Vec<&str> = self.tools.iter().map(|t| t.name.as_str()).collect();
            return Err(ErrorData::invalid_params(
                format!("Unknown tool: {}", request.name),
                Some(json!({"available": names})),
            ));
        };
        if self.closing.is_cancelled() {
            return Err(ErrorData::internal_error("the server is shutting down", None));
        }
        let tool = &self.tools[index];
        let span = request_span(&tool.name, &context);
        let params = request.arguments.unwrap_or_default();
        let cancel = CallCancel::new();
        let job = Job::start(&self.running);
        let mut task = {
            let mut call = Call::shared(&tool.agent, tool.method.clone())
                .params(params)
                .cancel(&cancel)
                .grants(self.options.grants.clone())
                .trace_parent(span.clone());
            if let Some(tools) = self.options.tools.as_ref().and_then(|f| (f.0)(&tool.agent)) {
                call = call.tools(tools);
            }
            let runtime = Arc::clone(&self.runtime);
            tokio::task::spawn_blocking(move || {
                let _job = job;
                runtime.call_blocking(call)
            })
        };
        // The request's token, or (Streamable HTTP) its session's end, which rmcp reports
        // through the token only after a drain.
        let session_end = crate::SessionEnd::of(&context);
        let cancelled = async {
            match &session_end {
                Some(end) => tokio::select! {
                    () = context.ct.cancelled() => {}
                    () = end.cancelled() => {}
                },
                None => context.ct.cancelled().await,
            }
        };
        tokio::pin!(cancelled);
        let progress = context.meta.get_progress_token();
        let every = self.options.progress_interval.max(Duration::from_millis(10));
        let started = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval_at(started + every, every);
        let joined = loop {
            tokio::select! {
                joined = &mut task => break joined,
                () = &mut cancelled => {
                    cancel.cancel();
                    let _ = task.await;
                    self.top_up_workers(&tool.agent);
                    return Err(ErrorData::internal_error("the call was cancelled", None));
                }
                () = self.closing.cancelled() => {
                    cancel.cancel();
                    let _ = task.await;
                    return Err(ErrorData::internal_error("the server is shutting down", None));
                }
                _ = ticks.tick(), if progress.is_some() => {
                    let Some(token) = progress.clone() else { continue };
                    let secs = started.elapsed().as_secs_f64();
                    // Seconds so far (tenths): it increases with every notification.
                    let note = ProgressNotificationParam::new(token, (secs * 10.0).round() / 10.0)
                        .with_message(format!("{} running for {:.0} s", tool.name, secs));
                    if let Err(e) = context.peer.notify_progress(note).await {
                        tracing::debug!(error = %e, "could not send a progress notification");
                    }
                }
            }
        };
        let response =
            joined.map_err(|e| ErrorData::internal_error(format!("the call's thread failed: {e}"), None))?;
        if let Some(error) = response.error()
            && !span.is_disabled()
        {
            span.record("error.type", error.error_type());
            let message = error.to_string();
            let mut end = message.len().min(1024);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            span.record("otel.status_description", &message[..end]);
        }
        Ok(CallToolResponse::Complete(crate::tool_result(&response, tool.output_schema.is_some())))
    }
}

/// The span of one `tools/call` request (OpenTelemetry's MCP conventions), continuing the
/// trace the client sent in `params._meta` (`traceparent`, `tracestate`) if it sent one.
fn request_span(tool: &str, context: &RequestContext<RoleServer>) -> tracing::Span {
    let session = context
        .extensions
        .get::<hyper::http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 256)
        .map(str::to_owned);
    let span = tracing::info_span!(
        target: "agenthub::mcp",
        parent: None,
        "tools/call",
        otel.name = %format_args!("tools/call {tool}"),
        otel.kind = "server",
        mcp.method.name = "tools/call",
        mcp.session.id = session,
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tool,
        jsonrpc.request.id = %context.id,
        error.type = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    if let Some(traceparent) = context.meta.get_traceparent() {
        agenthub_telemetry::set_remote_parent(&span, traceparent, context.meta.get_tracestate());
    }
    span
}

// The requests answered here and by rmcp's defaults (initialize, ping, server/discover) are
// `transport::SERVED`: a malformed one of them is answered -32602 there.
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agenthub", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Each tool runs one method of an agenthub agent (a Python agent in its own environment). \
                 Errors come back as tool results with isError set: their text starts with the error type \
                 and carries a suggestion.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.inner.listed.clone()))
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        // Some clients probe methods and wait for an answer: always give one.
        Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("Method not found: {}", request.method),
            None,
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.by_name.get(name).map(|&i| self.inner.listed[i].clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.inner.call(request, context).await
    }
}
