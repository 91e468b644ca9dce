//! What a new user meets in the first hour (issue 21): quiet logs, errors that name the
//! fix, help text written for the terminal.

use agenthub_testkit::TestContext;

use super::{agenthub, ctx_with_agent, redact};

/// The test harness quiets logs with `AGENTHUB_LOG_LEVEL=WARN`; a user has no such
/// variable, so these tests remove it.
fn as_a_user(ctx: &TestContext, args: &[&str]) -> std::process::Output {
    agenthub(ctx).env_remove("AGENTHUB_LOG_LEVEL").args(args).output().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_environment_build_on_a_pipe_prints_nothing_on_stderr() {
    let ctx = ctx_with_agent();
    let out = as_a_user(&ctx, &["exec", "test/demo", "greet", "World"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ctx.config().agents_root().join("test/demo/.venv/agenthub-env.json").exists(), "no build ran");
    assert_eq!(stderr(&out), "", "a build on a pipe says nothing but warnings and errors");
}

#[test]
fn an_install_on_a_pipe_shows_no_log_line_and_no_staging_path() {
    let ctx = TestContext::new();
    let source = tempfile::tempdir().unwrap();
    let dir = source.path().join("hello");
    agenthub_testkit::TestAgent::new("hello")
        .method(agenthub_testkit::TestMethod::new("hi").returns(serde_json::json!("hi")))
        .write_to(&dir)
        .unwrap();
    let out = as_a_user(&ctx, &["install", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = redact(&ctx, &out.stderr);
    assert!(!text.contains("INFO") && !text.contains("staging"), "{text}");
}

#[test]
fn dash_v_shows_the_build_as_a_step_and_dash_vv_the_logs() {
    let ctx = ctx_with_agent();
    let out = as_a_user(&ctx, &["-v", "exec", "test/demo", "greet", "World"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.starts_with("Building environment for demo (uv)...\n  done in "), "{text}");
    assert!(!text.contains("building environment venv="), "{text}");

    let out = as_a_user(&ctx, &["-vv", "env", "rebuild", "test/demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("DEBUG building environment venv="), "{}", stderr(&out));
}

#[test]
fn agenthub_log_level_debug_shows_the_logs() {
    let ctx = ctx_with_agent();
    let out = agenthub(&ctx)
        .env("AGENTHUB_LOG_LEVEL", "debug")
        .args(["exec", "test/demo", "greet", "World"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("DEBUG building environment venv="), "{}", stderr(&out));
}

#[test]
fn mcp_serve_keeps_rmcp_info_records_out_of_the_clients_log() {
    use std::io::Write as _;
    let ctx = ctx_with_agent();
    let mut child = super::command(&ctx, &["mcp", "serve", "test/demo"])
        .env_remove("AGENTHUB_LOG_LEVEL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    writeln!(stdin, "{initialize}\n{initialized}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""id":1"#), "no answer to initialize");
    let text = stderr(&out);
    assert!(!text.contains("peer_info") && !text.contains("serve_inner"), "{text}");
}

#[test]
fn an_environment_build_on_a_terminal_ends_in_one_human_line() {
    let ctx = ctx_with_agent();
    // The binary on a pseudo-terminal; what it drew comes back on python's stdout.
    let out = std::process::Command::new("python3")
        .args(["-c", "import pty, sys; pty.spawn(sys.argv[1:])"])
        .arg(assert_cmd::cargo::cargo_bin("agenthub"))
        .args(["exec", "test/demo", "greet", "World"])
        .env("AGENTHUB_HOME", ctx.home())
        .env("AGENTHUB_REGISTRY", super::NO_REGISTRY)
        .env_remove("AGENTHUB_LOG_LEVEL")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let drawn = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    // After the spinner's last frame is cleared: the one line, then the result.
    let after = drawn.rsplit("\x1b[2K").next().unwrap_or_default();
    let (line, result) = after.split_once('\n').unwrap_or_default();
    assert!(line.starts_with("Building environment for demo (uv)... done in "), "{drawn:?}");
    assert!(line.ends_with(" s"), "{drawn:?}");
    assert_eq!(result, "{\n  \"name\": \"World\"\n}\n", "{drawn:?}");
    assert!(drawn.contains('\x1b'), "no spinner was drawn: {drawn:?}");
    assert!(!drawn.contains("INFO"), "{drawn:?}");
}

#[test]
fn a_directory_named_without_dot_slash_is_pointed_at() {
    let ctx = TestContext::new();
    let work = tempfile::tempdir().unwrap();
    agenthub_testkit::TestAgent::new("my-agent")
        .method(agenthub_testkit::TestMethod::new("greet"))
        .write_to(&work.path().join("my-agent"))
        .unwrap();
    let out = agenthub(&ctx)
        .current_dir(work.path())
        .args(["exec", "my-agent", "greet", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["error"],
        "Agent 'my-agent' not found: `my-agent` is not an agent id (`namespace/name`, each part \
         [A-Za-z0-9][A-Za-z0-9._-]*); to run the directory, write ./my-agent"
    );
    assert_eq!(v["error_type"], "AgentNotFoundError");
    // Elsewhere, no such hint.
    let out = agenthub(&ctx).args(["exec", "my-agent", "greet", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["error"].as_str().unwrap().contains("./my-agent"), "{v}");
}
