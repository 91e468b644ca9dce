//! Integration tests of both process backends against real child processes.

mod backends;
mod sandbox;
#[path = "../support/mod.rs"]
mod support;

use agenthub_process::{ProcessBackend, ProcessOutput, ProcessSpec, StdProcessBackend, TokioProcessBackend};

pub(crate) use support::{real_python as python, survivors};

/// A spec running `python -c code args...` in the temp dir.
pub(crate) fn py(code: &str) -> ProcessSpec {
    ProcessSpec::new(python(), std::env::temp_dir()).args(["-c", code])
}

pub(crate) fn run_std(spec: &ProcessSpec) -> ProcessOutput {
    pollster::block_on(StdProcessBackend.run(spec)).expect("std backend runs the child")
}

pub(crate) fn run_tokio(spec: &ProcessSpec) -> ProcessOutput {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(TokioProcessBackend.run(spec)).expect("tokio backend runs the child")
}
