//! [`Worker`]: a long-lived child under the same containment as a one-shot call (its own
//! process group, a cgroup where possible, the run-id marker, dies with the runtime when
//! asked, killed by [`crate::shutdown`]), talking newline-delimited messages over its
//! stdin and stdout. What the lines mean is the caller's business; this module only
//! guarantees that every wait is bounded, limits hold during a request, and nothing of the
//! worker outlives it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::linux;
use crate::memory::Tree;
use crate::supervisor::Spawned;
use crate::{ExitStatus, ProcessError, ProcessLimits, ProcessSpec, Termination};

/// How often a worker that is waited on is looked at when nothing else wakes the wait.
const TICK: Duration = Duration::from_millis(50);

/// What [`Worker::recv`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// One line, without its newline.
    Line(Vec<u8>),
    /// The worker closed its channel: it has exited (or was killed) and has been reaped.
    Exited(ExitStatus),
    /// A limit was hit while waiting; the worker's whole tree has been killed and reaped.
    Stopped(Termination, ExitStatus),
}

/// The tail of a worker's stderr, with a running count so that a caller can take what
/// was written since a mark.
#[derive(Debug)]
struct StderrLog {
    tail: VecDeque<u8>,
    total: u64,
    cap: usize,
}

impl StderrLog {
    fn push(&mut self, bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len() as u64);
        let keep = bytes.len().min(self.cap);
        let bytes = &bytes[bytes.len() - keep..];
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.cap);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }
}

/// A long-lived supervised child process with a line channel on its stdin and stdout.
///
/// Dropping a worker kills its whole tree and reaps it; [`Worker::shutdown`] asks it to
/// leave first.
pub struct Worker {
    child: Spawned,
    stdin: Option<File>,
    stdout: File,
    pending: Vec<u8>,
    stderr: Option<Arc<Stderr>>,
    drain: Option<JoinHandle<()>>,
    limits: ProcessLimits,
    tree: Tree,
    sampled_peak: u64,
    status: Option<ExitStatus>,
    /// `/proc/<pid>/clear_refs` and `/proc/<pid>/status`, kept open across requests.
    proc_files: Option<(File, File)>,
    /// Whether stdin is known to be non-blocking (set once; [`Self::stdin_writer`] clears it).
    stdin_nonblocking: std::sync::atomic::AtomicBool,
    /// How long [`Self::recv`] polls the channel on the CPU before it sleeps (see
    /// [`Self::set_spin`]).
    spin: Duration,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("pid", &self.child.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts `spec` with piped stdin, stdout and stderr. `spec.limits.max_memory_bytes`
    /// caps the tree while a request is waited on, `stderr_tail_bytes` bounds the kept
    /// stderr; the timeout is per [`Self::recv`].
    pub fn spawn(spec: &ProcessSpec) -> Result<Self, ProcessError> {
        let (mut child, stdin) = Spawned::spawn_with_stdin(spec, true)?;
        let stdout =
            child.stdout.take().ok_or_else(|| ProcessError::Io(std::io::Error::other("no stdout pipe")))?;
        let cap = spec.limits.stderr_tail_bytes.max(1);
        let stderr = child.stderr.take().map(|pipe| {
            Arc::new(Stderr { pipe, log: Mutex::new(StderrLog { tail: VecDeque::new(), total: 0, cap }) })
        });
        let drain = stderr.as_ref().map(|stderr| {
            let stderr = Arc::clone(stderr);
            std::thread::Builder::new()
                .name(format!("agenthub-worker-{}-stderr", child.pid))
                .spawn(move || stderr.drain_until_eof())
        });
        let drain = drain.transpose().map_err(ProcessError::Io)?;
        Ok(Self {
            child,
            stdin,
            stdout,
            pending: Vec::new(),
            stderr,
            drain,
            limits: spec.limits,
            tree: Tree::default(),
            sampled_peak: 0,
            status: None,
            proc_files: None,
            stdin_nonblocking: std::sync::atomic::AtomicBool::new(false),
            spin: Duration::ZERO,
        })
    }

    /// A second handle on the worker's stdin, in blocking mode, for a protocol with many
    /// requests in flight: one thread writes requests through it while another waits for
    /// answers with [`Self::recv`]. Do not mix it with [`Self::request`] (which sets the
    /// pipe non-blocking while it writes).
    pub fn stdin_writer(&self) -> std::io::Result<File> {
        let stdin = self.stdin.as_ref().ok_or_else(|| std::io::Error::from(ErrorKind::BrokenPipe))?;
        let writer = stdin.try_clone()?;
        // One open file description: its flags are the same for both handles.
        self.stdin_nonblocking.store(false, std::sync::atomic::Ordering::Relaxed);
        linux::set_blocking(&writer)?;
        Ok(writer)
    }

    /// The worker's pid (also its process group).
    pub fn pid(&self) -> u32 {
        self.child.pid
    }

    /// Whether the worker has exited (it is then reaped).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none()
            && let Ok(Some(reaped)) = self.child.reap(false)
        {
            self.status = Some(reaped.status);
        }
        self.status.is_some()
    }

