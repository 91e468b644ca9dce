//! [`Recorder`]: records handed over on the call's path, written by a thread of its own.
//!
//! The hand-over is a vector behind a mutex, not a channel: a channel wakes its receiver at
//! every record, and on a busy machine that wake-up (and the writer's turn on a CPU) lands
//! between a caller and its worker. Here the writer is woken only when a record finds the
//! queue empty; it then waits [`WINDOW`] for more and writes them all in one transaction,
//! so under load it runs a few times a second. A flush or the recorder's end wakes it at
//! once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode};

use crate::journal;
use crate::record::RunRecord;
use crate::store::{self, Retention};

/// Records waiting for the writer at most, and their bytes at most; more are dropped (and
/// counted) rather than held: a writer that falls behind never grows the caller's memory.
const QUEUE: usize = 8192;
const QUEUE_BYTES: usize = 64 << 20;

/// Records that make the writer go at once rather than wait out its window.
const BATCH: usize = 1024;

/// How long the writer waits for more records after the first, to write them together.
const WINDOW: Duration = Duration::from_millis(100);

/// How often a long-lived writer applies retention.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// After a failed write, how long the writer leaves records in the journal before it tries
/// the database again.
const BACK_OFF: Duration = Duration::from_secs(60);

/// How long dropping a [`Recorder`] waits for its last records to be written (one write
/// under the busy timeout, and the database's opening).
const DRAIN_WAIT: Duration = Duration::from_secs(3);

/// What one automatic retention pass may take (more is left for the next).
const PRUNE_BUDGET: Duration = Duration::from_millis(200);

/// One warning per process about the history, whatever goes wrong how often; and one more
/// when records are dropped (a first warning may have said that none were).
static WARNED: AtomicBool = AtomicBool::new(false);
static WARNED_DROPPED: AtomicBool = AtomicBool::new(false);

/// What the callers hand the writer.
#[derive(Default)]
struct Queue {
    records: Vec<RunRecord>,
    /// Their size, roughly ([`RunRecord::approx_bytes`]).
    bytes: usize,
    flushes: Vec<SyncSender<()>>,
    /// The recorder is gone: write what is queued and end.
    closed: bool,
    /// The writer sleeps until woken (nothing was queued).
    idle: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes [`RunRecord`]s to `<home>/history.db` off the caller's path: [`Self::record`]
/// only queues (no I/O, no lock held across I/O), a thread started at the first record
/// writes. Dropping the recorder waits a few seconds at most for queued records.
pub struct Recorder {
    path: PathBuf,
    retention: Retention,
    record_payloads: bool,
    shared: Arc<Shared>,
    /// The writer thread, started at the first record; `None` inside when it could not be.
    writer: OnceLock<Option<Thread>>,
    done: Mutex<Option<Receiver<()>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Recorder {
    /// The recorder of the home `home`, `None` when `history.enabled` is off.
    pub fn new(home: &Path, config: &agenthub_core::HistoryConfig) -> Option<Self> {
        config.enabled.then(|| Self {
            path: store::db_path(home),
            retention: Retention::from_config(config),
            record_payloads: config.record_payloads,
            shared: Arc::new(Shared { queue: Mutex::new(Queue::default()), dropped: AtomicU64::new(0) }),
            writer: OnceLock::new(),
            done: Mutex::new(None),
        })
    }

    /// Whether parameters and results are to be recorded (`history.record_payloads`).
    pub fn records_payloads(&self) -> bool {
        self.record_payloads
    }

    /// The database written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the writer thread if it is not running yet: a call about to run calls this, so
    /// that the thread's start is not on the call's path after its answer. (The database is
    /// opened by the first batch that is not the recorder's last: a one-shot process leaves
    /// its only record in the journal, `journal.rs`.)
    pub fn prepare(&self) {
        let _ = self.writer.get_or_init(|| self.start());
    }

    /// Queues `record` for writing; never blocks on I/O.
    pub fn record(&self, record: RunRecord) {
        let Some(writer) = self.writer.get_or_init(|| self.start()) else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let size = record.approx_bytes();
        let mut queue = self.shared.lock();
        if queue.records.len() >= QUEUE || queue.bytes + size > QUEUE_BYTES {
            drop(queue);
            let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            warn_dropped(&format!(
                "run history: the writer of {} falls behind; {dropped} record(s) dropped",
                self.path.display()
            ));
            return;
        }
        queue.records.push(record);
        queue.bytes += size;
        // An idle writer is woken; one waiting out its window, when a batch is full.
        let wake = std::mem::take(&mut queue.idle) || queue.records.len() == BATCH;
        drop(queue);
        if wake {
            writer.unpark();
        }
    }

    /// Waits until what was queued before is written (or given up on), at most `timeout`.
    /// Returns whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(Some(writer)) = self.writer.get() else { return true };
        let (ack, acked) = std::sync::mpsc::sync_channel(1);
        self.shared.lock().flushes.push(ack);
        writer.unpark();
        acked.recv_timeout(timeout).is_ok()
    }

