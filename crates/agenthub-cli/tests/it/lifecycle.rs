//! `agenthub init` and `agenthub validate`: a new agent validates and runs at once (one-shot
//! and warm, with the real Python and uv); validate reports every problem of a broken agent
//! with its file and field, over named agents or every installed one, as text or JSON.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use agenthub_testkit::{TestAgent, TestContext, TestMethod};
use serde_json::{Value as Json, json};

use super::{agenthub, json_of};

/// A command may build the agent's environment first.
const LIMIT: Duration = Duration::from_secs(180);

/// A working directory (removed on drop) and a context whose home lies elsewhere.
fn workdir() -> (TestContext, tempfile::TempDir) {
    let work = tempfile::Builder::new().prefix("agenthub-work-").tempdir().unwrap();
    (TestContext::new(), work)
}

fn run(ctx: &TestContext, cwd: &Path, args: &[&str]) -> Output {
    agenthub(ctx).current_dir(cwd).args(args).timeout(LIMIT).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `text` with the canonical `dir` written as `[DIR]`.
fn redact(bytes: &[u8], dir: &Path) -> String {
    text(bytes).replace(&dir.canonicalize().unwrap().display().to_string(), "[DIR]")
}

fn init(ctx: &TestContext, cwd: &Path, name: &str) -> PathBuf {
    let out = run(ctx, cwd, &["init", name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    cwd.join(name)
}

#[test]
fn a_new_agent_validates_and_runs_each_method() {
    let (ctx, work) = workdir();
    let out = run(&ctx, work.path(), &["init", "hello-agent"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    insta::assert_snapshot!(text(&out.stdout), @r"
    Created agent `hello-agent` in ./hello-agent:
      ./hello-agent/agent.yaml
      ./hello-agent/agent.py
      ./hello-agent/README.md

    Next:
      agenthub validate ./hello-agent
      agenthub exec ./hello-agent greet name=World
      agenthub exec ./hello-agent add a=2 b=40
    ");
    let dir = work.path().join("hello-agent");
    let manifest = std::fs::read_to_string(dir.join("agent.yaml")).unwrap();
    assert!(manifest.starts_with("name: \"hello-agent\"\nversion: \"0.1.0\"\n"), "{manifest}");
    assert!(std::fs::read_to_string(dir.join("agent.py")).unwrap().contains("class HelloAgent:"));

    let out = run(&ctx, work.path(), &["validate", "./hello-agent"]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "ok  ./hello-agent\n"));

    // The commands init printed work as printed; the first builds the environment.
    let out = run(&ctx, work.path(), &["exec", "./hello-agent", "greet", "name=World", "--json"]);
    assert_eq!(json_of(&out)["result"], "Hello, World.", "{}", text(&out.stderr));
    let out =
        run(&ctx, work.path(), &["exec", "./hello-agent", "greet", r#"{"name": "Ann", "excited": true}"#]);
    assert_eq!(text(&out.stdout), "Hello, Ann!\n", "{}", text(&out.stderr));
    let out = run(&ctx, work.path(), &["exec", "./hello-agent", "add", "a=2", "b=40", "--json"]);
    assert_eq!(json_of(&out)["result"], 42);
    let out = run(&ctx, work.path(), &["exec", "./hello-agent", "add", "a=0.5", "b=2", "--json"]);
    assert_eq!(json_of(&out)["result"], 2.5);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_new_agents_main_speaks_the_one_shot_protocol() {
    let (ctx, work) = workdir();
    let dir = init(&ctx, work.path(), "proto");
    let python = |args: &[&str]| {
        std::process::Command::new("python3").current_dir(&dir).arg("agent.py").args(args).output().unwrap()
    };
    let ok = python(&[r#"{"method": "add", "parameters": {"a": 1, "b": 2}}"#]);
    assert_eq!((ok.status.code(), text(&ok.stdout).as_str()), (Some(0), "{\"result\": 3}\n"));
    for (request, error) in [
        (r#"{"method": "nope", "parameters": {}}"#, "AttributeError: no method 'nope'"),
        (r#"{"method": "__init__", "parameters": {}}"#, "AttributeError: no method '__init__'"),
        (r#"{"method": "add", "parameters": {"a": 1}}"#, "TypeError: "),
        ("not json", "JSONDecodeError: "),
    ] {
        let out = python(&[request]);
        assert_eq!(out.status.code(), Some(1), "{request}");
        let reply: Json = serde_json::from_slice(&out.stdout).unwrap();
        let message = reply["error"].as_str().unwrap();
        assert!(message.starts_with(error), "{request}: {message}");
        assert_eq!(reply.as_object().unwrap().len(), 1);
        // The traceback goes to stderr, for the line.
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("Traceback (most recent call last):\n"), "{request}: {stderr}");
        assert!(stderr.contains("agent.py\", line "), "{request}: {stderr}");
    }
    assert_eq!(python(&[]).status.code(), Some(1), "no request is an error too");
}

#[test]
fn an_exception_shows_its_line_and_a_missing_module_the_fix() {
    let (ctx, work) = workdir();
    let dir = init(&ctx, work.path(), "needy");
    let code = std::fs::read_to_string(dir.join("agent.py")).unwrap();
    let add = "    def add(self, a, b):\n";
    let line = code[..code.find(add).unwrap()].lines().count() + 2;
    let code = code.replace(add, &format!("{add}        import not_installed_here.sub\n"));
    std::fs::write(dir.join("agent.py"), code).unwrap();
    let out = run(&ctx, work.path(), &["exec", "./needy", "add", "a=1", "b=2", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["error_type"], "AgentError", "{v}");
    assert_eq!(v["error"], "ModuleNotFoundError: No module named 'not_installed_here'");
    assert_eq!(
        v["suggestion"],
        "The module `not_installed_here` is not installed in the agent's environment: add the package that \
         provides it to `dependencies` in agent.yaml (`dependencies: [\"not_installed_here\"]` when the names \
         match); the next call rebuilds the environment"
    );
    let stderr = v["stderr"].as_str().unwrap();
    assert!(stderr.contains(&format!("agent.py\", line {line}, in add")), "{stderr}");
    // People see the same, the traceback with the line above the help.
    let out = run(&ctx, work.path(), &["exec", "./needy", "add", "a=1", "b=2"]);
    let said = text(&out.stderr);
    assert!(
        said.starts_with("error[AgentError]: ModuleNotFoundError: No module named 'not_installed_here'\n")
    );
    assert!(said.contains(&format!("agent.py\", line {line}, in add")), "{said}");
    assert!(said.contains("  help: The module `not_installed_here` is not installed"), "{said}");
}

#[test]
fn a_new_agent_runs_warm() {
    let (ctx, work) = workdir();
    init(&ctx, work.path(), "warm");
    let info = run(&ctx, work.path(), &["info", "./warm", "--json"]);
    assert_eq!(json_of(&info)["warm_dispatch"], "main", "workers replay the template's main()");

    let lines = "{\"method\": \"greet\", \"parameters\": {\"name\": \"one\"}, \"id\": 1}\n\
                 {\"method\": \"add\", \"parameters\": {\"a\": 20, \"b\": 22}, \"id\": 2}\n";
    let out = agenthub(&ctx)
        .current_dir(work.path())
        .args(["batch", "./warm"])
        .write_stdin(lines)
        .timeout(LIMIT)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let replies: Vec<Json> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!((&replies[0]["id"], &replies[0]["result"]), (&json!(1), &json!("Hello, one.")));
    assert_eq!((&replies[1]["id"], &replies[1]["result"]), (&json!(2), &json!(42)));
}

#[test]
fn init_never_overwrites_and_refuses_bad_names() {
    let (ctx, work) = workdir();
    let taken = work.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("agent.py"), "mine").unwrap();
    let out = run(&ctx, work.path(), &["init", "taken"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(text(&out.stderr), @r"
    error: taken already exists and is not an empty directory
      help: Choose another directory with --path, or remove taken yourself if you no longer need it
    ");
    let out = run(&ctx, work.path(), &["init", "other", "--path", "taken"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(taken.join("agent.py")).unwrap(), "mine");
    assert!(!taken.join("agent.yaml").exists());
    std::fs::write(work.path().join("file"), "x").unwrap();
    assert_eq!(run(&ctx, work.path(), &["init", "file"]).status.code(), Some(1));

    // An empty directory is filled, and --path names it.
    std::fs::create_dir(work.path().join("empty")).unwrap();
    let out = run(&ctx, work.path(), &["init", "named", "--path", "empty"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("agenthub validate ./empty\n"));
    assert!(std::fs::read_to_string(work.path().join("empty/agent.yaml")).unwrap().contains("\"named\""));

    for bad in ["bad name", "../up", "a/b", ".hidden", "-", "caf\u{e9}", ""] {
        let out = run(&ctx, work.path(), &["init", "--", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("is not a valid agent name"), "{}", text(&out.stderr));
    }
    let mut left: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["empty", "file", "taken"], "bad names create nothing");
    assert_eq!(run(&ctx, work.path(), &["init"]).status.code(), Some(2));
}

/// An agent made by init, then broken: a manifest with three problems, no `agent.py`, and a
/// symlink out of the directory.
fn broken_agent(ctx: &TestContext, cwd: &Path) -> PathBuf {
    let dir = init(ctx, cwd, "broken");
    std::fs::write(
        dir.join("agent.yaml"),
        "name: broken\nversion: \"\"\ndescription: d\nauthor: a\ninterface:\n  methods:\n    go:\n      \
         parameters:\n        x: {type: banana}\n",
    )
    .unwrap();
    std::fs::remove_file(dir.join("agent.py")).unwrap();
    std::fs::create_dir(dir.join("data")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("data/etc")).unwrap();
    dir
}

#[test]
fn validate_reports_every_problem_with_its_file_and_field() {
    let (ctx, work) = workdir();
    broken_agent(&ctx, work.path());
    let out = run(&ctx, work.path(), &["validate", "./broken"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(text(&out.stdout), @r"
    invalid ./broken
      - agent.yaml: interface.methods.go.description: is required
      - agent.yaml: interface.methods.go.parameters.x.type: unknown type `banana` (use string, integer, number, boolean, array or object)
      - agent.yaml: version: must not be empty
      - agent.py: is missing
      - data/etc: symlink to /etc leaves the agent directory (it resolves to /etc)
    ");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn validate_json_is_one_array_with_stable_fields() {
    let (ctx, work) = workdir();
    init(&ctx, work.path(), "good");
    broken_agent(&ctx, work.path());
    let out = run(&ctx, work.path(), &["validate", "./good", "./broken", "nope/missing", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let dir = work.path().canonicalize().unwrap();
    let problem = |file: &str, field: Option<&str>, message: &str| json!({"file": file, "field": field, "line": null, "message": message});
    assert_eq!(
        json_of(&out),
        json!([
            {"agent": "./good", "path": dir.join("good"), "valid": true, "problems": []},
            {"agent": "./broken", "path": dir.join("broken"), "valid": false, "problems": [
                problem("agent.yaml", Some("interface.methods.go.description"), "is required"),
                problem("agent.yaml", Some("interface.methods.go.parameters.x.type"),
                    "unknown type `banana` (use string, integer, number, boolean, array or object)"),
                problem("agent.yaml", Some("version"), "must not be empty"),
                problem("agent.py", None, "is missing"),
                problem("data/etc", None, "symlink to /etc leaves the agent directory (it resolves to /etc)"),
            ]},
            {"agent": "nope/missing", "path": null, "valid": false, "problems": [
                {"file": null, "field": null, "line": null, "message": format!(
                    "not found: not installed under {}", ctx.home().join("agents").display())},
            ]},
        ])
    );
    let good = run(&ctx, work.path(), &["validate", "./good", "--json"]);
    assert_eq!(good.status.code(), Some(0));
    assert_eq!(json_of(&good)[0]["valid"], true);
}

#[test]
fn validate_compiles_agent_py_without_running_it_and_names_the_line() {
    let (ctx, work) = workdir();
    let dir = init(&ctx, work.path(), "typo");
    let marker = work.path().join("ran");
    let source = format!("open({:?}, 'w')\n\nanswer = = 42\n", marker.display().to_string());
    std::fs::write(dir.join("agent.py"), source).unwrap();
    let out = run(&ctx, work.path(), &["validate", "./typo"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    insta::assert_snapshot!(text(&out.stdout), @r"
    invalid ./typo
      - agent.py:3: SyntaxError: invalid syntax (column 10)
    ");
    let out = run(&ctx, work.path(), &["validate", "./typo", "--json"]);
    let v = json_of(&out);
    assert_eq!(
        v[0]["problems"],
        json!([{"file": "agent.py", "field": null, "line": 3, "message": "SyntaxError: invalid syntax (column 10)"}])
    );
    assert!(!marker.exists(), "validate ran agent.py");

    // With an environment, its interpreter compiles (here a stand-in that says it ran).
    let bin = dir.join(".venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let used = work.path().join("venv-python-used");
    let python3 = which::which("python3").unwrap();
    std::fs::write(
        bin.join("python"),
        format!("#!/bin/sh\ntouch '{}'\nexec '{}' \"$@\"\n", used.display(), python3.display()),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("python"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let out = run(&ctx, work.path(), &["validate", "./typo", "--json"]);
    assert_eq!(json_of(&out)[0]["problems"][0]["line"], 3);
    assert!(used.exists(), "the environment's interpreter was not used");
}

#[test]
fn validate_without_arguments_checks_every_installed_agent() {
    let ctx = TestContext::new();
    let empty = agenthub(&ctx).args(["validate"]).timeout(LIMIT).output().unwrap();
    assert_eq!((empty.status.code(), empty.stdout.as_slice()), (Some(0), b"".as_slice()));
    assert!(text(&empty.stderr).starts_with("No agents installed under "), "{}", text(&empty.stderr));
    let empty = agenthub(&ctx).args(["validate", "--json"]).timeout(LIMIT).output().unwrap();
    assert_eq!((empty.status.code(), json_of(&empty)), (Some(0), json!([])));

    ctx.install(&TestAgent::new("demo").method(TestMethod::new("greet")));
    let ok = agenthub(&ctx).args(["validate"]).timeout(LIMIT).output().unwrap();
    assert_eq!((ok.status.code(), text(&ok.stdout).as_str()), (Some(0), "ok  test/demo\n"));

    // A manifest that is a FIFO: `list` leaves such an agent out, validate reports it (and
    // does not wait for a writer).
    let fifo_agent = ctx.install(&TestAgent::new("fifo").method(TestMethod::new("greet")));
    std::fs::remove_file(fifo_agent.join("agent.yaml")).unwrap();
    let path =
        std::ffi::CString::new(fifo_agent.join("agent.yaml").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a valid C string.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let no_py = ctx.install(&TestAgent::new("no-py").method(TestMethod::new("greet")));
    std::fs::remove_file(no_py.join("agent.py")).unwrap();

    let out = agenthub(&ctx).args(["validate"]).timeout(LIMIT).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(redact(&out.stdout, ctx.home()), @r"
    ok  test/demo
    invalid test/fifo
      - agent.yaml: [DIR]/agents/test/fifo/agent.yaml is a FIFO, not a regular file
    invalid test/no-py
      - agent.py: is missing
    ");
    let named = agenthub(&ctx)
        .args(["validate", "test/demo", "test/no-py", "--json"])
        .timeout(LIMIT)
        .output()
        .unwrap();
    let agents: Vec<Json> = json_of(&named).as_array().unwrap().iter().map(|v| v["agent"].clone()).collect();
    assert_eq!(agents, [json!("test/demo"), json!("test/no-py")]);
    assert_eq!(named.status.code(), Some(1));
}

#[test]
fn validate_is_safe_on_hostile_directories() {
    let (ctx, work) = workdir();
    let dir = init(&ctx, work.path(), "hostile");
    std::fs::remove_file(dir.join("agent.py")).unwrap();
    let path = std::ffi::CString::new(dir.join("agent.py").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a valid C string.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
    std::os::unix::fs::symlink("..", dir.join("parent")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../x", dir.join("dangling")).unwrap();
    // The environment's interpreter links leave the directory by design: not reported.
    std::fs::create_dir_all(dir.join(".venv.d/build/bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", dir.join(".venv.d/build/bin/python")).unwrap();
    std::fs::write(dir.join("huge.bin"), vec![0u8; 4 << 20]).unwrap();
    let out = run(&ctx, work.path(), &["validate", "./hostile"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(redact(&out.stdout, work.path()), @r"
    invalid ./hostile
      - agent.py: [DIR]/hostile/agent.py is a FIFO, not a regular file
      - dangling: dangling symlink to ../../../../../../../../x, outside the agent directory
      - loop: symlink loop (through loop)
      - parent: symlink to .. leaves the agent directory (it resolves to [DIR])
    ");
    assert_eq!(run(&ctx, work.path(), &["validate", "--bogus"]).status.code(), Some(2));
}

#[test]
fn init_json_names_what_it_wrote() {
    let (ctx, work) = workdir();
    let out = run(&ctx, work.path(), &["init", "jsonic", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["name"], "jsonic");
    assert_eq!(v["path"], "jsonic");
    assert_eq!(v["files"], json!(["jsonic/agent.yaml", "jsonic/agent.py", "jsonic/README.md"]));
    assert!(v["class"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
}
