//! Run history: every call of every entry point as one row of `<home>/history.db`
//! (`SQLite`), and the queries behind `agenthub runs` and `agenthub stats`.
//!
//! The runtime only emits: it hands a [`RunRecord`] to a [`Recorder`], which queues it
//! (bounded in records and bytes, no I/O on the call's path) for a thread of its own that
//! writes batches in one transaction each. A process's last batch, when it has not opened
//! the database yet (a one-shot `agenthub exec`), is appended to the journal
//! `<home>/history.pending` instead, and folded into the database by the next reader or
//! long-lived writer (`journal.rs` says why). [`History`] is the read side, for the CLI.
//!
//! Invariants:
//! - recording never fails or slows a call: a database that is locked past the busy
//!   timeout, read-only, full, corrupt or a symlink costs one warning per process that
//!   tries it, and the records go to the journal until it can be written (the journal takes
//!   at most 32 MiB; records refused are counted in a warning of their own);
//! - many processes may write at once (WAL, a busy timeout, a retried transaction): none
//!   loses a record to another;
//! - parameters and results are stored only with `history.record_payloads`, cut at
//!   [`MAX_PAYLOAD_BYTES`]; the stderr tail at [`MAX_STDERR_BYTES`];
//! - the database and the journal are only ever opened by their paths in the home without
//!   following a symlink (the journal only as a regular file of this user with one link);
//!   nothing but rows of the one (retention, `runs prune`) is ever deleted, and of the other
//!   only a detached journal (`history.pending.folding`) once a fold has inserted it.

mod journal;
mod query;
mod record;
mod store;
mod writer;

pub use journal::JOURNAL_FILE;
pub use query::{
    EnvironmentBuilds, ErrorCount, GroupStats, History, LatencySplit, RunFilter, RunSummary, Stats,
    StatsFilter,
};
pub use record::{Durations, MAX_PAYLOAD_BYTES, MAX_STDERR_BYTES, RunRecord, cap_text};
pub use store::{DB_FILE, PruneReport, Retention};
pub use writer::Recorder;

use std::path::PathBuf;

/// What went wrong reading or pruning the history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `SQLite` refused.
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// What `SQLite` said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database cannot be opened for writing.
    #[error("cannot write {}: {message}", path.display())]
    Unwritable {
        /// The database.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The id given matches no record.
    #[error("no run with id `{0}` in the history")]
    NotFound(String),
    /// The id given is the prefix of more than one record's.
    #[error("`{prefix}` is the start of {count} run ids")]
    Ambiguous {
        /// What was given.
        prefix: String,
        /// How many match.
        count: usize,
    },
    /// An id that cannot be one (ids are hex digits).
    #[error("`{0}` is not a run id: ids are hex digits (see `agenthub runs`)")]
    BadId(String),
}

impl HistoryError {
    /// What to do about it.
    pub fn suggestion(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!(
                "Check that {} is a readable SQLite database; move it away to start a new history",
                path.display()
            ),
            Self::Unwritable { path, .. } => {
                format!("Check the permissions of {} and of its directory", path.display())
            }
            Self::NotFound(_) | Self::BadId(_) => "List recent runs with `agenthub runs`".to_owned(),
            Self::Ambiguous { .. } => "Give more of the id".to_owned(),
        }
    }
}

impl From<HistoryError> for agenthub_core::AgentRuntimeError {
    fn from(e: HistoryError) -> Self {
        let suggestion = e.suggestion();
        agenthub_core::AgentRuntimeError::NotRun { message: e.to_string(), suggestion }
    }
}

#[cfg(test)]
mod tests;
