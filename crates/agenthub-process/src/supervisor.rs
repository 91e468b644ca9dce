//! The backend-independent part of running a child: spawning it in its own process group,
//! collecting its output under the caps, and deciding when to signal it.
//!
//! Both backends drive a [`Supervisor`]: they wait for output, exit or the next wake-up
//! time in their own way (`poll(2)` or tokio's reactor) and hand what they see to it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::containment::{self, RUN_ID_VAR, Scope};
use crate::linux::{self, Reaped};
use crate::memory::Tree;
use crate::registry::ProcessRegistry;
use crate::{ProcessError, ProcessOutput, ProcessSpec, Termination};

/// How long pipes are drained after the child exits, for output still in flight. Longer
/// only matters when something outside the group (a `setsid` escapee) holds the pipes.
const DRAIN_LIMIT: Duration = Duration::from_millis(200);

/// Poll interval when the kernel has no pidfd to wait on.
pub(crate) const FALLBACK_TICK: Duration = Duration::from_millis(5);

const READ_CHUNK: usize = 64 * 1024;

/// How far above the spawner's own peak a child's `wait4` peak must be to be its own: the
/// most the kernel's per-CPU batched RSS counters can be off (each possible CPU may hold
/// `max(32, 2 × CPUs)` pages uncounted: `percpu_counter_batch`), and at least 1 MiB. A
/// fixed 4 MiB hid the peak of a small agent under a spawner of about its size (the CLI
/// running a 10 MiB interpreter).
fn inherited_margin() -> u64 {
    static MARGIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MARGIN.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let cpus = u64::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }).unwrap_or(1).max(1);
        // SAFETY: as above.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(4096);
        cpus.saturating_mul(32.max(2 * cpus)).saturating_mul(page).max(1 << 20)
    })
}

/// A spawned child with its pipes, killed and reaped on drop unless [`Self::reap`] ran.
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) stdout: Option<File>,
    pub(crate) stderr: Option<File>,
    pub(crate) pidfd: Option<OwnedFd>,
    /// Spawn time on [`linux::clock_now`]'s clock.
    pub(crate) started: Duration,
    /// The spawner's own peak RSS at spawn time (see [`linux::self_peak_rss_bytes`]).
    spawner_peak_rss: u64,
    /// The spawner's resident anonymous memory at spawn time: what a `fork` (the sandbox's
    /// waiter) counts as its own at first.
    pub(crate) spawner_anon_rss: u64,
    /// Every process of the call; dropping the last handle kills what is left of them.
    pub(crate) scope: Arc<Scope>,
    registry: Option<Arc<ProcessRegistry>>,
    reaped: bool,
    /// The sandbox's `TMPDIR` on the host, when it has no private tmpfs; removed on drop.
    _host_tmp: Option<tempfile::TempDir>,
    /// What serves the sandbox's loopback listeners (its egress proxy), for as long as the
    /// child runs.
    listener_guard: Option<crate::sandbox::ListenerGuard>,
    /// Whether the child is a sandbox's waiter (the program runs two processes below it).
    pub(crate) sandbox_waiter: bool,
}

impl Spawned {
    /// Spawns `spec` in a new process group with null stdin and piped, non-blocking output.
    pub(crate) fn spawn(spec: &ProcessSpec) -> Result<Self, ProcessError> {
        Self::spawn_with_stdin(spec, false).map(|(spawned, _)| spawned)
    }

