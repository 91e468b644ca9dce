//! The journal `<home>/history.pending`: where a process that is about to exit leaves its
//! last records, one JSON line each, instead of opening the database.
//!
//! Why: a one-shot `agenthub exec` writes one record and exits. Opening `SQLite` in WAL mode
//! from a new process rebuilds the log's index by reading the whole log (`SQLite` truncates
//! the shared-memory file when no one has it open), and a recovered index forgets what was
//! already checkpointed, so every process re-copied the whole log (and fsynced) or let it
//! grow: 2–3 ms of CPU and ~2 ms of wall time per call, measured in steady state. An
//! append is one `open`, one `write` and one `close`.
//!
//! The journal is folded into the database ([`ingest`]) by whoever next has it open for a
//! while: a long-lived process's writer before its next batch, `agenthub runs` / `stats` /
//! `runs prune` before they read, and an exiting process whose append took the journal past
//! [`FOLD_AT`] bytes. Appenders hold a shared `flock` for their one `write`, the folder an
//! exclusive one from its read to the truncation, so no record lands between the two.
//! Folding inserts by run id (`INSERT OR IGNORE`): a fold cut short between its commit and
//! the truncation inserts nothing twice when it is done again.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::record::RunRecord;

/// The journal's file name in the home.
pub const JOURNAL_FILE: &str = "history.pending";

/// Journal size past which the process that appended folds it in.
pub(crate) const FOLD_AT: u64 = 8 << 20;

/// Journal bytes read by one fold at most; what is beyond is dropped (a journal this large
/// was not written by agenthub's own appends, which fold at [`FOLD_AT`]).
const MAX_READ: u64 = 64 << 20;

/// How long a fold waits for appenders to let go of the journal.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The journal of the home whose database is `db`.
pub(crate) fn path_beside(db: &Path) -> PathBuf {
    db.with_file_name(JOURNAL_FILE)
}

/// Opens the journal (creating it, mode 0600, for `create`), never through a symlink, and
/// only if it is a regular file. `Ok(None)`: there is none.
fn open(path: &Path, create: bool) -> std::io::Result<Option<File>> {
    let mut options = std::fs::OpenOptions::new();
    if create {
        options.append(true).create(true).mode(0o600);
    } else {
        options.read(true).write(true);
    }
    let file = match options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path) {
        Ok(file) => file,
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(Some(file))
}

/// `flock(2)` on `file`; with `wait`, retried until it is taken or [`LOCK_WAIT`] passed.
fn lock(file: &File, exclusive: bool, wait: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let how = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    let since = Instant::now();
    loop {
        // SAFETY: flock on a descriptor this function borrows; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) || !wait || since.elapsed() >= LOCK_WAIT {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Appends `records` as one write; returns the journal's size after it.
pub(crate) fn append(path: &Path, records: &[RunRecord]) -> std::io::Result<u64> {
    let mut lines = Vec::with_capacity(records.iter().map(RunRecord::approx_bytes).sum());
    for record in records {
        serde_json::to_writer(&mut lines, record).map_err(std::io::Error::other)?;
        lines.push(b'\n');
    }
    let mut file = open(path, true)?.ok_or_else(|| std::io::Error::other("no journal"))?;
    // Shared: appenders do not wait for each other, only for a fold in progress.
    lock(&file, false, true)?;
    file.write_all(&lines)?;
    Ok(file.metadata()?.len())
}

/// Whether the journal has records to fold (a cheap `stat`).
pub(crate) fn has_records(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// What a fold did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Folded {
    /// Records inserted (or found there already).
    pub records: usize,
    /// Lines that were not records (a process killed mid-write, a damaged file): dropped.
    pub bad_lines: usize,
}

/// Folds the journal into the database `conn` and empties it. Lines that are not records
/// are dropped. On any error the journal is left as it was.
pub(crate) fn ingest(conn: &mut Connection, path: &Path) -> Result<Folded, String> {
    let Some(mut file) = open(path, false).map_err(|e| e.to_string())? else { return Ok(Folded::default()) };
    lock(&file, true, true).map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    let mut text = Vec::new();
    (&mut file).take(MAX_READ).read_to_end(&mut text).map_err(|e| e.to_string())?;
    let mut folded = Folded::default();
    let mut records = Vec::new();
    // Under the exclusive lock no append is half done: a last line without its newline is
    // what a killed appender left, and is dropped with the others that do not parse.
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<RunRecord>(line) {
            Ok(record) => records.push(record),
            Err(_) => folded.bad_lines += 1,
        }
    }
    if !records.is_empty() {
        crate::store::insert(conn, &records).map_err(|e| e.to_string())?;
    }
    folded.records = records.len();
    file.set_len(0).map_err(|e| e.to_string())?;
    Ok(folded)
}
