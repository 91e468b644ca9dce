//! [`EnvironmentManager`]: the Phase-1 interface, and `ensure_environment`, which builds an
//! agent's environment once per requirement set, under a cross-process lock.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use agenthub_core::{AgentManifest, EnvironmentConfig};
use serde::{Deserialize, Serialize};

use crate::backends::find_python;
use crate::requirements::{RequirementSet, RequirementSource};
use crate::{DynEnvironmentBackend, EnvError};

/// File name of the completion marker inside the environment, written last.
pub const MARKER_FILE: &str = "agenthub-env.json";

/// The completion marker: present only in an environment that was built to the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvMarker {
    /// The environment key the environment was built for.
    pub key: String,
    /// The backend that built it.
    pub backend: String,
    /// The base interpreter.
    pub python: PathBuf,
    /// Its version.
    pub python_version: String,
    /// Where the requirements came from.
    pub requirements_source: String,
    /// The requirements installed (empty for a lock).
    pub requirements: Vec<String>,
    /// Seconds since the Unix epoch when the build finished.
    pub built_at: u64,
}

/// An environment ready to run an agent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyEnvironment {
    /// The environment directory.
    pub venv: PathBuf,
    /// Its Python.
    pub python: PathBuf,
    /// The key it was built for.
    pub key: String,
    /// Whether this call built it.
    pub built: bool,
}

/// The variables a shell `activate` would set for an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// Variables to set: `VIRTUAL_ENV`, and `PATH` with `<venv>/bin` first.
    pub set: Vec<(String, OsString)>,
    /// Variables to remove: `PYTHONHOME`.
    pub remove: Vec<String>,
}

/// Creates, keys, locks and reuses agent environments through one backend.
pub struct EnvironmentManager {
    backend: DynEnvironmentBackend,
    config: EnvironmentConfig,
}

impl std::fmt::Debug for EnvironmentManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentManager")
            .field("backend", &self.backend.kind())
            .field("config", &self.config)
            .finish()
    }
}

impl EnvironmentManager {
    /// A manager over `backend`.
    pub fn new(backend: DynEnvironmentBackend, config: EnvironmentConfig) -> Self {
        Self { backend, config }
    }

    /// The backend's kind.
    pub fn backend_kind(&self) -> agenthub_core::EnvBackendKind {
        self.backend.kind()
    }

    /// The environment directory of the agent in `agent_path`.
    pub fn venv_path(&self, agent_path: &Path) -> PathBuf {
        agent_path.join(&self.config.venv_location)
    }

    /// Creates the agent's environment if there is none; returns its path.
    pub async fn create_environment(&self, agent_path: &Path) -> Result<PathBuf, EnvError> {
        let venv = self.venv_path(agent_path);
        if !self.get_python_executable(&venv).exists() {
            let python = find_python(self.config.python_version.as_deref(), None)?;
            self.backend.create_venv(&venv, &python.path).await?;
        }
        Ok(venv)
    }

    /// Installs requirements (PEP 508 strings or installer options) into an environment.
    pub async fn install_dependencies(&self, venv: &Path, requirements: &[String]) -> Result<(), EnvError> {
        if requirements.is_empty() {
            return Ok(());
        }
        self.backend.install(venv, requirements).await
    }

    /// The Python executable of an environment.
    pub fn get_python_executable(&self, venv: &Path) -> PathBuf {
        self.backend.python_executable(venv)
    }

    /// The variables a shell `activate` would set (SPEC §3).
    pub fn activate_environment(venv: &Path) -> Activation {
        let bin = venv.join("bin");
        let mut path = OsString::from(bin.as_os_str());
        if let Some(old) = std::env::var_os("PATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(old);
        }
        Activation {
            set: vec![("VIRTUAL_ENV".to_owned(), venv.as_os_str().to_owned()), ("PATH".to_owned(), path)],
            remove: vec!["PYTHONHOME".to_owned()],
        }
    }

    /// Makes sure the agent's environment matches its requirements and returns it.
    ///
    /// Fast path: the marker holds the current key (no lock, no process). Otherwise the
    /// cross-process lock is taken, the marker checked again (another process may have
    /// built it meanwhile), and the environment rebuilt with the marker written last.
    pub async fn ensure_environment(
        &self,
        agent_path: &Path,
        manifest: &AgentManifest,
    ) -> Result<ReadyEnvironment, EnvError> {
        self.ensure(agent_path, manifest, false).await
    }

