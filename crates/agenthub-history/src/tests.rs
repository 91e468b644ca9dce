//! The history's own behaviour: what goes in comes out (through the database or the
//! journal), retention, and a database that cannot be written never costs the caller
//! anything but a warning.

use std::path::Path;
use std::time::Duration;

use agenthub_core::HistoryConfig;

use crate::{Durations, History, Recorder, Retention, RunFilter, RunRecord, StatsFilter};

pub(crate) fn record(
    id: &str,
    started_at_ms: i64,
    method: &str,
    error: Option<&str>,
    total_ms: u64,
) -> RunRecord {
    RunRecord {
        id: id.to_owned(),
        started_at_ms,
        agent: "acme/hello".to_owned(),
        agent_dir: "/agents/acme/hello".into(),
        installed_as: None,
        version: Some("1.0.0".to_owned()),
        commit: None,
        method: method.to_owned(),
        mode: "warm".to_owned(),
        error_type: error.map(str::to_owned),
        error_message: error.map(|e| format!("{e}: it went wrong")),
        durations: Durations {
            total: Duration::from_millis(total_ms),
            slot: Some(Duration::from_micros(3)),
            environment: Some(Duration::from_micros(40)),
            startup: None,
            call: Some(Duration::from_millis(total_ms)),
            tools: Duration::ZERO,
        },
        environment_built: false,
        memory_bytes: Some(1 << 20),
        exit_code: None,
        signal: None,
        stderr_tail: error.map(|_| "Traceback: boom".to_owned()),
        caller: "cli".to_owned(),
        parent_id: None,
        tool_calls: 0,
        params: None,
        result: None,
    }
}

fn config() -> HistoryConfig {
    // No limit by age: the records here are from 1970.
    HistoryConfig { enabled: true, record_payloads: false, keep_days: 0, max_rows: 1_000_000 }
}

fn write(home: &Path, records: Vec<RunRecord>) {
    let recorder = Recorder::new(home, &config()).expect("enabled");
    for r in records {
        recorder.record(r);
    }
    assert!(recorder.flush(Duration::from_secs(10)));
    assert_eq!(recorder.dropped(), 0);
}

#[test]
fn what_is_recorded_reads_back_whole() {
    let home = tempfile::tempdir().unwrap();
    let mut failed = record("00000000000000aa", 1_000, "greet", Some("AgentError"), 12);
    failed.params = Some("{\"name\":\"x\"}".to_owned());
    failed.exit_code = Some(4);
    write(home.path(), vec![record("00000000000000ab", 2_000, "greet", None, 1), failed.clone()]);
    let history = History::open(home.path()).unwrap();
    let shown = history.show("00000000000000aa").unwrap();
    assert_eq!(serde_json::to_value(&shown).unwrap(), serde_json::to_value(&failed).unwrap());
    // Newest first; --failed leaves the success out.
    let all = history.list(&RunFilter { limit: 10, ..RunFilter::default() }).unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["00000000000000ab", "00000000000000aa"]
    );
    let failed_only = history.list(&RunFilter { failed: true, limit: 10, ..RunFilter::default() }).unwrap();
    assert_eq!(failed_only.len(), 1);
    assert_eq!(failed_only[0].error_type.as_deref(), Some("AgentError"));
    let since =
        history.list(&RunFilter { since_ms: Some(1_500), limit: 10, ..RunFilter::default() }).unwrap();
    assert_eq!(since.len(), 1);
    let other =
        history.list(&RunFilter { agent: Some("x/y".into()), limit: 10, ..RunFilter::default() }).unwrap();
    assert!(other.is_empty());
}

#[test]
fn ids_are_found_by_a_unique_prefix_only() {
    let home = tempfile::tempdir().unwrap();
    write(
        home.path(),
        vec![record("abcd000000000001", 1, "m", None, 1), record("abcd000000000002", 2, "m", None, 1)],
    );
    let history = History::open(home.path()).unwrap();
    assert_eq!(history.show("abcd000000000002").unwrap().id, "abcd000000000002");
    assert_eq!(history.show("ABCD0000000000010".get(..16).unwrap()).unwrap().id, "abcd000000000001");
    assert!(matches!(history.show("abcd"), Err(crate::HistoryError::Ambiguous { count: 2, .. })));
    assert!(matches!(history.show("ffff"), Err(crate::HistoryError::NotFound(_))));
    // Not hex, or too short to mean anything: refused before any query.
    assert!(matches!(history.show("ab%"), Err(crate::HistoryError::BadId(_))));
    assert!(matches!(history.show("abc"), Err(crate::HistoryError::BadId(_))));
}

