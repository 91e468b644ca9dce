//! The database: where it is, its schema, writing a batch, retention.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use serde::Serialize;

use crate::record::{RunRecord, to_ms};

/// The database's file name in the agenthub home.
pub const DB_FILE: &str = "history.db";

/// The schema version this agenthub writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// How long a writer or reader waits for another process's lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    started_at INTEGER NOT NULL,
    agent TEXT NOT NULL,
    agent_dir TEXT NOT NULL,
    version TEXT,
    commit_sha TEXT,
    method TEXT NOT NULL,
    mode TEXT NOT NULL,
    error_type TEXT,
    error_message TEXT,
    total_ms REAL NOT NULL,
    slot_ms REAL,
    environment_ms REAL,
    startup_ms REAL,
    call_ms REAL,
    tools_ms REAL NOT NULL,
    environment_built INTEGER NOT NULL,
    memory_bytes INTEGER,
    exit_code INTEGER,
    signal INTEGER,
    stderr_tail TEXT,
    caller TEXT NOT NULL,
    parent_id TEXT,
    tool_calls INTEGER NOT NULL,
    params TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_agent ON runs (agent, started_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

const INSERT: &str = "INSERT OR IGNORE INTO runs (id, started_at, agent, agent_dir, version, commit_sha, method, \
    mode, error_type, error_message, total_ms, slot_ms, environment_ms, startup_ms, call_ms, tools_ms, \
    environment_built, memory_bytes, exit_code, signal, stderr_tail, caller, parent_id, tool_calls, params, result) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, \
    ?23, ?24, ?25, ?26)";

/// The database of the home `home`.
pub(crate) fn db_path(home: &Path) -> PathBuf {
    home.join(DB_FILE)
}

/// Why the database cannot be written: an `SQLite` error, or a schema from a newer agenthub.
#[derive(Debug)]
pub(crate) enum OpenError {
    Sqlite(rusqlite::Error),
    Io(std::io::Error),
    Newer(i64),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "{e}"),
            Self::Newer(v) => {
                write!(f, "written by a newer agenthub (schema {v}, this one knows {SCHEMA_VERSION})")
            }
        }
    }
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

/// Opens the database for writing, creating it (mode 0600: stderr tails and payloads may
/// hold secrets) and its schema when missing. Never follows a symlink.
pub(crate) fn open_write(path: &Path) -> Result<Connection, OpenError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(OpenError::Io)?;
    }
    // Created here rather than by SQLite, for its mode; SQLite gives the journal files
    // the database file's mode.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(OpenError::Io(e)),
    }
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(OpenError::Newer(version));
    }
    // WAL is the file's own (set once, when the schema is made); commits need no fsync.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The log is truncated to this after a checkpoint (a burst of large records grows it).
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
    // The last connection to close would otherwise copy the log into the database (and
    // fsync) as the process exits; the log is folded in by later commits instead.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    if version < SCHEMA_VERSION {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
    }
    Ok(conn)
}

/// Opens the database for reading; `Ok(None)` when there is none yet.
pub(crate) fn open_read(path: &Path) -> rusqlite::Result<Option<Connection>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let flags =
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Fails here, not at the first query, on a file that is not a database.
    let _: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let has_runs: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs')",
        [],
        |r| r.get(0),
    )?;
    Ok(has_runs.then_some(conn))
}

/// Writes `records` in one transaction.
pub(crate) fn insert(conn: &mut Connection, records: &[RunRecord]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached(INSERT)?;
        for r in records {
            let d = &r.durations;
            st.execute(params![
                r.id,
                r.started_at_ms,
                r.agent,
                r.agent_dir.to_string_lossy(),
                r.version,
                r.commit,
                r.method,
                r.mode,
                r.error_type,
                r.error_message,
                to_ms(d.total),
                d.slot.map(to_ms),
                d.environment.map(to_ms),
                d.startup.map(to_ms),
                d.call.map(to_ms),
                to_ms(d.tools),
                r.environment_built,
                r.memory_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                r.exit_code,
                r.signal,
                r.stderr_tail,
                r.caller,
                r.parent_id,
                r.tool_calls,
                r.params,
                r.result,
            ])?;
        }
    }
    tx.commit()
}

/// How long records are kept (`history.keep_days`, `history.max_rows`; 0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days a record is kept.
    pub keep_days: u64,
    /// Records kept at most.
    pub max_rows: u64,
}

impl Retention {
    /// The configured retention.
    pub fn from_config(config: &agenthub_core::HistoryConfig) -> Self {
        Self { keep_days: config.keep_days, max_rows: config.max_rows }
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Records older than `keep_days`.
    pub removed_by_age: u64,
    /// The oldest records beyond `max_rows`.
    pub removed_by_count: u64,
    /// Records left.
    pub left: u64,
}

/// Rows deleted per transaction: other writers wait for one chunk at most.
const PRUNE_CHUNK: i64 = 10_000;

/// Deletes the records older than `keep_days` before `now_ms`, then all but the newest
/// `max_rows` (by the order they were written), in chunks of [`PRUNE_CHUNK`] rows, each its
/// own transaction; with a `budget`, stops when it is spent (the rest is left for the next
/// prune). The time of the prune is stamped first, so a prune cut short is not retried by
/// every writer that opens the database.
pub(crate) fn prune(
    conn: &Connection,
    retention: Retention,
    now_ms: i64,
    budget: Option<Duration>,
) -> rusqlite::Result<PruneReport> {
    let started = std::time::Instant::now();
    let spent = || budget.is_some_and(|b| started.elapsed() >= b);
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_prune', ?1)", [now_ms])?;
    let mut report = PruneReport::default();
    if retention.keep_days > 0 {
        let days = i64::try_from(retention.keep_days).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(days.saturating_mul(86_400_000));
        loop {
            let n = conn.execute(
                "DELETE FROM runs WHERE seq IN (SELECT seq FROM runs WHERE started_at < ?1 LIMIT ?2)",
                [cutoff, PRUNE_CHUNK],
            )?;
            report.removed_by_age += n as u64;
            if n == 0 || spent() {
                break;
            }
        }
    }
    if retention.max_rows > 0 && !spent() {
        let keep = i64::try_from(retention.max_rows).unwrap_or(i64::MAX);
        loop {
            let n = conn.execute(
                "DELETE FROM runs WHERE seq IN (SELECT seq FROM runs WHERE seq <= \
                 (SELECT max(seq) FROM runs) - ?1 ORDER BY seq LIMIT ?2)",
                [keep, PRUNE_CHUNK],
            )?;
            report.removed_by_count += n as u64;
            if n == 0 || spent() {
                break;
            }
        }
    }
    report.left = conn.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))? as u64;
    Ok(report)
}

/// When the last prune ran, in milliseconds since the epoch.
pub(crate) fn last_prune(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    conn.query_row("SELECT value FROM meta WHERE key = 'last_prune'", [], |r| r.get(0)).optional()
}
