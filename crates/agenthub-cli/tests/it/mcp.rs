//! `agenthub mcp serve` spoken to in raw JSON lines, and by the Python `mcp` client (1.x and
//! 2.x). Every wait is bounded.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use agenthub_core::AgentManifest;
use agenthub_testkit::{TestContext, reported_pid, survivors};
use serde_json::{Value as Json, json};

use super::command;

/// The longest any single answer may take (the first call builds an environment).
const ANSWER: Duration = Duration::from_secs(120);

/// A main()-style agent (served by warm workers) with the methods the lifecycle tests need.
const PROBE_PY: &str = r#"import json, os, sys, time


def main():
    request = json.loads(sys.argv[1])
    method, params = request["method"], request["parameters"]
    if method == "pid":
        # In the sandbox, the pid of its own PID namespace: the namespace says which one.
        result = [os.getpid(), os.readlink("/proc/self/ns/pid")]
    elif method == "sleep":
        if params.get("marker"):
            open(params["marker"], "w").close()
        time.sleep(params["seconds"])
        result = params["seconds"]
    elif method == "fail":
        print(json.dumps({"error": "the probe failed on purpose"}))
        sys.exit(1)
    elif method == "fds":
        result = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                result[fd] = os.readlink("/proc/self/fd/" + fd)
            except OSError:
                pass
    print(json.dumps({"result": result}))


if __name__ == "__main__":
    main()
"#;

const PROBE_YAML: &str = r#"name: "probe"
version: "0.1.0"
description: "MCP lifecycle probe"
author: "tests"
interface:
  methods:
    pid: {description: "The serving process's pid and PID namespace"}
    sleep:
      description: "Sleeps"
      parameters:
        seconds: {type: number, required: true}
        marker: {type: string, required: false, description: "a file created when the sleep starts"}
    fail: {description: "Reports an error of its own"}
    fds: {description: "The process's open file descriptors"}
"#;

/// `shared/conformance/agents`, beside the repository (CI puts it there).
fn conformance_agents() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/agents");
    assert!(
        dir.is_dir(),
        "the conformance suite is not at {} (../shared beside the repository)",
        dir.display()
    );
    dir
}

