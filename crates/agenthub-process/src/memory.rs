//! Memory of a whole call: every process of its tree, not only the top one.
//!
//! Strongest mechanism first:
//!
//! 1. a memory cgroup per call: the cgroup v2 one of the call (`memory.max`, `memory.stat`,
//!    `memory.events`) when its parent delegates the memory controller, else a cgroup v1
//!    memory cgroup next to the runtime's own (`memory.limit_in_bytes`, `memory.stat`,
//!    `memory.oom_control`). It counts shared memory too (`/dev/shm` files, shared
//!    anonymous mappings), even once no process maps it any more, and its kernel limit is
//!    a backstop for allocations faster than the sampling;
//! 2. otherwise (and, every so often, as a check behind the cgroup, which misses a process
//!    forked before its parent was moved in) the sum of `RssAnon + RssShmem` over the
//!    tree's processes, found through `/proc/<pid>/task/<tid>/children` from the top
//!    process and every process seen before (so a child that was reparented after a
//!    `setsid` is still counted).
//!
//! In both, "in use" is anonymous plus shared memory: page cache of ordinary files is
//! reclaimable, and counting it would stop an agent for reading a large file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::linux;

/// Headroom of the kernel limit over the cap: the sampler stops the call at the cap; the
/// kernel steps in only for what grows faster than one sampling interval.
fn kernel_limit(cap: u64) -> u64 {
    cap.saturating_add((cap / 4).max(64 << 20))
}

/// A memory cgroup holding one call.
#[derive(Debug)]
pub(crate) struct MemoryCgroup {
    pub(crate) dir: PathBuf,
    /// cgroup v2 (the call's own cgroup) rather than a v1 memory cgroup.
    pub(crate) v2: bool,
}

/// What one sample found.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    /// Anonymous plus shared memory of the tree, in bytes.
    pub(crate) in_use: u64,
    /// Whether the kernel's OOM killer killed a process of the call (the backstop hit).
    pub(crate) oom_killed: bool,
}

impl MemoryCgroup {
    /// Uses the call's cgroup v2 `cg` when the memory controller is enabled in it.
    pub(crate) fn v2(cg: &Path, cap: Option<u64>) -> Option<Self> {
        if !cg.join("memory.max").exists() {
            return None;
        }
        if let Some(cap) = cap {
            std::fs::write(cg.join("memory.max"), kernel_limit(cap).to_string()).ok()?;
        }
        Some(Self { dir: cg.to_path_buf(), v2: true })
    }

    /// Makes a cgroup v1 memory cgroup for the call and moves `pid` into it.
    pub(crate) fn new_v1(run_id: &str, pid: u32, cap: Option<u64>) -> Option<Self> {
        let dir = v1_base()?.join(crate::containment::cgroup_name(run_id));
        crate::containment::create_cgroup_dir(&dir)?;
        let cgroup = Self { dir, v2: false };
        let limited = cap.is_none_or(|cap| {
            std::fs::write(cgroup.dir.join("memory.limit_in_bytes"), kernel_limit(cap).to_string()).is_ok()
        });
        // What the child allocated before the move (it runs already) moves with it, so the
        // cgroup's figure is the child's whole use. Best effort: newer kernels drop this.
        let _ = std::fs::write(cgroup.dir.join("memory.move_charge_at_immigrate"), b"1");
        let moved = limited
            && std::fs::OpenOptions::new()
                .write(true)
                .open(cgroup.dir.join("cgroup.procs"))
                .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
                .is_ok();
        if !moved {
            let _ = std::fs::remove_dir(&cgroup.dir);
            return None;
        }
        Some(cgroup)
    }

