//! Tools for agents (issue 17, SPEC §9), end to end: the real binary, real agents in their
//! sandboxes, and the official Python MCP client inside them (`tests/fixtures/tools/caller`,
//! which connects as the original's analysis-agent does).
//!
//! Every wait is bounded; every process a test starts is killed by a guard, also when an
//! assertion fails.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use agenthub_testkit::{TestContext, survivors};
use serde_json::{Value as Json, json};

use crate::command;

/// How long one call may take, a first environment build (the caller's `mcp`) included.
const CALL_LIMIT: Duration = Duration::from_secs(240);

/// A test home with the fixture agents installed as `test/caller`, `test/caller2`,
/// `test/calc` and `test/hostile`, and `config` as its config.yaml.
pub(crate) fn home(config: &str) -> TestContext {
    let ctx = TestContext::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tools");
    for (from, to) in [("caller", "caller"), ("caller", "caller2"), ("calc", "calc"), ("hostile", "hostile")]
    {
        let dir = ctx.config().agents_root().join("test").join(to);
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["agent.py", "agent.yaml"] {
            std::fs::copy(fixtures.join(from).join(file), dir.join(file)).unwrap();
        }
    }
    std::fs::write(ctx.home().join("config.yaml"), config).unwrap();
    ctx
}

/// Kills the child when dropped (a failed assertion leaves nothing running).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `agenthub ARGS` to its end (bounded by [`CALL_LIMIT`]), with extra variables.
fn run(ctx: &TestContext, args: &[&str], env: &[(&str, &str)]) -> Output {
    run_with_input(ctx, args, env, b"")
}

