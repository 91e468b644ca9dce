//! The same behaviour checks, run once per backend.

use std::time::{Duration, Instant};

use agenthub_process::{EnvSpec, ExitStatus, ProcessLimits, ProcessManager, ProcessSpec, Termination};

use crate::{py, survivors};

fn limits() -> ProcessLimits {
    ProcessLimits { timeout: Some(Duration::from_secs(20)), ..ProcessLimits::default() }
}

fn token() -> String {
    format!("agenthub-test-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos() ^ rand_bits())
}

fn rand_bits() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod std_backend {
            $( #[test] fn $name() { super::$name(crate::run_std) } )*
        }
        mod tokio_backend {
            $( #[test] fn $name() { super::$name(crate::run_tokio) } )*
        }
    };
}

both_backends!(
    captures_stdout_stderr_and_exit_code,
    reports_the_killing_signal,
    timeout_kills_the_group_even_when_sigterm_is_ignored,
    stdout_cap_stops_the_child_without_buffering_more,
    stderr_keeps_only_the_tail,
    both_pipes_full_does_not_deadlock,
    memory_cap_stops_the_child_and_reports_peak,
    peak_memory_is_measured,
    leftover_children_are_killed_when_the_agent_exits,
    escaped_child_holding_the_pipes_does_not_hang_the_call,
    escapees_die_on_timeout_with_a_cgroup,
    escapees_die_on_timeout_with_the_fallback,
    escapees_die_after_a_normal_exit_with_a_cgroup,
    escapees_die_after_a_normal_exit_with_the_fallback,
    environment_is_set_and_cleared,
    huge_time_limits_mean_no_limit,
    a_forking_daemon_leaves_no_survivors_without_a_cgroup,
    memory_cap_covers_children_with_a_cgroup,
    memory_cap_covers_children_without_a_cgroup,
    memory_cap_counts_shared_memory_with_a_memory_cgroup,
);

type Run = fn(&ProcessSpec) -> agenthub_process::ProcessOutput;

fn captures_stdout_stderr_and_exit_code(run: Run) {
    let out =
        run(&py("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)").limits(limits()));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr_text().as_deref(), Some("err"));
    assert_eq!(out.status, ExitStatus::Exited(3));
    assert_eq!(out.termination, None);
    assert!(out.wall_time > Duration::ZERO);
}

fn reports_the_killing_signal(run: Run) {
    let out = run(&py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)").limits(limits()));
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGSEGV));
}

fn timeout_kills_the_group_even_when_sigterm_is_ignored(run: Run) {
    let token = token();
    let code = format!(
        "import signal, subprocess, sys, time\n\
         subprocess.Popen([sys.executable, '-c', 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)', '{token}'])\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         time.sleep(600)"
    );
    // The timeout must outlast Python's start-up (and its SIG_IGN) even on a loaded
    // machine: other tests here run a hundred agents at once.
    let limits = ProcessLimits {
        timeout: Some(Duration::from_secs(3)),
        grace_period: Duration::from_millis(300),
        ..ProcessLimits::default()
    };
    let started = Instant::now();
    let out = run(&py(&code).limits(limits));
    assert_eq!(out.termination, Some(Termination::Timeout));
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGKILL));
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(survivors(&token), Vec::<u32>::new(), "grandchild survived");
}

fn stdout_cap_stops_the_child_without_buffering_more(run: Run) {
    let limits = ProcessLimits { max_stdout_bytes: 1000, ..limits() };
    let out = run(&py("import sys\nwhile True: sys.stdout.write('x' * 65536)").limits(limits));
    assert_eq!(out.termination, Some(Termination::StdoutLimit));
    assert_eq!(out.stdout.len(), 1000);
}

fn stderr_keeps_only_the_tail(run: Run) {
    let limits = ProcessLimits { stderr_tail_bytes: 10, ..limits() };
    let out = run(&py("import sys; sys.stderr.write('a' * 100000 + '0123456789')").limits(limits));
    assert_eq!(out.stderr_tail, b"0123456789");
    assert!(out.stderr_truncated);
}

