//! The sandbox against a hostile child: each escape is tried from inside, and the test
//! checks the child was stopped and the rest of the call still worked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agenthub_process::sandbox::{Sandbox, SandboxNetwork, probe};
use agenthub_process::{ExitStatus, ProcessLimits, ProcessSpec};

use crate::{python, run_std, run_tokio};

/// The interpreter's prefix (`…/versions/3.11.7` or `/usr`): what the child must read.
fn python_prefix() -> PathBuf {
    let real = std::fs::canonicalize(python()).unwrap();
    real.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn sandboxed(code: &str, dir: &Path, sandbox: Sandbox) -> ProcessSpec {
    let mut spec = ProcessSpec::new(python(), dir).args(["-c", code]);
    spec.limits = ProcessLimits { timeout: Some(Duration::from_secs(20)), ..ProcessLimits::default() };
    spec.sandbox = Some(sandbox);
    spec
}

fn base(dir: &Path) -> Sandbox {
    Sandbox { read: vec![python_prefix(), dir.to_path_buf()], ..Sandbox::default() }
}

/// Runs `code` (which prints one JSON object) and returns it.
fn probe_json(code: &str, dir: &Path, sandbox: Sandbox) -> serde_json::Value {
    let out = run_std(&sandboxed(code, dir, sandbox));
    assert_eq!(out.status, ExitStatus::Exited(0), "stderr: {}", String::from_utf8_lossy(&out.stderr_tail));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

const TRY: &str = r#"
import json, os, sys, socket
results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = "allowed"
    except Exception as e:
        results[name] = type(e).__name__ + ": " + str(e)[:120]
"#;

#[test]
fn a_hostile_child_reads_and_writes_only_what_it_was_given() {
    let home = tempfile::tempdir().unwrap();
    let secret = home.path().join(".ssh");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("id_ed25519"), "PRIVATE KEY").unwrap();
    std::fs::write(home.path().join(".bashrc"), "# mine\n").unwrap();
    let agent = home.path().join("agent");
    std::fs::create_dir(&agent).unwrap();
    std::fs::write(agent.join("agent.py"), "print('hi')\n").unwrap();
    let writable = home.path().join("agent-home");
    std::fs::create_dir(&writable).unwrap();
    let code = format!(
        r#"{TRY}
h = {home:?}
attempt("read_key", lambda: open(h + "/.ssh/id_ed25519").read())
attempt("list_home", lambda: os.listdir(h))
attempt("write_bashrc", lambda: open(h + "/.bashrc", "a").write("evil"))
attempt("write_agent", lambda: open({agent:?} + "/agent.py", "a").write("evil"))
attempt("read_agent", lambda: open({agent:?} + "/agent.py").read())
attempt("write_home", lambda: open({writable:?} + "/cache", "w").write("ok"))
attempt("write_tmp", lambda: open(os.environ["TMPDIR"] + "/x", "w").write("ok"))
attempt("proc_root_escape", lambda: open("/proc/1/root" + h + "/.ssh/id_ed25519").read())
attempt("hardlink_out", lambda: os.link(h + "/.ssh/id_ed25519", {writable:?} + "/stolen"))
attempt("symlink_out", lambda: (os.symlink(h + "/.ssh/id_ed25519", {writable:?} + "/s"), open({writable:?} + "/s").read()))
print(json.dumps(results))
"#,
        home = home.path().to_str().unwrap(),
        agent = agent.to_str().unwrap(),
        writable = writable.to_str().unwrap(),
    );
    let mut sandbox = base(&agent);
    sandbox.write = vec![writable.clone()];
    let got = probe_json(&code, &agent, sandbox);
    let layers = probe();
    if layers.landlock_abi.is_some() {
        for denied in ["read_key", "list_home", "write_bashrc", "write_agent", "hardlink_out", "symlink_out"]
        {
            assert_ne!(got[denied], "allowed", "{denied} was allowed: {got:#}");
        }
    }
    for allowed in ["read_agent", "write_home", "write_tmp"] {
        assert_eq!(got[allowed], "allowed", "{allowed}: {got:#}");
    }
    assert_ne!(got["proc_root_escape"], "allowed", "{got:#}");
    assert_eq!(std::fs::read_to_string(home.path().join(".bashrc")).unwrap(), "# mine\n");
    assert_eq!(std::fs::read_to_string(agent.join("agent.py")).unwrap(), "print('hi')\n");
}

#[test]
fn a_hostile_child_sees_only_its_own_processes_and_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outside = std::process::id();
    let code = format!(
        r#"{TRY}
import ctypes
pids = [p for p in os.listdir("/proc") if p.isdigit()]
results["pids"] = sorted(int(p) for p in pids)
results["me"] = os.getpid()
attempt("signal_outside", lambda: os.kill({outside}, 0))
attempt("connect_host_loopback", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2))
attempt("connect_public", lambda: socket.create_connection(("1.1.1.1", 443), timeout=2))
libc = ctypes.CDLL(None, use_errno=True)
r = libc.ptrace(16, 1, 0, 0)  # PTRACE_ATTACH to the init
results["ptrace"] = "allowed" if r == 0 else os.strerror(ctypes.get_errno())
r = libc.unshare(0x10000000)
results["unshare"] = "allowed" if r == 0 else os.strerror(ctypes.get_errno())
s = socket.socket(socket.AF_UNIX)
attempt("abstract_socket", lambda: s.connect("\0agenthub-test-abstract"))
print(json.dumps(results))
"#
    );
    // A host service on an abstract unix socket.
    let abstract_listener = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(b"agenthub-test-abstract").unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    let got = probe_json(&code, dir.path(), base(dir.path()));
    drop((listener, abstract_listener));
    let layers = probe();
    if layers.namespaces {
        assert_eq!(got["me"], 2, "the agent is PID 2 under the sandbox's init: {got:#}");
        assert!(got["pids"].as_array().unwrap().len() <= 3, "{got:#}");
        assert_ne!(got["signal_outside"], "allowed");
        assert_ne!(got["connect_host_loopback"], "allowed");
        assert_ne!(got["connect_public"], "allowed");
        assert_ne!(got["abstract_socket"], "allowed");
    }
    assert_ne!(got["ptrace"], "allowed");
    assert_ne!(got["unshare"], "allowed");
}

