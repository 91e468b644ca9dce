//! What agenthub owns inside an agent directory, and the only code that deletes or
//! replaces anything there.
//!
//! **agenthub deletes only what it created**, proven by something it wrote, never through
//! a symlink, never outside the agent directory:
//!
//! - `<agent>/<venv>.d/` is ours when it is a real directory holding [`BUILDS_MARKER`] (or,
//!   made by an agenthub from before that marker, when everything in it is named like a
//!   build). Builds inside it are ours when they are real directories named
//!   `<32 hex>-<pid>-<9 digits>`; only those are ever removed.
//! - `<agent>/<venv>` is ours when it is a symlink to `<venv>.d/<build>` (what
//!   [`swap_in`] writes), or a real directory holding the environment marker (made by the
//!   Phase-1 `create_environment`). Anything else there — an author's own `.venv`, a symlink
//!   elsewhere, a file — is left alone and reported as [`EnvError::NotOurs`].
//! - `<agent>/<venv>.lock` is opened without following symlinks.
//! - `<agent>/<venv>.d/.agenthub-last-failure` ([`LAST_FAILURE`]) says why the last build
//!   failed, until a build succeeds or the environment is removed.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agenthub_fs::{LockError, LockStep, LockedFile, Wait};

use crate::EnvError;
use crate::manager::MARKER_FILE;

/// The file that proves a builds directory was made by agenthub.
pub const BUILDS_MARKER: &str = ".agenthub-builds";

/// The file in a builds directory that says why the last build failed (JSON: `at`, seconds
/// since the Unix epoch, and `error`); removed by the next build that succeeds.
pub const LAST_FAILURE: &str = ".agenthub-last-failure";

/// Most bytes of the last failure's error kept.
const MAX_FAILURE_BYTES: usize = 4096;

/// The paths of one agent's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The agent directory.
    pub(crate) agent_dir: PathBuf,
    /// `<agent>/<venv_location>`: what agents run in.
    pub(crate) venv: PathBuf,
    /// `<agent>/<venv_location>.d`: complete and in-progress builds.
    pub(crate) builds: PathBuf,
    /// `<agent>/<venv_location>.lock`.
    pub(crate) lock: PathBuf,
    /// `venv_location`, one plain path component.
    name: String,
}

/// What is at the environment path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VenvState {
    /// Nothing.
    Missing,
    /// Our symlink to `<venv>.d/<build>`.
    Managed(PathBuf),
    /// A real directory with our marker (Phase-1 `create_environment`).
    Legacy,
    /// Something agenthub did not make: described for the message.
    Foreign(String),
}

