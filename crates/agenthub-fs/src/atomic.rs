//! Atomic replacement of a file (a temporary file beside it, renamed into place) and bounded
//! reads of regular files, by path or relative to a directory opened without following a
//! symlink.

use std::fmt;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory opened without following a symlink in its place: names written and read
/// through it stay in that directory even if a symlink is swapped in at its path meanwhile.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The step of an atomic write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStep {
    /// Creating the temporary file.
    Create,
    /// Writing the bytes to it.
    Write,
    /// Renaming it over the target.
    Rename,
}

impl fmt::Display for WriteStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Write => "write",
            Self::Rename => "rename into place",
        })
    }
}

/// Why an atomic write failed; the target was left as it was and the temporary file removed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {step} `{path}`")]
pub struct WriteError {
    /// What was being done.
    pub step: WriteStep,
    /// The temporary file ([`WriteStep::Create`], [`WriteStep::Write`]) or the target
    /// ([`WriteStep::Rename`]).
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: io::Error,
}

/// Why a bounded read gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening (`ELOOP`: a symlink), inspecting or reading failed.
    #[error("failed to read `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A directory, FIFO, socket or device.
    #[error("`{path}` is not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// More than the limit.
    #[error("`{path}` is larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
}

impl Dir {
    /// Opens the directory `path`; a symlink (or anything but a directory) there is an error.
    pub fn open_nofollow(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Self { fd: file.into(), path: path.to_path_buf() })
    }

    /// The path the directory was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file `name` (one path component) in this directory with `bytes`: see
    /// [`write_atomic`].
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let target = Path::new(name);
        if name.contains('/') || target.file_name().is_none() {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a file name");
            return Err(WriteError { step: WriteStep::Create, path: self.path.join(name), source });
        }
        write_in(self.fd.as_raw_fd(), &self.path, target, bytes)
    }

    /// Reads the regular file `name` (one path component) in this directory: see
    /// [`read_bounded`].
    pub fn read_bounded(&self, name: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let shown = self.path.join(name);
        if name.contains('/') {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a file name");
            return Err(ReadError::Io { path: shown, source });
        }
        read_in(self.fd.as_raw_fd(), Path::new(name), &shown, limit)
    }
}

/// Replaces the file at `path` with `bytes` atomically: the bytes go to a new temporary
/// file beside it (`.<name>.<pid>-<n>.tmp`, created exclusively, never through a
/// symlink), which is then renamed over `path` with one `rename(2)`, so a reader sees the
/// old file or the new one, never a part. Not synced (durability is not asked for). On
/// failure the temporary file is removed and `path` is as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let parent = path.parent().unwrap_or(Path::new(""));
    write_in(libc::AT_FDCWD, parent, path, bytes)
}

/// Reads the regular file at `path`, at most `limit` bytes: opened without following a
/// symlink in its place (`O_NOFOLLOW`) and without blocking on a FIFO (`O_NONBLOCK`); a
/// file that is not regular or holds more than `limit` bytes is an error.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    read_in(libc::AT_FDCWD, path, path, limit)
}

/// Writes through a temporary file in `dir` (shown as `shown_dir`) and renames it to
/// `target` (relative to `dir`).
fn write_in(dir: RawFd, shown_dir: &Path, target: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp_name = format!(".{name}.{}-{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let tmp = target.with_file_name(&tmp_name);
    let shown_tmp = shown_dir.join(&tmp_name);
    let shown_target = shown_dir.join(target.file_name().unwrap_or_default());
    let fail = |step, path: &Path, source| WriteError { step, path: path.to_path_buf(), source };
    let (tmp_c, target_c) = match (crate::c_path(&tmp), crate::c_path(target)) {
        (Ok(t), Ok(n)) => (t, n),
        (Err(e), _) | (_, Err(e)) => return Err(fail(WriteStep::Create, &shown_tmp, e)),
    };
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open directory or AT_FDCWD, `tmp_c` a valid C string, the mode a
    // valid mode (the umask applies, as for `File::create`).
    let fd = unsafe { libc::openat(dir, tmp_c.as_ptr(), flags, 0o666 as libc::c_uint) };
    if fd < 0 {
        return Err(fail(WriteStep::Create, &shown_tmp, io::Error::last_os_error()));
    }
    // SAFETY: a successful openat returns a new descriptor that only this File owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let remove_tmp = || {
        // SAFETY: as above; removes only the temporary file this call created.
        unsafe { libc::unlinkat(dir, tmp_c.as_ptr(), 0) };
    };
    if let Err(e) = file.write_all(bytes) {
        remove_tmp();
        return Err(fail(WriteStep::Write, &shown_tmp, e));
    }
    drop(file);
    // SAFETY: `dir` as above, both names valid C strings.
    if unsafe { libc::renameat(dir, tmp_c.as_ptr(), dir, target_c.as_ptr()) } != 0 {
        let e = io::Error::last_os_error();
        remove_tmp();
        return Err(fail(WriteStep::Rename, &shown_target, e));
    }
    Ok(())
}

