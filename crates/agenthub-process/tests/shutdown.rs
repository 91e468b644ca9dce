//! `shutdown()` kills every call in flight and refuses new ones. Alone in its own test
//! binary: shutdown is for the whole process and cannot be undone.

#[path = "support/mod.rs"]
mod support;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenthub_process::{
    AgentInvocation, Containment, EnvSpec, ProcessBackend, ProcessError, ProcessLimits, ProcessManager,
    ProcessSpec, StdProcessBackend, Termination, TokioProcessBackend,
};
use support::{real_python, survivors};

/// Python that starts a child in its group and a `setsid` child, all tagged with `token`
/// and ignoring SIGTERM, then sleeps.
fn agent(token: &str) -> String {
    format!(
        "import signal, subprocess, sys, time\n\
         hold = 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'\n\
         subprocess.Popen([sys.executable, '-c', hold, '{token}-group'])\n\
         subprocess.Popen([sys.executable, '-c', hold, '{token}-setsid'], start_new_session=True)\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         time.sleep(600)"
    )
}

fn spec(token: &str, containment: Containment) -> ProcessSpec {
    let mut spec = ProcessSpec::new(real_python(), std::env::temp_dir())
        .args(["-c", &agent(token)])
        .limits(ProcessLimits { timeout: Some(Duration::from_secs(60)), ..ProcessLimits::default() });
    spec.containment = containment;
    spec
}

#[test]
fn shutdown_kills_every_call_in_flight_and_refuses_new_ones() {
    let token = format!("agenthub-shutdown-{}", std::process::id());
    assert!(!agenthub_process::is_shut_down());

    // One call per backend, one through a manager, with and without a cgroup.
    let std_spec = spec(&format!("{token}-std"), Containment::Auto);
    let std_call = std::thread::spawn(move || pollster::block_on(StdProcessBackend.run(&std_spec)));
    let tokio_spec = spec(&format!("{token}-tokio"), Containment::ProcessGroup);
    let tokio_call = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(TokioProcessBackend.run(&tokio_spec))
    });
    let dir = std::env::temp_dir();
    let script = dir.join(format!("agenthub-shutdown-{}.py", std::process::id()));
    std::fs::write(&script, agent(&format!("{token}-manager"))).unwrap();
    let manager = Arc::new(ProcessManager::new(Arc::new(StdProcessBackend)));
    let call = AgentInvocation {
        python: real_python(),
        agent_dir: dir.clone(),
        script: script.file_name().unwrap().into(),
        request_json: "{}".into(),
        env: EnvSpec::default(),
        limits: ProcessLimits { timeout: Some(Duration::from_secs(60)), ..ProcessLimits::default() },
        containment: Containment::ProcessGroup,
        die_with_parent: false,
        sandbox: None,
    };
    let m = Arc::clone(&manager);
    let manager_call = std::thread::spawn(move || pollster::block_on(m.execute_agent(call)));

    // Every call has started both its children.
    let started = Instant::now();
    while survivors(&token).len() < 6 {
        assert!(started.elapsed() < Duration::from_secs(30), "the agents never started their children");
        std::thread::sleep(Duration::from_millis(20));
    }

    assert_eq!(agenthub_process::shutdown(), 3);
    assert!(agenthub_process::is_shut_down());
    for call in [std_call, tokio_call, manager_call] {
        let out = call.join().unwrap().expect("a cancelled call still returns its output");
        assert_eq!(out.termination, Some(Termination::Cancelled));
        assert!(!out.status.success());
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(survivors(&token), Vec::<u32>::new());
    std::fs::remove_file(script).unwrap();

    // Nothing starts any more, on either backend.
    let refused = ProcessSpec::new(real_python(), std::env::temp_dir()).args(["-c", "print(1)"]);
    assert!(matches!(pollster::block_on(StdProcessBackend.run(&refused)), Err(ProcessError::Cancelled)));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(matches!(rt.block_on(TokioProcessBackend.run(&refused)), Err(ProcessError::Cancelled)));
    assert_eq!(agenthub_process::shutdown(), 0);
    let err = agenthub_core::AgentRuntimeError::from(ProcessError::Cancelled);
    assert!(err.to_string().contains("cancelled"), "{err}");
}
