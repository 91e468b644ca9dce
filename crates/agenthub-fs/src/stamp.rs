//! File-identity stamps: what `stat(2)` says about a file, to tell whether it changed.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether a stat follows a symlink in the last component of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// `stat`: the stamp is the target's (an edit of the target shows).
    Follow,
    /// `lstat`: the stamp is the symlink's own.
    NoFollow,
}

/// A file's identity and last change: two stamps are equal only while the file is the
/// same file (device, inode) with the same size, type, permissions and times. `ctime`
/// cannot be set by a user, so a change that restored `mtime` still shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_mode`: type and permissions.
    pub mode: u32,
    /// `st_size` in bytes.
    pub size: u64,
    /// Last modification, in nanoseconds since the Unix epoch.
    pub mtime: i128,
    /// Last status change, in nanoseconds since the Unix epoch.
    pub ctime: i128,
}

impl FileStamp {
    /// The stamp of `name` relative to the directory `dir` (`name` may have several
    /// components; only the last one is subject to `symlinks`).
    pub fn at(dir: BorrowedFd<'_>, name: &Path, symlinks: Symlinks) -> io::Result<Self> {
        stat_at(dir.as_raw_fd(), name, symlinks)
    }

    /// The stamp of `path`.
    pub fn of(path: &Path, symlinks: Symlinks) -> io::Result<Self> {
        stat_at(libc::AT_FDCWD, path, symlinks)
    }

    /// The stamps of `names` relative to `dir`: one path walk to the directory (opened
    /// `O_PATH`, following symlinks), then one `fstatat` per name; `None` for a name that
    /// cannot be stat'ed (absent, or `dir` is not a directory).
    pub fn all_in<const N: usize>(dir: &Path, names: [&str; N], symlinks: Symlinks) -> [Option<Self>; N] {
        let Some(dir) = open_path(dir) else { return [None; N] };
        names.map(|name| Self::at(dir.as_fd(), Path::new(name), symlinks).ok())
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// The later of `mtime` and `ctime`.
    pub fn changed(&self) -> i128 {
        self.mtime.max(self.ctime)
    }

    /// Whether the file changed (or claims to change) within `window` of `now`. Like git's
    /// racily clean index: a file changed that recently may change again without its stamp
    /// changing (coarse timestamps), so a state read from it must not be cached. A `now`
    /// before the epoch says yes.
    pub fn is_racy(&self, now: SystemTime, window: Duration) -> bool {
        let Ok(now) = now.duration_since(UNIX_EPOCH) else { return true };
        let now = i128::try_from(now.as_nanos()).unwrap_or(i128::MAX);
        let window = i128::try_from(window.as_nanos()).unwrap_or(i128::MAX);
        now.saturating_sub(self.changed()) <= window
    }
}

/// `dir` opened `O_PATH` (enough for `fstatat`, following symlinks on the way).
fn open_path(dir: &Path) -> Option<OwnedFd> {
    let path = crate::c_path(dir).ok()?;
    // SAFETY: `path` is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    // SAFETY: a successful open returns a new descriptor that only this OwnedFd owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat_at(dir: libc::c_int, name: &Path, symlinks: Symlinks) -> io::Result<FileStamp> {
    let name = crate::c_path(name)?;
    let flags = match symlinks {
        Symlinks::Follow => 0,
        Symlinks::NoFollow => libc::AT_SYMLINK_NOFOLLOW,
    };
    // SAFETY: `stat` is plain data, written by the kernel before it is read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open directory or AT_FDCWD, `name` a valid C string, `st` valid
    // for writes.
    if unsafe { libc::fstatat(dir, name.as_ptr(), &raw mut st, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Ok(FileStamp {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        size: st.st_size as u64,
        mtime: ns(st.st_mtime, st.st_mtime_nsec),
        ctime: ns(st.st_ctime, st.st_ctime_nsec),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_stats_the_target_and_no_follow_the_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target"), "hello").unwrap();
        std::os::unix::fs::symlink("target", dir.path().join("link")).unwrap();
        let target = FileStamp::of(&dir.path().join("target"), Symlinks::NoFollow).unwrap();
        let followed = FileStamp::of(&dir.path().join("link"), Symlinks::Follow).unwrap();
        let link = FileStamp::of(&dir.path().join("link"), Symlinks::NoFollow).unwrap();
        assert_eq!(followed, target);
        assert!(target.is_file() && target.size == 5);
        assert_ne!(link.ino, target.ino);
        assert!(!link.is_file(), "a symlink's own stamp is not a regular file's");

        let [t, l, missing] = FileStamp::all_in(dir.path(), ["target", "link", "missing"], Symlinks::Follow);
        assert_eq!((t, l, missing), (Some(target), Some(target), None));
        let [l] = FileStamp::all_in(dir.path(), ["link"], Symlinks::NoFollow);
        assert_eq!(l, Some(link));
        assert_eq!(FileStamp::all_in(&dir.path().join("target"), ["x"], Symlinks::Follow), [None]);

        let d = std::fs::File::open(dir.path()).unwrap();
        let err = FileStamp::at(d.as_fd(), Path::new("missing"), Symlinks::NoFollow).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn a_rewrite_changes_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let before = FileStamp::of(&path, Symlinks::Follow).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "two").unwrap();
        let after = FileStamp::of(&path, Symlinks::Follow).unwrap();
        assert_eq!((before.dev, before.ino, before.size), (after.dev, after.ino, after.size));
        assert_ne!(before, after, "a same-size rewrite shows in the times");
    }

    #[test]
    fn racy_within_the_window_only() {
        let second = 1_000_000_000;
        let stamp = FileStamp {
            dev: 1,
            ino: 2,
            mode: libc::S_IFREG,
            size: 0,
            mtime: 100 * second,
            ctime: 100 * second,
        };
        let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
        let window = Duration::from_secs(1);
        assert!(stamp.is_racy(at(100 * 1_000_000_000), window));
        assert!(stamp.is_racy(at(101 * 1_000_000_000), window));
        assert!(!stamp.is_racy(at(101 * 1_000_000_000 + 1), window));
        assert!(stamp.is_racy(at(101 * 1_000_000_000 + 1), Duration::from_secs(2)));
        assert!(stamp.is_racy(at(50 * 1_000_000_000), window), "a change in the future is racy");
        let future_mtime = FileStamp { mtime: 10_000 * second, ..stamp };
        assert!(future_mtime.is_racy(at(200 * 1_000_000_000), window), "the later time counts");
        assert!(stamp.is_racy(UNIX_EPOCH - Duration::from_secs(1), window));
    }
}