/// [`run`] with `input` on stdin.
fn run_with_input(ctx: &TestContext, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Output {
    let mut cmd = command(ctx, args);
    cmd.envs(env.iter().copied());
    crate::run_bounded(cmd, input, CALL_LIMIT)
}

/// `agenthub exec AGENT METHOD PARAMS --json EXTRA…`: the response object.
fn exec(ctx: &TestContext, agent: &str, method: &str, params: &Json, extra: &[&str]) -> Json {
    exec_env(ctx, agent, method, params, extra, &[])
}

fn exec_env(
    ctx: &TestContext,
    agent: &str,
    method: &str,
    params: &Json,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Json {
    let params = params.to_string();
    let mut args = vec!["exec", agent, method, &params, "--json"];
    args.extend_from_slice(extra);
    let output = run(ctx, &args, env);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): stdout {:?}, stderr {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn add(a: i64, b: i64) -> Json {
    json!({"tool": "add", "arguments": {"a": a, "b": b}})
}

#[test]
fn an_agent_calls_another_agents_method_over_sse_as_analysis_agent_does() {
    let ctx = home("");
    let response = exec(&ctx, "test/caller", "call", &add(2, 3), &["--tool", "test/calc"]);
    let result = &response["result"];
    assert_eq!(result["text"], "5", "{response}");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["listed"], json!(["add", "slow", "probe"]));
    let calls = response["tool_calls"].as_array().expect("tool_calls in the response");
    assert_eq!(calls.len(), 1, "{response}");
    assert_eq!(calls[0]["name"], "add");
    assert_eq!(calls[0]["outcome"], "ok");
    assert!(calls[0]["duration"].as_f64().is_some_and(|d| d > 0.0), "{response}");
}

#[test]
fn the_request_carries_the_tool_context_only_when_tools_are_assigned() {
    let ctx = home("");
    let response = exec(&ctx, "test/caller", "context", &json!({}), &["--tool", "test/calc.add"]);
    let context = &response["result"]["tool_context"];
    assert_eq!(context["available_tools"], json!(["add"]), "{response}");
    assert_eq!(
        context["tool_descriptions"]["add"],
        "Add two integers (agent calc: Arithmetic and waiting, as a tool for other agents)"
    );
    assert_eq!(
        context["tool_parameters"]["add"],
        json!({
            "a": {"name": "a", "type": "integer", "required": true, "default": null},
            "b": {"name": "b", "type": "integer", "required": true, "default": null},
        })
    );
    assert_eq!(context["tool_return_types"]["add"], "integer");
    assert_eq!(context["tool_namespaces"]["add"], "test/calc");
    assert!(
        context["tool_usage_examples"]["add"].as_str().is_some_and(|e| e.contains("\"tool_name\": \"add\""))
    );
    let env = &response["result"]["env"];
    assert_eq!(env["AGENTHUB_MCP_HOST"], "127.0.0.1", "{response}");
    assert_eq!(env["AGENTHUB_MCP_PORT"], "8000");
    assert_eq!(env["AGENTHUB_MCP_PROTOCOL"], "sse");
    assert_eq!(env["AGENTHUB_MCP_URL"], "http://127.0.0.1:8000");
    assert!(env.get("AGENTHUB_MCP_TOKEN").is_none(), "no secret is needed inside the namespace: {env}");

    let none = exec(&ctx, "test/caller", "context", &json!({}), &[]);
    assert_eq!(none["result"]["tool_context"], Json::Null, "{none}");
    assert_eq!(none["result"]["env"], json!({}));
    assert!(none.get("tool_calls").is_none());
}

#[test]
fn a_tool_not_assigned_is_refused_over_streamable_http_and_nothing_runs() {
    let ctx = home("");
    let token = format!("never-run-{}", std::process::id());
    let params = json!({"tool": "slow", "arguments": {"seconds": 30, "token": token}, "transport": "http"});
    let response = exec(&ctx, "test/caller", "call", &params, &["--tool", "test/calc.add"]);
    let result = &response["result"];
    let refused = result["exception"].as_str().unwrap_or_default();
    assert!(refused.contains("Unknown tool: slow"), "{response}");
    assert!(survivors(&token).is_empty());
    assert_eq!(
        response["tool_calls"],
        json!([{"name": "slow", "duration": response["tool_calls"][0]["duration"], "outcome": "ToolNotAssigned"}])
    );

    let listed = exec(
        &ctx,
        "test/caller",
        "call",
        &json!({"tool": "add", "arguments": {"a": 40, "b": 2}, "transport": "http"}),
        &["--tool", "test/calc.add"],
    );
    assert_eq!(listed["result"]["listed"], json!(["add"]), "{listed}");
    assert_eq!(listed["result"]["text"], "42");
}

#[test]
fn warm_calls_each_get_their_tools_and_their_own_record() {
    let ctx = home("");
    let input: String = (0..3)
        .map(|i| json!({"id": i, "method": "call", "parameters": add(i, 100)}).to_string() + "\n")
        .collect();
    let output =
        run_with_input(&ctx, &["batch", "test/caller", "--tool", "test/calc"], &[], input.as_bytes());
    let output = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<Json> = output.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{output}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["id"], i, "{line}");
        assert_eq!(line["result"]["text"], (i as i64 + 100).to_string(), "{line}");
        assert_eq!(line["tool_calls"].as_array().map(Vec::len), Some(1), "{line}");
    }
}

#[test]
fn a_tool_call_past_tool_timeout_fails_alone_and_the_call_goes_on() {
    let ctx = home("");
    // Not a substring of another test's token (`caller-timed-out-…`): `survivors` matches substrings.
    let token = format!("tool-timed-out-{}", std::process::id());
    let params = json!({"tool": "slow", "arguments": {"seconds": 60, "token": token}});
    let started = Instant::now();
    let response = exec_env(
        &ctx,
        "test/caller",
        "call",
        &params,
        &["--tool", "test/calc"],
        &[("AGENTHUB_TOOL_TIMEOUT", "2")],
    );
    let result = &response["result"];
    assert_eq!(result["is_error"], true, "{response}");
    assert!(result["text"].as_str().is_some_and(|t| t.starts_with("TimeoutError")), "{response}");
    assert_eq!(response["tool_calls"][0]["outcome"], "TimeoutError");
    // An environment build may come first; the tool's 60 s never do.
    assert!(started.elapsed() < Duration::from_secs(55), "took {:?}", started.elapsed());
    assert!(survivors(&token).is_empty(), "the timed-out tool's process is gone");
}