/// Copies a conformance agent to `conf/<name>` (its files only, no environment).
fn install_conformance(ctx: &TestContext, name: &str) -> PathBuf {
    let from = conformance_agents().join(name);
    let to = ctx.config().agents_root().join("conf").join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap().flatten() {
        let path = entry.path();
        if path.is_file() {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
    to
}

/// Where agents leave markers: granted to every server (`--allow-write`), since a sandboxed
/// agent writes only its own home and TMPDIR.
fn markers(ctx: &TestContext) -> PathBuf {
    let dir = ctx.home().join("markers");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The host pid of the probe that said `[pid, "pid:[…]"]` of itself (in the sandbox its pid
/// is its own PID namespace's).
fn host_pid(said: &str) -> u64 {
    let said: Json = serde_json::from_str(said).unwrap_or_else(|e| panic!("{e}: {said:?}"));
    u64::from(reported_pid(&said))
}

fn install_probe(ctx: &TestContext) -> PathBuf {
    let dir = ctx.config().agents_root().join("test").join("probe");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.py"), PROBE_PY).unwrap();
    std::fs::write(dir.join("agent.yaml"), PROBE_YAML).unwrap();
    dir
}

/// What the server's stdout is.
#[derive(Debug, Clone, Copy)]
enum Output {
    Pipe,
    /// A socket: its peer closing is found only by a write that fails.
    Socket,
}

/// A running `agenthub mcp serve` and its output lines.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Json>,
    /// Messages read while waiting for another.
    seen: VecDeque<Json>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    fn start(ctx: &TestContext, args: &[&str]) -> Self {
        Self::start_reading(ctx, args, usize::MAX, Output::Pipe)
    }

    /// A server whose stdout is read for `messages` messages; then its read end is closed
    /// (the channel disconnects once it is, see [`Server::wait_output_closed`]).
    fn start_reading(ctx: &TestContext, args: &[&str], messages: usize, output: Output) -> Self {
        Self::start_with(ctx, args, messages, output, &[])
    }

    /// [`Server::start`] with extra variables.
    fn start_env(ctx: &TestContext, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with(ctx, args, usize::MAX, Output::Pipe, env)
    }

    fn start_with(
        ctx: &TestContext,
        args: &[&str],
        messages: usize,
        output: Output,
        env: &[(&str, &str)],
    ) -> Self {
        let markers = markers(ctx);
        let mut all = vec!["mcp", "serve"];
        all.extend_from_slice(args);
        all.extend(["--allow-write", markers.to_str().unwrap()]);
        let mut command = command(ctx, &all);
        command.envs(env.iter().copied());
        command.stdin(Stdio::piped()).stderr(Stdio::piped());
        let ours: Option<Box<dyn Read + Send>> = match output {
            Output::Pipe => {
                command.stdout(Stdio::piped());
                None
            }
            Output::Socket => {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
                command.stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
                Some(Box::new(ours))
            }
        };
        let mut child = command.spawn().unwrap();
        // Dropped here: the server holds the only other end.
        drop(command);
        let stdout: Box<dyn Read + Send> = match ours {
            Some(ours) => ours,
            None => Box::new(child.stdout.take().unwrap()),
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..messages {
                let Some(Ok(line)) = lines.next() else { break };
                // Nothing but protocol on stdout: every line is one JSON-RPC message.
                let message: Json = serde_json::from_str(&line)
                    .unwrap_or_else(|e| json!({"NOT PROTOCOL": line, "why": e.to_string()}));
                if tx.send(message).is_err() {
                    break;
                }
            }
            // The read end is closed before the channel is.
            drop(lines);
            drop(tx);
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin, lines, seen: VecDeque::new(), stderr }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn send(&mut self, message: &Json) {
        self.send_raw(&format!("{message}\n"));
    }

    fn send_raw(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn request(&mut self, id: u64, method: &str, params: Json) {
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        message["params"] = params;
        self.send(&message);
    }

    /// The next message, within `limit`.
    fn next(&mut self, limit: Duration) -> Option<Json> {
        if let Some(m) = self.seen.pop_front() {
            return Some(m);
        }
        let message = self.lines.recv_timeout(limit).ok()?;
        assert_eq!(message["jsonrpc"], "2.0", "not a JSON-RPC message on stdout: {message}");
        Some(message)
    }

    /// The response to request `id` (other messages are kept for later).
    fn response(&mut self, id: u64) -> Json {
        let deadline = Instant::now() + ANSWER;
        let mut kept = VecDeque::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.next(left).unwrap_or_else(|| {
                panic!("no response to request {id} within {ANSWER:?}; stderr:\n{}", self.stderr())
            });
            if message["id"] == json!(id) && message.get("method").is_none() {
                break message;
            }
            kept.push_back(message);
        };
        kept.extend(self.seen.drain(..));
        self.seen = kept;
        found
    }

    fn call(&mut self, id: u64, tool: &str, arguments: Json) -> Json {
        let mut params = json!({"name": tool});
        params["arguments"] = arguments;
        self.request(id, "tools/call", params);
        self.response(id)
    }

    fn initialize(&mut self, version: &str) -> Json {
        self.request(
            0,
            "initialize",
            json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}),
        );
        let answer = self.response(0);
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        answer
    }

    /// Closes stdin and waits (bounded) for the exit: the status and how long it took.
    fn close(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        self.stdin = None;
        self.wait_exit(limit, "EOF")
    }

    /// Waits (bounded) for the exit, stdin left as it is: the status and how long it took.
    fn wait_exit(&mut self, limit: Duration, after: &str) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "the server did not exit within {limit:?} of {after}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until the reader of [`Server::start_reading`] has closed the read end
    /// of the server's stdout; what it read meanwhile is kept.
    fn wait_output_closed(&mut self) {
        let deadline = Instant::now() + ANSWER;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(message) => self.seen.push_back(message),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("stdout was not closed within {ANSWER:?}"),
            }
        }
    }

    /// Writes to stdin, which may already be closed by a server that has exited.
    fn send_if_open(&mut self, message: &Json) {
        let stdin = self.stdin.as_mut().expect("stdin is held");
        let _ = stdin.write_all(format!("{message}\n").as_bytes()).and_then(|()| stdin.flush());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn alive(pid: u64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(result: &Json) -> &str {
    result["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text content in {result}"))
}

fn result_of(response: &Json) -> Json {
    let result = &response["result"];
    assert!(result.is_object(), "not a result: {response}");
    result.clone()
}

#[test]
fn tools_are_listed_with_schemas_derived_from_the_conformance_manifests() {
    let ctx = TestContext::new();
    let hello = install_conformance(&ctx, "hello");
    let sleeper = install_conformance(&ctx, "sleeper");
    let mut server = Server::start(&ctx, &["conf/hello", "conf/sleeper"]);
    // The initialize handshake of 2025-11-25 and of an older version: the version asked for
    // is the one answered.
    let init = server.initialize("2025-11-25");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "agenthub");
    server.request(1, "tools/list", json!({}));
    let listed = server.response(1);
    let tools = listed["result"]["tools"].as_array().unwrap_or_else(|| panic!("{listed}")).clone();

    let mut expected_names = Vec::new();
    for dir in [&hello, &sleeper] {
        let (manifest, _) = AgentManifest::load(dir).unwrap();
        for (method, spec) in &manifest.methods {
            // Two agents: `<agent>__<method>`.
            let name = format!("{}__{method}", manifest.name);
            expected_names.push(name.clone());
            let tool = tools.iter().find(|t| t["name"] == json!(name)).unwrap_or_else(|| panic!("no {name}"));
            assert!(tool["description"].as_str().unwrap().contains(&spec.description), "{tool}");
            let schema = &tool["inputSchema"];
            assert_eq!(schema["type"], "object", "{tool}");
            let properties = schema["properties"].as_object().unwrap();
            assert_eq!(properties.len(), spec.parameters.len(), "{tool}");
            let mut required = Vec::new();
            for (param, p) in &spec.parameters {
                let property = &properties[param];
                assert_eq!(property["type"], p.param_type.as_str(), "{name}.{param}");
                assert_eq!(property.get("default"), p.default.as_ref(), "{name}.{param}");
                assert_eq!(property.get("description").and_then(Json::as_str), p.description.as_deref());
                if p.required {
                    required.push(json!(param));
                }
            }
            assert_eq!(schema["required"], Json::Array(required), "{name}");
            assert_eq!(schema["additionalProperties"], false);
            let returns_object =
                spec.returns.as_ref().and_then(|r| r.return_type.as_deref()) == Some("object");
            assert_eq!(tool.get("outputSchema").is_some(), returns_object, "{tool}");
            if returns_object {
                assert_eq!(tool["outputSchema"]["type"], "object");
            }
        }
    }
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, expected_names);
    for name in names {
        assert!(name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)));
    }
    let (status, _) = server.close(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.stderr());

    // One agent: the tool is named after the method; an older protocol version is echoed.
    let mut server = Server::start(&ctx, &["conf/hello"]);
    assert_eq!(server.initialize("2024-11-05")["result"]["protocolVersion"], "2024-11-05");
    server.request(1, "tools/list", json!({}));
    let names: Vec<Json> =
        server.response(1)["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, [json!("greet"), json!("echo"), json!("add")]);
}