#[test]
fn the_agent_exits_as_it_would_without_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_std(&sandboxed(
        "import sys; print('out'); sys.stderr.write('err'); sys.exit(7)",
        dir.path(),
        base(dir.path()),
    ));
    assert_eq!(out.status, ExitStatus::Exited(7));
    assert_eq!(out.stdout, b"out\n");
    assert!(String::from_utf8_lossy(&out.stderr_tail).contains("err"));
    let out = run_tokio(&sandboxed(
        "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
        dir.path(),
        base(dir.path()),
    ));
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGTERM), "{out:?}");
}

#[test]
fn a_timeout_ends_the_whole_sandbox_and_its_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("agenthub-sandbox-daemon-{}", std::process::id());
    // The daemon is `sleep 300` named by the token (`sleep 300 TOKEN` would refuse the token
    // and exit at once); the agent says so once the daemon runs.
    let code = format!(
        "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['{token}', '300'])\n\
         for _ in range(500):\n    if any(p.isdigit() and b'{token}' in open('/proc/%s/cmdline' % p, 'rb').read() for p in os.listdir('/proc')):\n        break\n    time.sleep(0.01)\n\
         else:\n    sys.exit('the daemon never started')\nprint('daemon up', flush=True)\ntime.sleep(300)\n"
    );
    let mut spec = sandboxed(&code, dir.path(), base(dir.path()));
    spec.limits.timeout = Some(Duration::from_secs(3));
    let out = run_std(&spec);
    assert_eq!(out.termination, Some(agenthub_process::Termination::Timeout));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "daemon up",
        "{}",
        String::from_utf8_lossy(&out.stderr_tail)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !crate::survivors(&token).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(crate::survivors(&token).is_empty());
}

#[test]
fn listeners_made_inside_reach_the_host_through_the_hook() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let got: Arc<Mutex<Vec<(u16, std::net::TcpListener)>>> = Arc::default();
    let slot = Arc::clone(&got);
    let mut sandbox = base(dir.path());
    sandbox.network = SandboxNetwork::IsolatedWith(vec![3128]);
    sandbox.on_listeners = Some(agenthub_process::sandbox::ListenerHook(Arc::new(move |listeners| {
        let (port, listener) = listeners.into_iter().next().unwrap();
        let thread_listener = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = thread_listener.accept() {
                let mut buf = [0u8; 4];
                let _ = conn.read_exact(&mut buf);
                let _ = conn.write_all(b"pong");
            }
        });
        slot.lock().unwrap().push((port, listener));
        Box::new(())
    })));
    let code = "import socket\ns = socket.create_connection(('127.0.0.1', 3128), timeout=5)\ns.sendall(b'ping')\nprint(s.recv(4).decode())";
    let out = run_std(&sandboxed(code, dir.path(), sandbox));
    if probe().namespaces {
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "pong",
            "{}",
            String::from_utf8_lossy(&out.stderr_tail)
        );
        assert_eq!(got.lock().unwrap()[0].0, 3128);
    }
}
