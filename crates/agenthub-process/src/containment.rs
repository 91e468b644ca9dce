//! Finding and killing every descendant of an agent, including ones that left its process
//! group with `setsid`. Strongest mechanism first:
//!
//! 1. a cgroup v2 per call, killed with `cgroup.kill` (Linux 5.14+, a writable cgroup2
//!    hierarchy: root, or a delegated subtree);
//! 2. otherwise the process group, plus a sweep of `/proc` for processes whose environment
//!    carries the call's `AGENTHUB_RUN_ID` (descendants inherit it, also after `setsid` or
//!    being reparented to init; a process that scrubs its environment escapes this one),
//!    repeated until a pass finds nothing; a cgroup v1 memory cgroup of the call, when
//!    there is one, is emptied as well.
//!
//! Every live call is also known to [`shutdown`], which kills them all at once.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::linux;
use crate::memory::{self, MemoryCgroup, Sample, Tree};

/// Name of the variable that marks every process of one call.
pub const RUN_ID_VAR: &str = "AGENTHUB_RUN_ID";

/// How one call's processes are contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Containment {
    /// A cgroup when one can be made, else the process group and a `/proc` sweep.
    #[default]
    Auto,
    /// The process group and a `/proc` sweep only.
    ProcessGroup,
}

/// The processes of one running call.
#[derive(Debug)]
pub(crate) struct Scope {
    pgid: u32,
    pub(crate) run_id: String,
    cgroup: Option<PathBuf>,
    /// The memory cgroup holding the call: the v2 `cgroup` itself, or a v1 one.
    memory: Option<MemoryCgroup>,
    killed: AtomicBool,
    cancelled: AtomicBool,
}

/// How often the tree is checked behind a memory cgroup whose figure is below the cap
/// (see [`Scope::sample_memory`]).
const TREE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Set once by [`shutdown`]: no call starts after it.
static SHUT_DOWN: AtomicBool = AtomicBool::new(false);

/// Every call running in this process, by run id (all backends, all managers).
fn live_scopes() -> &'static Mutex<HashMap<String, Weak<Scope>>> {
    static LIVE: OnceLock<Mutex<HashMap<String, Weak<Scope>>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
}

/// See [`crate::shutdown`].
pub(crate) fn shutdown() -> usize {
    SHUT_DOWN.store(true, Ordering::SeqCst);
    // Upgrade under the lock, kill outside it: a scope dropped here unregisters itself.
    let scopes: Vec<Arc<Scope>> = live_scopes()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    let mut killed = 0;
    for scope in &scopes {
        scope.cancelled.store(true, Ordering::SeqCst);
        killed += usize::from(scope.kill_all());
    }
    killed
}

