//! Traces through the binary (issue 19): a real OTLP/HTTP receiver on loopback
//! (`otlp_receiver.py`, the `opentelemetry-proto` package) gets agenthub's spans with
//! OpenTelemetry's `GenAI` names, attributes and parent links; an agent instrumented with the
//! Python SDK joins the call's trace through `TRACEPARENT`; an unreachable collector costs
//! no call anything.
//!
//! Every wait is bounded; every process a test starts is killed by a guard.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agenthub_testkit::TestContext;
use serde_json::{Value as Json, json};

use crate::{command, json_of};

/// Runs `cmd` to its end with `input` on stdin, bounded by [`LIMIT`].
fn run(cmd: std::process::Command, input: &[u8]) -> Output {
    crate::run_bounded(cmd, input, LIMIT)
}

/// Bound of one command (a first environment build from `PyPI` included).
const LIMIT: Duration = Duration::from_secs(300);

/// How long spans may take to arrive after the command that made them ended.
const ARRIVAL: Duration = Duration::from_secs(30);

/// The receiver's Python (scripts/ensure-otel-tools), installed once per run.
fn receiver_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let status = std::process::Command::new("bash")
                .arg(root.join("scripts/ensure-otel-tools"))
                .status()
                .expect("run scripts/ensure-otel-tools");
            assert!(status.success(), "scripts/ensure-otel-tools failed");
            root.join("target/otel/bin/python")
        })
        .clone()
}

/// A running OTLP/HTTP receiver on loopback.
pub(crate) struct Receiver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(crate) endpoint: String,
}

impl Receiver {
    pub(crate) fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/otlp_receiver.py");
        let mut child = std::process::Command::new(receiver_python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OTLP receiver");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let endpoint = serde_json::from_str::<Json>(&line).expect("the receiver's endpoint")["endpoint"]
            .as_str()
            .unwrap()
            .to_owned();
        Self { child, stdin, stdout, endpoint }
    }

    /// The spans received so far.
    pub(crate) fn spans(&mut self) -> Vec<Json> {
        self.stdin.write_all(b"dump\n").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<Json>(&line).unwrap().as_array().unwrap().clone()
    }

