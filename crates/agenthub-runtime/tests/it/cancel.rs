//! `execute_cancellable`: a call stopped from another thread, with real workers.

use std::time::{Duration, Instant};

use agenthub_core::{ExecutionMode, Grants, Seconds};
use agenthub_runtime::{AgentRuntime, CallCancel, EnvBackendKind, LoadedAgent, ProcessBackendKind};
use agenthub_testkit::{TestContext, reported_pid};
use serde_json::{Value as Json, json};

const AGENT: &str = r#"
import json, os, sys, time

def main():
    request = json.loads(sys.argv[1])
    params = request["parameters"]
    if request["method"] == "pid":
        print(json.dumps({"result": [os.getpid(), os.readlink("/proc/self/ns/pid")]}))
    else:
        if params.get("marker"):
            open(params["marker"], "w").close()
        time.sleep(params["seconds"])
        print(json.dumps({"result": "slept"}))

if __name__ == "__main__":
    main()
"#;

const MANIFEST: &str = r#"{"name": "cancel", "version": "0.1.0", "description": "cancellation fixture",
  "author": "tests", "interface": {"methods": {
    "pid": {"description": "the worker's pid"},
    "sleep": {"description": "sleeps", "parameters": {"seconds": {"type": "number", "required": true},
                                                 "marker": {"type": "string", "required": false}}}}}}"#;

/// Where the fixture leaves its markers (`<home>/markers`), which config.yaml grants it:
/// a sandboxed agent writes only its own home and TMPDIR.
fn markers(ctx: &TestContext) -> std::path::PathBuf {
    ctx.home().join("markers")
}

fn setup(code: &str) -> (TestContext, AgentRuntime, LoadedAgent) {
    let ctx = TestContext::new().with_config(|c| {
        c.runtime.mode = ExecutionMode::Warm;
        c.runtime.max_execution_time = Seconds::new(60.0);
        let markers = c.home.join("markers");
        std::fs::create_dir_all(&markers).unwrap();
        c.grants.insert("test/cancel".to_owned(), Grants { write: vec![markers], ..Grants::default() });
    });
    let dir = ctx.config().agents_root().join("test").join("cancel");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.yaml"), MANIFEST).unwrap();
    std::fs::write(dir.join("agent.py"), code).unwrap();
    let rt = ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Std);
    let agent = rt.load_agent("test/cancel").unwrap();
    (ctx, rt, agent)
}

fn params(v: &Json) -> agenthub_runtime::Params {
    v.as_object().cloned().unwrap_or_default()
}

fn pid_of(rt: &AgentRuntime, agent: &LoadedAgent) -> u32 {
    let r = rt.execute_blocking(agent, "pid", params(&json!({}))).to_json();
    reported_pid(&r["result"])
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
}

#[test]
fn cancelling_a_running_warm_call_kills_its_worker_and_the_next_call_gets_a_fresh_one() {
    let (ctx, rt, agent) = setup(AGENT);
    let first = pid_of(&rt, &agent);
    let cancel = CallCancel::new();
    let marker = markers(&ctx).join("sleeping");
    let started = Instant::now();
    let response = std::thread::scope(|scope| {
        let sleep = params(&json!({"seconds": 30, "marker": marker}));
        let call = scope.spawn(|| rt.execute_cancellable_blocking(&agent, "sleep", sleep, &cancel));
        // Cancelled once the worker is running the call.
        while !marker.exists() {
            assert!(started.elapsed() < Duration::from_secs(60), "the call never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let cancelled_at = Instant::now();
        cancel.cancel();
        (call.join().unwrap().to_json(), cancelled_at.elapsed())
    });
    let (response, took) = response;
    assert!(took < Duration::from_secs(10), "the cancelled call ran on for {took:?}: {response}");
    assert_eq!(response["error_type"], "ExecutionError", "{response}");
    assert!(response["error"].as_str().unwrap().contains("cancelled"), "{response}");
    assert!(cancel.is_cancelled());
    assert!(!alive(first), "the cancelled call's worker {first} is still alive");
    let second = pid_of(&rt, &agent);
    assert_ne!(second, first);
}

#[test]
fn a_call_cancelled_before_it_runs_starts_nothing_and_leaves_the_worker_alone() {
    let (_ctx, rt, agent) = setup(AGENT);
    let worker = pid_of(&rt, &agent);
    let cancel = CallCancel::new();
    cancel.cancel();
    let response = rt.execute_cancellable_blocking(&agent, "sleep", params(&json!({"seconds": 30})), &cancel);
    let response = response.to_json();
    assert!(response["error"].as_str().unwrap().contains("cancelled"), "{response}");
    assert_eq!(pid_of(&rt, &agent), worker, "the idle worker was replaced");
    // An uncancelled handle changes nothing.
    let fine =
        rt.execute_cancellable_blocking(&agent, "sleep", params(&json!({"seconds": 0})), &CallCancel::new());
    assert_eq!(fine.to_json()["result"], "slept");
}

#[test]
fn a_one_shot_agent_cancelled_before_it_runs_starts_no_process() {
    // No main() to replay: served one-shot even in warm mode.
    let script = "import json, sys, time\nrequest = json.loads(sys.argv[1])\ntime.sleep(30)\nprint(json.dumps({\"result\": 1}))\n";
    let (_ctx, rt, agent) = setup(script);
    let cancel = CallCancel::new();
    cancel.cancel();
    let started = Instant::now();
    let response = rt.execute_cancellable_blocking(&agent, "sleep", params(&json!({"seconds": 30})), &cancel);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(response.to_json()["error"].as_str().unwrap().contains("cancelled"), "{}", response.to_json());
    assert_eq!(rt.worker_count(), 0);
}

#[test]
fn cancelling_a_running_one_shot_call_kills_its_process() {
    // No main() to replay: served one-shot. It writes its pid to the marker, then sleeps.
    let script = "import json, os, sys, time\nrequest = json.loads(sys.argv[1])\n\
                  params = request['parameters']\n\
                  open(params['marker'], 'w').write(json.dumps([os.getpid(), os.readlink('/proc/self/ns/pid')]))\n\
                  time.sleep(params['seconds'])\nprint(json.dumps({'result': 1}))\n";
    let (ctx, rt, agent) = setup(script);
    let marker = markers(&ctx).join("sleeping");
    let cancel = CallCancel::new();
    let started = Instant::now();
    let (response, took, pid) = std::thread::scope(|scope| {
        let sleep = params(&json!({"seconds": 60, "marker": marker}));
        let call = scope.spawn(|| rt.execute_cancellable_blocking(&agent, "sleep", sleep, &cancel));
        let pid = loop {
            let said = std::fs::read_to_string(&marker).unwrap_or_default();
            if let Ok(said) = serde_json::from_str::<Json>(&said) {
                break reported_pid(&said);
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the call never started");
            std::thread::sleep(Duration::from_millis(10));
        };
        let cancelled_at = Instant::now();
        cancel.cancel();
        (call.join().unwrap().to_json(), cancelled_at.elapsed(), pid)
    });
    assert!(took < Duration::from_secs(10), "the cancelled call ran on for {took:?}: {response}");
    assert!(response["error"].as_str().unwrap().contains("cancelled"), "{response}");
    assert!(!alive(pid), "the one-shot process {pid} is still alive");
    // The next call runs normally.
    let fine = rt.execute_cancellable_blocking(
        &agent,
        "sleep",
        params(&json!({"seconds": 0, "marker": markers(&ctx).join("again")})),
        &CallCancel::new(),
    );
    assert_eq!(fine.to_json()["result"], 1, "{}", fine.to_json());
}