fn both_pipes_full_does_not_deadlock(run: Run) {
    let code =
        "import sys\nfor _ in range(64):\n    sys.stdout.write('o' * 16384); sys.stderr.write('e' * 16384)\n";
    let out = run(&py(code).limits(limits()));
    assert_eq!(out.status, ExitStatus::Exited(0));
    assert_eq!(out.stdout.len(), 64 * 16384);
}

fn memory_cap_stops_the_child_and_reports_peak(run: Run) {
    let limits = ProcessLimits { max_memory_bytes: Some(128 * 1024 * 1024), ..limits() };
    let code =
        "b = bytearray(1024 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('survived')";
    let out = run(&py(code).limits(limits));
    assert_eq!(out.termination, Some(Termination::MemoryLimit));
    assert!(out.stdout.is_empty());
    assert!(out.peak_rss_bytes.unwrap() > 128 * 1024 * 1024, "{:?}", out.peak_rss_bytes);
}

fn peak_memory_is_measured(run: Run) {
    // Held for a moment: with a spawner bigger than the child (this test binary), `wait4`'s
    // figure cannot be told from an inherited one and the 10 ms samples are what counts.
    let code = "b = bytearray(64 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nimport time; time.sleep(0.1)";
    let out = run(&py(code).limits(limits()));
    assert!(out.status.success());
    assert!(out.peak_rss_bytes.unwrap() >= 64 * 1024 * 1024, "{:?}", out.peak_rss_bytes);
}

fn leftover_children_are_killed_when_the_agent_exits(run: Run) {
    let token = token();
    let code = format!(
        "import subprocess, sys\n\
         subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{token}'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
         print('done')"
    );
    let out = run(&py(&code).limits(limits()));
    assert_eq!(out.stdout, b"done\n");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(survivors(&token), Vec::<u32>::new());
}

fn escaped_child_holding_the_pipes_does_not_hang_the_call(run: Run) {
    let token = token();
    let code = format!(
        "import subprocess, sys\n\
         subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3)', '{token}'], start_new_session=True)\n\
         print('done', flush=True)"
    );
    let started = Instant::now();
    let out = run(&py(&code).limits(limits()));
    assert_eq!(out.stdout, b"done\n");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    for pid in survivors(&token) {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

fn environment_is_set_and_cleared(run: Run) {
    let mut spec =
        py("import os; print(os.environ.get('AH_SET'), os.environ.get('HOME'), sorted(os.environ)[:3])");
    spec.env = EnvSpec { clear: true, set: vec![("AH_SET".into(), "1".into())], remove: vec![] };
    let out = run(&spec.limits(limits()));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("1 None"), "{text}");
}

fn huge_time_limits_mean_no_limit(run: Run) {
    // Too large to add to a clock reading: no deadline, no panic.
    for timeout in [Duration::MAX, Duration::from_secs_f64(1e19)] {
        let limits = ProcessLimits {
            timeout: Some(timeout),
            grace_period: Duration::MAX,
            memory_sample_interval: Duration::MAX,
            ..limits()
        };
        let out = run(&py("print('ok')").limits(limits));
        assert_eq!(out.stdout, b"ok\n");
        assert_eq!(out.termination, None);
    }
    // An endless grace period: SIGTERM at the deadline, never SIGKILL.
    let limits = ProcessLimits {
        timeout: Some(Duration::from_millis(500)),
        grace_period: Duration::MAX,
        memory_sample_interval: Duration::ZERO,
        ..limits()
    };
    let out = run(&py("import time; time.sleep(600)").limits(limits));
    assert_eq!(out.termination, Some(Termination::Timeout));
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGTERM));
}