    /// Sends one request line (a newline is added) and waits for the answer line: one
    /// deadline, `timeout`, covers both, so a worker that stops reading its stdin cannot hold
    /// a call past it. See [`Self::recv`] for the rest.
    pub fn request(
        &mut self,
        line: &[u8],
        timeout: Option<Duration>,
        max_line: usize,
    ) -> Result<Received, ProcessError> {
        let deadline = timeout.and_then(|t| linux::clock_now().checked_add(t));
        let mut message = Vec::with_capacity(line.len() + 1);
        message.extend_from_slice(line);
        message.push(b'\n');
        if let Some(stopped) = self.write_all_until(&message, deadline)? {
            return Ok(stopped);
        }
        let left = deadline.map(|d| d.saturating_sub(linux::clock_now()));
        self.recv(left, max_line)
    }

    /// Writes `bytes` to the worker's stdin, never past `deadline`; `Some` when the worker
    /// was stopped (deadline, cancelled) or has gone away instead.
    fn write_all_until(
        &mut self,
        mut bytes: &[u8],
        deadline: Option<Duration>,
    ) -> Result<Option<Received>, ProcessError> {
        let Some(stdin) = self.stdin.as_ref() else { return Ok(Some(self.exited())) };
        let fd = stdin.as_raw_fd();
        if !self.stdin_nonblocking.load(std::sync::atomic::Ordering::Relaxed) {
            linux::set_nonblocking(stdin).map_err(ProcessError::Io)?;
            self.stdin_nonblocking.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        while !bytes.is_empty() {
            if self.child.scope.cancelled() {
                return Ok(Some(self.stop(Termination::Cancelled)));
            }
            let now = linux::clock_now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(Some(self.stop(Termination::Timeout)));
            }
            let mut writer = self
                .stdin
                .as_ref()
                .map(|f| f as &File)
                .ok_or_else(|| ProcessError::Io(ErrorKind::BrokenPipe.into()))?;
            match writer.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let wait = deadline.map_or(TICK, |d| d.saturating_sub(now).min(TICK));
                    let ms = i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
                    let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                    // SAFETY: one valid pollfd for the duration of the call.
                    unsafe { libc::poll(&raw mut pfd, 1, ms) };
                }
                // EPIPE: the worker closed its stdin or died.
                Err(_) => return Ok(Some(self.exited())),
            }
        }
        Ok(None)
    }

    /// Waits for the next line, at most `timeout` (on a clock that keeps running while this
    /// process is stopped), with the memory cap sampled over the whole tree. A line longer
    /// than `max_line` bytes is [`Termination::StdoutLimit`].
    pub fn recv(&mut self, timeout: Option<Duration>, max_line: usize) -> Result<Received, ProcessError> {
        let started = linux::clock_now();
        let deadline = timeout.and_then(|t| started.checked_add(t));
        let interval = self.limits.memory_sample_interval.max(Duration::from_millis(1));
        // The first sample after one interval: most warm requests are over before it.
        let mut next_sample = self.limits.max_memory_bytes.and_then(|_| started.checked_add(interval));
        let mut buf = [0u8; 16 * 1024];
        let mut scanned = 0;
        let spin_until = Some(self.spin).filter(|s| !s.is_zero()).and_then(|s| started.checked_add(s));
        loop {
            if let Some(end) = self.pending[scanned..].iter().position(|&b| b == b'\n') {
                // The buffer itself becomes the line (no copy of a long reply), and what
                // follows the newline, if anything, a new buffer: nothing a long reply made
                // the buffer grow to stays allocated once the caller drops the line.
                let rest = self.pending.split_off(scanned + end + 1);
                let mut line = std::mem::replace(&mut self.pending, rest);
                line.pop();
                return Ok(Received::Line(line));
            }
            // Only bytes read from here on need looking at (a long line is not rescanned).
            scanned = self.pending.len();
            if self.pending.len() > max_line {
                return Ok(self.stop(Termination::StdoutLimit));
            }
            if self.child.scope.cancelled() {
                return Ok(self.stop(Termination::Cancelled));
            }
            let now = linux::clock_now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(self.stop(Termination::Timeout));
            }
            if let (Some(at), Some(cap)) = (next_sample, self.limits.max_memory_bytes)
                && now >= at
            {
                let sample = self.child.scope.sample_memory(&mut self.tree, cap);
                self.sampled_peak = self.sampled_peak.max(sample.in_use);
                if sample.in_use > cap || sample.oom_killed {
                    return Ok(self.stop(Termination::MemoryLimit));
                }
                next_sample = now.checked_add(interval);
            }
            if spin_until.is_some_and(|until| now < until) {
                match self.stdout.read(&mut buf) {
                    Ok(0) => return Ok(self.exited()),
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                        std::hint::spin_loop();
                    }
                    Err(e) => return Err(ProcessError::Io(e)),
                }
                continue;
            }
            let wake =
                [deadline, next_sample].into_iter().flatten().min().map_or(TICK, |at| at.saturating_sub(now));
            let wait = i32::try_from(wake.min(TICK).as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
            // The pidfd too: a worker that died while something it started still holds the
            // channel open must not look alive until the deadline.
            let mut fds = vec![self.stdout.as_raw_fd()];
            fds.extend(self.child.pidfd.as_ref().map(AsRawFd::as_raw_fd));
            let ready = linux::poll_readable(&fds, wait).map_err(ProcessError::Io)?;
            if ready.get(1).copied().unwrap_or(false) && !ready[0] {
                return Ok(self.exited());
            }
            if !ready[0] {
                continue;
            }
            match self.stdout.read(&mut buf) {
                Ok(0) => return Ok(self.exited()),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(ProcessError::Io(e)),
            }
        }
    }

    /// Lets the next [`Self::recv`]s read the channel in a loop for up to `spin` before they
    /// sleep in `poll(2)` (zero, the default: never). An answer that arrives meanwhile is
    /// read without the sleep and wake-up, which on another CPU cost more than a short
    /// call itself; the CPU is spent only while the answer is awaited and never beyond
    /// `spin`. Deadlines and cancellation are looked at as in the sleep.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// How many stderr bytes the worker has written so far: a mark for [`Self::stderr_since`].
    pub fn stderr_mark(&self) -> u64 {
        self.stderr.as_ref().map_or(0, |s| s.catch_up().total)
    }

    /// What the worker wrote to stderr since `mark` (its tail, if more than is kept), and
    /// whether that was cut. Everything already in the pipe is read first, so what the
    /// worker wrote before its answer is there.
    pub fn stderr_since(&self, mark: u64) -> (Vec<u8>, bool) {
        let Some(stderr) = &self.stderr else { return (Vec::new(), false) };
        let log = stderr.catch_up();
        let written = usize::try_from(log.total.saturating_sub(mark)).unwrap_or(usize::MAX);
        let kept = written.min(log.tail.len());
        (log.tail.iter().skip(log.tail.len() - kept).copied().collect(), written > kept)
    }

    /// Starts measuring a request's peak: resets the worker's high-water mark.
    pub fn reset_peak(&mut self) {
        use std::os::unix::fs::FileExt;
        if self.proc_files.is_none()
            && let Some(pid) = self.child.program_pid()
        {
            let clear = File::options().write(true).open(format!("/proc/{pid}/clear_refs"));
            let status = File::open(format!("/proc/{pid}/status"));
            self.proc_files = clear.and_then(|c| status.map(|s| (c, s))).ok();
        }
        if let Some((clear, _)) = &self.proc_files {
            let _ = clear.write_at(b"5", 0);
        }
        self.sampled_peak = 0;
    }

    /// The peak memory since [`Self::reset_peak`] (the worker's resident high-water mark or
    /// the largest sample over its tree, whichever is larger) and its resident memory now;
    /// one read of `/proc/<pid>/status`.
    pub fn memory(&self) -> (Option<u64>, Option<u64>) {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 4096];
        let read = match &self.proc_files {
            Some((_, status)) => status.read_at(&mut buf, 0).ok(),
            None => self
                .child
                .program_pid()
                .and_then(|pid| linux::read_prefix(&format!("/proc/{pid}/status"), &mut buf)),
        };
        let text = read.and_then(|n| std::str::from_utf8(&buf[..n]).ok()).unwrap_or_default();
        let kib = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
                .map(|k| k.saturating_mul(1024))
        };
        let peak = kib("VmHWM:").into_iter().chain([self.sampled_peak]).max().filter(|&p| p > 0);
        (peak, kib("VmRSS:"))
    }

    /// Asks the worker to leave: closes its stdin, waits up to `grace`, then SIGTERM to
    /// its group, waits up to `grace` again, then SIGKILL to everything of it. Reaps it.
    pub fn shutdown(mut self, grace: Duration) -> ExitStatus {
        self.stdin = None;
        if let Some(status) = self.wait_exit(grace) {
            return status;
        }
        self.child.scope.signal_group(libc::SIGTERM);
        if let Some(status) = self.wait_exit(grace) {
            return status;
        }
        self.finish()
    }

    /// Waits up to `limit` for the worker to exit by itself.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = linux::clock_now().saturating_add(limit);
        loop {
            if self.has_exited() {
                let _ = self.child.scope.kill_all();
                return self.status;
            }
            let now = linux::clock_now();
            if now >= end {
                return None;
            }
            std::thread::sleep(end.saturating_sub(now).min(Duration::from_millis(5)));
        }
    }

    /// The worker is gone: reaped, and reported as cancelled when `shutdown` killed it.
    fn exited(&mut self) -> Received {
        // It closed the channel: give it a moment to finish exiting by itself, so that its
        // own exit status (not our SIGKILL) is what is reported.
        let status = match self.wait_exit(Duration::from_millis(200)) {
            Some(status) => status,
            None => self.finish(),
        };
        if self.child.scope.cancelled() {
            Received::Stopped(Termination::Cancelled, status)
        } else {
            Received::Exited(status)
        }
    }

    /// Kills what is left of the worker's tree and reaps it.
    fn stop(&mut self, why: Termination) -> Received {
        let status = self.finish();
        Received::Stopped(why, status)
    }

    /// SIGKILL to the whole tree, then reap (the kill makes the wait short).
    fn finish(&mut self) -> ExitStatus {
        self.stdin = None;
        if let Some(status) = self.status {
            return status;
        }
        let _ = self.child.scope.kill_all();
        let status = match self.child.reap(true) {
            Ok(Some(reaped)) => reaped.status,
            _ => ExitStatus::Signaled(libc::SIGKILL),
        };
        self.status = Some(status);
        status
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Kills and reaps the tree. The stderr reader is not joined: it ends by itself at
        // EOF, once every process that held the pipe is gone.
        let _ = self.finish();
        drop(self.drain.take());
    }
}

