//! The runtime's composition logic with mockall doubles: no processes run here.

use std::sync::Arc;
use std::time::Duration;

use agenthub_core::ParamType;
use agenthub_process::{ExitStatus, ProcessError, ProcessOutput, Termination};
use agenthub_runtime::{EnvBackendKind, ProcessBackendKind};
use agenthub_testkit::{
    MockEnvironmentBackend, MockProcessBackend, TestAgent, TestContext, TestMethod, permissive_env_backend,
};
use serde_json::{Map, Value as Json, json};

fn params(v: &Json) -> Map<String, Json> {
    v.as_object().unwrap().clone()
}

fn hello(ctx: &TestContext) -> String {
    ctx.install(
        &TestAgent::new("hello")
            .method(TestMethod::new("greet").param("name", ParamType::String, true))
            .method(TestMethod::new("echo").param_default("n", ParamType::Integer, json!(3))),
    );
    "test/hello".to_owned()
}

fn output(stdout: &str, status: ExitStatus, termination: Option<Termination>) -> ProcessOutput {
    ProcessOutput {
        pid: 42,
        status,
        termination,
        stdout: stdout.as_bytes().to_vec(),
        stderr_tail: b"trace\n".to_vec(),
        stderr_truncated: false,
        wall_time: Duration::from_millis(3),
        peak_rss_bytes: Some(12 << 20),
    }
}

fn untouched_env() -> Arc<MockEnvironmentBackend> {
    let mut env = MockEnvironmentBackend::new();
    env.expect_kind().return_const(EnvBackendKind::Uv);
    env.expect_create_venv_discovering().returning(|_, _, _| Ok(false));
    env.expect_create_venv().never();
    env.expect_install().never();
    Arc::new(env)
}

fn no_process() -> Arc<MockProcessBackend> {
    let mut p = MockProcessBackend::new();
    p.expect_kind().return_const(ProcessBackendKind::Tokio);
    p.expect_run().never();
    Arc::new(p)
}

#[test]
fn unknown_method_touches_neither_backend() {
    let ctx = TestContext::new();
    let agent = hello(&ctx);
    let rt = ctx.runtime_with(untouched_env(), no_process());
    let r = rt.execute_agent_blocking(&agent, "nope", Map::new());
    let v = r.to_json();
    assert_eq!(v["error_type"], "MethodNotFoundError");
    assert_eq!(v["available_methods"], json!(["greet", "echo"]));
}

#[test]
fn invalid_parameters_touch_neither_backend() {
    let ctx = TestContext::new();
    let agent = hello(&ctx);
    let rt = ctx.runtime_with(untouched_env(), no_process());
    let r = rt.execute_agent_blocking(&agent, "greet", params(&json!({"name": 5, "x": 1})));
    let v = r.to_json();
    assert_eq!(v["error_type"], "InvalidParametersError");
    assert!(v["error"].as_str().unwrap().contains("'x'"));
    assert_eq!(v["suggestion"], "Expected: greet(name: string)");
}