    /// As [`Self::spawn`]; with `piped_stdin` the child's stdin is a pipe whose (blocking)
    /// write end is returned.
    pub(crate) fn spawn_with_stdin(
        spec: &ProcessSpec,
        piped_stdin: bool,
    ) -> Result<(Self, Option<File>), ProcessError> {
        let run_id = containment::new_run_id();
        if containment::is_shut_down() {
            return Err(ProcessError::Cancelled);
        }
        let mut prepared = match &spec.sandbox {
            // The call's cgroup is entered by the runtime after the spawn, while Python starts:
            // a move into a cgroup can wait a whole RCU grace period (about 10 ms here), which
            // the child would otherwise pay before its program even starts.
            Some(sandbox) => Some((sandbox, crate::sandbox::prepare(sandbox, &[])?)),
            None => None,
        };
        let spawner_peak_rss = linux::self_peak_rss_bytes();
        let spawner_anon_rss = linux::self_anon_rss_bytes();
        let started = linux::clock_now();
        let mut child = loop {
            let mut cmd = command(spec, piped_stdin, &run_id, prepared.as_ref().map(|(_, p)| p));
            match cmd.spawn() {
                Ok(child) => break child,
                Err(source) => {
                    if let Some((sandbox, p)) = &prepared
                        && p.refusal(sandbox, &source)
                    {
                        // The kernel refused the namespaces: the layers that remain.
                        tracing::debug!(error = %source, "sandbox namespaces refused; running without them");
                        crate::sandbox::namespaces_refused();
                        prepared = Some((sandbox, crate::sandbox::prepare(sandbox, &[])?));
                        continue;
                    }
                    return Err(ProcessError::Spawn { program: spec.program.clone(), source });
                }
            }
        };
        // The child inherits the spawner's high-water mark as of its `exec`, which may be a
        // little above the figure read before the spawn: read it again after.
        let spawner_peak_rss = spawner_peak_rss.max(linux::self_peak_rss_bytes());
        let spawner_anon_rss = spawner_anon_rss.max(linux::self_anon_rss_bytes());
        let pid = child.id();
        let stdin = child.stdin.take().map(|p| File::from(OwnedFd::from(p)));
        let stdout = child.stdout.take().map(|p| File::from(OwnedFd::from(p)));
        let stderr = child.stderr.take().map(|p| File::from(OwnedFd::from(p)));
        // From here on `Spawned` owns the child: std's `Child` never waits on drop.
        drop(child);
        let Some(scope) = Scope::new(pid, run_id, spec.containment, spec.limits.max_memory_bytes) else {
            // Shut down while spawning: the scope is gone and has killed the child.
            let _ = linux::wait4(pid, true);
            return Err(ProcessError::Cancelled);
        };
        let sandbox_waiter = prepared.as_ref().is_some_and(|(_, p)| p.has_namespaces());
        // The child is in the cgroup; what it forked before (a sandbox's init and program, and
        // on a busy machine what the program forked already) is moved too.
        scope.adopt_descendants(pid);
        let mut host_tmp = None;
        let mut spawned_sandbox = Ok(None);
        if let Some((sandbox, mut prepared)) = prepared {
            host_tmp = prepared.take_host_tmp();
            spawned_sandbox = prepared.deliver_listeners(sandbox);
        }
        let mut spawned = Self {
            listener_guard: None,
            sandbox_waiter,
            _host_tmp: host_tmp,
            pid,
            stdout,
            stderr,
            pidfd: linux::pidfd_open(pid),
            started,
            spawner_peak_rss,
            spawner_anon_rss,
            scope,
            registry: spec.registry.clone(),
            reaped: false,
        };
        // Dropping `spawned` kills the child when its sandbox could not be completed.
        spawned.listener_guard = spawned_sandbox?;
        for pipe in spawned.stdout.iter().chain(spawned.stderr.iter()) {
            linux::set_nonblocking(pipe).map_err(ProcessError::Io)?;
        }
        if let Some(registry) = &spawned.registry {
            registry.register(pid, &spawned.scope.run_id, !spawned.scope.has_cgroup());
        }
        Ok((spawned, stdin))
    }

    /// The pid of the program itself: the child's, or in a sandbox with namespaces the one
    /// two levels below the waiter (found in `/proc`; `None` if it is gone).
    pub(crate) fn program_pid(&self) -> Option<u32> {
        if !self.sandbox_waiter {
            return Some(self.pid);
        }
        linux::sandboxed_program(self.pid)
    }