impl Layout {
    /// The layout for `venv_location` in `agent_dir`; the name must be one plain component.
    pub(crate) fn new(agent_dir: &Path, venv_location: &str) -> Result<Self, EnvError> {
        let mut parts = Path::new(venv_location).components();
        let plain = matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None))
            && !venv_location.contains('/')
            && !venv_location.contains('\0');
        if !plain {
            return Err(EnvError::BadVenvLocation { value: venv_location.to_owned() });
        }
        Ok(Self {
            agent_dir: agent_dir.to_path_buf(),
            venv: agent_dir.join(venv_location),
            builds: agent_dir.join(format!("{venv_location}.d")),
            lock: agent_dir.join(format!("{venv_location}.lock")),
            name: venv_location.to_owned(),
        })
    }

    /// The marker's path relative to the agent directory (through our symlink).
    pub(crate) fn marker_name(&self) -> PathBuf {
        Path::new(&self.name).join(MARKER_FILE)
    }

    /// What is at the environment path.
    pub(crate) fn venv_state(&self) -> VenvState {
        let Ok(meta) = std::fs::symlink_metadata(&self.venv) else { return VenvState::Missing };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(&self.venv).unwrap_or_default();
            let mut parts = target.components();
            let builds_name = format!("{}.d", self.name);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Component::Normal(dir)), Some(Component::Normal(build)), None)
                    if dir == builds_name.as_str() && build.to_str().is_some_and(is_build_name) =>
                {
                    VenvState::Managed(self.builds.join(build))
                }
                _ => VenvState::Foreign(format!(
                    "a symlink to {} that agenthub did not make",
                    target.display()
                )),
            }
        } else if kind.is_dir() {
            let marker = std::fs::symlink_metadata(self.venv.join(MARKER_FILE));
            if marker.is_ok_and(|m| m.file_type().is_file()) {
                VenvState::Legacy
            } else {
                VenvState::Foreign(
                    "a directory agenthub did not make (it has no agenthub-env.json)".to_owned(),
                )
            }
        } else {
            VenvState::Foreign("a file, not an environment".to_owned())
        }
    }

    /// Fails unless the environment path is empty or ours.
    pub(crate) fn check_venv_is_ours(&self) -> Result<VenvState, EnvError> {
        match self.venv_state() {
            VenvState::Foreign(what) => Err(EnvError::NotOurs { path: self.venv.clone(), what }),
            state => Ok(state),
        }
    }

    /// Makes sure the builds directory exists and is ours; creates and marks it if missing.
    pub(crate) fn ensure_builds_dir(&self) -> Result<(), EnvError> {
        let io = |action, source| EnvError::Io { action, path: self.builds.clone(), source };
        match std::fs::symlink_metadata(&self.builds) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&self.builds).map_err(|e| io("create", e))?;
                mark(&self.builds).map_err(|e| io("mark", e))
            }
            Err(e) => Err(io("inspect", e)),
            Ok(meta) if meta.file_type().is_symlink() => Err(EnvError::NotOurs {
                path: self.builds.clone(),
                what: "a symlink; agenthub never builds or deletes through one".to_owned(),
            }),
            Ok(meta) if !meta.is_dir() => {
                Err(EnvError::NotOurs { path: self.builds.clone(), what: "not a directory".to_owned() })
            }
            Ok(_) if is_marked(&self.builds) => Ok(()),
            Ok(_) if holds_only_builds(&self.builds) => {
                // Made by an agenthub from before the marker: adopt it.
                mark(&self.builds).map_err(|e| io("mark", e))
            }
            Ok(_) => Err(EnvError::NotOurs {
                path: self.builds.clone(),
                what: format!("a directory agenthub did not make (it has no {BUILDS_MARKER})"),
            }),
        }
    }

    /// A fresh, unique build directory inside the (checked) builds directory.
    pub(crate) fn new_build_dir(&self, key: &str) -> PathBuf {
        self.builds.join(format!("{key}-{}", unique_suffix()))
    }

    /// Removes a build this process just created (a failed build).
    pub(crate) fn remove_build(&self, build: &Path) {
        if self.owns_build(build) {
            let _ = std::fs::remove_dir_all(build);
        }
    }

    /// Whether `build` is a real directory named like a build directly in our builds dir.
    fn owns_build(&self, build: &Path) -> bool {
        build.parent() == Some(self.builds.as_path())
            && build.file_name().and_then(|n| n.to_str()).is_some_and(is_build_name)
            && is_marked(&self.builds)
            && std::fs::symlink_metadata(build).is_ok_and(|m| m.is_dir())
    }

    /// Points the environment path at `build` atomically (a new symlink renamed over the
    /// old one); a Phase-1 directory of ours is removed first. Returns the build the old
    /// symlink pointed to.
    pub(crate) fn swap_in(&self, build: &Path) -> Result<Option<PathBuf>, EnvError> {
        let io = |action, path: &Path, source| EnvError::Io { action, path: path.to_path_buf(), source };
        let previous = match self.check_venv_is_ours()? {
            VenvState::Managed(previous) => Some(previous),
            VenvState::Legacy => {
                std::fs::remove_dir_all(&self.venv)
                    .map_err(|e| io("remove the old environment", &self.venv, e))?;
                None
            }
            VenvState::Missing | VenvState::Foreign(_) => None,
        };
        let name = build.file_name().unwrap_or_default();
        let target = Path::new(&format!("{}.d", self.name)).join(name);
        let tmp = self.agent_dir.join(format!(".{}.{}.swap", self.name, unique_suffix()));
        std::os::unix::fs::symlink(&target, &tmp).map_err(|e| io("create symlink", &tmp, e))?;
        std::fs::rename(&tmp, &self.venv).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io("swap in the new environment", &self.venv, e)
        })?;
        Ok(previous)
    }

    /// Removes builds other than `keep`: failed or killed ones, and ones superseded before
    /// the last swap (the one just superseded is kept for calls still running in it).
    /// Only real directories named like builds, in a builds directory that is ours.
    pub(crate) fn collect_garbage(&self, keep: &[&Path]) {
        if !is_marked(&self.builds) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.builds) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if !keep.contains(&path.as_path()) && self.owns_build(&path) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }

    /// Records why a build failed, in our builds directory (best effort: the build's error
    /// is what the caller gets either way).
    pub(crate) fn record_failure(&self, error: &str) {
        if !is_marked(&self.builds) {
            return;
        }
        let mut error = error.to_owned();
        if error.len() > MAX_FAILURE_BYTES {
            let mut end = MAX_FAILURE_BYTES;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
            error.push('…');
        }
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let record = serde_json::json!({ "at": at, "error": error });
        let _ = agenthub_fs::write_atomic(&self.builds.join(LAST_FAILURE), record.to_string().as_bytes());
    }

    /// Forgets the last failure (a build succeeded).
    pub(crate) fn clear_failure(&self) {
        if is_marked(&self.builds) {
            let _ = std::fs::remove_file(self.builds.join(LAST_FAILURE));
        }
    }

    /// Why the last build failed, when it did and no build succeeded since.
    pub(crate) fn last_failure(&self) -> Option<String> {
        let name = Path::new(&format!("{}.d", self.name)).join(LAST_FAILURE);
        let text = agenthub_core::read_agent_file(&self.agent_dir, &name, 2 * MAX_FAILURE_BYTES as u64 + 256)
            .ok()??;
        let record: serde_json::Value = serde_json::from_str(&text).ok()?;
        record.get("error")?.as_str().map(str::to_owned)
    }

    /// Takes the cross-process build lock, waiting until `deadline` at most. The lock file
    /// is opened without following a symlink and must be a regular file.
    pub(crate) fn lock(&self, deadline: Option<Instant>, limit: Duration) -> Result<LockedFile, EnvError> {
        LockedFile::acquire(&self.lock, deadline, Wait::default().polling(Duration::from_millis(20))).map_err(
            |e| match e {
                LockError::Symlink { path, .. } => EnvError::NotOurs {
                    path,
                    what: "a symlink; agenthub never writes through one".to_owned(),
                },
                other => lock_error(other, limit),
            },
        )
    }
}

