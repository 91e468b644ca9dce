//! `McpServer::serve` as a library, over an in-memory pipe: the embedding the CLI uses,
//! without the binary. (The binary is tested in agenthub-cli's `mcp.rs`.)

use std::sync::Arc;
use std::time::Duration;

use agenthub_core::{ExecutionMode, ParamType};
use agenthub_mcp::{McpServer, Options};
use agenthub_runtime::{EnvBackendKind, ProcessBackendKind};
use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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

#[test]
fn agents_without_methods_are_refused() {
    let ctx = TestContext::new();
    let runtime = ctx.runtime();
    assert!(McpServer::new(Arc::new(runtime), Vec::new(), Options::default()).is_err());
}
