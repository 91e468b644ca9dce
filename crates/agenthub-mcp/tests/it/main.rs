//! `McpServer::serve` as a library, over an in-memory pipe: the embedding the CLI uses,
//! without the binary. (The binary is tested in agenthub-cli's `mcp.rs`.)

use std::sync::Arc;
use std::time::Duration;

use agenthub_core::{ExecutionMode, ParamType};
use agenthub_mcp::{McpServer, Options};
use agenthub_runtime::{EnvBackendKind, ProcessBackendKind};
use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod, survivors};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

mod http;

const LIMIT: Duration = Duration::from_secs(120);

fn server(ctx: &TestContext, agents: &[&str]) -> McpServer {
    let runtime = ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Std);
    let loaded = agents.iter().map(|a| runtime.load_agent(a).unwrap()).collect();
    McpServer::new(Arc::new(runtime), loaded, Options::default()).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_session_over_any_reader_and_writer_ends_cleanly_at_eof() {
    let ctx = TestContext::new().with_config(|c| c.runtime.mode = ExecutionMode::Warm);
    ctx.install(
        &TestAgent::new("demo")
            .method(
                TestMethod::new("sum").param("a", ParamType::Integer, true).behaves(Behaviour::EchoParams),
            )
            .method(TestMethod::new("oops").behaves(Behaviour::Raise("nope".into()))),
    );
    let server = server(&ctx, &["test/demo"]);
    assert_eq!(server.tools().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["sum", "oops"]);
    // One pipe each way, so that dropping the client's writer is EOF for the server.
    let (mut client_write, server_read) = tokio::io::duplex(64 * 1024);
    let (server_write, client_read) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(server.serve(server_read, server_write));
    let mut lines = BufReader::new(client_read).lines();
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "sum", "arguments": {"a": 41}}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "oops", "arguments": {}}}),
    ];
    let mut answers = std::collections::HashMap::new();
    for request in &requests {
        client_write.write_all(format!("{request}\n").as_bytes()).await.unwrap();
    }
    while answers.len() < 3 {
        let line = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap().unwrap();
        let message: Json = serde_json::from_str(&line).unwrap();
        answers.insert(message["id"].as_u64().unwrap(), message);
    }
    assert_eq!(answers[&1]["result"]["protocolVersion"], "2025-06-18");
    // The testkit's agents are script-style: served one-shot, with the same answers.
    assert_eq!(answers[&2]["result"]["content"][0]["text"], "{\"a\":41}", "{}", answers[&2]);
    assert_eq!(answers[&3]["result"]["isError"], true);
    assert!(answers[&3]["result"]["content"][0]["text"].as_str().unwrap().starts_with("AgentError: nope"));
    drop(client_write);
    let ended = tokio::time::timeout(LIMIT, serving).await.unwrap().unwrap();
    assert!(ended.is_ok(), "{ended:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn eof_before_any_message_is_a_clean_end() {
    let ctx = TestContext::new();
    ctx.install(&TestAgent::new("demo").method(TestMethod::new("ping")));
    let server = server(&ctx, &["test/demo"]);
    let (client, theirs) = tokio::io::duplex(1024);
    drop(client);
    let (read, write) = tokio::io::split(theirs);
    let ended = tokio::time::timeout(LIMIT, server.serve(read, write)).await.unwrap();
    assert!(ended.is_ok(), "{ended:?}");
}

/// The first message the client reads that `pick` accepts (bounded).
async fn read_until<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    pick: impl Fn(&Json) -> bool,
) -> Json {
    loop {
        let line = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap().unwrap();
        let message: Json = serde_json::from_str(&line).unwrap();
        if pick(&message) {
            return message;
        }
    }
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

#[tokio::test(flavor = "current_thread")]
async fn a_response_that_cannot_be_written_ends_the_session() {
    let ctx = TestContext::new();
    ctx.install(&TestAgent::new("demo").method(TestMethod::new("ping")));
    let server = server(&ctx, &["test/demo"]);
    let (mut client_write, server_read) = tokio::io::duplex(64 * 1024);
    let (server_write, client_read) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(server.serve(server_read, server_write));
    let mut lines = BufReader::new(client_read).lines();
    client_write.write_all(format!("{INITIALIZE}\n").as_bytes()).await.unwrap();
    read_until(&mut lines, |m| m["id"] == 0).await;
    // The client stops reading; its input to the server stays open.
    drop(lines);
    client_write.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), serving).await;
    let ended = ended.expect("the session outlived its output").unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    drop(client_write);
}