#[test]
fn the_handshake_free_lifecycle_is_answered_too() {
    let ctx = TestContext::new();
    install_conformance(&ctx, "hello");
    let mut server = Server::start(&ctx, &["conf/hello"]);
    // A notification before any request is skipped, a line that is not JSON is a parse error
    // (id null), and a ping before any lifecycle is answered.
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    server.send_raw("this is not JSON\n");
    let parse_error = server.next(ANSWER).unwrap();
    assert_eq!((&parse_error["id"], &parse_error["error"]["code"]), (&Json::Null, &json!(-32700)));
    server.request(9, "ping", json!({}));
    assert_eq!(server.next(ANSWER).unwrap(), json!({"jsonrpc": "2.0", "id": 9, "result": {}}));
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"},
    });
    server.request(1, "server/discover", json!({"_meta": meta}));
    let discovered = result_of(&server.response(1));
    let versions = discovered["supportedVersions"].as_array().unwrap();
    assert!(
        versions.contains(&json!("2025-11-25")) && versions.contains(&json!("2026-07-28")),
        "{discovered}"
    );
    assert!(discovered["capabilities"]["tools"].is_object(), "{discovered}");
    // No initialize: each request carries its own metadata.
    server.request(2, "tools/call", json!({"_meta": meta, "name": "greet", "arguments": {"name": "inline"}}));
    let greeted = server.response(2);
    assert_eq!(text(&greeted), "hello inline", "{greeted}");
}

