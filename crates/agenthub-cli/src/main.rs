//! The `agenthub` command-line tool: a thin layer over `agenthub-runtime`.

mod args;
mod commands;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    commands::run(cli)
}