/// Without a cgroup, a daemon that keeps forking `setsid` children while the call ends
/// must not leave any behind: the `/proc` sweep repeats until a pass finds nothing.
fn a_forking_daemon_leaves_no_survivors_without_a_cgroup(run: Run) {
    for round in 0..3 {
        let token = token();
        let code = format!(
            "import os, time  # {token}\n\
             print(os.environ['AGENTHUB_RUN_ID'], flush=True)\n\
             if os.fork() == 0:\n\
             \x20   os.setsid()\n\
             \x20   if os.fork() == 0:\n\
             \x20       for _ in range(10):\n\
             \x20           for _ in range(40):\n\
             \x20               try:\n\
             \x20                   if os.fork() == 0:\n\
             \x20                       os.setsid()\n\
             \x20                       time.sleep(600)\n\
             \x20                       os._exit(0)\n\
             \x20               except OSError:\n\
             \x20                   pass\n\
             \x20           time.sleep(0.02)\n\
             \x20       time.sleep(600)\n\
             \x20   os._exit(0)\n\
             time.sleep(0.3)\n"
        );
        let mut spec = py(&code).limits(limits());
        spec.containment = agenthub_process::Containment::ProcessGroup;
        let out = run(&spec);
        assert!(out.status.success(), "{out:?}");
        let run_id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let left = crate::support::marked(&run_id);
        for &pid in &left {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        assert_eq!(left, Vec::<u32>::new(), "round {round}: survivors of {run_id}");
        assert_eq!(survivors(&token), Vec::<u32>::new(), "round {round}");
    }
}

/// An agent whose child allocates 400 MiB, 10 MiB at a time, while the agent itself stays
/// small; tagged with `token`.
fn allocating_child(token: &str) -> String {
    format!(
        "import subprocess, sys  # {token}\n\
         grow = 'import time\\nkeep = []\\nfor _ in range(40):\\n    keep.append(bytes(10 << 20) + b\\'x\\')\\n    time.sleep(0.02)\\ntime.sleep(600)'\n\
         subprocess.run([sys.executable, '-c', grow, '{token}-child'])\n\
         print('survived', flush=True)\n"
    )
}

fn memory_cap_covers_children(run: Run, containment: agenthub_process::Containment) {
    let token = token();
    let cap = 100 * 1024 * 1024;
    let limits = ProcessLimits { max_memory_bytes: Some(cap), ..limits() };
    let mut spec = py(&allocating_child(&token)).limits(limits);
    spec.containment = containment;
    let out = run(&spec);
    assert_eq!(out.termination, Some(Termination::MemoryLimit), "{containment:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{containment:?}");
    let peak = out.peak_rss_bytes.expect("the tree's peak is known");
    assert!(peak > cap, "{containment:?}: peak {peak} is not the tree's");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(survivors(&token), Vec::<u32>::new(), "{containment:?}");
}

fn memory_cap_covers_children_with_a_cgroup(run: Run) {
    memory_cap_covers_children(run, agenthub_process::Containment::Auto);
}

fn memory_cap_covers_children_without_a_cgroup(run: Run) {
    memory_cap_covers_children(run, agenthub_process::Containment::ProcessGroup);
}

/// Whether this process can make memory cgroups (root, with a v1 memory hierarchy or a
/// cgroup v2 one that delegates memory).
fn memory_cgroups_available() -> bool {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v1 = own.lines().any(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory")));
    let v2 = ["/sys/fs/cgroup/cgroup.subtree_control", "/sys/fs/cgroup/unified/cgroup.subtree_control"]
        .iter()
        .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.split_whitespace().any(|c| c == "memory")));
    crate::support::is_root() && (v1 || v2)
}

