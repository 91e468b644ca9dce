//! Warm workers with real Python and real environments: each known hazard of running agent
//! code in a long-lived interpreter, concurrency, staleness and clean-up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agenthub_core::{ExecutionMode, Seconds};
use agenthub_runtime::{AgentRuntime, EnvBackendKind, ProcessBackendKind, WarmDispatch};
use agenthub_testkit::{TestContext, reported_alive, survivors};
use serde_json::{Map, Value as Json, json};

mod hostile;
mod isolated;

/// The hazards, one method each, in one agent that follows the agentplug convention
/// (`main()` reads `sys.argv[1]`, prints one JSON object).
const HAZARDS: &str = r#"
import json, os, sys, threading, time

COUNTER = 0
HOARD = []
# Made once per process that imports the agent: which worker answered (a pid and a PID
# namespace's inode number are not enough: a new namespace may reuse an old one's number).
WORKER = os.urandom(16).hex()

def handle(method, params):
    global COUNTER
    if method == "echo":
        return params
    if method == "noisy":
        print("chatter on stdout inside the method")
        return "quiet result"
    if method == "ask":
        try:
            input()
            return "read something"
        except EOFError:
            return "EOFError"
    if method == "count":
        COUNTER += 1
        return COUNTER
    if method == "wander":
        before = (os.getcwd(), len(sys.path), list(sys.argv))
        os.chdir("/")
        sys.path.append("/nowhere")
        sys.argv.append("extra")
        return before
    if method == "thread":
        threading.Thread(target=lambda: (time.sleep(0.3), print("late thread output")), daemon=True).start()
        return "started"
    if method == "leak":
        HOARD.append(bytearray(40 * 1024 * 1024))
        for b in HOARD:
            for i in range(0, len(b), 4096):
                b[i] = 1
        return len(HOARD)
    if method == "sleep":
        time.sleep(params["seconds"])
        return "slept"
    if method == "abort":
        os.abort()
    if method == "pid":
        # Its own PID namespace's pid in the sandbox: the namespace says which process.
        return [os.getpid(), os.readlink("/proc/self/ns/pid"), WORKER]
    if method == "freeze":
        import signal
        threading.Thread(target=lambda: (time.sleep(0.3), os.kill(os.getpid(), signal.SIGSTOP)), daemon=True).start()
        return "armed"
    if method == "flood":
        while True:
            sys.stdout.write("x" * 65536)
    if method == "orphan":
        # A C-level fork skips Python's fork hooks: the child keeps the worker's channel.
        import ctypes
        if ctypes.CDLL(None).fork() == 0:
            time.sleep(60)
            os._exit(0)
        os.abort()
    raise ValueError("unknown method " + method)

def main():
    request = json.loads(sys.argv[1])
    if request["method"] == "bye":
        print(json.dumps({"error": "leaving"}))
        sys.exit(1)
    try:
        print(json.dumps({"result": handle(request["method"], request["parameters"])}))
    except Exception as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(1)

if __name__ == "__main__":
    main()
"#;

const METHODS: [&str; 15] = [
    "echo", "noisy", "ask", "count", "wander", "thread", "leak", "sleep", "abort", "pid", "bye", "edited",
    "orphan", "freeze", "flood",
];

/// Writes an agent whose `agent.py` is `code` under `test/<name>`.
fn write_agent(ctx: &TestContext, name: &str, code: &str, methods: &[&str]) -> PathBuf {
    let dir = ctx.config().agents_root().join("test").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let params = |m: &str| match m {
        "echo" => json!({
            "big": {"type": "integer"}, "text": {"type": "string"}, "x": {"type": "integer"},
            "n": {"type": "integer"}, "i": {"type": "integer"}, "pad": {"type": "string"},
        }),
        "sleep" => json!({"seconds": {"type": "number", "required": true}}),
        _ => json!({}),
    };
    let methods: Map<String, Json> = methods
        .iter()
        .map(|m| ((*m).to_owned(), json!({"description": format!("method {m}"), "parameters": params(m)})))
        .collect();
    let manifest = json!({
        "name": name, "version": "0.1.0", "description": "warm-worker fixture", "author": "tests",
        "interface": {"methods": methods},
    });
    std::fs::write(dir.join("agent.yaml"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("agent.py"), code).unwrap();
    dir
}

fn warm_context(change: impl FnOnce(&mut agenthub_core::Config)) -> TestContext {
    TestContext::new().with_config(|c| {
        c.runtime.mode = ExecutionMode::Warm;
        c.runtime.max_execution_time = Seconds::new(20.0);
        change(c);
    })
}

fn runtime(ctx: &TestContext) -> AgentRuntime {
    ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Std)
}