#[test]
fn success_runs_the_wire_protocol_in_the_agent_dir_with_the_venv_active() {
    let ctx = TestContext::new();
    let agent = hello(&ctx);
    let agent_dir = ctx.config().agents_root().join("test/hello").canonicalize().unwrap();
    let mut process = MockProcessBackend::new();
    process.expect_kind().return_const(ProcessBackendKind::Tokio);
    let dir = agent_dir.clone();
    process
        .expect_run()
        .times(1)
        .withf(move |spec| {
            let venv = dir.join(".venv");
            spec.program == venv.join("bin/python")
                && spec.cwd == dir
                && spec.args == ["agent.py", r#"{"method":"echo","parameters":{"n":3}}"#]
                && spec.env.set.iter().any(|(k, v)| k == "VIRTUAL_ENV" && *v == venv.as_os_str())
                && spec.env.remove.iter().any(|k| k == "PYTHONHOME")
                && spec.registry.is_some()
        })
        .returning(|_| Ok(output("loading\n{\"result\": {\"n\": 3}}", ExitStatus::Exited(0), None)));
    let rt = ctx.runtime_with(permissive_env_backend(), Arc::new(process));
    let r = rt.execute_agent_blocking(&agent, "echo", Map::new());
    assert_eq!(r.result(), Some(&json!({"n": 3})), "{}", r.to_json());
    assert_eq!(r.stdout_noise.as_deref(), Some("loading"));
    assert_eq!(r.memory_usage_bytes, Some(12 << 20));
}

#[test]
fn the_environment_is_built_once_and_reused() {
    let ctx = TestContext::new();
    let agent = hello(&ctx);
    let mut env = MockEnvironmentBackend::new();
    env.expect_kind().return_const(EnvBackendKind::Pip);
    env.expect_python_executable().returning(|v| v.join("bin/python"));
    env.expect_create_venv_discovering().returning(|_, _, _| Ok(false));
    env.expect_create_venv().times(1).returning(|venv, _, _| {
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin/python"), "").unwrap();
        Ok(())
    });
    env.expect_install().never();
    let mut process = MockProcessBackend::new();
    process.expect_kind().return_const(ProcessBackendKind::Tokio);
    process
        .expect_run()
        .times(3)
        .returning(|_| Ok(output(r#"{"result": "hi"}"#, ExitStatus::Exited(0), None)));
    let rt = ctx.runtime_with(Arc::new(env), Arc::new(process));
    for _ in 0..3 {
        assert!(rt.execute_agent_blocking(&agent, "greet", params(&json!({"name": "a"}))).is_success());
    }
}

#[test]
fn environment_failure_is_an_environment_error_and_nothing_runs() {
    let ctx = TestContext::new();
    let agent = hello(&ctx);
    let mut env = MockEnvironmentBackend::new();
    env.expect_kind().return_const(EnvBackendKind::Uv);
    env.expect_python_executable().returning(|v| v.join("bin/python"));
    env.expect_create_venv_discovering().returning(|_, _, _| Ok(false));
    env.expect_create_venv().returning(|_, _, _| {
        Err(agenthub_env::EnvError::CommandFailed {
            command: "uv venv".into(),
            status: "exit status: 2".into(),
            stderr: "error: no space left".into(),
        })
    });
    let rt = ctx.runtime_with(Arc::new(env), no_process());
    let v = rt.execute_agent_blocking(&agent, "greet", params(&json!({"name": "a"}))).to_json();
    assert_eq!(v["error_type"], "EnvironmentError");
    assert_eq!(v["stderr"], "error: no space left");
    assert!(v["suggestion"].as_str().unwrap().contains("agenthub env rebuild"));
    assert!(!ctx.config().agents_root().join("test/hello/.venv/agenthub-env.json").exists());
}

#[test]
fn process_outcomes_map_to_their_error_types() {
    type Scripted = Result<ProcessOutput, fn() -> ProcessError>;
    let cases: Vec<(Scripted, &str)> = vec![
        (Ok(output("", ExitStatus::Signaled(9), Some(Termination::Timeout))), "TimeoutError"),
        (Ok(output("", ExitStatus::Signaled(9), Some(Termination::MemoryLimit))), "ResourceLimitError"),
        (Ok(output(r#"{"error": "bad"}"#, ExitStatus::Exited(1), None)), "AgentError"),
        (Ok(output("oops", ExitStatus::Exited(0), None)), "ProtocolError"),
        (Ok(output("", ExitStatus::Exited(3), None)), "ExecutionError"),
        (
            Err(|| ProcessError::Spawn {
                program: "/x/python".into(),
                source: std::io::Error::from_raw_os_error(2),
            }),
            "ExecutionError",
        ),
    ];
    for (result, want) in cases {
        let ctx = TestContext::new();
        let agent = hello(&ctx);
        let mut process = MockProcessBackend::new();
        process.expect_kind().return_const(ProcessBackendKind::Tokio);
        let result = std::sync::Mutex::new(Some(result));
        process.expect_run().times(1).returning(move |_| match result.lock().unwrap().take().unwrap() {
            Ok(out) => Ok(out),
            Err(make) => Err(make()),
        });
        let rt = ctx.runtime_with(permissive_env_backend(), Arc::new(process));
        let v = rt.execute_agent_blocking(&agent, "greet", params(&json!({"name": "a"}))).to_json();
        assert_eq!(v["error_type"], want, "{v}");
        assert!(v["execution_time"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn missing_agent_py_is_reported_before_building_anything() {
    let ctx = TestContext::new();
    let agent = hello(&ctx);
    std::fs::remove_file(ctx.config().agents_root().join("test/hello/agent.py")).unwrap();
    let rt = ctx.runtime_with(untouched_env(), no_process());
    let v = rt.execute_agent_blocking(&agent, "greet", params(&json!({"name": "a"}))).to_json();
    assert_eq!(v["error_type"], "ExecutionError");
    assert!(v["error"].as_str().unwrap().contains("No agent.py"));
}

#[test]
fn runtime_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<agenthub_runtime::AgentRuntime>();
}
