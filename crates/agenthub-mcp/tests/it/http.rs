//! `serve_http` with real clients: the official Python SDK's `sse_client` and
//! `streamablehttp_client`, and raw HTTP over TCP for what a client library hides (status
//! codes, the SSE stream itself). Servers listen on 127.0.0.1 only; every wait is bounded;
//! servers are shut down and client processes killed when a test fails.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenthub_core::{ExecutionMode, ParamType};
use agenthub_mcp::{HttpOptions, McpServer, Options, serve_http};
use agenthub_runtime::{EnvBackendKind, ProcessBackendKind};
use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod, python_mcp, survivors};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `sessions` sessions at once over `mode` (`sse` or `http`) against `url`: each one
/// initializes, lists the tools and calls `sum` with `a` = its index; prints the results as
/// one JSON array.
const CLIENT_PY: &str = r#"
import asyncio, json, sys
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client


async def session(read, write, i):
    async with ClientSession(read, write) as s:
        init = await s.initialize()
        tools = await s.list_tools()
        result = await s.call_tool("sum", {"a": i})
        return {"server": init.serverInfo.name, "tools": [t.name for t in tools.tools],
                "text": result.content[0].text, "isError": result.isError}


async def one(mode, url, headers, i):
    if mode == "sse":
        async with sse_client(url, headers=headers, timeout=30, sse_read_timeout=120) as (r, w):
            return await session(r, w, i)
    async with streamablehttp_client(url, headers=headers, timeout=30) as (r, w, _):
        return await session(r, w, i)


async def main():
    mode, url, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    headers = {"Authorization": "Bearer " + token} if token else None
    results = await asyncio.gather(*(one(mode, url, headers, i) for i in range(n)))
    print(json.dumps(results))


asyncio.run(asyncio.wait_for(main(), 100))
"#;

/// A server on 127.0.0.1, shut down when dropped.
struct Served {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Served {
    async fn start(server: &McpServer, options: HttpOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = server.clone();
        let task = tokio::spawn(serve_http(listener, move || server.clone(), options, shutdown.clone()));
        Self { addr, shutdown, task: Some(task) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Shuts the server down; how long `serve_http` took to return.
    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), task).await;
        ended.expect("serve_http outlived its shutdown").unwrap().unwrap();
        started.elapsed()
    }
}

fn demo(ctx: &TestContext) -> McpServer {
    ctx.install(
        &TestAgent::new("demo").method(
            TestMethod::new("sum").param("a", ParamType::Integer, true).behaves(Behaviour::EchoParams),
        ),
    );
    let runtime = ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Std);
    let loaded = vec![runtime.load_agent("test/demo").unwrap()];
    McpServer::new(Arc::new(runtime), loaded, Options::default()).unwrap()
}