#[test]
fn fifty_concurrent_calls_each_get_their_own_answer() {
    let ctx = TestContext::new();
    install_conformance(&ctx, "hello");
    let mut server = Server::start(&ctx, &["conf/hello", "--workers", "4"]);
    server.initialize("2025-11-25");
    // Warm up (builds the environment) so the 50 race each other, not the build.
    assert_eq!(text(&server.call(1, "greet", json!({"name": "warm"}))), "hello warm");
    for i in 0..50u64 {
        let args = json!({"text": format!("call {i}"), "count": i, "items": [i]});
        server.request(100 + i, "tools/call", json!({"name": "echo", "arguments": args}));
    }
    let deadline = Instant::now() + ANSWER;
    let mut answered = std::collections::BTreeMap::new();
    while answered.len() < 50 {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = server.next(left).unwrap_or_else(|| panic!("{} of 50 answered", answered.len()));
        let id = message["id"].as_u64().unwrap_or_else(|| panic!("{message}"));
        assert!((100..150).contains(&id), "{message}");
        assert!(answered.insert(id, message).is_none(), "request {id} answered twice");
    }
    for (id, message) in answered {
        let i = id - 100;
        let result = result_of(&message);
        assert_eq!(result["isError"], false, "{message}");
        assert_eq!(
            result["structuredContent"],
            json!({"text": format!("call {i}"), "count": i, "items": [i], "flag": false, "ratio": 0.5}),
            "{message}"
        );
    }
}

#[test]
fn bad_calls_are_error_results_and_protocol_mistakes_are_json_rpc_errors() {
    let ctx = TestContext::new();
    install_conformance(&ctx, "hello");
    install_probe(&ctx);
    let mut server = Server::start(&ctx, &["conf/hello", "test/probe", "--timeout", "3"]);
    server.initialize("2025-11-25");
    // Invalid arguments: a tool result with isError, the error type and the suggestion.
    let bad = server.call(1, "hello__add", json!({"a": "one", "b": 2}));
    assert_eq!(bad["result"]["isError"], true, "{bad}");
    let message = text(&bad);
    assert!(message.starts_with("InvalidParametersError: "), "{message}");
    assert!(message.contains("'a' must be of type integer"), "{message}");
    assert!(message.contains("suggestion: Expected: add(a: integer, b: integer)"), "{message}");
    let unknown_param = server.call(2, "hello__add", json!({"a": 1, "b": 2, "c": 3}));
    assert!(text(&unknown_param).contains("unknown parameter 'c'"), "{unknown_param}");
    // The agent's own error.
    let failed = server.call(3, "probe__fail", json!({}));
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    assert!(text(&failed).starts_with("AgentError: the probe failed on purpose"), "{failed}");
    // A call past its timeout.
    let slow = server.call(4, "probe__sleep", json!({"seconds": 30}));
    assert_eq!(slow["result"]["isError"], true, "{slow}");
    assert!(text(&slow).starts_with("TimeoutError: "), "{slow}");
    // Success still works after all of that.
    assert_eq!(server.call(5, "hello__add", json!({"a": 40, "b": 2}))["result"]["content"][0]["text"], "42");
    // Unknown tool: -32602. Unknown method: -32601.
    let unknown = server.call(6, "nope", json!({}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert!(unknown["error"]["message"].as_str().unwrap().contains("nope"), "{unknown}");
    server.request(7, "no/such/method", json!({}));
    let missing = server.response(7);
    assert_eq!(missing["error"]["code"], -32601, "{missing}");
    assert!(missing["error"]["message"].as_str().unwrap().contains("no/such/method"), "{missing}");
    server.request(8, "resources/list", json!({}));
    assert_eq!(server.response(8)["error"]["code"], -32601);
    // Notifications are never answered: the next message after them is the ping's answer.
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/whatever", "params": {"x": 1}}));
    server
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 999}}));
    server.request(9, "ping", json!({}));
    let pong = server.next(ANSWER).unwrap();
    assert_eq!(pong, json!({"jsonrpc": "2.0", "id": 9, "result": {}}));
    assert!(server.next(Duration::from_millis(300)).is_none());
    let (status, _) = server.close(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_cancelled_call_kills_its_worker_and_a_fresh_one_serves_the_next_call() {
    let ctx = TestContext::new();
    install_probe(&ctx);
    let mut server = Server::start(&ctx, &["test/probe", "--workers", "1"]);
    server.initialize("2025-11-25");
    let first = host_pid(text(&server.call(1, "pid", json!({}))));
    assert!(alive(first));
    let marker = markers(&ctx).join("sleeping");
    server.call_async(2, "sleep", json!({"seconds": 60, "marker": marker}));
    wait_until("the call to reach its worker", ANSWER, || marker.exists());
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 2, "reason": "the user changed their mind"}}));
    wait_until("the cancelled call's worker to die", Duration::from_secs(10), || !alive(first));
    let second = host_pid(text(&server.call(3, "pid", json!({}))));
    assert_ne!(second, first);
    assert!(alive(second));
    // The cancelled request is never answered.
    assert!(server.seen.iter().all(|m| m["id"] != json!(2)), "{:?}", server.seen);
    assert!(server.next(Duration::from_millis(300)).is_none());
    let (status, _) = server.close(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert!(!alive(second));
}

