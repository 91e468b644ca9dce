//! File descriptors never leak. Alone in its own test binary: fd counts of a process that
//! runs other tests in parallel mean nothing.

#[path = "support/mod.rs"]
mod support;
use std::time::Duration;

use agenthub_process::{ProcessBackend, ProcessLimits, ProcessSpec, StdProcessBackend, TokioProcessBackend};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_thousand_calls_leave_the_fd_count_unchanged() {
    let python = support::real_python();
    // A timeout, a memory cap and stderr output, so every code path opens and closes its fds.
    let spec = ProcessSpec::new(python, std::env::temp_dir())
        .args(["-c", "import sys; print('x'); print('e', file=sys.stderr)"])
        .limits(ProcessLimits { timeout: Some(Duration::from_secs(20)), ..ProcessLimits::default() });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Warm up: the runtime's and the allocator's own fds are opened lazily.
    pollster::block_on(StdProcessBackend.run(&spec)).unwrap();
    rt.block_on(TokioProcessBackend.run(&spec)).unwrap();
    let before = open_fds();
    for i in 0..1000 {
        let out = if i % 2 == 0 {
            pollster::block_on(StdProcessBackend.run(&spec)).unwrap()
        } else {
            rt.block_on(TokioProcessBackend.run(&spec)).unwrap()
        };
        assert_eq!(out.stdout, b"x\n");
    }
    assert_eq!(open_fds(), before);
}