    /// Builds the agent's environment afresh even if it is up to date, then swaps it in.
    /// The current environment stays in use if the build fails.
    pub async fn rebuild_environment(
        &self,
        agent_path: &Path,
        manifest: &AgentManifest,
    ) -> Result<ReadyEnvironment, EnvError> {
        self.ensure(agent_path, manifest, true).await
    }

    async fn ensure(
        &self,
        agent_path: &Path,
        manifest: &AgentManifest,
        force: bool,
    ) -> Result<ReadyEnvironment, EnvError> {
        let requirements = RequirementSet::for_agent(agent_path, &manifest.dependencies)?;
        let constraint = manifest.python_version.as_ref().map(agenthub_core::PythonConstraint::to_pep440);
        let wanted = [self.config.python_version.as_deref(), constraint.as_deref()];
        let mut salt = wanted.iter().flatten().copied().collect::<Vec<_>>().join(";");
        if self.config.run_installation_commands {
            // Changed commands rebuild the environment, as changed requirements do.
            salt.push_str("\ninstallation:");
            salt.push_str(&manifest.installation_commands.join("\n"));
        }
        let key = requirements.key(Some(&salt));
        let venv = self.venv_path(agent_path);
        let python = self.get_python_executable(&venv);
        if !force && is_ready(&venv, &python, &key) {
            return Ok(ReadyEnvironment { venv, python, key, built: false });
        }
        let lock_path = agent_path.join(format!("{}.lock", self.config.venv_location));
        let lock =
            File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(|source| {
                EnvError::Io { action: "create lock file", path: lock_path.clone(), source }
            })?;
        lock.lock().map_err(|source| EnvError::Io { action: "lock", path: lock_path.clone(), source })?;
        if !force && is_ready(&venv, &python, &key) {
            return Ok(ReadyEnvironment { venv, python, key, built: false });
        }
        let builds = self.builds_dir(agent_path);
        let build_dir = builds.join(format!("{key}-{}", unique_suffix()));
        std::fs::create_dir_all(&builds).map_err(|source| EnvError::Io {
            action: "create",
            path: builds.clone(),
            source,
        })?;
        let result = self.build(&build_dir, agent_path, manifest, &requirements, &key).await;
        if let Err(err) = result {
            if self.config.auto_cleanup {
                let _ = std::fs::remove_dir_all(&build_dir);
            }
            return Err(err);
        }
        let previous = swap_in(&venv, &build_dir)?;
        collect_garbage(&builds, &[build_dir.as_path(), previous.as_deref().unwrap_or(Path::new(""))]);
        drop(lock);
        Ok(ReadyEnvironment { venv, python, key, built: true })
    }

    /// Where builds live: `<agent>/<venv_location>.d/<key>-<unique>`.
    fn builds_dir(&self, agent_path: &Path) -> PathBuf {
        agent_path.join(format!("{}.d", self.config.venv_location))
    }

    /// Builds a complete environment in `dir`, a fresh directory; the marker goes last.
    async fn build(
        &self,
        dir: &Path,
        agent_dir: &Path,
        manifest: &AgentManifest,
        requirements: &RequirementSet,
        key: &str,
    ) -> Result<(), EnvError> {
        tracing::info!(venv = %dir.display(), backend = self.backend.kind().as_str(), "building environment");
        let interpreter =
            find_python(self.config.python_version.as_deref(), manifest.python_version.as_ref())?;
        self.backend.create_venv(dir, &interpreter.path).await?;
        let install_args = match &requirements.source {
            RequirementSource::Empty => Vec::new(),
            RequirementSource::UvLock { project_dir } => {
                let exported = dir.join("agenthub-requirements.txt");
                let text = crate::uv_export_lock(project_dir)?;
                std::fs::write(&exported, text).map_err(|source| EnvError::Io {
                    action: "write",
                    path: exported.clone(),
                    source,
                })?;
                vec![format!("-r {}", exported.display())]
            }
            RequirementSource::RequirementsFile(path) => vec![format!("-r {}", path.display())],
            RequirementSource::Pyproject | RequirementSource::Manifest => requirements.requirements.clone(),
        };
        self.install_dependencies(dir, &install_args).await?;
        if self.config.run_installation_commands {
            run_installation_commands(dir, agent_dir, &manifest.installation_commands)?;
        }
        let marker = EnvMarker {
            key: key.to_owned(),
            backend: self.backend.kind().as_str().to_owned(),
            python: interpreter.path.clone(),
            python_version: interpreter.version_string(),
            requirements_source: requirements.source.name().to_owned(),
            requirements: requirements.requirements.clone(),
            built_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        };
        write_marker(dir, &marker)?;
        self.warn_if_large(dir);
        Ok(())
    }

