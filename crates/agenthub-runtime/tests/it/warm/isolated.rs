//! `runtime.mode: isolated`: each call runs in a fork of a warm worker (the zygote), so
//! nothing one call does is seen by the next; an agent whose import leaves threads running
//! is served warm instead.

use std::time::Duration;

use agenthub_core::{ExecutionMode, Seconds};
use agenthub_runtime::Isolation;
use agenthub_testkit::{TestContext, reported_alive, survivors};
use serde_json::json;

use super::{call, runtime, write_agent};

const STATEFUL: &str = r#"
import json, os, random, subprocess, sys, tempfile, threading, time

COUNTER = 0
NS = os.readlink("/proc/self/ns/pid")

def handle(method, params):
    global COUNTER
    if method == "mark":
        COUNTER += 1
        seen = os.environ.get("AGENTHUB_ISOLATED_X")
        os.environ["AGENTHUB_ISOLATED_X"] = "set by a call"
        return [COUNTER, seen]
    if method == "spawn":
        # A daemon: double fork and setsid, so it is no longer below the call's process.
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            pid = os.fork()
            if pid == 0:
                os.execvp("sleep", ["sleep", "301"])
            os.write(w, b"%d" % pid)
            os._exit(0)
        os.close(w)
        daemon = int(os.read(r, 16))
        os.wait()
        child = subprocess.Popen(["sleep", "300"])
        return [[child.pid, NS], [daemon, NS]]
    if method == "tmp":
        seen = sorted(os.listdir(tempfile.gettempdir()))
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(b"left by a call")
        return seen
    if method == "rand":
        # A thread left running by the previous call would show up here.
        alive = [t.name for t in threading.enumerate() if t.name == "left-behind"]
        threading.Thread(target=time.sleep, args=(60,), name="left-behind", daemon=True).start()
        return [random.random(), alive]
    if method == "sleep":
        time.sleep(params["seconds"])
        return "slept"
    if method == "fail":
        raise ValueError("no good")
    if method == "crash":
        os.kill(os.getpid(), 9)
    raise ValueError(method)

def main():
    request = json.loads(sys.argv[1])
    try:
        print(json.dumps({"result": handle(request["method"], request["parameters"])}))
    except Exception as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(1)

if __name__ == "__main__":
    main()
"#;

const METHODS: [&str; 7] = ["mark", "spawn", "sleep", "fail", "crash", "tmp", "rand"];

fn context(mode: ExecutionMode, change: impl FnOnce(&mut agenthub_core::Config)) -> TestContext {
    TestContext::new().with_config(|c| {
        c.runtime.mode = mode;
        c.runtime.max_execution_time = Seconds::new(20.0);
        c.runtime.workers_per_agent = 1;
        change(c);
    })
}

#[test]
fn a_calls_module_state_and_environment_are_not_seen_by_the_next_call_unlike_warm() {
    for mode in [ExecutionMode::Isolated, ExecutionMode::Warm] {
        let ctx = context(mode, |_| {});
        write_agent(&ctx, "stateful", STATEFUL, &METHODS);
        let rt = runtime(&ctx);
        let answers: Vec<_> =
            (0..3).map(|_| call(&rt, "test/stateful", "mark", &json!({}))["result"].clone()).collect();
        let files: Vec<_> =
            (0..2).map(|_| call(&rt, "test/stateful", "tmp", &json!({}))["result"].clone()).collect();
        if mode == ExecutionMode::Isolated {
            assert_eq!(answers, vec![json!([1, null]); 3], "{mode:?}");
            // Each call has a temporary directory of its own, removed after it.
            assert_eq!(files, vec![json!([]); 2], "{mode:?}");
            let dir = rt.load_agent("test/stateful").unwrap().location.dir;
            assert_eq!(rt.workers().isolation(&dir), Some(Isolation::Forked));
        } else {
            // Warm: module state carries over (os.environ is restored between calls).
            assert_eq!(answers, vec![json!([1, null]), json!([2, null]), json!([3, null])], "{mode:?}");
            assert_eq!(files[1].as_array().map(Vec::len), Some(files[0].as_array().unwrap().len() + 1));
        }
    }
}

