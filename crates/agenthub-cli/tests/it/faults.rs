//! Faults across processes: many cold callers at once, and a build killed midway.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod, survivors};
use serde_json::json;

fn needs_six(name: &str) -> TestAgent {
    TestAgent::new(name)
        .method(TestMethod::new("ping").behaves(Behaviour::Return(json!("pong"))))
        .requirements_txt("six==1.16.0\n")
}

use super::command;

fn builds(ctx: &TestContext, name: &str) -> usize {
    let dir = ctx.config().agents_root().join("test").join(name).join(".venv.d");
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries.flatten().filter(|e| e.file_name() != agenthub_env::BUILDS_MARKER).count()
    })
}

#[test]
fn eight_processes_on_one_cold_agent_build_once_and_all_succeed() {
    let ctx = TestContext::new();
    ctx.install(&needs_six("cold"));
    let children: Vec<_> = (0..8)
        .map(|_| {
            command(&ctx, &["exec", "test/cold", "ping", "--json"])
                .env("AGENTHUB_LOG_LEVEL", "DEBUG")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut building = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["result"], "pong", "{v}");
        building += String::from_utf8_lossy(&out.stderr).matches("building environment").count();
    }
    assert_eq!(building, 1, "exactly one process builds");
    assert_eq!(builds(&ctx, "cold"), 1);
}

#[test]
fn a_build_killed_midway_leaves_no_ready_marker_and_the_next_call_rebuilds() {
    let ctx = TestContext::new();
    let agent_dir = ctx.install(&needs_six("killed"));
    // pip bootstraps itself with ensurepip first: a window of seconds to kill it in.
    let mut child = command(&ctx, &["exec", "test/killed", "ping", "--json", "--env-backend", "pip"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while builds(&ctx, "killed") == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the build never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SIGKILL the CLI and its installer together, as a crash or an OOM kill would.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    assert!(!agent_dir.join(".venv").join("agenthub-env.json").exists(), "a killed build looks ready");

    let out =
        command(&ctx, &["exec", "test/killed", "ping", "--json", "--env-backend", "pip"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"], "pong", "{v}");
    assert_eq!(builds(&ctx, "killed"), 1, "the half-built environment was collected");
}

#[test]
fn a_runtime_killed_outright_takes_its_agent_along_and_the_next_one_reaps_the_rest() {
    let ctx = TestContext::new();
    let token = format!("agenthub-crash-{}", std::process::id());
    ctx.install(
        &TestAgent::new("crash")
            .method(
                TestMethod::new("hang")
                    .behaves(Behaviour::SpawnAndHang { token: token.clone(), seconds: 600.0 }),
            )
            .method(TestMethod::new("ping").behaves(Behaviour::Return(json!("pong")))),
    );
    assert_eq!(command(&ctx, &["exec", "test/crash", "ping"]).output().unwrap().status.code(), Some(0));
    let mut cli =
        command(&ctx, &["exec", "test/crash", "hang", "--json"]).stdout(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while survivors(&token).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "the agent never started its grandchild");
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent_py = ctx.config().agents_root().join("test/crash/agent.py");
    let agent_pids = || {
        let needle = agent_py.canonicalize().unwrap();
        let dir = needle.parent().unwrap().to_path_buf();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|pid| {
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                cwd.as_deref() == Some(dir.as_path()) && cmd.windows(8).any(|w| w == b"agent.py")
            })
            .collect::<Vec<_>>()
    };
    assert!(!agent_pids().is_empty());
    // SIGKILL the runtime alone, as the OOM killer would.
    cli.kill().unwrap();
    cli.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(agent_pids(), Vec::<u32>::new(), "the agent outlived its runtime");
    // The grandchild ignored everything so far; the next runtime reaps it at start.
    assert_eq!(command(&ctx, &["exec", "test/crash", "ping"]).output().unwrap().status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(survivors(&token), Vec::<u32>::new(), "the next runtime left the orphan running");
}

/// A local package whose build backend starts a process carrying `token` and then hangs:
/// the installer's grandchild, which does not die with the installer.
fn hanging_build(ctx: &TestContext, name: &str, token: &str) -> std::path::PathBuf {
    let dir = ctx.install(
        &TestAgent::new(name)
            .method(TestMethod::new("ping").behaves(Behaviour::Return(json!("pong"))))
            .requirements_txt("./slowpkg\n"),
    );
    super::slow_package(
        &dir,
        &format!(
            "import subprocess, sys, time\n\
             def get_requires_for_build_wheel(config_settings=None):\n\
             \x20   subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{token}'])\n\
             \x20   time.sleep(600)\n\
             \x20   return []\n"
        ),
    );
    dir
}

#[test]
fn a_build_killed_outright_leaves_its_installers_children_to_the_next_runtime() {
    let ctx = TestContext::new();
    let token = format!("agenthub-build-orphan-{}", std::process::id());
    hanging_build(&ctx, "hangs", &token);
    ctx.install(
        &TestAgent::new("other").method(TestMethod::new("ping").behaves(Behaviour::Return(json!("pong")))),
    );
    let mut cli = command(&ctx, &["exec", "test/hangs", "ping", "--json", "--env-backend", "uv"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while survivors(&token).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the build backend never started its child");
        assert!(cli.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL the runtime alone: the installer dies with it, its build backend does not.
    cli.kill().unwrap();
    cli.wait().unwrap();
    // The next runtime, whatever agent it is asked for, ends what the dead build left.
    let out = command(&ctx, &["exec", "test/other", "ping", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let started = Instant::now();
    while !survivors(&token).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "the dead build's processes are still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}
