//! The read side: [`History`], for `agenthub runs` and `agenthub stats`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use serde::Serialize;

use crate::HistoryError;
use crate::record::{Durations, RunRecord};
use crate::store::{self, PruneReport, Retention};

/// Which runs `agenthub runs` lists.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this agent's (its id, or its directory).
    pub agent: Option<String>,
    /// Only failed calls.
    pub failed: bool,
    /// Only calls started at or after this time (milliseconds since the epoch).
    pub since_ms: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// One line of `agenthub runs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The call's id.
    pub id: String,
    /// When it started (milliseconds since the epoch).
    pub started_at_ms: i64,
    /// The agent.
    pub agent: String,
    /// The method.
    pub method: String,
    /// `oneshot`, `warm`, `isolated` or `ray`.
    pub mode: String,
    /// `null` for a result, else the error type.
    pub error_type: Option<String>,
    /// From the call to its response, in milliseconds.
    pub total_ms: f64,
    /// Who made the call.
    pub caller: String,
}

/// Which runs `agenthub stats` counts.
#[derive(Debug, Clone, Default)]
pub struct StatsFilter {
    /// Only this agent's.
    pub agent: Option<String>,
    /// Only calls started at or after this time (milliseconds since the epoch).
    pub since_ms: Option<i64>,
}

/// What `agenthub stats` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Calls counted.
    pub calls: u64,
    /// Of which failed.
    pub failed: u64,
    /// `failed / calls` (0 with no calls).
    pub error_rate: f64,
    /// Failed calls by error type, most frequent first.
    pub errors: Vec<ErrorCount>,
    /// Latency per agent, method and mode, by agent, method, mode.
    pub methods: Vec<GroupStats>,
    /// Calls that started a process for themselves (one-shot, or a warm call that waited
    /// for its worker's start); calls that never reached the agent's process (refused
    /// parameters, say) are neither cold nor warm.
    pub cold: LatencySplit,
    /// Calls served by a worker that was already running.
    pub warm: LatencySplit,
    /// Calls that built their agent's environment.
    pub environment_builds: EnvironmentBuilds,
}

/// Calls of one error type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorCount {
    /// The error type.
    pub error_type: String,
    /// How many calls ended with it.
    pub calls: u64,
    /// Its share of all calls counted.
    pub rate: f64,
}

/// Latency of one agent's method in one mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    /// The agent.
    pub agent: String,
    /// The method.
    pub method: String,
    /// The mode.
    pub mode: String,
    /// Calls.
    pub calls: u64,
    /// Of which failed.
    pub failed: u64,
    /// Median total time, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// Calls and their median time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySplit {
    /// Calls.
    pub calls: u64,
    /// Median total time in milliseconds (`null` with no calls).
    pub p50_ms: Option<f64>,
}

/// Environment builds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EnvironmentBuilds {
    /// Calls that built their environment.
    pub builds: u64,
    /// Median time of the environment step of those calls, in milliseconds.
    pub p50_ms: Option<f64>,
}

/// The run history of a home, for reading (and `runs prune`).
pub struct History {
    path: PathBuf,
    conn: Option<Connection>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("path", &self.path).finish_non_exhaustive()
    }
}

const SUMMARY: &str = "SELECT id, started_at, agent, method, mode, error_type, total_ms, caller FROM runs";

impl History {
    /// Opens the history of the home `home` for reading; a home without one reads as empty.
    /// The journal of one-shot calls is folded in first (`journal.rs`).
    pub fn open(home: &Path) -> Result<Self, HistoryError> {
        let path = store::db_path(home);
        fold_journal(&path);
        Self::read(path)
    }

    /// Opens the history without folding the journal in (nor writing anything): for a
    /// reader while `history.enabled` is off.
    pub fn open_unfolded(home: &Path) -> Result<Self, HistoryError> {
        Self::read(store::db_path(home))
    }

    fn read(path: PathBuf) -> Result<Self, HistoryError> {
        let conn =
            store::open_read(&path).map_err(|source| HistoryError::Sqlite { path: path.clone(), source })?;
        Ok(Self { path, conn })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
        |source| HistoryError::Sqlite { path: self.path.clone(), source }
    }

