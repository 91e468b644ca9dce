//! What one caller's warm call leaves for the next: each hazard that an attack review
//! found, in an agent that tries it (the same answers as one-shot, nothing carried over).

use std::time::Duration;

use agenthub_testkit::{reported_alive, reported_pid};
use serde_json::json;

use super::{call, pid_alive, runtime, wait_until, warm_context, write_agent};

const LEAKY: &str = r#"
import json, os, subprocess, sys, time

# A process the import starts may stay: the worker keeps what the import made.
HELPER = subprocess.Popen(["sleep", "300"])
NS = os.readlink("/proc/self/ns/pid")

def handle(method, params):
    if method == "setenv":
        os.environ["AGENTHUB_TEST_SECRET"] = "from caller A"
        os.environ.pop("HOME", None)
        return "set"
    if method == "getenv":
        return [os.environ.get("AGENTHUB_TEST_SECRET"), os.environ.get("HOME"),
                subprocess.run(["sh", "-c", "echo ${AGENTHUB_TEST_SECRET:-unset}"],
                               capture_output=True, text=True).stdout.strip()]
    if method == "rebind":
        os.environ = {"AGENTHUB_TEST_SECRET": "rebound"}
        return "rebound"
    if method == "spawn":
        child = subprocess.Popen(["sleep", "300"])
        # A daemon: double fork and setsid, so it is no longer below the call's child.
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "301"])
            os.write(w, b"%d" % 0)
            os._exit(0)
        os.close(w)
        os.read(r, 16)
        os.wait()
        # Pids of the worker's own PID namespace in the sandbox: the namespace goes with them.
        return [[child.pid, NS], [HELPER.pid, NS]]
    if method == "helper":
        return [HELPER.pid, NS]
    raise ValueError(method)

def main():
    request = json.loads(sys.argv[1])
    print(json.dumps({"result": handle(request["method"], request["parameters"])}))

if __name__ == "__main__":
    main()
"#;

fn children_named(parent_tree_of: u32, name: &str) -> Vec<u32> {
    // Every process whose ancestry reaches `parent_tree_of` and whose comm is `name`.
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if !pid_alive(pid) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let mut at = pid;
        for _ in 0..64 {
            let stat = std::fs::read_to_string(format!("/proc/{at}/stat")).unwrap_or_default();
            let Some(ppid) = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)) else {
                break;
            };
            let Ok(ppid) = ppid.parse::<u32>() else { break };
            if ppid == parent_tree_of {
                found.push(pid);
                break;
            }
            if ppid <= 1 {
                break;
            }
            at = ppid;
        }
    }
    found
}

#[test]
fn environment_changes_of_one_call_are_not_seen_by_the_next() {
    let ctx = warm_context(|c| c.runtime.workers_per_agent = 1);
    write_agent(&ctx, "leaky-env", LEAKY, &["setenv", "getenv", "rebind", "spawn", "helper"]);
    let rt = runtime(&ctx);
    let agent = "test/leaky-env";
    let pid = call(&rt, agent, "helper", &json!({}));
    assert!(pid["result"].is_array(), "{pid}");
    let before = call(&rt, agent, "getenv", &json!({}));
    let set = call(&rt, agent, "setenv", &json!({}));
    assert_eq!(set["result"], "set", "{set}");
    let after = call(&rt, agent, "getenv", &json!({}));
    assert_eq!(after["result"], before["result"], "caller B saw what caller A put in os.environ");
    assert_eq!(after["result"][0], json!(null), "{after}");
    assert_eq!(after["result"][2], "unset", "a child of the next call inherited the secret: {after}");
    // Rebinding os.environ to another object is undone too.
    assert_eq!(call(&rt, agent, "rebind", &json!({}))["result"], "rebound");
    let again = call(&rt, agent, "getenv", &json!({}));
    assert_eq!(again["result"], before["result"], "{again}");
    // All in one worker: it was restored, not replaced.
    assert_eq!(call(&rt, agent, "helper", &json!({}))["result"], pid["result"]);
}