    /// Records dropped so far (queue full, database not writable).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn start(&self) -> Option<Thread> {
        let (finished, done) = std::sync::mpsc::sync_channel(1);
        let writer = Writer {
            path: self.path.clone(),
            journal: journal::path_beside(&self.path),
            retention: self.retention,
            shared: Arc::clone(&self.shared),
            conn: None,
            failed_at: None,
            commits: HashMap::new(),
        };
        let spawned = std::thread::Builder::new().name("agenthub-history".to_owned()).spawn(move || {
            writer.run();
            let _ = finished.send(());
        });
        match spawned {
            Ok(handle) => {
                *self.done.lock().unwrap_or_else(PoisonError::into_inner) = Some(done);
                Some(handle.thread().clone())
            }
            Err(e) => {
                warn_once(&format!("run history is off: cannot start its writer thread: {e}"));
                None
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let Some(Some(writer)) = self.writer.get() else { return };
        self.shared.lock().closed = true;
        writer.unpark();
        if let Some(done) = self.done.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            match done.recv_timeout(DRAIN_WAIT) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
                Err(RecvTimeoutError::Timeout) => {
                    warn_dropped("run history: gave up waiting for the last records to be written");
                }
            }
        }
    }
}

/// A file's device, inode and modification time: what tells that it changed.
type FileIdentity = (u64, u64, SystemTime);

struct Writer {
    path: PathBuf,
    journal: PathBuf,
    retention: Retention,
    shared: Arc<Shared>,
    conn: Option<(Connection, Instant)>,
    failed_at: Option<Instant>,
    /// Commit of each installed agent directory seen, with the install record's identity.
    commits: HashMap<PathBuf, (Option<FileIdentity>, Option<String>)>,
}

impl Writer {
    fn run(mut self) {
        loop {
            let mut queue = self.shared.lock();
            if queue.records.is_empty() && queue.flushes.is_empty() {
                if queue.closed {
                    return;
                }
                queue.idle = true;
                drop(queue);
                std::thread::park();
                continue;
            }
            // Wait out the window for more, unless someone waits for the writer.
            let since = Instant::now();
            while queue.flushes.is_empty() && !queue.closed && queue.records.len() < BATCH {
                let Some(left) = WINDOW.checked_sub(since.elapsed()).filter(|l| !l.is_zero()) else { break };
                drop(queue);
                std::thread::park_timeout(left);
                queue = self.shared.lock();
            }
            let batch = std::mem::take(&mut queue.records);
            queue.bytes = 0;
            let flushes = std::mem::take(&mut queue.flushes);
            let closing = queue.closed;
            drop(queue);
            if !batch.is_empty() {
                self.write(batch, closing);
            }
            for ack in flushes {
                let _ = ack.send(());
            }
        }
    }

