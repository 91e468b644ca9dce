//! Looking at real processes from tests.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Live, non-zombie processes whose command line contains `token`: what a test that
/// tags its agent's children looks for to prove none survived.
pub fn survivors(token: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie && cmdline.windows(token.len()).any(|w| w == token.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// The host pid of the live process that is `pid` in the PID namespace `ns` (`pid:[…]`, as
/// `/proc/self/ns/pid` reads inside it); `None` when none runs (gone, or a zombie). A
/// sandboxed agent's `os.getpid()` is its own namespace's (2 for every agent): tests that
/// ask an agent for its pid have it say `[os.getpid(), os.readlink("/proc/self/ns/pid")]`
/// and read that back with [`reported_pid`] or [`reported_alive`].
pub fn host_pid(pid: u64, ns: &str) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).find(|host| {
        let same_ns =
            std::fs::read_link(format!("/proc/{host}/ns/pid")).is_ok_and(|l| l.to_str() == Some(ns));
        let status = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        let inner =
            field("NSpid:").and_then(|l| l.split_whitespace().last()).and_then(|p| p.parse::<u64>().ok());
        same_ns && inner == Some(pid) && !field("State:").is_some_and(|s| s.starts_with('Z'))
    })
}

/// The host pid of the process that said `[pid, "pid:[…]"]` of itself (see [`host_pid`]);
/// panics when it said something else or no such process runs.
pub fn reported_pid(said: &serde_json::Value) -> u32 {
    let (Some(pid), Some(ns)) = (said[0].as_u64(), said[1].as_str()) else {
        panic!("not [pid, pid namespace]: {said}")
    };
    host_pid(pid, ns).unwrap_or_else(|| panic!("no process is {said}"))
}

/// Whether the process that said `[pid, "pid:[…]"]` of itself still runs.
pub fn reported_alive(said: &serde_json::Value) -> bool {
    let (Some(pid), Some(ns)) = (said[0].as_u64(), said[1].as_str()) else {
        panic!("not [pid, pid namespace]: {said}")
    };
    host_pid(pid, ns).is_some()
}

/// The real Python interpreter behind `python3` on PATH (`sys.executable`, not a shim).
pub fn real_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = std::process::Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .expect("python3 on PATH");
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// The requirement the MCP tests install: the official Python SDK, at the version the
/// original's agents were written against or later.
pub const PYTHON_MCP_REQUIREMENT: &str = "mcp>=1.14,<2";

/// A Python interpreter that can `import mcp` (the official Python MCP SDK, 1.x), for tests
/// that drive agenthub's MCP servers with the real client or serve tools with the real
/// server. In this repository that is the 1.x client `scripts/ensure-mcp-clients` installs
/// (`$AGENTHUB_MCP_CLIENTS/v1`, else `target/mcp-clients/v1`; `scripts/test` runs it first);
/// elsewhere one made once per machine with `uv` (on PATH) in the system temporary
/// directory, built beside and renamed into place, so concurrent test processes never see a
/// half-made one. Panics when it cannot be made.
pub fn python_mcp() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let clients = std::env::var_os("AGENTHUB_MCP_CLIENTS").map_or_else(
                || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-clients"),
                PathBuf::from,
            );
            let installed = clients.join("v1").join("bin").join("python");
            if installed.is_file() {
                return installed;
            }
            let root = std::env::temp_dir().join("agenthub-test-python-mcp-v1");
            let python = root.join("bin").join("python");
            if python.is_file() {
                return python;
            }
            let building =
                std::env::temp_dir().join(format!("agenthub-test-python-mcp-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&building);
            let run = |args: &[&std::ffi::OsStr]| {
                let out = std::process::Command::new("uv")
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .expect("uv on PATH (source scripts/ensure-python-tools)");
                assert!(out.status.success(), "uv {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            };
            run(&[
                "venv".as_ref(),
                "--quiet".as_ref(),
                "--python".as_ref(),
                real_python().as_os_str(),
                building.as_os_str(),
            ]);
            let built = building.join("bin").join("python");
            run(&[
                "pip".as_ref(),
                "install".as_ref(),
                "--quiet".as_ref(),
                "--python".as_ref(),
                built.as_os_str(),
                PYTHON_MCP_REQUIREMENT.as_ref(),
            ]);
            // The venv's scripts name their interpreter by path: a renamed venv keeps a
            // working `bin/python` (a symlink to the base), which is all the tests use.
            if std::fs::rename(&building, &root).is_err() {
                // Another process made it first.
                let _ = std::fs::remove_dir_all(&building);
            }
            assert!(python.is_file(), "no {} after building it", python.display());
            python
        })
        .clone()
}
