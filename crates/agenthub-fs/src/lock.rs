//! A cross-process lock: an exclusive `flock(2)` on a lock file, polled until a deadline.

use std::fmt;
use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A lock file held under an exclusive `flock(2)`; the lock is released when it is dropped
/// (the file itself stays: removing a lock file another process holds open would let two
/// holders in at once).
#[derive(Debug)]
pub struct LockedFile {
    file: File,
    path: PathBuf,
}

/// How to wait while another process holds the lock.
pub struct Wait<'a> {
    poll: Duration,
    on_contended: Option<&'a mut dyn FnMut()>,
    cancelled: Option<&'a dyn Fn() -> bool>,
}

impl Default for Wait<'_> {
    fn default() -> Self {
        Self { poll: Duration::from_millis(50), on_contended: None, cancelled: None }
    }
}

impl<'a> Wait<'a> {
    /// Tries the lock again every `every` (50 ms by default).
    #[must_use]
    pub fn polling(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Calls `f` once, the first time the lock is found held by someone else (to say that
    /// the caller is waiting).
    #[must_use]
    pub fn on_contended(mut self, f: &'a mut dyn FnMut()) -> Self {
        self.on_contended = Some(f);
        self
    }

    /// Gives up with [`LockError::Cancelled`] when `f` says so, checked between tries.
    #[must_use]
    pub fn cancelled_if(mut self, f: &'a dyn Fn() -> bool) -> Self {
        self.cancelled = Some(f);
        self
    }
}

/// The step of taking a lock that failed with an I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStep {
    /// Opening (or creating) the lock file.
    Open,
    /// Reading the lock file's metadata.
    Inspect,
    /// `flock(2)` itself.
    Lock,
}

impl fmt::Display for LockStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open the lock file",
            Self::Inspect => "inspect the lock file",
            Self::Lock => "lock",
        })
    }
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else held it until the deadline.
    #[error("timed out after {waited:?} waiting for the lock `{path}`")]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// How long this call waited.
        waited: Duration,
    },
    /// The lock file is a symlink (`ELOOP` from `O_NOFOLLOW`): it is never opened through one.
    #[error("refused to lock `{path}`: it is a symlink")]
    Symlink {
        /// The lock file.
        path: PathBuf,
        /// The `ELOOP` the open failed with.
        #[source]
        source: io::Error,
    },
    /// The lock file is not a regular file.
    #[error("refused to lock `{path}`: it is not a regular file")]
    NotRegular {
        /// The lock file.
        path: PathBuf,
    },
    /// The cancel check of [`Wait::cancelled_if`] said to stop.
    #[error("cancelled while waiting for the lock `{path}`")]
    Cancelled {
        /// The lock file.
        path: PathBuf,
    },
    /// An I/O error at `step`.
    #[error("failed to {step} `{path}`")]
    Io {
        /// What was being done.
        step: LockStep,
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl LockedFile {
    /// Takes the exclusive lock on `path`, creating the file if needed, waiting until
    /// `deadline` at most (`None`: for as long as it takes; a deadline already passed: one
    /// try). The file is opened without following a symlink (`O_NOFOLLOW`), without
    /// blocking on a FIFO (`O_NONBLOCK`), close-on-exec, and must be a regular file.
    pub fn acquire(path: &Path, deadline: Option<Instant>, mut wait: Wait<'_>) -> Result<Self, LockError> {
        let started = Instant::now();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| {
                if source.raw_os_error() == Some(libc::ELOOP) {
                    LockError::Symlink { path: path.to_path_buf(), source }
                } else {
                    LockError::Io { step: LockStep::Open, path: path.to_path_buf(), source }
                }
            })?;
        let meta = file.metadata().map_err(|source| LockError::Io {
            step: LockStep::Inspect,
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_file() {
            return Err(LockError::NotRegular { path: path.to_path_buf() });
        }
        let mut contended = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { file, path: path.to_path_buf() }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(source)) => {
                    return Err(LockError::Io { step: LockStep::Lock, path: path.to_path_buf(), source });
                }
            }
            if !contended {
                contended = true;
                if let Some(f) = wait.on_contended.as_mut() {
                    f();
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(LockError::Timeout { path: path.to_path_buf(), waited: started.elapsed() });
            }
            if wait.cancelled.is_some_and(|f| f()) {
                return Err(LockError::Cancelled { path: path.to_path_buf() });
            }
            std::thread::sleep(wait.poll);
        }
    }

    /// Takes the lock only if no one holds it: `Ok(None)` when someone does.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>, LockError> {
        match Self::acquire(path, Some(Instant::now()), Wait::default()) {
            Ok(lock) => Ok(Some(lock)),
            Err(LockError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open lock file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_until_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = LockedFile::acquire(&path, None, Wait::default()).unwrap();
        assert_eq!(first.path(), path);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(150);
        let mut said = 0;
        let mut count = || said += 1;
        let err = LockedFile::acquire(
            &path,
            Some(deadline),
            Wait::default().polling(Duration::from_millis(10)).on_contended(&mut count),
        )
        .unwrap_err();
        assert!(
            matches!(err, LockError::Timeout { ref path, waited } if *path == dir.path().join("x.lock") && waited >= Duration::from_millis(150)),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(said, 1, "told once that it waits");
        assert!(LockedFile::try_acquire(&path).unwrap().is_none());
        drop(first);
        let second = LockedFile::try_acquire(&path).unwrap();
        assert!(second.is_some(), "the lock is free once its holder dropped it");
    }

    #[test]
    fn a_waiting_holder_gets_the_lock_when_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = LockedFile::acquire(&path, None, Wait::default()).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        LockedFile::acquire(&path, Some(deadline), Wait::default().polling(Duration::from_millis(10)))
            .unwrap();
        releaser.join().unwrap();
    }

    #[test]
    fn the_cancel_check_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let _first = LockedFile::acquire(&path, None, Wait::default()).unwrap();
        let cancelled = || true;
        let err = LockedFile::acquire(&path, None, Wait::default().cancelled_if(&cancelled)).unwrap_err();
        assert!(matches!(err, LockError::Cancelled { .. }), "{err:?}");
    }

    #[test]
    fn a_symlink_or_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("x.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = LockedFile::acquire(&link, None, Wait::default()).unwrap_err();
        assert!(matches!(err, LockError::Symlink { .. }), "{err:?}");
        let dangling = dir.path().join("y.lock");
        std::os::unix::fs::symlink(dir.path().join("missing"), &dangling).unwrap();
        let err = LockedFile::acquire(&dangling, None, Wait::default()).unwrap_err();
        assert!(matches!(err, LockError::Symlink { .. }), "{err:?}");
        assert!(!dir.path().join("missing").exists(), "nothing was created through the symlink");
        let err = LockedFile::acquire(dir.path(), None, Wait::default()).unwrap_err();
        assert!(matches!(err, LockError::Io { step: LockStep::Open, .. }), "{err:?}");
    }

    #[test]
    fn a_fifo_is_not_a_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.lock");
        let c = crate::c_path(&fifo).unwrap();
        // SAFETY: a valid C string and a mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        // Opened for writing without a reader: ENXIO, an open error rather than a hang.
        let err = LockedFile::acquire(&fifo, None, Wait::default()).unwrap_err();
        assert!(matches!(err, LockError::Io { step: LockStep::Open, .. }), "{err:?}");
        // With a reader the open succeeds, and the type is refused.
        let _reader = File::options().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
        let err = LockedFile::acquire(&fifo, None, Wait::default()).unwrap_err();
        assert!(matches!(err, LockError::NotRegular { .. }), "{err:?}");
    }
}
