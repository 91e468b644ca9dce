//! Black-box tests of the `agenthub` binary: exact JSON for machines, snapshots for people.

mod batch;
mod faults;
mod first_hour;
mod health;
mod history;
mod hostile;
mod install;
mod lifecycle;
mod mcp;
pub(crate) mod mcp_http;
mod permissions;
mod ray;
mod sandbox;
mod tools;
mod traces;
mod worker_memory;

use agenthub_core::ParamType;
use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod};
use assert_cmd::Command;
use serde_json::{Value as Json, json};

fn ctx_with_agent() -> TestContext {
    let ctx = TestContext::new();
    ctx.install(
        &TestAgent::new("demo")
            .method(
                TestMethod::new("greet")
                    .param("name", ParamType::String, true)
                    .behaves(Behaviour::EchoParams),
            )
            .method(
                TestMethod::new("sum")
                    .param("a", ParamType::Integer, true)
                    .param_default("b", ParamType::Integer, json!(1))
                    .behaves(Behaviour::EchoParams),
            )
            .method(
                TestMethod::new("fail")
                    .behaves(Behaviour::Crash { code: 4, stderr: "Traceback: boom\n".into() }),
            )
            .method(TestMethod::new("nap").behaves(Behaviour::Sleep(30.0))),
    );
    ctx
}

/// Where tests install `ns/name` from unless they set up a registry: nowhere, so no test
/// ever reaches the network by auto-install.
const NO_REGISTRY: &str = "file:///nonexistent/agenthub-test-registry/{ns}/{name}";

fn agenthub(ctx: &TestContext) -> Command {
    let mut cmd = Command::cargo_bin("agenthub").unwrap();
    cmd.env("AGENTHUB_HOME", ctx.home())
        .env("NO_COLOR", "1")
        .env("AGENTHUB_LOG_LEVEL", "WARN")
        .env("AGENTHUB_REGISTRY", NO_REGISTRY);
    cmd
}

/// The binary as every test module runs it: a test home, no colour, quiet logs, stdin from
/// `/dev/null` (a test that pipes stdin sets it again).
pub(crate) fn command(ctx: &TestContext, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("agenthub"));
    cmd.args(args)
        .env("AGENTHUB_HOME", ctx.home())
        .env("NO_COLOR", "1")
        .env("AGENTHUB_LOG_LEVEL", "WARN")
        .env("AGENTHUB_REGISTRY", NO_REGISTRY)
        .stdin(std::process::Stdio::null());
    cmd
}

/// Writes `<agent_dir>/slowpkg`, a local package whose build backend is `backend` (Python
/// that defines `get_requires_for_build_wheel`): an agent whose requirements.txt names
/// `./slowpkg` gets a build that runs it (to hang, or to start processes).
pub(crate) fn slow_package(agent_dir: &std::path::Path, backend: &str) {
    let pkg = agent_dir.join("slowpkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("pyproject.toml"),
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
    )
    .unwrap();
    std::fs::write(pkg.join("backend.py"), backend).unwrap();
}

/// Runs `cmd` to its end with `input` on stdin; past `limit` it is killed and the test
/// fails.
pub(crate) fn run_bounded(
    mut cmd: std::process::Command,
    input: &[u8],
    limit: std::time::Duration,
) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(limit) else {
        // SAFETY: a plain kill of the child we started (still unreaped: the thread waits).
        unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
        panic!("agenthub did not finish within {limit:?}");
    };
    let _ = writer.join();
    output.unwrap()
}

fn json_of(out: &std::process::Output) -> Json {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?} / {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn redact(ctx: &TestContext, text: &[u8]) -> String {
    let home = ctx.home().canonicalize().unwrap();
    String::from_utf8_lossy(text).replace(&home.display().to_string(), "[HOME]")
}

#[test]
fn exec_json_prints_exactly_one_response_object() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).args(["exec", "test/demo", "sum", "a=41", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert_eq!(v["result"], json!({"a": 41, "b": 1}));
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["result", "execution_time", "memory_usage", "memory_usage_bytes"]);
}

