//! Integration tests of both process backends against real child processes.

mod backends;

use std::path::PathBuf;
use std::sync::OnceLock;

use agenthub_process::{ProcessBackend, ProcessOutput, ProcessSpec, StdProcessBackend, TokioProcessBackend};

/// The real Python interpreter (not a pyenv shim), found once.
pub(crate) fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = std::process::Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .expect("python3 on PATH");
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        })
        .clone()
}

/// A spec running `python -c code args...` in the temp dir.
pub(crate) fn py(code: &str) -> ProcessSpec {
    ProcessSpec::new(python(), std::env::temp_dir()).args(["-c", code])
}

pub(crate) fn run_std(spec: &ProcessSpec) -> ProcessOutput {
    pollster::block_on(StdProcessBackend.run(spec)).expect("std backend runs the child")
}

pub(crate) fn run_tokio(spec: &ProcessSpec) -> ProcessOutput {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(TokioProcessBackend.run(spec)).expect("tokio backend runs the child")
}

/// Pids of live processes whose command line contains `token`.
pub(crate) fn survivors(token: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
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
