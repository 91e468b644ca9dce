//! The journal `<home>/history.pending`: where a process that is about to exit leaves its
//! last records, one JSON line each, instead of opening the database.
//!
//! Why: a one-shot `agenthub exec` writes one record and exits. Opening `SQLite` in WAL mode
//! from a new process rebuilds the log's index by reading the whole log (`SQLite` truncates
//! the shared-memory file when no one has it open), and a recovered index forgets what was
//! already checkpointed, so every process re-copied the whole log (and fsynced) or let it
//! grow: 2–3.5 ms of CPU and ~2 ms of wall time per call, measured in steady state. An
//! append is one `open`, one `write` and one `close`.
//!
//! Appenders hold a shared `flock` on the journal for their one `write`. A fold first
//! *detaches* the journal: under an exclusive `flock`, held only for a `rename`, it becomes
//! `history.pending.folding` (an appender that opened the old file sees, once it holds its
//! lock, that the path names another file, and opens the new one). The detached file is then
//! read, inserted in one transaction (`INSERT OR IGNORE` by run id, so a fold cut short
//! before the file's removal inserts nothing twice) and removed, under an exclusive `flock`
//! of its own that appenders never wait for. A fold that cannot write the database leaves
//! the detached file for the next one.
//!
//! Every append starts with a newline: a line torn by an appender that was killed mid-write
//! (or a full disk) never swallows the next record. Lines that are not records are counted.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::record::RunRecord;

/// The journal's file name in the home.
pub const JOURNAL_FILE: &str = "history.pending";

/// The name of a journal detached for folding.
const FOLDING_FILE: &str = "history.pending.folding";

/// Journal size past which the appender whose append crossed it folds the journal in.
pub(crate) const FOLD_AT: u64 = 8 << 20;

/// Journal size at which it takes no more records (its database cannot be written).
pub(crate) const MAX_JOURNAL: u64 = 32 << 20;

/// Bytes of a detached journal read by a fold at most; more (only concurrent appenders that
/// all passed the size check at once could write it) are counted as dropped.
const MAX_READ: u64 = 2 * MAX_JOURNAL;

/// How long an appender waits for a `rename` in progress, or a fold for an appender's write.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The journal of the home whose database is `db`.
pub(crate) fn path_beside(db: &Path) -> PathBuf {
    db.with_file_name(JOURNAL_FILE)
}

/// Opens `path` (creating it, mode 0600, for `create`), never through a symlink, and only if
/// it is a regular file of this user with one link (a hard link to another file would have
/// that file written and removed). `Ok(None)`: there is none.
fn open(path: &Path, create: bool) -> std::io::Result<Option<File>> {
    let mut options = std::fs::OpenOptions::new();
    if create {
        options.append(true).create(true).mode(0o600);
    } else {
        options.read(true);
    }
    let file = match options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path) {
        Ok(file) => file,
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.nlink() != 1 || meta.uid() != me {
        return Err(std::io::Error::other("not a regular file of this user with a single link"));
    }
    Ok(Some(file))
}

