//! Helpers shared by this crate's test binaries (each includes this file as a module).
//! Kept here rather than taken from `agenthub-testkit`, which depends on the crates built
//! on this one: the process crate's tests must build while those are being adapted.

#![allow(dead_code, unreachable_pub, reason = "each test binary uses a different subset")]

use std::path::PathBuf;
use std::sync::OnceLock;

/// Pids of live (non-zombie) processes whose command line contains `token`.
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

/// Pids of live (non-zombie) processes whose environment holds `AGENTHUB_RUN_ID=<run_id>`
/// (any run id starting with `run_id_prefix`).
pub fn marked(run_id_prefix: &str) -> Vec<u32> {
    let needle = format!("{}={run_id_prefix}", agenthub_process::RUN_ID_VAR);
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if pid == std::process::id() {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie && environ.split(|&b| b == 0).any(|var| var.starts_with(needle.as_bytes())) {
            found.push(pid);
        }
    }
    found
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

/// Whether this process runs as root (some containment cases need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