    fn warn_if_large(&self, venv: &Path) {
        let limit = self.config.max_venv_size * 1024 * 1024;
        let size = dir_size(venv);
        if limit > 0 && size > limit {
            tracing::warn!(
                venv = %venv.display(),
                size_mb = size / (1024 * 1024),
                max_venv_size = self.config.max_venv_size,
                "environment is larger than max_venv_size"
            );
        }
    }
}

/// Runs installation commands in the agent directory with the new environment active:
/// each split into words like a shell would (quotes, escapes), then run without one.
fn run_installation_commands(venv: &Path, agent_dir: &Path, commands: &[String]) -> Result<(), EnvError> {
    let activation = EnvironmentManager::activate_environment(venv);
    let vars: Vec<(String, String)> =
        activation.set.iter().map(|(k, v)| (k.clone(), v.to_string_lossy().into_owned())).collect();
    let envs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let search_path = vars.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
    for command in commands {
        let words = shlex::split(command).filter(|w| !w.is_empty());
        let Some(words) = words else {
            return Err(EnvError::BadInstallCommand { command: command.clone() });
        };
        let program = which::which_in(&words[0], search_path.as_deref(), agent_dir)
            .map_err(|_| EnvError::ToolNotFound { tool: "the program of an installation command" })?;
        let args: Vec<&std::ffi::OsStr> = words[1..].iter().map(std::ffi::OsStr::new).collect();
        crate::backends::run_tool_in(&program, &args, &envs, Some(agent_dir))?;
    }
    Ok(())
}

/// Ready when the marker holds `key` and the Python is there.
fn is_ready(venv: &Path, python: &Path, key: &str) -> bool {
    read_marker(venv).is_some_and(|m| m.key == key) && python.exists()
}

/// The marker of an environment, if it has a readable one.
pub fn read_marker(venv: &Path) -> Option<EnvMarker> {
    let bytes = std::fs::read(venv.join(MARKER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the marker atomically: a temporary file, synced, then renamed into place.
fn write_marker(venv: &Path, marker: &EnvMarker) -> Result<(), EnvError> {
    let path = venv.join(MARKER_FILE);
    let tmp = venv.join(format!(".{MARKER_FILE}.{}.tmp", std::process::id()));
    let io = |action, source| EnvError::Io { action, path: path.clone(), source };
    let json =
        serde_json::to_vec_pretty(marker).map_err(|e| io("serialise marker", std::io::Error::other(e)))?;
    let mut file = File::create(&tmp).map_err(|e| io("create marker", e))?;
    file.write_all(&json).and_then(|()| file.sync_all()).map_err(|e| io("write marker", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("rename marker", e))
}

/// Points `venv` at `build` atomically: a new symlink is renamed over the old one. A real
/// directory at `venv` (built by another tool or an older agenthub) is removed first.
/// Returns the build the old symlink pointed to.
fn swap_in(venv: &Path, build: &Path) -> Result<Option<PathBuf>, EnvError> {
    let io = |action, path: &Path, source| EnvError::Io { action, path: path.to_path_buf(), source };
    let previous =
        std::fs::read_link(venv).ok().map(|target| venv.parent().unwrap_or(Path::new("")).join(target));
    if previous.is_none() && venv.is_dir() {
        std::fs::remove_dir_all(venv).map_err(|e| io("remove the old environment", venv, e))?;
    }
    let parent = venv.parent().unwrap_or(Path::new("."));
    let target = build.strip_prefix(parent).unwrap_or(build);
    let tmp = parent.join(format!(
        ".{}.{}.swap",
        venv.file_name().unwrap_or_default().to_string_lossy(),
        unique_suffix()
    ));
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| io("create symlink", &tmp, e))?;
    std::fs::rename(&tmp, venv).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("swap in the new environment", venv, e)
    })?;
    Ok(previous)
}

/// Removes builds other than `keep`: failed or killed ones, and ones superseded before the
/// last swap (the one just superseded is kept for calls still running in it).
fn collect_garbage(builds: &Path, keep: &[&Path]) {
    let Ok(entries) = std::fs::read_dir(builds) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !keep.iter().any(|k| *k == path) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:09}", std::process::id())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
