//! `agenthub doctor`.

use std::process::ExitCode;

use agenthub_core::Config;

pub(crate) fn run(_config: &Config, _json: bool) -> ExitCode {
    ExitCode::from(1)
}
