//! The file-level mechanisms agenthub needs in more than one place: a lock file taken with
//! a deadline ([`LockedFile`]), file-identity stamps ([`FileStamp`]), atomic replacement
//! ([`write_atomic`], [`Dir::write_atomic`]) and bounded reads of regular files
//! ([`read_bounded`], [`Dir::read_bounded`]), none of them through a symlink where it
//! matters.
//!
//! Linux-only, like the rest of agenthub. No process I/O, no policy: callers map the errors
//! here into their own.

mod atomic;
mod lock;
mod stamp;

pub use atomic::{Dir, ReadError, WriteError, WriteStep, read_bounded, write_atomic};
pub use lock::{LockError, LockStep, LockedFile, Wait};
pub use stamp::{FileStamp, Symlinks};

/// `path` as a C string; `InvalidInput` when it holds a NUL byte.
fn c_path(path: &std::path::Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}
