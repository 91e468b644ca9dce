//! uv when it is missing: found on `PATH`, else in `<home>/tools/uv`, else (when allowed)
//! installed there once with `python3 -m pip install --target`.
//!
//! Installs are atomic and serialised: under `<home>/tools/uv.lock` (flock, opened without
//! following symlinks), pip installs into a fresh `<home>/tools/.uv.staging-<pid>-<nanos>`,
//! the new `uv` must answer `--version`, a marker is written, and only then is the staging
//! directory renamed to `<home>/tools/uv` (one `rename(2)`). A `uv` under `<home>/tools/uv`
//! is used only when that marker is there, so a half-installed uv is never run. The uv
//! binary is static and relocatable, so the rename is safe (unlike a virtual environment).

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agenthub_fs::{LockedFile, Wait};
use serde::{Deserialize, Serialize};

use crate::EnvError;
use crate::backends::find_python;
use crate::tools::{BuildContext, Tool};

/// The marker of a complete provisioned tool, written last.
pub const TOOL_MARKER: &str = "agenthub-tool.json";

/// Prefix of the staging directories of uv installs in `<home>/tools`.
pub const UV_STAGING_PREFIX: &str = ".uv.staging-";

/// Whether and where uv may be installed when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UvProvision {
    /// `<home>/tools`.
    pub tools_dir: PathBuf,
    /// `install.provision_uv`: install uv when it is needed and missing.
    pub enabled: bool,
    /// Limit of one install, lock wait included (`runtime.build_timeout`).
    pub limit: Duration,
    /// Limit of one interpreter probe (`runtime.subprocess_timeout`).
    pub probe_timeout: Duration,
}

impl UvProvision {
    /// Provisioning as the configuration says: into `<home>/tools`, per
    /// `install.provision_uv`, within the build limits.
    pub fn from_config(config: &agenthub_core::Config) -> Self {
        let rt = &config.runtime;
        Self::new(&config.home, config.install.provision_uv).with_limits(
            rt.build_timeout.as_duration(),
            Duration::try_from_secs_f64(rt.subprocess_timeout.as_secs_f64())
                .unwrap_or(crate::DEFAULT_PROBE_TIMEOUT),
        )
    }

    /// Provisioning into `<home>/tools`, when `enabled`, with the default limits.
    pub fn new(home: &Path, enabled: bool) -> Self {
        Self {
            tools_dir: home.join("tools"),
            enabled,
            limit: crate::DEFAULT_BUILD_TIMEOUT,
            probe_timeout: crate::DEFAULT_PROBE_TIMEOUT,
        }
    }

    /// With these limits for an install and an interpreter probe.
    #[must_use]
    pub fn with_limits(mut self, limit: Duration, probe_timeout: Duration) -> Self {
        self.limit = limit;
        self.probe_timeout = probe_timeout;
        self
    }

    /// `<home>/tools/uv`.
    pub fn dir(&self) -> PathBuf {
        self.tools_dir.join("uv")
    }

    /// `<home>/tools/uv/bin/uv`.
    pub fn executable(&self) -> PathBuf {
        self.dir().join("bin").join("uv")
    }
}

/// Where the uv in use comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UvOrigin {
    /// Found on `PATH`.
    Path,
    /// Installed by agenthub into `<home>/tools/uv`.
    Provisioned,
}

/// A uv executable and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundUv {
    /// The executable.
    pub path: PathBuf,
    /// Where it comes from.
    pub origin: UvOrigin,
}

/// What the marker of a provisioned tool holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ToolMarker {
    tool: String,
    version: String,
    installed_by: String,
}

/// The uv on `PATH`, else a complete provisioned one in `<home>/tools/uv`.
pub fn find_uv(provision: Option<&UvProvision>) -> Option<FoundUv> {
    if let Ok(path) = which::which("uv") {
        return Some(FoundUv { path, origin: UvOrigin::Path });
    }
    provision.and_then(provisioned_uv)
}

/// The provisioned uv, when its install is complete (marker present, regular executable,
/// not reached through a symlink at `tools/uv`).
pub fn provisioned_uv(provision: &UvProvision) -> Option<FoundUv> {
    let dir = provision.dir();
    let is_real_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
    let marked = std::fs::symlink_metadata(dir.join(TOOL_MARKER)).is_ok_and(|m| m.is_file());
    let exe = provision.executable();
    let runnable = std::fs::symlink_metadata(&exe).is_ok_and(|m| m.is_file());
    (is_real_dir && marked && runnable).then_some(FoundUv { path: exe, origin: UvOrigin::Provisioned })
}

/// The uv to use: [`find_uv`], else — when provisioning is enabled — uv installed once into
/// `<home>/tools/uv` (see the module docs), waiting at most `limit` for the install lock
/// and the install. Without provisioning: [`EnvError::ToolNotFound`] for `tool`.
pub fn ensure_uv(provision: Option<&UvProvision>, tool: &'static str) -> Result<FoundUv, EnvError> {
    if let Some(found) = find_uv(provision) {
        return Ok(found);
    }
    let Some(provision) = provision.filter(|p| p.enabled) else {
        return Err(EnvError::ToolNotFound { tool });
    };
    install_uv(provision)
}

