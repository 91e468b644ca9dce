//! The set of agent processes running right now, for cleanup and `is_process_running`.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use crate::unix;

/// Pids (also process-group ids) of the children that are running.
#[derive(Debug, Default)]
pub struct ProcessRegistry {
    running: Mutex<BTreeSet<u32>>,
}

impl ProcessRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn register(&self, pid: u32) {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).insert(pid);
    }

    pub(crate) fn unregister(&self, pid: u32) {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&pid);
    }

    /// The pids running now.
    pub fn running(&self) -> Vec<u32> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect()
    }

    /// Kills the process group of every registered child; returns how many there were.
    ///
    /// The backends reap their own children when they notice the exit.
    pub fn kill_all(&self) -> usize {
        let pids = self.running();
        for &pid in &pids {
            unix::kill_group(pid, libc::SIGKILL);
        }
        pids.len()
    }
}