#[test]
fn stats_count_errors_and_take_percentiles_per_method() {
    let home = tempfile::tempdir().unwrap();
    let mut records: Vec<RunRecord> = (1..=100)
        .map(|i| record(&format!("{i:016x}"), i64::from(i), "greet", None, u64::from(i as u32)))
        .collect();
    records.push(record("00000000000001f0", 500, "fail", Some("TimeoutError"), 1000));
    records.push(record("00000000000001f1", 501, "fail", Some("TimeoutError"), 1000));
    records.push(record("00000000000001f2", 502, "fail", Some("AgentError"), 5));
    write(home.path(), records);
    let stats = History::open(home.path()).unwrap().stats(&StatsFilter::default()).unwrap();
    assert_eq!((stats.calls, stats.failed), (103, 3));
    assert_eq!(stats.errors[0].error_type, "TimeoutError");
    assert_eq!(stats.errors[0].calls, 2);
    assert_eq!(stats.errors[1].error_type, "AgentError");
    let greet = stats.methods.iter().find(|g| g.method == "greet").unwrap();
    assert_eq!(
        (greet.calls, greet.failed, greet.p50_ms, greet.p95_ms, greet.p99_ms),
        (100, 0, 50.0, 95.0, 99.0)
    );
    let fail = stats.methods.iter().find(|g| g.method == "fail").unwrap();
    assert_eq!((fail.calls, fail.failed), (3, 3));
    // Every record here reached a running worker.
    assert_eq!(stats.warm.calls, 103);
    assert_eq!(stats.cold.calls, 0);
}

#[test]
fn retention_drops_by_age_then_by_count() {
    let home = tempfile::tempdir().unwrap();
    let now = crate::writer::now_ms();
    let day = 86_400_000;
    let mut records = vec![record("0000000000000001", now - 40 * day, "m", None, 1)];
    records.extend((2..=11).map(|i| record(&format!("{i:016x}"), now - i64::from(i), "m", None, 1)));
    write(home.path(), records);
    let report = History::prune(home.path(), Retention { keep_days: 30, max_rows: 4 }).unwrap();
    assert_eq!((report.removed_by_age, report.removed_by_count, report.left), (1, 6, 4));
    // The newest written four are left.
    let left =
        History::open(home.path()).unwrap().list(&RunFilter { limit: 100, ..RunFilter::default() }).unwrap();
    let mut ids: Vec<_> = left.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["0000000000000008", "0000000000000009", "000000000000000a", "000000000000000b"]);
    // 0 is no limit.
    let report = History::prune(home.path(), Retention { keep_days: 0, max_rows: 0 }).unwrap();
    assert_eq!((report.removed_by_age, report.removed_by_count, report.left), (0, 0, 4));
}

#[test]
fn a_corrupt_database_keeps_records_in_the_journal_and_never_blocks_the_caller() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("history.db");
    std::fs::write(&db, vec![0x55; 8192]).unwrap();
    let recorder = Recorder::new(home.path(), &config()).unwrap();
    let started = std::time::Instant::now();
    for i in 0..100 {
        recorder.record(record(&format!("{i:016x}"), i, "m", None, 1));
    }
    assert!(started.elapsed() < Duration::from_millis(100), "recording waited: {:?}", started.elapsed());
    assert!(recorder.flush(Duration::from_secs(10)));
    assert_eq!(recorder.dropped(), 0);
    drop(recorder);
    // Nothing of the file was changed, and reading it is an error that says what to do.
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x55; 8192]);
    let err = History::open(home.path()).unwrap_err();
    assert!(err.suggestion().contains("move it away"), "{err}");
    // Moved away, the next reader folds in what was kept.
    std::fs::rename(&db, home.path().join("broken.db")).unwrap();
    let history = History::open(home.path()).unwrap();
    assert_eq!(history.stats(&StatsFilter::default()).unwrap().calls, 100);
    assert!(!crate::journal::has_records(&home.path().join(crate::JOURNAL_FILE)));
}

