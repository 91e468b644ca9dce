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
    // -v says the sandbox's mode and layers first, then the build as a step.
    let (sandbox, text) = text.split_once('\n').unwrap_or_default();
    assert!(sandbox.starts_with("sandbox: default"), "{sandbox}");
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

/// The help of `agenthub ARGS --help`.
fn help(args: &[&str]) -> String {
    let ctx = TestContext::new();
    let out = agenthub(&ctx).args(args).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The commands a help text lists under `Commands:`.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_is_written_for_the_terminal_in_every_command() {
    let mut seen = 0;
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    while let Some(args) = queue.pop() {
        let args_str: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = help(&args_str);
        seen += 1;
        for bad in ["`", "SPEC", "§", "docs/design", "see README", "install step"] {
            assert!(!text.contains(bad), "`agenthub {} --help` says {bad:?}:\n{text}", args.join(" "));
        }
        // One wording for an agent argument; the global options once, under their heading.
        for line in text.lines().filter(|l| l.trim_start().starts_with("<AGENT>")) {
            assert!(
                line.ends_with(
                    "  An installed agent (namespace/name) or an agent directory (./dir, /dir, ~/dir)"
                ) || line.ends_with("  An installed agent (namespace/name)"),
                "agenthub {}: {line}",
                args.join(" ")
            );
        }
        assert_eq!(text.matches("--home <DIR>").count(), 1, "{text}");
        assert!(text.contains("Global options:\n      --home <DIR>"), "{text}");
        for command in commands(&text) {
            let mut next = args.clone();
            next.push(command);
            queue.push(next);
        }
    }
    assert!(seen > 20, "only {seen} help texts were looked at");
}

#[test]
fn top_level_and_exec_help() {
    insta::assert_snapshot!(help(&[]), @r"
    Run Python AI agents (agentplug format) in isolated environments and processes

    Usage: agenthub [OPTIONS] <COMMAND>

    Commands:
      exec         Run one method of an agent and print its response
      list         List installed agents
      info         Show an agent's manifest, methods and environment
      env          Manage agent environments
      batch        Run many calls of one agent through warm workers, one JSON request per stdin line
      bench        Measure an agent's call latency: median, p99 and calls per second
      init         Create a new agent: agent.yaml, agent.py and README.md, ready to validate and run
      validate     Check agents without running them
      doctor       Check this machine and the agenthub home, each problem with its fix
      completions  Print a shell completion script
      install      Install an agent from a git repository, a directory, or the registry (ns/name)
      update       Install an agent's recorded source again, at a new ref or the recorded one
      ray          The Ray target: the status of the cluster calls run on with --on ray
      remove       Remove an installed agent and its environments
      mcp          Serve agents to MCP clients (Claude Desktop, Claude Code, Cursor): every method a tool
      runs         List recorded calls, newest first (the run history in <home>/history.db)
      stats        Call counts, error rates and latency percentiles from the run history
      help         Print this message or the help of the given subcommand(s)

    Options:
      -h, --help     Print help
      -V, --version  Print version

    Global options:
          --home <DIR>    Home directory (default: $AGENTHUB_HOME, else ~/.agenthub)
      -q, --quiet         Print nothing but results and errors
      -v, --verbose...    Say more on stderr: -v progress as lines and info logs, -vv debug logs
          --color <WHEN>  Colour and spinners on stderr: auto (on a terminal, unless NO_COLOR is set), always, never [default: auto]
    ");
    insta::assert_snapshot!(help(&["exec"]), @r#"
    Run one method of an agent and print its response

    Usage: agenthub exec [OPTIONS] <AGENT> <METHOD> [PARAMS]...

    Arguments:
      <AGENT>      An installed agent (namespace/name) or an agent directory (./dir, /dir, ~/dir)
      <METHOD>     The method to call
      [PARAMS]...  Parameters: a JSON object, key=value pairs, or one plain string

    Options:
          --json                   Print the response as one JSON object on stdout, and nothing else
      -i, --interactive            Ask for each parameter of the method on the terminal, by its type
          --timeout <SECONDS>      Time limit in seconds (default: max_execution_time in config.yaml, 30)
          --max-memory <MB>        Memory cap in MB, 0 for none (default: max_memory_usage in config.yaml, 1024)
          --env-backend <TOOL>     Which tool builds the environment: uv, pip or virtualenv (default: uv when found, else pip)
          --on <TARGET>            Where the calls run: local (default) or ray (actors on a Ray cluster)
          --ray-address <ADDRESS>  The Ray cluster (implies --on ray; default: ray.address in config.yaml, else $RAY_ADDRESS)
          --env-clear              Pass the agent only a base set (PATH, HOME, USER, TMPDIR, TZ, the locale) and the --env-allow variables, not the whole environment
          --env-allow <VAR>        A variable to pass when the environment is cleared (repeatable; implies --env-clear)
      -h, --help                   Print help
      -V, --version                Print version

    Sandbox:
          --sandbox <MODE>      How calls are sandboxed: default, strict or off (default: sandbox_mode in config.yaml)
          --allow-net <HOST>    Let the agent reach HOST: api.example.com, *.example.com, host:443, localhost:PORT (repeatable)
          --allow-read <PATH>   Let the agent read PATH (repeatable)
          --allow-write <PATH>  Let the agent write PATH (repeatable)
          --allow-env <VAR>     Let the agent see the variable VAR in strict mode (repeatable)

    Tools:
          --tool <AGENT>       Give the agent another agent's methods as tools: ns/name (all), ns/name.method, or a directory (./dir, ./dir:method) (repeatable)
          --tools-from <FILE>  Give the agent the tools of the MCP servers in FILE ({"mcpServers": {...}}, as MCP clients write it) (repeatable)

    Global options:
          --home <DIR>    Home directory (default: $AGENTHUB_HOME, else ~/.agenthub)
      -q, --quiet         Print nothing but results and errors
      -v, --verbose...    Say more on stderr: -v progress as lines and info logs, -vv debug logs
          --color <WHEN>  Colour and spinners on stderr: auto (on a terminal, unless NO_COLOR is set), always, never [default: auto]

    PARAMS is one JSON object ('{"name": "World"}'), key=value pairs typed by the manifest (a=2 b=40), or one plain string for the method's single required string parameter.

    Exit status: 0 result, 1 error response, 2 usage error.
    "#);
}

#[test]
fn a_duplicate_key_in_config_yaml_is_shown_with_its_line() {
    let ctx = TestContext::new();
    std::fs::write(
        ctx.home().join("config.yaml"),
        "install:\n  git_timeout: 5\ninstall:\n  provision_uv: false\n",
    )
    .unwrap();
    let out = agenthub(&ctx).args(["list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(redact(&ctx, &out.stderr), @r"
    error: invalid [HOME]/config.yaml: duplicate key `install` at line 3 column 1
      help: Fix [HOME]/config.yaml at the position shown
    ");
}