#[test]
fn each_call_gets_fresh_randomness_and_no_thread_of_an_earlier_call() {
    let ctx = context(ExecutionMode::Isolated, |_| {});
    write_agent(&ctx, "random", STATEFUL, &METHODS);
    let rt = runtime(&ctx);
    let answers: Vec<_> =
        (0..3).map(|_| call(&rt, "test/random", "rand", &json!({}))["result"].clone()).collect();
    for answer in &answers {
        assert_eq!(answer[1], json!([]), "{answers:?}");
    }
    // `random` reseeds itself in a forked child: the copies of one state do not repeat.
    assert_ne!(answers[0][0], answers[1][0], "{answers:?}");
    assert_ne!(answers[1][0], answers[2][0], "{answers:?}");
}

#[test]
fn processes_a_call_starts_do_not_survive_it() {
    let ctx = context(ExecutionMode::Isolated, |_| {});
    write_agent(&ctx, "spawner", STATEFUL, &METHODS);
    let rt = runtime(&ctx);
    for round in 0..5 {
        let spawned = call(&rt, "test/spawner", "spawn", &json!({}));
        let [child, daemon] = [&spawned["result"][0], &spawned["result"][1]];
        assert!(child.is_array() && daemon.is_array(), "{spawned}");
        assert!(!reported_alive(child), "round {round}: the call's child {child} outlived the call");
        assert!(!reported_alive(daemon), "round {round}: the call's daemon {daemon} outlived the call");
    }
    assert_eq!(call(&rt, "test/spawner", "mark", &json!({}))["result"], json!([1, null]));
}

