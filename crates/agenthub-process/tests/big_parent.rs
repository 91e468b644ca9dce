//! A spawner much larger than its child must not report its own size as the child's peak
//! (Linux carries the spawner's high-water mark across exec). Alone in its own test
//! binary because it makes the test process itself large.

#[path = "support/mod.rs"]
mod support;
use agenthub_process::{ProcessBackend, ProcessLimits, ProcessSpec, StdProcessBackend};

#[test]
fn a_small_child_of_a_large_parent_reports_its_own_peak() {
    // Make this process's resident high-water mark ~400 MiB.
    let mut ballast = vec![0u8; 400 << 20];
    for i in (0..ballast.len()).step_by(4096) {
        ballast[i] = 1;
    }
    std::hint::black_box(&ballast);
    let python = support::real_python();
    let code =
        "import time\nb = bytearray(48 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(1.0)";
    let spec =
        ProcessSpec::new(python, std::env::temp_dir()).args(["-c", code]).limits(ProcessLimits::default());
    let out = pollster::block_on(StdProcessBackend.run(&spec)).unwrap();
    assert!(out.status.success());
    let peak = out.peak_rss_bytes.expect("sampled while it ran");
    assert!(peak >= 48 << 20, "peak {peak} is below what the child touched");
    assert!(peak < 300 << 20, "peak {peak} is the parent's size, not the child's");
    drop(ballast);
}

#[test]
fn a_quick_child_of_a_large_parent_is_sampled_when_it_answers() {
    let mut ballast = vec![0u8; 400 << 20];
    for i in (0..ballast.len()).step_by(4096) {
        ballast[i] = 1;
    }
    std::hint::black_box(&ballast);
    let python = support::real_python();
    // Touches 48 MiB, answers, lingers 20 ms: over before a sample every second would come.
    let code = "import sys, time\nb = bytearray(48 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n\
                print('{\"result\": 1}', flush=True)\ntime.sleep(0.02)";
    let limits = ProcessLimits {
        memory_sample_interval: std::time::Duration::from_secs(1),
        ..ProcessLimits::default()
    };
    let spec = ProcessSpec::new(python, std::env::temp_dir()).args(["-c", code]).limits(limits);
    let out = pollster::block_on(StdProcessBackend.run(&spec)).unwrap();
    assert!(out.status.success());
    let peak = out.peak_rss_bytes.expect("sampled when it answered");
    assert!(peak >= 48 << 20, "peak {peak} is below what the child touched before answering");
    assert!(peak < 300 << 20, "peak {peak} is the parent's size, not the child's");
    drop(ballast);
}