    /// Samples the cgroup; `None` when its files cannot be read.
    pub(crate) fn sample(&self) -> Option<Sample> {
        let mut buf = vec![0u8; 16 * 1024];
        let n = linux::read_prefix(&self.dir.join("memory.stat").to_string_lossy(), &mut buf)?;
        let stat = std::str::from_utf8(&buf[..n]).ok()?;
        let in_use = if self.v2 {
            stat_value(stat, "anon")?.saturating_add(stat_value(stat, "shmem").unwrap_or(0))
        } else {
            let rss = stat_value(stat, "total_rss").or_else(|| stat_value(stat, "rss"))?;
            rss.saturating_add(
                stat_value(stat, "total_shmem").or_else(|| stat_value(stat, "shmem")).unwrap_or(0),
            )
        };
        let events = if self.v2 { "memory.events" } else { "memory.oom_control" };
        let mut buf = [0u8; 1024];
        let oom_killed = linux::read_prefix(&self.dir.join(events).to_string_lossy(), &mut buf)
            .and_then(|n| std::str::from_utf8(&buf[..n]).ok().and_then(|t| stat_value(t, "oom_kill")))
            .is_some_and(|kills| kills > 0);
        Some(Sample { in_use, oom_killed })
    }

    /// SIGKILLs every process in a v1 cgroup (which has no `cgroup.kill`) until it is
    /// empty: a process cannot leave a cgroup by itself, so this reaches every one.
    /// Bounded by 2 s and 500 passes.
    pub(crate) fn kill_v1(&self) {
        kill_procs_of(&self.dir);
    }
}

/// Kills what `dir/cgroup.procs` lists until it lists nothing; bounded.
pub(crate) fn kill_procs_of(dir: &Path) {
    let started = Instant::now();
    for _ in 0..500 {
        let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else { return };
        let mut found = false;
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            found |= linux::kill_pid(pid);
        }
        if !found || started.elapsed() >= Duration::from_secs(2) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `<memory v1 mount><own memory cgroup>`, when this machine has a cgroup v1 memory
/// hierarchy we can make cgroups in.
pub(crate) fn v1_base() -> Option<&'static Path> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let (root, mount) = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split(' ');
            let is_memory = right.next() == Some("cgroup") && right.nth(1)?.split(',').any(|o| o == "memory");
            let mut left = left.split(' ');
            is_memory.then(|| Some((left.nth(3)?.to_owned(), PathBuf::from(left.next()?))))?
        })?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _ = parts.next()?;
            parts.next()?.split(',').any(|c| c == "memory").then(|| parts.next().map(str::to_owned))?
        })?;
        // The path in /proc/self/cgroup is relative to the hierarchy's root, which the
        // mount may show below its own root.
        let own = own.strip_prefix(root.trim_end_matches('/')).unwrap_or(&own);
        let base = mount.join(own.trim_start_matches('/'));
        base.join("memory.limit_in_bytes").exists().then_some(base)
    })
    .as_deref()
}

/// The value of `key` in a `key value` per line file.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// At most this many processes are followed in one call's tree.
pub(crate) const MAX_TREE: usize = 4096;

/// The processes of a call's tree, followed from sample to sample (the fallback when no
/// memory cgroup holds the call, and a check behind one).
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Pid → start time of every process seen in the tree.
    known: BTreeMap<u32, u64>,
    /// When the next check behind a memory cgroup is due, on [`linux::clock_now`]'s clock.
    next_check: Duration,
}

impl Tree {
    /// Whether a check behind a memory cgroup is due; if so, the next one is `every` later.
    pub(crate) fn check_due(&mut self, every: Duration) -> bool {
        let now = linux::clock_now();
        if now < self.next_check {
            return false;
        }
        self.next_check = now.saturating_add(every);
        true
    }