/// A worker's stderr pipe and what was read from it. Reads happen only under the log's
/// lock, by the reader thread or by a caller catching up, so the log keeps the pipe's order.
struct Stderr {
    pipe: File,
    log: Mutex<StderrLog>,
}

impl Stderr {
    /// Reads what the pipe holds now into the log (non-blocking); returns the locked log.
    fn catch_up(&self) -> std::sync::MutexGuard<'_, StderrLog> {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = Self::read_available(&self.pipe, &mut log);
        log
    }

    /// Reads until the pipe is empty; `false` at EOF or on an error.
    fn read_available(pipe: &File, log: &mut StderrLog) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let mut reader = pipe;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => log.push(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }

    /// The reader thread: waits for output and reads it, until EOF.
    fn drain_until_eof(&self) {
        loop {
            if linux::poll_readable(&[self.pipe.as_raw_fd()], -1).is_err() {
                return;
            }
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            if !Self::read_available(&self.pipe, &mut log) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_log_keeps_the_tail_and_counts_everything() {
        let mut log = StderrLog { tail: VecDeque::new(), total: 0, cap: 4 };
        log.push(b"abc");
        log.push(b"defgh");
        assert_eq!(log.total, 8);
        assert_eq!(log.tail.iter().copied().collect::<Vec<_>>(), b"efgh");
        log.push(b"0123456789");
        assert_eq!(log.tail.iter().copied().collect::<Vec<_>>(), b"6789");
    }
}
