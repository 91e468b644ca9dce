//! Reading files of an agent directory, which is untrusted input: regular files only
//! (a FIFO or a device never blocks or floods a read), bounded in size, and never through a
//! symlink that leaves the agent directory.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a file of an agent directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AgentFileError {
    /// Not a regular file: a FIFO, socket, device or directory.
    #[error("{} is {kind}, not a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead, with an article: `a FIFO`.
        kind: &'static str,
    },
    /// Larger than the limit for this kind of file.
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// A symlink (or a path through one) that resolves outside the agent directory.
    #[error("{} resolves to {}, outside the agent directory", path.display(), target.display())]
    Escapes {
        /// The file as named.
        path: PathBuf,
        /// Where it really is.
        target: PathBuf,
    },
    /// The name is not a relative path of normal components.
    #[error("`{}` is not a plain relative path inside the agent directory", name.display())]
    BadName {
        /// The name as given.
        name: PathBuf,
    },
    /// The operating system refused.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl AgentFileError {
    /// What the user can do about it; names the real cause (no advice about permissions
    /// or disk space unless that is what failed).
    pub fn suggestion(&self) -> String {
        match self {
            Self::NotRegular { path, .. } => {
                format!("Replace {} with a regular file", path.display())
            }
            Self::TooLarge { path, limit } => {
                format!("Keep {} under {limit} bytes", path.display())
            }
            Self::Escapes { path, .. } => format!(
                "Replace the symlink {} with the file itself: agent files must live inside the agent directory",
                path.display()
            ),
            Self::BadName { .. } => "Name files relative to the agent directory, without `..`".to_owned(),
            Self::Io { source, path } => crate::error::io_error_suggestion(source, path),
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::NotRegular { path, .. }
            | Self::TooLarge { path, .. }
            | Self::Escapes { path, .. }
            | Self::Io { path, .. } => path,
            Self::BadName { name } => name,
        }
    }
}

/// Opens `name` (a relative path) inside `agent_dir` for reading, without blocking and
/// without leaving the directory: `Ok(None)` when it does not exist.
///
/// The check is made on the opened file (its `/proc/self/fd` path and `fstat`), so a file
/// swapped between a check and the open cannot slip through.
pub fn open_agent_file(agent_dir: &Path, name: &Path) -> Result<Option<(File, PathBuf)>, AgentFileError> {
    if name.as_os_str().is_empty() || !name.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(AgentFileError::BadName { name: name.to_path_buf() });
    }
    let path = agent_dir.join(name);
    let Some(file) = open_regular(&path)? else { return Ok(None) };
    let io = |source| AgentFileError::Io { path: path.clone(), source };
    let real = opened_path(&file).map_err(io)?;
    // `real` is canonical, and so is every prefix of it: when `agent_dir` is one (the usual
    // case: ids resolve to canonical directories) no `realpath` is needed.
    if real.starts_with(agent_dir) {
        return Ok(Some((file, path)));
    }
    let root =
        agent_dir.canonicalize().map_err(|source| AgentFileError::Io { path: agent_dir.into(), source })?;
    if !real.starts_with(&root) {
        return Err(AgentFileError::Escapes { path, target: real });
    }
    Ok(Some((file, path)))
}

/// Reads `name` inside `agent_dir` as text, refusing more than `max_bytes`; `Ok(None)` when
/// it does not exist. See [`open_agent_file`] for what is refused.
pub fn read_agent_file(
    agent_dir: &Path,
    name: &Path,
    max_bytes: u64,
) -> Result<Option<String>, AgentFileError> {
    let Some((file, path)) = open_agent_file(agent_dir, name)? else { return Ok(None) };
    read_bounded(file, path, max_bytes).map(Some)
}

/// Opens `path` for reading without blocking (`O_NONBLOCK`: a FIFO never waits for a
/// writer) and refuses anything but a regular file; `Ok(None)` when it does not exist.
/// Symlinks are followed: callers check where the file really is when that matters.
pub(crate) fn open_regular(path: &Path) -> Result<Option<File>, AgentFileError> {
    let io = |source| AgentFileError::Io { path: path.to_path_buf(), source };
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let kind = file.metadata().map_err(io)?.file_type();
    let not_regular = |kind| Err(AgentFileError::NotRegular { path: path.to_path_buf(), kind });
    if kind.is_dir() {
        not_regular("a directory")
    } else if kind.is_fifo() {
        not_regular("a FIFO")
    } else if kind.is_socket() {
        not_regular("a socket")
    } else if kind.is_char_device() || kind.is_block_device() {
        not_regular("a device")
    } else if !kind.is_file() {
        not_regular("not a file")
    } else {
        Ok(Some(file))
    }
}

/// Reads an open file as UTF-8 text, refusing more than `max_bytes`.
pub(crate) fn read_bounded(file: File, path: PathBuf, max_bytes: u64) -> Result<String, AgentFileError> {
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| AgentFileError::Io { path: path.clone(), source })?;
    if bytes.len() as u64 > max_bytes {
        return Err(AgentFileError::TooLarge { path, limit: max_bytes });
    }
    String::from_utf8(bytes).map_err(|_| AgentFileError::Io {
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

/// The real path of an open file.
fn opened_path(file: &File) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn read(dir: &Path, name: &str) -> Result<Option<String>, AgentFileError> {
        read_agent_file(dir, Path::new(name), 16)
    }

    #[test]
    fn regular_files_inside_are_read_and_missing_ones_are_none() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.txt"), "hello").unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        symlink("../a.txt", tmp.path().join("sub/link")).unwrap();
        assert_eq!(read(tmp.path(), "a.txt").unwrap().as_deref(), Some("hello"));
        assert_eq!(read(tmp.path(), "sub/link").unwrap().as_deref(), Some("hello"));
        assert!(read(tmp.path(), "missing").unwrap().is_none());
        assert!(read(tmp.path(), "a.txt/below").unwrap().is_none());
    }

    #[test]
    fn fifos_devices_directories_big_files_and_escapes_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::fs::write(tmp.path().join("big"), "x".repeat(17)).unwrap();
        std::fs::create_dir(tmp.path().join("dir")).unwrap();
        symlink("/dev/zero", tmp.path().join("zero")).unwrap();
        symlink(outside.path().join("secret"), tmp.path().join("escape")).unwrap();
        let fifo =
            std::ffi::CString::new(tmp.path().join("fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        assert!(matches!(read(tmp.path(), "fifo"), Err(AgentFileError::NotRegular { kind: "a FIFO", .. })));
        assert!(matches!(read(tmp.path(), "zero"), Err(AgentFileError::NotRegular { kind: "a device", .. })));
        assert!(matches!(
            read(tmp.path(), "dir"),
            Err(AgentFileError::NotRegular { kind: "a directory", .. })
        ));
        assert!(matches!(read(tmp.path(), "big"), Err(AgentFileError::TooLarge { limit: 16, .. })));
        assert!(matches!(read(tmp.path(), "escape"), Err(AgentFileError::Escapes { .. })));
        for bad in ["../x", "/etc/passwd", "", "a/../b"] {
            assert!(matches!(read(tmp.path(), bad), Err(AgentFileError::BadName { .. })), "{bad}");
        }
        let err = read(tmp.path(), "escape").unwrap_err();
        assert!(err.suggestion().contains("symlink"), "{}", err.suggestion());
        assert!(!read(tmp.path(), "fifo").unwrap_err().suggestion().contains("permission"));
    }
}