#[test]
fn an_agent_whose_import_starts_a_thread_is_served_warm() {
    let ctx = context(ExecutionMode::Isolated, |_| {});
    let threaded = format!(
        "import threading, time\nthreading.Thread(target=lambda: time.sleep(600), daemon=True).start()\n{STATEFUL}"
    );
    write_agent(&ctx, "threaded", &threaded, &METHODS);
    let rt = runtime(&ctx);
    let answers: Vec<_> =
        (0..2).map(|_| call(&rt, "test/threaded", "mark", &json!({}))["result"].clone()).collect();
    // Served warm: the module's counter carries over.
    assert_eq!(answers, vec![json!([1, null]), json!([2, null])]);
    let dir = rt.load_agent("test/threaded").unwrap().location.dir;
    match rt.workers().isolation(&dir) {
        Some(Isolation::Warm { reason }) => assert!(reason.contains("thread"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_isolated_call_that_times_out_is_a_timeout_and_the_next_call_works() {
    let ctx = context(ExecutionMode::Isolated, |c| c.runtime.max_execution_time = Seconds::new(1.0));
    write_agent(&ctx, "slow", STATEFUL, &METHODS);
    let rt = runtime(&ctx);
    assert_eq!(call(&rt, "test/slow", "mark", &json!({}))["result"], json!([1, null]));
    let dir = rt.load_agent("test/slow").unwrap().location.dir.display().to_string();
    // The zygote, found by its command line (once the call's child, and a fork trying
    // what it imported, are gone).
    super::wait_until("only the zygote to be left", Duration::from_secs(10), || survivors(&dir).len() == 1);
    let started = std::time::Instant::now();
    let r = call(&rt, "test/slow", "sleep", &json!({"seconds": 5}));
    assert_eq!(r["error_type"], "TimeoutError", "{r}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The timeout kills the zygote's whole containment: the call's child and the zygote
    // (its command line names the agent's directory, as the fork's does) are gone.
    super::wait_until("the zygote and its child to go", Duration::from_secs(5), || {
        survivors(&dir).is_empty()
    });
    assert_eq!(call(&rt, "test/slow", "mark", &json!({}))["result"], json!([1, null]));
}

#[test]
fn results_agent_errors_and_crashes_have_the_shape_warm_gives_them() {
    let shape = |mode| {
        let ctx = context(mode, |_| {});
        write_agent(&ctx, "shape", STATEFUL, &METHODS);
        let rt = runtime(&ctx);
        ["mark", "fail", "crash"]
            .map(|m| {
                let mut r = call(&rt, "test/shape", m, &json!({}));
                let o = r.as_object_mut().unwrap();
                for volatile in ["execution_time", "memory_usage", "memory_usage_bytes"] {
                    assert!(o.remove(volatile).is_some() || volatile != "execution_time", "{o:?}");
                }
                r
            })
            .to_vec()
    };
    let (isolated, warm) = (shape(ExecutionMode::Isolated), shape(ExecutionMode::Warm));
    assert_eq!(isolated, warm);
    assert_eq!(isolated[1]["error"], "no good", "{isolated:?}");
    assert_eq!(isolated[2]["error_type"], "ExecutionError", "{isolated:?}");
}

#[test]
fn output_past_the_cap_ends_the_call_not_the_zygote() {
    let ctx = context(ExecutionMode::Isolated, |c| c.runtime.max_stdout_bytes = 4096);
    let flood = STATEFUL.replace(
        "    if method == \"fail\":",
        "    if method == \"flood\":\n        print(\"x\" * 100000)\n    if method == \"fail\":",
    );
    let mut methods = METHODS.to_vec();
    methods.push("flood");
    write_agent(&ctx, "flood", &flood, &methods);
    let rt = runtime(&ctx);
    assert_eq!(call(&rt, "test/flood", "mark", &json!({}))["result"], json!([1, null]));
    let pids = rt.workers().idle_pids();
    let r = call(&rt, "test/flood", "flood", &json!({}));
    assert_eq!(r["error_type"], "ResourceLimitError", "{r}");
    assert_eq!(rt.workers().idle_pids(), pids, "the zygote was replaced");
    assert_eq!(call(&rt, "test/flood", "mark", &json!({}))["result"], json!([1, null]));
}

#[test]
fn libraries_a_call_imports_are_imported_by_the_zygote_for_later_calls_but_not_the_agents_own_modules() {
    let ctx = context(ExecutionMode::Isolated, |_| {});
    let lazy = STATEFUL.replace(
        "    if method == \"fail\":",
        "    if method == \"lazy\":\n        \
         seen = ['xml.dom.minidom' in sys.modules, 'lazyhelper' in sys.modules]\n        \
         import xml.dom.minidom, lazyhelper\n        \
         return seen + [lazyhelper.IMPORTS]\n    \
         if method == \"fail\":",
    );
    let mut methods = METHODS.to_vec();
    methods.push("lazy");
    write_agent(&ctx, "lazy", &lazy, &methods);
    let rt = runtime(&ctx);
    let dir = rt.load_agent("test/lazy").unwrap().location.dir;
    // An agent's own module, imported lazily by the method.
    std::fs::write(dir.join("lazyhelper.py"), "IMPORTS = 1\n").unwrap();
    let answers: Vec<_> =
        (0..6).map(|_| call(&rt, "test/lazy", "lazy", &json!({}))["result"].clone()).collect();
    // The first call imports the library itself. The zygote learns it between calls: a
    // request that arrives while it tries the import goes first, twice in a row at most,
    // so from the fourth call on every fork has it already. The agent's own module is
    // imported by each call, as in one-shot.
    assert_eq!(answers[0], json!([false, false, 1]), "{answers:?}");
    for later in &answers[3..] {
        assert_eq!(later, &json!([true, false, 1]), "{answers:?}");
    }
    assert!(answers.iter().all(|a| a[1] == json!(false)), "{answers:?}");
    assert_eq!(rt.workers().isolation(&dir), Some(Isolation::Forked));
}

#[test]
fn a_call_that_dies_is_a_failure_even_when_the_import_ignores_sigchld() {
    // SIGCHLD ignored: the kernel reaps the call's child itself, so the zygote never learns
    // how it ended; the call must still fail, never come back as an empty success.
    let ctx = context(ExecutionMode::Isolated, |_| {});
    let ignoring = format!("import signal\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\n{STATEFUL}");
    write_agent(&ctx, "ignoring", &ignoring, &METHODS);
    let rt = runtime(&ctx);
    assert_eq!(call(&rt, "test/ignoring", "mark", &json!({}))["result"], json!([1, null]));
    let crashed = call(&rt, "test/ignoring", "crash", &json!({}));
    // A process that failed (as a killed one-shot agent is), not an agent that printed
    // nothing and exited 0.
    assert!(crashed.get("result").is_none(), "{crashed}");
    assert_eq!(crashed["error_type"], "ExecutionError", "{crashed}");
    assert_eq!(call(&rt, "test/ignoring", "mark", &json!({}))["result"], json!([1, null]));
}
