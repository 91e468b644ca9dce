//! The binary against hostile agent directories, agents, signals and environments: no data
//! loss, no escape, no hang, no panic, and a clear error every time.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agenthub_core::ParamType;
use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod, survivors};
use serde_json::{Value as Json, json};

use super::command;

/// Runs a command that must finish within `limit` (a hang is a failure, not a stuck test).
fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_within(child, limit)
}

fn wait_within(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn json_of(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?} / {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn script(name: &str, code: &str) -> TestAgent {
    TestAgent::new(name).method(TestMethod::new("run").behaves(Behaviour::Script(code.to_owned())))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of live processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    survivors(needle)
}

#[test]
fn a_signal_to_the_cli_kills_the_whole_call_and_prints_a_response() {
    let ctx = TestContext::new();
    for (i, signal) in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP].into_iter().enumerate() {
        let token = format!("agenthub-signal-{}-{i}", std::process::id());
        ctx.install(&TestAgent::new(&format!("sig{i}")).method(
            TestMethod::new("hang").behaves(Behaviour::SpawnAndHang { token: token.clone(), seconds: 600.0 }),
        ));
        let child = command(&ctx, &["exec", &format!("test/sig{i}"), "hang", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until("the agent's grandchild", Duration::from_secs(60), || !survivors(&token).is_empty());
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = wait_within(child, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(128 + signal), "signal {signal}: {}", stderr(&out));
        let v = json_of(&out);
        assert_eq!(v["error_type"], "ExecutionError", "{v}");
        assert!(v["error"].as_str().unwrap().contains("cancelled"), "{v}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(survivors(&token), Vec::<u32>::new(), "signal {signal} left the call's processes running");
    }
}

/// An agent whose requirements wait on an index that never answers (a listener on
/// loopback that never accepts), so its build hangs in `uv pip install`.
fn hanging_build(ctx: &TestContext, name: &str, listener: &std::net::TcpListener) -> std::path::PathBuf {
    let port = listener.local_addr().unwrap().port();
    ctx.install(
        &TestAgent::new(name)
            .method(TestMethod::new("ping").behaves(Behaviour::Return(json!("pong"))))
            .requirements_txt(&format!(
                "--index-url http://127.0.0.1:{port}/simple\nagenthub-never-answered==1\n"
            )),
    )
    .canonicalize()
    .unwrap()
}

#[test]
fn a_cli_stopped_or_killed_mid_build_leaves_no_installer_running() {
    let ctx = TestContext::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for (i, how) in ["SIGTERM", "SIGKILL"].into_iter().enumerate() {
        let dir = hanging_build(&ctx, &format!("slow{i}"), &listener);
        let needle = dir.display().to_string();
        let child =
            command(&ctx, &["exec", &format!("test/slow{i}"), "ping", "--json", "--env-backend", "uv"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
        let cli = child.id();
        let installer =
            || processes_mentioning(&needle).into_iter().filter(|&p| p != cli).collect::<Vec<_>>();
        wait_until("the installer", Duration::from_secs(60), || !installer().is_empty());
        let signal = if how == "SIGTERM" { libc::SIGTERM } else { libc::SIGKILL };
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(cli as i32, signal) };
        let out = wait_within(child, Duration::from_secs(10));
        if how == "SIGTERM" {
            assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{}", stderr(&out));
            assert_eq!(json_of(&out)["error_type"], "EnvironmentError");
        }
        wait_until(&format!("the installer to die after {how}"), Duration::from_secs(5), || {
            installer().is_empty()
        });
        assert!(!dir.join(".venv").exists(), "{how}: an interrupted build was swapped in");
    }
    drop(listener);
}

#[test]
fn a_supervisor_stopped_by_its_agent_still_enforces_the_deadline() {
    let ctx = TestContext::new();
    ctx.install(&script(
        "stopper",
        "helper = 'import os, signal, sys, time; time.sleep(3); os.kill(int(sys.argv[1]), signal.SIGCONT)'\n\
         subprocess.Popen([sys.executable, '-c', helper, str(os.getppid())], start_new_session=True)\n\
         os.kill(os.getppid(), signal.SIGSTOP)\n\
         print(json.dumps({'result': 'escaped the deadline'}))\n",
    ));
    // In the sandbox the agent's parent is the sandbox's init, outside its Landlock domain:
    // the SIGSTOP is refused (Landlock's signal scope) and the agent fails at once.
    let out = run_within(
        &mut command(&ctx, &["exec", "test/stopper", "run", "--json", "--timeout", "1"]),
        Duration::from_secs(30),
    );
    let v = json_of(&out);
    assert_eq!(v["error_type"], "ExecutionError", "{v}");
    assert!(v["stderr"].as_str().is_some_and(|s| s.contains("Operation not permitted")), "{v}");
    // Without the sandbox it stops the supervisor itself, which still enforces the deadline.
    let out = run_within(
        &mut command(&ctx, &["exec", "test/stopper", "run", "--json", "--timeout", "1", "--sandbox", "off"]),
        Duration::from_secs(30),
    );
    let v = json_of(&out);
    assert_eq!(v["error_type"], "TimeoutError", "{v}");
}

#[test]
fn the_memory_cap_covers_the_agents_children() {
    let ctx = TestContext::new();
    ctx.install(&script(
        "forker",
        "code = 'b = bytearray(400 * 1024 * 1024)\\nfor i in range(0, len(b), 4096): b[i] = 1\\nimport time; time.sleep(5)'\n\
         subprocess.run([sys.executable, '-c', code])\n\
         print(json.dumps({'result': 'the child got its 400 MiB'}))\n",
    ));
    let out = run_within(
        &mut command(&ctx, &["exec", "test/forker", "run", "--json", "--max-memory", "100"]),
        Duration::from_secs(60),
    );
    let v = json_of(&out);
    assert_eq!(v["error_type"], "ResourceLimitError", "{v}");
    assert!(v["memory_usage_bytes"].as_u64().unwrap() > 100 * 1024 * 1024, "{v}");
}

#[test]
fn a_non_utf8_environment_does_not_panic() {
    let ctx = TestContext::new();
    let bad = OsStr::from_bytes(b"\xff\xfe");
    let out =
        run_within(command(&ctx, &["list", "--json"]).env("SOME_TOOL_VAR", bad), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out =
        run_within(command(&ctx, &["list"]).env("AGENTHUB_MAX_MEMORY_USAGE", bad), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("AGENTHUB_MAX_MEMORY_USAGE"), "{}", stderr(&out));
}

/// Flags and variables of one command line.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

#[test]
fn limits_out_of_range_are_usage_errors_not_panics() {
    let ctx = TestContext::new();
    ctx.install(&script("quick", "print(json.dumps({'result': 1}))"));
    let cases: [Case; 9] = [
        (&["--timeout", "inf"], &[]),
        (&["--timeout", "1e19"], &[]),
        (&["--timeout", "0"], &[]),
        (&["--timeout=-1"], &[]),
        (&["--timeout", "NaN"], &[]),
        (&["--max-memory", "17592186044416"], &[]),
        (&[], &[("AGENTHUB_MAX_EXECUTION_TIME", "inf")]),
        (&[], &[("AGENTHUB_KILL_GRACE_PERIOD", "inf")]),
        (&[], &[("AGENTHUB_LOG_LEVEL", "LOUD")]),
    ];
    for (flags, vars) in cases {
        let mut args = vec!["exec", "test/quick", "run", "--json"];
        args.extend_from_slice(flags);
        let mut cmd = command(&ctx, &args);
        cmd.envs(vars.iter().copied());
        let out = run_within(&mut cmd, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{flags:?} {vars:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{flags:?}");
        assert!(stderr(&out).starts_with("error: "), "{flags:?}: {}", stderr(&out));
    }
}

#[test]
fn unknown_agenthub_variables_are_reported_with_the_likely_name() {
    let ctx = TestContext::new();
    let out =
        run_within(command(&ctx, &["list"]).env("AGENTHUB_MAX_EXECUTION_TIM", "3"), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("AGENTHUB_MAX_EXECUTION_TIME"), "{}", stderr(&out));
}

#[test]
fn an_unreadable_config_is_reported_the_same_with_home_flag_and_variable() {
    let ctx = TestContext::new();
    std::fs::create_dir_all(ctx.home().join("config.yaml")).unwrap();
    let by_var = run_within(&mut command(&ctx, &["list"]), Duration::from_secs(10));
    let mut flag = command(&ctx, &["list", "--home"]);
    flag.arg(ctx.home()).env_remove("AGENTHUB_HOME");
    let by_flag = run_within(&mut flag, Duration::from_secs(10));
    for out in [&by_var, &by_flag] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
        assert!(stderr(out).contains("config.yaml"), "{}", stderr(out));
    }
    let fifo_home = TestContext::new();
    mkfifo(&fifo_home.home().join("config.yaml"));
    let out = run_within(&mut command(&fifo_home, &["list"]), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn integers_beyond_64_bits_are_carried_exactly() {
    let ctx = TestContext::new();
    ctx.install(
        &TestAgent::new("big")
            .method(
                TestMethod::new("echo").param("n", ParamType::Integer, true).behaves(Behaviour::EchoParams),
            )
            .method(TestMethod::new("raw").behaves(Behaviour::RawStdout(
                "{\"result\": [12345678901234567890123, 0.1, 1e400]}".to_owned(),
            ))),
    );
    let out = run_within(
        &mut command(&ctx, &["exec", "test/big", "echo", "n=12345678901234567890123", "--json"]),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("{\"n\":12345678901234567890123}"), "{text}");
    let out = run_within(
        &mut command(&ctx, &["exec", "test/big", "echo", "{\"n\": -98765432109876543210987}", "--json"]),
        Duration::from_secs(30),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("-98765432109876543210987"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run_within(&mut command(&ctx, &["exec", "test/big", "raw", "--json"]), Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("12345678901234567890123"), "{text}");
}

#[test]
fn fifos_in_an_agent_directory_never_hang_a_command() {
    let ctx = TestContext::new();
    let dir = ctx.config().agents_root().join("test/fifo");
    std::fs::create_dir_all(&dir).unwrap();
    mkfifo(&dir.join("agent.yaml"));
    std::fs::write(dir.join("agent.py"), "").unwrap();
    for args in [&["info", "test/fifo"][..], &["list"], &["exec", "test/fifo", "m", "--json"]] {
        let out = run_within(&mut command(&ctx, args), Duration::from_secs(10));
        assert!(matches!(out.status.code(), Some(0 | 1)), "{args:?}: {}", stderr(&out));
    }
    let out = run_within(&mut command(&ctx, &["exec", "test/fifo", "m", "--json"]), Duration::from_secs(10));
    let v = json_of(&out);
    assert_eq!(v["error_type"], "InvalidManifestError", "{v}");
    assert!(v["error"].as_str().unwrap().contains("FIFO"), "{v}");
}

#[test]
fn an_agent_py_symlink_out_of_the_agent_directory_is_not_run() {
    let ctx = TestContext::new();
    let dir = ctx.install(&script("linked", "print(json.dumps({'result': 'inside'}))"));
    let outside = tempfile::tempdir().unwrap();
    let proof = outside.path().join("ran");
    std::fs::write(
        outside.path().join("evil.py"),
        format!(
            "open({:?}, 'w').write('x')\nprint('{{\"result\": \"outside\"}}')\n",
            proof.display().to_string()
        ),
    )
    .unwrap();
    std::fs::remove_file(dir.join("agent.py")).unwrap();
    symlink(outside.path().join("evil.py"), dir.join("agent.py")).unwrap();
    let out =
        run_within(&mut command(&ctx, &["exec", "test/linked", "run", "--json"]), Duration::from_secs(60));
    let v = json_of(&out);
    assert_eq!(v["error_type"], "ExecutionError", "{v}");
    assert!(v["error"].as_str().unwrap().contains("outside the agent directory"), "{v}");
    assert!(!proof.exists(), "the script outside the agent directory ran");
}

#[test]
fn list_does_not_show_what_exec_refuses() {
    let ctx = TestContext::new();
    ctx.install(&script("fine", "print(json.dumps({'result': 1}))"));
    let outside = tempfile::tempdir().unwrap();
    TestAgent::new("elsewhere").write_to(outside.path()).unwrap();
    symlink(outside.path(), ctx.config().agents_root().join("test/escape")).unwrap();
    let out = run_within(&mut command(&ctx, &["list", "--json"]), Duration::from_secs(10));
    let ids: Vec<String> =
        json_of(&out).as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["test/fine"]);
    let out =
        run_within(&mut command(&ctx, &["exec", "test/escape", "m", "--json"]), Duration::from_secs(10));
    assert_eq!(json_of(&out)["error_type"], "AgentNotFoundError");
}

#[test]
fn control_characters_from_a_manifest_never_reach_the_terminal() {
    let ctx = TestContext::new();
    let dir = ctx.install(&script("ansi", "print(json.dumps({'result': 1}))"));
    let manifest = std::fs::read_to_string(dir.join("agent.yaml")).unwrap();
    let manifest =
        manifest.replacen("description:", "description: \"\\e[2J\\e]0;pwned\\a\"\nx_old_description:", 1);
    std::fs::write(dir.join("agent.yaml"), manifest).unwrap();
    for args in [&["info", "test/ansi"][..], &["list"]] {
        let out = run_within(&mut command(&ctx, args), Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            !out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07),
            "{args:?}: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn refused_calls_say_why_and_what_to_do() {
    let ctx = TestContext::new();
    let dir = ctx.install(
        &TestAgent::new("refuse")
            .method(
                TestMethod::new("take").param("text", ParamType::String, true).behaves(Behaviour::EchoParams),
            )
            .method(TestMethod::new("nan").behaves(Behaviour::RawStdout("{\"result\": NaN}".to_owned())))
            .method(TestMethod::new("deep").behaves(Behaviour::RawStdout(format!(
                "{{\"result\": {}{}}}",
                "[".repeat(200),
                "]".repeat(200)
            )))),
    );
    // A request over the argument-size limit names the limit (the parameters alone still
    // fit in one argument of the CLI's own command line).
    let big = json!({"text": "x".repeat(131_051)}).to_string();
    let out = run_within(
        &mut command(&ctx, &["exec", "test/refuse", "take", &big, "--json"]),
        Duration::from_secs(30),
    );
    let v = json_of(&out);
    assert!(v["error"].as_str().unwrap().contains("131071"), "{v}");
    assert!(v["suggestion"].is_string(), "{v}");
    // NaN and over-deep output get messages that say exactly that.
    let v = json_of(&run_within(
        &mut command(&ctx, &["exec", "test/refuse", "nan", "--json"]),
        Duration::from_secs(30),
    ));
    assert_eq!(v["error_type"], "ProtocolError");
    assert!(v["error"].as_str().unwrap().contains("NaN"), "{v}");
    let v = json_of(&run_within(
        &mut command(&ctx, &["exec", "test/refuse", "deep", "--json"]),
        Duration::from_secs(30),
    ));
    assert!(v["error"].as_str().unwrap().contains("nested deeper"), "{v}");
    // A missing agent.py has a suggestion.
    std::fs::remove_file(dir.join("agent.py")).unwrap();
    let v = json_of(&run_within(
        &mut command(&ctx, &["exec", "test/refuse", "take", "x", "--json"]),
        Duration::from_secs(30),
    ));
    assert!(v["error"].as_str().unwrap().contains("No agent.py"), "{v}");
    assert!(v["suggestion"].as_str().unwrap().contains("agent.py"), "{v}");
}

#[test]
fn a_yaml_alias_bomb_is_refused_quickly() {
    let ctx = TestContext::new();
    let dir = ctx.config().agents_root().join("test/bomb");
    std::fs::create_dir_all(&dir).unwrap();
    let mut yaml = String::from("name: b\nversion: '1'\ndescription: d\nauthor: a\nx: &a [");
    yaml.push_str(&vec!["1"; 1000].join(","));
    yaml.push_str("]\ny: [");
    yaml.push_str(&vec!["*a"; 20_000].join(","));
    yaml.push_str("]\ninterface:\n  methods:\n    m: {description: d}\n");
    std::fs::write(dir.join("agent.yaml"), yaml).unwrap();
    let out = run_within(&mut command(&ctx, &["info", "test/bomb", "--json"]), Duration::from_secs(5));
    assert_eq!(json_of(&out)["error_type"], "InvalidManifestError");
}

#[test]
fn a_symlink_out_of_a_nested_git_directory_is_refused_like_any_other() {
    let ctx = TestContext::new();
    let work = tempfile::tempdir().unwrap();
    let agent = work.path().join("vendoring");
    script("vendoring", "return 1").write_to(&agent).unwrap();
    // A vendored repository is copied by a directory install, its `.git` too: checked.
    std::fs::create_dir_all(agent.join("vendor/lib/.git")).unwrap();
    symlink("/", agent.join("vendor/lib/.git/root")).unwrap();
    // The agent's own `.git` is left out of the install, so it is not checked.
    std::fs::create_dir_all(agent.join(".git")).unwrap();
    symlink("/", agent.join(".git/out")).unwrap();
    let run =
        |args: &[&str]| run_within(command(&ctx, args).current_dir(work.path()), Duration::from_secs(60));
    let out = run(&["validate", "./vendoring", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json_of(&out);
    let files: Vec<&str> =
        v[0]["problems"].as_array().unwrap().iter().filter_map(|p| p["file"].as_str()).collect();
    assert_eq!(files, ["vendor/lib/.git/root"], "{v}");
    let out = run(&["install", "./vendoring", "--no-env"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("vendor/lib/.git/root: symlink to / leaves"), "{}", stderr(&out));
    assert!(!ctx.config().agents_root().join("local/vendoring").exists());
}
