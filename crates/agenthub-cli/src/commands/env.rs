//! `agenthub env …`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use agenthub_core::{AgentRuntimeError, Config, EnvBackendKind};
use agenthub_runtime::{
    AgentRuntime, EnvState, ExecutionResponse, Freed, GcReport, ProcessBackendKind, ReadyEnvironment,
};

use crate::args::{EnvBuildArgs, EnvCommand};
use crate::render;

/// What a build command does with an environment that exists.
#[derive(Clone, Copy)]
enum Build {
    /// Only when there is none (missing or broken).
    Create,
    /// When it is not ready.
    Sync,
    /// Always.
    Rebuild,
}

pub(crate) fn run(mut config: Config, command: EnvCommand) -> ExitCode {
    // One thread spawns and outlives every installer here: they die with it.
    config.runtime.kill_agents_with_runtime = true;
    match command {
        EnvCommand::Create(args) => build(config, &args, Build::Create),
        EnvCommand::Sync(args) => build(config, &args, Build::Sync),
        EnvCommand::Rebuild(args) => build(config, &args, Build::Rebuild),
        EnvCommand::Path { agent, json } => path(&config, &agent, json),
        EnvCommand::Remove { agent, json } => remove(&config, &agent, json),
        EnvCommand::Gc { json } => gc(&config, json),
    }
}

fn failed(e: AgentRuntimeError, started: Instant, json: bool) -> ExitCode {
    render::response(&ExecutionResponse::failed(e, started.elapsed()), json)
}

fn build(config: Config, args: &EnvBuildArgs, mode: Build) -> ExitCode {
    let started = Instant::now();
    if !matches!(mode, Build::Rebuild) {
        let status = match agenthub_runtime::environment_status(&config, &args.agent) {
            Ok(status) => status,
            Err(e) => return failed(e, started, args.json),
        };
        let skip = match mode {
            Build::Create => !matches!(status.state, EnvState::Missing | EnvState::Broken),
            Build::Sync | Build::Rebuild => status.state == EnvState::Ready,
        };
        if skip && status.state != EnvState::Foreign {
            let note = match status.state {
                EnvState::Stale => {
                    format!(
                        " (stale: `agenthub env sync {}` rebuilds it)",
                        agenthub_core::shell_quote(&args.agent)
                    )
                }
                _ => String::new(),
            };
            if args.json {
                let object = serde_json::json!({
                    "path": status.venv, "state": status.state.as_str(), "built": false, "seconds": started.elapsed().as_secs_f64(),
                });
                render::out(&format!("{object}\n"));
            } else {
                render::out(&format!("{} is {}{note}\n", status.venv.display(), status.state.as_str()));
            }
            return ExitCode::SUCCESS;
        }
    }
    let backend: Option<EnvBackendKind> = args.env_backend;
    let agent = args.agent.clone();
    let built = || -> Result<ReadyEnvironment, AgentRuntimeError> {
        let runtime = AgentRuntime::with_backends(config, backend, ProcessBackendKind::Std)?;
        match mode {
            Build::Rebuild => pollster::block_on(runtime.rebuild_environment(&agent)),
            Build::Create | Build::Sync => pollster::block_on(runtime.ensure_environment(&agent)),
        }
    };
    match built() {
        Ok(env) => {
            let verb = match mode {
                Build::Create => "created",
                Build::Sync => "synced",
                Build::Rebuild => "rebuilt",
            };
            let took = started.elapsed().as_secs_f64();
            if args.json {
                let object = serde_json::json!({"path": env.venv, "state": "ready", "built": env.built, "seconds": took});
                render::out(&format!("{object}\n"));
            } else {
                render::out(&format!("{verb} {} in {took:.1}s\n", env.venv.display()));
            }
            ExitCode::SUCCESS
        }
        Err(e) => failed(e, started, args.json),
    }
}

fn path(config: &Config, agent: &str, json: bool) -> ExitCode {
    let started = Instant::now();
    let named = agenthub_core::shell_quote(agent);
    match agenthub_runtime::environment_status(config, agent) {
        Ok(status) if json => {
            let object = serde_json::json!({"path": status.venv, "state": status.state.as_str()});
            render::out(&format!("{object}\n"));
            if matches!(status.state, EnvState::Ready | EnvState::Stale) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Ok(status) if matches!(status.state, EnvState::Ready | EnvState::Stale) => {
            if status.state == EnvState::Stale {
                render::err(&agenthub_core::escape_control(&format!(
                    "warning: the environment is stale; `agenthub env sync {named}` rebuilds it\n"
                )));
            }
            render::out(&format!("{}\n", status.venv.display()));
            ExitCode::SUCCESS
        }
        Ok(status) => {
            let why = status.detail.map(|d| format!(": {d}")).unwrap_or_default();
            let help = match status.state {
                EnvState::Foreign => {
                    "move it away, or set environment.venv_location to another name".to_owned()
                }
                _ if status.last_failure.is_some() => format!(
                    "`agenthub -v env create {named}` builds it again and shows what the installer prints"
                ),
                _ => format!("build it with `agenthub env create {named}` (or run the agent once)"),
            };
            let text = format!("error: the environment is {}{why}\n  help: {help}\n", status.state.as_str());
            render::err(&agenthub_core::escape_control(&text));
            ExitCode::from(1)
        }
        Err(e) => failed(e, started, json),
    }
}

fn remove(config: &Config, agent: &str, json: bool) -> ExitCode {
    let started = Instant::now();
    match agenthub_runtime::remove_environment(config, agent) {
        Ok(freed) => {
            if json {
                render::out(&format!("{}\n", serde_json::to_string(&freed).unwrap_or_default()));
            } else if freed.removed.is_empty() {
                render::out("nothing to remove: the agent has no environment\n");
            } else {
                render::out(&agenthub_core::escape_control(&freed_text(&freed, &[])));
            }
            ExitCode::SUCCESS
        }
        Err(e) => failed(e, started, json),
    }
}

fn gc(config: &Config, json: bool) -> ExitCode {
    let report: GcReport = agenthub_runtime::collect_unused_environments(config);
    if json {
        render::out(&format!("{}\n", serde_json::to_string(&report).unwrap_or_default()));
    } else {
        let mut text = freed_text(&report.freed, &report.skipped);
        for e in &report.errors {
            let _ = writeln!(text, "warning: skipped {}: {}", e.path.display(), e.error);
        }
        render::out(&agenthub_core::escape_control(&text));
    }
    if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn freed_text(freed: &Freed, skipped: &[std::path::PathBuf]) -> String {
    let mut text = String::new();
    for path in &freed.removed {
        let _ = writeln!(text, "removed {}", path.display());
    }
    for path in skipped {
        let _ = writeln!(text, "skipped {} (a build is in progress)", path.display());
    }
    let _ = writeln!(text, "freed {} bytes ({})", freed.bytes, human_bytes(freed.bytes));
    text
}

/// `1536` → `1.5 KiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
