//! `agenthub install`, `update`, `remove` and auto-install, against local git repositories
//! only (no network): the new user's walkthrough, and every failure leaving the previous
//! install as it was and nothing half-made behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use agenthub_testkit::{TestContext, survivors};
use serde_json::Value as Json;

use super::command;

/// A command may clone and build an environment.
const LIMIT: Duration = Duration::from_secs(180);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must finish within [`LIMIT`].
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > LIMIT {
            child.kill().unwrap();
            panic!("still running after {LIMIT:?}: {}", text(&child.wait_with_output().unwrap().stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Runs `agenthub ARGS` with the test registry.
fn hub(reg: &Registry, args: &[&str]) -> Output {
    run(command(&reg.ctx, args).env("AGENTHUB_REGISTRY", reg.template()))
}

fn ok(out: &Output) -> &Output {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    out
}

fn json_of(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", text(&out.stdout), text(&out.stderr)))
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

/// A home, plus a directory of git repositories `<ns>/<name>` that the registry template
/// points at with `file://`.
struct Registry {
    ctx: TestContext,
    repos: tempfile::TempDir,
}

impl Registry {
    fn new() -> Self {
        Self {
            ctx: TestContext::new(),
            repos: tempfile::Builder::new().prefix("agenthub-repos-").tempdir().unwrap(),
        }
    }

    fn template(&self) -> String {
        format!("file://{}/{{ns}}/{{name}}", self.repos.path().display())
    }

    fn url(&self, id: &str) -> String {
        format!("file://{}/{id}", self.repos.path().display())
    }

    /// A repository whose agent `greet` answers `<greeting>, <name>.`, committed and tagged.
    fn repo(&self, id: &str, greeting: &str, tag: &str) -> PathBuf {
        let dir = self.repos.path().join(id);
        let fresh = !dir.exists();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("agent.yaml"), MANIFEST).unwrap();
        std::fs::write(dir.join("agent.py"), AGENT.replace("GREETING", greeting)).unwrap();
        if fresh {
            git(&dir, &["init", "-q"]);
        }
        Self::commit(&dir, tag);
        dir
    }

    fn commit(dir: &Path, tag: &str) {
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "--allow-empty", "-m", tag]);
        git(dir, &["tag", tag]);
    }

    fn agent_dir(&self, id: &str) -> PathBuf {
        self.ctx.config().agents_root().join(id)
    }

    /// Hidden entries beside the agents of namespace `ns` other than install locks: what a
    /// failed install must not leave.
    fn leftovers(&self, ns: &str) -> Vec<String> {
        let dir = self.ctx.config().agents_root().join(ns);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') && !n.ends_with(".install.lock"))
            .collect();
        names.sort();
        names
    }

    fn greet(&self, id: &str) -> Output {
        hub(self, &["exec", id, "greet", "name=World", "--json"])
    }
}

const MANIFEST: &str = "name: hello\nversion: 1.0.0\ndescription: says hello\nauthor: t\n\
interface:\n  methods:\n    greet:\n      description: greet someone\n      parameters:\n        \
name: {type: string, required: true}\n";

const AGENT: &str = "import json, sys\n\
def main():\n    req = json.loads(sys.argv[1])\n    \
print(json.dumps({'result': 'GREETING, ' + req['parameters']['name'] + '.'}))\n\
if __name__ == '__main__':\n    main()\n";

#[test]
fn walkthrough_init_validate_exec_install_list_update_remove() {
    let reg = Registry::new();
    let work = tempfile::tempdir().unwrap();
    // A new user writes an agent...
    ok(&run(command(&reg.ctx, &["init", "hello"]).current_dir(work.path())));
    ok(&run(command(&reg.ctx, &["validate", "./hello"]).current_dir(work.path())));
    let out =
        ok(&run(command(&reg.ctx, &["exec", "./hello", "greet", "name=World"]).current_dir(work.path())))
            .stdout
            .clone();
    assert!(text(&out).contains("World"), "{}", text(&out));
    // ...publishes two versions in a git repository...
    reg.repo("acme/hello", "Hello", "v1");
    reg.repo("acme/hello", "Howdy", "v2");
    // ...installs the first by URL and ref.
    let out = hub(&reg, &["install", &format!("{}@v1", reg.url("acme/hello")), "--json"]);
    let installed = json_of(ok(&out));
    assert_eq!(installed["agent"], "acme/hello");
    assert_eq!(installed["record"]["requested_ref"], "v1");
    assert_eq!(installed["record"]["source_kind"], "git");
    assert_eq!(installed["environment_built"], true);
    assert_eq!(installed["replaced"], false);
    assert_eq!(json_of(ok(&reg.greet("acme/hello")))["result"], "Hello, World.");
    let record: Json = serde_json::from_slice(
        &std::fs::read(reg.agent_dir("acme/hello").join(".agenthub-install.json")).unwrap(),
    )
    .unwrap();
    for field in ["agent_name", "github_url", "commit_sha", "requested_ref", "installed_at"] {
        assert!(!record[field].is_null(), "provenance lacks {field}: {record}");
    }
    assert_eq!(record["commit_sha"].as_str().unwrap().len(), 40);
    let list = ok(&hub(&reg, &["list"])).stdout.clone();
    assert!(text(&list).contains("acme/hello"), "{}", text(&list));
    // update to v2: exec sees it.
    let updated = json_of(ok(&hub(&reg, &["update", "acme/hello", "@v2", "--json"])));
    assert_eq!(updated["replaced"], true);
    assert_eq!(updated["record"]["requested_ref"], "v2");
    assert_ne!(updated["record"]["commit_sha"], installed["record"]["commit_sha"]);
    assert_eq!(json_of(ok(&reg.greet("acme/hello")))["result"], "Howdy, World.");
    // remove: gone, with its environment, and nothing left beside it.
    let removed = json_of(ok(&hub(&reg, &["remove", "acme/hello", "--yes", "--json"])));
    assert!(removed["freed_bytes"].as_u64().unwrap() > 0);
    assert!(!reg.agent_dir("acme/hello").exists());
    assert_eq!(reg.leftovers("acme"), Vec::<String>::new());
}

#[test]
fn install_human_output_and_already_installed() {
    let reg = Registry::new();
    reg.repo("acme/hello", "Hello", "v1");
    let out = ok(&hub(&reg, &["install", "acme/hello", "--no-env"])).clone();
    assert!(out.stdout.is_empty(), "human output goes to stderr");
    let home = reg.ctx.home().canonicalize().unwrap_or_else(|_| reg.ctx.home().to_path_buf());
    let shown = text(&out.stderr)
        .replace(&home.display().to_string(), "[HOME]")
        .replace(reg.ctx.home().to_str().unwrap(), "[HOME]");
    let shown = regex_lite_redact(&shown);
    insta::assert_snapshot!(shown, @r"
    Installed acme/hello at [SHA] in [SECS]s (environment not built yet)
      [HOME]/agents/acme/hello
    ");
    let again = hub(&reg, &["install", "acme/hello"]);
    assert_eq!(again.status.code(), Some(1));
    insta::assert_snapshot!(text(&again.stderr).replace(reg.ctx.home().to_str().unwrap(), "[HOME]"), @r"
    error: acme/hello is already installed at [HOME]/agents/acme/hello
      help: Run `agenthub update acme/hello`, or pass --force to install over it
    ");
    let forced = json_of(ok(&hub(&reg, &["install", "acme/hello", "--force", "--json"])));
    assert_eq!(forced["replaced"], true);
}

/// Replaces the 12-digit commit prefix and the seconds in install output.
fn regex_lite_redact(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.len() == 12 && word.bytes().all(|b| b.is_ascii_hexdigit()) {
                "[SHA]".to_owned()
            } else if let Some(secs) = word.strip_suffix('s').filter(|w| w.parse::<f64>().is_ok()) {
                let _ = secs;
                "[SECS]s".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_bad_ref_changes_nothing() {
    let reg = Registry::new();
    reg.repo("acme/hello", "Hello", "v1");
    ok(&hub(&reg, &["install", "acme/hello@v1"]));
    let out = hub(&reg, &["update", "acme/hello", "@no-such-tag"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("ref `no-such-tag` was not found"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("git ls-remote"), "{}", text(&out.stderr));
    let json = json_of(&hub(&reg, &["update", "acme/hello", "@no-such-tag", "--json"]));
    assert_eq!(json["error_type"], "RefNotFound", "{json}");
    assert!(json["suggestion"].as_str().unwrap().contains("git ls-remote"), "{json}");
    assert_eq!(json_of(ok(&reg.greet("acme/hello")))["result"], "Hello, World.");
    assert_eq!(reg.leftovers("acme"), Vec::<String>::new());
}

#[test]
fn refs_and_urls_that_could_be_options_never_reach_git() {
    let reg = Registry::new();
    let marker = reg.ctx.home().join("pwned");
    for source in [
        format!("acme/hello@--upload-pack=touch {}", marker.display()),
        "acme/hello@a..b".to_owned(),
        format!("ext::sh -c touch% {}", marker.display()),
        "-oProxyCommand=x/y".to_owned(),
    ] {
        let out = hub(&reg, &["install", "--", &source]);
        assert_eq!(out.status.code(), Some(2), "{source}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("help:"), "{}", text(&out.stderr));
    }
    assert!(!marker.exists());
}

#[test]
fn a_repository_without_a_manifest_is_refused_and_leaves_nothing() {
    let reg = Registry::new();
    let dir = reg.repos.path().join("acme/empty");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("README.md"), "nothing here\n").unwrap();
    git(&dir, &["init", "-q"]);
    Registry::commit(&dir, "v1");
    let out = hub(&reg, &["install", "acme/empty"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not a valid agent"), "{}", text(&out.stderr));
    assert!(!reg.agent_dir("acme/empty").exists());
    assert_eq!(reg.leftovers("acme"), Vec::<String>::new());
}

#[test]
fn an_escaping_symlink_is_refused() {
    let reg = Registry::new();
    let dir = reg.repo("acme/sneaky", "Hello", "v1");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("data.txt")).unwrap();
    Registry::commit(&dir, "v2");
    let out = hub(&reg, &["install", "acme/sneaky@v2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("leaves the agent directory"), "{}", text(&out.stderr));
    assert!(!reg.agent_dir("acme/sneaky").exists());
    assert_eq!(reg.leftovers("acme"), Vec::<String>::new());
}

#[test]
fn a_failing_dependency_keeps_the_previous_version() {
    let reg = Registry::new();
    let dir = reg.repo("acme/hello", "Hello", "v1");
    ok(&hub(&reg, &["install", "acme/hello"]));
    std::fs::write(dir.join("agent.py"), AGENT.replace("GREETING", "Broken")).unwrap();
    std::fs::write(dir.join("requirements.txt"), "--no-index\nagenthub-no-such-package-anywhere==1.0\n")
        .unwrap();
    Registry::commit(&dir, "v2");
    let out = hub(&reg, &["update", "acme/hello"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("could not be built") && err.contains("previous install"), "{err}");
    assert_eq!(json_of(ok(&reg.greet("acme/hello")))["result"], "Hello, World.");
    assert_eq!(reg.leftovers("acme"), Vec::<String>::new());
}

#[test]
fn git_missing_is_a_clear_error() {
    let reg = Registry::new();
    reg.repo("acme/hello", "Hello", "v1");
    let out = run(command(&reg.ctx, &["install", "acme/hello"])
        .env("AGENTHUB_REGISTRY", reg.template())
        .env("PATH", "/nonexistent"));
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(text(&out.stderr), @r"
    error: git was not found on PATH
      help: Install git (e.g. `apt-get install git`, `brew install git`) and make sure it is on PATH
    ");
    assert!(!reg.agent_dir("acme/hello").exists());
}

#[test]
fn two_concurrent_installs_one_wins_the_other_says_so() {
    let reg = Registry::new();
    reg.repo("acme/hello", "Hello", "v1");
    let spawn = || {
        command(&reg.ctx, &["install", "acme/hello"])
            .env("AGENTHUB_REGISTRY", reg.template())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
    assert!(codes.contains(&Some(0)) && codes.contains(&Some(1)), "{codes:?}");
    let loser = outs.iter().find(|o| o.status.code() == Some(1)).unwrap();
    assert!(text(&loser.stderr).contains("already installed"), "{}", text(&loser.stderr));
    assert_eq!(json_of(ok(&reg.greet("acme/hello")))["result"], "Hello, World.");
    assert_eq!(reg.leftovers("acme"), Vec::<String>::new());
}

#[test]
fn sigkill_during_an_install_leaves_a_consistent_home() {
    let reg = Registry::new();
    let dir = reg.repo("acme/hello", "Hello", "v1");
    ok(&hub(&reg, &["install", "acme/hello@v1"]));
    // v2 needs a package from an index that never answers: its build hangs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::fs::write(dir.join("agent.py"), AGENT.replace("GREETING", "Hanging")).unwrap();
    std::fs::write(
        dir.join("requirements.txt"),
        format!("--index-url http://127.0.0.1:{port}/simple\nagenthub-slow==1\n"),
    )
    .unwrap();
    Registry::commit(&dir, "v2");
    let child = command(&reg.ctx, &["update", "acme/hello", "@v2"])
        .env("AGENTHUB_REGISTRY", reg.template())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let staging_of = |reg: &Registry| reg.leftovers("acme");
    let needle = reg.ctx.config().agents_root().join("acme").display().to_string();
    let started = Instant::now();
    // Wait for the installer (uv or pip) of the staged build to run, then kill the CLI.
    while survivors(&format!("{needle}/.hello.staging-")).is_empty() {
        assert!(started.elapsed() < LIMIT, "the staged build never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(staging_of(&reg).len(), 1, "{:?}", staging_of(&reg));
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait_with_output().unwrap();
    let started = Instant::now();
    while !survivors(&format!("{needle}/.hello.staging-")).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "the installer outlived the CLI");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(listener);
    // The next command finds the previous install whole.
    assert_eq!(json_of(ok(&reg.greet("acme/hello")))["result"], "Hello, World.");
    let record: Json = serde_json::from_slice(
        &std::fs::read(reg.agent_dir("acme/hello").join(".agenthub-install.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["requested_ref"], "v1");
    // The next install of it clears what the killed one left.
    std::fs::remove_file(dir.join("requirements.txt")).unwrap();
    Registry::commit(&dir, "v3");
    ok(&hub(&reg, &["update", "acme/hello", "@v3"]));
    assert_eq!(staging_of(&reg), Vec::<String>::new());
    assert_eq!(json_of(ok(&reg.greet("acme/hello")))["result"], "Hanging, World.");
}

#[test]
fn a_directory_installs_as_local_or_as_named_and_hand_made_agents_are_never_replaced() {
    let reg = Registry::new();
    let src = reg.repo("acme/hello", "Hello", "v1");
    let out = json_of(ok(&hub(&reg, &["install", src.to_str().unwrap(), "--no-env", "--json"])));
    assert_eq!(out["agent"], "local/hello");
    assert_eq!(out["record"]["source_kind"], "path");
    assert_eq!(out["record"]["commit_sha"].as_str().map(str::len), Some(40), "{out}");
    assert!(!reg.agent_dir("local/hello").join(".git").exists(), ".git is not copied");
    let named = json_of(ok(&hub(&reg, &["install", src.to_str().unwrap(), "--as", "me/greeter", "--json"])));
    assert_eq!(named["agent"], "me/greeter");
    assert_eq!(json_of(ok(&reg.greet("me/greeter")))["result"], "Hello, World.");
    // An agent put there by hand is never replaced or removed, not even with --force.
    let by_hand = reg.agent_dir("mine/tool");
    std::fs::create_dir_all(&by_hand).unwrap();
    std::fs::write(by_hand.join("agent.yaml"), MANIFEST).unwrap();
    for args in [
        vec!["install", src.to_str().unwrap(), "--as", "mine/tool", "--force"],
        vec!["remove", "mine/tool", "--yes"],
        vec!["update", "mine/tool"],
    ] {
        let out = hub(&reg, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stderr));
    }
    assert!(by_hand.join("agent.yaml").exists());
    let out = hub(&reg, &["install", src.to_str().unwrap(), "--as", "mine/tool", "--force"]);
    assert!(text(&out.stderr).contains("was not installed by agenthub"), "{}", text(&out.stderr));
}

#[test]
fn remove_asks_or_needs_yes() {
    let reg = Registry::new();
    reg.repo("acme/hello", "Hello", "v1");
    ok(&hub(&reg, &["install", "acme/hello", "--no-env"]));
    let out = hub(&reg, &["remove", "acme/hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    assert!(reg.agent_dir("acme/hello").exists());
    let out = hub(&reg, &["remove", "acme/nothing", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not installed"), "{}", text(&out.stderr));
    ok(&hub(&reg, &["remove", "acme/hello", "-y"]));
    assert!(!reg.agent_dir("acme/hello").exists());
}

#[test]
fn exec_installs_on_first_use_unless_turned_off_and_never_for_paths() {
    let reg = Registry::new();
    reg.repo("acme/hello", "Hello", "v1");
    let off = run(command(&reg.ctx, &["exec", "acme/hello", "greet", "name=World", "--json"])
        .env("AGENTHUB_REGISTRY", reg.template())
        .env("AGENTHUB_AUTO_INSTALL", "false"));
    assert_eq!(json_of(&off)["error_type"], "AgentNotFoundError");
    assert!(!reg.agent_dir("acme/hello").exists());
    let out = reg.greet("acme/hello");
    assert_eq!(json_of(ok(&out))["result"], "Hello, World.");
    assert!(
        text(&out.stderr).contains("acme/hello is not installed: installing it from file://"),
        "{}",
        text(&out.stderr)
    );
    let second = reg.greet("acme/hello");
    assert!(!text(&second.stderr).contains("installing"), "{}", text(&second.stderr));
    // -q silences the notice.
    ok(&hub(&reg, &["remove", "acme/hello", "--yes"]));
    let quiet = hub(&reg, &["-q", "exec", "acme/hello", "greet", "name=World", "--json"]);
    assert_eq!(json_of(ok(&quiet))["result"], "Hello, World.");
    assert!(text(&quiet.stderr).is_empty(), "{}", text(&quiet.stderr));
    // A repository that does not exist: still AgentNotFoundError, saying why.
    let missing = reg.greet("acme/nope");
    let v = json_of(&missing);
    assert_eq!(v["error_type"], "AgentNotFoundError");
    assert!(v["error"].as_str().unwrap().contains("installing it from"), "{v}");
    // A path is never installed.
    let path = reg.greet("./acme/hello");
    assert_eq!(json_of(&path)["error_type"], "AgentNotFoundError");
    assert!(!text(&path.stderr).contains("installing"));
}

/// Runs `agenthub ARGS` in a pseudo-terminal (Python's `pty`), typing `input` once the
/// terminal shows a prompt (`: ` or `] `); what the terminal showed.
fn in_pty(reg: &Registry, args: &[&str], input: &str) -> String {
    let script = "import os, pty, sys, time, select\n\
pid, fd = pty.fork()\n\
if pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n\
data = b''\n\
sent = False\n\
deadline = time.time() + 120\n\
while time.time() < deadline:\n    \
r, _, _ = select.select([fd], [], [], 0.2)\n    \
if not sent and (b': ' in data or b'] ' in data):\n        os.write(fd, os.environ['PTY_INPUT'].encode()); sent = True\n    \
if r:\n        \
try:\n            chunk = os.read(fd, 65536)\n        except OSError:\n            break\n        \
if not chunk:\n            break\n        data += chunk\n\
os.waitpid(pid, 0)\n\
sys.stdout.buffer.write(data)\n";
    let bin = assert_cmd::cargo::cargo_bin("agenthub");
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(bin)
        .args(args)
        .env("AGENTHUB_HOME", reg.ctx.home())
        .env("AGENTHUB_REGISTRY", reg.template())
        .env("AGENTHUB_LOG_LEVEL", "WARN")
        .env("PTY_INPUT", input)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn progress_is_drawn_on_a_terminal_and_never_on_a_pipe() {
    let reg = Registry::new();
    reg.repo("acme/hello", "Hello", "v1");
    let shown = in_pty(&reg, &["install", "acme/hello"], "");
    assert!(shown.contains("Installed acme/hello"), "{shown:?}");
    assert!(shown.contains("creating environment"), "the spinner showed no step: {shown:?}");
    assert!(shown.contains('\x1b'), "no terminal drawing: {shown:?}");
    ok(&hub(&reg, &["remove", "acme/hello", "--yes"]));
    let piped = run(command(&reg.ctx, &["install", "acme/hello", "--color", "always"])
        .env("AGENTHUB_REGISTRY", reg.template()));
    ok(&piped);
    let err = text(&piped.stderr);
    assert!(!err.contains("creating environment"), "a pipe got progress: {err:?}");
    assert!(!err.contains("\x1b[2K") && !err.contains('\r'), "a pipe got terminal drawing: {err:?}");
    // -v prints the steps as lines on a pipe, and streams what the tools print.
    ok(&hub(&reg, &["remove", "acme/hello", "--yes"]));
    let verbose = ok(&hub(&reg, &["-v", "install", "acme/hello"])).stderr.clone();
    assert!(text(&verbose).contains("  creating environment\n"), "{}", text(&verbose));
    assert!(text(&verbose).contains("Cloning into"), "-v streams git's own output: {}", text(&verbose));
}

#[test]
fn exec_interactive_asks_for_each_parameter_by_type() {
    let reg = Registry::new();
    let work = tempfile::tempdir().unwrap();
    ok(&run(command(&reg.ctx, &["init", "calc"]).current_dir(work.path())));
    let agent = work.path().join("calc");
    let shown = in_pty(&reg, &["exec", agent.to_str().unwrap(), "add", "-i"], "2\r40\r");
    assert!(shown.contains("a (number, required)") && shown.contains("b (number, required)"), "{shown:?}");
    assert!(shown.contains("42"), "{shown:?}");
    let piped = run(&mut command(&reg.ctx, &["exec", agent.to_str().unwrap(), "add", "-i"]));
    assert_eq!(piped.status.code(), Some(2), "{}", text(&piped.stderr));
    assert!(text(&piped.stderr).contains("terminal"));
}

#[test]
fn remove_asks_on_a_terminal_and_keeps_the_agent_unless_told_yes() {
    let reg = Registry::new();
    reg.repo("acme/hello", "Hello", "v1");
    ok(&hub(&reg, &["install", "acme/hello", "--no-env"]));
    let shown = in_pty(&reg, &["remove", "acme/hello"], "n\r");
    assert!(shown.contains("Remove acme/hello and its environments? [y/N]"), "{shown:?}");
    assert!(shown.contains("Nothing removed."), "{shown:?}");
    assert!(reg.agent_dir("acme/hello").exists());
    let shown = in_pty(&reg, &["remove", "acme/hello"], "y\r");
    assert!(shown.contains("Removed acme/hello"), "{shown:?}");
    assert!(!reg.agent_dir("acme/hello").exists());
}

#[test]
fn a_record_that_came_with_the_agent_proves_nothing() {
    let reg = Registry::new();
    let dir = reg.repo("evil/rec", "Hello", "v1");
    let forged = serde_json::json!({
        "agent_name": "evil/rec", "github_url": "/etc", "commit_sha": null, "requested_ref": null,
        "installed_at": "2026-01-01T00:00:00Z", "source": "/etc", "source_kind": "path",
        "agenthub_version": "0.1.0", "install_id": "00000000000000000000000000000000"
    });
    std::fs::write(dir.join(".agenthub-install.json"), forged.to_string()).unwrap();
    // A repository may also ship what only agenthub makes: an environment and its lock.
    std::os::unix::fs::symlink("/usr", dir.join(".venv")).unwrap();
    std::fs::write(dir.join(".venv.lock"), "").unwrap();
    Registry::commit(&dir, "v2");
    // Cloned by hand into the agents directory: agenthub never replaces or removes it.
    let by_hand = reg.agent_dir("evil/rec");
    std::fs::create_dir_all(by_hand.parent().unwrap()).unwrap();
    git(by_hand.parent().unwrap(), &["clone", "-q", dir.to_str().unwrap(), "rec"]);
    std::fs::write(by_hand.join("NOTES.txt"), "my edits").unwrap();
    for args in [vec!["update", "evil/rec"], vec!["remove", "evil/rec", "--yes"]] {
        let out = hub(&reg, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("not one this agenthub home wrote"), "{}", text(&out.stderr));
    }
    assert_eq!(std::fs::read_to_string(by_hand.join("NOTES.txt")).unwrap(), "my edits");
    std::fs::remove_dir_all(&by_hand).unwrap();
    // Installed by agenthub, what came with the repository is replaced by its own.
    let out = json_of(ok(&hub(&reg, &["install", "evil/rec", "--json"])));
    assert_eq!(out["record"]["source_kind"], "git");
    assert_ne!(out["record"]["install_id"], "00000000000000000000000000000000");
    let venv = std::fs::read_link(by_hand.join(".venv")).unwrap();
    assert!(venv.starts_with(".venv.d"), "the repository's .venv was kept: {venv:?}");
    assert_eq!(json_of(ok(&reg.greet("evil/rec")))["result"], "Hello, World.");
    ok(&hub(&reg, &["remove", "evil/rec", "--yes"]));
}

/// A wheel `tool-1.0` whose console script `tool` prints `tool ran`, in `dir`.
fn tool_wheel(dir: &Path) {
    let script = r#"
import sys, zipfile
files = {
    "tool/__init__.py": "def main():\n    print('tool ran')\n",
    "tool-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tool\nVersion: 1.0\n",
    "tool-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "tool-1.0.dist-info/entry_points.txt": "[console_scripts]\ntool = tool:main\n",
}
record = "".join(name + ",,\n" for name in files) + "tool-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1] + "/tool-1.0-py3-none-any.whl", "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
    z.writestr("tool-1.0.dist-info/RECORD", record)
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn console_scripts_of_the_environment_work_after_the_swap() {
    let reg = Registry::new();
    let wheels = reg.repos.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    tool_wheel(&wheels);
    let dir = reg.repo("acme/cs", "Hello", "v1");
    std::fs::write(
        dir.join("agent.py"),
        "import json, os, subprocess, sys\n\
         def main():\n    \
         tool = os.path.join(os.path.dirname(sys.executable), 'tool')\n    \
         out = subprocess.run([tool], capture_output=True, text=True)\n    \
         print(json.dumps({'result': out.stdout.strip() or out.stderr.strip()}))\n\
         if __name__ == '__main__':\n    main()\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("requirements.txt"),
        format!("--no-index\n--find-links {}\ntool==1.0\n", wheels.display()),
    )
    .unwrap();
    Registry::commit(&dir, "v2");
    ok(&hub(&reg, &["install", "acme/cs"]));
    assert_eq!(json_of(ok(&reg.greet("acme/cs")))["result"], "tool ran");
    ok(&hub(&reg, &["install", "acme/cs", "--force"]));
    assert_eq!(json_of(ok(&reg.greet("acme/cs")))["result"], "tool ran");
}

#[test]
fn a_full_commit_id_is_that_commit_even_if_a_branch_is_named_like_it() {
    let reg = Registry::new();
    let dir = reg.repo("pin/tool", "Good", "v1");
    let good = String::from_utf8(
        Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&dir).output().unwrap().stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    std::fs::write(dir.join("agent.py"), AGENT.replace("GREETING", "Evil")).unwrap();
    Registry::commit(&dir, "v2");
    git(&dir, &["branch", &good]);
    let out = json_of(ok(&hub(&reg, &["install", &format!("pin/tool@{good}"), "--json"])));
    assert_eq!(out["record"]["commit_sha"], good.as_str());
    assert_eq!(json_of(ok(&reg.greet("pin/tool")))["result"], "Good, World.");
}

#[test]
fn update_fetches_from_where_the_agent_came_from() {
    let reg = Registry::new();
    let work = tempfile::tempdir().unwrap();
    let (w1, w2) = (work.path().join("w1"), work.path().join("w2"));
    for (w, greeting) in [(&w1, "One"), (&w2, "Two")] {
        std::fs::create_dir_all(w.join("myagent")).unwrap();
        std::fs::write(w.join("myagent/agent.yaml"), MANIFEST).unwrap();
        std::fs::write(w.join("myagent/agent.py"), AGENT.replace("GREETING", greeting)).unwrap();
    }
    ok(&run(command(&reg.ctx, &["install", "./myagent", "--no-env"]).current_dir(&w1)));
    std::fs::write(w1.join("myagent/agent.py"), AGENT.replace("GREETING", "One again")).unwrap();
    ok(&run(command(&reg.ctx, &["update", "local/myagent"]).current_dir(&w2)));
    assert_eq!(json_of(ok(&reg.greet("local/myagent")))["result"], "One again, World.");
    // A registry install updates from its recorded URL, whatever the registry says now.
    reg.repo("acme/hello", "Hello", "v1");
    ok(&hub(&reg, &["install", "acme/hello", "--no-env"]));
    let moved = run(command(&reg.ctx, &["update", "acme/hello"])
        .env("AGENTHUB_REGISTRY", "file:///nonexistent/{ns}/{name}"));
    ok(&moved);
    let bad = hub(&reg, &["remove", "acme/../x", "--yes"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
}

/// Runs git in `dir` with `input` on stdin; its stdout, trimmed.
fn git_in(dir: &Path, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// A directory that is a git repository whose own `.git/config` and `.gitattributes` run
/// a script writing to `marker` from every git command in it (`core.fsmonitor`, a filter
/// and diff driver, `diff.external`, hooks); armed after its one commit. Its HEAD commit.
fn trapped_repository(src: &Path, marker: &Path) -> String {
    std::fs::create_dir_all(src).unwrap();
    std::fs::write(src.join("agent.yaml"), MANIFEST).unwrap();
    std::fs::write(src.join("agent.py"), AGENT.replace("GREETING", "Hello")).unwrap();
    std::fs::write(src.join(".gitattributes"), "* filter=evil diff=evil\n").unwrap();
    git(src, &["init", "-q"]);
    Registry::commit(src, "v1");
    let head = git_in(src, &["rev-parse", "HEAD"], "");
    let trap = src.parent().unwrap().join("trap.sh");
    std::fs::write(&trap, format!("#!/bin/sh\necho \"$0 $*\" >> '{}'\ncat\n", marker.display())).unwrap();
    std::fs::set_permissions(&trap, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hooks = src.parent().unwrap().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for hook in ["post-checkout", "post-index-change", "reference-transaction", "fsmonitor-watchman"] {
        std::os::unix::fs::symlink(&trap, hooks.join(hook)).unwrap();
    }
    let config = std::fs::read_to_string(src.join(".git/config")).unwrap();
    let t = trap.display();
    let config = config
        + &format!(
            "[core]\n\tfsmonitor = {t}\n\thooksPath = {}\n\tsshCommand = {t}\n\
         [filter \"evil\"]\n\tclean = {t}\n\tsmudge = {t}\n\
         [diff \"evil\"]\n\ttextconv = {t}\n[diff]\n\texternal = {t}\n",
            hooks.display()
        );
    std::fs::write(src.join(".git/config"), config).unwrap();
    head
}

#[test]
fn installing_a_directory_runs_nothing_from_its_git_repository() {
    let reg = Registry::new();
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().join("pwned");
    let src = work.path().join("trapped");
    let head = trapped_repository(&src, &marker);
    let install = |args: &[&str]| json_of(ok(&run(command(&reg.ctx, args).current_dir(work.path()))));
    let out = install(&["install", "./trapped", "--no-env", "--json"]);
    assert_eq!(out["record"]["commit_sha"], head.as_str(), "{out}");
    assert!(!marker.exists(), "install ran: {}", std::fs::read_to_string(&marker).unwrap_or_default());
    let out = install(&["update", "local/trapped", "--json"]);
    assert_eq!(out["record"]["commit_sha"], head.as_str(), "{out}");
    assert!(!marker.exists(), "update ran: {}", std::fs::read_to_string(&marker).unwrap_or_default());
    // A copy that is not its commit records none.
    std::fs::write(src.join("agent.py"), AGENT.replace("GREETING", "Changed")).unwrap();
    let out = install(&["update", "local/trapped", "--json"]);
    assert_eq!(out["record"]["commit_sha"], Json::Null, "{out}");
    assert!(!marker.exists(), "update ran: {}", std::fs::read_to_string(&marker).unwrap_or_default());
    // A `.git` file (a worktree's pointer) is an unknown commit, not an error.
    let pointer = work.path().join("pointer");
    std::fs::create_dir_all(&pointer).unwrap();
    std::fs::write(pointer.join("agent.yaml"), MANIFEST).unwrap();
    std::fs::write(pointer.join("agent.py"), AGENT.replace("GREETING", "Hi")).unwrap();
    std::fs::write(pointer.join(".git"), format!("gitdir: {}/.git\n", src.display())).unwrap();
    let out = install(&["install", "./pointer", "--no-env", "--json"]);
    assert_eq!(out["record"]["commit_sha"], Json::Null, "{out}");
    assert!(!marker.exists(), "install ran: {}", std::fs::read_to_string(&marker).unwrap_or_default());
    // The trap is real: git itself, run in the directory, springs it.
    let _ = Command::new("git").args(["status"]).current_dir(&src).output().unwrap();
    assert!(marker.exists(), "the test's trap does not work");
}

#[test]
fn exec_never_installs_an_id_that_is_also_a_directory_here() {
    let reg = Registry::new();
    // The registry has it: an auto-install would succeed and run the stranger's code.
    reg.repo("agents/summarizer", "Stranger", "v1");
    let work = tempfile::tempdir().unwrap();
    let mine = work.path().join("agents/summarizer");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("agent.yaml"), MANIFEST).unwrap();
    std::fs::write(mine.join("agent.py"), AGENT.replace("GREETING", "Mine")).unwrap();
    let exec = |agent: &str, cwd: &Path| {
        run(command(&reg.ctx, &["exec", agent, "greet", "name=World", "--json"])
            .env("AGENTHUB_REGISTRY", reg.template())
            .current_dir(cwd))
    };
    let out = exec("agents/summarizer", work.path());
    let v = json_of(&out);
    assert_eq!(v["error_type"], "AgentNotFoundError", "{v}");
    assert!(v["error"].as_str().unwrap().contains("./agents/summarizer"), "{v}");
    assert!(!text(&out.stderr).contains("installing"), "{}", text(&out.stderr));
    assert!(!reg.agent_dir("agents/summarizer").exists(), "the registry's agent was installed");
    // Written as a path, the directory runs.
    assert_eq!(json_of(ok(&exec("./agents/summarizer", work.path())))["result"], "Mine, World.");
    // Where no such directory is, the id installs on first use as before.
    let elsewhere = tempfile::tempdir().unwrap();
    assert_eq!(json_of(ok(&exec("agents/summarizer", elsewhere.path())))["result"], "Stranger, World.");
}

/// Tags `tag` in the repository `dir`: `base`'s tree plus `data`, the tree `data` names.
fn tag_with_data(dir: &Path, base: &str, tag: &str, data: &str) {
    let top = git_in(dir, &["ls-tree", base], "") + &format!("\n040000 tree {data}\tdata\n");
    let tree = git_in(dir, &["mktree"], &top);
    let commit = git_in(dir, &["commit-tree", &tree, "-p", base, "-m", tag], "");
    git(dir, &["tag", tag, &commit]);
}

#[test]
fn a_repository_too_large_to_check_out_is_refused_before_checkout() {
    let reg = Registry::new();
    let dir = reg.repo("acme/big", "Hello", "v1");
    ok(&hub(&reg, &["install", "acme/big@v1", "--no-env"]));
    let small = git_in(&dir, &["hash-object", "-w", "--stdin"], "x");
    // 1.1 GiB checked out from a fetch of kilobytes: one blob of zeros, 100 times.
    std::fs::write(dir.join("zeros"), vec![0u8; 11 << 20]).unwrap();
    let zeros = git_in(&dir, &["hash-object", "-w", "zeros"], "");
    std::fs::remove_file(dir.join("zeros")).unwrap();
    let lines = |n: usize, mode: &str, oid: &str| -> String {
        (0..n).fold(String::new(), |lines, i| lines + &format!("{mode} {oid}\tf{i}\n"))
    };
    let bytes = git_in(&dir, &["mktree"], &lines(100, "100644 blob", &zeros));
    tag_with_data(&dir, "v1", "bytes", &bytes);
    // 102 000 entries: 1000 directories of 101 files, all one tree.
    let hundred = git_in(&dir, &["mktree"], &lines(101, "100644 blob", &small));
    let entries = git_in(&dir, &["mktree"], &lines(1000, "040000 tree", &hundred));
    tag_with_data(&dir, "v1", "entries", &entries);
    // 70 levels of directories.
    let mut deep = git_in(&dir, &["mktree"], &format!("100644 blob {small}\tf\n"));
    for _ in 0..70 {
        deep = git_in(&dir, &["mktree"], &format!("040000 tree {deep}\td\n"));
    }
    tag_with_data(&dir, "v1", "depth", &deep);
    let record = || -> Json {
        serde_json::from_slice(
            &std::fs::read(reg.agent_dir("acme/big").join(".agenthub-install.json")).unwrap(),
        )
        .unwrap()
    };
    for (tag, says) in [("bytes", "bytes"), ("entries", "entries"), ("depth", "levels")] {
        let started = Instant::now();
        let out = hub(&reg, &["update", "acme/big", &format!("@{tag}"), "--json"]);
        assert_eq!(out.status.code(), Some(1), "{tag}: {}", text(&out.stderr));
        let v = json_of(&out);
        assert_eq!(v["error_type"], "TooLarge", "{tag}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{tag}: {v}");
        assert!(v["suggestion"].as_str().unwrap().contains("1 GiB"), "{tag}: {v}");
        assert!(started.elapsed() < Duration::from_secs(60), "{tag}: checked out before refusing?");
        // The previous install is as it was, and nothing was left beside it.
        assert_eq!(record()["requested_ref"], "v1", "{tag}");
        assert!(!reg.agent_dir("acme/big").join("data").exists(), "{tag}");
        assert_eq!(reg.leftovers("acme"), Vec::<String>::new(), "{tag}");
    }
    // A first install refused leaves nothing either.
    let out = hub(&reg, &["install", "acme/big@depth", "--as", "other/big", "--no-env"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("levels"), "{}", text(&out.stderr));
    assert!(!reg.ctx.config().agents_root().join("other").exists());
}