    /// The spans received once `done` holds of them (polled, within [`ARRIVAL`]).
    pub(crate) fn wait_for(&mut self, what: &str, done: impl Fn(&[Json]) -> bool) -> Vec<Json> {
        let deadline = Instant::now() + ARRIVAL;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not received within {ARRIVAL:?}; received: {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spans named `name`.
pub(crate) fn named<'a>(spans: &'a [Json], name: &str) -> Vec<&'a Json> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn one<'a>(spans: &'a [Json], name: &str) -> &'a Json {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one span {name:?} expected: {spans:#?}");
    found[0]
}

/// `agenthub ARGS` with tracing to `receiver` (and `extra` variables), bounded.
fn traced(ctx: &TestContext, receiver: &Receiver, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = command(ctx, args);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint).env("OTEL_SERVICE_NAME", "agenthub-test");
    cmd.envs(extra.iter().copied());
    run(cmd, b"")
}

/// A home with the `traced` fixture installed as `test/traced`.
fn home() -> TestContext {
    let ctx = TestContext::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traced");
    let dir = ctx.config().agents_root().join("test/traced");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["agent.py", "agent.yaml"] {
        std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
    }
    ctx
}

/// `00-<trace>-<span>-01` of a span as the receiver shows it.
fn traceparent_of(span: &Json) -> String {
    format!("00-{}-{}-01", span["trace_id"].as_str().unwrap(), span["span_id"].as_str().unwrap())
}

#[test]
fn a_call_is_an_invoke_agent_span_and_its_process_gets_the_trace_context() {
    let mut receiver = Receiver::start();
    let ctx = home();
    // A trace context in agenthub's own environment is not the call's.
    let stale = [
        ("TRACEPARENT", "00-11111111111111111111111111111111-2222222222222222-01"),
        ("TRACESTATE", "stale=1"),
    ];
    let out = traced(&ctx, &receiver, &["exec", "test/traced", "context", "--json"], &stale);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let given = json_of(&out)["result"]["traceparent"].as_str().expect("TRACEPARENT was set").to_owned();
    assert!(json_of(&out)["result"]["tracestate"].is_null(), "{:?}", json_of(&out));
    let spans = receiver.wait_for("invoke_agent traced", |s| !named(s, "invoke_agent traced").is_empty());
    let call = one(&spans, "invoke_agent traced");
    assert_eq!(given, traceparent_of(call), "the process got the call's own span as its parent");
    let attributes = &call["attributes"];
    assert_eq!(attributes["gen_ai.operation.name"], "invoke_agent");
    assert_eq!(attributes["gen_ai.agent.name"], "traced");
    assert_eq!(attributes["gen_ai.agent.id"], "test/traced");
    assert_eq!(attributes["agenthub.method"], "context");
    assert_eq!(attributes["agenthub.mode"], "oneshot");
    assert_eq!(call["resource"]["service.name"], "agenthub-test");
    assert_eq!(call["parent_span_id"], "", "a CLI call is a root");
    // Its run id is the run history's.
    let runs: Json = serde_json::from_slice(&run(command(&ctx, &["runs", "--json"]), b"").stdout).unwrap();
    assert_eq!(attributes["agenthub.run.id"], runs[0]["id"]);
    let env = one(&spans, "environment");
    assert_eq!((&env["trace_id"], &env["parent_span_id"]), (&call["trace_id"], &call["span_id"]));
    assert_eq!(env["attributes"]["agenthub.environment.built"], true);
    // A failed call says so, with its error type.
    let mut cmd = command(&ctx, &["batch", "test/traced", "--json"]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    let out = run(cmd, b"{\"method\": \"nope\", \"parameters\": {}}\n");
    assert_eq!(out.status.code(), Some(1));
    let spans = receiver.wait_for("the failed call", |s| named(s, "invoke_agent traced").len() == 2);
    let failed = named(&spans, "invoke_agent traced")
        .into_iter()
        .find(|s| s["attributes"]["agenthub.method"] == "nope")
        .unwrap();
    assert_eq!(failed["attributes"]["error.type"], "MethodNotFoundError");
    assert_eq!(failed["status"], 2, "an error status: {failed}");
}

#[test]
fn warm_calls_each_get_their_own_trace_context_and_the_worker_start_is_a_span() {
    let mut receiver = Receiver::start();
    let ctx = home();
    let input = "{\"method\": \"context\", \"parameters\": {}}\n".repeat(3);
    let mut cmd = command(&ctx, &["batch", "test/traced", "--json"]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    let out = run(cmd, input.as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let given: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Json>(l).unwrap()["result"]["traceparent"].as_str().unwrap().to_owned()
        })
        .collect();
    let spans = receiver.wait_for("three calls", |s| named(s, "invoke_agent traced").len() == 3);
    let calls = named(&spans, "invoke_agent traced");
    let mut expected: Vec<String> = calls.iter().map(|c| traceparent_of(c)).collect();
    let mut got = given.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "each warm call's process saw its own call's context");
    assert!(calls.iter().all(|c| c["attributes"]["agenthub.mode"] == "warm"));
    // A warm call that starts its worker has the start as a child span (batch starts its
    // workers ahead of the calls: exec in warm mode does not).
    let out =
        traced(&ctx, &receiver, &["exec", "test/traced", "context", "--json"], &[("AGENTHUB_MODE", "warm")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The process's parent is the call's span: `00-<trace>-<span>-01`.
    let given = json_of(&out)["result"]["traceparent"].as_str().unwrap().to_owned();
    let (trace_id, call_id) = (&given[3..35], &given[36..52]);
    let spans = receiver.wait_for("the worker's start under the call", |s| {
        named(s, "start_worker").iter().any(|w| w["parent_span_id"] == call_id)
    });
    let start = named(&spans, "start_worker").into_iter().find(|w| w["parent_span_id"] == call_id).unwrap();
    assert_eq!(start["trace_id"], trace_id);
}

#[test]
fn an_instrumented_agents_own_span_joins_the_calls_trace() {
    let mut receiver = Receiver::start();
    let ctx = home();
    // The agent's exporter reaches the receiver through the sandbox's loopback bridge.
    let port = receiver.endpoint.rsplit(':').next().unwrap().to_owned();
    let allow = format!("localhost:{port}");
    let out = traced(&ctx, &receiver, &["exec", "test/traced", "work", "--json", "--allow-net", &allow], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out)["result"], "worked");
    let spans = receiver.wait_for("the agent's span and the call's", |s| {
        !named(s, "agent work").is_empty() && !named(s, "invoke_agent traced").is_empty()
    });
    let call = one(&spans, "invoke_agent traced");
    let work = one(&spans, "agent work");
    assert_eq!(work["trace_id"], call["trace_id"]);
    assert_eq!(work["parent_span_id"], call["span_id"]);
    assert_eq!(work["resource"]["service.name"], "traced-agent");
}

#[test]
fn a_tool_call_is_an_execute_tool_span_between_the_two_calls() {
    let mut receiver = Receiver::start();
    let ctx = crate::tools::home("");
    let params = json!({"tool": "add", "arguments": {"a": 1, "b": 2}}).to_string();
    let out = traced(
        &ctx,
        &receiver,
        &["exec", "test/caller", "call", &params, "--json", "--tool", "test/calc"],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out)["result"]["text"], "3");
    let spans = receiver.wait_for("caller, tool and callee", |s| {
        !named(s, "invoke_agent caller").is_empty()
            && !named(s, "execute_tool add").is_empty()
            && !named(s, "invoke_agent calc").is_empty()
    });
    let caller = one(&spans, "invoke_agent caller");
    let tool = one(&spans, "execute_tool add");
    let callee = one(&spans, "invoke_agent calc");
    assert_eq!(tool["parent_span_id"], caller["span_id"]);
    assert_eq!(callee["parent_span_id"], tool["span_id"]);
    assert!([&tool, &callee].iter().all(|s| s["trace_id"] == caller["trace_id"]));
    assert_eq!(tool["attributes"]["gen_ai.operation.name"], "execute_tool");
    assert_eq!(tool["attributes"]["gen_ai.tool.name"], "add");
    assert!(tool["attributes"]["gen_ai.tool.call.id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[test]
fn an_unreachable_collector_costs_no_call_and_is_reported_once() {
    let ctx = home();
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut cmd = command(&ctx, &["batch", "test/traced", "--json"]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    let started = Instant::now();
    let out = run(cmd, "{\"method\": \"context\", \"parameters\": {}}\n".repeat(20).as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("not delivered")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains(&endpoint), "{stderr}");
    // The export is given a bounded time at exit (an environment build comes first here).
    assert!(started.elapsed() < LIMIT, "{:?}", started.elapsed());
    // A protocol agenthub does not speak is one warning; calls go on untraced.
    let mut cmd = command(&ctx, &["exec", "test/traced", "context", "--json"]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint).env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    let out = run(cmd, b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(json_of(&out)["result"]["traceparent"].is_null());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc")).count(),
        1,
        "{stderr}"
    );
}

#[test]
fn tracing_off_gives_agents_no_trace_context() {
    let ctx = home();
    let mut cmd = command(&ctx, &["exec", "test/traced", "context", "--json"]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9").env("OTEL_SDK_DISABLED", "true");
    let out = run(cmd, b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(json_of(&out)["result"]["traceparent"].is_null());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not delivered"));
}