    /// Sums `RssAnon + RssShmem` over the tree of `top` and, when a cgroup v2 holds the
    /// call, over what its `cgroup.procs` lists (a process forked before its parent was
    /// moved in is only in the tree; one that left the tree is still in the cgroup).
    ///
    /// With a `floor`, the exact sum, which reads the processes' page tables, is taken only
    /// when their resident counters (which it never exceeds) add up to more than it; below
    /// it the sample is those counters for one process, 0 for several.
    pub(crate) fn sample(&mut self, top: u32, cgroup: Option<&Path>, floor: u64) -> Sample {
        let mut pids = self.walk(top);
        if let Some(procs) = cgroup.and_then(|cg| std::fs::read_to_string(cg.join("cgroup.procs")).ok()) {
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()).take(MAX_TREE));
            pids.sort_unstable();
            pids.dedup();
        }
        if floor > 0 {
            let resident = pids.iter().filter_map(|&pid| anon_and_shmem(pid)).fold(0u64, u64::saturating_add);
            if resident <= floor {
                // Below the floor: for one process that sum is exact (and counts toward the
                // peak what a memory cgroup missed, charged before the process was moved
                // in); for several it may count shared pages more than once: nothing.
                return Sample { in_use: if pids.len() == 1 { resident } else { 0 }, oom_killed: false };
            }
        }
        // One process: its resident anonymous and shared memory. Several: their proportional
        // shares, so pages a fork shares copy-on-write with its parent count once, not once
        // per process (400 forks of a 3 MiB interpreter are not 1.2 GB).
        let one = |&pid: &u32| if pids.len() == 1 { anon_and_shmem(pid) } else { proportional(pid) };
        let in_use = pids.iter().filter_map(one).fold(0u64, u64::saturating_add);
        Sample { in_use, oom_killed: false }
    }

    /// The top process, what was seen before and is still the same process, and all
    /// their descendants.
    fn walk(&mut self, top: u32) -> Vec<u32> {
        let mut queue: Vec<u32> = std::iter::once(top)
            .chain(
                self.known
                    .iter()
                    .filter(|&(&pid, &start)| linux::start_time(pid) == Some(start))
                    .map(|(&p, _)| p),
            )
            .collect();
        let mut seen = BTreeMap::new();
        while let Some(pid) = queue.pop() {
            if seen.len() >= MAX_TREE {
                break;
            }
            let Some(start) = linux::start_time(pid) else { continue };
            if seen.insert(pid, start).is_some() {
                continue;
            }
            queue.extend(children(pid));
        }
        let pids = seen.keys().copied().collect();
        self.known = seen;
        pids
    }
}

/// The children of every thread of `pid` (`/proc/<pid>/task/<tid>/children`).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut found = Vec::new();
    for task in tasks.flatten().take(MAX_TREE) {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(text.split_ascii_whitespace().filter_map(|p| p.parse::<u32>().ok()).take(MAX_TREE));
        }
    }
    found
}

/// `Pss_Anon + Pss_Shmem` of one process, in bytes (its share of pages it shares with
/// others); `RssAnon + RssShmem` on kernels without those fields.
fn proportional(pid: u32) -> Option<u64> {
    let mut buf = [0u8; 4096];
    let Some(n) = linux::read_prefix(&format!("/proc/{pid}/smaps_rollup"), &mut buf) else {
        return anon_and_shmem(pid);
    };
    let rollup = std::str::from_utf8(&buf[..n]).ok()?;
    match (kib(rollup, "Pss_Anon:"), kib(rollup, "Pss_Shmem:")) {
        (Some(anon), shmem) => Some(anon.saturating_add(shmem.unwrap_or(0)).saturating_mul(1024)),
        (None, _) => anon_and_shmem(pid),
    }
}

/// The `kB` figure of `key` in a `/proc` status-like text.
fn kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
}

/// `RssAnon + RssShmem` of one process, in bytes.
fn anon_and_shmem(pid: u32) -> Option<u64> {
    let mut buf = [0u8; 4096];
    let n = linux::read_prefix(&format!("/proc/{pid}/status"), &mut buf)?;
    let status = std::str::from_utf8(&buf[..n]).ok()?;
    Some(kib(status, "RssAnon:")?.saturating_add(kib(status, "RssShmem:").unwrap_or(0)).saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_files_are_parsed() {
        let v1 = "cache 10\nrss 20\nshmem 5\ntotal_rss 200\ntotal_shmem 50\n";
        assert_eq!(stat_value(v1, "total_rss"), Some(200));
        assert_eq!(stat_value(v1, "rss"), Some(20));
        assert_eq!(stat_value(v1, "nope"), None);
        assert_eq!(stat_value("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"), Some(3));
        assert!(kernel_limit(u64::MAX) == u64::MAX);
        assert_eq!(kernel_limit(100 << 20), 164 << 20);
    }

    #[test]
    fn this_process_is_sampled() {
        let mut tree = Tree::default();
        let sample = tree.sample(std::process::id(), None, 0);
        assert!(sample.in_use > 0);
    }
}