/// Whether `path` names the file `file` is.
fn names(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
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

/// What an append did.
#[derive(Debug)]
pub(crate) enum Appended {
    /// Written; the journal's size before and after.
    Written { before: u64, after: u64, unwritable: usize },
    /// Not written: the journal is at [`MAX_JOURNAL`].
    Full,
}

/// Appends `records` as one write. Records that cannot be written as JSON are left out and
/// counted (`unwritable`).
pub(crate) fn append(path: &Path, records: &[RunRecord]) -> std::io::Result<Appended> {
    let mut lines = Vec::with_capacity(1 + records.iter().map(RunRecord::approx_bytes).sum::<usize>());
    lines.push(b'\n');
    let mut unwritable = 0;
    for record in records {
        let start = lines.len();
        if serde_json::to_writer(&mut lines, record).is_ok() {
            lines.push(b'\n');
        } else {
            lines.truncate(start);
            unwritable += 1;
        }
    }
    if let Some(home) = path.parent() {
        std::fs::create_dir_all(home)?;
    }
    // The path may be renamed away for folding between our open and our lock: then again.
    let mut file = None;
    for _ in 0..8 {
        let f = open(path, true)?.ok_or_else(|| std::io::Error::other("no journal"))?;
        lock(&f, false, true)?;
        if names(path, &f) {
            file = Some(f);
            break;
        }
    }
    let mut file = file.ok_or_else(|| std::io::Error::other("the journal kept being renamed"))?;
    let before = file.metadata()?.len();
    if before + lines.len() as u64 > MAX_JOURNAL {
        return Ok(Appended::Full);
    }
    file.write_all(&lines)?;
    Ok(Appended::Written { before, after: before + lines.len() as u64, unwritable })
}

/// Whether there are records to fold (cheap `stat`s).
pub(crate) fn has_records(journal: &Path) -> bool {
    let some = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0);
    some(journal) || some(&journal.with_file_name(FOLDING_FILE))
}

/// What a fold did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Folded {
    /// Records inserted (or found there already).
    pub records: usize,
    /// Lines that were not records (a damaged file), and records beyond [`MAX_READ`]:
    /// dropped.
    pub dropped: usize,
}

/// Folds the journal into the database `conn`: a journal detached by a fold cut short
/// first, then the journal itself. Errors leave what was not folded where it was.
pub(crate) fn fold(conn: &mut Connection, journal: &Path) -> Result<Folded, String> {
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
        return Err("the database is read-only".to_owned());
    }
    let folding = journal.with_file_name(FOLDING_FILE);
    let mut folded = Folded::default();
    for _ in 0..2 {
        let detached_before = std::fs::symlink_metadata(&folding).is_ok();
        if !detached_before {
            detach(journal, &folding)?;
        }
        let done = fold_detached(conn, &folding)?;
        folded.records += done.records;
        folded.dropped += done.dropped;
        if !detached_before {
            break;
        }
    }
    Ok(folded)
}

/// Renames a journal with records to `folding`, under an exclusive lock (appenders hold a
/// shared one for a `write`).
fn detach(journal: &Path, folding: &Path) -> Result<(), String> {
    let Some(file) = open(journal, false).map_err(|e| e.to_string())? else { return Ok(()) };
    lock(&file, true, true).map_err(|e| format!("cannot lock {}: {e}", journal.display()))?;
    if names(journal, &file) && file.metadata().map_or(0, |m| m.len()) > 0 {
        std::fs::rename(journal, folding).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Inserts the records of the detached journal `folding` and removes it.
fn fold_detached(conn: &mut Connection, folding: &Path) -> Result<Folded, String> {
    let Some(mut file) = open(folding, false).map_err(|e| e.to_string())? else {
        return Ok(Folded::default());
    };
    // Another fold at work on it: it is that fold's.
    if lock(&file, true, false).is_err() || !names(folding, &file) {
        return Ok(Folded::default());
    }
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let mut text = Vec::new();
    (&mut file).take(MAX_READ).read_to_end(&mut text).map_err(|e| e.to_string())?;
    let mut folded = Folded::default();
    if size > MAX_READ {
        // Records of ~1 KiB: a count of what was not read, to say in a warning.
        folded.dropped += usize::try_from((size - MAX_READ) / 1024).unwrap_or(usize::MAX).max(1);
    }
    let mut records = Vec::new();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<RunRecord>(line) {
            Ok(record) => records.push(record),
            Err(_) => folded.dropped += 1,
        }
    }
    if !records.is_empty() {
        crate::store::insert(conn, &records).map_err(|e| e.to_string())?;
    }
    folded.records = records.len();
    // Ours: the journal this fold (or one cut short) detached, a regular file of this user
    // with one link, still at its path, read whole and inserted.
    std::fs::remove_file(folding).map_err(|e| e.to_string())?;
    Ok(folded)
}
