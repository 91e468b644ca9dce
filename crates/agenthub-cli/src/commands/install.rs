//! `agenthub install`, `agenthub update`, `agenthub remove`.

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use agenthub_core::{AgentId, Config, format_bytes};
use agenthub_runtime::{AgentRuntime, InstallError, InstallOptions, Installed, ProcessBackendKind};

use crate::args::{InstallArgs, RemoveArgs, UpdateArgs};
use crate::progress::{CliProgress, red};
use crate::render;

/// A runtime whose installs report to a fresh [`CliProgress`].
fn runtime(mut config: Config) -> Result<(AgentRuntime, Arc<CliProgress>), ExitCode> {
    // This thread spawns and outlives every git and installer process here.
    config.runtime.kill_agents_with_runtime = true;
    let progress = Arc::new(CliProgress::new());
    match AgentRuntime::with_backends(config, None, ProcessBackendKind::Std) {
        Ok(runtime) => Ok((runtime.with_progress(progress.clone()), progress)),
        Err(e) => {
            progress.finish();
            let text = format!("{e}\n  help: {}\n", e.suggestion().unwrap_or_default());
            render::err(&format!("{}: {}", red("error"), agenthub_core::escape_control(&text)));
            Err(ExitCode::from(1))
        }
    }
}

pub(crate) fn install(config: Config, args: &InstallArgs) -> ExitCode {
    let as_id = match args.as_id.as_deref().map(str::parse::<AgentId>).transpose() {
        Ok(id) => id,
        Err(e) => {
            render::err(&format!(
                "{}: --as: {}\n",
                red("error"),
                agenthub_core::escape_control(&e.to_string())
            ));
            return ExitCode::from(2);
        }
    };
    let (runtime, progress) = match runtime(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let started = Instant::now();
    let options = InstallOptions { as_id, force: args.force, no_env: args.no_env, if_missing: false };
    let result = runtime.installer().install(&args.source, &options);
    progress.finish();
    report(result, args.json, started, "Replaced")
}

pub(crate) fn update(config: Config, args: &UpdateArgs) -> ExitCode {
    let (runtime, progress) = match runtime(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let started = Instant::now();
    let reference = args.reference.as_deref().map(|r| r.strip_prefix('@').unwrap_or(r));
    let result = runtime.installer().update(&args.agent, reference);
    progress.finish();
    report(result, args.json, started, "Updated")
}

pub(crate) fn remove(config: Config, args: &RemoveArgs) -> ExitCode {
    if !args.yes {
        let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        if !terminal {
            return failure(&InstallError::NotConfirmed { agent: args.agent.clone() }, args.json);
        }
        render::err(&agenthub_core::escape_control(&format!(
            "Remove {} and its environments? [y/N] ",
            args.agent
        )));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            render::err("Nothing removed.\n");
            return ExitCode::from(1);
        }
    }
    let (runtime, progress) = match runtime(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.installer().remove(&args.agent);
    progress.finish();
    match result {
        Ok(removed) if args.json => {
            render::out(&format!("{}\n", serde_json::to_string(&removed).unwrap_or_default()));
            ExitCode::SUCCESS
        }
        Ok(removed) => {
            render::err(&agenthub_core::escape_control(&format!(
                "Removed {} ({} freed)\n",
                removed.agent,
                format_bytes(removed.freed_bytes)
            )));
            ExitCode::SUCCESS
        }
        Err(e) => failure(&e, args.json),
    }
}

/// Prints an install's outcome; `replaced` is the verb for an install that replaced one.
fn report(result: Result<Installed, InstallError>, json: bool, started: Instant, replaced: &str) -> ExitCode {
    match result {
        Ok(installed) if json => {
            render::out(&format!("{}\n", serde_json::to_string(&installed).unwrap_or_default()));
            ExitCode::SUCCESS
        }
        Ok(installed) => {
            let record = &installed.record;
            let at = match (&record.requested_ref, &record.commit_sha) {
                (Some(r), Some(sha)) => format!(" at {r} ({})", short(sha)),
                (None, Some(sha)) => format!(" at {}", short(sha)),
                _ => String::new(),
            };
            let verb = if installed.replaced { replaced } else { "Installed" };
            let env = if installed.environment_built { "" } else { " (environment not built yet)" };
            let mut text = format!(
                "{verb} {}{at} in {:.2}s{env}\n  {}\n",
                installed.agent,
                started.elapsed().as_secs_f64(),
                installed.path.display()
            );
            if installed.permissions.asks_for_access() {
                let _ = writeln!(text, "  It asks for access beyond its own directory:");
                for line in installed.permissions.describe() {
                    let _ = writeln!(text, "    {line}");
                }
            }
            render::err(&agenthub_core::escape_control(&text));
            ExitCode::SUCCESS
        }
        Err(e) => failure(&e, json),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Reports a failure: on stderr for people; with `--json`, also
/// `{"error", "error_type", "suggestion", "stderr"?}` on stdout.
fn failure(e: &InstallError, json: bool) -> ExitCode {
    if json {
        let mut object = serde_json::json!({
            "error": e.to_string(),
            "error_type": e.kind(),
            "suggestion": e.suggestion(),
        });
        if let Some(stderr) = e.stderr() {
            object["stderr"] = stderr.into();
        }
        render::out(&format!("{object}\n"));
    }
    let mut text = format!("{e}\n");
    if let Some(stderr) = e.stderr() {
        let lines: Vec<&str> = stderr.lines().collect();
        for line in &lines[lines.len().saturating_sub(20)..] {
            let _ = writeln!(text, "    {line}");
        }
    }
    let _ = writeln!(text, "  help: {}", e.suggestion());
    render::err(&format!("{}: {}", red("error"), agenthub_core::escape_control(&text)));
    ExitCode::from(if e.is_usage() { 2 } else { 1 })
}
