//! `agenthub runs` (list, show, prune) and `agenthub stats`: the run history, read.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agenthub_core::{Config, escape_control};
use agenthub_history::{
    History, HistoryError, Retention, RunFilter, RunRecord, RunSummary, Stats, StatsFilter,
};

use crate::args::{RunsArgs, RunsCommand, StatsArgs};
use crate::render;

pub(crate) fn runs(config: &Config, args: &RunsArgs) -> ExitCode {
    match &args.command {
        Some(RunsCommand::Show { id, json }) => show(config, id, *json),
        Some(RunsCommand::Prune { json }) => prune(config, *json),
        None => list(config, args),
    }
}

fn list(config: &Config, args: &RunsArgs) -> ExitCode {
    let filter = RunFilter {
        agent: args.agent.as_deref().map(agent_key),
        failed: args.failed,
        since_ms: args.since.map(since),
        limit: args.limit,
    };
    let runs = match open_history(config).and_then(|h| h.list(&filter)) {
        Ok(runs) => runs,
        Err(e) => return failed(&e),
    };
    if args.json {
        render::out_json(&runs);
        return ExitCode::SUCCESS;
    }
    if runs.is_empty() {
        say_no_runs(config, args.agent.as_deref(), args.failed || args.since.is_some());
        return ExitCode::SUCCESS;
    }
    render::out(&escape_control(&runs_table(&runs)));
    ExitCode::SUCCESS
}

/// Tells people that nothing matched (or nothing is recorded, and why), with a hint for an
/// agent named like a directory without `./`.
fn say_no_runs(config: &Config, agent: Option<&str>, filtered: bool) {
    let mut said = no_runs(config, agent.is_some() || filtered);
    said.push_str(&directory_hint(agent));
    render::err(&escape_control(&said));
}

fn no_runs(config: &Config, filtered: bool) -> String {
    if filtered {
        "No recorded calls match.\n".to_owned()
    } else if config.history.enabled {
        "No calls recorded yet. Every call is recorded from now on: try `agenthub exec AGENT METHOD`.\n"
            .to_owned()
    } else {
        "No calls recorded: run history is off (history.enabled: false in config.yaml, or AGENTHUB_HISTORY=false).\n"
            .to_owned()
    }
}

/// For an agent named like a directory without `./`: runs of agents called by path are
/// recorded by their directory, as `exec` names them.
fn directory_hint(agent: Option<&str>) -> String {
    match agent {
        Some(agent) if !agent.starts_with(['.', '/', '~']) && std::path::Path::new(agent).is_dir() => {
            format!("  help: to see the runs of the directory {agent}, write ./{agent}\n")
        }
        _ => String::new(),
    }
}

/// `ID  STARTED (UTC)  AGENT  METHOD  MODE  CALLER  TIME  OUTCOME`, columns aligned.
pub(crate) fn runs_table(runs: &[RunSummary]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                timestamp(r.started_at_ms, false),
                r.agent.clone(),
                r.method.clone(),
                r.mode.clone(),
                r.caller.clone(),
                format_ms(r.total_ms),
                r.error_type.clone().unwrap_or_else(|| "ok".to_owned()),
            ]
        })
        .collect();
    table(&["ID", "STARTED (UTC)", "AGENT", "METHOD", "MODE", "CALLER", "TIME", "OUTCOME"], &rows, &[6])
}

fn show(config: &Config, id: &str, json: bool) -> ExitCode {
    let found = open_history(config).and_then(|h| Ok((h.show(id)?, h)));
    let (run, history) = match found {
        Ok(found) => found,
        Err(e) => return failed(&e),
    };
    let children = match history.children(&run.id) {
        Ok(children) => children,
        Err(e) => return failed(&e),
    };
    if json {
        let mut value = serde_json::to_value(&run).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("tool_call_runs".to_owned(), serde_json::to_value(&children).unwrap_or_default());
        }
        render::out_json(&value);
        return ExitCode::SUCCESS;
    }
    render::out(&escape_control(&run_text(&run, &children)));
    ExitCode::SUCCESS
}

