//! An MCP server that exposes every method of agenthub agents as a tool
//! (`agenthub mcp serve`), over warm workers.
//!
//! ```no_run
//! use std::sync::Arc;
//! use agenthub_mcp::{McpServer, Options};
//! use agenthub_runtime::{AgentRuntime, Config};
//!
//! let mut config = Config::load()?;
//! config.runtime.mode = agenthub_core::ExecutionMode::Warm;
//! let runtime = AgentRuntime::from_config(config)?;
//! let agent = runtime.load_agent("examples/agents/hello")?;
//! let server = McpServer::new(Arc::new(runtime), vec![agent], Options::default())?;
//! agenthub_mcp::serve_stdio(server)?; // until EOF on stdin (or stdout is closed)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Over HTTP, [`serve_http`] serves any rmcp `ServerHandler` (Streamable HTTP at `/mcp`, the
//! legacy HTTP+SSE transport at `/sse`), one handler per session; [`serve_http_blocking`] is
//! what the CLI runs (see [`http`]).
//!
//! The protocol (JSON-RPC framing, `initialize` for 2024-11-05 to 2025-11-25 and the
//! handshake-free 2026-07-28 lifecycle with `server/discover`, `ping`, cancellation
//! bookkeeping, -32601 for unknown methods) is the official Rust SDK's (`rmcp`); this crate
//! supplies the tools, what a call does, and the line transport (how a malformed line is
//! answered, and that a closed output ends the session).
//!
//! Invariants:
//! - nothing but protocol is written to the writer: agents' output is captured by the
//!   runtime, logs go to `tracing` (stderr in the CLI);
//! - a tool call runs through [`agenthub_runtime::AgentRuntime::execute_cancellable`] on a
//!   blocking thread,
//!   so the protocol loop is never blocked and calls overlap;
//! - `notifications/cancelled` for a call, and the end of the input or of the output (a write
//!   that fails; for stdio also a stdout pipe whose reader is gone), cancel its
//!   [`agenthub_runtime::CallCancel`]: its warm worker or one-shot process is killed (and, for a client's
//!   cancellation, the agent's workers are topped up again in the background);
//! - every line gets the answer JSON-RPC asks for: a request whose params do not fit its
//!   method -32602 with its id (-32601 for a method not served), a line that is not JSON
//!   -32700 with id null, a notification nothing;
//! - [`McpServer::serve`] returns only when no call it started is still running (bounded:
//!   what is left after [`SHUTDOWN_GRACE`] is killed with the runtime's processes).

pub mod http;
mod result;
mod server;
mod sse;
pub mod tools;
mod transport;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agenthub_runtime::LoadedAgent;
use serde_json::{Map, Value as Json, json};

pub use http::{HttpOptions, SessionEnd, serve_http};
pub use result::{error_text, tool_result};
pub use server::McpServer;

/// How long in-flight calls get to end after the input closed before every process of the
/// runtime is killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The longest JSON-RPC line read from the client.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often a running call whose request carried a `progressToken` reports progress
    /// (clients time out at about 60 s without it).
    pub progress_interval: Duration,
    /// What the user grants every call beyond the agents' declarations (`mcp serve
    /// --allow-net …`); see [`agenthub_runtime::Call::grants`].
    pub grants: agenthub_core::Grants,
    /// The tools each call of an agent gets (SPEC §9), if any; see
    /// [`agenthub_runtime::Call::tools`].
    pub tools: Option<ToolsFor>,
}

/// What gives a call of an agent its tools (`agenthub-tools` makes it): `None` for an agent
/// without tools.
#[derive(Clone)]
pub struct ToolsFor(pub Arc<ToolsForFn>);

/// The function inside [`ToolsFor`].
pub type ToolsForFn =
    dyn Fn(&LoadedAgent) -> Option<Arc<dyn agenthub_runtime::tools::CallTools>> + Send + Sync;

