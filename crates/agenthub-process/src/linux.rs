//! The few Linux calls the backends need, each wrapped safely (pidfd, `prctl`, `wait4`,
//! `/proc`, `CLOCK_BOOTTIME`).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A reaped child: how it ended and its peak resident memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reaped {
    pub(crate) status: crate::ExitStatus,
    pub(crate) peak_rss_bytes: Option<u64>,
}

/// `pidfd_open(2)`: an fd that refers to the process `pid` (it becomes readable when the
/// process exits; signals sent through it never reach a process that reused the pid).
/// `None` when the kernel has none (Linux < 5.3) or the process is gone.
pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SIGKILL to the process behind the pidfd `fd` (`pidfd_send_signal(2)`); whether it was
/// sent.
pub fn pidfd_kill(fd: &OwnedFd) -> bool {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    sent == 0
}

/// Time since boot on a clock that keeps running while this process is stopped and while
/// the machine is suspended (`CLOCK_BOOTTIME`; `CLOCK_MONOTONIC` if that fails).
pub(crate) fn clock_now() -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    for clock in [libc::CLOCK_BOOTTIME, libc::CLOCK_MONOTONIC] {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: ts is valid for writes; clock_gettime writes only it.
        if unsafe { libc::clock_gettime(clock, &raw mut ts) } == 0
            && let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec))
            && nanos < 1_000_000_000
        {
            return std::time::Duration::new(secs, nanos);
        }
    }
    // Neither clock is readable (no known kernel does this): a clock that starts now.
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// Puts an fd in non-blocking mode.
pub(crate) fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on an fd we own, with flags read from it.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags < 0 || libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Clears `O_NONBLOCK` on `fd` (and every fd sharing its open file description).
pub(crate) fn set_blocking(fd: &impl AsRawFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on an fd we own, with flags read from it.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags < 0 || libc::fcntl(raw, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `signal` to every process in the group `pgid`. A group that is gone is fine.
pub(crate) fn kill_group(pgid: u32, signal: libc::c_int) {
    if pgid <= 1 {
        return; // never signal "all processes" or init's group
    }
    // SAFETY: kill with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), signal);
    }
}

/// Whether a process with this pid exists and is not a zombie.
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !matches!(proc_state(pid), Some('Z' | 'X'))
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in parentheses and
/// may hold anything, spaces and parentheses included): field 3 (the state) first.
fn stat_fields_after_comm(pid: u32) -> Option<String> {
    let mut buf = [0u8; 1024];
    let n = read_prefix(&format!("/proc/{pid}/stat"), &mut buf)?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_owned())
}

fn proc_state(pid: u32) -> Option<char> {
    stat_fields_after_comm(pid)?.chars().next()
}

/// When `pid` started, in clock ticks after boot (field 22 of `/proc/<pid>/stat`): with
/// the boot id, what tells a process from a later one that reuses its pid.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    // Field 22 is the 20th after the command name (field 2).
    stat_fields_after_comm(pid)?.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub(crate) fn boot_id() -> Option<&'static str> {
    static BOOT_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            let mut buf = [0u8; 64];
            let n = read_prefix("/proc/sys/kernel/random/boot_id", &mut buf)?;
            let id = std::str::from_utf8(&buf[..n]).ok()?.trim();
            (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then(|| id.to_owned())
        })
        .as_deref()
}

/// Reads at most `buf.len()` bytes from the start of `path` (a bounded read, whatever the
/// file is); `None` when it cannot be opened or read.
pub(crate) fn read_prefix(path: &str, buf: &mut [u8]) -> Option<usize> {
    let file = File::open(path).ok()?;
    let mut filled = 0;
    // Each read returns at least one byte or ends the loop: at most buf.len() rounds.
    while filled < buf.len() {
        match (&file).read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(filled)
}

/// SIGKILLs one process; returns whether the signal was sent (not when it is gone or not
/// ours to kill).
pub(crate) fn kill_pid(pid: u32) -> bool {
    if pid <= 1 || pid > i32::MAX as u32 {
        return false; // never signal init or "all processes"
    }
    // SAFETY: kill has no memory effects; a pid that is gone is ESRCH.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
}

/// `wait4(pid)`: reaps the child, blocking when `block`. `None` when it is still running.
pub(crate) fn wait4(pid: u32, block: bool) -> io::Result<Option<Reaped>> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: status and usage are valid for writes for the duration of the call.
        let ret = unsafe { libc::wait4(pid as libc::pid_t, &raw mut status, flags, &raw mut usage) };
        if ret == 0 {
            return Ok(None);
        }
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let status = if libc::WIFSIGNALED(status) {
            crate::ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            crate::ExitStatus::Exited(libc::WEXITSTATUS(status))
        };
        // ru_maxrss is in KiB on Linux.
        let peak = u64::try_from(usage.ru_maxrss).ok().filter(|&k| k > 0).map(|k| k * 1024);
        return Ok(Some(Reaped { status, peak_rss_bytes: peak }));
    }
}