    /// The runs `filter` selects, newest first.
    pub fn list(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, HistoryError> {
        let Some(conn) = &self.conn else { return Ok(Vec::new()) };
        let mut sql = format!("{SUMMARY} WHERE started_at >= ?1");
        sql.push_str(if filter.agent.is_some() { " AND agent = ?2" } else { " AND ?2 = ''" });
        if filter.failed {
            sql.push_str(" AND error_type IS NOT NULL");
        }
        sql.push_str(" ORDER BY started_at DESC, seq DESC LIMIT ?3");
        let mut st = conn.prepare(&sql).map_err(self.err())?;
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = st
            .query_map(
                rusqlite::params![
                    filter.since_ms.unwrap_or(i64::MIN),
                    filter.agent.as_deref().unwrap_or(""),
                    limit
                ],
                summary,
            )
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// The run whose id is `id` or starts with it (at least 4 hex digits).
    pub fn show(&self, id: &str) -> Result<RunRecord, HistoryError> {
        let id = id.trim().to_ascii_lowercase();
        if id.len() < 4 || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HistoryError::BadId(id));
        }
        let Some(conn) = &self.conn else { return Err(HistoryError::NotFound(id)) };
        let mut st =
            conn.prepare("SELECT * FROM runs WHERE id >= ?1 AND id < ?2 LIMIT 2").map_err(self.err())?;
        // Hex ids sort as text: the ids starting with `id` lie in [id, id + "g").
        let found: Vec<RunRecord> = st
            .query_map([&id, &format!("{id}g")], full)
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        match found.len() {
            0 => Err(HistoryError::NotFound(id)),
            1 => Ok(found.into_iter().next().expect("one")),
            _ => {
                let count: i64 = conn
                    .query_row(
                        "SELECT count(*) FROM runs WHERE id >= ?1 AND id < ?2",
                        [&id, &format!("{id}g")],
                        |r| r.get(0),
                    )
                    .map_err(self.err())?;
                Err(HistoryError::Ambiguous { prefix: id, count: count as usize })
            }
        }
    }

    /// The tool calls made by the call `id`'s agent, as runs of their own.
    pub fn children(&self, id: &str) -> Result<Vec<RunSummary>, HistoryError> {
        let Some(conn) = &self.conn else { return Ok(Vec::new()) };
        let mut st =
            conn.prepare(&format!("{SUMMARY} WHERE parent_id = ?1 ORDER BY seq")).map_err(self.err())?;
        let rows = st.query_map([id], summary).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Counts and latencies of the runs `filter` selects.
    pub fn stats(&self, filter: &StatsFilter) -> Result<Stats, HistoryError> {
        let mut groups: HashMap<Vec<u8>, (Vec<f64>, u64)> = HashMap::new();
        let mut names_of: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
        let mut key = Vec::new();
        let mut errors: HashMap<String, u64> = HashMap::new();
        let (mut cold, mut warm, mut builds) = (Vec::new(), Vec::new(), Vec::new());
        let (mut calls, mut failed) = (0u64, 0u64);
        if let Some(conn) = &self.conn {
            let mut sql = "SELECT agent, method, mode, error_type, total_ms, CASE WHEN call_ms IS NULL THEN 0 WHEN startup_ms IS NOT NULL OR mode = 'oneshot' THEN 1 \
                           ELSE 2 END, \
                           environment_built, environment_ms FROM runs WHERE started_at >= ?1"
                .to_owned();
            sql.push_str(if filter.agent.is_some() { " AND agent = ?2" } else { " AND ?2 = ''" });
            let mut st = conn.prepare(&sql).map_err(self.err())?;
            let mut rows = st
                .query(rusqlite::params![
                    filter.since_ms.unwrap_or(i64::MIN),
                    filter.agent.as_deref().unwrap_or("")
                ])
                .map_err(self.err())?;
            let text = |v: ValueRef<'_>| match v {
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                _ => String::new(),
            };
            while let Some(row) = rows.next().map_err(self.err())? {
                let total: f64 = row.get(4).map_err(self.err())?;
                calls += 1;
                let error = match row.get_ref(3).map_err(self.err())? {
                    ValueRef::Text(t) => Some(t),
                    _ => None,
                };
                if let Some(e) = error {
                    failed += 1;
                    match errors.get_mut(std::str::from_utf8(e).unwrap_or("?")) {
                        Some(n) => *n += 1,
                        None => {
                            errors.insert(String::from_utf8_lossy(e).into_owned(), 1);
                        }
                    }
                }
                // Rows come in no order: the key is looked up as bytes, and made only for a
                // group not seen yet.
                key.clear();
                for column in 0..3 {
                    key.extend_from_slice(
                        row.get_ref(column).map_err(self.err())?.as_bytes().unwrap_or_default(),
                    );
                    key.push(0);
                }
                if !groups.contains_key(key.as_slice()) {
                    let names = (0..3)
                        .map(|c| row.get_ref(c).map(text))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(self.err())?;
                    names_of.insert(key.clone(), names);
                    groups.insert(key.clone(), (Vec::new(), 0));
                }
                let Some(group) = groups.get_mut(key.as_slice()) else { continue };
                group.0.push(total);
                group.1 += u64::from(error.is_some());
                match row.get::<_, i64>(5).map_err(self.err())? {
                    1 => cold.push(total),
                    2 => warm.push(total),
                    _ => {} // it never reached the agent's process
                }
                if row.get::<_, bool>(6).map_err(self.err())? {
                    builds.push(row.get::<_, Option<f64>>(7).map_err(self.err())?.unwrap_or(total));
                }
            }
        }
        let rate = |n: u64| if calls == 0 { 0.0 } else { round(n as f64 / calls as f64, 4) };
        let mut errors: Vec<ErrorCount> = errors
            .into_iter()
            .map(|(error_type, n)| ErrorCount { error_type, calls: n, rate: rate(n) })
            .collect();
        errors.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.error_type.cmp(&b.error_type)));
        let mut methods: Vec<GroupStats> = groups
            .into_iter()
            .map(|(key, (mut times, failed))| {
                times.sort_by(f64::total_cmp);
                let mut names = names_of.remove(&key).unwrap_or_default().into_iter();
                let (agent, method, mode) = (
                    names.next().unwrap_or_default(),
                    names.next().unwrap_or_default(),
                    names.next().unwrap_or_default(),
                );
                GroupStats {
                    agent,
                    method,
                    mode,
                    calls: times.len() as u64,
                    failed,
                    p50_ms: percentile(&times, 50.0),
                    p95_ms: percentile(&times, 95.0),
                    p99_ms: percentile(&times, 99.0),
                }
            })
            .collect();
        methods.sort_by(|a, b| (&a.agent, &a.method, &a.mode).cmp(&(&b.agent, &b.method, &b.mode)));
        Ok(Stats {
            calls,
            failed,
            error_rate: rate(failed),
            errors,
            methods,
            cold: split(cold),
            warm: split(warm),
            environment_builds: {
                let LatencySplit { calls, p50_ms } = split(builds);
                EnvironmentBuilds { builds: calls, p50_ms }
            },
        })
    }

    /// Applies `retention` now (`agenthub runs prune`).
    pub fn prune(home: &Path, retention: Retention) -> Result<PruneReport, HistoryError> {
        let path = store::db_path(home);
        fold_journal(&path);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(PruneReport::default());
        }
        let conn = store::open_write(&path).map_err(|e| match e {
            store::OpenError::Sqlite(source) => HistoryError::Sqlite { path: path.clone(), source },
            other => HistoryError::Unwritable { path: path.clone(), message: other.to_string() },
        })?;
        store::prune(&conn, retention, crate::writer::now_ms(), None)
            .map_err(|source| HistoryError::Sqlite { path, source })
    }
}

