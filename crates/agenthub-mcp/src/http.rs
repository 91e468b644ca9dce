//! MCP over HTTP: any rmcp [`ServerHandler`] served on a TCP listener (`agenthub mcp serve
//! --http`), one handler per session.
//!
//! Routes (after an optional `/<token>` prefix, see [`HttpOptions::token_in_path`]):
//! - `/mcp` (POST, GET, DELETE): Streamable HTTP, rmcp's [`StreamableHttpService`], stateful;
//! - `GET /sse` and `POST /messages/?session_id=…`: the legacy HTTP+SSE transport of MCP
//!   2024-11-05 (`crate::sse`);
//! - anything else: 404.
//!
//! Invariants:
//! - with a token, nothing is served to a request that does not carry it (401, in constant
//!   time); without one, a request whose `Origin` or `Host` is not loopback is refused (403:
//!   DNS rebinding);
//! - every read has a deadline (headers, bodies), bodies are bounded ([`HttpOptions::max_body_bytes`]:
//!   413) and read [`BODIES_AT_ONCE`] at a time, sessions ([`HttpOptions::max_sessions`]: 503) and connections
//!   ([`HttpOptions::max_connections`]: closed at once) are counted;
//! - a session ending cancels its own calls only (each request's `RequestContext::ct`);
//!   `shutdown` ends the accept loop, every connection and every session, and
//!   [`serve_http`] returns once they are gone (bounded).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rmcp::ServerHandler;
use rmcp::ServiceExt as _;
use rmcp::model::ClientJsonRpcMessage;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::SHUTDOWN_GRACE;
use crate::sse::{Delivery, Sessions};

/// A response, whatever made it.
type HttpResponse = Response<BoxBody<Bytes, Infallible>>;