/// See [`crate::is_shut_down`].
pub(crate) fn is_shut_down() -> bool {
    SHUT_DOWN.load(Ordering::SeqCst)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new run id, unique on this machine for this boot: `<pid>-<counter>-<nanos>`.
pub(crate) fn new_run_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl Scope {
    /// Contains the just-spawned `pid` (its own process-group leader).
    ///
    /// The scope is known to [`shutdown`] from here on; `None` when shutdown has begun, in
    /// which case the scope is dropped (killing the child) before this returns.
    /// `memory_cap` becomes the memory cgroup's kernel limit (with headroom: the sampler
    /// enforces the cap itself).
    pub(crate) fn new(
        pid: u32,
        run_id: String,
        how: Containment,
        memory_cap: Option<u64>,
    ) -> Option<Arc<Self>> {
        let (cgroup, memory) = match how {
            Containment::Auto => {
                let cgroup = cgroup_base().and_then(|base| enter_new_cgroup(base, &run_id, pid));
                let memory = cgroup
                    .as_deref()
                    .and_then(|cg| MemoryCgroup::v2(cg, memory_cap))
                    .or_else(|| MemoryCgroup::new_v1(&run_id, pid, memory_cap));
                (cgroup, memory)
            }
            Containment::ProcessGroup => (None, None),
        };
        let scope = Arc::new(Self {
            pgid: pid,
            run_id,
            cgroup,
            memory,
            killed: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
        });
        live_scopes()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(scope.run_id.clone(), Arc::downgrade(&scope));
        // A shutdown that began before the insert did not see this scope: check after it.
        (!is_shut_down()).then_some(scope)
    }

    /// Moves every process below `top` (the child, which [`Self::new`] moved) into the call's
    /// cgroup(s) too. A process stays in the cgroup it was forked in: a sandbox's init and
    /// program were forked before the waiter was moved, and on a busy machine the program
    /// may have forked already as well (a child forked before its parent's move stays
    /// outside: no kernel limit, no `cgroup.kill`). Each process is moved before its
    /// children are listed, so a child forked meanwhile is either listed or born inside.
    /// Best effort; bounded.
    pub(crate) fn adopt_descendants(&self, top: u32) {
        if !self.has_cgroup() {
            return;
        }
        let mut queue = linux::children(top);
        let mut moved = 0;
        while let Some(pid) = queue.pop()
            && moved < memory::MAX_TREE
        {
            self.adopt(pid);
            moved += 1;
            queue.extend(linux::children(pid));
        }
    }

    /// Moves `pid` into the call's cgroup(s) too. Best effort.
    fn adopt(&self, pid: u32) {
        let dirs = self.cgroup.iter().chain(self.memory.iter().filter(|m| !m.v2).map(|m| &m.dir));
        for dir in dirs {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .and_then(|mut f| f.write_all(pid.to_string().as_bytes()));
        }
    }

    /// Whether [`shutdown`] killed the call.
    pub(crate) fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Whether a cgroup holds the call (it then doubles as the record a later runtime
    /// cleans up from).
    pub(crate) fn has_cgroup(&self) -> bool {
        self.cgroup.is_some() || self.memory.is_some()
    }

    /// The memory in use by the whole call now: the larger of its memory cgroup's figure and
    /// the sum over `tree`. The cgroup misses a process forked before its parent was moved
    /// in (and, on a kernel that does not move charges, what a process allocated before its
    /// own move); the tree misses shared memory no process maps. While the cgroup has a
    /// figure below `cap`, the tree is checked every [`TREE_CHECK_INTERVAL`] only, and its
    /// exact sum (which reads every process's page tables) only taken when its resident
    /// counters, never below that sum, pass `cap`.
    pub(crate) fn sample_memory(&self, tree: &mut Tree, cap: u64) -> Sample {
        let cgroup = self.memory.as_ref().and_then(MemoryCgroup::sample).unwrap_or_default();
        if cgroup.in_use > cap || cgroup.oom_killed {
            return cgroup;
        }
        let floor = if cgroup.in_use > 0 { cap } else { 0 };
        if floor > 0 && !tree.check_due(TREE_CHECK_INTERVAL) {
            return cgroup;
        }
        let in_tree = tree.sample(self.pgid, self.cgroup.as_deref(), floor).in_use;
        Sample { in_use: cgroup.in_use.max(in_tree), oom_killed: false }
    }

    /// Whether the kernel's OOM killer struck in the call's memory cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        self.memory.as_ref().and_then(MemoryCgroup::sample).is_some_and(|s| s.oom_killed)
    }

    /// Sends `signal` to the process group (SIGTERM for a polite stop).
    pub(crate) fn signal_group(&self, signal: libc::c_int) {
        linux::kill_group(self.pgid, signal);
    }

    /// SIGKILLs every process of the call: the group, and the cgroup or the marked ones.
    /// Once is enough: after it, nothing of the call is left to start new processes.
    /// Returns whether this was the first time.
    pub(crate) fn kill_all(&self) -> bool {
        if self.killed.swap(true, Ordering::AcqRel) {
            return false;
        }
        linux::kill_group(self.pgid, libc::SIGKILL);
        match &self.cgroup {
            Some(cg) => {
                let _ = std::fs::write(cg.join("cgroup.kill"), b"1");
            }
            None => {
                kill_marked(&self.run_id, Some(self.pgid));
            }
        }
        if let Some(memory) = self.memory.as_ref().filter(|m| !m.v2) {
            memory.kill_v1();
        }
        true
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        live_scopes().lock().unwrap_or_else(PoisonError::into_inner).remove(&self.run_id);
        self.kill_all();
        if let Some(cg) = &self.cgroup {
            remove_cgroup(cg);
        }
        if let Some(memory) = self.memory.as_ref().filter(|m| !m.v2) {
            remove_cgroup(&memory.dir);
        }
    }
}

/// `<cgroup2 mount><own cgroup>`, when it is a writable cgroup2 directory with `cgroup.kill`.
fn cgroup_base() -> Option<&'static Path> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            right.starts_with("cgroup2 ").then(|| left.split(' ').nth(4).map(PathBuf::from))?
        })?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim_start_matches('/').to_owned();
        let base = mount.join(own);
        // Whether children can be made here shows on the first call (`enter_new_cgroup`).
        base.join("cgroup.procs").exists().then_some(base)
    })
    .as_deref()
}

