//! Ctrl-C during a call made on Python's main thread.
//!
//! Python's own SIGINT handler only sets a flag that the main thread checks when it runs
//! Python code, which it does not while it waits for a call with the GIL released. So for
//! the length of such a call, Python's *wakeup fd* (`signal.set_wakeup_fd`, to which the
//! interpreter's C-level handler writes the number of every signal it catches) is a pipe
//! that a thread of ours reads: a SIGINT byte cancels the call (its processes are killed,
//! see `agenthub_runtime::CallCancel`), and once the call has ended the main thread runs the
//! Python handler (`KeyboardInterrupt` by default). Whatever wakeup fd was set before (an
//! asyncio loop's) is put back after the call, and the bytes read meanwhile are passed on
//! to it. Calls on other threads are not touched: Python delivers signals to the main
//! thread only.
//!
//! The cost is two `set_wakeup_fd` calls per main-thread call (about a microsecond); the
//! thread wakes only when a signal arrives.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use agenthub_runtime::CallCancel;
use pyo3::marker::Ungil;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// The pipe Python writes signal numbers to during a main-thread call, and that call.
struct Watch {
    /// The process that made it: a forked child has the pipe but not the thread that reads
    /// it, and makes a watch of its own.
    pid: u32,
    read: OwnedFd,
    /// The write end (non-blocking, as `set_wakeup_fd` requires).
    write: OwnedFd,
    current: Mutex<Current>,
}

#[derive(Default)]
struct Current {
    /// Whether a call is armed (the pipe is Python's wakeup fd).
    armed: bool,
    cancel: Option<CallCancel>,
    /// The wakeup fd set before the call, which gets the bytes read meanwhile.
    forward: Option<RawFd>,
}

/// The watch last made (by this process or, in a forked child, by its parent).
static WATCH: AtomicPtr<Watch> = AtomicPtr::new(std::ptr::null_mut());

/// A process that could not start the watch's thread: it goes without.
static NO_WATCH: AtomicU32 = AtomicU32::new(0);

/// The write end of the watch's pipe, or -1: a child forked while the parent's main thread
/// waited in a call inherits it as Python's wakeup fd, and the package's at-fork hook
/// unsets it there (the parent's thread would read the child's signals).
#[pyfunction]
pub(crate) fn interrupt_fd() -> RawFd {
    // SAFETY: a non-null pointer was leaked from a Box in `watch` and is never freed.
    unsafe { WATCH.load(Ordering::Acquire).as_ref() }.map_or(-1, |watch| watch.write.as_raw_fd())
}

/// The watch of this process, started on first use; `None` when a pipe or thread could not
/// be had. One made before a fork is leaked in the child (its thread is not there).
fn watch() -> Option<&'static Watch> {
    let pid = std::process::id();
    if NO_WATCH.load(Ordering::Acquire) == pid {
        return None;
    }
    let current = WATCH.load(Ordering::Acquire);
    // SAFETY: a non-null pointer was leaked from a Box below and is never freed.
    if let Some(watch) = unsafe { current.as_ref() }
        && watch.pid == pid
    {
        return Some(watch);
    }
    // Only the main thread makes one (`run` calls this there only), so there is no race.
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: both were just opened and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(write.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(write.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let made = Box::into_raw(Box::new(Watch { pid, read, write, current: Mutex::default() }));
    // SAFETY: `made` stays valid: freed below only when no thread was given it, leaked otherwise.
    let watch: &'static Watch = unsafe { &*made };
    if std::thread::Builder::new()
        .name("agenthub-sigint".to_owned())
        .spawn(move || read_signals(watch))
        .is_err()
    {
        // No thread (a pids limit): remember it, so calls do not make a pipe each.
        NO_WATCH.store(pid, Ordering::Release);
        // SAFETY: no thread got `watch`, and it was not published.
        drop(unsafe { Box::from_raw(made) });
        return None;
    }
    WATCH.store(made, Ordering::Release);
    Some(watch)
}

/// The watch thread: forever, read signal numbers and act on them.
fn read_signals(watch: &Watch) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe { libc::read(watch.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        };
        if n == 0 {
            return;
        }
        let current = watch.current.lock().unwrap_or_else(PoisonError::into_inner);
        if buf[..n].contains(&(libc::SIGINT as u8))
            && let Some(cancel) = &current.cancel
        {
            cancel.cancel();
        }
        if let Some(fd) = current.forward {
            // SAFETY: writes bytes we hold to a descriptor Python was given; errors are
            // ignored, as Python's own handler ignores them.
            unsafe { libc::write(fd, buf.as_ptr().cast(), n) };
        }
    }
}