/// How the HTTP server behaves.
#[derive(Clone)]
pub struct HttpOptions {
    /// When set, every request must carry it: `Authorization: Bearer <token>` or, with
    /// [`HttpOptions::token_in_path`], as the first path segment. Missing or wrong: 401.
    pub token: Option<String>,
    /// Whether the token may also come as the first path segment (`/<token>/mcp`,
    /// `/<token>/sse`, `/<token>/messages/…`), for clients that cannot set headers.
    pub token_in_path: bool,
    /// Most sessions open at once (SSE streams and Streamable HTTP sessions); beyond it 503.
    pub max_sessions: usize,
    /// Most connections open at once; beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// A budget of connections shared with other servers of the process (each connection
    /// also takes one of its permits, or is closed at once), so that many servers together
    /// cannot take every descriptor the process has.
    pub shared_connections: Option<Arc<Semaphore>>,
    /// The largest request body (a JSON-RPC message); beyond it 413.
    pub max_body_bytes: usize,
    /// How long a client gets to send a request's headers.
    pub header_timeout: Duration,
    /// How long a client gets to send a request's body.
    pub body_timeout: Duration,
    /// How often an idle SSE stream (either transport) gets a keep-alive comment.
    pub keep_alive: Duration,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("HttpOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_in_path", &self.token_in_path)
            .field("max_sessions", &self.max_sessions)
            .field("max_connections", &self.max_connections)
            .field("shared_connections", &self.shared_connections.as_ref().map(|s| s.available_permits()))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            token: None,
            token_in_path: false,
            max_sessions: 64,
            max_connections: 256,
            shared_connections: None,
            max_body_bytes: 4 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// For a Streamable HTTP request of a session: a token cancelled as soon as the session is
/// deleted (`DELETE /mcp`), found in the request's `RequestContext` with [`SessionEnd::of`].
/// rmcp cancels `RequestContext::ct` too, but only after letting the session's calls finish
/// for up to 5 s; a handler that also watches this token cancels its calls at once. (A legacy
/// SSE session's `ct` is cancelled at once when its stream ends: it needs none.)
#[derive(Debug, Clone)]
pub struct SessionEnd(CancellationToken);

impl SessionEnd {
    /// The token of the session of `context`'s request, if it came over Streamable HTTP.
    pub fn of(context: &RequestContext<RoleServer>) -> Option<CancellationToken> {
        let parts = context.extensions.get::<hyper::http::request::Parts>()?;
        parts.extensions.get::<Self>().map(|end| end.0.clone())
    }
}

/// What every connection shares.
struct State<H: ServerHandler> {
    options: HttpOptions,
    make_handler: Arc<dyn Fn() -> H + Send + Sync>,
    streamable: StreamableHttpService<H, LocalSessionManager>,
    streamable_sessions: Arc<LocalSessionManager>,
    sse: Arc<Sessions>,
    /// The [`SessionEnd`] tokens of the Streamable HTTP sessions, by id.
    ends: std::sync::Mutex<HashMap<String, CancellationToken>>,
    shutdown: CancellationToken,
    /// Connections and SSE sessions, waited for at shutdown.
    tasks: TaskTracker,
    /// Requests refused as not local, so far.
    foreign: std::sync::atomic::AtomicU64,
    /// Turns to read a body ([`BODIES_AT_ONCE`]).
    bodies: Semaphore,
}

/// Request bodies read at once. Each is held whole while it is read, and a client may send
/// all but its last byte and wait: without a bound, as many bodies of up to
/// [`HttpOptions::max_body_bytes`] as connections (256 × 4 MB) would be held. Waiting
/// bodies stay in their connection, unread.
const BODIES_AT_ONCE: usize = 8;

/// Serves MCP over HTTP on `listener` until `shutdown` is cancelled, with a handler from
/// `make_handler` for each session; then ends every connection and session (their calls
/// are cancelled) and returns once they are gone (or after a bounded wait).
///
/// Errors only when the listener fails for good; a connection's failure ends that connection.
pub async fn serve_http<H, F>(
    listener: TcpListener,
    make_handler: F,
    options: HttpOptions,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: ServerHandler,
{
    let make_handler: Arc<dyn Fn() -> H + Send + Sync> = Arc::new(make_handler);
    let streamable_sessions = Arc::new(LocalSessionManager::default());
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        .with_sse_keep_alive(Some(options.keep_alive))
        .with_max_request_body_bytes(options.max_body_bytes);
    if options.token.is_some() {
        // The token protects the server; it may be reached under any name.
        config = config.disable_allowed_hosts();
    }
    let factory = Arc::clone(&make_handler);
    let streamable =
        StreamableHttpService::new(move || Ok(factory()), Arc::clone(&streamable_sessions), config);
    let connections = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let state = Arc::new(State {
        options,
        make_handler,
        streamable,
        streamable_sessions,
        sse: Arc::new(Sessions::default()),
        ends: std::sync::Mutex::default(),
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        foreign: std::sync::atomic::AtomicU64::new(0),
        bodies: Semaphore::new(BODIES_AT_ONCE),
    });
    let mut failures = 0_u32;
    let mut closed = 0_u64;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                failures = 0;
                stream
            }
            Err(e) if is_transient(&e) && failures < 1000 => {
                // Out of descriptors, a connection reset before it was accepted: wait, go on.
                failures += 1;
                tracing::warn!(error = %e, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => {
                stop(&state).await;
                return Err(e);
            }
        };
        let shared = state.options.shared_connections.as_ref().map(|s| Arc::clone(s).try_acquire_owned());
        let (Ok(permit), None | Some(Ok(_))) = (Arc::clone(&connections).try_acquire_owned(), &shared) else {
            // A client may open connections as fast as it likes: the log says so at the 1st,
            // 2nd, 4th, 8th… only.
            closed += 1;
            if closed.is_power_of_two() {
                tracing::warn!(closed, "too many connections: the new ones are closed");
            }
            continue;
        };
        let permit = (permit, shared);
        let _ = stream.set_nodelay(true);
        let state_for_task = Arc::clone(&state);
        state.tasks.spawn(async move {
            let _permit = permit;
            connection(state_for_task, stream).await;
        });
    }
    stop(&state).await;
    Ok(())
}

fn is_transient(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: out of resources for now.
    const OUT_OF_RESOURCES: [i32; 4] = [24, 23, 105, 12];
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || e.raw_os_error().is_some_and(|n| OUT_OF_RESOURCES.contains(&n))
}

/// Ends everything (the shutdown token is cancelled by now, or is cancelled here) and waits
/// for the connections and sessions, bounded.
async fn stop<H: ServerHandler>(state: &State<H>) {
    state.shutdown.cancel();
    state.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE * 2, state.tasks.wait()).await.is_err() {
        tracing::warn!("connections or sessions still open after the shutdown grace");
    }
}

