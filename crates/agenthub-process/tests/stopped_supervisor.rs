//! An agent that stops its supervisor (the runtime, here this test process) with SIGSTOP
//! does not suspend its deadline: once resumed, a call that outlived its timeout is a
//! timeout, never a success. Alone in its own test binary: stopping the test process
//! would disturb the deadlines of any test running beside it.

mod support;

use std::time::Duration;

use agenthub_process::{
    ProcessBackend, ProcessLimits, ProcessSpec, StdProcessBackend, Termination, TokioProcessBackend,
};

/// Stops its parent, answers while the parent is stopped, and has a helper (in a session
/// of its own, so nothing here can kill it first) resume the parent 2 s later.
const AGENT: &str = "import os, signal, subprocess, sys\n\
    parent = os.getppid()\n\
    resume = f'import os, signal, time; time.sleep(2); os.kill({parent}, signal.SIGCONT)'\n\
    subprocess.Popen([sys.executable, '-c', resume], start_new_session=True)\n\
    os.kill(parent, signal.SIGSTOP)\n\
    print('{\"result\": 1}', flush=True)\n";

#[test]
fn a_call_that_stops_its_supervisor_past_the_deadline_times_out() {
    let limits = ProcessLimits {
        timeout: Some(Duration::from_secs(1)),
        max_memory_bytes: None,
        ..ProcessLimits::default()
    };
    let spec =
        ProcessSpec::new(support::real_python(), std::env::temp_dir()).args(["-c", AGENT]).limits(limits);

    // Whether the exit or the timer is seen first after the resume is a race: several rounds.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for round in 0..3 {
        let out = pollster::block_on(StdProcessBackend.run(&spec)).unwrap();
        assert_eq!(out.termination, Some(Termination::Timeout), "std, round {round}: {out:?}");
        assert!(out.wall_time >= Duration::from_millis(1900), "std: {:?}", out.wall_time);

        let out = rt.block_on(TokioProcessBackend.run(&spec)).unwrap();
        assert_eq!(out.termination, Some(Termination::Timeout), "tokio, round {round}: {out:?}");
        assert!(out.wall_time >= Duration::from_millis(1900), "tokio: {:?}", out.wall_time);
    }
}