#[test]
fn symlinks_are_not_followed() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("theirs.db");
    std::os::unix::fs::symlink(&target, home.path().join("history.db")).unwrap();
    let recorder = Recorder::new(home.path(), &config()).unwrap();
    recorder.record(record("0000000000000001", 1, "m", None, 1));
    assert!(recorder.flush(Duration::from_secs(10)));
    assert!(!target.exists(), "the history was written through a symlink");
    // Nor is a symlinked journal: the record is dropped, the target never created.
    std::fs::remove_file(home.path().join(crate::JOURNAL_FILE)).unwrap();
    let theirs = elsewhere.path().join("theirs.pending");
    std::os::unix::fs::symlink(&theirs, home.path().join(crate::JOURNAL_FILE)).unwrap();
    recorder.record(record("0000000000000002", 2, "m", None, 1));
    assert!(recorder.flush(Duration::from_secs(10)));
    assert_eq!(recorder.dropped(), 1);
    assert!(!theirs.exists(), "the journal was written through a symlink");
}

#[test]
fn a_process_that_ends_leaves_its_records_in_the_journal_and_a_reader_folds_them_in() {
    let home = tempfile::tempdir().unwrap();
    let journal = home.path().join(crate::JOURNAL_FILE);
    for n in 0..3 {
        // A recorder dropped without a flush: its only batch is its last.
        let recorder = Recorder::new(home.path(), &config()).unwrap();
        recorder.prepare();
        recorder.record(record(&format!("{n:016x}"), n, "m", None, 5));
        drop(recorder);
    }
    assert!(!home.path().join("history.db").exists(), "an ending process opened the database");
    let lines = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(lines.lines().filter(|l| !l.is_empty()).count(), 3);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&journal).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // What a killed appender leaves (half a line) and a line that is not a record are
    // dropped; the records around them are not.
    let mut text = std::fs::read(&journal).unwrap();
    text.extend_from_slice(b"{\"not\": \"a record\"}\n");
    let mut last = serde_json::to_vec(&record("0000000000000009", 9, "m", None, 5)).unwrap();
    last.push(b'\n');
    text.extend_from_slice(&last);
    text.extend_from_slice(&last[..last.len() / 2]);
    std::fs::write(&journal, text).unwrap();
    let history = History::open(home.path()).unwrap();
    let runs = history.list(&RunFilter { limit: 10, ..RunFilter::default() }).unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["0000000000000009", "0000000000000002", "0000000000000001", "0000000000000000"]);
    let shown = history.show("0000000000000002").unwrap();
    assert_eq!(shown.durations.total, Duration::from_millis(5));
    assert_eq!(shown.memory_bytes, Some(1 << 20));
    assert!(!crate::journal::has_records(&journal));
    // A fold cut short after its insert leaves the detached file: the next one inserts
    // nothing twice, and folds the journal as well.
    std::fs::write(home.path().join("history.pending.folding"), &last).unwrap();
    std::fs::write(&journal, serde_json::to_vec(&record("000000000000000a", 10, "m", None, 5)).unwrap())
        .unwrap();
    let history = History::open(home.path()).unwrap();
    assert_eq!(history.stats(&StatsFilter::default()).unwrap().calls, 5);
    assert!(!home.path().join("history.pending.folding").exists());
}

#[test]
fn a_torn_line_never_swallows_the_next_record() {
    let home = tempfile::tempdir().unwrap();
    let journal = home.path().join(crate::JOURNAL_FILE);
    // What an appender killed mid-write leaves: half a record, no newline.
    let torn = serde_json::to_vec(&record("0000000000000001", 1, "m", None, 5)).unwrap();
    std::fs::write(&journal, &torn[..torn.len() / 2]).unwrap();
    let recorder = Recorder::new(home.path(), &config()).unwrap();
    recorder.record(record("0000000000000002", 2, "m", None, 5));
    drop(recorder);
    let history = History::open(home.path()).unwrap();
    let runs = history.list(&RunFilter { limit: 10, ..RunFilter::default() }).unwrap();
    assert_eq!(runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["0000000000000002"]);
}

