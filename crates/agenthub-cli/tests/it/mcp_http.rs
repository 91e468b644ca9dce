//! `agenthub mcp serve --http` with the official Python SDK's HTTP clients. Servers listen on
//! 127.0.0.1 only; every wait is bounded; the server and the clients are killed when a test
//! fails.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agenthub_core::ParamType;
use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod, python_mcp, survivors};
use serde_json::{Value as Json, json};

use super::command;

const LIMIT: Duration = Duration::from_secs(120);

/// `MODE URL TOKEN [nap]`: initializes, lists the tools and calls `sum` over `sse` or
/// `http` (Streamable HTTP); prints what it saw as JSON. With `nap`, it then starts `nap`,
/// prints `napping` and waits for it (until the server goes away).
const CLIENT_PY: &str = r#"
import asyncio, json, sys
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client


async def session(read, write, nap):
    async with ClientSession(read, write) as s:
        init = await s.initialize()
        tools = await s.list_tools()
        result = await s.call_tool("sum", {"a": 41})
        print(json.dumps({"server": init.serverInfo.name, "tools": [t.name for t in tools.tools],
                          "text": result.content[0].text}), flush=True)
        if nap:
            print("napping", flush=True)
            await s.call_tool("nap", {})


async def main():
    mode, url, token = sys.argv[1:4]
    nap = sys.argv[4:] == ["nap"]
    headers = {"Authorization": "Bearer " + token} if token else None
    if mode == "sse":
        async with sse_client(url, headers=headers, timeout=30, sse_read_timeout=120) as (r, w):
            await session(r, w, nap)
    else:
        async with streamablehttp_client(url, headers=headers, timeout=30) as (r, w, _):
            await session(r, w, nap)


asyncio.run(asyncio.wait_for(main(), 100))
"#;

/// A child killed when dropped.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn install_demo(ctx: &TestContext) -> String {
    let dir = ctx.install(
        &TestAgent::new("demo")
            .method(
                TestMethod::new("sum").param("a", ParamType::Integer, true).behaves(Behaviour::EchoParams),
            )
            .method(TestMethod::new("nap").behaves(Behaviour::Sleep(120.0))),
    );
    dir.canonicalize().unwrap().display().to_string()
}

/// Starts `agenthub mcp serve test/demo --http 127.0.0.1:0 …`; the server and the base URL it
/// printed.
fn serve(ctx: &TestContext, extra: &[&str]) -> (Killed, String) {
    serve_agent(ctx, "test/demo", extra)
}

/// Starts `agenthub mcp serve AGENT --http 127.0.0.1:0 …`; the server and the base URL it
/// printed.
pub(crate) fn serve_agent(ctx: &TestContext, agent: &str, extra: &[&str]) -> (Killed, String) {
    let mut args = vec!["mcp", "serve", agent, "--http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = Killed(command(ctx, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let (lines, found) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + LIMIT;
    loop {
        let line = found
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server printed no URL");
        if let Some(rest) = line.strip_prefix("agenthub: serving MCP on http://") {
            let (authority, _) = rest.split_once("/mcp").unwrap();
            assert!(rest.ends_with("/mcp (Streamable HTTP) and /sse (legacy SSE)"), "{line}");
            return (child, format!("http://{authority}"));
        }
    }
}

fn python(args: &[&str]) -> Killed {
    python_script(CLIENT_PY, args)
}

/// Runs the Python `script` (with the `mcp` SDK) with `args`.
pub(crate) fn python_script(script_text: &str, args: &[&str]) -> Killed {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let script = std::env::temp_dir().join(format!("agenthub-cli-mcp-http-{}-{n}.py", std::process::id()));
    std::fs::write(&script, script_text).unwrap();
    Killed(
        std::process::Command::new(python_mcp())
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Waits for the client (bounded); its stdout's first line as JSON.
pub(crate) fn finished(mut client: Killed) -> Json {
    let deadline = Instant::now() + LIMIT;
    while client.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the Python client did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(client.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(client.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(client.0.try_wait().unwrap().unwrap().success(), "{err}");
    serde_json::from_str(out.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {out} {err}"))
}

fn assert_seen(seen: &Json) {
    assert_eq!(seen, &json!({"server": "agenthub", "tools": ["sum", "nap"], "text": "{\"a\":41}"}));
}

fn wait_exit(server: &mut Killed, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mcp_serve_http_speaks_both_transports_and_a_signal_cancels_the_calls_in_flight() {
    let ctx = TestContext::new();
    let token = install_demo(&ctx);
    let (mut server, base) = serve(&ctx, &[]);
    assert_seen(&finished(python(&["sse", &format!("{base}/sse"), ""])));
    assert_seen(&finished(python(&["http", &format!("{base}/mcp"), ""])));
    // A call in flight when the server gets SIGTERM: cancelled, its process killed.
    let mut napper = python(&["sse", &format!("{base}/sse"), "", "nap"]);
    let mut out = BufReader::new(napper.0.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..2 {
        line.clear();
        out.read_line(&mut line).unwrap();
    }
    assert_eq!(line.trim(), "napping");
    let deadline = Instant::now() + LIMIT;
    while survivors(&token).is_empty() {
        assert!(Instant::now() < deadline, "the nap did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = i32::try_from(server.0.id()).unwrap();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_exit(&mut server, Duration::from_secs(10));
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !survivors(&token).is_empty() {
        assert!(Instant::now() < deadline, "a call outlived the server");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mcp_serve_http_with_a_token_file() {
    let ctx = TestContext::new();
    install_demo(&ctx);
    let file = ctx.home().join("token");
    std::fs::write(&file, "  s3cret-token\n").unwrap();
    let (mut server, base) = serve(&ctx, &["--token-file", file.to_str().unwrap()]);
    assert_seen(&finished(python(&["sse", &format!("{base}/sse"), "s3cret-token"])));
    assert_seen(&finished(python(&["http", &format!("{base}/mcp"), "s3cret-token"])));
    // Without it: the client fails.
    let mut refused = python(&["sse", &format!("{base}/sse"), "wrong"]);
    let status = wait_exit(&mut refused, LIMIT);
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(refused.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("401"), "{err}");
    let pid = i32::try_from(server.0.id()).unwrap();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = wait_exit(&mut server, Duration::from_secs(10));
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status}");
}

#[test]
fn mcp_serve_http_usage_errors() {
    let ctx = TestContext::new();
    install_demo(&ctx);
    let out = command(&ctx, &["mcp", "serve", "test/demo", "--http", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token-file"), "{err}");
    let empty = ctx.home().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    for (file, why) in [(empty.as_path(), "empty"), (ctx.home(), "not a regular file")] {
        let out = command(&ctx, &["mcp", "serve", "test/demo", "--http", "127.0.0.1:0", "--token-file"])
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
    }
    let out = command(&ctx, &["mcp", "serve", "test/demo", "--token-file", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--token-file without --http");
}