fn read_in(dir: RawFd, name: &Path, shown: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io_err = |source| ReadError::Io { path: shown.to_path_buf(), source };
    let name = crate::c_path(name).map_err(io_err)?;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open directory or AT_FDCWD, `name` a valid C string.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io_err(io::Error::last_os_error()));
    }
    // SAFETY: a successful openat returns a new descriptor that only this File owns.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular { path: shown.to_path_buf() });
    }
    let too_large = || ReadError::TooLarge { path: shown.to_path_buf(), limit };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(entries(dir.path()), ["f.json"]);
        assert_eq!(read_bounded(&path, 3).unwrap(), b"two");

        let cache = Dir::open_nofollow(dir.path()).unwrap();
        assert_eq!(cache.path(), dir.path());
        cache.write_atomic("g", b"three").unwrap();
        assert_eq!(cache.read_bounded("g", 100).unwrap(), b"three");
        assert_eq!(entries(dir.path()), ["f.json", "g"]);
        assert!(cache.write_atomic("a/b", b"").is_err());
        assert!(cache.read_bounded("a/b", 1).is_err());
    }

    #[test]
    fn a_failed_write_leaves_the_target_and_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/x"), "").unwrap();
        let err = write_atomic(&dir.path().join("d"), b"new").unwrap_err();
        assert_eq!(err.step, WriteStep::Rename, "{err}");
        assert_eq!(err.path, dir.path().join("d"));
        assert_eq!(entries(dir.path()), ["d"]);
        let err = write_atomic(&dir.path().join("missing/f"), b"").unwrap_err();
        assert_eq!(err.step, WriteStep::Create, "{err}");
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("cache");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = Dir::open_nofollow(&link).unwrap_err();
        assert!(matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)), "{err}");
        std::fs::write(dir.path().join("file"), "").unwrap();
        assert!(Dir::open_nofollow(&dir.path().join("file")).is_err());

        // Opened before a symlink was swapped in at its path: still the same directory.
        let moved = dir.path().join("moved");
        std::fs::create_dir(&moved).unwrap();
        let held = Dir::open_nofollow(&moved).unwrap();
        std::fs::rename(&moved, dir.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(&real, &moved).unwrap();
        held.write_atomic("f", b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("elsewhere/f")).unwrap(), b"x");
        assert!(entries(&real).is_empty(), "nothing was written through the symlink");
    }

    #[test]
    fn a_symlinked_file_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("f");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    }

    #[test]
    fn reads_are_bounded_and_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "12345").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), b"12345");
        assert!(matches!(read_bounded(&path, 4), Err(ReadError::TooLarge { limit: 4, .. })));
        assert!(matches!(read_bounded(dir.path(), 4), Err(ReadError::NotRegular { .. })));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let err = read_bounded(&link, 10).unwrap_err();
        assert!(
            matches!(&err, ReadError::Io { source, .. } if source.raw_os_error() == Some(libc::ELOOP)),
            "{err:?}"
        );
        let fifo = dir.path().join("fifo");
        let c = crate::c_path(&fifo).unwrap();
        // SAFETY: a valid C string and a mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(
            matches!(read_bounded(&fifo, 10), Err(ReadError::NotRegular { .. })),
            "a FIFO does not block"
        );
        let missing = read_bounded(&dir.path().join("missing"), 10).unwrap_err();
        assert!(matches!(&missing, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound));
    }
}