    /// Writes `batch` into the database, or leaves it in the journal: when `closing` (the
    /// recorder is gone and the process may be exiting) and the database is not open yet
    /// (see `journal.rs` for why), or when the database cannot be written.
    fn write(&mut self, mut batch: Vec<RunRecord>, closing: bool) {
        for record in &mut batch {
            if record.commit.is_none()
                && let Some(id) = record.installed_as.clone()
            {
                record.commit = self.commit_of(&id, &record.agent_dir);
            }
        }
        let backing_off = self.failed_at.is_some_and(|at| at.elapsed() < BACK_OFF);
        if (!closing || self.conn.is_some()) && !backing_off {
            match self.insert(&batch, closing) {
                Ok(()) => {
                    self.failed_at = None;
                    if !closing {
                        self.prune_if_due();
                    }
                    return;
                }
                Err(why) if closing => {
                    // Kept in the journal; the next writer or reader tries the database.
                    tracing::debug!(error = %why, "run history: the last records go to the journal");
                }
                Err(why) => {
                    self.failed_at = Some(Instant::now());
                    warn_once(&format!(
                        "run history: cannot write {}: {why}; records are kept in {} until it can be \
                         written (move the file away to start a new history, or set history.enabled: false)",
                        self.path.display(),
                        self.journal.display()
                    ));
                }
            }
        }
        self.leave(&batch);
    }