#[test]
fn a_cancelled_call_of_a_one_shot_agent_kills_its_process() {
    let ctx = TestContext::new();
    // Script-style (no main() to replay): served one-shot even by the MCP server.
    let dir = ctx.config().agents_root().join("test").join("script");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("agent.py"),
        "import json, os, sys, time\nparams = json.loads(sys.argv[1])['parameters']\n\
         open(params['marker'], 'w').write(json.dumps([os.getpid(), os.readlink('/proc/self/ns/pid')]))\n\
         time.sleep(params['seconds'])\n\
         print(json.dumps({'result': 'woke'}))\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("agent.yaml"),
        "name: script\nversion: '0.1.0'\ndescription: one-shot\nauthor: tests\ninterface:\n  methods:\n    \
         sleep:\n      description: sleeps\n      parameters:\n        seconds: {type: number, required: true}\n        \
         marker: {type: string, required: true}\n",
    )
    .unwrap();
    let mut server = Server::start(&ctx, &["test/script"]);
    server.initialize("2025-11-25");
    let marker = markers(&ctx).join("pid");
    server.call_async(1, "sleep", json!({"seconds": 60, "marker": marker}));
    let mut pid = None;
    wait_until("the one-shot process to start", ANSWER, || {
        pid = std::fs::read_to_string(&marker).ok().filter(|p| p.ends_with(']')).map(|p| host_pid(&p));
        pid.is_some()
    });
    let pid = pid.unwrap();
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}));
    wait_until("the cancelled one-shot process to die", Duration::from_secs(10), || !alive(pid));
    let again = server.call(2, "sleep", json!({"seconds": 0, "marker": markers(&ctx).join("pid2")}));
    assert_eq!(text(&again), "woke", "{again}");
    assert!(
        server.seen.iter().all(|m| m["id"] != json!(1)),
        "the cancelled call was answered: {:?}",
        server.seen
    );
}

#[test]
fn a_call_with_a_progress_token_reports_progress_while_it_runs() {
    let ctx = TestContext::new();
    install_probe(&ctx);
    let mut server = Server::start(&ctx, &["test/probe", "--progress-interval", "0.2"]);
    server.initialize("2025-11-25");
    server.call(1, "pid", json!({}));
    server.request(
        2,
        "tools/call",
        json!({"name": "sleep", "arguments": {"seconds": 1.5}, "_meta": {"progressToken": "tok"}}),
    );
    let done = server.response(2);
    assert_eq!(text(&done), "1.5");
    let progress: Vec<&Json> =
        server.seen.iter().filter(|m| m["method"] == "notifications/progress").collect();
    assert!(progress.len() >= 3, "{:?}", server.seen);
    let mut last = -1.0;
    for note in &progress {
        assert_eq!(note["params"]["progressToken"], "tok");
        let value = note["params"]["progress"].as_f64().unwrap();
        assert!(value > last, "progress did not increase: {note}");
        last = value;
    }
    // No token, no progress.
    server.seen.clear();
    server.call(3, "sleep", json!({"seconds": 0.6}));
    assert!(server.seen.iter().all(|m| m["method"] != "notifications/progress"), "{:?}", server.seen);
}

