//! One module per command: turn arguments into one library call and render the answer.

mod batch;
mod bench;
mod completions;
mod doctor;
mod env;
mod exec;
mod info;
mod init;
mod list;
mod validate;

use std::process::ExitCode;

use agenthub_core::{Config, ConfigError};

use crate::args::{Cli, Command};
use crate::render;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> ExitCode {
    if let Command::Completions { shell } = cli.command {
        return completions::run(shell); // needs no configuration
    }
    let config = match Config::load_from(cli.home.clone()) {
        Ok(config) => config,
        Err(e) => return usage_error(&e),
    };
    init_logging(&config.runtime.log_level);
    if matches!(cli.command, Command::Exec(_) | Command::Env(_) | Command::Batch(_) | Command::Bench(_)) {
        // Commands that run agents or installers clean up after themselves on a signal.
        crate::signals::handle();
    }
    match cli.command {
        Command::Exec(args) => exec::run(config, &args),
        Command::List { json } => list::run(&config, json),
        Command::Info { agent, json } => info::run(&config, &agent, json),
        Command::Env(cmd) => env::run(config, cmd),
        Command::Batch(args) => batch::run(config, &args),
        Command::Bench(args) => bench::run(config, &args),
        Command::Init(args) => init::run(&args),
        Command::Validate(args) => validate::run(&config, &args),
        Command::Doctor { json } => doctor::run(&config, json),
        Command::Completions { shell } => completions::run(shell),
    }
}

/// A configuration error (at load, or after flags were applied): exit 2 like any usage
/// error, with the suggestion.
pub(crate) fn usage_error(e: &ConfigError) -> ExitCode {
    let help = e.suggestion().map(|s| format!("  help: {s}\n")).unwrap_or_default();
    render::err(&agenthub_core::escape_control(&format!("error: {e}\n{help}")));
    ExitCode::from(2)
}

fn init_logging(level: &str) {
    let level = level.to_ascii_uppercase().parse().unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .try_init();
}
