//! One module per command: turn arguments into one library call and render the answer.

mod env;
mod exec;
mod info;
mod list;

use std::process::ExitCode;

use agenthub_core::{Config, ConfigError};

use crate::args::{Cli, Command};
use crate::render;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> ExitCode {
    let config = match load_config(cli.home.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            render::err(&format!("error: {e}\n"));
            return ExitCode::from(2);
        }
    };
    init_logging(&config.runtime.log_level);
    match cli.command {
        Command::Exec(args) => exec::run(config, &args),
        Command::List { json } => list::run(&config, json),
        Command::Info { agent, json } => info::run(&config, &agent, json),
        Command::Env(cmd) => env::run(config, cmd),
    }
}

fn load_config(home: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    match home {
        Some(home) => {
            let text = std::fs::read_to_string(home.join("config.yaml")).ok();
            Config::from_sources(home.to_path_buf(), text.as_deref(), std::env::vars())
        }
        None => Config::load(),
    }
}

fn init_logging(level: &str) {
    let level = level.parse().unwrap_or(tracing::Level::INFO);
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