#[tokio::test(flavor = "current_thread")]
async fn a_progress_notification_that_cannot_be_written_cancels_the_call_and_ends_the_session() {
    let ctx = TestContext::new().with_config(|c| c.runtime.mode = ExecutionMode::Warm);
    let dir = ctx.install(
        &TestAgent::new("napper")
            .method(TestMethod::new("warm").behaves(Behaviour::Return(json!("ready"))))
            .method(TestMethod::new("nap").behaves(Behaviour::Sleep(120.0))),
    );
    let runtime = ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Std);
    let loaded = vec![runtime.load_agent("test/napper").unwrap()];
    let options = Options { progress_interval: Duration::from_millis(50), ..Options::default() };
    let server = McpServer::new(Arc::new(runtime), loaded, options).unwrap();
    let (mut client_write, server_read) = tokio::io::duplex(64 * 1024);
    let (server_write, client_read) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(server.serve(server_read, server_write));
    let mut lines = BufReader::new(client_read).lines();
    let requests = [
        INITIALIZE.to_owned(),
        // Builds the environment, so that the nap below starts at once.
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "warm", "arguments": {}}})
            .to_string(),
    ];
    for request in &requests {
        client_write.write_all(format!("{request}\n").as_bytes()).await.unwrap();
    }
    let warm = read_until(&mut lines, |m| m["id"] == 1).await;
    assert_eq!(warm["result"]["content"][0]["text"], "ready", "{warm}");
    let nap = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                     "params": {"name": "nap", "arguments": {}, "_meta": {"progressToken": 7}}});
    client_write.write_all(format!("{nap}\n").as_bytes()).await.unwrap();
    read_until(&mut lines, |m| m["method"] == "notifications/progress").await;
    let token = dir.canonicalize().unwrap().display().to_string();
    let deadline = std::time::Instant::now() + LIMIT;
    while survivors(&token).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the nap did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The client stops reading mid-call; the next progress notification cannot be written.
    drop(lines);
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(20), serving).await;
    let ended = ended.expect("the session outlived its output").unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    // `serve` returned only once the call had ended: its process is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !survivors(&token).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the call's process outlived the session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client_write);
}

#[tokio::test(flavor = "current_thread")]
async fn a_line_over_the_limit_is_a_parse_error_and_the_next_one_is_read() {
    let ctx = TestContext::new();
    ctx.install(&TestAgent::new("demo").method(TestMethod::new("ping")));
    let server = server(&ctx, &["test/demo"]);
    let (mut client_write, server_read) = tokio::io::duplex(64 * 1024);
    let (server_write, client_read) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(server.serve(server_read, server_write));
    let mut lines = BufReader::new(client_read).lines();
    let mut long = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":""#.to_vec();
    long.resize(agenthub_mcp::MAX_LINE_BYTES + 1, b'x');
    long.extend_from_slice(b"\"}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
    let writing = tokio::spawn(async move {
        client_write.write_all(&long).await.unwrap();
        client_write
    });
    let first = read_until(&mut lines, |_| true).await;
    assert_eq!((&first["id"], &first["error"]["code"]), (&Json::Null, &json!(-32700)), "{first}");
    let second = read_until(&mut lines, |_| true).await;
    assert_eq!(second, json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
    drop(tokio::time::timeout(LIMIT, writing).await.unwrap().unwrap());
    let ended = tokio::time::timeout(LIMIT, serving).await.unwrap().unwrap();
    assert!(ended.is_ok(), "{ended:?}");
}

#[test]
fn agents_without_methods_are_refused() {
    let ctx = TestContext::new();
    let runtime = ctx.runtime();
    assert!(McpServer::new(Arc::new(runtime), Vec::new(), Options::default()).is_err());
}