/// Runs the Python client; its parsed output (panics with its stderr when it fails).
async fn python(mode: &str, url: &str, token: &str, sessions: usize) -> Vec<Json> {
    let dir = tempfile_dir();
    let script = dir.join("client.py");
    std::fs::write(&script, CLIENT_PY).unwrap();
    let child = tokio::process::Command::new(python_mcp())
        .arg(&script)
        .args([mode, url, token, &sessions.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out =
        tokio::time::timeout(LIMIT, child.wait_with_output()).await.expect("the Python client hung").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "python {mode} {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tempfile_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("agenthub-mcp-http-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_session(result: &Json, a: usize) {
    assert_eq!(result["server"], "agenthub", "{result}");
    assert_eq!(result["tools"], json!(["sum"]), "{result}");
    assert_eq!(result["text"], format!("{{\"a\":{a}}}"), "{result}");
    assert_eq!(result["isError"], false, "{result}");
}

/// One request on a connection of its own: the status and the body.
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    let framed =
        |n: &str| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding");
    if !headers.iter().any(|(n, _)| framed(n)) {
        let _ = write!(request, "Content-Length: {}\r\n", body.len());
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // The server may answer (and close) before the whole body is written.
    let _ = stream.write_all(body).await;
    let mut out = Vec::new();
    let mut buf = [0_u8; 8192];
    let deadline = tokio::time::Instant::now() + LIMIT;
    // Until the server closes (or resets) the connection.
    while let Ok(n) =
        tokio::time::timeout_at(deadline, stream.read(&mut buf)).await.expect("no answer in time")
    {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// An SSE stream opened by hand.
struct Stream {
    tcp: TcpStream,
    seen: String,
}

impl Stream {
    async fn open(addr: SocketAddr, path: &str, headers: &str) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{headers}\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        Self { tcp, seen: String::new() }
    }

    /// Reads until `pick` finds something in what was read so far (and takes it).
    async fn until<T>(&mut self, pick: impl Fn(&str) -> Option<(T, usize)>) -> T {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            if let Some((found, end)) = pick(&self.seen) {
                self.seen.drain(..end);
                return found;
            }
            let mut buf = [0_u8; 8192];
            let n = tokio::time::timeout_at(deadline, self.tcp.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "the stream ended; read so far: {}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    async fn endpoint(&mut self) -> String {
        self.until(|seen| {
            let start = seen.find("event: endpoint\ndata: ")? + "event: endpoint\ndata: ".len();
            let end = start + seen[start..].find('\n')?;
            Some((seen[start..end].to_owned(), end))
        })
        .await
    }

    /// The next `message` event whose JSON `pick` accepts.
    async fn message(&mut self, pick: impl Fn(&Json) -> bool) -> Json {
        loop {
            let message: Json = self
                .until(|seen| {
                    let start = seen.find("event: message\ndata: ")? + "event: message\ndata: ".len();
                    let end = start + seen[start..].find('\n')?;
                    Some((serde_json::from_str(&seen[start..end]).unwrap(), end))
                })
                .await;
            if pick(&message) {
                return message;
            }
        }
    }

    /// Whether the server ended the stream within `limit`.
    async fn ends_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0_u8; 8192];
        loop {
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

async fn post(addr: SocketAddr, endpoint: &str, message: &Json) {
    let (status, body) =
        raw(addr, "POST", endpoint, &[("Content-Type", "application/json")], message.to_string().as_bytes())
            .await;
    assert_eq!(status, 202, "{body}");
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// Opens a raw SSE session and initializes it.
async fn raw_session(addr: SocketAddr) -> (Stream, String) {
    let mut stream = Stream::open(addr, "/sse", "").await;
    let endpoint = stream.endpoint().await;
    post(addr, &endpoint, &serde_json::from_str(INITIALIZE).unwrap()).await;
    let init = stream.message(|m| m["id"] == 0).await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    post(addr, &endpoint, &json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    (stream, endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_speaks_both_transports() {
    let ctx = TestContext::new();
    let server = demo(&ctx);
    let served = Served::start(&server, HttpOptions::default()).await;
    let sse = python("sse", &served.url("/sse"), "", 1).await;
    assert_session(&sse[0], 0);
    let http = python("http", &served.url("/mcp"), "", 1).await;
    assert_session(&http[0], 0);
    assert!(served.stop().await < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sse_sessions_at_once_each_call_a_tool() {
    let ctx = TestContext::new();
    let server = demo(&ctx);
    let served = Served::start(&server, HttpOptions::default()).await;
    // The first call builds the environment.
    python("sse", &served.url("/sse"), "", 1).await;
    let results = python("sse", &served.url("/sse"), "", 20).await;
    assert_eq!(results.len(), 20);
    for (i, result) in results.iter().enumerate() {
        assert_session(result, i);
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_in_the_header_or_the_path() {
    let ctx = TestContext::new();
    let server = demo(&ctx);
    let options = HttpOptions { token: Some("s3cret".into()), token_in_path: true, ..HttpOptions::default() };
    let served = Served::start(&server, options).await;
    let addr = served.addr;
    let init = INITIALIZE.as_bytes();
    let json = ("Content-Type", "application/json");
    let accept = ("Accept", "application/json, text/event-stream");
    for (method, path) in
        [("GET", "/sse"), ("POST", "/mcp"), ("POST", "/messages/?session_id=x"), ("GET", "/nope")]
    {
        for auth in [None, Some("Bearer wrong"), Some("Bearer s3cre"), Some("s3cret"), Some("Bearer s3cretX")]
        {
            let mut headers = vec![json, accept];
            headers.extend(auth.map(|a| ("Authorization", a)));
            let (status, body) = raw(addr, method, path, &headers, init).await;
            assert_eq!(status, 401, "{method} {path} {auth:?}: {body}");
            let body: Json = serde_json::from_str(&body).unwrap();
            assert!(body["error"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
        }
        // A wrong token in the path is no token.
        let (status, _) = raw(addr, method, &format!("/wrong{path}"), &[json, accept], init).await;
        assert_eq!(status, 401);
    }
    // With the token: in the header, in the path, for both transports.
    assert_session(&python("sse", &served.url("/sse"), "s3cret", 1).await[0], 0);
    assert_session(&python("sse", &served.url("/s3cret/sse"), "", 1).await[0], 0);
    assert_session(&python("http", &served.url("/mcp"), "s3cret", 1).await[0], 0);
    assert_session(&python("http", &served.url("/s3cret/mcp"), "", 1).await[0], 0);
    // The endpoint keeps the prefix the stream was opened with.
    let mut stream = Stream::open(addr, "/s3cret/sse", "").await;
    assert!(stream.endpoint().await.starts_with("/s3cret/messages/?session_id="));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_status() {
    let ctx = TestContext::new();
    let server = demo(&ctx);
    let options = HttpOptions { max_body_bytes: 1024 * 1024, max_sessions: 2, ..HttpOptions::default() };
    let served = Served::start(&server, options).await;
    let addr = served.addr;
    let json = ("Content-Type", "application/json");
    let (status, _) =
        raw(addr, "POST", "/messages/?session_id=0123456789abcdef", &[json], INITIALIZE.as_bytes()).await;
    assert_eq!(status, 404);
    let (status, _) = raw(addr, "GET", "/elsewhere", &[], b"").await;
    assert_eq!(status, 404);
    let (mut stream, endpoint) = raw_session(addr).await;
    // Declared too large: refused before it is read. Sent too large without a length: 413 too.
    let (status, _) = raw(addr, "POST", &endpoint, &[json, ("Content-Length", "2000000")], b"").await;
    assert_eq!(status, 413);
    let mut big = b"{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{\"pad\":\"".to_vec();
    big.resize(1024 * 1024 + 10, b'x');
    big.extend_from_slice(b"\"}}");
    let chunked = format!("{:x}\r\n", big.len());
    let mut body = chunked.into_bytes();
    body.extend_from_slice(&big);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, _) = raw(addr, "POST", &endpoint, &[json, ("Transfer-Encoding", "chunked")], &body).await;
    assert!(status == 413 || status == 400, "{status}");
    let (status, _) = raw(addr, "POST", &endpoint, &[json], b"not json").await;
    assert_eq!(status, 400);
    // The session still works.
    post(addr, &endpoint, &json!({"jsonrpc": "2.0", "id": 5, "method": "ping"})).await;
    stream.message(|m| m["id"] == 5).await;
    // Another site's page is refused without a token (DNS rebinding).
    for origin in ["http://evil.example", "null", "http://localhost.evil.example:80"] {
        let (status, _) = raw(addr, "GET", "/sse", &[("Origin", origin)], b"").await;
        assert_eq!(status, 403, "{origin}");
        let (status, _) = raw(addr, "POST", "/mcp", &[json, ("Origin", origin)], INITIALIZE.as_bytes()).await;
        assert_eq!(status, 403, "{origin}");
    }
    let mut local = Stream::open(addr, "/sse", "Origin: http://localhost:5173\r\n").await;
    local.endpoint().await;
    // Two sessions are open: a third is refused.
    let (status, _) = raw(addr, "GET", "/sse", &[], b"").await;
    assert_eq!(status, 503);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ends_cancels_its_calls_only_and_shutdown_ends_everything() {
    let ctx = TestContext::new().with_config(|c| c.runtime.mode = ExecutionMode::Warm);
    let mut dirs = Vec::new();
    for name in ["napa", "napb"] {
        let dir = ctx.install(
            &TestAgent::new(name)
                .method(TestMethod::new("warm").behaves(Behaviour::Return(json!("ready"))))
                .method(TestMethod::new("nap").behaves(Behaviour::Sleep(120.0))),
        );
        dirs.push(dir.canonicalize().unwrap().display().to_string());
    }
    let runtime = ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Std);
    let loaded = vec![runtime.load_agent("test/napa").unwrap(), runtime.load_agent("test/napb").unwrap()];
    let server = McpServer::new(Arc::new(runtime), loaded, Options::default()).unwrap();
    let names: Vec<String> = server.tools().iter().map(|t| t.name.clone()).collect();
    let tool = |agent: &str, method: &str| {
        names.iter().find(|n| n.contains(agent) && n.ends_with(method)).unwrap().clone()
    };
    let served = Served::start(&server, HttpOptions::default()).await;
    let addr = served.addr;
    let mut sessions = Vec::new();
    for (i, agent) in ["napa", "napb"].into_iter().enumerate() {
        let (mut stream, endpoint) = raw_session(addr).await;
        // Builds the environment, so that the nap starts at once.
        post(
            addr,
            &endpoint,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                       "params": {"name": tool(agent, "warm"), "arguments": {}}}),
        )
        .await;
        let warm = stream.message(|m| m["id"] == 1).await;
        assert_eq!(warm["result"]["content"][0]["text"], "ready", "{warm}");
        post(
            addr,
            &endpoint,
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                       "params": {"name": tool(agent, "nap"), "arguments": {}}}),
        )
        .await;
        let deadline = Instant::now() + LIMIT;
        while survivors(&dirs[i]).is_empty() {
            assert!(Instant::now() < deadline, "the nap did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sessions.push(stream);
    }
    // The first client goes away: its nap is killed, the other one's goes on.
    drop(sessions.remove(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !survivors(&dirs[0]).is_empty() {
        assert!(Instant::now() < deadline, "the call outlived its session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!survivors(&dirs[1]).is_empty(), "another session's call was cancelled");
    // Shutdown ends the open stream and returns promptly; the server's shutdown then ends
    // every call.
    let mut open = sessions.remove(0);
    let took = served.stop().await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(open.ends_within(Duration::from_secs(2)).await, "the SSE stream outlived the shutdown");
    tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !survivors(&dirs[1]).is_empty() {
        assert!(Instant::now() < deadline, "a call outlived the shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let ctx = TestContext::new();
    let server = demo(&ctx);
    let options = HttpOptions {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        ..HttpOptions::default()
    };
    let served = Served::start(&server, options).await;
    let addr = served.addr;
    // Headers that never end, an idle connection that never sends any: closed.
    for start in ["POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n", ""] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(start.as_bytes()).await.unwrap();
        let mut buf = [0_u8; 1024];
        let started = Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the connection was held open ({start:?})");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // A body that never comes, on either transport: 408.
    let (_stream, endpoint) = raw_session(addr).await;
    for path in ["/mcp", endpoint.as_str()] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{{"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_an_answer_and_the_server_goes_on() {
    let ctx = TestContext::new();
    let server = demo(&ctx);
    let served = Served::start(&server, HttpOptions::default()).await;
    let addr = served.addr;
    let inputs: [&[u8]; 6] = [
        b"\x00\x01\x02\xff\r\n\r\n",
        b"GET /sse HTTP/1.1\r\nHost: \xff\xfe\r\nConnection: close\r\n\r\n",
        b"GET /%ZZ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        b"POST /messages/?session_id= HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nOrigin: http://[::1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for input in inputs {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let _ = tcp.write_all(input).await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "held open: {:?}", String::from_utf8_lossy(input));
        let text = String::from_utf8_lossy(&out);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    }
    assert_session(&python("http", &served.url("/mcp"), "", 1).await[0], 0);
    served.stop().await;
}

/// A raw Streamable HTTP request: the status, the headers (lowercase names) and the body.
async fn mcp_request(
    addr: SocketAddr,
    method: &str,
    session: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2025-06-18"),
    ];
    headers.extend(session.map(|s| ("Mcp-Session-Id", s)));
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} /mcp HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    let _ = write!(request, "Content-Length: {}\r\n\r\n{body}", body.len());
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_session_that_is_deleted_cancels_its_call_and_shutdown_ends_the_others() {
    let ctx = TestContext::new();
    let mut dirs = Vec::new();
    for name in ["napa", "napb"] {
        let dir = ctx.install(
            &TestAgent::new(name)
                .method(TestMethod::new("ready").behaves(Behaviour::Return(json!("ready"))))
                .method(TestMethod::new("nap").behaves(Behaviour::Sleep(120.0))),
        );
        dirs.push(dir.canonicalize().unwrap().display().to_string());
    }
    let runtime = ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Std);
    let loaded = vec![runtime.load_agent("test/napa").unwrap(), runtime.load_agent("test/napb").unwrap()];
    let server = McpServer::new(Arc::new(runtime), loaded, Options::default()).unwrap();
    let names: Vec<String> = server.tools().iter().map(|t| t.name.clone()).collect();
    let served = Served::start(&server, HttpOptions::default()).await;
    let addr = served.addr;
    let init = INITIALIZE.replace("2024-11-05", "2025-06-18");
    let mut sessions = Vec::new();
    let mut calls = Vec::new();
    for (i, agent) in ["napa", "napb"].into_iter().enumerate() {
        let (status, head, body) = mcp_request(addr, "POST", None, &init).await;
        assert_eq!(status, 200, "{head}{body}");
        let session = head
            .lines()
            .find_map(|l| l.strip_prefix("mcp-session-id: "))
            .unwrap_or_else(|| panic!("no session id: {head}"))
            .trim()
            .to_owned();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        let (status, _, _) = mcp_request(addr, "POST", Some(&session), &initialized).await;
        assert_eq!(status, 202);
        let tool =
            |method: &str| names.iter().find(|n| n.contains(agent) && n.ends_with(method)).unwrap().clone();
        // Builds the environment first: until the nap runs, the only processes that name
        // the agent's directory are the environment's builders.
        let ready = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool("ready"), "arguments": {}}});
        let (status, _, body) = mcp_request(addr, "POST", Some(&session), &ready.to_string()).await;
        assert!(status == 200 && body.contains("ready"), "{status} {body}");
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool("nap"), "arguments": {}}});
        let for_call = session.clone();
        calls.push(tokio::spawn(async move {
            mcp_request(addr, "POST", Some(&for_call), &call.to_string()).await
        }));
        let deadline = Instant::now() + LIMIT;
        while survivors(&dirs[i]).is_empty() {
            assert!(Instant::now() < deadline, "the nap did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sessions.push(session);
    }
    // The first session is deleted: its nap is killed at once (not after rmcp's 5 s drain),
    // the other one's goes on.
    let (status, head, _) = mcp_request(addr, "DELETE", Some(&sessions[0]), "").await;
    assert!(status == 200 || status == 202 || status == 204, "{head}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !survivors(&dirs[0]).is_empty() {
        assert!(Instant::now() < deadline, "the call outlived its session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!survivors(&dirs[1]).is_empty(), "another session's call was cancelled");
    // Shutdown: prompt, the open call's response ends, and every call ends.
    let took = served.stop().await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    for call in calls {
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("a response outlived the shutdown")
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !survivors(&dirs[1]).is_empty() {
        assert!(Instant::now() < deadline, "a call outlived the shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
