//! `agenthub_tools::upstream` against a real MCP server: `tests/fixtures/calc_server.py`
//! on the official Python SDK (`FastMCP`), over stdio and over Streamable HTTP.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agenthub_tools::upstream::{ServersFile, UpstreamError, Upstreams};
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

const START: Duration = Duration::from_secs(60);
const CALL: Duration = Duration::from_secs(30);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/calc_server.py")
}

fn python() -> String {
    agenthub_testkit::python_mcp().to_string_lossy().into_owned()
}

/// A servers file in a temporary directory, read back.
fn servers(json: &Json) -> (tempfile::TempDir, ServersFile) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("servers.json");
    std::fs::write(&path, serde_json::to_vec_pretty(json).unwrap()).unwrap();
    let file = ServersFile::read(&path).unwrap();
    (dir, file)
}

fn calc(extra: &Json) -> Json {
    let mut entry = json!({"command": python(), "args": [fixture()]});
    if let (Json::Object(entry), Json::Object(extra)) = (&mut entry, extra) {
        entry.extend(extra.clone());
    }
    json!({"mcpServers": {"calc": entry}})
}

fn args(value: &Json) -> serde_json::Map<String, Json> {
    value.as_object().unwrap().clone()
}

async fn call(
    up: &Upstreams,
    tool: &str,
    arguments: &Json,
) -> Result<rmcp::model::CallToolResult, UpstreamError> {
    up.call("calc", tool, args(arguments), CALL, CancellationToken::new()).await
}

fn result_of(result: &rmcp::model::CallToolResult) -> Json {
    result.structured_content.clone().expect("structured content")["result"].clone()
}