#[test]
fn exec_human_prints_the_result() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).args(["exec", "test/demo", "greet", "World"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout), @r#"
    {
      "name": "World"
    }
    "#);
}

#[test]
fn exec_human_error_shows_stderr_tail_and_help() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).args(["exec", "test/demo", "fail"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    insta::assert_snapshot!(redact(&ctx, &out.stderr), @r"
    error[ExecutionError]: Agent exited with code 4 without printing a JSON response
      stderr (last 1 lines):
        Traceback: boom
      help: See the agent's stderr above for the cause
    ");
}

#[test]
fn a_mistyped_method_is_method_not_found_whatever_form_the_parameters_take() {
    let ctx = ctx_with_agent();
    for params in [&["World"][..], &["name=World"], &[r#"{"name": "World"}"#], &[]] {
        let mut args = vec!["exec", "test/demo", "gret", "--json"];
        args.extend_from_slice(params);
        let out = agenthub(&ctx).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let v = json_of(&out);
        assert_eq!(v["error_type"], "MethodNotFoundError", "{params:?}: {v}");
        assert_eq!(v["suggestion"], "Did you mean `greet`? Available methods: greet, sum, fail, nap", "{v}");
    }
}

#[test]
fn exec_unknown_method_suggests_the_methods() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).args(["exec", "test/demo", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(redact(&ctx, &out.stderr), @r"
    error[MethodNotFoundError]: Method 'nope' not found in agent interface
      help: Available methods: greet, sum, fail, nap
    ");
}

#[test]
fn unreadable_params_are_an_invalid_parameters_response() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).args(["exec", "test/demo", "sum", "a=x", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["error_type"], "InvalidParametersError");
    assert_eq!(v["error"], "Invalid parameters for 'sum': a=x: expected an integer");
    assert_eq!(v["suggestion"], "Expected: sum(a: integer, b?: integer)");
}

#[test]
fn timeout_flag_overrides_the_config() {
    let ctx = ctx_with_agent();
    let out =
        agenthub(&ctx).args(["exec", "test/demo", "nap", "--timeout", "0.5", "--json"]).output().unwrap();
    let v = json_of(&out);
    assert_eq!(v["error_type"], "TimeoutError", "{v}");
    assert_eq!(v["timeout"], 0.5);
}

#[test]
fn usage_errors_exit_2() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).args(["exec", "test/demo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = agenthub(&ctx).args(["exec", "a/b", "m", "--env-backend", "conda"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_config_is_a_usage_error_naming_the_variable() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).env("AGENTHUB_MAX_MEMORY_USAGE", "lots").args(["list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AGENTHUB_MAX_MEMORY_USAGE=lots"));
}

#[test]
fn list_human_and_json() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).args(["list"]).output().unwrap();
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout), @r"
    AGENT      VERSION  ENV      SOURCE  METHODS
    test/demo  0.1.0    missing  -       greet, sum, fail, nap
    ");
    let v = json_of(&agenthub(&ctx).args(["list", "--json"]).output().unwrap());
    assert_eq!(v[0]["id"], "test/demo");
    assert_eq!(v[0]["methods"], json!(["greet", "sum", "fail", "nap"]));
}