/// A lock file's error as the environment's: waiting longer than `limit` is
/// [`EnvError::LockTimeout`], what is there and no regular file is not ours.
pub(crate) fn lock_error(err: LockError, limit: Duration) -> EnvError {
    match err {
        LockError::Timeout { path, .. } => EnvError::LockTimeout { path, limit },
        LockError::NotRegular { path } => EnvError::NotOurs { path, what: "not a regular file".to_owned() },
        LockError::Cancelled { .. } => EnvError::Cancelled,
        LockError::Symlink { path, source } => EnvError::Io { action: "create lock file", path, source },
        LockError::Io { step, path, source } => {
            let action = match step {
                LockStep::Open => "create lock file",
                LockStep::Inspect => "inspect",
                LockStep::Lock => "lock",
            };
            EnvError::Io { action, path, source }
        }
    }
}

/// What removing environments freed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Freed {
    /// The paths removed (builds, the environment symlink or directory, leftovers).
    pub removed: Vec<PathBuf>,
    /// Bytes of regular files removed that no other link kept alive (hard links into an
    /// installer's cache free nothing and are not counted).
    pub bytes: u64,
}

impl Freed {
    /// Adds another agent's figures.
    pub fn merge(&mut self, other: Freed) {
        self.removed.extend(other.removed);
        self.bytes += other.bytes;
    }
}

impl Layout {
    /// The build `<venv>` points at, when it is ours.
    pub(crate) fn current_build(&self) -> Option<PathBuf> {
        match self.venv_state() {
            VenvState::Managed(build) => Some(build),
            _ => None,
        }
    }