#[expect(clippy::print_stderr, reason = "a skipped root-only case says why")]
fn memory_cap_counts_shared_memory_with_a_memory_cgroup(run: Run) {
    if !memory_cgroups_available() {
        eprintln!(
            "skipped: shared memory is counted only with a memory cgroup (needs root and a memory hierarchy)"
        );
        return;
    }
    let token = token();
    let shm = format!("/dev/shm/{token}");
    // A child writes 400 MiB to /dev/shm, 10 MiB at a time, and exits; the file stays.
    let code = format!(
        "import subprocess, sys, time\n\
         fill = 'import time\\nwith open(\\'{shm}\\', \\'wb\\') as f:\\n    for _ in range(40):\\n        f.write(bytes(10 << 20)); f.flush(); time.sleep(0.02)'\n\
         subprocess.run([sys.executable, '-c', fill])\n\
         time.sleep(2)\n\
         print('survived', flush=True)\n"
    );
    let cap = 100 * 1024 * 1024;
    let limits = ProcessLimits { max_memory_bytes: Some(cap), ..limits() };
    let out = run(&py(&code).limits(limits));
    let _ = std::fs::remove_file(&shm);
    assert_eq!(out.termination, Some(Termination::MemoryLimit), "{out:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn tokio_backend_runs_outside_a_tokio_runtime() {
    use agenthub_process::{ProcessBackend, TokioProcessBackend};
    let out = pollster::block_on(TokioProcessBackend.run(&py("print('ok')").limits(limits())))
        .expect("runs without a reactor of the caller's");
    assert_eq!(out.stdout, b"ok\n");
    let out = pollster::block_on(
        TokioProcessBackend.run(
            &py("import time; time.sleep(5)")
                .limits(ProcessLimits { timeout: Some(Duration::from_millis(300)), ..limits() }),
        ),
    )
    .unwrap();
    assert_eq!(out.termination, Some(Termination::Timeout));
}

#[test]
fn dropping_the_tokio_future_kills_the_child() {
    use agenthub_process::{ProcessBackend, TokioProcessBackend};
    let token = token();
    let spec = py(&format!("import time; time.sleep(600)  # {token}")).limits(limits());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let run = TokioProcessBackend.run(&spec);
        assert!(tokio::time::timeout(Duration::from_millis(300), run).await.is_err());
    });
    assert_eq!(survivors(&token), Vec::<u32>::new());
}