/// This process's own peak resident memory in bytes (`getrusage(RUSAGE_SELF)`).
///
/// Linux carries a spawner's high-water mark into its child across `exec` (the child
/// starts on the parent's address space), so a child's `ru_maxrss` is only its own peak
/// when it is larger than this.
pub(crate) fn self_peak_rss_bytes() -> u64 {
    // SAFETY: rusage is plain old data; zeroed is valid, and getrusage only writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is valid for writes.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024
}

#[cfg(feature = "std")]
/// `poll(2)` on `fds` for readability; returns which were ready (readable, hung up or errored).
pub(crate) fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: pollfds is a valid array of the length passed.
    let ret = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout_ms) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(err);
    }
    Ok(pollfds.iter().map(|p| p.revents != 0).collect())
}

/// Makes `cmd`'s child receive SIGKILL when the spawning thread dies.
pub(crate) fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated after fork.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
}

/// The program a sandbox's waiter runs: two levels below it (waiter, init, program), found
/// in `/proc`; `None` when there is none (gone, or `waiter` is no waiter). The waiter and
/// the init are forks of the runtime: their `/proc/<pid>/environ` is the runtime's, and only
/// the program's holds the variables it was given.
pub fn sandboxed_program(waiter: u32) -> Option<u32> {
    only_child(only_child(waiter)?)
}

/// The first child of `parent` found in `/proc` (by the parent pid in `/proc/<pid>/stat`;
/// this kernel may lack `/proc/<pid>/task/<pid>/children`). Bounded: at most 100,000
/// entries are looked at.
pub(crate) fn only_child(parent: u32) -> Option<u32> {
    scan_children(parent, true).into_iter().next()
}

/// The children of `parent` from `/proc/<parent>/task/*/children`, `None` on a kernel
/// without those files.
pub(crate) fn children_if_listed(parent: u32) -> Option<Vec<u32>> {
    static HAS_FILES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    HAS_FILES
        .get_or_init(|| std::path::Path::new("/proc/thread-self/children").exists())
        .then(|| crate::memory::children(parent))
}

/// This process's resident anonymous memory in bytes (`RssAnon` of `/proc/self/status`),
/// 0 when unknown.
pub(crate) fn self_anon_rss_bytes() -> u64 {
    let mut buf = [0u8; 4096];
    let Some(n) = read_prefix("/proc/self/status", &mut buf) else { return 0 };
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("RssAnon:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
            })
        })
        .map_or(0, |k| k.saturating_mul(1024))
}

/// A process's resident high-water mark in bytes (`VmHWM` of `/proc/<pid>/status`: the
/// peak of its address space since its `exec`).
pub(crate) fn vm_hwm(pid: u32) -> Option<u64> {
    let mut buf = [0u8; 4096];
    let n = read_prefix(&format!("/proc/{pid}/status"), &mut buf)?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|k| k.saturating_mul(1024))
}

/// The children of `parent`: from `/proc/<parent>/task/*/children`, or on a kernel without
/// those files (no `CONFIG_PROC_CHILDREN`) from a scan of `/proc`.
pub(crate) fn children(parent: u32) -> Vec<u32> {
    static HAS_FILES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *HAS_FILES.get_or_init(|| std::path::Path::new("/proc/thread-self/children").exists()) {
        crate::memory::children(parent)
    } else {
        scan_children(parent, false)
    }
}

/// The children of `parent` found by the parent pid in each `/proc/<pid>/stat` (the first
/// one only with `first`). Bounded: at most 100,000 entries are looked at.
fn scan_children(parent: u32, first: bool) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    let mut buf = [0u8; 512];
    for entry in entries.take(100_000).flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Some(n) = read_prefix(&format!("/proc/{pid}/stat"), &mut buf) else { continue };
        let Ok(stat) = std::str::from_utf8(&buf[..n]) else { continue };
        // `pid (comm) state ppid ...`: comm may hold anything, so split after its last `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        if rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            found.push(pid);
            if first {
                break;
            }
        }
    }
    found
}
