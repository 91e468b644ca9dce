//! Tools for a call, the runtime's side (SPEC §9): the request's `tool_context`, the MCP
//! endpoint an agent reaches its tools on, and the `tool_calls` of the response. Which tools
//! a call has and how each is called belong to the embedder (`agenthub-tools`), through
//! [`CallTools`] and [`ToolServer`].
//!
//! Where the endpoint is:
//! - in a sandbox with a network namespace: `127.0.0.1:8000` ([`TOOL_PORT`]) inside it, a
//!   listener the sandbox makes and hands back, served from this process; no other process
//!   can reach it, and concurrent calls each have their own port 8000;
//! - without one (`--sandbox off`, or a kernel without user namespaces): a port the kernel
//!   picks on the host's `127.0.0.1`, served only to requests that carry the call's secret
//!   (`AGENTHUB_MCP_TOKEN`, as `Authorization: Bearer` or the first path segment of
//!   `AGENTHUB_MCP_URL`). Agents that hard-code `localhost:8000` do not find their tools
//!   there; agents that read `AGENTHUB_MCP_URL` (or `AGENTHUB_MCP_HOST` as a URL, as the
//!   original's research-agent does) do.
//!
//! Either way the variables `AGENTHUB_MCP_HOST`, `AGENTHUB_MCP_PORT`,
//! `AGENTHUB_MCP_PROTOCOL` (`sse`) and `AGENTHUB_MCP_URL` (the base URL: `/sse` and `/mcp`
//! are under it) are set. A warm worker keeps one endpoint for its life; what it serves is
//! the [`ToolSlot`]'s current call, set for the length of each call and empty between calls.

use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};

use agenthub_core::ToolCallRecord;
pub use agenthub_process::sandbox::ListenerGuard;
use agenthub_process::sandbox::{ListenerHook, Sandbox};
use serde_json::Value as Json;

/// The loopback port agents reach their tools on inside the sandbox (the original's).
pub const TOOL_PORT: u16 = 8000;

/// One call's tools, as the embedder assigned them.
pub trait CallTools: Send + Sync + std::fmt::Debug {
    /// The request's `tool_context` object (SPEC §9).
    fn context(&self) -> &Json;
    /// What serves the call's MCP endpoint.
    fn server(&self) -> Arc<dyn ToolServer>;
    /// The call ended (answered, failed, timed out or cancelled): tool calls still in flight
    /// are cancelled, later ones refused. Returns what was called, in order.
    fn finish(&self) -> Vec<ToolCallRecord>;
    /// The embedder's own type, for its server to reach it from a [`ToolSlot`].
    fn as_any(&self) -> &dyn std::any::Any;
    /// The call got its run id (before anything runs): agent tools name it as their calls'
    /// caller in run history.
    /// `span` is the call's: the tool calls' spans are its children.
    fn started(&self, run_id: &agenthub_core::RunId, span: &tracing::Span) {
        let _ = (run_id, span);
    }
}

/// Serves MCP (legacy SSE at `/sse`, Streamable HTTP at `/mcp`) on a listener, answering
/// with the tools of whatever call `slot` holds at each request.
pub trait ToolServer: Send + Sync {
    /// Serves `listener` until the returned guard is dropped. With a `token`, only requests
    /// carrying it are served.
    fn serve(
        &self,
        listener: TcpListener,
        slot: ToolSlot,
        token: Option<String>,
    ) -> std::io::Result<ListenerGuard>;
}

/// The call an MCP endpoint currently serves: one call for a one-shot process; for a warm
/// worker, the call it is answering, and none between calls.
#[derive(Clone, Default)]
pub struct ToolSlot(Arc<Mutex<Option<Arc<dyn CallTools>>>>);

impl std::fmt::Debug for ToolSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSlot").field("occupied", &self.current().is_some()).finish()
    }
}

impl ToolSlot {
    /// The call being served, if any.
    pub fn current(&self) -> Option<Arc<dyn CallTools>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set(&self, tools: Option<Arc<dyn CallTools>>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = tools;
    }
}

/// Holds a call in a slot; clears it when the call ends, however it ends.
pub(crate) struct Occupied<'a>(&'a ToolSlot);

impl<'a> Occupied<'a> {
    pub(crate) fn new(slot: &'a ToolSlot, tools: &Arc<dyn CallTools>) -> Self {
        slot.set(Some(Arc::clone(tools)));
        Self(slot)
    }
}

impl Drop for Occupied<'_> {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

/// A spawn's MCP endpoint: the sandbox (with its hook serving [`TOOL_PORT`]) and the
/// variables to set, plus what serves a host endpoint (held as long as the process runs).
pub(crate) struct Endpoint {
    pub(crate) sandbox: Option<Sandbox>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) guard: Option<ListenerGuard>,
}

/// The endpoint for one spawn that serves `slot` with `server`. `sandbox` is the call's
/// (with [`TOOL_PORT`] among its loopback ports when it has a network namespace).
pub(crate) fn endpoint(
    sandbox: Option<&Sandbox>,
    server: &Arc<dyn ToolServer>,
    slot: &ToolSlot,
) -> std::io::Result<Endpoint> {
    let namespaced = sandbox.is_some_and(|s| {
        s.network.ports().contains(&TOOL_PORT) && agenthub_process::sandbox::namespaces_usable()
    });
    if let Some(sandbox) = sandbox.filter(|_| namespaced) {
        let mut sandbox = sandbox.clone();
        let inner = sandbox.on_listeners.take();
        let (server, slot) = (Arc::clone(server), slot.clone());
        sandbox.on_listeners = Some(ListenerHook(Arc::new(move |listeners| {
            let (tool, rest): (Vec<_>, Vec<_>) =
                listeners.into_iter().partition(|(port, _)| *port == TOOL_PORT);
            let mut guards: Vec<ListenerGuard> = Vec::new();
            for (_, listener) in tool {
                match server.serve(listener, slot.clone(), None) {
                    Ok(guard) => guards.push(guard),
                    Err(e) => tracing::warn!(error = %e, "cannot serve the call's tools"),
                }
            }
            if let Some(inner) = &inner {
                guards.push((inner.0)(rest));
            }
            Box::new(guards)
        })));
        let url = format!("http://127.0.0.1:{TOOL_PORT}");
        return Ok(Endpoint { sandbox: Some(sandbox), env: variables(TOOL_PORT, &url, None), guard: None });
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    let token = secret()?;
    let guard = server.serve(listener, slot.clone(), Some(token.clone()))?;
    let url = format!("http://127.0.0.1:{port}/{token}");
    Ok(Endpoint { sandbox: sandbox.cloned(), env: variables(port, &url, Some(&token)), guard: Some(guard) })
}

fn variables(port: u16, url: &str, token: Option<&str>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("AGENTHUB_MCP_HOST".into(), "127.0.0.1".into()),
        ("AGENTHUB_MCP_PORT".into(), port.to_string().into()),
        ("AGENTHUB_MCP_PROTOCOL".into(), "sse".into()),
        ("AGENTHUB_MCP_URL".into(), url.into()),
    ];
    if let Some(token) = token {
        env.push(("AGENTHUB_MCP_TOKEN".into(), token.into()));
    }
    env
}

/// 128 random bits as hex, from the kernel.
fn secret() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().fold(String::with_capacity(32), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

/// Adds `tool_context` to a request's JSON text.
pub(crate) fn with_context(
    request: agenthub_core::ExecutionRequest,
    tools: Option<&Arc<dyn CallTools>>,
) -> String {
    let mut request = request;
    request.tool_context = tools.map(|t| t.context().clone());
    request.to_json()
}