#[test]
fn manager_tracks_and_cleans_up_running_agents() {
    use std::sync::Arc;

    use agenthub_process::{AgentInvocation, StdProcessBackend};
    let manager = Arc::new(ProcessManager::new(Arc::new(StdProcessBackend)));
    let dir = tempfile_dir();
    std::fs::write(dir.join("agent.py"), "import time\ntime.sleep(600)\n").unwrap();
    let call = AgentInvocation {
        python: crate::python(),
        agent_dir: dir.clone(),
        script: "agent.py".into(),
        request_json: "{}".into(),
        env: EnvSpec::default(),
        limits: limits(),
        containment: agenthub_process::Containment::Auto,
        die_with_parent: false,
        sandbox: None,
    };
    let m = Arc::clone(&manager);
    let handle = std::thread::spawn(move || pollster::block_on(m.execute_agent(call)));
    let started = Instant::now();
    let pid = loop {
        if let Some(&pid) = manager.running_processes().first() {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "agent never registered");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(manager.is_process_running(pid));
    assert_eq!(manager.cleanup_processes(), 1);
    let out = handle.join().unwrap().unwrap();
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGKILL));
    assert!(!manager.is_process_running(pid));
    assert!(manager.running_processes().is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("agenthub-pm-{}-{}", std::process::id(), rand_bits()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Python that starts, all ignoring SIGTERM and tagged with `token`: a child in the group,
/// a `setsid` child, and a double-forked `setsid` daemon whose parent exits; then sleeps
/// `sleep` seconds and prints `done`.
pub(crate) fn escaping_agent(token: &str, sleep: f64) -> String {
    format!(
        "import os, signal, subprocess, sys, time\n\
         hold = 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'\n\
         subprocess.Popen([sys.executable, '-c', hold, '{token}-group'])\n\
         subprocess.Popen([sys.executable, '-c', hold, '{token}-setsid'], start_new_session=True)\n\
         daemon = 'import os,subprocess,sys; subprocess.Popen([sys.executable, \"-c\", sys.argv[1], sys.argv[2]], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); os._exit(0)'\n\
         subprocess.run([sys.executable, '-c', daemon, hold, '{token}-daemon'])\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         time.sleep({sleep})\n\
         print('done', flush=True)"
    )
}

fn escapees(run: Run, containment: agenthub_process::Containment, timeout: bool) {
    let token = token();
    let limits = ProcessLimits {
        timeout: Some(Duration::from_millis(if timeout { 1500 } else { 20_000 })),
        grace_period: Duration::from_millis(200),
        ..ProcessLimits::default()
    };
    let mut spec = py(&escaping_agent(&token, if timeout { 600.0 } else { 1.0 })).limits(limits);
    spec.containment = containment;
    let out = run(&spec);
    if timeout {
        assert_eq!(out.termination, Some(Termination::Timeout));
    } else {
        assert_eq!(out.stdout, b"done\n");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(survivors(&token), Vec::<u32>::new(), "{containment:?}, timeout {timeout}");
}

fn escapees_die_on_timeout_with_a_cgroup(run: Run) {
    escapees(run, agenthub_process::Containment::Auto, true);
}

fn escapees_die_on_timeout_with_the_fallback(run: Run) {
    escapees(run, agenthub_process::Containment::ProcessGroup, true);
}

fn escapees_die_after_a_normal_exit_with_a_cgroup(run: Run) {
    escapees(run, agenthub_process::Containment::Auto, false);
}

fn escapees_die_after_a_normal_exit_with_the_fallback(run: Run) {
    escapees(run, agenthub_process::Containment::ProcessGroup, false);
}

#[test]
fn a_hundred_timed_out_calls_leave_no_survivors() {
    let token = token();
    let limits = ProcessLimits {
        timeout: Some(Duration::from_millis(1200)),
        grace_period: Duration::from_millis(100),
        ..ProcessLimits::default()
    };
    let spec = py(&escaping_agent(&token, 600.0)).limits(limits);
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let spec = spec.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let out = crate::run_std(&spec);
                    assert_eq!(
                        out.termination,
                        Some(Termination::Timeout),
                        "{:?} {:?}",
                        out.status,
                        out.stderr_text()
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(survivors(&token), Vec::<u32>::new());
}

#[test]
fn records_of_a_dead_runtime_are_cleaned_up_and_live_ones_kept() {
    use std::os::unix::process::CommandExt;
    use std::sync::Arc;

    use agenthub_process::{RUN_ID_VAR, StdProcessBackend};
    let run_dir = tempfile_dir();
    // A runtime that died: a pid that has exited.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_runtime = gone.id();
    gone.wait().unwrap();
    let run_id = format!("{dead_runtime}-0-1");
    // The agent it left: its own group, marked with the run id, with setsid'd descendants.
    let token = token();
    let mut orphan = std::process::Command::new(crate::python())
        .args(["-c", &escaping_agent(&token, 600.0)])
        .env(RUN_ID_VAR, &run_id)
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while survivors(&token).len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(20), "the orphan never started its children");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(run_dir.join(&run_id), record_of(orphan.id())).unwrap();
    let live = format!("{}-7-7", std::process::id());
    std::fs::write(run_dir.join(&live), "999999\n").unwrap();

    let manager = ProcessManager::with_run_dir(Arc::new(StdProcessBackend), run_dir.clone());
    assert!(manager.cleanup_processes() >= 1);
    orphan.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(survivors(&token), Vec::<u32>::new());
    assert!(!run_dir.join(&run_id).exists(), "the stale record was not removed");
    assert!(run_dir.join(&live).exists(), "a live runtime's record was removed");

    // A call of this manager leaves no record behind once it ends (with or without a
    // cgroup, which records the call by itself).
    std::fs::remove_file(run_dir.join(&live)).unwrap();
    let agent_dir = tempfile_dir();
    std::fs::write(agent_dir.join("agent.py"), "print('{\"result\": 1}')\n").unwrap();
    let invoke = |containment| {
        pollster::block_on(manager.execute_agent(agenthub_process::AgentInvocation {
            python: crate::python(),
            agent_dir: agent_dir.clone(),
            script: "agent.py".into(),
            request_json: "{}".into(),
            env: EnvSpec::default(),
            limits: limits(),
            containment,
            die_with_parent: false,
            sandbox: None,
        }))
        .unwrap()
    };
    let out = invoke(agenthub_process::Containment::Auto);
    assert!(out.status.success());
    assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), 0);

    // Without a cgroup the record file is what a later runtime finds: the agent sees its
    // own record while it runs, and it is gone when the call ends.
    std::fs::write(
        agent_dir.join("agent.py"),
        format!(
            "import os\nprint(os.listdir({:?}), os.environ['{RUN_ID_VAR}'])\n",
            run_dir.display().to_string()
        ),
    )
    .unwrap();
    let out = invoke(agenthub_process::Containment::ProcessGroup);
    let seen = String::from_utf8(out.stdout).unwrap();
    let (listing, run_id) = seen.trim().rsplit_once(' ').unwrap();
    assert_eq!(listing, format!("['{run_id}']"), "{seen}");
    assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), 0);
    std::fs::remove_dir_all(run_dir).unwrap();
    std::fs::remove_dir_all(agent_dir).unwrap();
}