/// One connection, served until it ends or the server shuts down (then dropped: the socket
/// closes, and what it was serving is dropped with it).
async fn connection<H: ServerHandler>(state: Arc<State<H>>, stream: tokio::net::TcpStream) {
    // Cancelled at shutdown, or when an SSE stream of this connection has stalled.
    let ended = state.shutdown.child_token();
    let service_state = Arc::clone(&state);
    let service_ended = ended.clone();
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&service_state);
        let ended = service_ended.clone();
        async move { Ok::<_, Infallible>(route(&state, request, &ended).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.options.header_timeout)
        .max_headers(64)
        .max_buf_size(64 * 1024);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = served => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
        }
        () = ended.cancelled() => {}
    }
}

/// Authenticates `request` and hands it to its route.
async fn route<H: ServerHandler>(
    state: &Arc<State<H>>,
    mut request: Request<Incoming>,
    connection: &CancellationToken,
) -> HttpResponse {
    let options = &state.options;
    let path = request.uri().path().to_owned();
    let (path, prefix) = if let Some(token) = &options.token {
        let in_header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
            .is_some_and(|given| same(given, token.as_bytes()));
        match options.token_in_path.then(|| strip_token(&path, token)).flatten() {
            Some(rest) => (rest, format!("/{token}")),
            None if in_header => (path, String::new()),
            None => return unauthorized(options.token_in_path),
        }
    } else {
        if let Some(why) = not_local(request.headers()) {
            // As often as a client likes: the log says so at the 1st, 2nd, 4th, 8th… only.
            let refused = state.foreign.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if refused.is_power_of_two() {
                tracing::warn!(why, refused, "refused a request that is not local");
            }
            return error(StatusCode::FORBIDDEN, why);
        }
        (path, String::new())
    };
    match (path.as_str(), request.method()) {
        ("/mcp", method) => {
            if method == Method::POST
                && !request.headers().contains_key("mcp-session-id")
                && open_sessions(state).await >= options.max_sessions
            {
                return error(StatusCode::SERVICE_UNAVAILABLE, "too many sessions are open: try again later");
            }
            if !prefix.is_empty() {
                // rmcp does not route by path, but keep the token out of anything it logs.
                let mut parts = request.uri().clone().into_parts();
                let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
                parts.path_and_query = format!("/mcp{query}").parse().ok();
                if let Ok(uri) = hyper::Uri::from_parts(parts) {
                    *request.uri_mut() = uri;
                }
            }
            // Read here, bounded in size and time, so that rmcp never waits on a slow client.
            let (mut parts, body) = request.into_parts();
            let body = match read_body(options, &state.bodies, &parts.headers, body).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            let session =
                parts.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let end = match &session {
                Some(id) => session_end(state, id).await,
                None => None,
            };
            let delete = parts.method == Method::DELETE;
            if let Some(end) = &end {
                parts.extensions.insert(SessionEnd(end.clone()));
            }
            let response = state.streamable.handle(Request::from_parts(parts, Full::new(body))).await;
            if delete
                && response.status().is_success()
                && let (Some(id), Some(end)) = (session, end)
            {
                state.ends.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                end.cancel();
            }
            response
        }
        ("/sse", &Method::GET) => open_sse(state, &prefix, connection).await,
        ("/messages/" | "/messages", &Method::POST) => post_message(state, request).await,
        ("/sse" | "/messages/" | "/messages", _) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not found: MCP is served at /mcp (Streamable HTTP) and /sse (HTTP+SSE)",
        ),
    }
}

/// The path after a `/<token>` prefix, when `path` starts with the token as a whole segment.
fn strip_token(path: &str, token: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    let (first, rest) = rest.split_once('/').map_or((rest, ""), |(first, rest)| (first, rest));
    same(first.as_bytes(), token.as_bytes()).then(|| format!("/{rest}"))
}