#[test]
fn eof_cancels_calls_in_flight_shuts_every_worker_down_and_exits_0() {
    let ctx = TestContext::new();
    let probe = install_probe(&ctx);
    let mut server = Server::start(&ctx, &["test/probe", "--workers", "2"]);
    server.initialize("2025-11-25");
    let pid = host_pid(text(&server.call(1, "pid", json!({}))));
    // One call hangs in a worker when stdin closes.
    let marker = markers(&ctx).join("sleeping");
    server.call_async(2, "sleep", json!({"seconds": 120, "marker": marker}));
    wait_until("the call to reach its worker", ANSWER, || marker.exists());
    let (status, took) = server.close(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    assert!(!alive(pid));
    // Workers carry the agent directory on their command line.
    let token = probe.canonicalize().unwrap().display().to_string();
    wait_until("no process of the agent", Duration::from_secs(5), || survivors(&token).is_empty());
}

#[test]
fn a_closed_output_ends_the_session_like_eof_with_stdin_still_open() {
    let ctx = TestContext::new();
    let probe = install_probe(&ctx);
    let token = probe.canonicalize().unwrap().display().to_string();
    // A pipe (whose hang-up the server also watches for) and a socket (found closed by the
    // write that fails).
    for output in [Output::Pipe, Output::Socket] {
        // Two messages are read (the initialize answer and the pid); then stdout's read end
        // closes.
        let mut server = Server::start_reading(&ctx, &["test/probe", "--workers", "2"], 2, output);
        server.initialize("2025-11-25");
        let pid = host_pid(text(&server.call(1, "pid", json!({}))));
        assert!(alive(pid));
        server.wait_output_closed();
        // Stdin stays open; the answer to this request cannot be written.
        server.send_if_open(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
        let (status, took) = server.wait_exit(Duration::from_secs(30), "the output closing");
        assert_eq!(status.code(), Some(0), "{output:?}: {}", server.stderr());
        assert!(took < Duration::from_secs(20), "{output:?}: exit took {took:?}");
        assert!(!alive(pid), "{output:?}");
        wait_until("no process of the agent", Duration::from_secs(5), || survivors(&token).is_empty());
        assert!(!server.stderr().contains("panicked"), "{output:?}: {}", server.stderr());
    }
}

#[test]
fn a_closed_output_cancels_the_calls_in_flight() {
    let ctx = TestContext::new();
    let probe = install_probe(&ctx);
    // The initialize answer, the pid, and the first progress notification of the call below.
    let mut server = Server::start_reading(
        &ctx,
        &["test/probe", "--workers", "2", "--progress-interval", "0.1"],
        3,
        Output::Pipe,
    );
    server.initialize("2025-11-25");
    let pid = host_pid(text(&server.call(1, "pid", json!({}))));
    let marker = markers(&ctx).join("sleeping");
    server.request(
        2,
        "tools/call",
        json!({"name": "sleep", "arguments": {"seconds": 120, "marker": marker},
               "_meta": {"progressToken": "tok"}}),
    );
    wait_until("the call to reach its worker", ANSWER, || marker.exists());
    server.wait_output_closed();
    assert_eq!(server.seen.back().map(|m| m["method"].clone()), Some(json!("notifications/progress")));
    // Nothing more is sent: the next progress notification (or stdout's hang-up) ends it.
    let (status, took) = server.wait_exit(Duration::from_secs(30), "the output closing");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(took < Duration::from_secs(20), "exit took {took:?}");
    assert!(!alive(pid));
    let token = probe.canonicalize().unwrap().display().to_string();
    wait_until("no process of the agent", Duration::from_secs(5), || survivors(&token).is_empty());
}

#[test]
fn malformed_requests_are_answered_with_their_id_and_the_server_keeps_serving() {
    let ctx = TestContext::new();
    install_conformance(&ctx, "hello");
    let mut server = Server::start(&ctx, &["conf/hello"]);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    // (line, the id of the answer, its code)
    let before: Vec<(String, Json, i64)> = vec![
        // Before the handshake: an initialize whose params are wrong.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":5}}"#.into(),
            json!(1),
            -32602,
        ),
        ("this is not JSON".into(), Json::Null, -32700),
    ];
    let after: Vec<(String, Json, i64)> = vec![
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"greet","arguments":"text"}}"#.into(),
            json!(2),
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"greet","arguments":{"name":"x"},"_meta":5}}"#
                .into(),
            json!(3),
            -32602,
        ),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"greet","arguments":{{"name":{deep}}}}}}}"#
            ),
            json!(4),
            -32602,
        ),
        (r#"{"jsonrpc":"2.0","id":5,"method":"tools/call"}"#.into(), json!(5), -32602),
        (r#"{"jsonrpc":"2.0","id":"six","method":"tools/list","params":5}"#.into(), json!("six"), -32602),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"capabilities":[]}}"#.into(),
            json!(7),
            -32602,
        ),
        // An unknown method is that whatever its params.
        (format!(r#"{{"jsonrpc":"2.0","id":8,"method":"no/such","params":{{"a":{deep}}}}}"#), json!(8), -32601),
        (r#"{"jsonrpc":"2.0","id":9,"method":"resources/list","params":5}"#.into(), json!(9), -32601),
        // Not a request object: the id where it can be read.
        (r#"{"jsonrpc":"1.0","id":10,"method":"ping"}"#.into(), json!(10), -32600),
        (r#"{"jsonrpc":"2.0","id":11,"method":5}"#.into(), json!(11), -32600),
        (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.into(), Json::Null, -32600),
        (deep.clone(), Json::Null, -32600),
        // Not JSON: nothing can be read.
        (r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"#.into(), Json::Null, -32700),
        (format!("{{\"a\": {}", "[".repeat(200)), Json::Null, -32700),
    ];
    let check = |server: &mut Server, cases: &[(String, Json, i64)]| {
        for (line, id, code) in cases {
            server.send_raw(&format!("{line}\n"));
            let answer = server.next(ANSWER).unwrap_or_else(|| panic!("no answer to {line}"));
            let shown = if line.len() > 120 { &line[..120] } else { line.as_str() };
            assert_eq!(answer["error"]["code"], json!(code), "{shown}: {answer}");
            assert_eq!(answer.get("id"), Some(id), "{shown}: {answer}");
            assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
        }
    };
    check(&mut server, &before);
    assert_eq!(server.initialize("2025-11-25")["result"]["protocolVersion"], "2025-11-25");
    check(&mut server, &after);
    // Still serving, and nothing else was sent.
    assert_eq!(text(&server.call(20, "greet", json!({"name": "after"}))), "hello after");
    assert!(server.next(Duration::from_millis(300)).is_none());
    let (status, _) = server.close(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
}

#[test]
fn agents_never_inherit_the_servers_stdin_or_stdout() {
    let ctx = TestContext::new();
    install_probe(&ctx);
    let mut server = Server::start(&ctx, &["test/probe"]);
    server.initialize("2025-11-25");
    let fds = server.call(1, "fds", json!({}));
    let fds: serde_json::Map<String, Json> = serde_json::from_str(text(&fds)).unwrap();
    let pid = server.child.id();
    for fd in [0, 1] {
        let ours = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        let ours = ours.display().to_string();
        assert!(ours.starts_with("pipe:"), "{ours}");
        assert!(
            fds.values().all(|target| target.as_str() != Some(ours.as_str())),
            "the agent holds {ours}: {fds:?}"
        );
    }
}

#[test]
fn mcp_config_prints_what_clients_read() {
    let ctx = TestContext::new();
    let probe = install_probe(&ctx);
    let out = command(&ctx, &["mcp", "config", "test/probe"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    let server = &v["mcpServers"]["agenthub-probe"];
    let binary = PathBuf::from(server["command"].as_str().unwrap());
    assert!(binary.is_absolute());
    assert_eq!(binary, assert_cmd::cargo::cargo_bin("agenthub").canonicalize().unwrap());
    assert_eq!(server["args"], json!(["mcp", "serve", "test/probe"]));
    assert_eq!(server["env"]["AGENTHUB_HOME"], ctx.home().display().to_string());
    // A path is written absolute; --name names the server.
    let relative = probe.strip_prefix(std::env::current_dir().unwrap()).map(Path::to_path_buf);
    let arg = relative.map_or_else(|_| probe.display().to_string(), |p| format!("./{}", p.display()));
    let out = command(&ctx, &["mcp", "config", &arg, "--name", "mine"]).output().unwrap();
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    let dir = probe.canonicalize().unwrap().display().to_string();
    assert_eq!(v["mcpServers"]["mine"]["args"], json!(["mcp", "serve", dir]));
    // An agent that does not load is a usage error, with nothing on stdout.
    let out = command(&ctx, &["mcp", "serve", "test/nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// The Python MCP clients' venvs (scripts/ensure-mcp-clients), installed once per run.
fn mcp_client_python(major: &str) -> PathBuf {
    static READY: OnceLock<()> = OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    READY.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/ensure-mcp-clients"))
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "scripts/ensure-mcp-clients failed");
    });
    let dir = std::env::var_os("AGENTHUB_MCP_CLIENTS")
        .map_or_else(|| root.join("target/mcp-clients"), PathBuf::from);
    dir.join(major).join("bin/python")
}

#[test]
fn the_python_mcp_clients_1x_and_2x_list_and_call_tools() {
    let ctx = TestContext::new();
    install_conformance(&ctx, "hello");
    let binary = assert_cmd::cargo::cargo_bin("agenthub");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_client.py");
    for (major, mode) in [("v1", "session"), ("v2", "session"), ("v2", "auto"), ("v2", "legacy")] {
        let python = mcp_client_python(major);
        let mut child = std::process::Command::new(&python)
            .arg(&script)
            .arg(&binary)
            .arg(ctx.home())
            .arg("conf/hello")
            .arg(mode)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > ANSWER {
                let _ = child.kill();
                panic!("the {major} client ({mode}) did not finish within {ANSWER:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let context = format!("{major} {mode}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{context}");
        let v: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {context}"));
        let version = v["mcp_version"].as_str().unwrap();
        assert!(version.starts_with(if major == "v1" { "1." } else { "2." }), "{version}");
        let names: Vec<&str> =
            v["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["greet", "echo", "add"], "{context}");
        assert_eq!(v["greet"]["content"][0]["text"], "hello MCP", "{v}");
        assert_eq!(v["echo"]["structuredContent"]["text"], "hi", "{v}");
        assert_eq!(v["bad"]["isError"], true, "{v}");
        match mode {
            "auto" => assert_eq!(v["lifecycle"], "discover", "{v}"),
            _ => assert_eq!(v["protocol_version"], "2025-11-25", "{v}"),
        }
    }
}

impl Server {
    /// Sends a tools/call without waiting for it.
    fn call_async(&mut self, id: u64, tool: &str, arguments: Json) {
        let mut params = json!({"name": tool});
        params["arguments"] = arguments;
        self.request(id, "tools/call", params);
    }
}

#[test]
fn mcp_serve_takes_mode_isolated() {
    let ctx = TestContext::new();
    super::batch::install(
        &ctx,
        "counter",
        &[
            ("agent.py", super::batch::COUNTER_PY.to_owned()),
            ("agent.yaml", super::batch::COUNTER_YAML.to_owned()),
        ],
    );
    for (mode, second) in [("isolated", "1"), ("warm", "2")] {
        let mut server = Server::start(&ctx, &["conf/counter", "--mode", mode]);
        server.initialize("2025-11-25");
        assert_eq!(text(&server.call(1, "count", json!({}))), "1", "{mode}");
        assert_eq!(text(&server.call(2, "count", json!({}))), second, "{mode}");
    }
}

#[test]
fn a_tools_call_continues_the_trace_its_client_sent_in_meta() {
    let mut receiver = crate::traces::Receiver::start();
    let ctx = TestContext::new();
    install_conformance(&ctx, "hello");
    let mut server =
        Server::start_env(&ctx, &["conf/hello"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)]);
    server.initialize("2025-06-18");
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    server.request(
        1,
        "tools/call",
        json!({"name": "greet", "arguments": {"name": "Trace"}, "_meta": {"traceparent": parent, "tracestate": "vendor=1"}}),
    );
    let answer = server.response(1);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    // Spans are sent when the server ends.
    let (status, _) = server.close(ANSWER);
    assert!(status.success(), "{}", server.stderr());
    let spans = receiver.wait_for("tools/call and invoke_agent", |s| {
        !crate::traces::named(s, "tools/call greet").is_empty()
            && s.iter().any(|x| x["name"].as_str().is_some_and(|n| n.starts_with("invoke_agent")))
    });
    let request = crate::traces::named(&spans, "tools/call greet")[0];
    assert_eq!(request["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(request["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(request["kind"], 2, "a server span");
    assert_eq!(request["attributes"]["mcp.method.name"], "tools/call");
    assert_eq!(request["attributes"]["gen_ai.tool.name"], "greet");
    let call =
        spans.iter().find(|x| x["name"].as_str().is_some_and(|n| n.starts_with("invoke_agent"))).unwrap();
    assert_eq!(call["parent_span_id"], request["span_id"]);
    assert_eq!(call["trace_id"], request["trace_id"]);
}