/// The name of a call's cgroup: `agenthub-<run id>-<pid namespace>`. Cgroups are shared by
/// every PID namespace, and a run id starts with a pid of its runtime's namespace: only a
/// runtime of the same namespace can tell whether that pid still runs (see
/// [`sweep_stale_cgroups`]).
pub(crate) fn cgroup_name(run_id: &str) -> String {
    format!("agenthub-{run_id}-{}", pid_namespace())
}

/// The inode of this process's PID namespace (`/proc/self/ns/pid`), `0` when unknown.
fn pid_namespace() -> &'static str {
    static NS: OnceLock<String> = OnceLock::new();
    NS.get_or_init(|| {
        std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|l| l.to_str().map(|s| s.chars().filter(char::is_ascii_digit).collect::<String>()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "0".to_owned())
    })
}

fn enter_new_cgroup(base: &Path, run_id: &str, pid: u32) -> Option<PathBuf> {
    let cg = base.join(cgroup_name(run_id));
    create_cgroup_dir(&cg)?;
    // cgroup.kill exists in every non-root cgroup from Linux 5.14 on.
    if !cg.join("cgroup.kill").exists() {
        let _ = std::fs::remove_dir(&cg);
        return None;
    }
    let moved = std::fs::OpenOptions::new()
        .write(true)
        .open(cg.join("cgroup.procs"))
        .and_then(|mut f| f.write_all(pid.to_string().as_bytes()));
    if moved.is_err() {
        let _ = std::fs::remove_dir(&cg);
        return None;
    }
    Some(cg)
}