/// Whether `pid` is a live, non-zombie process.
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// Waits (bounded) for every pid to be gone.
async fn gone_within(pids: &[u64], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) for the server to say that `n` of its sleeps were cancelled.
async fn cancelled_within(up: &Upstreams, n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let said = result_of(&call(up, "cancelled", &json!({})).await.unwrap());
        if said == json!(n) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn parse_error(json: &str) -> UpstreamError {
    ServersFile::parse(json, Path::new("/etc/agenthub/servers.json")).unwrap_err()
}

#[test]
fn a_file_that_is_not_right_is_an_error_naming_the_server_and_the_field() {
    let whole = |text: &str, expected: &str| match parse_error(text) {
        UpstreamError::File { message, .. } => assert!(message.contains(expected), "{message}"),
        other => panic!("{text}: {other:?}"),
    };
    whole("not json", "not JSON");
    whole("[]", "not a JSON object");
    whole("{}", "no `mcpServers`");
    whole(r#"{"mcpServers": []}"#, "not an object");

    let field = |entry: &str, field: &str, expected: &str| {
        let text = format!(r#"{{"mcpServers": {{"ok": {{"command": "x"}}, "bad": {entry}}}}}"#);
        match parse_error(&text) {
            UpstreamError::Field { server, field: f, message, .. } => {
                assert_eq!((server.as_str(), f.as_str()), ("bad", field), "{entry}: {message}");
                assert!(message.contains(expected), "{entry}: {message}");
                let shown = parse_error(&text).to_string();
                assert!(shown.contains("server `bad`") && shown.contains("servers.json"), "{shown}");
            }
            other => panic!("{entry}: {other:?}"),
        }
    };
    field("1", "", "not an object");
    field("{}", "", "neither `command`");
    field(r#"{"args": ["a"]}"#, "", "neither `command`");
    field(r#"{"command": "x", "url": "http://127.0.0.1:1/mcp"}"#, "", "both");
    field(r#"{"command": 1}"#, "command", "`command` is not a string");
    field(r#"{"command": ""}"#, "command", "empty");
    field(r#"{"command": "x", "args": "a b"}"#, "args", "not an array");
    field(r#"{"command": "x", "args": ["a", 2]}"#, "args[1]", "`args[1]` is not a string");
    field(r#"{"command": "x", "env": {"K": 1}}"#, "env.K", "`env.K` is not a string");
    field(r#"{"command": "x", "env": []}"#, "env", "not an object");
    field(r#"{"command": "x", "cwd": false}"#, "cwd", "not a string");
    field(r#"{"command": "x", "tools": "add"}"#, "tools", "not an array");
    field(r#"{"command": "x", "tools": []}"#, "tools", "empty");
    field(r#"{"command": "x", "disabled": "yes"}"#, "disabled", "not true or false");
    field(r#"{"command": "x", "type": "http"}"#, "type", "stdio");
    field(r#"{"command": "x", "headers": {}}"#, "headers", "HTTP servers");
    field(r#"{"url": "http://127.0.0.1:1/mcp", "args": []}"#, "args", "stdio servers");
    field(r#"{"url": "http://127.0.0.1:1/mcp", "type": "stdio"}"#, "type", "`type` is `stdio`");
    field(r#"{"url": "ftp://h/mcp"}"#, "url", "not an http:// URL");
    field(r#"{"url": "https://example.com/mcp"}"#, "url", "no TLS");
    field(r#"{"url": "http://h/mcp", "headers": {"Bad Name": "x"}}"#, "headers.Bad Name", "header name");
    field(
        r#"{"url": "http://h/mcp", "headers": {"Mcp-Session-Id": "x"}}"#,
        "headers.Mcp-Session-Id",
        "transport",
    );
    field(r#"{"url": "http://h/sse", "type": "sse"}"#, "type", "not supported");
    field(r#"{"type": "sse"}"#, "type", "Streamable HTTP");
}

#[test]
fn disabled_servers_are_skipped_and_unknown_keys_ignored() {
    let text = r#"{"mcpServers": {
        "b": {"command": "x", "autoApprove": ["a"], "timeout": 3},
        "off": {"command": 1, "disabled": true},
        "a": {"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer s3cret"}},
        "c": {"command": "./srv", "cwd": "../work", "disabled": false}
    }, "other": 1}"#;
    let file = ServersFile::parse(text, Path::new("/x/servers.json")).unwrap();
    assert_eq!(file.server_names(), ["b", "a", "c"]);
    assert!(!format!("{file:?}").contains("s3cret"), "Debug shows no header values");
}

#[test]
fn reading_is_bounded_and_regular_files_only() {
    let dir = tempfile::tempdir().unwrap();
    match ServersFile::read(dir.path()) {
        Err(UpstreamError::File { message, .. }) => assert!(message.contains("directory"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(ServersFile::read(&dir.path().join("missing.json")), Err(UpstreamError::Read { .. })));
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 1024 * 1024 + 1]).unwrap();
    match ServersFile::read(&big) {
        Err(UpstreamError::File { message, .. }) => assert!(message.contains("larger"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_lists_its_tools_and_answers_calls() {
    let (_dir, file) = servers(&calc(&json!({"env": {"CALC_TEST": "1"}})));
    let up = Upstreams::start(&file, START).await.unwrap();
    let names: Vec<&str> = up.tools().iter().map(|t| t.name.as_str()).collect();
    for name in ["add", "sleep", "fail", "pid", "child", "calls", "cancelled", "getenv", "cwd"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let add = up.tools().iter().find(|t| t.name == "add").unwrap();
    assert_eq!(add.server, "calc");
    assert_eq!(add.description, "Add two integers.");
    assert_eq!(add.input_schema["type"], "object");
    assert_eq!(add.input_schema["properties"]["a"]["type"], "integer");
    assert!(add.output_schema.is_some(), "FastMCP declares `-> int` as an output schema");

    let five = call(&up, "add", &json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(result_of(&five), json!(5));
    assert_ne!(five.is_error, Some(true));

    let failed = call(&up, "fail", &json!({})).await.unwrap();
    assert_eq!(failed.is_error, Some(true), "a tool error is a result: {failed:?}");
    assert!(format!("{failed:?}").contains("it failed on purpose"), "{failed:?}");

    up.shutdown().await;
    match call(&up, "add", &json!({"a": 1, "b": 1})).await {
        Err(UpstreamError::Gone { server, .. }) => assert_eq!(server, "calc"),
        other => panic!("after shutdown: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_paths_are_the_files_directory_and_env_adds_to_the_callers() {
    // The file sits beside the test Python's venv, so `../<venv>/bin/python` names it
    // (no executable is written: a concurrent fork could make it busy).
    let python = agenthub_testkit::python_mcp();
    let venv = python.parent().unwrap().parent().unwrap();
    let dir = tempfile::tempdir_in(venv.parent().unwrap()).unwrap();
    let command = format!("../{}/bin/python", venv.file_name().unwrap().to_str().unwrap());
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let path = dir.path().join("servers.json");
    let text = json!({"mcpServers": {"calc": {
        "command": command, "args": [fixture()], "cwd": "./work", "env": {"CALC_TEST": "yes"}
    }}});
    std::fs::write(&path, text.to_string()).unwrap();
    let up = Upstreams::start(&ServersFile::read(&path).unwrap(), START).await.unwrap();
    let cwd = result_of(&call(&up, "cwd", &json!({})).await.unwrap());
    let expected = dir.path().join("work").canonicalize().unwrap();
    assert_eq!(Path::new(cwd.as_str().unwrap()).canonicalize().unwrap(), expected);
    assert_eq!(result_of(&call(&up, "getenv", &json!({"name": "CALC_TEST"})).await.unwrap()), json!("yes"));
    let path_var = std::env::var("PATH").unwrap();
    assert_eq!(result_of(&call(&up, "getenv", &json!({"name": "PATH"})).await.unwrap()), json!(path_var));
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_key_assigns_only_those_and_others_never_reach_the_server() {
    let (_dir, file) = servers(&calc(&json!({"tools": ["add", "calls"]})));
    let up = Upstreams::start(&file, START).await.unwrap();
    let names: Vec<&str> = up.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["add", "calls"]);
    for (server, tool) in [("calc", "pid"), ("calc", "nope"), ("other", "add")] {
        match up.call(server, tool, args(&json!({})), CALL, CancellationToken::new()).await {
            Err(UpstreamError::NotAssigned { server: s, tool: t }) => {
                assert_eq!((s.as_str(), t.as_str()), (server, tool));
            }
            other => panic!("{server}/{tool}: {other:?}"),
        }
    }
    let calls = call(&up, "calls", &json!({})).await.unwrap();
    assert_eq!(result_of(&calls), json!(1), "the refused calls never reached the server");
    up.shutdown().await;

    let (_dir, file) = servers(&calc(&json!({"tools": ["add", "mul"]})));
    match Upstreams::start(&file, START).await {
        Err(err @ UpstreamError::Start { .. }) => {
            let shown = err.to_string();
            assert!(shown.contains("`calc`") && shown.contains("`mul`") && shown.contains("add"), "{shown}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_is_a_timeout_and_the_server_still_answers() {
    let (_dir, file) = servers(&calc(&json!({})));
    let up = Upstreams::start(&file, START).await.unwrap();
    let begun = Instant::now();
    let timeout = Duration::from_millis(500);
    match up.call("calc", "sleep", args(&json!({"seconds": 30})), timeout, CancellationToken::new()).await {
        Err(UpstreamError::Timeout { server, tool, timeout: t }) => {
            assert_eq!((server.as_str(), tool.as_str(), t), ("calc", "sleep", timeout));
        }
        other => panic!("{other:?}"),
    }
    assert!(begun.elapsed() < Duration::from_secs(5), "{:?}", begun.elapsed());
    let begun = Instant::now();
    let five = call(&up, "add", &json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(result_of(&five), json!(5));
    assert!(begun.elapsed() < Duration::from_secs(5), "the server is not stuck in the sleep");
    assert!(cancelled_within(&up, 1).await, "the server got notifications/cancelled");
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_token_stops_a_call() {
    let (_dir, file) = servers(&calc(&json!({})));
    let up = std::sync::Arc::new(Upstreams::start(&file, START).await.unwrap());
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        })
    };
    let begun = Instant::now();
    match up.call("calc", "sleep", args(&json!({"seconds": 30})), CALL, cancel).await {
        Err(UpstreamError::Cancelled { server, tool }) => {
            assert_eq!((server.as_str(), tool.as_str()), ("calc", "sleep"));
        }
        other => panic!("{other:?}"),
    }
    assert!(begun.elapsed() < Duration::from_secs(5), "{:?}", begun.elapsed());
    canceller.await.unwrap();
    assert!(cancelled_within(&up, 1).await, "the server got notifications/cancelled");
    let five = call(&up, "add", &json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(result_of(&five), json!(5));
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_exits_at_start_is_an_error_with_its_stderr() {
    let (_dir, file) = servers(&json!({"mcpServers": {
        "broken": {"command": python(), "args": [fixture(), "--exit-at-start"]}
    }}));
    let begun = Instant::now();
    match Upstreams::start(&file, START).await {
        Err(err @ UpstreamError::Start { .. }) => {
            let UpstreamError::Start { server, stderr, message } = &err else { unreachable!() };
            assert_eq!(server, "broken");
            assert!(stderr.contains("no configuration found"), "{stderr}");
            assert!(message.contains("exit status: 3"), "{message}");
            let shown = err.to_string();
            assert!(shown.contains("`broken`") && shown.contains("no configuration found"), "{shown}");
        }
        other => panic!("{other:?}"),
    }
    assert!(begun.elapsed() < Duration::from_secs(20), "{:?}", begun.elapsed());

    let (_dir, file) = servers(&json!({"mcpServers": {
        "good": {"command": python(), "args": [fixture()]},
        "missing": {"command": "/nonexistent/agenthub-test-server"}
    }}));
    match Upstreams::start(&file, START).await {
        Err(UpstreamError::Start { server, message, .. }) => {
            assert_eq!(server, "missing");
            assert!(message.contains("cannot run /nonexistent/agenthub-test-server"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_drop_leave_no_process_behind() {
    for by_drop in [false, true] {
        let (_dir, file) = servers(&calc(&json!({})));
        let up = Upstreams::start(&file, START).await.unwrap();
        let server = result_of(&call(&up, "pid", &json!({})).await.unwrap()).as_u64().unwrap();
        let grandchild = result_of(&call(&up, "child", &json!({})).await.unwrap()).as_u64().unwrap();
        assert!(alive(server) && alive(grandchild));
        let begun = Instant::now();
        if by_drop {
            drop(up);
        } else {
            up.shutdown().await;
            assert!(begun.elapsed() < Duration::from_secs(5), "shutdown is bounded: {:?}", begun.elapsed());
        }
        assert!(
            gone_within(&[server, grandchild], Duration::from_secs(5)).await,
            "by_drop={by_drop}: still running"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_died_is_gone_with_its_name() {
    let (_dir, file) = servers(&calc(&json!({})));
    let up = Upstreams::start(&file, START).await.unwrap();
    let server = result_of(&call(&up, "pid", &json!({})).await.unwrap()).as_u64().unwrap();
    let killed = std::process::Command::new("kill").args(["-9", &server.to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        if let Err(err) = call(&up, "add", &json!({"a": 1, "b": 2})).await {
            break err;
        }
        assert!(Instant::now() < deadline, "the killed server still answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    match &err {
        UpstreamError::Gone { server, stderr, .. } => {
            assert_eq!(server, "calc");
            assert!(stderr.contains("serving on stdio"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("`calc` is gone"), "{err}");
    up.shutdown().await;
}

/// Kills and reaps the HTTP server when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_server_by_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = Killed(
        std::process::Command::new(python())
            .arg(fixture())
            .args(["--http", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP server did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_dir, file) = servers(&json!({"mcpServers": {"calc": {
        "type": "http",
        "url": format!("http://127.0.0.1:{port}/mcp"),
        "headers": {"X-Agenthub-Test": "1", "Authorization": "Bearer test"}
    }}}));
    let up = Upstreams::start(&file, START).await.unwrap();
    let add = up.tools().iter().find(|t| t.name == "add").unwrap();
    assert_eq!(add.description, "Add two integers.");
    let five = call(&up, "add", &json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(result_of(&five), json!(5));
    let timeout = Duration::from_millis(500);
    let begun = Instant::now();
    let slow =
        up.call("calc", "sleep", args(&json!({"seconds": 30})), timeout, CancellationToken::new()).await;
    assert!(matches!(slow, Err(UpstreamError::Timeout { .. })), "{slow:?}");
    assert!(begun.elapsed() < Duration::from_secs(5));
    let five = call(&up, "add", &json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(result_of(&five), json!(5));
    let begun = Instant::now();
    up.shutdown().await;
    assert!(begun.elapsed() < Duration::from_secs(5), "{:?}", begun.elapsed());

    // Nothing listens: a clear start error naming the server.
    let (_dir, file) = servers(&json!({"mcpServers": {"nobody": {"url": "http://127.0.0.1:9/mcp"}}}));
    match Upstreams::start(&file, Duration::from_secs(10)).await {
        Err(UpstreamError::Start { server, .. }) => assert_eq!(server, "nobody"),
        other => panic!("{other:?}"),
    }
}

/// The variable that turns [`helper_holding_servers`] on: the servers file to start.
const HELPER: &str = "AGENTHUB_TOOLS_TEST_UPSTREAM_HELPER";

/// Not a test on its own: run by [`killing_agenthub_kills_its_servers`] in a process of its
/// own, it starts the servers, prints their pids and waits to be killed.
#[test]
fn helper_holding_servers() {
    let Some(path) = std::env::var_os(HELPER) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let up = Upstreams::start(&ServersFile::read(Path::new(&path)).unwrap(), START).await.unwrap();
        let server = result_of(&call(&up, "pid", &json!({})).await.unwrap());
        let mut out = std::io::stdout();
        std::io::Write::write_all(&mut out, format!("\nPIDS {server}\n").as_bytes()).unwrap();
        std::io::Write::flush(&mut out).unwrap();
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

#[test]
fn killing_agenthub_kills_its_servers() {
    let (dir, _file) = servers(&calc(&json!({})));
    let mut helper = Killed(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["upstream::helper_holding_servers", "--exact", "--nocapture", "--test-threads=1"])
            .env(HELPER, dir.path().join("servers.json"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = helper.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may have written the test's name before it on the same line.
            if let Some((_, pid)) = line.split_once("PIDS ") {
                let _ = tx.send(pid.trim().parse::<u64>().unwrap());
                return;
            }
        }
    });
    let server = rx.recv_timeout(Duration::from_secs(90)).expect("the helper started its server");
    assert!(alive(server));
    helper.0.kill().unwrap();
    helper.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(server) {
        assert!(Instant::now() < deadline, "the server outlived agenthub (PR_SET_PDEATHSIG)");
        std::thread::sleep(Duration::from_millis(50));
    }
}