#[test]
fn nested_tools_run_and_a_cycle_is_refused() {
    // caller2 has calc as its own tool (config.yaml): caller → caller2 → calc.
    let ctx = home("tools:\n  test/caller2:\n    agents: [test/calc]\n");
    let params = json!({"tool": "call", "arguments": add(20, 22)});
    let response = exec(&ctx, "test/caller", "call", &params, &["--tool", "test/caller2"]);
    let inner: Json = serde_json::from_str(response["result"]["text"].as_str().unwrap_or("null")).unwrap();
    assert_eq!(inner["text"], "42", "{response}");
    assert_eq!(response["tool_calls"][0]["name"], "call");
    assert_eq!(response["tool_calls"][0]["outcome"], "ok");

    // caller2 has caller as its tool: caller → caller2 → caller is a cycle.
    let ctx = home("tools:\n  test/caller2:\n    agents: [test/caller]\n");
    let params = json!({"tool": "call", "arguments": {"tool": "call", "arguments": add(1, 1)}});
    let response = exec(&ctx, "test/caller", "call", &params, &["--tool", "test/caller2"]);
    let inner: Json = serde_json::from_str(response["result"]["text"].as_str().unwrap_or("null")).unwrap();
    assert_eq!(inner["is_error"], true, "{response}");
    let refused = inner["text"].as_str().unwrap_or_default();
    assert!(refused.starts_with("ToolCycleError"), "{refused}");
    assert!(refused.contains("test/caller -> test/caller2 -> test/caller"), "{refused}");
}