    /// Takes the build lock if no one holds it; `None` when a build is in progress.
    fn try_lock(&self) -> Result<Option<LockedFile>, EnvError> {
        match self.lock(Some(Instant::now()), Duration::ZERO) {
            Ok(file) => Ok(Some(file)),
            Err(EnvError::LockTimeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Builds of ours that `<venv>` does not point at (in a marked builds directory).
    fn superseded_builds(&self) -> Vec<PathBuf> {
        let current = self.current_build();
        if !is_marked(&self.builds) {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(&self.builds) else { return Vec::new() };
        entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| Some(path) != current.as_ref() && self.owns_build(path))
            .collect()
    }

    /// What [`Self::collect_unused`] would remove now, without removing it.
    pub(crate) fn unused_builds(&self) -> Freed {
        let mut found = Freed::default();
        for path in self.superseded_builds() {
            found.bytes += unshared_bytes(&path, 0);
            found.removed.push(path);
        }
        found.removed.extend(self.swap_leftovers());
        found
    }

    /// Removes builds and swap leftovers that `<venv>` does not point at: superseded,
    /// failed and killed builds. Skipped (`Ok(None)`) while another process holds the
    /// build lock. Only what [`Self::owns_build`] proves ours, never through a symlink.
    pub(crate) fn collect_unused(&self) -> Result<Option<Freed>, EnvError> {
        if std::fs::symlink_metadata(&self.builds).is_err() && self.swap_leftovers().is_empty() {
            return Ok(Some(Freed::default())); // nothing was ever built here
        }
        let Some(lock) = self.try_lock()? else { return Ok(None) };
        let mut freed = Freed::default();
        for path in self.superseded_builds() {
            remove_tree(&path, &mut freed);
        }
        for leftover in self.swap_leftovers() {
            if std::fs::remove_file(&leftover).is_ok() {
                freed.removed.push(leftover);
            }
        }
        drop(lock);
        Ok(Some(freed))
    }

    /// Removes the agent's environment: `<venv>` when it is ours (our symlink, or a Phase-1
    /// directory with our marker), every build in `<venv>.d`, its marker and the directory
    /// itself when nothing else is left in it. Waits for a build in progress (up to
    /// `deadline`). The lock file stays: removing a lock another process may have open
    /// would let two builds run at once. Something in the way that is not ours is
    /// [`EnvError::NotOurs`], and nothing is removed.
    pub(crate) fn remove_environment(
        &self,
        deadline: Option<Instant>,
        limit: Duration,
    ) -> Result<Freed, EnvError> {
        let state = self.check_venv_is_ours()?;
        if let Ok(meta) = std::fs::symlink_metadata(&self.builds)
            && (meta.file_type().is_symlink() || !meta.is_dir())
        {
            let what = if meta.file_type().is_symlink() { "a symlink" } else { "not a directory" };
            return Err(EnvError::NotOurs { path: self.builds.clone(), what: what.to_owned() });
        }
        let builds_exist = std::fs::symlink_metadata(&self.builds).is_ok();
        if builds_exist && !is_marked(&self.builds) && !holds_only_builds(&self.builds) {
            return Err(EnvError::NotOurs {
                path: self.builds.clone(),
                what: format!("a directory agenthub did not make (it has no {BUILDS_MARKER})"),
            });
        }
        if state == VenvState::Missing && !builds_exist {
            return Ok(Freed::default());
        }
        let lock = self.lock(deadline, limit)?;
        let mut freed = Freed::default();
        let io = |action, path: &Path, source| EnvError::Io { action, path: path.to_path_buf(), source };
        match self.check_venv_is_ours()? {
            VenvState::Managed(_) => {
                std::fs::remove_file(&self.venv).map_err(|e| io("remove", &self.venv, e))?;
                freed.removed.push(self.venv.clone());
            }
            VenvState::Legacy => remove_tree(&self.venv, &mut freed),
            VenvState::Missing | VenvState::Foreign(_) => {}
        }
        if builds_exist {
            if !is_marked(&self.builds) {
                mark(&self.builds).map_err(|e| io("mark", &self.builds, e))?;
            }
            if let Ok(entries) = std::fs::read_dir(&self.builds) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if self.owns_build(&path) {
                        remove_tree(&path, &mut freed);
                    }
                }
            }
            let _ = std::fs::remove_file(self.builds.join(LAST_FAILURE));
            let _ = std::fs::remove_file(self.builds.join(BUILDS_MARKER));
            if std::fs::remove_dir(&self.builds).is_ok() {
                freed.removed.push(self.builds.clone());
            } else {
                // Something that is not ours was left in it: keep proving the rest is ours.
                let _ = mark(&self.builds);
            }
        }
        for leftover in self.swap_leftovers() {
            if std::fs::remove_file(&leftover).is_ok() {
                freed.removed.push(leftover);
            }
        }
        drop(lock);
        Ok(freed)
    }

    /// Temporary symlinks [`Self::swap_in`] makes (`.<venv>.<pid>-<nanos>.swap`) that a
    /// killed swap left behind.
    fn swap_leftovers(&self) -> Vec<PathBuf> {
        let prefix = format!(".{}.", self.name);
        let Ok(entries) = std::fs::read_dir(&self.agent_dir) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| {
                e.file_name().to_str().is_some_and(|n| {
                    n.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".swap")).is_some_and(|suffix| {
                        let mut parts = suffix.split('-');
                        matches!((parts.next(), parts.next(), parts.next()),
                            (Some(pid), Some(nanos), None)
                                if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
                                    && nanos.len() == 9 && nanos.bytes().all(|b| b.is_ascii_digit()))
                    })
                }) && e.file_type().is_ok_and(|t| t.is_symlink())
            })
            .map(|e| e.path())
            .collect()
    }
}