    /// Reaps the child if it has exited (`block` waits for it). Also kills what is left
    /// of its process group: an agent that has answered leaves nothing behind.
    pub(crate) fn reap(&mut self, block: bool) -> Result<Option<Reaped>, ProcessError> {
        let reaped = linux::wait4(self.pid, block).map_err(ProcessError::Io)?;
        if reaped.is_some() {
            self.reaped = true;
            let _ = self.scope.kill_all();
            self.listener_guard = None;
            if let Some(registry) = &self.registry {
                registry.unregister(self.pid);
            }
        }
        Ok(reaped)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if !self.reaped {
            // Cancelled or failed midway: never leave the group running or a zombie behind.
            let _ = self.scope.kill_all();
            let _ = linux::wait4(self.pid, true);
            if let Some(registry) = &self.registry {
                registry.unregister(self.pid);
            }
        }
    }
}

/// The command for `spec`: its own process group, piped output, the run id, and the
/// sandbox's hook and `TMPDIR` when it has one.
fn command(
    spec: &ProcessSpec,
    piped_stdin: bool,
    run_id: &str,
    sandbox: Option<&crate::sandbox::Prepared>,
) -> Command {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(if piped_stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    if spec.env.clear {
        cmd.env_clear();
    }
    for key in &spec.env.remove {
        cmd.env_remove(key);
    }
    cmd.envs(spec.env.set.iter().map(|(k, v)| (k, v)));
    cmd.env(RUN_ID_VAR, run_id);
    match sandbox {
        Some(prepared) => {
            // The sandbox's waiter outlives a runtime thread safely on its own (it checks
            // the parent process, not the thread).
            cmd.env("TMPDIR", prepared.tmpdir());
            crate::sandbox::install(&mut cmd, prepared);
        }
        None if spec.die_with_parent => linux::die_with_parent(&mut cmd),
        None => {}
    }
    cmd
}

/// Which pipe a read came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Output collected so far and the limits' state.
pub(crate) struct Supervisor {
    pid: u32,
    scope: Arc<Scope>,
    spec_limits: crate::ProcessLimits,
    /// Spawn time; every time here is on [`linux::clock_now`]'s clock, which keeps running
    /// while this process is stopped.
    started: Duration,
    /// `started + timeout`; `None` for no timeout (or one too large to add).
    deadline: Option<Duration>,
    /// When the child was reaped.
    reaped_at: Option<Duration>,
    stdout: Vec<u8>,
    stderr: VecDeque<u8>,
    stderr_truncated: bool,
    termination: Option<Termination>,
    sigterm_at: Option<Duration>,
    sigkill_sent: bool,
    next_memory_sample: Option<Duration>,
    sampled_peak_rss: u64,
    /// The program's own high-water mark (`VmHWM`, its address space's since `exec`: none
    /// of the spawner's), read when it first wrote to stdout.
    program_peak_rss: u64,
    /// Whether the child is the sandbox's waiter (the program two levels below it).
    sandbox_waiter: bool,
    spawner_peak_rss: u64,
    spawner_anon_rss: u64,
    /// The call's processes, followed for the memory sum when no memory cgroup holds it.
    tree: Tree,
    buf: Box<[u8]>,
}

impl Supervisor {
    pub(crate) fn new(spawned: &Spawned, limits: crate::ProcessLimits) -> Self {
        let next_memory_sample =
            limits.max_memory_bytes.and_then(|_| spawned.started.checked_add(sample_interval(limits)));
        Self {
            pid: spawned.pid,
            scope: Arc::clone(&spawned.scope),
            spec_limits: limits,
            started: spawned.started,
            deadline: limits.timeout.and_then(|t| spawned.started.checked_add(t)),
            reaped_at: None,
            stdout: Vec::new(),
            stderr: VecDeque::new(),
            stderr_truncated: false,
            termination: None,
            sigterm_at: None,
            sigkill_sent: false,
            next_memory_sample,
            sampled_peak_rss: 0,
            program_peak_rss: 0,
            sandbox_waiter: spawned.sandbox_waiter,
            spawner_peak_rss: spawned.spawner_peak_rss,
            spawner_anon_rss: spawned.spawner_anon_rss,
            tree: Tree::default(),
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// Reads what `pipe` has without blocking. Returns `false` once it is closed (EOF,
    /// error, or stdout past its cap), after which the caller drops it.
    pub(crate) fn read_from(&mut self, pipe: &File, stream: Stream) -> bool {
        loop {
            match (&mut &*pipe).read(&mut self.buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if !self.accept(stream, n) {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Takes `n` bytes from the read buffer; `false` when stdout went past its cap.
    fn accept(&mut self, stream: Stream, n: usize) -> bool {
        match stream {
            Stream::Stdout => {
                if self.stdout.is_empty()
                    && n > 0
                    && let Some(cap) = self.spec_limits.max_memory_bytes
                    && !self.sigkill_sent
                {
                    // The agent answers: its memory is near its peak now, and a short call
                    // may end before the next periodic sample (its own `wait4` figure is
                    // lost under a spawner whose high-water mark is higher).
                    self.sample_memory(cap);
                }
                if self.stdout.is_empty() && n > 0 {
                    self.program_peak_rss = self.program_peak_rss.max(self.program_high_water());
                }
                let data = &self.buf[..n];
                let room = self.spec_limits.max_stdout_bytes.saturating_sub(self.stdout.len());
                if n > room {
                    self.stdout.extend_from_slice(&data[..room]);
                    self.stop(Termination::StdoutLimit);
                    return false;
                }
                self.stdout.extend_from_slice(data);
            }
            Stream::Stderr => {
                let data = &self.buf[..n];
                if self.spec_limits.echo_stderr {
                    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), data);
                }
                let cap = self.spec_limits.stderr_tail_bytes;
                self.stderr.extend(data);
                if self.stderr.len() > cap {
                    self.stderr_truncated = true;
                    let excess = self.stderr.len() - cap;
                    self.stderr.drain(..excess);
                }
            }
        }
        true
    }

    /// The program's `VmHWM` now, 0 when it cannot be read (it has exited). In a sandbox the
    /// program is the only child of the init, the only child of the waiter (read from the
    /// children files; without them, no figure rather than a scan of `/proc`).
    fn program_high_water(&self) -> u64 {
        let program = if self.sandbox_waiter {
            let first = |pid: u32| linux::children_if_listed(pid).and_then(|c| c.first().copied());
            first(self.pid).and_then(first)
        } else {
            Some(self.pid)
        };
        program.and_then(linux::vm_hwm).unwrap_or(0)
    }

    /// Samples the call's memory: the whole tree (children and `multiprocessing` workers
    /// count, and with a memory cgroup so does shared memory, `/dev/shm`); over `cap`, the
    /// call is stopped.
    fn sample_memory(&mut self, cap: u64) {
        let sample = self.scope.sample_memory(&mut self.tree, cap);
        self.sampled_peak_rss = self.sampled_peak_rss.max(sample.in_use);
        if sample.in_use > cap || sample.oom_killed {
            self.stop(Termination::MemoryLimit);
        }
    }

    /// Kills the group at once for a limit other than time.
    fn stop(&mut self, why: Termination) {
        self.termination.get_or_insert(why);
        let _ = self.scope.kill_all();
        self.sigkill_sent = true;
    }

    /// Applies the time and memory limits as of now; returns how long until it must be
    /// called again (`None`: only an event can change anything).
    ///
    /// Times are read from a clock that keeps running while this process is stopped, so
    /// a supervisor that was suspended (SIGSTOP, a debugger) acts on every deadline that
    /// passed in the meantime as soon as it runs again.
    pub(crate) fn tick(&mut self) -> Option<Duration> {
        let now = linux::clock_now();
        let limits = self.spec_limits;
        if let Some(sigterm_at) = self.sigterm_at {
            let kill_at = sigterm_at.checked_add(limits.grace_period);
            if !self.sigkill_sent && kill_at.is_some_and(|at| now >= at) {
                let _ = self.scope.kill_all();
                self.sigkill_sent = true;
            }
        } else if self.deadline.is_some_and(|at| now >= at) && self.termination.is_none() {
            self.termination = Some(Termination::Timeout);
            self.sigterm_at = Some(now);
            self.scope.signal_group(libc::SIGTERM);
        }
        if let (Some(at), Some(cap)) = (self.next_memory_sample, limits.max_memory_bytes)
            && now >= at
            && !self.sigkill_sent
        {
            self.sample_memory(cap);
            self.next_memory_sample = now.checked_add(sample_interval(limits));
        }
        if self.sigkill_sent {
            return None;
        }
        let wake = match self.sigterm_at {
            Some(at) => at.checked_add(limits.grace_period),
            None => self.deadline,
        };
        [wake, self.next_memory_sample].into_iter().flatten().min().map(|at| at.saturating_sub(now))
    }

    /// Records that the child was reaped. A child reaped after its deadline is reported as
    /// a timeout even when no timer fired in time (the supervisor was stopped, or the
    /// machine too busy to run it): a call never succeeds past its deadline.
    pub(crate) fn mark_reaped(&mut self) {
        let now = linux::clock_now();
        self.reaped_at = Some(now);
        if self.termination.is_none() && self.deadline.is_some_and(|at| now >= at) {
            self.termination = Some(Termination::Timeout);
        }
        // The kernel limit (the backstop above the cap) struck between two samples.
        if self.termination.is_none()
            && self.spec_limits.max_memory_bytes.is_some()
            && self.scope.oom_killed()
        {
            self.termination = Some(Termination::MemoryLimit);
        }
    }

    #[cfg(feature = "std")]
    /// `wait` as `poll(2)` milliseconds (-1 = forever), rounded up.
    pub(crate) fn poll_timeout(wait: Option<Duration>) -> i32 {
        wait.map_or(-1, |w| i32::try_from(w.as_micros().div_ceil(1000)).unwrap_or(i32::MAX))
    }

    /// Builds the output once the child is reaped and the pipes drained.
    pub(crate) fn finish(mut self, reaped: Reaped) -> ProcessOutput {
        if self.scope.cancelled() {
            self.termination.get_or_insert(Termination::Cancelled);
        }
        let peak_rss_bytes = self.peak_rss(reaped.peak_rss_bytes);
        ProcessOutput {
            pid: self.pid,
            status: reaped.status,
            termination: self.termination,
            stdout: self.stdout,
            stderr_tail: self.stderr.into(),
            stderr_truncated: self.stderr_truncated,
            wall_time: self.reaped_at.unwrap_or_else(linux::clock_now).saturating_sub(self.started),
            peak_rss_bytes,
        }
    }

    /// The tree's peak: the largest of the samples taken over the whole tree and `wait4`'s
    /// figure (the child's own peak, or that of a descendant it reaped) when it exceeds
    /// what the child inherited from the spawner; unknown when there is neither.
    fn peak_rss(&self, from_wait4: Option<u64>) -> Option<u64> {
        // The kernel's RSS counters are batched per CPU: a margin keeps an inherited figure
        // from passing for the child's own.
        // A child `exec`ed straight from the spawner (`posix_spawn` shares its address space
        // until the `exec`) inherits the spawner's high-water mark; the sandbox's waiter is
        // a `fork`, whose own count starts from the anonymous pages it copied, and the
        // agent below it `exec`s from that copy.
        let floor = if self.sandbox_waiter { self.spawner_anon_rss } else { self.spawner_peak_rss };
        let inherited = floor.saturating_add(inherited_margin());
        let own = from_wait4.filter(|&peak| peak > inherited).unwrap_or(0);
        Some(own.max(self.sampled_peak_rss).max(self.program_peak_rss)).filter(|&peak| peak > 0)
    }

    /// The deadline for draining pipes after exit, on [`linux::clock_now`]'s clock.
    pub(crate) fn drain_deadline() -> Duration {
        linux::clock_now().saturating_add(DRAIN_LIMIT)
    }
}

/// The memory sampling interval, at least 1 ms (a zero interval would spin).
fn sample_interval(limits: crate::ProcessLimits) -> Duration {
    limits.memory_sample_interval.max(Duration::from_millis(1))
}