/// Everything recorded about one run, for people.
pub(crate) fn run_text(run: &RunRecord, children: &[RunSummary]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "run {}", run.id);
    let mut line = |name: &str, value: String| {
        let _ = writeln!(text, "  {name:<11} {value}");
    };
    let mut agent = run.agent.clone();
    if let Some(version) = &run.version {
        let _ = write!(agent, " {version}");
    }
    if let Some(commit) = &run.commit {
        let _ = write!(agent, " (commit {})", commit.get(..12).unwrap_or(commit));
    }
    line("agent", agent);
    if run.agent_dir.as_os_str().is_empty() {
        line("directory", "- (the agent was not found)".to_owned());
    } else {
        line("directory", run.agent_dir.display().to_string());
    }
    line("method", run.method.clone());
    line("mode", run.mode.clone());
    match &run.parent_id {
        Some(parent) => line("caller", format!("{} (a tool of run {parent})", run.caller)),
        None => line("caller", run.caller.clone()),
    }
    line("started", format!("{} UTC", timestamp(run.started_at_ms, true)));
    line(
        "outcome",
        match (&run.error_type, &run.error_message) {
            (None, _) => "ok".to_owned(),
            (Some(t), Some(m)) => format!("{t}: {}", m.lines().next().unwrap_or_default()),
            (Some(t), None) => t.clone(),
        },
    );
    let d = &run.durations;
    let mut steps = Vec::new();
    for (name, step) in
        [("slot", d.slot), ("environment", d.environment), ("start-up", d.startup), ("call", d.call)]
    {
        if let Some(step) = step {
            steps.push(format!("{name} {}", format_ms(ms(step))));
        }
    }
    if !d.tools.is_zero() {
        steps.push(format!("tools {}", format_ms(ms(d.tools))));
    }
    let steps = if steps.is_empty() { String::new() } else { format!(" ({})", steps.join(", ")) };
    line("time", format!("{}{steps}", format_ms(ms(d.total))));
    if run.environment_built {
        line("environment", "built by this call".to_owned());
    }
    if let Some(bytes) = run.memory_bytes {
        line("memory", agenthub_core::format_bytes(bytes));
    }
    match (run.exit_code, run.signal) {
        (_, Some(signal)) => line("exit", format!("killed by signal {signal}")),
        (Some(code), None) => line("exit", format!("code {code}")),
        (None, None) => {}
    }
    if run.tool_calls > 0 {
        line("tool calls", run.tool_calls.to_string());
    }
    if let Some(params) = &run.params {
        line("parameters", params.clone());
    }
    if let Some(result) = &run.result {
        line("result", result.clone());
    }
    if let Some(stderr) = &run.stderr_tail {
        let _ = writeln!(text, "  stderr (its end):");
        for l in stderr.lines() {
            let _ = writeln!(text, "    {l}");
        }
    }
    if !children.is_empty() {
        let _ = writeln!(text, "  calls its agent made through agent tools:");
        for l in runs_table(children).lines() {
            let _ = writeln!(text, "    {l}");
        }
    }
    text
}

