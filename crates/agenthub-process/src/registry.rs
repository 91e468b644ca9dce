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
    /// (`<run id>` holding `<pid> <start time> <boot id>`), created on first use.
    pub fn with_run_dir(run_dir: PathBuf) -> Self {
        Self { running: Mutex::default(), run_dir: Some(run_dir) }
    }

    /// Records a running child; `on_disk` also writes its record file (not needed when a
    /// cgroup already records the call).
    pub(crate) fn register(&self, pid: u32, run_id: &str, on_disk: bool) {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).insert(pid, run_id.to_owned());
        if let Some(dir) = self.run_dir.as_ref().filter(|_| on_disk) {
            // What proves, later, that the pid still names this call's process. Without a
            // start time or a boot id the record is only good for the run-id sweep.
            let start = linux::start_time(pid).map_or_else(|| "-".to_owned(), |t| t.to_string());
            let record = format!("{pid} {start} {}\n", linux::boot_id().unwrap_or("-"));
            let write = || {
                // Never through a symlink in the run directory's place (ours is a directory).
                if !is_real_dir(dir) {
                    return Err(std::io::Error::other("not a directory"));
                }
                std::fs::write(dir.join(run_id), &record)
            };
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

    /// Clears the records of runtimes that are gone, then removes them; returns how many.
    ///
    /// A record's process group is killed only when its pid still names the process the
    /// record was written for: same start time, same boot, and (where its environment can
    /// be read) the call's run id. Processes marked with the run id are killed in any case
    /// (the mark is the proof). A record that cannot be parsed (old format, garbage) is
    /// removed without killing a group.
    pub fn clear_stale_records(&self) -> usize {
        self.run_dir.as_deref().map_or(0, clear_stale_records)
    }

    /// The record files that [`Self::clear_stale_records`] would clear now (their runtime
    /// is gone), without touching them or any process (for `agenthub doctor`).
    pub fn stale_records(&self) -> Vec<PathBuf> {
        let Some(dir) = self.run_dir.as_deref() else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        entries
            .take(MAX_RECORDS)
            .flatten()
            .filter(|entry| {
                entry.file_name().to_str().is_some_and(|run_id| {
                    let owner = run_id.split('-').next().and_then(|p| p.parse::<u32>().ok());
                    is_run_id(run_id) && owner.is_some_and(|pid| !linux::pid_alive(pid))
                })
            })
            .map(|entry| entry.path())
            .collect()
    }
}

/// At most this many directory entries are looked at in one clean-up.
const MAX_RECORDS: usize = 100_000;

/// A record is a few dozen bytes; a bigger file is not one (and is not read).
const MAX_RECORD_BYTES: u64 = 256;

/// What a run record says: the agent's pid and what identified it when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) pid: u32,
    pub(crate) start_time: u64,
    pub(crate) boot_id: String,
}

impl Record {
    /// Parses `<pid> <start time> <boot id>`; `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split_ascii_whitespace();
        let pid = fields.next()?.parse::<u32>().ok().filter(|&p| p > 1 && i32::try_from(p).is_ok())?;
        let start_time = fields.next()?.parse().ok()?;
        let boot_id = fields.next()?;
        if fields.next().is_some()
            || boot_id.len() > 64
            || !boot_id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return None;
        }
        Some(Self { pid, start_time, boot_id: boot_id.to_owned() })
    }

    /// Whether the pid names, now, the process this record was written for.
    fn still_names_its_process(&self, run_id: &str) -> bool {
        linux::boot_id() == Some(self.boot_id.as_str())
            && linux::start_time(self.pid) == Some(self.start_time)
            && containment::carries_run_id(self.pid, run_id) != Some(false)
    }
}

/// Whether `name` looks like a run id (`<pid>-<counter>-<nanos>`).
fn is_run_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    name.len() <= 64
        && parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads a record file without following a symlink, without blocking on a FIFO, and at
/// most [`MAX_RECORD_BYTES`] of it; `None` for anything but a small regular file of text.
fn read_record(path: &Path) -> Option<String> {
    String::from_utf8(agenthub_fs::read_bounded(path, MAX_RECORD_BYTES).ok()?).ok()
}

/// Whether `dir` is a directory itself, not a symlink to one.
fn is_real_dir(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
}

fn clear_stale_records(dir: &Path) -> usize {
    if !is_real_dir(dir) {
        return 0; // a symlink in its place is not ours to sweep through
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut cleared = 0;
    for entry in entries.take(MAX_RECORDS).flatten() {
        let Some(run_id) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if !is_run_id(&run_id) {
            continue; // not a record of ours
        }
        let owner = run_id.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if owner.is_none_or(linux::pid_alive) {
            continue; // a live runtime's call in flight
        }
        if let Some(record) = read_record(&entry.path()).as_deref().and_then(Record::parse)
            && record.still_names_its_process(&run_id)
        {
            linux::kill_group(record.pid, libc::SIGKILL);
        }
        containment::kill_marked(&run_id, None);
        if std::fs::remove_file(entry.path()).is_ok() {
            cleared += 1;
        }
    }
    cleared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_parsed_defensively() {
        let good = Record::parse("1234 5678 0b5e9c1e-5a4f-4d5c-9c8e-1f2a3b4c5d6e\n").unwrap();
        assert_eq!(good.pid, 1234);
        assert_eq!(good.start_time, 5678);
        for bad in [
            "",
            "1234\n",
            "1234 5678",
            "0 1 abc",
            "1 1 abc",
            "99999999999 1 abc",
            "-5 1 abc",
            "12 x abc",
            "12 1 not/hex",
            "12 1 abc extra",
            "\u{0}\u{ff}garbage",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
        assert!(is_run_id("123-0-456"));
        for bad in ["", "123", "a-b-c", "1--2", "../1-2-3", "1-2-3-4"] {
            assert!(!is_run_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_symlinked_run_directory_is_neither_swept_nor_written_through() {
        let home = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        // Named like a record of a runtime that is gone (pid 0 is never a live process).
        let victim = elsewhere.path().join("999999999-0-1");
        std::fs::write(&victim, "not a record").unwrap();
        let run = home.path().join("run");
        std::os::unix::fs::symlink(elsewhere.path(), &run).unwrap();
        let registry = ProcessRegistry::with_run_dir(run.clone());
        assert_eq!(registry.clear_stale_records(), 0);
        assert!(victim.exists(), "a file was removed through the symlink");
        registry.register(std::process::id(), "1-2-3", true);
        assert!(!elsewhere.path().join("1-2-3").exists(), "a record was written through the symlink");
        // A real directory is swept as before.
        std::fs::remove_file(&run).unwrap();
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("999999999-0-1"), "not a record").unwrap();
        assert_eq!(ProcessRegistry::with_run_dir(run.clone()).clear_stale_records(), 1);
    }
}