/// Makes a cgroup directory (one that exists already for the same run is fine).
pub(crate) fn create_cgroup_dir(cg: &Path) -> Option<()> {
    match std::fs::create_dir(cg) {
        Ok(()) => Some(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && cg.join("cgroup.procs").exists() => {
            Some(())
        }
        Err(_) => None,
    }
}

/// Removes a killed cgroup once its processes are gone (killed processes linger as zombies
/// until their parent reaps them); gives up after 200 ms and leaves it for
/// [`sweep_stale_cgroups`].
fn remove_cgroup(cg: &Path) {
    let deadline = Instant::now().checked_add(Duration::from_millis(200));
    while std::fs::remove_dir(cg).is_err() && cg.exists() && deadline.is_some_and(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Removes `agenthub-*` cgroups (v2, and v1 memory ones) left by calls that could not
/// remove theirs, after killing what is in them; returns how many were removed.
pub(crate) fn sweep_stale_cgroups() -> usize {
    let mut removed = 0;
    for (base, v2) in [(cgroup_base(), true), (memory::v1_base(), false)] {
        let Some(base) = base else { continue };
        let Ok(entries) = std::fs::read_dir(base) else { continue };
        for entry in entries.take(100_000).flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix("agenthub-") else { continue };
            // Only cgroups of this PID namespace (a pid means nothing in another one)...
            let Some((run_id, ns)) = rest.rsplit_once('-') else { continue };
            if ns != pid_namespace() || run_id.split('-').count() != 3 {
                continue;
            }
            // ...of runtimes that are gone (the run id starts with the runtime's pid): a
            // live runtime, this one included, owns its calls in flight.
            let owner = run_id.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if owner.is_none_or(linux::pid_alive) {
                continue;
            }
            if v2 {
                let _ = std::fs::write(entry.path().join("cgroup.kill"), b"1");
            } else {
                memory::kill_procs_of(&entry.path());
            }
            remove_cgroup(&entry.path());
            removed += usize::from(!entry.path().exists());
        }
    }
    removed
}

/// Whether `pid`'s environment holds `AGENTHUB_RUN_ID=<run_id>`; `None` when it cannot be
/// read (gone, or not ours to read).
pub(crate) fn carries_run_id(pid: u32, run_id: &str) -> Option<bool> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let needle = format!("{RUN_ID_VAR}={run_id}");
    Some(environ.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
}

/// A sweep stops after this long even if it still finds processes (a fork bomb that
/// outruns it); what is left is reported in the log.
const SWEEP_TIME_LIMIT: Duration = Duration::from_secs(2);

/// And after this many passes.
const SWEEP_MAX_PASSES: usize = 500;

/// SIGKILLs every process whose environment holds `AGENTHUB_RUN_ID=<run_id>` (and, when
/// `pgid` is given, every process of that group), pass after pass until a pass finds
/// nothing: a process forked while a pass runs can be missed by it, not by the next one.
/// Bounded by [`SWEEP_TIME_LIMIT`] and [`SWEEP_MAX_PASSES`]; returns how many were killed.
pub(crate) fn kill_marked(run_id: &str, pgid: Option<u32>) -> usize {
    let needle = format!("{RUN_ID_VAR}={run_id}");
    let started = Instant::now();
    let mut killed = 0;
    for pass in 0..SWEEP_MAX_PASSES {
        if let Some(pgid) = pgid {
            linux::kill_group(pgid, libc::SIGKILL);
        }
        let found = kill_marked_once(needle.as_bytes());
        killed += found;
        if found == 0 {
            break;
        }
        if started.elapsed() >= SWEEP_TIME_LIMIT {
            tracing::warn!(
                run_id,
                passes = pass + 1,
                "processes of the call still found after the sweep's time limit"
            );
            break;
        }
        // Give what was just killed a moment to die before looking again.
        std::thread::sleep(Duration::from_millis(1));
    }
    killed
}

/// One pass over `/proc`: SIGKILLs the live (not zombie) processes whose environment holds
/// `needle`; returns how many.
fn kill_marked_once(needle: &[u8]) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let me = std::process::id();
    let mut found = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        // A zombie's environment reads as empty: what was killed is not found again.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|&b| b == 0).any(|var| var == needle) && linux::kill_pid(pid) {
            found += 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that is not running (`pid_max` is at most 2^22).
    const DEAD: u32 = 4_194_304 + 7;

    #[test]
    fn only_this_namespaces_stale_cgroups_are_swept() {
        let bases: Vec<&Path> = [cgroup_base(), memory::v1_base()].into_iter().flatten().collect();
        let Some(base) = bases.first().copied() else {
            // No cgroup hierarchy agenthub can write: nothing is ever swept.
            assert_eq!(sweep_stale_cgroups(), 0);
            return;
        };
        let foreign = base.join(format!("agenthub-{DEAD}-0-1-1{}", pid_namespace()));
        let ours = base.join(cgroup_name(&format!("{DEAD}-0-2")));
        for dir in [&foreign, &ours] {
            std::fs::create_dir(dir).unwrap();
        }
        sweep_stale_cgroups();
        let (foreign_kept, ours_kept) = (foreign.exists(), ours.exists());
        let _ = std::fs::remove_dir(&foreign);
        let _ = std::fs::remove_dir(&ours);
        assert!(foreign_kept, "a cgroup of another PID namespace was swept");
        assert!(!ours_kept, "a stale cgroup of this namespace was left");
    }

    /// A child forked before its parent was moved into the call's cgroups (a busy machine:
    /// the program forked before the runtime moved it) is in neither: the memory sample
    /// still counts it, and `adopt_descendants` moves it in.
    #[test]
    fn a_child_forked_before_the_move_is_sampled_and_adopted() {
        use std::io::{BufRead, BufReader};
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let Ok(out) = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output()
        else {
            return;
        };
        // The child takes 96 MiB before the move; the parent 8 MiB after it.
        let code = "import os, sys, time\n\
                    if os.fork() == 0:\n    \
                        b = bytearray(96 << 20)\n    \
                        for i in range(0, len(b), 4096): b[i] = 1\n    \
                        print('child', flush=True)\n    \
                        time.sleep(60)\n\
                    sys.stdin.readline()\n\
                    b = bytearray(8 << 20)\n\
                    for i in range(0, len(b), 4096): b[i] = 1\n\
                    print('parent', flush=True)\n\
                    time.sleep(60)\n";
        let mut top = Command::new(String::from_utf8_lossy(&out.stdout).trim())
            .args(["-c", code])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(top.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "child");
        let cap = 64 << 20;
        let run_id = new_run_id();
        let scope = Scope::new(top.id(), run_id.clone(), Containment::Auto, Some(cap)).unwrap();
        let Some(memory) = scope.memory.as_ref() else {
            // No memory cgroup on this machine: the tree alone is sampled, as it always was.
            drop(scope);
            let _ = top.wait();
            return;
        };
        top.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), "parent");
        // The cgroup holds the parent's 8 MiB only...
        assert!(memory.sample().unwrap().in_use < cap);
        // ...the sample, the child's 96 MiB too.
        let sample = scope.sample_memory(&mut Tree::default(), cap);
        assert!(sample.in_use > cap, "{sample:?}");
        let child = linux::children(top.id());
        assert_eq!(child.len(), 1);
        scope.adopt_descendants(top.id());
        let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", child[0])).unwrap();
        assert!(cgroups.contains(&cgroup_name(&run_id)), "{cgroups}");
        drop(scope);
        let _ = top.wait();
    }
}