fn prune(config: &Config, json: bool) -> ExitCode {
    match History::prune(&config.home, Retention::from_config(&config.history)) {
        Ok(report) if json => {
            render::out_json(&report);
            ExitCode::SUCCESS
        }
        Ok(report) => {
            render::out(&format!(
                "Removed {} record(s) older than {} day(s) and {} beyond the newest {}; {} left.\n",
                report.removed_by_age,
                config.history.keep_days,
                report.removed_by_count,
                config.history.max_rows,
                report.left
            ));
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

pub(crate) fn stats(config: &Config, args: &StatsArgs) -> ExitCode {
    let filter = StatsFilter { agent: args.agent.as_deref().map(agent_key), since_ms: args.since.map(since) };
    let stats = match open_history(config).and_then(|h| h.stats(&filter)) {
        Ok(stats) => stats,
        Err(e) => return failed(&e),
    };
    if args.json {
        render::out_json(&stats);
        return ExitCode::SUCCESS;
    }
    if stats.calls == 0 {
        say_no_runs(config, args.agent.as_deref(), args.since.is_some());
        return ExitCode::SUCCESS;
    }
    render::out(&escape_control(&stats_text(&stats)));
    ExitCode::SUCCESS
}

/// The statistics, for people.
pub(crate) fn stats_text(stats: &Stats) -> String {
    let mut text = String::new();
    let _ =
        writeln!(text, "{} call(s), {} failed ({:.2}%)", stats.calls, stats.failed, stats.error_rate * 100.0);
    if !stats.errors.is_empty() {
        let rows: Vec<Vec<String>> = stats
            .errors
            .iter()
            .map(|e| vec![e.error_type.clone(), e.calls.to_string(), format!("{:.2}%", e.rate * 100.0)])
            .collect();
        let _ = write!(text, "\n{}", table(&["ERROR", "CALLS", "RATE"], &rows, &[1, 2]));
    }
    let rows: Vec<Vec<String>> = stats
        .methods
        .iter()
        .map(|g| {
            vec![
                g.agent.clone(),
                g.method.clone(),
                g.mode.clone(),
                g.calls.to_string(),
                g.failed.to_string(),
                format_ms(g.p50_ms),
                format_ms(g.p95_ms),
                format_ms(g.p99_ms),
            ]
        })
        .collect();
    let _ = write!(
        text,
        "\n{}",
        table(&["AGENT", "METHOD", "MODE", "CALLS", "FAILED", "P50", "P95", "P99"], &rows, &[3, 4, 5, 6, 7])
    );
    let median = |p: Option<f64>| p.map_or_else(|| "-".to_owned(), format_ms);
    let _ = writeln!(
        text,
        "\ncold calls (started a process): {}, median {}\nwarm calls (a running worker): {}, median {}\nenvironment builds: {}, median {}",
        stats.cold.calls,
        median(stats.cold.p50_ms),
        stats.warm.calls,
        median(stats.warm.p50_ms),
        stats.environment_builds.builds,
        median(stats.environment_builds.p50_ms),
    );
    text
}

/// Columns aligned; those in `right` aligned right; the last column not padded.
fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths = vec![0; header.len()];
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len() - 1;
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
            if right.contains(&i) {
                let _ = write!(line, "{cell:>w$}");
            } else if i == last {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:w$}");
            }
            if i != last {
                line.push_str("  ");
            }
        }
        let _ = writeln!(text, "{}", line.trim_end());
    }
    text
}

/// The agent as run history names it: an id as given, a path as its canonical directory.
fn agent_key(agent: &str) -> String {
    if agent.starts_with(['.', '/', '~']) {
        let path = match agent.strip_prefix('~') {
            Some(rest) => std::env::var_os("HOME").map_or_else(
                || std::path::PathBuf::from(agent),
                |home| std::path::PathBuf::from(home).join(rest.trim_start_matches('/')),
            ),
            None => std::path::PathBuf::from(agent),
        };
        return std::fs::canonicalize(&path).unwrap_or(path).display().to_string();
    }
    agent.to_owned()
}

/// The start of the window `age` ends now, in milliseconds since the epoch.
fn since(age: Duration) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.saturating_sub(age).as_millis()).unwrap_or(i64::MAX)
}

/// `2026-12-03 22:50:01` (with milliseconds when `precise`), UTC.
fn timestamp(ms: i64, precise: bool) -> String {
    // What the file holds is shown within years 1970 to 9999 (RFC 3339's).
    let ms = ms.clamp(0, 253_402_300_799_999);
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let text = if precise {
        humantime::format_rfc3339_millis(at).to_string()
    } else {
        humantime::format_rfc3339_seconds(at).to_string()
    };
    text.trim_end_matches('Z').replacen('T', " ", 1)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A time in milliseconds for people: `0.412 ms`, `4.12 ms`, `41.2 ms`, `1.25 s`.
fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

fn failed(e: &HistoryError) -> ExitCode {
    render::err(&escape_control(&format!("error: {e}\n  help: {}\n", e.suggestion())));
    ExitCode::from(1)
}

/// The history of the home: with the one-shot calls' journal folded in, unless history is
/// off (then nothing is written, and what was recorded before is still read).
fn open_history(config: &agenthub_core::Config) -> Result<History, agenthub_history::HistoryError> {
    if config.history.enabled { History::open(&config.home) } else { History::open_unfolded(&config.home) }
}