impl std::fmt::Debug for ToolsFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolsFor")
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            progress_interval: Duration::from_secs(5),
            grants: agenthub_core::Grants::default(),
            tools: None,
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// No agent to serve, or no method in any of them.
    #[error("no tools to serve: {0}")]
    NoTools(String),
    /// The async runtime could not be started.
    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The client did not complete the handshake (it sent something else first, or the
    /// connection failed).
    #[error("the MCP session did not start: {0}")]
    Handshake(String),
    /// The protocol loop failed.
    #[error("the MCP session failed: {0}")]
    Session(String),
    /// The HTTP server could not listen on its address.
    #[error("could not listen on {0}: {1}")]
    Listen(std::net::SocketAddr, #[source] std::io::Error),
}

/// Serves `server` on stdin and stdout until stdin closes or stdout does (a blocking call: it
/// runs its own single-threaded async runtime). Stdout carries nothing but protocol.
pub fn serve_stdio(server: McpServer) -> Result<(), McpError> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(McpError::Runtime)?;
    let result = runtime.block_on(async {
        let (read, write) = rmcp::transport::io::stdio_pipes();
        server.serve_until_hangup(read, write, Box::pin(stdout_hangup())).await
    });
    // Every call has ended by now; nothing is waited for here.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Serves `server` over HTTP on `addr` ([`serve_http`], one clone of `server` per session)
/// until `stop_requested` returns true (it is asked every 50 ms; a signal handler's flag), then
/// ends every session and cancels every call ([`McpServer::shutdown`]) and returns. A blocking
/// call: it runs its own async runtime. `bound` is told the address listened on (`addr` may
/// ask for port 0) before the first connection is accepted.
pub fn serve_http_blocking(
    server: &McpServer,
    addr: std::net::SocketAddr,
    options: HttpOptions,
    bound: impl FnOnce(std::net::SocketAddr),
    stop_requested: impl Fn() -> bool + Send + 'static,
) -> Result<(), McpError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(McpError::Runtime)?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| McpError::Listen(addr, e))?;
        bound(listener.local_addr().map_err(|e| McpError::Listen(addr, e))?);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let watcher = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = watcher.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {
                        if stop_requested() {
                            watcher.cancel();
                            break;
                        }
                    }
                }
            }
        });
        let handler = server.clone();
        let served = serve_http(listener, move || handler.clone(), options, shutdown.clone()).await;
        shutdown.cancel();
        server.shutdown().await;
        served.map_err(|e| McpError::Session(e.to_string()))
    });
    // Every call has ended by now; nothing is waited for here.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Resolves when stdout is a pipe whose read end has been closed (the client stopped reading,
/// whether or not anything is being written); never for anything else.
async fn stdout_hangup() {
    use std::os::fd::{AsFd as _, OwnedFd};
    use std::os::unix::fs::FileTypeExt as _;
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    let watched = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .ok()
        .filter(|file| file.metadata().is_ok_and(|m| m.file_type().is_fifo()))
        // A pipe's write end reports an error, and only that, once no reader is left.
        .and_then(|file| {
            // SAFETY: the `OwnedFd` is a valid open descriptor, owned by the `AsyncFd` for its
            // whole life, and always reports that same descriptor.
            unsafe { AsyncFd::register_with_interest(OwnedFd::from(file), Interest::ERROR) }.ok()
        });
    match watched {
        Some(fd) => drop(fd.ready(Interest::ERROR).await),
        None => std::future::pending().await,
    }
}

/// The `{"mcpServers": {...}}` snippet that Claude Desktop, Cursor and Claude Code read:
/// `binary mcp serve AGENT…` under `name`, with `AGENTHUB_HOME` set to `home`.
pub fn client_config(name: &str, binary: &Path, agents: &[String], home: &Path) -> Json {
    let mut args = vec![json!("mcp"), json!("serve")];
    args.extend(agents.iter().map(|a| json!(a)));
    let mut server = Map::new();
    server.insert("command".to_owned(), json!(binary.display().to_string()));
    server.insert("args".to_owned(), Json::Array(args));
    server.insert("env".to_owned(), json!({"AGENTHUB_HOME": home.display().to_string()}));
    json!({"mcpServers": {name: server}})
}

/// The name of the server in a client's configuration: `agenthub-<agent>` for one agent,
/// `agenthub` for several.
pub fn server_name(agents: &[Arc<LoadedAgent>]) -> String {
    match agents {
        [one] => tools::unique_name(
            &format!("agenthub-{}", one.manifest.name),
            &mut std::collections::HashSet::new(),
        ),
        _ => "agenthub".to_owned(),
    }
}