/// A run record naming `pid` as it is now: `<pid> <start time> <boot id>`.
fn record_of(pid: u32) -> String {
    format!("{pid} {} {}\n", start_time(pid), boot_id())
}

fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim().to_owned()
}

/// A `sleep` in its own process group, optionally marked with `run_id`.
fn sleeper(run_id: Option<&str>) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("600").process_group(0);
    if let Some(run_id) = run_id {
        cmd.env(agenthub_process::RUN_ID_VAR, run_id);
    }
    cmd.spawn().unwrap()
}

fn dead_pid() -> u32 {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    pid
}

/// Whether `child` is still running (reaps it if it has exited).
fn still_running(child: &mut std::process::Child) -> bool {
    std::thread::sleep(Duration::from_millis(50));
    child.try_wait().unwrap().is_none()
}

#[test]
fn stale_records_kill_only_the_process_they_were_written_for() {
    use std::sync::Arc;

    use agenthub_process::StdProcessBackend;
    let run_dir = tempfile_dir();
    let dead_runtime = dead_pid();
    let manager = ProcessManager::with_run_dir(Arc::new(StdProcessBackend), run_dir.clone());

    // Pid reuse: the record's pid now names an unrelated process (another start time).
    let mut unrelated = sleeper(None);
    let pid = unrelated.id();
    std::fs::write(
        run_dir.join(format!("{dead_runtime}-0-1")),
        format!("{pid} {} {}\n", start_time(pid) + 1, boot_id()),
    )
    .unwrap();
    // Another boot: same pid and start time, another boot id.
    std::fs::write(
        run_dir.join(format!("{dead_runtime}-0-2")),
        format!("{pid} {} 00000000-0000-0000-0000-000000000000\n", start_time(pid)),
    )
    .unwrap();
    // The old format carries no identity at all.
    std::fs::write(run_dir.join(format!("{dead_runtime}-0-3")), format!("{pid}\n")).unwrap();
    // Garbage, and a huge file.
    std::fs::write(run_dir.join(format!("{dead_runtime}-0-4")), b"\xff\x00 garbage -1 \n\n").unwrap();
    std::fs::write(run_dir.join(format!("{dead_runtime}-0-5")), format!("{pid} ").repeat(1 << 20)).unwrap();
    // Not a record of ours: left alone.
    std::fs::write(run_dir.join("notes.txt"), format!("{pid}\n")).unwrap();

    assert_eq!(manager.clear_stale(), 5);
    assert!(still_running(&mut unrelated), "an unrelated process was killed");
    let left: Vec<_> = std::fs::read_dir(&run_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, ["notes.txt"]);

    // Same start time and boot, but the process does not carry the record's run id.
    std::fs::write(run_dir.join(format!("{dead_runtime}-0-6")), record_of(pid)).unwrap();
    assert_eq!(manager.clear_stale(), 1);
    assert!(still_running(&mut unrelated), "a process without the run id was killed");

    // The right identity: the record's process and its whole group are killed, also a
    // member that does not carry the run id (so only the group kill reaches it).
    let run_id = format!("{dead_runtime}-0-7");
    let token = format!("600.{}{}", std::process::id(), rand_bits() % 1_000_000);
    let mut orphan = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sh")
            .args(["-c", &format!("env -u {} sleep {token} & wait", agenthub_process::RUN_ID_VAR)])
            .env(agenthub_process::RUN_ID_VAR, &run_id)
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    while survivors(&token).len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "the group member never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(run_dir.join(&run_id), record_of(orphan.id())).unwrap();
    assert_eq!(manager.clear_stale(), 1);
    assert!(!still_running(&mut orphan), "the record's own process survived");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(survivors(&token), Vec::<u32>::new(), "a member of the record's group survived");

    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
    std::fs::remove_dir_all(run_dir).unwrap();
}
