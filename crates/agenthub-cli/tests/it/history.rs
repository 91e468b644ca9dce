//! Run history through the binary (issue 19): every call recorded, also from many processes
//! at once; a database that is locked, read-only or corrupt costs no call (one-shot calls
//! leave their record in the journal, which a reader folds in);
//! `runs`, `runs show` and `stats` pinned for people and exact for machines.
//!
//! Every wait is bounded; every process a test starts is killed by a guard.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use agenthub_core::HistoryConfig;
use agenthub_history::{Durations, Recorder, RunRecord};
use agenthub_testkit::TestContext;
use serde_json::{Value as Json, json};

use crate::{command, ctx_with_agent, json_of};

/// Runs `cmd` to its end with `input` on stdin, bounded by [`LIMIT`].
fn run(cmd: std::process::Command, input: &[u8]) -> Output {
    crate::run_bounded(cmd, input, LIMIT)
}

/// Bound of one command (a first environment build included).
const LIMIT: Duration = Duration::from_secs(180);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agenthub(ctx: &TestContext, args: &[&str]) -> Output {
    run(command(ctx, args), b"")
}

fn runs(ctx: &TestContext) -> Vec<Json> {
    let out = agenthub(ctx, &["runs", "--json", "-n", "100000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json_of(&out).as_array().unwrap().clone()
}

fn greet(ctx: &TestContext) -> Output {
    agenthub(ctx, &["exec", "test/demo", "greet", "name=World", "--json"])
}

/// The lines of `stderr` that are warnings about the run history.
fn history_warnings(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("run history"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn eight_processes_making_200_calls_each_lose_no_record() {
    let ctx = ctx_with_agent();
    // The environment is built once, before the processes race.
    assert!(greet(&ctx).status.success());
    let input = (0..200)
        .map(|i| json!({"method": "greet", "parameters": {"name": format!("n{i}")}}).to_string() + "\n")
        .collect::<Vec<_>>()
        .concat();
    let batches: Vec<_> = (0..8)
        .map(|_| {
            let input = input.clone();
            let cmd = command(&ctx, &["batch", "test/demo", "--json"]);
            std::thread::spawn(move || run(cmd, input.as_bytes()))
        })
        .collect();
    for batch in batches {
        let out = batch.join().unwrap();
        assert!(out.status.success(), "a batch failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 200);
        assert!(history_warnings(&out).is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let runs = runs(&ctx);
    assert_eq!(runs.len(), 1 + 8 * 200);
    assert!(
        runs.iter().all(|r| r["error_type"].is_null() && r["agent"] == "test/demo" && r["caller"] == "cli")
    );
    let ids: std::collections::HashSet<_> =
        runs.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), runs.len(), "ids are unique");
}

#[test]
fn one_shot_calls_racing_readers_lose_no_record() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ctx = Arc::new(ctx_with_agent());
    assert!(greet(&ctx).status.success());
    // A reader folds the journal in again and again while the calls append to it.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (ctx, stop) = (Arc::clone(&ctx), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) && reads < 2000 {
                let out = agenthub(&ctx, &["runs", "--json", "-n", "1"]);
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                assert!(history_warnings(&out).is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
                reads += 1;
            }
            reads
        })
    };
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let ctx = Arc::clone(&ctx);
            std::thread::spawn(move || {
                for _ in 0..15 {
                    let out = greet(&ctx);
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    assert!(history_warnings(&out).is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let ids: std::collections::HashSet<String> =
        runs(&ctx).iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 61);
}

#[test]
fn a_call_is_recorded_with_its_times_exit_and_stderr_tail() {
    let ctx = ctx_with_agent();
    assert!(greet(&ctx).status.success());
    let failed = agenthub(&ctx, &["exec", "test/demo", "fail", "--json"]);
    assert_eq!(failed.status.code(), Some(1));
    let error_type = json_of(&failed)["error_type"].clone();
    let runs = runs(&ctx);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["method"], "fail");
    assert_eq!(runs[0]["error_type"], error_type);
    let id = runs[0]["id"].as_str().unwrap();
    let out = agenthub(&ctx, &["runs", "show", &id[..8], "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = json_of(&out);
    assert_eq!(shown["id"], id);
    assert_eq!(shown["mode"], "oneshot");
    assert_eq!(shown["exit_code"], 4);
    assert_eq!(shown["caller"], "cli");
    assert!(shown["stderr_tail"].as_str().unwrap().contains("Traceback: boom"), "{shown}");
    let d = &shown["durations"];
    assert!(d["total_ms"].as_f64().unwrap() >= d["call_ms"].as_f64().unwrap(), "{shown}");
    assert!(d["environment_ms"].as_f64().is_some(), "{shown}");
    assert!(shown["memory_bytes"].as_u64().is_some_and(|m| m > 0), "{shown}");
    // No payloads unless asked for.
    assert!(shown["params"].is_null() && shown["result"].is_null(), "{shown}");
    // People see the stderr tail too.
    let text = agenthub(&ctx, &["runs", "show", id]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("outcome     {}", error_type.as_str().unwrap())), "{text}");
    assert!(text.contains("    Traceback: boom"), "{text}");
    assert!(text.contains("exit        code 4"), "{text}");
}

#[test]
fn payloads_are_recorded_only_when_asked_for() {
    let ctx = ctx_with_agent();
    let mut cmd = command(&ctx, &["exec", "test/demo", "greet", "name=Secret", "--json"]);
    cmd.env("AGENTHUB_HISTORY_RECORD_PAYLOADS", "true");
    assert!(run(cmd, b"").status.success());
    let id = runs(&ctx)[0]["id"].as_str().unwrap().to_owned();
    let shown = json_of(&agenthub(&ctx, &["runs", "show", &id, "--json"]));
    assert_eq!(shown["params"], "{\"name\":\"Secret\"}");
    assert!(shown["result"].as_str().unwrap().contains("Secret"), "{shown}");
}

#[test]
fn history_off_writes_nothing() {
    let ctx = ctx_with_agent();
    let mut cmd = command(&ctx, &["exec", "test/demo", "greet", "name=World", "--json"]);
    cmd.env("AGENTHUB_HISTORY", "false");
    assert!(run(cmd, b"").status.success());
    assert!(!ctx.home().join("history.db").exists());
    assert!(!ctx.home().join(agenthub_history::JOURNAL_FILE).exists());
    let mut cmd = command(&ctx, &["runs"]);
    cmd.env("AGENTHUB_HISTORY", "false");
    let out = run(cmd, b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("run history is off"), "{out:?}");
}

#[test]
fn a_locked_database_loses_no_call_and_holds_up_no_exit() {
    let ctx = ctx_with_agent();
    assert!(greet(&ctx).status.success());
    assert_eq!(runs(&ctx).len(), 1);
    let db = ctx.home().join("history.db");
    // Another process holds the write lock for as long as the test wants.
    let mut holder = Killed(
        std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\nsys.stdin.read()",
            ])
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(holder.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let out = greet(&ctx);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out)["result"]["name"], "World");
    // A one-shot call never opens the database: its record waits in the journal.
    assert!(history_warnings(&out).is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(ctx.home().join(agenthub_history::JOURNAL_FILE)).unwrap().len() > 0);
    drop(holder);
    // Unlocked, the reader folds it in: no call was lost.
    assert!(greet(&ctx).status.success());
    assert_eq!(runs(&ctx).len(), 3);
}

#[test]
fn a_corrupt_database_costs_no_call_and_is_left_as_it_was() {
    let ctx = ctx_with_agent();
    let db = ctx.home().join("history.db");
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    for _ in 0..2 {
        let out = greet(&ctx);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(history_warnings(&out).is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
    let out = agenthub(&ctx, &["runs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("help: "), "{out:?}");
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
    // Moved away, the history is the calls made meanwhile.
    std::fs::rename(&db, ctx.home().join("history.broken")).unwrap();
    assert_eq!(runs(&ctx).len(), 2);
}

/// Runs agenthub with `args` while the history database cannot be written: as root (who
/// writes through file modes) under a read-only bind mount of the file, in a mount
/// namespace of its own; otherwise with the file at mode 0400.
fn read_only(ctx: &TestContext, args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt as _;
    let db = ctx.home().join("history.db");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();
        let out = agenthub(ctx, args);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
        return out;
    }
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        "mount --bind -o ro \"$1\" \"$1\" && shift && exec \"$@\"",
        "sh",
    ])
    .arg(&db)
    .arg(assert_cmd::cargo::cargo_bin("agenthub"))
    .args(args);
    for (k, v) in command(ctx, &[]).get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    run(cmd, b"")
}

#[test]
fn a_read_only_database_costs_no_call_and_still_reads() {
    let ctx = ctx_with_agent();
    assert!(greet(&ctx).status.success());
    assert_eq!(runs(&ctx).len(), 1);
    let out = read_only(&ctx, &["exec", "test/demo", "greet", "name=World", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out)["result"]["name"], "World");
    assert!(history_warnings(&out).is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    // A reader that cannot fold the journal in reads what the database holds...
    let out = read_only(&ctx, &["runs", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out).as_array().unwrap().len(), 1);
    // ...and the journal keeps the call for the next one that can.
    assert_eq!(runs(&ctx).len(), 2);
}

/// Records with fixed ids and times, written through the history's own writer.
fn fixed_history(ctx: &TestContext) {
    let base = 1_796_000_000_000; // 2026-11-30 00:53:20 UTC
    let config = HistoryConfig { enabled: true, record_payloads: false, keep_days: 0, max_rows: 0 };
    let recorder = Recorder::new(ctx.home(), &config).unwrap();
    let record = |n: u64, method: &str, mode: &str, error: Option<&str>, total_ms: u64| RunRecord {
        id: format!("{:016x}", 0xa1b2_c3d4_0000_0000 + n),
        started_at_ms: base + i64::try_from(n).unwrap() * 1000,
        agent: "acme/hello".to_owned(),
        agent_dir: "/home/u/.agenthub/agents/acme/hello".into(),
        installed_as: None,
        version: Some("1.2.0".to_owned()),
        commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
        method: method.to_owned(),
        mode: mode.to_owned(),
        error_type: error.map(str::to_owned),
        error_message: error.map(|_| "the agent raised ValueError".to_owned()),
        durations: Durations {
            total: Duration::from_millis(total_ms),
            slot: Some(Duration::from_micros(5)),
            environment: Some(Duration::from_micros(120)),
            startup: (mode == "warm" && n == 1).then(|| Duration::from_millis(250)),
            call: Some(Duration::from_millis(total_ms)),
            tools: Duration::ZERO,
        },
        environment_built: false,
        memory_bytes: Some(25 << 20),
        exit_code: error.map(|_| 1),
        signal: None,
        stderr_tail: error.map(|_| "Traceback (most recent call last):\nValueError: no".to_owned()),
        caller: if n.is_multiple_of(2) { "mcp" } else { "cli" }.to_owned(),
        parent_id: None,
        tool_calls: 0,
        params: None,
        result: None,
    };
    for n in 1..=6 {
        recorder.record(record(n, "greet", "warm", None, n * 2));
    }
    recorder.record(record(7, "greet", "oneshot", None, 31));
    recorder.record(record(8, "shout", "oneshot", Some("AgentError"), 40));
    assert!(recorder.flush(Duration::from_secs(10)));
}

#[test]
fn runs_and_stats_for_people_are_pinned() {
    let ctx = TestContext::new();
    fixed_history(&ctx);
    let out = agenthub(&ctx, &["runs", "-n", "4"]);
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout), @r"
ID                STARTED (UTC)        AGENT       METHOD  MODE     CALLER     TIME  OUTCOME
a1b2c3d400000008  2026-11-30 00:53:28  acme/hello  shout   oneshot  mcp     40.0 ms  AgentError
a1b2c3d400000007  2026-11-30 00:53:27  acme/hello  greet   oneshot  cli     31.0 ms  ok
a1b2c3d400000006  2026-11-30 00:53:26  acme/hello  greet   warm     mcp     12.0 ms  ok
a1b2c3d400000005  2026-11-30 00:53:25  acme/hello  greet   warm     cli     10.0 ms  ok
    ");
    let out = agenthub(&ctx, &["runs", "show", "a1b2c3d400000008"]);
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout), @r"
run a1b2c3d400000008
  agent       acme/hello 1.2.0 (commit 0123456789ab)
  directory   /home/u/.agenthub/agents/acme/hello
  method      shout
  mode        oneshot
  caller      mcp
  started     2026-11-30 00:53:28.000 UTC
  outcome     AgentError: the agent raised ValueError
  time        40.0 ms (slot 0.005 ms, environment 0.120 ms, call 40.0 ms)
  memory      25.0MB
  exit        code 1
  stderr (its end):
    Traceback (most recent call last):
    ValueError: no
    ");
    let out = agenthub(&ctx, &["stats"]);
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout), @r"
8 call(s), 1 failed (12.50%)

ERROR       CALLS    RATE
AgentError      1  12.50%

AGENT       METHOD  MODE     CALLS  FAILED      P50      P95      P99
acme/hello  greet   oneshot      1       0  31.0 ms  31.0 ms  31.0 ms
acme/hello  greet   warm         6       0  6.00 ms  12.0 ms  12.0 ms
acme/hello  shout   oneshot      1       1  40.0 ms  40.0 ms  40.0 ms

cold calls (started a process): 3, median 31.0 ms
warm calls (a running worker): 5, median 8.00 ms
environment builds: 0, median -
    ");
}

#[test]
fn runs_and_stats_for_machines_are_exact() {
    let ctx = TestContext::new();
    fixed_history(&ctx);
    let out = agenthub(&ctx, &["runs", "--failed", "--json"]);
    assert_eq!(
        json_of(&out),
        json!([{
            "id": "a1b2c3d400000008", "started_at_ms": 1_796_000_008_000_i64, "agent": "acme/hello",
            "method": "shout", "mode": "oneshot", "error_type": "AgentError", "total_ms": 40.0, "caller": "mcp"
        }])
    );
    let out = agenthub(&ctx, &["stats", "acme/hello", "--json"]);
    assert_eq!(
        json_of(&out),
        json!({
            "calls": 8, "failed": 1, "error_rate": 0.125,
            "errors": [{"error_type": "AgentError", "calls": 1, "rate": 0.125}],
            "methods": [
                {"agent": "acme/hello", "method": "greet", "mode": "oneshot", "calls": 1, "failed": 0,
                 "p50_ms": 31.0, "p95_ms": 31.0, "p99_ms": 31.0},
                {"agent": "acme/hello", "method": "greet", "mode": "warm", "calls": 6, "failed": 0,
                 "p50_ms": 6.0, "p95_ms": 12.0, "p99_ms": 12.0},
                {"agent": "acme/hello", "method": "shout", "mode": "oneshot", "calls": 1, "failed": 1,
                 "p50_ms": 40.0, "p95_ms": 40.0, "p99_ms": 40.0}
            ],
            "cold": {"calls": 3, "p50_ms": 31.0},
            "warm": {"calls": 5, "p50_ms": 8.0},
            "environment_builds": {"builds": 0, "p50_ms": null}
        })
    );
    let out = agenthub(&ctx, &["stats", "other/agent", "--json"]);
    assert_eq!(json_of(&out)["calls"], 0);
    // Unknown and ambiguous ids are errors that say what to do.
    let out = agenthub(&ctx, &["runs", "show", "a1b2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the start of 8 run ids"), "{out:?}");
    let out = agenthub(&ctx, &["runs", "show", "ffff"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("agenthub runs"), "{out:?}");
}

#[test]
fn runs_prune_applies_retention() {
    let ctx = TestContext::new();
    fixed_history(&ctx);
    let mut cmd = command(&ctx, &["runs", "prune", "--json"]);
    cmd.env("AGENTHUB_HISTORY_MAX_ROWS", "3").env("AGENTHUB_HISTORY_KEEP_DAYS", "0");
    let out = run(cmd, b"");
    assert_eq!(json_of(&out), json!({"removed_by_age": 0, "removed_by_count": 5, "left": 3}));
    let left: Vec<_> = runs(&ctx).iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(left, ["a1b2c3d400000008", "a1b2c3d400000007", "a1b2c3d400000006"]);
}

#[test]
fn what_a_manifest_says_is_bounded_in_each_record() {
    let ctx = TestContext::new();
    let dir = ctx.home().join("long");
    std::fs::create_dir_all(&dir).unwrap();
    let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents/hello");
    std::fs::copy(hello.join("agent.py"), dir.join("agent.py")).unwrap();
    let manifest = std::fs::read_to_string(hello.join("agent.yaml")).unwrap();
    let long = "9".repeat(200_000);
    std::fs::write(
        dir.join("agent.yaml"),
        manifest.replacen("version: \"1.0.0\"", &format!("version: \"{long}\""), 1),
    )
    .unwrap();
    let out = agenthub(&ctx, &["exec", dir.to_str().unwrap(), "greet", "name=x", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = runs(&ctx)[0]["id"].as_str().unwrap().to_owned();
    let shown = json_of(&agenthub(&ctx, &["runs", "show", &id, "--json"]));
    let version = shown["version"].as_str().unwrap();
    assert!(version.len() <= 1024 + "…".len() && version.starts_with("999"), "{} bytes", version.len());
}