/// The credentials of `Bearer <credentials>` (the scheme's name in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
}

/// Constant-time equality (the length is not secret).
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// Why a request without a token is not a local one: an `Origin` or a `Host` that is not
/// loopback (a page of another site, DNS rebinding).
fn not_local(headers: &hyper::HeaderMap) -> Option<&'static str> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let local = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")));
        if !local.is_some_and(|authority| !authority.contains('/') && loopback_authority(authority)) {
            return Some(
                "forbidden: the Origin is not a loopback one (start the server with a token to serve other origins)",
            );
        }
    }
    if let Some(host) = headers.get(header::HOST)
        && !host.to_str().is_ok_and(loopback_authority)
    {
        return Some(
            "forbidden: the Host is not a loopback one (start the server with a token to serve other hosts)",
        );
    }
    None
}

/// `localhost`, `127.0.0.1` or `[::1]`, with or without a port.
fn loopback_authority(authority: &str) -> bool {
    let host = if authority.starts_with('[') {
        match authority.split_once(']') {
            Some((host, port)) if port.is_empty() || valid_port(port) => &authority[..=host.len()],
            _ => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) if valid_port(&format!(":{port}")) => host,
            Some(_) => return false,
            None => authority,
        }
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "[::1]"
}

/// `:<digits>`, a port.
fn valid_port(port: &str) -> bool {
    port.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The [`SessionEnd`] token of Streamable HTTP session `id`, if it is open. Tokens of sessions
/// that ended without a DELETE (idle) are dropped once there are more tokens than sessions
/// could be open.
async fn session_end<H: ServerHandler>(state: &State<H>, id: &str) -> Option<CancellationToken> {
    let open = state.streamable_sessions.sessions.read().await;
    if !open.contains_key(id) {
        return None;
    }
    let mut ends = state.ends.lock().unwrap_or_else(PoisonError::into_inner);
    if ends.len() > state.options.max_sessions.saturating_mul(2) {
        ends.retain(|id, _| open.contains_key(id.as_str()));
    }
    Some(ends.entry(id.to_owned()).or_insert_with(|| state.shutdown.child_token()).clone())
}

async fn open_sessions<H: ServerHandler>(state: &State<H>) -> usize {
    state.sse.len() + state.streamable_sessions.sessions.read().await.len()
}

/// `GET /sse`: a new session, served by a handler of its own until the stream's client goes
/// away (or stops reading: then `connection` is cancelled) or the server shuts down.
async fn open_sse<H: ServerHandler>(
    state: &Arc<State<H>>,
    prefix: &str,
    connection: &CancellationToken,
) -> HttpResponse {
    if open_sessions(state).await >= state.options.max_sessions {
        return error(StatusCode::SERVICE_UNAVAILABLE, "too many sessions are open: try again later");
    }
    let ct = state.shutdown.child_token();
    let (id, transport, body, stall) = state.sse.open(prefix, state.options.keep_alive, ct.clone());
    let handler = (state.make_handler)();
    let connection = connection.clone();
    state.tasks.spawn(async move {
        let session = async {
            match handler.serve_with_ct(transport, ct.clone()).await {
                Ok(running) => {
                    let ended = running.waiting().await;
                    tracing::debug!(session = id, ?ended, "an SSE session ended");
                }
                Err(e) => tracing::debug!(session = id, error = %e, "an SSE session did not start"),
            }
        };
        tokio::select! {
            () = session => {}
            () = stall.stalled() => {
                tracing::info!(session = id, "an SSE client stopped reading: dropping its connection");
                ct.cancel();
                connection.cancel();
            }
        }
    });
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// `POST /messages/?session_id=…`: one JSON-RPC message for a session, answered 202 (the
/// answer goes on the session's stream).
async fn post_message<H: ServerHandler>(state: &Arc<State<H>>, request: Request<Incoming>) -> HttpResponse {
    let Some(id) = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("session_id=")))
        .map(str::to_owned)
    else {
        return error(StatusCode::BAD_REQUEST, "session_id is missing");
    };
    let (parts, body) = request.into_parts();
    let body = match read_body(&state.options, &state.bodies, &parts.headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let message: ClientJsonRpcMessage = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not a JSON-RPC message: {e}")),
    };
    match state.sse.deliver(&id, message).await {
        Ok(()) => {
            let mut response = Response::new(full("Accepted"));
            *response.status_mut() = StatusCode::ACCEPTED;
            response
        }
        Err(Delivery::Unknown) => error(StatusCode::NOT_FOUND, "no such session (it may have ended)"),
        Err(Delivery::Busy) => error(StatusCode::SERVICE_UNAVAILABLE, "the session is busy: try again later"),
    }
}