    /// Inserts `batch`, after folding in what the journal holds unless `closing` (an exit
    /// waits for nothing but the insert); one try when `closing`, else a retry after a busy
    /// timeout.
    fn insert(&mut self, batch: &[RunRecord], closing: bool) -> Result<(), String> {
        self.open()?;
        if !closing && journal::has_records(&self.journal) {
            self.fold();
        }
        let Some((conn, _)) = self.conn.as_mut() else { return Err("not open".to_owned()) };
        let mut tries = 0;
        let written = loop {
            tries += 1;
            match store::insert(conn, batch) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if tries < 2
                        && !closing
                        && matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {}
                other => break other,
            }
        };
        written.map_err(|e| {
            // The next write opens the database again (it may have been replaced or fixed).
            self.conn = None;
            e.to_string()
        })
    }

    /// Folds the journal into the database (opening it); says what it had to drop.
    fn fold(&mut self) -> bool {
        let folded = self.open().and_then(|()| {
            let Some((conn, _)) = self.conn.as_mut() else { return Err("not open".to_owned()) };
            journal::fold(conn, &self.journal)
        });
        match folded {
            Ok(folded) => {
                if folded.dropped > 0 {
                    warn_dropped(&format!(
                        "run history: {} line(s) of {} were not records and were dropped",
                        folded.dropped,
                        self.journal.display()
                    ));
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "run history: the journal was not folded in");
                false
            }
        }
    }

    /// Appends `batch` to the journal. The append that takes the journal past
    /// [`journal::FOLD_AT`] folds it in; a full journal ([`journal::MAX_JOURNAL`]) is folded
    /// in once before the records are dropped. Neither while the database is known to fail.
    fn leave(&mut self, batch: &[RunRecord]) {
        let backing_off = self.failed_at.is_some_and(|at| at.elapsed() < BACK_OFF);
        let mut appended = journal::append(&self.journal, batch);
        if matches!(appended, Ok(journal::Appended::Full)) && !backing_off && self.fold() {
            appended = journal::append(&self.journal, batch);
        }
        match appended {
            Ok(journal::Appended::Written { before, after, unwritable }) => {
                if unwritable > 0 {
                    self.failed(unwritable, "records that cannot be written as JSON");
                }
                if before <= journal::FOLD_AT && after > journal::FOLD_AT && !backing_off {
                    self.fold();
                }
            }
            Ok(journal::Appended::Full) => {
                self.failed(batch.len(), &format!("{} is full", self.journal.display()));
            }
            Err(e) => self.failed(batch.len(), &format!("cannot append to {}: {e}", self.journal.display())),
        }
    }

    /// Applies retention when an hour has passed since the last prune (of any process).
    fn prune_if_due(&mut self) {
        let Some((conn, pruned)) = self.conn.as_mut() else { return };
        if pruned.elapsed() < PRUNE_EVERY {
            return;
        }
        *pruned = Instant::now();
        let now = now_ms();
        let every = i64::try_from(PRUNE_EVERY.as_millis()).unwrap_or(i64::MAX);
        // A stamp from the future (a clock that was ahead) is due too.
        let due = store::last_prune(conn)
            .ok()
            .flatten()
            .is_none_or(|at| at > now || now.saturating_sub(at) >= every);
        if due && let Err(e) = store::prune(conn, self.retention, now, Some(PRUNE_BUDGET)) {
            tracing::debug!(error = %e, "run history: retention failed");
        }
    }

    /// Opens the database unless it is open.
    fn open(&mut self) -> Result<(), String> {
        if self.conn.is_none() {
            let conn = store::open_write(&self.path).map_err(|e| e.to_string())?;
            // Retention is due at once (the last prune's time is in the database).
            self.conn = Some((conn, Instant::now().checked_sub(PRUNE_EVERY).unwrap_or_else(Instant::now)));
        }
        Ok(())
    }

    /// Counts `count` records as dropped, and says so once.
    fn failed(&self, count: usize, why: &str) {
        let dropped = self.shared.dropped.fetch_add(count as u64, Ordering::Relaxed) + count as u64;
        warn_dropped(&format!(
            "run history: {why}; {dropped} record(s) dropped, calls go on (move {} away to start a new \
             history, or set history.enabled: false)",
            self.path.display()
        ));
    }

    /// The commit of the agent installed as `id` in `dir`: what its install record names,
    /// when that record is this home's (its install id is in `<home>/installs/<id>.json`:
    /// anything else in the directory could have come with the agent) and the commit is a
    /// git object id. Read once per change of the agent's record.
    fn commit_of(&mut self, id: &str, dir: &Path) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        if dir.as_os_str().is_empty() {
            return None;
        }
        let file = Path::new(agenthub_core::INSTALL_RECORD_FILE);
        let identity = std::fs::symlink_metadata(dir.join(file))
            .ok()
            .map(|m| (m.dev(), m.ino(), m.modified().unwrap_or(UNIX_EPOCH)));
        if let Some((seen, commit)) = self.commits.get(dir)
            && *seen == identity
        {
            return commit.clone();
        }
        let commit = identity.and_then(|_| {
            let text =
                agenthub_core::read_agent_file(dir, file, agenthub_core::MAX_INSTALL_RECORD_BYTES).ok()??;
            let record = serde_json::from_str::<agenthub_core::InstallRecord>(&text).ok()?;
            let agent_id = id.parse::<agenthub_core::AgentId>().ok()?;
            let install_id = record.install_id.filter(|_| record.agent_name == id)?;
            let home = self.path.parent()?;
            let ours = read_bounded(
                &agenthub_core::home_install_record_path(home, &agent_id),
                agenthub_core::MAX_HOME_INSTALL_RECORD_BYTES,
            )?;
            let ours = serde_json::from_str::<agenthub_core::HomeInstallRecord>(&ours).ok()?;
            ours.ids.contains(&install_id).then_some(())?;
            record.commit_sha.filter(|c| agenthub_core::is_object_id(c))
        });
        if self.commits.len() > 1024 {
            self.commits.clear();
        }
        self.commits.insert(dir.to_path_buf(), (identity, commit.clone()));
        commit
    }
}

/// A regular file of the home, read whole up to `max` bytes (never through a symlink).
fn read_bounded(path: &Path, max: u64) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

fn warn_once(message: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("{message}");
    }
}

fn warn_dropped(message: &str) {
    if !WARNED_DROPPED.swap(true, Ordering::Relaxed) {
        tracing::warn!("{message}");
    }
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
