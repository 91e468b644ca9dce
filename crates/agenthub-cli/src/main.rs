//! The `agenthub` command-line tool: a thin layer over `agenthub-runtime`.

mod args;
mod commands;
mod progress;
mod render;
mod signals;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse_args();
    let code = commands::run(cli);
    match signals::received() {
        Some(signal) => ExitCode::from(u8::try_from(signals::exit_status(signal)).unwrap_or(1)),
        None => code,
    }
}