/// Folds the journal beside `db` into it, when it has records, so that a reader sees the
/// calls of one-shot processes too. When the database cannot be written (read-only, locked,
/// corrupt) the records stay in the journal and the reader sees what the database holds.
fn fold_journal(db: &Path) {
    let journal = crate::journal::path_beside(db);
    if !crate::journal::has_records(&journal) {
        return;
    }
    let folded = store::open_write(db)
        .map_err(|e| e.to_string())
        .and_then(|mut conn| crate::journal::fold(&mut conn, &journal));
    match folded {
        Ok(folded) if folded.dropped > 0 => {
            tracing::warn!(
                "run history: {} line(s) of {} were not records and were dropped",
                folded.dropped,
                journal.display()
            );
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "run history: the journal was not folded in"),
    }
}

fn split(mut times: Vec<f64>) -> LatencySplit {
    times.sort_by(f64::total_cmp);
    LatencySplit { calls: times.len() as u64, p50_ms: (!times.is_empty()).then(|| percentile(&times, 50.0)) }
}

/// The nearest-rank percentile of sorted `times` (0 for none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn summary(row: &Row<'_>) -> rusqlite::Result<RunSummary> {
    Ok(RunSummary {
        id: row.get(0)?,
        started_at_ms: row.get(1)?,
        agent: row.get(2)?,
        method: row.get(3)?,
        mode: row.get(4)?,
        error_type: row.get(5)?,
        total_ms: row.get(6)?,
        caller: row.get(7)?,
    })
}

fn full(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    // Whatever the file holds (NaN, infinities, negatives) reads as some duration.
    let ms = |name: &str| -> rusqlite::Result<Option<Duration>> {
        Ok(row.get::<_, Option<f64>>(name)?.map(|v| {
            Duration::try_from_secs_f64(v / 1e3).unwrap_or(if v > 0.0 {
                Duration::MAX
            } else {
                Duration::ZERO
            })
        }))
    };
    Ok(RunRecord {
        id: row.get("id")?,
        started_at_ms: row.get("started_at")?,
        agent: row.get("agent")?,
        agent_dir: PathBuf::from(row.get::<_, String>("agent_dir")?),
        installed_as: None,
        version: row.get("version")?,
        commit: row.get("commit_sha")?,
        method: row.get("method")?,
        mode: row.get("mode")?,
        error_type: row.get("error_type")?,
        error_message: row.get("error_message")?,
        durations: Durations {
            total: ms("total_ms")?.unwrap_or_default(),
            slot: ms("slot_ms")?,
            environment: ms("environment_ms")?,
            startup: ms("startup_ms")?,
            call: ms("call_ms")?,
            tools: ms("tools_ms")?.unwrap_or_default(),
        },
        environment_built: row.get("environment_built")?,
        memory_bytes: row.get::<_, Option<i64>>("memory_bytes")?.map(|b| b.max(0) as u64),
        exit_code: row.get("exit_code")?,
        signal: row.get("signal")?,
        stderr_tail: row.get("stderr_tail")?,
        caller: row.get("caller")?,
        parent_id: row.get("parent_id")?,
        tool_calls: row.get("tool_calls")?,
        params: row.get("params")?,
        result: row.get("result")?,
    })
}
