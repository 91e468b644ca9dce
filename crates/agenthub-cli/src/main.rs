//! The `agenthub` command-line tool: a thin layer over `agenthub-runtime`.

mod args;
mod commands;
mod progress;
mod render;
mod signals;

use std::process::ExitCode;

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let cli = args::Cli::parse_args();
    let code = commands::run(cli);
    match signals::received() {
        Some(signal) => ExitCode::from(u8::try_from(signals::exit_status(signal)).unwrap_or(1)),
        None => code,
    }
}

/// Allocations of 1 MiB and more get their own mapping, given back when freed. glibc
/// otherwise raises the threshold to the largest block freed, and a long-lived `batch` or
/// `mcp serve` that passed a few 15 MiB replies keeps tens of MiB per thread arena after it.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt with a documented parameter, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