fn install_uv(provision: &UvProvision) -> Result<FoundUv, EnvError> {
    let (limit, probe_timeout) = (provision.limit, provision.probe_timeout);
    let tools = &provision.tools_dir;
    let io = |action, path: &Path, source| EnvError::Io { action, path: path.to_path_buf(), source };
    std::fs::create_dir_all(tools).map_err(|e| io("create", tools, e))?;
    let ctx = BuildContext::new(tools, limit, true);
    let lock = lock_tools(&tools.join("uv.lock"), ctx.deadline, limit)?;
    // Another process may have installed it while we waited.
    if let Some(found) = provisioned_uv(provision) {
        return Ok(found);
    }
    let dir = provision.dir();
    if std::fs::symlink_metadata(&dir).is_ok() {
        return Err(EnvError::NotOurs {
            path: dir,
            what: format!("not a complete uv installed by agenthub (it has no {TOOL_MARKER})"),
        });
    }
    tracing::info!(
        target = %dir.display(),
        "uv is needed and not on PATH: installing it once with `python3 -m pip install --target` \
         (set install.provision_uv: false to turn this off)"
    );
    let python = find_python(None, None, probe_timeout)?;
    let staging = tools.join(format!("{UV_STAGING_PREFIX}{}", crate::layout::unique_suffix()));
    let result = (|| {
        let args = [
            OsStr::new("-m"),
            OsStr::new("pip"),
            OsStr::new("install"),
            OsStr::new("--quiet"),
            OsStr::new("--disable-pip-version-check"),
            OsStr::new("--no-input"),
            OsStr::new("--target"),
            staging.as_os_str(),
            OsStr::new("uv"),
        ];
        Tool::new(&python.path, args).env("PIP_NO_INPUT", "1").run(&ctx).map_err(|e| match e {
            EnvError::CommandFailed { stderr, .. } if stderr.contains("No module named pip") => {
                EnvError::ToolNotFound { tool: "uv (and pip to install it)" }
            }
            other => other,
        })?;
        let exe = staging.join("bin").join("uv");
        let version = Tool::new(&exe, ["--version"]).run(&ctx)?;
        let marker = ToolMarker {
            tool: "uv".to_owned(),
            version: version.trim().to_owned(),
            installed_by: format!("agenthub {}", env!("CARGO_PKG_VERSION")),
        };
        let json = serde_json::to_vec_pretty(&marker).unwrap_or_default();
        let marker_path = staging.join(TOOL_MARKER);
        let mut file = File::create_new(&marker_path).map_err(|e| io("create", &marker_path, e))?;
        std::io::Write::write_all(&mut file, &json)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("write", &marker_path, e))?;
        std::fs::rename(&staging, &dir).map_err(|e| io("move into place", &dir, e))
    })();
    if let Err(err) = result {
        remove_staging(tools, &staging);
        return Err(err);
    }
    drop(lock);
    provisioned_uv(provision).ok_or(EnvError::ToolNotFound { tool: "uv" })
}

/// Staging directories of uv installs that did not finish (a killed install), for `doctor`
/// and `env gc`.
pub fn uv_staging_leftovers(provision: &UvProvision) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(&provision.tools_dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| n.starts_with(UV_STAGING_PREFIX))
                && e.file_type().is_ok_and(|t| t.is_dir())
        })
        .map(|e| e.path())
        .collect()
}

/// Removes the staging directories of uv installs that are not running now (the install
/// lock is free); returns what was removed and its bytes.
pub fn remove_uv_staging_leftovers(provision: &UvProvision) -> Result<crate::Freed, EnvError> {
    let mut freed = crate::Freed::default();
    let leftovers = uv_staging_leftovers(provision);
    if leftovers.is_empty() {
        return Ok(freed);
    }
    let lock_path = provision.tools_dir.join("uv.lock");
    let Ok(Some(lock)) = LockedFile::try_acquire(&lock_path) else {
        return Ok(freed); // an install is running: its staging directory is in use
    };
    for path in leftovers {
        let bytes = crate::layout::unshared_bytes(&path, 0);
        if std::fs::remove_dir_all(&path).is_ok() {
            freed.bytes += bytes;
            freed.removed.push(path);
        }
    }
    drop(lock);
    Ok(freed)
}

/// Removes a staging directory we created (a real directory with our prefix in `tools`).
fn remove_staging(tools: &Path, staging: &Path) {
    let ours = staging.parent() == Some(tools)
        && staging.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(UV_STAGING_PREFIX))
        && std::fs::symlink_metadata(staging).is_ok_and(|m| m.is_dir());
    if ours {
        let _ = std::fs::remove_dir_all(staging);
    }
}

/// Takes the tools lock (`O_NOFOLLOW`, regular file), polling until `deadline`.
fn lock_tools(path: &Path, deadline: Option<Instant>, limit: Duration) -> Result<LockedFile, EnvError> {
    LockedFile::acquire(path, deadline, Wait::default()).map_err(|e| crate::layout::lock_error(e, limit))
}
