//! `agenthub completions SHELL`.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::Cli;
use crate::render;

pub(crate) fn run(shell: clap_complete::Shell) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "agenthub", &mut script);
    render::out(&String::from_utf8_lossy(&script));
    ExitCode::SUCCESS
}