#[test]
fn list_with_nothing_installed_says_how_to_start() {
    let ctx = TestContext::new();
    let out = agenthub(&ctx).args(["list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let home = ctx.home().display().to_string();
    let text = String::from_utf8_lossy(&out.stderr).replace(&home, "[HOME]");
    insta::assert_snapshot!(text, @r"
    No agents installed under [HOME]/agents.
    Install one with `agenthub install ./my-agent` (or `agenthub install owner/name` from the registry), or run one by path: `agenthub exec ./my-agent METHOD`
    ");
}

#[test]
fn info_human_and_json() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).args(["info", "test/demo"]).output().unwrap();
    let text = redact(&ctx, &out.stdout);
    // The layers depend on the kernel: the line is checked, then left out of the snapshot.
    let sandbox = text.lines().find(|l| l.starts_with("sandbox:")).unwrap_or_default().to_owned();
    assert!(sandbox.starts_with("sandbox:     default"), "{text}");
    let text = text.replace(&format!("{sandbox}\n"), "");
    insta::assert_snapshot!(text, @r#"
    demo 0.1.0 by agenthub-testkit
    A test agent written by agenthub-testkit

    path:        [HOME]/agents/test/demo
    id:          test/demo
    environment: not built yet (the first `agenthub exec` builds it)
    warm:        one-shot (agent.py has no `if __name__ == "__main__": main()` to replay)
    permissions: asks for nothing beyond its own directory

    methods:
      greet(name: string)
          test method greet
      sum(a: integer, b?: integer)
          test method sum
      fail()
          test method fail
      nap()
          test method nap

    examples:
      agenthub exec test/demo greet name=text
      agenthub exec test/demo sum a=1
      agenthub exec test/demo fail
      agenthub exec test/demo nap
    "#);
    let v = json_of(&agenthub(&ctx).args(["info", "test/demo", "--json"]).output().unwrap());
    assert_eq!(v["name"], "demo");
    assert_eq!(v["methods"]["sum"]["parameters"]["b"]["default"], 1);
    let missing = agenthub(&ctx).args(["info", "test/missing", "--json"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(json_of(&missing)["error_type"], "AgentNotFoundError");
}

#[test]
fn env_rebuild_builds_a_fresh_environment() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx).args(["env", "rebuild", "test/demo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let marker = ctx.config().agents_root().join("test/demo/.venv/agenthub-env.json");
    let first = std::fs::metadata(&marker).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    agenthub(&ctx).args(["env", "rebuild", "test/demo"]).assert().success();
    assert!(
        std::fs::metadata(&marker).unwrap().modified().unwrap() > first,
        "the rebuild reused the old environment"
    );
}

#[test]
fn env_clear_passes_only_the_base_set_and_the_allow_list() {
    let ctx = TestContext::new();
    let names = ["AH_SECRET", "AH_ALLOWED", "HOME", "VIRTUAL_ENV"].map(String::from).to_vec();
    ctx.install(&TestAgent::new("env").method(TestMethod::new("show").behaves(Behaviour::EnvVars(names))));
    let run = |extra: &[&str]| {
        let mut args = vec!["exec", "test/env", "show", "--json"];
        args.extend_from_slice(extra);
        let out =
            agenthub(&ctx).env("AH_SECRET", "s3cret").env("AH_ALLOWED", "yes").args(&args).output().unwrap();
        json_of(&out)["result"].clone()
    };
    let all = run(&[]);
    assert_eq!(all["AH_SECRET"], "s3cret", "by default the caller's environment passes");
    let cleared = run(&["--env-allow", "AH_ALLOWED"]);
    assert_eq!(cleared["AH_SECRET"], Json::Null);
    assert_eq!(cleared["AH_ALLOWED"], "yes");
    assert_eq!(cleared["HOME"], all["HOME"]);
    assert!(std::path::Path::new(cleared["VIRTUAL_ENV"].as_str().unwrap()).ends_with(".venv"));
    assert_eq!(run(&["--env-clear"])["AH_ALLOWED"], Json::Null);
}

#[test]
fn parameters_never_reach_a_shell() {
    let ctx = ctx_with_agent();
    let marker = ctx.home().join("pwned");
    let evil = format!("'; touch {m}; $(touch {m}) `touch {m}` && touch {m} | cat", m = marker.display());
    let out = agenthub(&ctx).args(["exec", "test/demo", "greet", &evil, "--json"]).output().unwrap();
    assert_eq!(json_of(&out)["result"], json!({"name": evil}));
    assert!(!marker.exists(), "a parameter was interpreted by a shell");
}
