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