fn call(rt: &AgentRuntime, agent: &str, method: &str, params: &Json) -> Json {
    rt.execute_agent_blocking(agent, method, params.as_object().cloned().unwrap_or_default()).to_json()
}

fn pid_alive(pid: u32) -> bool {
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

#[test]
fn each_hazard_behaves_as_in_one_shot_and_the_worker_survives_what_it_should() {
    let ctx = warm_context(|_| {});
    write_agent(&ctx, "hazards", HAZARDS, &METHODS);
    let rt = runtime(&ctx);
    let agent = "test/hazards";
    assert_eq!(rt.get_agent_info(agent).unwrap().warm_dispatch, WarmDispatch::Main);
    let pid = call(&rt, agent, "pid", &json!({}))["result"].clone();

    let echoed =
        call(&rt, agent, "echo", &json!({"big": 12_345_678_901_234_567_890_123_u128, "text": "naïve"}));
    assert_eq!(
        echoed["result"],
        json!({"big": 12_345_678_901_234_567_890_123_u128, "text": "naïve"}),
        "{echoed}"
    );
    // Output printed by the method is noise before the answer, as in one-shot.
    let noisy = call(&rt, agent, "noisy", &json!({}));
    assert_eq!(noisy["result"], "quiet result", "{noisy}");
    assert_eq!(noisy["stdout_noise"], "chatter on stdout inside the method", "{noisy}");
    assert_eq!(call(&rt, agent, "ask", &json!({}))["result"], "EOFError");
    // sys.exit(1) from main() is an agent error, and the worker lives on.
    let bye = call(&rt, agent, "bye", &json!({}));
    assert_eq!(bye["error_type"], "AgentError", "{bye}");
    assert_eq!(bye["return_code"], 1, "{bye}");
    // Module state is kept between calls: that is the point of a warm worker.
    let first = call(&rt, agent, "count", &json!({}))["result"].as_u64().unwrap();
    assert_eq!(call(&rt, agent, "count", &json!({}))["result"].as_u64().unwrap(), first + 1);
    // cwd, sys.path and sys.argv are restored after each call.
    let before = call(&rt, agent, "wander", &json!({}))["result"].clone();
    let after = call(&rt, agent, "wander", &json!({}))["result"].clone();
    assert_eq!(before, after, "the second call saw what the first changed");
    assert_eq!(
        after[0],
        ctx.config().agents_root().join("test/hazards").canonicalize().unwrap().to_str().unwrap()
    );
    // A thread that outlives its call neither breaks the channel nor the next call.
    assert_eq!(call(&rt, agent, "thread", &json!({}))["result"], "started");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(call(&rt, agent, "echo", &json!({"n": 1}))["result"], json!({"n": 1}));
    // All of that ran in one worker.
    assert_eq!(call(&rt, agent, "pid", &json!({}))["result"], pid);
    assert!(reported_alive(&pid));

    // A crash of the interpreter is an ExecutionError with the signal; the next call gets
    // a fresh worker, and the call is not retried.
    let crashed = call(&rt, agent, "abort", &json!({}));
    assert_eq!(crashed["error_type"], "ExecutionError", "{crashed}");
    assert_eq!(crashed["signal"], 6, "{crashed}");
    let next = call(&rt, agent, "pid", &json!({}))["result"].clone();
    assert_ne!(next, pid);
    // Gone (an aborting interpreter may still be writing its core dump when the next call
    // is answered: the kernel ends it when that is done).
    wait_until("the crashed worker to be gone", Duration::from_secs(10), || !reported_alive(&pid));

    // A timeout kills the worker (TimeoutError) and the next call starts a fresh one.
    let rt_short = AgentRuntime::with_backends(
        {
            let mut c = ctx.config().clone();
            c.runtime.max_execution_time = Seconds::new(1.0);
            c
        },
        Some(EnvBackendKind::Uv),
        ProcessBackendKind::Std,
    )
    .unwrap();
    let slow_pid = call(&rt_short, agent, "pid", &json!({}))["result"].clone();
    let timed_out = call(&rt_short, agent, "sleep", &json!({"seconds": 30}));
    assert_eq!(timed_out["error_type"], "TimeoutError", "{timed_out}");
    assert!(!reported_alive(&slow_pid), "the timed-out worker is still running");
    assert_ne!(call(&rt_short, agent, "pid", &json!({}))["result"], slow_pid);
}

#[test]
fn a_leaking_worker_is_recycled_by_the_memory_threshold() {
    let ctx = warm_context(|c| c.runtime.worker_recycle_memory = 100);
    write_agent(&ctx, "leaky", HAZARDS, &METHODS);
    let rt = runtime(&ctx);
    let pid = call(&rt, "test/leaky", "pid", &json!({}))["result"].clone();
    // 40 MiB, then 80 MiB: still under 100 MiB of resident memory with the interpreter?
    // Keep leaking until the threshold replaces the worker; its hoard starts again at 1.
    let mut sizes = Vec::new();
    for _ in 0..4 {
        let r = call(&rt, "test/leaky", "leak", &json!({}));
        sizes.push(r["result"].as_u64().unwrap());
        assert!(r["memory_usage_bytes"].as_u64().unwrap() >= 40 << 20, "{r}");
    }
    assert!(sizes.windows(2).any(|w| w[1] < w[0]), "never recycled: {sizes:?}");
    // Retired workers are shut down in the background (stdin closed, a grace period).
    wait_until("the recycled worker to exit", Duration::from_secs(10), || !reported_alive(&pid));
}

/// A runtime whose workers serve `max_calls` calls each, and the hazards agent `test/<name>`
/// with one worker started, whose next imports wait while the file `hold` is in the agent's
/// directory (30 s at most; it is there): a test holds a successor's start open so.
struct Held {
    rt: AgentRuntime,
    agent: String,
    /// The agent's directory (canonical).
    dir: PathBuf,
    hold: PathBuf,
    /// What the first worker's `pid` method said.
    first: Json,
    _ctx: TestContext,
}

fn held_agent(max_calls: u64, name: &str) -> Held {
    let ctx = warm_context(|c| c.runtime.max_calls_per_worker = max_calls);
    let hold_while = "import os, time\nfor _ in range(3000):\n    if not os.path.exists('hold'):\n        break\n    time.sleep(0.01)\n";
    let dir = write_agent(&ctx, name, &format!("{hold_while}{HAZARDS}"), &METHODS).canonicalize().unwrap();
    let rt = runtime(&ctx);
    let agent = format!("test/{name}");
    let first = call(&rt, &agent, "pid", &json!({}))["result"].clone();
    let hold = dir.join("hold");
    std::fs::write(&hold, b"").unwrap();
    Held { rt, agent, dir, hold, first, _ctx: ctx }
}

#[test]
fn a_worker_at_its_call_limit_serves_on_until_its_successor_is_ready() {
    // 3 calls per worker (no jitter under 10); the first made.
    let Held { rt, agent, dir, hold, first, _ctx } = held_agent(3, "recycled");
    let agent = agent.as_str();
    for _ in 0..2 {
        assert_eq!(call(&rt, agent, "pid", &json!({}))["result"], first);
    }
    // The third call wore it out: its successor is importing (held), and the worn worker
    // serves on meanwhile, so calls neither wait for the import nor fail.
    wait_until("the successor to start beside the worn worker", Duration::from_secs(10), || {
        workers_of(&dir).len() == 2
    });
    for _ in 0..3 {
        assert_eq!(call(&rt, agent, "pid", &json!({}))["result"], first);
    }
    assert_eq!(workers_of(&dir).len(), 2, "one successor, not one per call past the count");
    // Once the successor is ready, the worn worker (idle) is shut down and the next call
    // goes to the successor.
    std::fs::remove_file(&hold).unwrap();
    wait_until("the worn worker to exit", Duration::from_secs(10), || !reported_alive(&first));
    let second = call(&rt, agent, "pid", &json!({}))["result"].clone();
    assert_ne!(second, first);
    assert_eq!(workers_of(&dir).len(), 1);
    // The successor is replaced in turn, and nothing is left once the runtime is dropped.
    for _ in 0..4 {
        let _ = call(&rt, agent, "pid", &json!({}));
    }
    drop(rt);
    assert_eq!(workers_of(&dir), Vec::<u32>::new());
}

#[test]
fn a_restart_stops_a_successor_that_imported_the_old_code() {
    let Held { rt, agent, dir, hold, first, _ctx } = held_agent(2, "restarted");
    let agent = agent.as_str();
    let _ = call(&rt, agent, "pid", &json!({})); // worn: a successor starts, held
    wait_until("the successor to start", Duration::from_secs(10), || workers_of(&dir).len() == 2);
    rt.restart_workers(Some(agent)).unwrap();
    // Both go: the idle worn worker, and the successor whose start was under way.
    wait_until("both workers to exit", Duration::from_secs(10), || workers_of(&dir).is_empty());
    assert!(!reported_alive(&first));
    std::fs::remove_file(&hold).unwrap();
    assert_ne!(call(&rt, agent, "pid", &json!({}))["result"], first);
}

#[test]
fn a_slow_import_is_paid_once() {
    let ctx = warm_context(|_| {});
    let code = format!("import time\ntime.sleep(0.3)\n{HAZARDS}");
    write_agent(&ctx, "slowimport", &code, &METHODS);
    let rt = runtime(&ctx);
    // The first call builds the environment and starts the worker.
    let _ = call(&rt, "test/slowimport", "echo", &json!({}));
    let started = Instant::now();
    let r = call(&rt, "test/slowimport", "echo", &json!({"x": 1}));
    assert_eq!(r["result"], json!({"x": 1}));
    assert!(started.elapsed() < Duration::from_millis(300), "the import ran again: {:?}", started.elapsed());
}

#[test]
fn an_edit_on_disk_is_seen_by_the_next_call() {
    let ctx = warm_context(|_| {});
    let dir = write_agent(&ctx, "edited", HAZARDS, &METHODS);
    let rt = runtime(&ctx);
    let _ = call(&rt, "test/edited", "pid", &json!({}));
    // Past the racy second, calls skip re-reading files whose stamps have not changed: the
    // edit below must still be seen.
    std::thread::sleep(Duration::from_millis(1100));
    let _ = call(&rt, "test/edited", "pid", &json!({}));
    let old_pid = call(&rt, "test/edited", "pid", &json!({}))["result"].clone();
    let edited = HAZARDS.replace(
        "    if method == \"echo\":",
        "    if method == \"edited\":\n        return \"new code\"\n    if method == \"echo\":",
    );
    std::fs::write(dir.join("agent.py"), edited).unwrap();
    let r = call(&rt, "test/edited", "edited", &json!({}));
    assert_eq!(r["result"], "new code", "{r}");
    assert!(!reported_alive(&old_pid), "the worker of the old code is still running");
}

#[test]
fn agents_whose_modules_share_a_name_stay_apart() {
    let ctx = warm_context(|_| {});
    let code = "import json, sys\nimport helper\ndef main():\n    print(json.dumps({'result': helper.NAME}))\nif __name__ == '__main__':\n    main()\n";
    for name in ["one", "two"] {
        let dir = write_agent(&ctx, name, code, &["who"]);
        std::fs::write(dir.join("helper.py"), format!("NAME = '{name}'\n")).unwrap();
    }
    let rt = runtime(&ctx);
    for _ in 0..2 {
        assert_eq!(call(&rt, "test/one", "who", &json!({}))["result"], "one");
        assert_eq!(call(&rt, "test/two", "who", &json!({}))["result"], "two");
    }
}

#[test]
fn an_agent_without_main_falls_back_to_one_shot_with_the_same_answers() {
    let ctx = warm_context(|_| {});
    // The testkit's agent handles the request at module level: no main() to replay.
    let dir = ctx.install(
        &agenthub_testkit::TestAgent::new("plain").method(
            agenthub_testkit::TestMethod::new("echo")
                .param("text", agenthub_core::ParamType::String, true)
                .behaves(agenthub_testkit::Behaviour::EchoParams),
        ),
    );
    let rt = runtime(&ctx);
    for _ in 0..2 {
        let r = call(&rt, "test/plain", "echo", &json!({"text": "hi"}));
        assert_eq!(r["result"], json!({"text": "hi"}), "{r}");
    }
    assert_eq!(rt.worker_count(), 0);
    assert!(survivors(dir.to_str().unwrap()).is_empty());
    assert_eq!(rt.get_agent_info("test/plain").unwrap().warm_dispatch, WarmDispatch::Oneshot);
    assert_eq!(rt.prestart_workers_blocking("test/plain").unwrap(), 0);
}

#[test]
fn two_hundred_concurrent_calls_over_four_workers_each_get_their_own_answer() {
    let ctx = warm_context(|c| {
        c.runtime.workers_per_agent = 4;
        c.runtime.max_concurrency = 8;
    });
    write_agent(&ctx, "busy", HAZARDS, &METHODS);
    let rt = std::sync::Arc::new(ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Tokio));
    // Four workers started ahead of the calls.
    assert_eq!(rt.prestart_workers_blocking("test/busy").unwrap(), 4);
    assert_eq!(rt.idle_worker_pids().len(), 4);
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let answers = tokio.block_on(async {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let rt = std::sync::Arc::clone(&rt);
                tokio::spawn(async move {
                    let params = json!({"i": i, "pad": "x".repeat(i * 37)});
                    let r = rt.execute_agent("test/busy", "echo", params.as_object().cloned().unwrap()).await;
                    (params, r.to_json())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for (params, response) in answers {
        assert_eq!(response["result"], params, "a response went to the wrong request");
    }
    assert!(rt.worker_count() <= 4, "{} workers", rt.worker_count());
    let pids = rt.idle_worker_pids();
    assert!(!pids.is_empty());
    drop(rt);
    for pid in pids {
        assert!(!pid_alive(pid), "worker {pid} survived its runtime");
    }
}

#[test]
fn a_worker_that_fails_to_import_says_why() {
    let ctx = warm_context(|_| {});
    let code = format!("raise RuntimeError('no API key configured')\n{HAZARDS}");
    write_agent(&ctx, "broken", &code, &METHODS);
    let rt = runtime(&ctx);
    let r = call(&rt, "test/broken", "echo", &json!({}));
    assert_eq!(r["error_type"], "ExecutionError", "{r}");
    assert!(r["error"].as_str().unwrap().contains("no API key configured"), "{r}");
    assert!(r["stderr"].as_str().unwrap_or_default().contains("Traceback"), "{r}");
}

#[test]
fn idle_workers_exit_after_the_idle_timeout() {
    let ctx = warm_context(|c| c.runtime.worker_idle_timeout = Seconds::new(0.5));
    write_agent(&ctx, "idle", HAZARDS, &METHODS);
    let rt = runtime(&ctx);
    let pid = call(&rt, "test/idle", "pid", &json!({}))["result"].clone();
    wait_until("the idle worker to exit", Duration::from_secs(10), || !reported_alive(&pid));
    assert_eq!(rt.worker_count(), 0);
}

/// Whether a path is one of the agent's workers' command lines (they name the agent dir).
fn workers_of(dir: &Path) -> Vec<u32> {
    survivors(&format!("{}\0", dir.display()))
}

#[test]
fn a_dropped_runtime_leaves_no_worker() {
    let ctx = warm_context(|_| {});
    let dir = write_agent(&ctx, "dropped", HAZARDS, &METHODS);
    let rt = runtime(&ctx);
    let _ = call(&rt, "test/dropped", "thread", &json!({}));
    assert_eq!(workers_of(&dir.canonicalize().unwrap()).len(), 1);
    drop(rt);
    assert_eq!(workers_of(&dir.canonicalize().unwrap()), Vec::<u32>::new());
}

#[test]
fn a_changed_requirement_rebuilds_the_environment_and_replaces_the_worker() {
    let ctx = warm_context(|_| {});
    let code = "import json, sys\ndef main():\n    try:\n        import six\n        v = six.__version__\n    except ImportError:\n        v = None\n    print(json.dumps({'result': v}))\nif __name__ == '__main__':\n    main()\n";
    let dir = write_agent(&ctx, "deps", code, &["six"]);
    let rt = runtime(&ctx);
    assert_eq!(call(&rt, "test/deps", "six", &json!({}))["result"], Json::Null);
    // Past the racy second the environment check is cached; a new requirement must still
    // reach the next call, through a rebuilt environment and a fresh worker.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(call(&rt, "test/deps", "six", &json!({}))["result"], Json::Null);
    let old = rt.idle_worker_pids();
    std::fs::write(dir.join("requirements.txt"), "six==1.16.0\n").unwrap();
    let r = call(&rt, "test/deps", "six", &json!({}));
    assert_eq!(r["result"], "1.16.0", "{r}");
    for pid in old {
        assert!(!pid_alive(pid), "the worker of the old environment is still running");
    }
}

#[test]
fn a_worker_that_dies_while_its_child_holds_the_channel_is_reported_at_once() {
    let ctx = warm_context(|_| {});
    let dir = write_agent(&ctx, "orphans", HAZARDS, &METHODS);
    let rt = runtime(&ctx);
    let _ = call(&rt, "test/orphans", "pid", &json!({}));
    let started = Instant::now();
    let r = call(&rt, "test/orphans", "orphan", &json!({}));
    assert_eq!(r["error_type"], "ExecutionError", "{r}");
    assert_eq!(r["signal"], 6, "{r}");
    assert!(started.elapsed() < Duration::from_secs(5), "waited for the orphan: {:?}", started.elapsed());
    wait_until("the orphan to be killed", Duration::from_secs(5), || {
        workers_of(&dir.canonicalize().unwrap()).is_empty()
    });
}

#[test]
fn workers_tied_to_the_runtime_outlive_the_call_that_started_them() {
    // PR_SET_PDEATHSIG fires when the spawning *thread* ends: with the tokio backend each
    // warm call runs on a thread of its own, so workers must be spawned elsewhere.
    let ctx = warm_context(|c| c.runtime.kill_agents_with_runtime = true);
    write_agent(&ctx, "tied", HAZARDS, &METHODS);
    let rt = ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Tokio);
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pid = |rt: &AgentRuntime| {
        let r = tokio.block_on(rt.execute_agent("test/tied", "pid", Map::new())).to_json();
        assert!(r["result"].is_array(), "{r}");
        r["result"].clone()
    };
    let first = pid(&rt);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(pid(&rt), first, "the worker died with the thread that started it");
    drop(rt);
    assert!(!reported_alive(&first));
}

#[test]
fn a_worker_that_stops_reading_cannot_hold_a_large_request_past_its_timeout() {
    let ctx = warm_context(|c| c.runtime.max_execution_time = Seconds::new(2.0));
    write_agent(&ctx, "frozen", HAZARDS, &METHODS);
    let rt = runtime(&ctx);
    assert_eq!(call(&rt, "test/frozen", "freeze", &json!({}))["result"], "armed");
    std::thread::sleep(Duration::from_millis(600));
    // More than a pipe holds: the write itself must give up at the deadline.
    let started = Instant::now();
    let r = call(&rt, "test/frozen", "echo", &json!({"pad": "x".repeat(200_000)}));
    assert_eq!(r["error_type"], "TimeoutError", "{r}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    // And the next call gets a fresh worker.
    assert_eq!(call(&rt, "test/frozen", "echo", &json!({"n": 2}))["result"], json!({"n": 2}));
}

#[test]
fn output_past_the_cap_stops_a_warm_call_as_it_stops_a_one_shot_call() {
    let ctx = warm_context(|c| c.runtime.max_stdout_bytes = 1024 * 1024);
    write_agent(&ctx, "flood", HAZARDS, &METHODS);
    let rt = runtime(&ctx);
    let pid = call(&rt, "test/flood", "pid", &json!({}))["result"].clone();
    let started = Instant::now();
    let r = call(&rt, "test/flood", "flood", &json!({}));
    assert_eq!(r["error_type"], "ResourceLimitError", "{r}");
    assert!(r["error"].as_str().unwrap().contains("stdout"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(!reported_alive(&pid));
}

#[test]
fn instance_dispatch_calls_one_instance_of_the_agents_class() {
    let ctx = warm_context(|c| c.runtime.worker_dispatch = agenthub_core::WorkerDispatch::Instance);
    let code = r#"
import os

class Agent:
    def __init__(self):
        self.calls = 0

    def echo(self, **params):
        self.calls += 1
        return {"params": params, "calls": self.calls, "pid": [os.getpid(), os.readlink("/proc/self/ns/pid")]}

    def fail(self):
        raise ValueError("bad input")
"#;
    write_agent(&ctx, "instance", code, &["echo", "fail"]);
    let rt = runtime(&ctx);
    assert_eq!(rt.get_agent_info("test/instance").unwrap().warm_dispatch, WarmDispatch::Instance);
    let first = call(&rt, "test/instance", "echo", &json!({"text": "a"}));
    assert_eq!(first["result"]["params"], json!({"text": "a"}), "{first}");
    let second = call(&rt, "test/instance", "echo", &json!({"n": 2}));
    assert_eq!(second["result"]["params"], json!({"n": 2}), "{second}");
    // One instance, kept: its state carries over, in one process.
    assert_eq!(second["result"]["calls"], 2, "{second}");
    assert_eq!(second["result"]["pid"], first["result"]["pid"]);
    let failed = call(&rt, "test/instance", "fail", &json!({}));
    assert_eq!(failed["error_type"], "AgentError", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("bad input"), "{failed}");
}

#[test]
fn a_call_waiting_for_a_busy_worker_times_out_at_its_own_deadline() {
    let ctx = warm_context(|c| {
        c.runtime.max_execution_time = agenthub_core::Seconds::new(2.0);
        c.runtime.workers_per_agent = 1;
        c.runtime.max_concurrency = 4;
    });
    write_agent(&ctx, "queued", HAZARDS, &METHODS);
    let rt = runtime(&ctx);
    let _ = call(&rt, "test/queued", "pid", &json!({}));
    std::thread::scope(|scope| {
        // The only worker is busy for 1.5 s...
        let first = scope.spawn(|| call(&rt, "test/queued", "sleep", &json!({"seconds": 1.5})));
        std::thread::sleep(Duration::from_millis(500));
        // ...so this call waits about 1 s for it, and its 1.5 s of sleep would end 0.5 s
        // past its deadline (a 1.5 s call within a 2 s timeout: the wait counts).
        let started = Instant::now();
        let r = call(&rt, "test/queued", "sleep", &json!({"seconds": 1.5}));
        let took = started.elapsed();
        assert_eq!(r["error_type"], "TimeoutError", "{r}");
        assert_eq!(r["timeout"], 2.0, "{r}");
        let reported = r["execution_time"].as_f64().unwrap();
        assert!((1.9..2.4).contains(&reported), "execution_time {reported}: {r}");
        assert!(took < Duration::from_millis(2400), "{took:?}");
        assert_eq!(first.join().unwrap()["result"], "slept");
    });
}

#[test]
fn calls_wait_for_workers_started_in_the_background_at_most_their_own_timeout() {
    let ctx = warm_context(|c| c.runtime.max_execution_time = agenthub_core::Seconds::new(2.0));
    let code = format!("import time\ntime.sleep(600)\n{HAZARDS}");
    let dir = write_agent(&ctx, "hang", &code, &METHODS).canonicalize().unwrap();
    let rt = runtime(&ctx);
    pollster::block_on(rt.ensure_environment("test/hang")).unwrap();
    let started = Instant::now();
    rt.prestart_workers_in_background("test/hang");
    assert!(started.elapsed() < Duration::from_secs(1), "the prestart blocked: {:?}", started.elapsed());
    wait_until("the worker to start", Duration::from_secs(10), || workers_of(&dir).len() == 1);
    // One call waits for the worker being started (holding the agent's only slot), the
    // other for that slot: each ends at its own deadline.
    let timed = || {
        let started = Instant::now();
        let r = call(&rt, "test/hang", "echo", &json!({}));
        (r, started.elapsed())
    };
    let both = std::thread::scope(|scope| {
        let first = scope.spawn(timed);
        std::thread::sleep(Duration::from_millis(500));
        let second = timed();
        [first.join().unwrap(), second]
    });
    for (r, took) in both {
        assert_eq!(r["error_type"], "TimeoutError", "{r}");
        let reported = r["execution_time"].as_f64().unwrap();
        assert!((1.9..2.6).contains(&reported), "execution_time {reported}: {r}");
        assert!(took < Duration::from_millis(2600), "{took:?}");
    }
    // The calls waited for the worker being started; neither started another.
    assert_eq!(workers_of(&dir).len(), 1);
    // Dropping the runtime stops the start at once.
    drop(rt);
    wait_until("the starting worker to be killed", Duration::from_secs(3), || workers_of(&dir).is_empty());
}

#[test]
fn a_cancelled_call_stops_waiting_for_a_worker_and_kills_the_one_it_was_starting() {
    let ctx = warm_context(|c| c.runtime.max_execution_time = agenthub_core::Seconds::new(30.0));
    let code = format!("import time\ntime.sleep(600)\n{HAZARDS}");
    let dir = write_agent(&ctx, "hangcancel", &code, &METHODS).canonicalize().unwrap();
    let rt = runtime(&ctx);
    let agent = rt.load_agent("test/hangcancel").unwrap();
    let (starting, waiting) = (agenthub_runtime::CallCancel::new(), agenthub_runtime::CallCancel::new());
    let run = |cancel: &agenthub_runtime::CallCancel| {
        let r = rt.execute_cancellable_blocking(&agent, "echo", Map::new(), cancel).to_json();
        (r, Instant::now())
    };
    std::thread::scope(|scope| {
        // The first call starts the agent's only worker (its import hangs)...
        let first = scope.spawn(|| run(&starting));
        wait_until("the worker to start", Duration::from_secs(30), || workers_of(&dir).len() == 1);
        // ...and the second waits for the slot.
        let second = scope.spawn(|| run(&waiting));
        std::thread::sleep(Duration::from_millis(300));
        for (cancel, call) in [(&waiting, second), (&starting, first)] {
            let cancelled = Instant::now();
            cancel.cancel();
            let (r, ended) = call.join().unwrap();
            assert_eq!(r["error_type"], "ExecutionError", "{r}");
            assert!(r["error"].as_str().unwrap().contains("cancelled"), "{r}");
            let took = ended.saturating_duration_since(cancelled);
            assert!(took < Duration::from_secs(2), "the call ended {took:?} after its cancellation");
        }
    });
    wait_until("the starting worker to be killed", Duration::from_secs(3), || workers_of(&dir).is_empty());
}