#[test]
fn a_journal_that_is_a_hard_link_is_neither_written_nor_removed() {
    let home = tempfile::tempdir().unwrap();
    let theirs = home.path().join("theirs.txt");
    std::fs::write(&theirs, b"precious\n").unwrap();
    std::fs::hard_link(&theirs, home.path().join(crate::JOURNAL_FILE)).unwrap();
    let recorder = Recorder::new(home.path(), &config()).unwrap();
    recorder.record(record("0000000000000001", 1, "m", None, 5));
    drop(recorder);
    let _ = History::open(home.path()).unwrap();
    assert_eq!(std::fs::read(&theirs).unwrap(), b"precious\n");
    assert_eq!(std::fs::read(home.path().join(crate::JOURNAL_FILE)).unwrap(), b"precious\n");
}

#[test]
fn a_long_lived_writer_folds_the_journal_in_before_its_batch() {
    let home = tempfile::tempdir().unwrap();
    let recorder = Recorder::new(home.path(), &config()).unwrap();
    recorder.record(record("0000000000000001", 1, "m", None, 1));
    drop(recorder);
    assert!(crate::journal::has_records(&home.path().join(crate::JOURNAL_FILE)));
    write(home.path(), vec![record("0000000000000002", 2, "m", None, 1)]);
    assert!(!crate::journal::has_records(&home.path().join(crate::JOURNAL_FILE)));
    let conn = rusqlite::Connection::open(home.path().join("history.db")).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM runs", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2);
}

#[test]
fn the_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().unwrap();
    write(home.path(), vec![record("0000000000000001", 1, "m", None, 1)]);
    let mode = std::fs::metadata(home.path().join("history.db")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_disabled_history_has_no_recorder_and_an_empty_home_reads_as_empty() {
    let home = tempfile::tempdir().unwrap();
    assert!(Recorder::new(home.path(), &HistoryConfig { enabled: false, ..config() }).is_none());
    let history = History::open(home.path()).unwrap();
    assert!(history.list(&RunFilter { limit: 10, ..RunFilter::default() }).unwrap().is_empty());
    assert_eq!(history.stats(&StatsFilter::default()).unwrap().calls, 0);
    assert!(!home.path().join("history.db").exists(), "reading created the database");
}

fn install_record(dir: &Path, id: &str, install_id: &str, commit: &str) {
    let record = agenthub_core::InstallRecord {
        agent_name: id.to_owned(),
        github_url: "file:///src".to_owned(),
        commit_sha: Some(commit.to_owned()),
        requested_ref: None,
        installed_at: "2026-12-03T00:00:00Z".to_owned(),
        source: "file:///src".to_owned(),
        source_kind: agenthub_core::SourceKind::Git,
        agenthub_version: "0.1.0".to_owned(),
        install_id: Some(install_id.to_owned()),
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(agenthub_core::INSTALL_RECORD_FILE), serde_json::to_string(&record).unwrap())
        .unwrap();
}

#[test]
fn the_commit_is_taken_only_from_an_install_record_the_home_wrote() {
    let home = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let ours = home.path().join("agents/acme/hello");
    let forged = home.path().join("agents/acme/forged");
    let by_path = home.path().join("elsewhere/agent");
    install_record(&ours, "acme/hello", "id-ours", commit);
    install_record(&forged, "acme/forged", "id-forged", commit);
    install_record(&by_path, "acme/hello", "id-ours", commit);
    std::fs::create_dir_all(home.path().join("installs/acme")).unwrap();
    std::fs::write(home.path().join("installs/acme/hello.json"), r#"{"ids": ["id-ours"]}"#).unwrap();
    std::fs::write(home.path().join("installs/acme/forged.json"), r#"{"ids": ["another"]}"#).unwrap();
    let mut records = Vec::new();
    for (n, (dir, id)) in [(&ours, Some("acme/hello")), (&forged, Some("acme/forged")), (&by_path, None)]
        .into_iter()
        .enumerate()
    {
        let mut r = record(&format!("{n:016x}"), i64::try_from(n).unwrap(), "m", None, 1);
        r.agent_dir = dir.clone();
        r.installed_as = id.map(str::to_owned);
        records.push(r);
    }
    write(home.path(), records);
    let history = History::open(home.path()).unwrap();
    assert_eq!(history.show("0000000000000000").unwrap().commit.as_deref(), Some(commit));
    assert_eq!(history.show("0000000000000001").unwrap().commit, None, "a record the home did not write");
    assert_eq!(history.show("0000000000000002").unwrap().commit, None, "an agent run by path");
}
