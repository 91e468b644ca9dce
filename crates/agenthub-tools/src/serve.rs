//! The MCP endpoint of calls with tools: legacy SSE at `/sse` and Streamable HTTP at `/mcp`
//! (`agenthub_mcp::http`), answering with the tools of the call a [`ToolSlot`] holds at each
//! request.
//!
//! Invariants:
//! - a request made while the slot is empty (between a warm worker's calls) lists no tools
//!   and calls none;
//! - the endpoint stops, and every session on it ends, when the guard [`SlotServer::serve`]
//!   returned is dropped (the process it serves has been reaped).

use agenthub_runtime::tools::{ListenerGuard, ToolServer, ToolSlot};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use tokio_util::sync::CancellationToken;

use crate::scope::CallScope;

/// Serves slots on the tools' async runtime.
#[derive(Debug, Default)]
pub(crate) struct SlotServer;

impl ToolServer for SlotServer {
    fn serve(
        &self,
        listener: std::net::TcpListener,
        slot: ToolSlot,
        token: Option<String>,
    ) -> std::io::Result<ListenerGuard> {
        listener.set_nonblocking(true)?;
        let runtime = crate::tokio_runtime()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let shutdown = CancellationToken::new();
        let options = agenthub_mcp::http::HttpOptions {
            token,
            token_in_path: true,
            // One agent is the only client: a few sessions, each a connection or two.
            max_sessions: ENDPOINT_SESSIONS,
            max_connections: ENDPOINT_CONNECTIONS,
            shared_connections: Some(shared_connections()),
            ..agenthub_mcp::http::HttpOptions::default()
        };
        let stop = shutdown.clone();
        runtime.spawn(async move {
            let handler = move || SlotHandler { slot: slot.clone() };
            if let Err(e) = agenthub_mcp::http::serve_http(listener, handler, options, stop).await {
                tracing::debug!(error = %e, "the call's tool endpoint stopped");
            }
        });
        Ok(Box::new(shutdown.drop_guard()))
    }
}

/// Most sessions one call's endpoint keeps open (the original's agents open one per tool call,
/// and a call runs at most 8 tool calls at once).
pub const ENDPOINT_SESSIONS: usize = 16;

/// Most connections one call's endpoint keeps open.
pub const ENDPOINT_CONNECTIONS: usize = 32;

/// The connections all endpoints of the process may hold together: a quarter of the
/// descriptors the process may open (at least 64), so that hostile calls holding
/// connections can never leave agenthub without descriptors for processes, pipes and files.
fn shared_connections() -> std::sync::Arc<tokio::sync::Semaphore> {
    static BUDGET: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    std::sync::Arc::clone(BUDGET.get_or_init(|| {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct it is given.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } == 0 {
            usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
        } else {
            1024
        };
        std::sync::Arc::new(tokio::sync::Semaphore::new((soft / 4).clamp(64, 1 << 16)))
    }))
}

/// One MCP session's handler: the call in the slot at each request.
#[derive(Clone)]
pub(crate) struct SlotHandler {
    slot: ToolSlot,
}

impl SlotHandler {
    fn with_scope<T>(&self, f: impl FnOnce(&CallScope) -> T) -> Option<T> {
        let current = self.slot.current()?;
        current.as_any().downcast_ref::<CallScope>().map(f)
    }
}

impl ServerHandler for SlotHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agenthub-tools", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "The tools agenthub assigned to this call: other agents' methods and the user's MCP servers' \
                 tools. Errors come back as tool results with isError set.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.with_scope(CallScope::listed).unwrap_or_default()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.with_scope(|scope| scope.listed().into_iter().find(|t| t.name == name)).flatten()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(current) = self.slot.current() else {
            return Err(ErrorData::invalid_params(
                format!(
                    "Unknown tool: {} (no call is running: tools exist only during a call)",
                    crate::scope::shown(&request.name)
                ),
                None,
            ));
        };
        let Some(scope) = current.as_any().downcast_ref::<CallScope>() else {
            return Err(ErrorData::internal_error("these tools are not served by agenthub-tools", None));
        };
        let result =
            scope.call(&request.name, request.arguments.unwrap_or_default(), context.ct.clone()).await?;
        Ok(CallToolResponse::Complete(result))
    }
}