#[test]
fn processes_a_call_starts_end_with_the_call_and_those_of_the_import_stay() {
    let ctx = warm_context(|c| c.runtime.workers_per_agent = 1);
    write_agent(&ctx, "leaky-procs", LEAKY, &["setenv", "getenv", "rebind", "spawn", "helper"]);
    let rt = runtime(&ctx);
    let agent = "test/leaky-procs";
    let helper = reported_pid(&call(&rt, agent, "helper", &json!({}))["result"]);
    let worker = std::fs::read_to_string(format!("/proc/{helper}/stat"))
        .unwrap()
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().nth(1).map(str::to_owned))
        .unwrap()
        .parse::<u32>()
        .unwrap();
    for round in 0..20 {
        let spawned = call(&rt, agent, "spawn", &json!({}));
        let child = &spawned["result"][0];
        assert!(child.is_array(), "{spawned}");
        // Ended before the answer came back: no waiting needed.
        assert!(!reported_alive(child), "round {round}: the call's child {child} outlived the call");
    }
    // The daemons (double-forked, setsid) were found too: only the import's helper is left.
    wait_until("stray sleeps to go", Duration::from_secs(5), || children_named(worker, "sleep").len() <= 1);
    assert_eq!(children_named(worker, "sleep"), vec![helper]);
    assert!(pid_alive(helper), "the import's own process was killed");
}

const EXITS: &str = r#"
import json, os, sys

# Made once per process that imports the agent: a worker's identity. (A pid and a PID
# namespace's inode number are not: a new worker's namespace may reuse the number of the
# one before it.)
WORKER = os.urandom(16).hex()

def main():
    request = json.loads(sys.argv[1])
    if request["method"] == "hard_exit":
        print("noise first")
        print(json.dumps({"result": [os.getpid(), WORKER]}))
        os._exit(0)
    if request["method"] == "hard_fail":
        print(json.dumps({"error": "failed hard"}))
        os._exit(3)
    print(json.dumps({"result": [os.getpid(), WORKER]}))

if __name__ == "__main__":
    main()
"#;

#[test]
fn output_printed_before_os_exit_is_answered_and_the_worker_is_replaced() {
    let ctx = warm_context(|_| {});
    write_agent(&ctx, "exits", EXITS, &["hard_exit", "hard_fail", "pid"]);
    let rt = runtime(&ctx);
    let agent = "test/exits";
    let first = call(&rt, agent, "hard_exit", &json!({}));
    let pid = first["result"].clone();
    assert!(pid.is_array(), "os._exit(0) after printing: {first}");
    assert_eq!(first["stdout_noise"], "noise first", "{first}");
    let failed = call(&rt, agent, "hard_fail", &json!({}));
    assert_eq!(failed["error_type"], "AgentError", "{failed}");
    assert_eq!(failed["return_code"], 3, "{failed}");
    // The worker that exited is not reused.
    let next = call(&rt, agent, "pid", &json!({}))["result"].clone();
    assert!(next.is_array(), "{next}");
    assert_ne!(next, pid);
}

const PATCHER: &str = r#"
import builtins, io, json, os, sys, traceback

# An agent that patches what the worker itself might use, at import and during a call;
# its own code keeps the originals.
_dumps, _loads, _write = json.dumps, json.loads, sys.stdout.write

def broken(*args, **kwargs):
    raise RuntimeError("patched by the agent")

json.dumps = broken

def main():
    request = _loads(sys.argv[1])
    if request["method"] == "raise":
        raise ValueError("after sabotage, an exception is still reported")
    if request["method"] == "sabotage":
        json.loads = broken
        os.chdir = broken
        os.getcwd = broken
        os.getpid = broken
        io.TextIOWrapper = broken
        traceback.print_exception = broken
        builtins.print = broken
    sys.stdout.write(_dumps({"result": request["parameters"].get("n", 0)}) + "\n")

if __name__ == "__main__":
    main()
"#;

#[test]
fn an_agent_that_patches_json_and_os_cannot_break_the_worker() {
    let ctx = warm_context(|_| {});
    write_agent(&ctx, "patcher", PATCHER, &["sabotage", "echo", "raise"]);
    let rt = runtime(&ctx);
    let agent = "test/patcher";
    let first = call(&rt, agent, "echo", &json!({"n": 1}));
    assert_eq!(first["result"], 1, "json.dumps patched at import: {first}");
    let sabotage = call(&rt, agent, "sabotage", &json!({}));
    assert_eq!(sabotage["result"], 0, "{sabotage}");
    for n in 2..5 {
        let next = call(&rt, agent, "echo", &json!({"n": n}));
        assert_eq!(next["result"], n, "{next}");
    }
    // An exception is still reported with its traceback, though traceback's printing is
    // patched.
    let raised = call(&rt, agent, "raise", &json!({}));
    assert_eq!(raised["error_type"], "ExecutionError", "{raised}");
    assert!(raised["stderr"].as_str().unwrap().contains("ValueError: after sabotage"), "{raised}");
}