/// Removes a directory tree we proved ours, counting what it frees; never follows a symlink
/// (`remove_dir_all` does not either).
fn remove_tree(path: &Path, freed: &mut Freed) {
    let bytes = unshared_bytes(path, 0);
    if std::fs::remove_dir_all(path).is_ok() {
        freed.bytes += bytes;
        freed.removed.push(path.to_path_buf());
    }
}

/// Bytes of the regular files under `dir` with one link (depth-bounded, no symlinks
/// followed).
pub(crate) fn unshared_bytes(dir: &Path, depth: usize) -> u64 {
    use std::os::unix::fs::MetadataExt;
    if depth > 64 {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => unshared_bytes(&e.path(), depth + 1),
            Ok(m) if m.is_file() && m.nlink() == 1 => m.len(),
            _ => 0,
        })
        .sum()
}

/// `<32 hex>-<pid>-<9 digits>`: the names [`Layout::new_build_dir`] gives.
fn is_build_name(name: &str) -> bool {
    let mut parts = name.split('-');
    let (Some(key), Some(pid), Some(nanos), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    key.len() == 32
        && key.bytes().all(|b| b.is_ascii_hexdigit())
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && nanos.len() == 9
        && nanos.bytes().all(|b| b.is_ascii_digit())
}

fn is_marked(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        && std::fs::symlink_metadata(dir.join(BUILDS_MARKER)).is_ok_and(|m| m.file_type().is_file())
}

fn mark(dir: &Path) -> std::io::Result<()> {
    let marker = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(BUILDS_MARKER))?;
    drop(marker);
    Ok(())
}

/// Whether every entry of `dir` is a real directory named like a build.
fn holds_only_builds(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries
        .flatten()
        .all(|e| e.file_name().to_str().is_some_and(is_build_name) && e.file_type().is_ok_and(|t| t.is_dir()))
}

pub(crate) fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:09}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_names_are_recognised_exactly() {
        let key = "0123456789abcdef0123456789abcdef";
        assert!(is_build_name(&format!("{key}-42-000000001")));
        for bad in [
            "projects".to_owned(),
            format!("{key}-42"),
            format!("{key}-42-1"),
            format!("{key}-x-000000001"),
            format!("{key}x-42-000000001"),
            format!("{key}-42-000000001-extra"),
        ] {
            assert!(!is_build_name(&bad), "{bad}");
        }
    }

    #[test]
    fn venv_location_must_be_one_plain_component() {
        let dir = Path::new("/agents/a");
        for bad in ["", ".", "..", "/abs", "a/b", "../x", "x\0y"] {
            assert!(matches!(Layout::new(dir, bad), Err(EnvError::BadVenvLocation { .. })), "{bad:?}");
        }
        let ok = Layout::new(dir, ".venv").unwrap();
        assert_eq!(ok.builds, Path::new("/agents/a/.venv.d"));
    }
}