/// Whether the calling thread is the process's first thread (Python's main thread).
fn on_main_thread() -> bool {
    // SAFETY: plain system calls without arguments.
    unsafe { libc::gettid() == libc::getpid() }
}

/// `signal.set_wakeup_fd`, looked up once.
fn set_wakeup_fd(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static SET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    SET.get_or_try_init(py, || Ok(py.import("signal")?.getattr("set_wakeup_fd")?.unbind()))
}

/// `signal.getsignal` and `signal.default_int_handler`, looked up once.
fn sigint_is_default(py: Python<'_>) -> bool {
    static LOOKED_UP: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    let Ok((getsignal, default)) = LOOKED_UP.get_or_try_init(py, || -> PyResult<_> {
        let signal = py.import("signal")?;
        Ok((signal.getattr("getsignal")?.unbind(), signal.getattr("default_int_handler")?.unbind()))
    }) else {
        return false;
    };
    getsignal.call1(py, (libc::SIGINT,)).is_ok_and(|handler| handler.is(default))
}

/// Makes our pipe the wakeup fd for the length of `cancel`'s call; the fd set before, or
/// `None` when it could not be done (not the main interpreter's main thread) or was not
/// wanted: SIGINT has a handler of the user's (which may not mean "stop"), or our pipe is
/// already the wakeup fd (a call made from Python code that runs while another waits).
fn arm(py: Python<'_>, watch: &Watch, cancel: Option<&CallCancel>) -> Option<RawFd> {
    if !sigint_is_default(py) {
        return None;
    }
    // Nested (a call made by Python code that runs while another waits, on this thread):
    // the outer call armed it, keeps its cancel, and disarms it.
    if watch.current.lock().unwrap_or_else(PoisonError::into_inner).armed {
        return None;
    }
    let set = set_wakeup_fd(py).ok()?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("warn_on_full_buffer", false).ok()?;
    // The cancel first: a SIGINT that arrives as the fd is set still stops the call.
    *watch.current.lock().unwrap_or_else(PoisonError::into_inner) =
        Current { armed: true, cancel: cancel.cloned(), forward: None };
    let Ok(previous) =
        set.call(py, (watch.write.as_raw_fd(),), Some(&kwargs)).and_then(|p| p.extract::<RawFd>(py))
    else {
        *watch.current.lock().unwrap_or_else(PoisonError::into_inner) = Current::default();
        return None;
    };
    watch.current.lock().unwrap_or_else(PoisonError::into_inner).forward =
        (previous >= 0 && previous != watch.write.as_raw_fd()).then_some(previous);
    Some(previous)
}

/// Puts the previous wakeup fd back, then forgets the call (bytes still in the pipe then
/// are read with nothing to cancel and nowhere to go: a signal that arrived in the last
/// microseconds of a call reaches Python's handler, not the previous fd's reader).
fn disarm(py: Python<'_>, watch: &Watch, previous: RawFd) {
    if let Ok(set) = set_wakeup_fd(py)
        && let Err(e) = set.call1(py, (previous,))
    {
        e.print(py);
    }
    *watch.current.lock().unwrap_or_else(PoisonError::into_inner) = Current::default();
}

/// Runs `f` (a call, or a step that may take long) with the GIL released. On the main
/// thread, Ctrl-C cancels `cancel` (when given) and is raised as `KeyboardInterrupt` (or
/// whatever the Python handler raises) once `f` has returned; a Ctrl-C that came before
/// the call means it never starts.
pub(crate) fn run<T: Ungil, F: Ungil + FnOnce() -> T>(
    py: Python<'_>,
    cancel: Option<&CallCancel>,
    f: F,
) -> PyResult<T> {
    if !on_main_thread() {
        return Ok(py.detach(f));
    }
    py.check_signals()?;
    let armed = watch().and_then(|watch| arm(py, watch, cancel).map(|previous| (watch, previous)));
    let value = py.detach(f);
    if let Some((watch, previous)) = armed {
        disarm(py, watch, previous);
    }
    py.check_signals()?;
    Ok(value)
}
