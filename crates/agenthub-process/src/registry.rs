//! The agents running right now: in memory for this runtime, and as records in a run
//! directory so that a later runtime can clean up after one that was killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::{containment, linux};

/// Pids (also process-group ids) of the running children, with their run ids.
#[derive(Debug, Default)]
pub struct ProcessRegistry {
    running: Mutex<BTreeMap<u32, String>>,
    run_dir: Option<PathBuf>,
}

impl ProcessRegistry {
    /// An in-memory registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that also keeps a record file per running agent in `run_dir`
    /// (`<run id>` holding the pid), created on first use.
    pub fn with_run_dir(run_dir: PathBuf) -> Self {
        Self { running: Mutex::default(), run_dir: Some(run_dir) }
    }

    /// Records a running child; `on_disk` also writes its record file (not needed when a
    /// cgroup already records the call).
    pub(crate) fn register(&self, pid: u32, run_id: &str, on_disk: bool) {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).insert(pid, run_id.to_owned());
        if let Some(dir) = self.run_dir.as_ref().filter(|_| on_disk) {
            let write = || std::fs::write(dir.join(run_id), format!("{pid}\n"));
            if write().is_err() && std::fs::create_dir_all(dir).is_ok() {
                let _ = write();
            }
        }
    }

    pub(crate) fn unregister(&self, pid: u32) {
        let run_id = self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&pid);
        if let (Some(dir), Some(run_id)) = (&self.run_dir, run_id) {
            let _ = std::fs::remove_file(dir.join(run_id));
        }
    }

    /// The pids running now.
    pub fn running(&self) -> Vec<u32> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).keys().copied().collect()
    }

    /// Kills the process group of every registered child; returns how many there were.
    ///
    /// The backends reap their own children when they notice the exit.
    pub fn kill_all(&self) -> usize {
        let pids = self.running();
        for &pid in &pids {
            linux::kill_group(pid, libc::SIGKILL);
        }
        pids.len()
    }

    /// Kills what records of runtimes that are gone describe (the process group, and
    /// processes marked with the run id), then removes the records; returns how many.
    pub fn clear_stale_records(&self) -> usize {
        self.run_dir.as_deref().map_or(0, clear_stale_records)
    }
}

fn clear_stale_records(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut cleared = 0;
    for entry in entries.flatten() {
        let Some(run_id) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let owner = run_id.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if owner.is_none_or(linux::pid_alive) {
            continue; // a live runtime's call in flight (or not a record of ours)
        }
        if let Some(pid) =
            std::fs::read_to_string(entry.path()).ok().and_then(|t| t.trim().parse::<u32>().ok())
        {
            linux::kill_group(pid, libc::SIGKILL);
        }
        containment::kill_marked(&run_id);
        if std::fs::remove_file(entry.path()).is_ok() {
            cleared += 1;
        }
    }
    cleared
}