#[test]
fn twenty_concurrent_calls_each_reach_their_own_tools() {
    let ctx = home("");
    // The environment first, once.
    let first = exec(&ctx, "test/caller", "call", &add(0, 0), &["--tool", "test/calc"]);
    assert_eq!(first["result"]["text"], "0", "{first}");
    let results: Vec<(i64, Json)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=20)
            .map(|i| {
                let ctx = &ctx;
                scope.spawn(move || {
                    (i, exec(ctx, "test/caller", "call", &add(i, 1000 * i), &["--tool", "test/calc"]))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, response) in results {
        assert_eq!(response["result"]["text"], (1001 * i).to_string(), "call {i}: {response}");
    }
}

#[test]
fn killing_agenthub_during_a_tool_call_leaves_nothing_running() {
    let ctx = home("");
    let token = format!("orphan-check-{}", std::process::id());
    // Build the caller's environment first, so the kill lands during the tool call.
    let first = exec(&ctx, "test/caller", "context", &json!({}), &[]);
    assert!(first["result"].is_object(), "{first}");
    let params = json!({"tool": "slow", "arguments": {"seconds": 120, "token": token}}).to_string();
    let mut cmd = command(&ctx, &["exec", "test/caller", "call", &params, "--tool", "test/calc", "--json"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = Killed(cmd.spawn().unwrap());
    let started = Instant::now();
    while survivors(&token).is_empty() {
        assert!(started.elapsed() < CALL_LIMIT, "the tool call never started");
        assert!(child.0.try_wait().unwrap().is_none(), "agenthub ended before the tool call started");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let killed = Instant::now();
    while !survivors(&token).is_empty() {
        assert!(killed.elapsed() < Duration::from_secs(10), "left running: {:?}", survivors(&token));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_tool_runs_with_its_own_permissions_not_the_callers_grants() {
    let ctx = home("");
    let secret_dir = tempfile::Builder::new().prefix("agenthub-tools-secret").tempdir_in(ctx.home()).unwrap();
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, "granted to the caller only").unwrap();
    let secret_text = secret.to_str().unwrap();
    let params = json!({"tool": "probe"});
    let response = exec_env(
        &ctx,
        "test/caller",
        "call",
        &params,
        &["--tool", "test/calc", "--allow-read", secret_text],
        &[("PROBE_PATH", secret_text)],
    );
    let probed: Json = serde_json::from_str(response["result"]["text"].as_str().unwrap_or("null")).unwrap();
    let read = probed["read"][secret_text].as_str().unwrap_or_default();
    assert!(read.starts_with("denied"), "the tool read what only its caller was granted: {response}");
    assert_eq!(probed["has_tool_context"], false, "a tool without tools of its own gets none");
}

#[test]
fn info_shows_the_tools_an_agent_would_get() {
    let ctx = home("");
    let output = run(
        &ctx,
        &["info", "test/caller", "--tool", "test/calc.add", "--tool", "test/calc.slow", "--json"],
        &[],
    );
    let info: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["tool_context"]["available_tools"], json!(["add", "slow"]), "{info}");
    let output = run(&ctx, &["info", "test/caller", "--tool", "test/calc"], &[]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("tools (3):"), "{text}");
    assert!(text.contains("  add(a: integer, b: integer) [test/calc]"), "{text}");
    let output = run(&ctx, &["info", "test/caller", "--tool", "test/calc.nope"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("has no method `nope`"), "{text}");
}

#[test]
fn without_a_network_namespace_the_endpoint_needs_the_calls_secret() {
    let ctx = home("");
    let response =
        exec(&ctx, "test/caller", "context", &json!({}), &["--tool", "test/calc", "--sandbox", "off"]);
    let env = &response["result"]["env"];
    let token = env["AGENTHUB_MCP_TOKEN"].as_str().expect("a secret without a namespace");
    assert_eq!(token.len(), 32);
    let port = env["AGENTHUB_MCP_PORT"].as_str().unwrap();
    assert_eq!(env["AGENTHUB_MCP_URL"], format!("http://127.0.0.1:{port}/{token}"), "{env}");
    let params = json!({"tool": "add", "arguments": {"a": 1, "b": 2}, "transport": "sse-env"});
    let response = exec(&ctx, "test/caller", "call", &params, &["--tool", "test/calc", "--sandbox", "off"]);
    assert_eq!(response["result"]["text"], "3", "{response}");
}

#[test]
fn tools_from_a_users_stdio_mcp_server_sit_beside_agent_tools() {
    let ctx = home("");
    let server =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../agenthub-tools/tests/fixtures/calc_server.py");
    let servers = ctx.home().join("servers.json");
    let file = json!({"mcpServers": {
        "calc": {"command": agenthub_testkit::python_mcp(), "args": [server], "tools": ["add", "fail", "pid"]},
    }});
    std::fs::write(&servers, file.to_string()).unwrap();
    let servers = servers.to_str().unwrap();
    let params = json!({"tool": "add", "arguments": {"a": 2, "b": 40}});
    let response =
        exec(&ctx, "test/caller", "call", &params, &["--tool", "test/calc.add", "--tools-from", servers]);
    let result = &response["result"];
    // The agent's method is prefixed (two sources), the server's tools keep their names.
    assert_eq!(result["listed"], json!(["calc__add", "add", "fail", "pid"]), "{response}");
    assert_eq!(result["text"], "42");
    assert_eq!(response["tool_calls"][0]["outcome"], "ok");

    let failing = exec(&ctx, "test/caller", "call", &json!({"tool": "fail"}), &["--tools-from", servers]);
    assert_eq!(failing["result"]["is_error"], true, "{failing}");
    assert!(
        failing["result"]["text"].as_str().is_some_and(|t| t.contains("it failed on purpose")),
        "{failing}"
    );
    assert_eq!(failing["tool_calls"][0]["outcome"], "ToolError");

    // The server runs while agenthub does, and not after.
    let pid = exec(&ctx, "test/caller", "call", &json!({"tool": "pid"}), &["--tools-from", servers]);
    let pid: i32 = pid["result"]["text"].as_str().and_then(|t| t.parse().ok()).expect("a pid");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the stdio server {pid} outlived agenthub");

    let bad = ctx.home().join("bad.json");
    std::fs::write(&bad, r#"{"mcpServers": {"x": {"command": "python3", "url": "http://127.0.0.1:1/mcp"}}}"#)
        .unwrap();
    let refused = exec(&ctx, "test/caller", "context", &json!({}), &["--tools-from", bad.to_str().unwrap()]);
    assert_eq!(refused["error_type"], "ExecutionError", "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("server `x`")), "{refused}");
}

#[test]
fn a_tool_call_ends_with_its_caller() {
    let ctx = home("");
    // The environment first, so the caller's timeout lands during its tool call.
    let first = exec(&ctx, "test/caller", "context", &json!({}), &[]);
    assert!(first["result"].is_object(), "{first}");
    let token = format!("caller-timed-out-{}", std::process::id());
    let params = json!({"tool": "slow", "arguments": {"seconds": 120, "token": token}});
    let started = Instant::now();
    let response = exec(&ctx, "test/caller", "call", &params, &["--tool", "test/calc", "--timeout", "8"]);
    assert_eq!(response["error_type"], "TimeoutError", "{response}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    // Nothing finished: the tool call is not listed, or listed as cancelled (when the
    // agent's session closed, as the timeout killed it, before the call's end was seen).
    let listed = response["tool_calls"].as_array().cloned().unwrap_or_default();
    assert!(listed.iter().all(|t| t["outcome"] == "Cancelled"), "something finished: {response}");
    let ended = Instant::now();
    while !survivors(&token).is_empty() {
        assert!(
            ended.elapsed() < Duration::from_secs(10),
            "the tool outlived its caller: {:?}",
            survivors(&token)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mcp_serve_gives_each_agent_its_configured_tools() {
    use crate::mcp_http::{finished, python_script, serve_agent};
    const CLIENT: &str = r#"
import asyncio, json, sys
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

async def main():
    async with streamablehttp_client(sys.argv[1] + "/mcp", timeout=30) as (r, w, _):
        async with ClientSession(r, w) as s:
            await s.initialize()
            result = await s.call_tool("call", {"tool": "add", "arguments": {"a": 7, "b": 8}})
            print(json.dumps({"text": result.content[0].text, "is_error": bool(result.isError)}), flush=True)

asyncio.run(asyncio.wait_for(main(), 200))
"#;
    let ctx = home("tools:\n  test/caller:\n    agents: [test/calc.add]\n");
    let (_server, url) = serve_agent(&ctx, "test/caller", &[]);
    let seen = finished(python_script(CLIENT, &[&url]));
    assert_eq!(seen["is_error"], false, "{seen}");
    let inner: Json = serde_json::from_str(seen["text"].as_str().unwrap()).unwrap();
    assert_eq!(inner["listed"], json!(["add"]), "{inner}");
    assert_eq!(inner["text"], "15", "{inner}");
}

/// The peak resident memory of `agenthub ARGS` (sampled while it runs), and its output.
fn peak_memory(ctx: &TestContext, args: &[&str]) -> (u64, Output) {
    let mut cmd = command(ctx, args);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = Killed(cmd.spawn().expect("spawn agenthub"));
    let status = format!("/proc/{}/status", child.0.id());
    let started = Instant::now();
    let mut peak = 0;
    let mut child = child;
    while child.0.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < CALL_LIMIT, "agenthub {args:?} did not finish");
        let kb = std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()));
        peak = peak.max(kb.unwrap_or(0) * 1024);
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = std::mem::replace(&mut child.0, std::process::Command::new("true").spawn().unwrap());
    (peak, output.wait_with_output().unwrap())
}

/// A hostile agent posts requests over the legacy SSE transport and never reads the
/// answers: agenthub must not keep them all (each is the tool listing, ~20 times the request).
#[test]
fn answers_an_agent_never_reads_do_not_pile_up_in_agenthub() {
    let ctx = home("");
    let params = json!({"count": 100_000, "hold": 1}).to_string();
    let (peak, output) =
        peak_memory(&ctx, &["exec", "test/hostile", "unread", &params, "--json", "--tool", "test/calc"]);
    let response = String::from_utf8_lossy(&output.stdout);
    // Before: 244 MB after 30 s (the call's limit), growing ~7 MB/s for as long as the call runs.
    assert!(peak < 150 << 20, "agenthub grew to {} MB: {response}", peak >> 20);
    // The session of a client that does not read ends: its further posts are refused.
    let response: Json = serde_json::from_str(&response).unwrap();
    assert_eq!(response["result"]["refused"], 1, "{response}");
}
/// A hostile agent calls tools it was not given, each with a name of a megabyte: each is
/// refused, and neither the response's record nor agenthub's log keeps the name whole (a
/// name is at most 64 characters; 10,000 records of 4 MB names would be 40 GB).
#[test]
fn a_refused_tool_with_a_huge_name_is_recorded_and_logged_bounded() {
    let ctx = home("");
    let params = json!({"count": 20, "size": 1_000_000}).to_string();
    let output = run(&ctx, &["exec", "test/hostile", "names", &params, "--json", "--tool", "test/calc"], &[]);
    let response: Json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} bytes of stdout, stderr {}",
            output.stdout.len(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(response["result"]["errors"], 20, "{}", output.stdout.len());
    let calls = response["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 20);
    for call in calls {
        assert_eq!(call["outcome"], "ToolNotAssigned");
        let name = call["name"].as_str().unwrap();
        assert!(name.len() <= 100, "a recorded name of {} bytes", name.len());
    }
    assert!(output.stdout.len() < 100_000, "a response of {} bytes", output.stdout.len());
    assert!(output.stderr.len() < 100_000, "{} bytes of logs", output.stderr.len());
}

/// A hostile agent keeps its 8 parallel tool calls busy and queues more, each with 2 MB of
/// arguments: the calls waiting for a turn must not hold agenthub's memory without bound.
#[test]
fn tool_calls_waiting_for_a_turn_are_bounded() {
    let ctx = home("");
    let params = json!({"running": 8, "count": 150, "size": 2_000_000, "seconds": 6}).to_string();
    let (peak, output) =
        peak_memory(&ctx, &["exec", "test/hostile", "pending", &params, "--json", "--tool", "test/calc"]);
    let response = String::from_utf8_lossy(&output.stdout);
    // Before: 317 MB, every queued call holding its arguments (~2 MB more per call).
    assert!(peak < 200 << 20, "agenthub grew to {} MB: {response}", peak >> 20);
    let response: Json = serde_json::from_str(&response).unwrap();
    let refused = response["result"]["outcomes"]["error"].as_u64().unwrap_or(0);
    assert!(refused >= 100, "{}", response["result"]);
    let busy =
        response["tool_calls"].as_array().unwrap().iter().filter(|c| c["outcome"] == "ToolBusyError").count();
    assert_eq!(busy as u64, refused);
}

/// Under a limit of 1024 descriptors, four hostile calls of a `batch` hold as many
/// connections to their tool endpoints as they can: a fifth call's endpoint still accepts
/// at once. Before each endpoint took at most 32 connections out of a budget shared by the
/// process (a quarter of its descriptors), they took 256 each and the fifth call waited for
/// them to end (EMFILE: 8.3 s instead of ~4.1 s), as would any new process, pipe or file.
#[test]
fn hostile_calls_holding_connections_do_not_starve_other_calls_of_descriptors() {
    use std::os::unix::process::CommandExt as _;
    let ctx = home("");
    let hold = json!({"count": 300, "seconds": 8});
    let mut input: String = (0..4)
        .map(|i| json!({"id": i, "method": "connections", "parameters": hold}).to_string() + "\n")
        .collect();
    // The fifth call reaches its tools once the others hold their connections.
    let late = json!({"count": 1, "size": 3, "after": 4});
    input += &(json!({"id": 4, "method": "names", "parameters": late}).to_string() + "\n");
    let mut cmd = command(&ctx, &["batch", "test/hostile", "--tool", "test/calc", "--concurrency", "5"]);
    cmd.env("AGENTHUB_WORKERS_PER_AGENT", "8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Killed(cmd.spawn().unwrap());
    {
        use std::io::Write as _;
        child.0.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let output = std::mem::replace(&mut child.0, std::process::Command::new("true").spawn().unwrap());
    let output = output.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Json> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let fifth = lines.iter().find(|l| l["id"] == 4).unwrap();
    assert_eq!(fifth["result"]["errors"], 1, "{fifth}");
    let took = fifth["execution_time"].as_f64().unwrap();
    assert!(
        took < 7.0 && !stderr.contains("Too many open files"),
        "the fifth call took {took} s: agenthub ran out of descriptors"
    );
}

/// A hostile agent's refused calls carry request ids of a megabyte: what an agent sends is
/// not written whole to agenthub's log (rmcp logs every error answer with its id at warn).
#[test]
fn a_refused_call_with_a_huge_request_id_is_not_logged_whole() {
    let ctx = home("");
    let params = json!({"count": 20, "size": 3, "id_size": 1_000_000}).to_string();
    let output = run(&ctx, &["exec", "test/hostile", "names", &params, "--json", "--tool", "test/calc"], &[]);
    let response: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["result"]["errors"], 20, "{response}");
    assert!(output.stderr.len() < 100_000, "{} bytes of logs", output.stderr.len());
}

/// A hostile agent opens connections beyond the endpoint's bound and sends requests it knows
/// are refused, as fast as it can: agenthub's log says so, but not once per connection or
/// request (a line each filled the log at the agent's pace).
#[test]
fn refused_connections_and_requests_do_not_fill_agenthubs_log() {
    let ctx = home("");
    let flood = json!({"count": 1000, "seconds": 3}).to_string();
    let output =
        run(&ctx, &["exec", "test/hostile", "connections", &flood, "--json", "--tool", "test/calc"], &[]);
    let logged = String::from_utf8_lossy(&output.stderr).lines().count();
    assert!(logged < 30, "{logged} lines of logs: {}", String::from_utf8_lossy(&output.stdout));

    let foreign = json!({"count": 2000}).to_string();
    let output =
        run(&ctx, &["exec", "test/hostile", "foreign", &foreign, "--json", "--tool", "test/calc"], &[]);
    let response: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["result"]["refused"], 2000, "{response}");
    let logged = String::from_utf8_lossy(&output.stderr).lines().count();
    assert!(logged < 30, "{logged} lines of logs");
}

/// A warm worker's call leaves a thread that goes on calling tools: during the worker's next
/// call (of another caller, in a library or `mcp serve`) those calls are made with that call's
/// tools and recorded as its own. By design (docs/design/tools.md, "Warm workers": what a
/// session can call is always the current call's tools); this pins what that means.
#[test]
fn a_thread_left_by_a_warm_call_calls_tools_as_the_next_call() {
    let ctx = home("");
    let input = [
        json!({"id": 0, "method": "linger", "parameters": {"seconds": 6}}),
        json!({"id": 1, "method": "idle", "parameters": {"seconds": 2}}),
    ]
    .iter()
    .map(|l| l.to_string() + "\n")
    .collect::<String>();
    let output = run_with_input(
        &ctx,
        &["batch", "test/hostile", "--tool", "test/calc", "--concurrency", "1"],
        &[],
        input.as_bytes(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Json> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let idle = lines.iter().find(|l| l["id"] == 1).expect("the second call's line");
    assert_eq!(idle["result"]["called"], "nothing", "{idle}");
    let calls = idle["tool_calls"].as_array().map_or(0, Vec::len);
    assert!(calls > 0, "the lingering thread's calls were not the next call's: {idle}");
}

/// A hostile agent sends bodies of almost the largest size on many connections at once, each
/// one byte short, and holds them: agenthub reads each whole before anything else.
#[test]
fn bodies_held_one_byte_short_do_not_hold_agenthubs_memory() {
    let ctx = home("");
    let params = json!({"count": 200, "size": 4_000_000, "seconds": 5}).to_string();
    let (peak, output) =
        peak_memory(&ctx, &["exec", "test/hostile", "bodies", &params, "--json", "--tool", "test/calc"]);
    let response = String::from_utf8_lossy(&output.stdout);
    // Before: 790 MB, held for as long as the body timeout (30 s) and again at once after it.
    assert!(peak < 200 << 20, "agenthub grew to {} MB: {response}", peak >> 20);
}

#[test]
fn an_agent_tools_call_is_recorded_under_the_call_that_made_it() {
    let ctx = home("");
    let response = exec(&ctx, "test/caller", "call", &add(4, 5), &["--tool", "test/calc"]);
    assert_eq!(response["result"]["text"], "9", "{response}");
    let out = run(&ctx, &["runs", "--json"], &[]);
    let runs: Json = serde_json::from_slice(&out.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let caller = runs.iter().find(|r| r["agent"] == "test/caller").expect("the caller's run");
    let tool = runs.iter().find(|r| r["agent"] == "test/calc").expect("the tool's run");
    assert_eq!((caller["caller"].as_str(), tool["caller"].as_str()), (Some("cli"), Some("tool")));
    assert_eq!(tool["method"], "add");
    let caller_id = caller["id"].as_str().unwrap();
    let out = run(&ctx, &["runs", "show", caller_id, "--json"], &[]);
    let shown: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["tool_calls"], 1, "{shown}");
    assert!(shown["durations"]["tools_ms"].as_f64().is_some_and(|t| t > 0.0), "{shown}");
    assert_eq!(shown["tool_call_runs"][0]["id"], tool["id"], "{shown}");
    let out = run(&ctx, &["runs", "show", tool["id"].as_str().unwrap(), "--json"], &[]);
    let shown: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["parent_id"], caller_id, "{shown}");
}