/// A request's body, bounded in size (413) and time (408), read when one of the
/// [`BODIES_AT_ONCE`] turns is free (the wait counts in its time).
async fn read_body(
    options: &HttpOptions,
    bodies: &Semaphore,
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> Result<Bytes, HttpResponse> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {} bytes", options.max_body_bytes),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > options.max_body_bytes as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(body, options.max_body_bytes);
    let read = async {
        // Never closed: a turn always comes.
        let _turn = bodies.acquire().await;
        limited.collect().await
    };
    match tokio::time::timeout(options.body_timeout, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(error(StatusCode::BAD_REQUEST, &format!("could not read the body: {e}"))),
        Err(_) => Err(error(StatusCode::REQUEST_TIMEOUT, "the body did not come in time")),
    }
}

fn full(text: &'static str) -> BoxBody<Bytes, Infallible> {
    Full::new(Bytes::from_static(text.as_bytes())).boxed()
}

/// `{"error": why}` with `status`.
fn error(status: StatusCode, why: &str) -> HttpResponse {
    let body = json!({"error": why}).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 401, saying what is needed.
fn unauthorized(token_in_path: bool) -> HttpResponse {
    let why = if token_in_path {
        "unauthorized: send the server's token as `Authorization: Bearer <token>`, or as the first path segment (/<token>/mcp, /<token>/sse)"
    } else {
        "unauthorized: send the server's token as `Authorization: Bearer <token>`"
    };
    let mut response = error(StatusCode::UNAUTHORIZED, why);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::{loopback_authority, not_local, same, strip_token};

    #[test]
    fn loopback_authorities() {
        for ok in
            ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:65535", "LOCALHOST:3"]
        {
            assert!(loopback_authority(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "127.0.0.1.evil.com",
            "localhost:",
            "localhost:x",
            "[::2]",
            "[::1]x",
            "",
            "127.0.0.2",
            "localhost.evil:80",
        ] {
            assert!(!loopback_authority(bad), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let with = |origin: &str| {
            let mut headers = hyper::HeaderMap::new();
            headers.insert("origin", origin.parse().unwrap());
            not_local(&headers)
        };
        assert!(with("http://localhost:3000").is_none());
        assert!(with("http://[::1]").is_none());
        assert!(with("https://127.0.0.1:1").is_none());
        assert!(with("http://evil.com").is_some());
        assert!(with("null").is_some());
        assert!(with("http://localhost.evil.com").is_some());
        assert!(not_local(&hyper::HeaderMap::new()).is_none());
    }

    #[test]
    fn tokens_in_paths() {
        assert_eq!(strip_token("/tok/mcp", "tok").as_deref(), Some("/mcp"));
        assert_eq!(strip_token("/tok/messages/", "tok").as_deref(), Some("/messages/"));
        assert_eq!(strip_token("/tok", "tok").as_deref(), Some("/"));
        assert_eq!(strip_token("/toke/mcp", "tok"), None);
        assert_eq!(strip_token("/mcp", "tok"), None);
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abd", b"abc"));
        assert!(!same(b"ab", b"abc"));
        assert_eq!(super::bearer(b"Bearer tok"), Some(&b"tok"[..]));
        assert_eq!(super::bearer(b"bearer tok"), Some(&b"tok"[..]));
        assert_eq!(super::bearer(b"Basic tok"), None);
        assert_eq!(super::bearer(b"Bear"), None);
        let options = super::HttpOptions { token: Some("s3cret".into()), ..super::HttpOptions::default() };
        assert!(!format!("{options:?}").contains("s3cret"));
    }
}
