//! The facade: a runtime from its builder, one `Call` value for every way of calling, the
//! handles on what a runtime keeps, and a shutdown that stops one runtime only.

use std::time::{Duration, Instant};

use agenthub_core::{ExecutionMode, ParamType};
use agenthub_runtime::{AgentRuntime, Call, CallCancel, EnvBackendKind, ProcessBackendKind};
use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod};
use serde_json::json;

fn agent() -> TestAgent {
    TestAgent::new("facade")
        .method(TestMethod::new("echo").param("text", ParamType::String, true).behaves(Behaviour::EchoParams))
        .method(TestMethod::new("nap").behaves(Behaviour::Sleep(30.0)))
}

fn built(ctx: &TestContext) -> AgentRuntime {
    AgentRuntime::builder(ctx.config().clone())
        .environment_backend(EnvBackendKind::Uv)
        .process_backend(ProcessBackendKind::Std)
        .build()
        .unwrap()
}

#[test]
fn a_built_runtime_runs_a_call_by_name_and_by_loaded_agent() {
    let ctx = TestContext::new();
    ctx.install(&agent());
    let rt = built(&ctx);
    let by_name = rt.call_blocking(Call::new("test/facade", "echo").param("text", "hi"));
    assert_eq!(by_name.result(), Some(&json!({"text": "hi"})), "{}", by_name.to_json());
    let loaded = rt.load_agent("test/facade").unwrap();
    let by_loaded = rt.call_blocking(
        Call::loaded(&loaded, "echo").params(json!({"text": "yo"}).as_object().cloned().unwrap()),
    );
    assert_eq!(by_loaded.result(), Some(&json!({"text": "yo"})));
    // The Phase-1 name says the same thing through the same path.
    let phase_one =
        rt.execute_agent_blocking("test/facade", "echo", json!({"text": "hi"}).as_object().cloned().unwrap());
    assert_eq!(phase_one.result(), by_name.result());
    // Bad input is still one response, never an error or a panic.
    let missing = rt.call_blocking(Call::new("test/facade", "nope"));
    assert_eq!(missing.to_json()["error_type"], "MethodNotFoundError");
}

#[test]
fn a_calls_own_timeout_stands_in_for_the_configured_one() {
    let ctx =
        TestContext::new().with_config(|c| c.runtime.max_execution_time = agenthub_core::Seconds::new(60.0));
    ctx.install(&agent());
    let rt = built(&ctx);
    // Environment ready first, so the timeout measures the call alone.
    assert!(rt.call_blocking(Call::new("test/facade", "echo").param("text", "x")).result().is_some());
    let started = Instant::now();
    let response = rt.call_blocking(Call::new("test/facade", "nap").timeout(Duration::from_secs(1)));
    let json = response.to_json();
    assert_eq!(json["error_type"], "TimeoutError", "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("1s") || json["error"].as_str().unwrap().contains("1 s"),
        "{json}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn a_cancel_handle_travels_in_the_call() {
    let ctx = TestContext::new();
    ctx.install(&agent());
    let rt = built(&ctx);
    let cancel = CallCancel::new();
    cancel.cancel();
    let response = rt.call_blocking(Call::new("test/facade", "echo").param("text", "x").cancel(&cancel));
    assert_eq!(response.to_json()["error_type"], "ExecutionError", "{}", response.to_json());
}

#[test]
fn shutting_one_runtime_down_stops_its_calls_and_leaves_another_running() {
    let ctx = TestContext::new();
    ctx.install(&agent());
    let (first, second) = (built(&ctx), built(&ctx));
    assert!(first.call_blocking(Call::new("test/facade", "echo").param("text", "a")).result().is_some());
    let started = Instant::now();
    let napping = std::thread::scope(|scope| {
        let nap = scope.spawn(|| first.call_blocking(Call::new("test/facade", "nap")));
        while first.processes().registry().running().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(20), "the nap never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(first.shutdown() >= 1);
        nap.join().unwrap()
    });
    assert!(started.elapsed() < Duration::from_secs(15), "shutdown did not stop the running call");
    assert!(napping.result().is_none(), "{}", napping.to_json());
    assert!(first.is_shut_down());
    let refused = first.call_blocking(Call::new("test/facade", "echo").param("text", "b"));
    assert_eq!(refused.to_json()["error_type"], "ExecutionError");
    assert!(refused.to_json()["error"].as_str().unwrap().contains("shut down"), "{}", refused.to_json());
    // The other runtime in the same process is not touched.
    let other = second.call_blocking(Call::new("test/facade", "echo").param("text", "c"));
    assert_eq!(other.result(), Some(&json!({"text": "c"})), "{}", other.to_json());
    assert!(!second.is_shut_down());
}

const WARM: &str = "import json, sys\n\ndef main():\n    r = json.loads(sys.argv[1])\n    \
                    print(json.dumps({'result': r['parameters']}))\n\nif __name__ == '__main__':\n    main()\n";

#[test]
fn the_workers_handle_sees_and_restarts_a_runtimes_workers_and_shutdown_ends_them() {
    let ctx = TestContext::new().with_config(|c| c.runtime.mode = ExecutionMode::Warm);
    let dir = ctx.install(&TestAgent::new("warmish").method(TestMethod::new("echo").param(
        "n",
        ParamType::Integer,
        true,
    )));
    std::fs::write(dir.join("agent.py"), WARM).unwrap();
    let rt = built(&ctx);
    assert_eq!(
        rt.call_blocking(Call::new("test/warmish", "echo").param("n", 1)).result(),
        Some(&json!({"n": 1}))
    );
    assert_eq!(rt.workers().count(), 1);
    let pid = rt.workers().idle_pids()[0];
    assert_eq!(rt.workers().restart(Some("test/warmish")).unwrap(), 1);
    assert_eq!(rt.workers().count(), 0);
    assert!(rt.call_blocking(Call::new("test/warmish", "echo").param("n", 2)).result().is_some());
    assert_ne!(rt.workers().idle_pids(), vec![pid]);
    rt.shutdown();
    assert_eq!(rt.workers().count(), 0, "shutdown left a worker");
}

#[test]
fn the_readme_shows_the_library_example_that_builds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("examples/readme.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let body =
        example.split("// README: begin\n").nth(1).unwrap().split("    // README: end").next().unwrap();
    let unindented: String =
        body.lines().map(|l| l.strip_prefix("    ").unwrap_or(l)).collect::<Vec<_>>().join("\n");
    assert!(
        readme.contains(&format!("```rust\n{}\n```", unindented.trim_end())),
        "README.md's library example differs from examples/readme.rs:\n{unindented}"
    );
}
