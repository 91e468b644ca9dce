//! [`EnvironmentManager`]: the Phase-1 interface, and `ensure_environment`, which builds an
//! agent's environment once per requirement set, under a cross-process lock, on a thread of
//! its own (so an async caller's executor is never blocked by an installer).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agenthub_core::{AgentManifest, EnvironmentConfig, PythonConstraint, PythonRequest, read_agent_file};
use agenthub_fs::WriteStep;
use serde::{Deserialize, Serialize};

use crate::backends::{Interpreter, find_python, uv_export_lock, venv_interpreter};
use crate::layout::{Layout, VenvState};
use crate::progress::{BuildProgress, EnvBuild};
use crate::provision::{UvProvision, ensure_uv};
use crate::requirements::{InstallArg, RequirementSet, RequirementSource};
use crate::tools::{BuildContext, Tool};
use crate::{DynEnvironmentBackend, EnvError};

/// File name of the completion marker inside the environment, written last.
pub const MARKER_FILE: &str = "agenthub-env.json";

/// Markers larger than this are not ours.
const MAX_MARKER_BYTES: u64 = 256 * 1024;

/// Default limit of one environment build.
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// Default limit of one interpreter probe.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// What one build installs, and the key it is built for.
#[derive(Debug, Clone)]
struct BuildPlan {
    /// Whose environment it is, for [`BuildProgress`].
    agent: String,
    requirements: RequirementSet,
    python: Option<PythonConstraint>,
    installation_commands: Vec<String>,
    key: String,
}

/// Creates, keys, locks and reuses agent environments through one backend.
#[derive(Clone)]
pub struct EnvironmentManager {
    backend: DynEnvironmentBackend,
    config: EnvironmentConfig,
    build_timeout: Duration,
    probe_timeout: Duration,
    die_with_parent: bool,
    uv_provision: Option<UvProvision>,
    registry: Option<std::sync::Arc<agenthub_process::ProcessRegistry>>,
    sandboxed_builds: bool,
    progress: Option<std::sync::Arc<dyn BuildProgress>>,
}

impl std::fmt::Debug for EnvironmentManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentManager")
            .field("backend", &self.backend.kind())
            .field("config", &self.config)
            .field("build_timeout", &self.build_timeout)
            .finish_non_exhaustive()
    }
}

impl EnvironmentManager {
    /// A manager over `backend`, with the default build limits.
    pub fn new(backend: DynEnvironmentBackend, config: EnvironmentConfig) -> Self {
        Self {
            backend,
            config,
            build_timeout: DEFAULT_BUILD_TIMEOUT,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            die_with_parent: false,
            uv_provision: None,
            registry: None,
            sandboxed_builds: false,
            progress: None,
        }
    }

    /// Runs every installer of a build in a sandbox (see [`crate::build_sandbox`]).
    #[must_use]
    pub fn with_sandboxed_builds(mut self, on: bool) -> Self {
        self.sandboxed_builds = on;
        self
    }

    /// Reports each build that really runs to `progress` (its start and its end), on the
    /// building thread.
    #[must_use]
    pub fn with_progress(mut self, progress: std::sync::Arc<dyn BuildProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Records installer runs in `registry` (the runtime's, with its run directory), so that
    /// the tools of a build interrupted by this process's death are swept like its agents.
    #[must_use]
    pub fn with_process_registry(
        mut self,
        registry: std::sync::Arc<agenthub_process::ProcessRegistry>,
    ) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Where uv is looked for besides `PATH`, and installed when it is needed (an agent
    /// ships `uv.lock`) and missing (see [`UvProvision`]).
    #[must_use]
    pub fn with_uv_provision(mut self, provision: UvProvision) -> Self {
        self.uv_provision = Some(provision);
        self
    }

    /// Limits for builds: the whole build (`build_timeout`), one interpreter probe
    /// (`subprocess_timeout`), and whether installers die with the building thread.
    #[must_use]
    pub fn with_build_limits(mut self, build: Duration, probe: Duration, die_with_parent: bool) -> Self {
        self.build_timeout = build;
        self.probe_timeout = probe;
        self.die_with_parent = die_with_parent;
        self
    }

    /// The backend's kind.
    pub fn backend_kind(&self) -> agenthub_core::EnvBackendKind {
        self.backend.kind()
    }

    /// The environment directory of the agent in `agent_path`.
    pub fn venv_path(&self, agent_path: &Path) -> PathBuf {
        agent_path.join(&self.config.venv_location)
    }

    /// Creates the agent's environment (with nothing installed) if there is none; returns
    /// its path. Never replaces an environment agenthub did not make.
    pub async fn create_environment(&self, agent_path: &Path) -> Result<PathBuf, EnvError> {
        let layout = Layout::new(agent_path, &self.config.venv_location)?;
        let state = layout.check_venv_is_ours()?;
        if state != VenvState::Missing && self.get_python_executable(&layout.venv).exists() {
            return Ok(layout.venv);
        }
        let requirements = RequirementSet::empty();
        let key = requirements.key(Some("create_environment"));
        let agent = agent_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let plan = BuildPlan { agent, requirements, python: None, installation_commands: Vec::new(), key };
        let this = self.clone();
        offload(move || pollster::block_on(this.build_locked(&layout, &plan, true))).await.map(|r| r.venv)
    }

    /// Installs requirements (PEP 508 strings, or `-r FILE`) into an environment; the
    /// installer runs in the environment's parent directory.
    pub async fn install_dependencies(&self, venv: &Path, requirements: &[String]) -> Result<(), EnvError> {
        if requirements.is_empty() {
            return Ok(());
        }
        let args = requirements.iter().map(|r| InstallArg::parse(r)).collect::<Result<Vec<_>, _>>()?;
        let cwd = venv.parent().unwrap_or(Path::new("/"));
        let mut ctx = BuildContext::new(cwd, self.build_timeout, self.die_with_parent);
        ctx.registry.clone_from(&self.registry);
        if self.sandboxed_builds {
            ctx.sandbox = Some(crate::build_sandbox(&[venv, cwd]));
        }
        self.backend.install(venv, &args, &ctx).await
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
    /// Fast path: the marker holds the current key (no lock, no process, no thread).
    /// Otherwise, on a thread of its own: the cross-process lock is taken (waiting at most
    /// `build_timeout`), the marker checked again (another process may have built it
    /// meanwhile), and the environment built beside the current one with the marker
    /// written last, then swapped in.
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
        let layout = Layout::new(agent_path, &self.config.venv_location)?;
        let plan = self.plan(agent_path, manifest)?;
        if !force && let Some(ready) = self.ready(&layout, &plan.key) {
            return Ok(ready);
        }
        layout.check_venv_is_ours()?;
        let this = self.clone();
        offload(move || pollster::block_on(this.build_locked(&layout, &plan, force))).await
    }

    /// The requirement set and the key of the environment the agent needs.
    fn plan(&self, agent_path: &Path, manifest: &AgentManifest) -> Result<BuildPlan, EnvError> {
        plan_for(agent_path, manifest, &self.config)
    }

    /// The environment, when its marker holds `key` and its Python is there.
    fn ready(&self, layout: &Layout, key: &str) -> Option<ReadyEnvironment> {
        let marker = read_agent_file(&layout.agent_dir, &layout.marker_name(), MAX_MARKER_BYTES).ok()??;
        let marker: EnvMarker = serde_json::from_str(&marker).ok()?;
        let python = self.get_python_executable(&layout.venv);
        (marker.key == key && python.exists()).then(|| ReadyEnvironment {
            venv: layout.venv.clone(),
            python,
            key: key.to_owned(),
            built: false,
        })
    }

    /// The slow path, on the building thread: lock, check again, build, swap, collect.
    async fn build_locked(
        &self,
        layout: &Layout,
        plan: &BuildPlan,
        force: bool,
    ) -> Result<ReadyEnvironment, EnvError> {
        let mut ctx = BuildContext::new(&layout.agent_dir, self.build_timeout, self.die_with_parent);
        ctx.registry.clone_from(&self.registry);
        let lock = layout.lock(ctx.deadline, ctx.limit)?;
        if !force && let Some(ready) = self.ready(layout, &plan.key) {
            return Ok(ready);
        }
        layout.check_venv_is_ours()?;
        layout.ensure_builds_dir()?;
        let build_dir = layout.new_build_dir(&plan.key);
        if self.sandboxed_builds {
            ctx.sandbox =
                Some(crate::build_sandbox(&[build_dir.parent().unwrap_or(&build_dir), &layout.agent_dir]));
        }
        let report = EnvBuild {
            agent: plan.agent.clone(),
            agent_dir: layout.agent_dir.clone(),
            backend: self.backend.kind(),
        };
        let started = std::time::Instant::now();
        if let Some(progress) = &self.progress {
            progress.build_started(&report);
        }
        let built = match self.build(&build_dir, &ctx, plan).await {
            Ok(()) => layout.swap_in(&build_dir),
            Err(err) => {
                if self.config.auto_cleanup {
                    layout.remove_build(&build_dir);
                }
                Err(err)
            }
        };
        match &built {
            Ok(_) => layout.clear_failure(),
            Err(EnvError::Cancelled) => {}
            Err(err) => layout.record_failure(&failure_text(err)),
        }
        if let Some(progress) = &self.progress {
            progress.build_finished(&report, started.elapsed(), built.is_ok());
        }
        let previous = built?;
        layout.collect_garbage(&[build_dir.as_path(), previous.as_deref().unwrap_or(Path::new(""))]);
        drop(lock);
        let python = self.get_python_executable(&layout.venv);
        Ok(ReadyEnvironment { venv: layout.venv.clone(), python, key: plan.key.clone(), built: true })
    }

    /// Builds a complete environment in `dir`, a fresh directory; the marker goes last.
    async fn build(&self, dir: &Path, ctx: &BuildContext, plan: &BuildPlan) -> Result<(), EnvError> {
        // A detail for whoever asked for logs: people hear of builds through `BuildProgress`.
        tracing::debug!(venv = %dir.display(), backend = self.backend.kind().as_str(), "building environment");
        let interpreter = self.create_venv(dir, ctx, plan).await?;
        let install_args = match &plan.requirements.source {
            RequirementSource::UvLock { project_dir } => {
                let exported = dir.join("agenthub-requirements.txt");
                let uv = ensure_uv(self.uv_provision.as_ref(), "uv (needed to install from uv.lock)")?;
                let text = uv_export_lock(&uv.path, project_dir, ctx)?;
                std::fs::write(&exported, text).map_err(|source| EnvError::Io {
                    action: "write",
                    path: exported.clone(),
                    source,
                })?;
                vec![InstallArg::RequirementsFile(exported)]
            }
            _ => plan.requirements.install_args(),
        };
        if !install_args.is_empty() {
            self.backend.install(dir, &install_args, ctx).await?;
        }
        if !plan.installation_commands.is_empty() {
            run_installation_commands(dir, ctx, &plan.installation_commands)?;
        }
        let marker = EnvMarker {
            key: plan.key.clone(),
            backend: self.backend.kind().as_str().to_owned(),
            python: interpreter.path.clone(),
            python_version: interpreter.version_string(),
            requirements_source: plan.requirements.source.name().to_owned(),
            requirements: plan.requirements.requirements.clone(),
            built_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        };
        write_marker(dir, &marker)?;
        self.warn_if_large(dir);
        Ok(())
    }

    /// Creates the empty environment: with the backend's own interpreter discovery when it
    /// has one (uv: no probe process), else with the interpreter [`find_python`] probes.
    async fn create_venv(
        &self,
        dir: &Path,
        ctx: &BuildContext,
        plan: &BuildPlan,
    ) -> Result<Interpreter, EnvError> {
        let requested = self.config.python_request();
        let wanted = match &requested {
            Some(PythonRequest::Path(path)) => path.to_str().map(str::to_owned),
            Some(PythonRequest::Version(c)) => {
                let mut specs = vec![c.to_pep440()];
                specs.extend(plan.python.as_ref().map(PythonConstraint::to_pep440));
                Some(specs.join(","))
            }
            None => Some(plan.python.as_ref().map_or_else(|| ">=3".to_owned(), PythonConstraint::to_pep440)),
        };
        if let Some(wanted) = wanted
            && self.backend.create_venv_discovering(dir, &wanted, ctx).await?
        {
            let found = venv_interpreter(dir).ok_or_else(|| EnvError::NoPython {
                wanted: wanted.clone(),
                tried: vec![format!("{} (no readable pyvenv.cfg)", dir.display())],
            })?;
            let (major, minor, patch) = found.version;
            let constraints = [
                plan.python.as_ref(),
                match &requested {
                    Some(PythonRequest::Version(c)) => Some(c),
                    _ => None,
                },
            ];
            if constraints.into_iter().flatten().all(|c| c.allows(major, minor, patch)) {
                return Ok(found);
            }
            return Err(EnvError::NoPython {
                wanted,
                tried: vec![format!("{} ({})", found.path.display(), found.version_string())],
            });
        }
        let interpreter = find_python(requested.as_ref(), plan.python.as_ref(), self.probe_timeout)?;
        self.backend.create_venv(dir, &interpreter.path, ctx).await?;
        Ok(interpreter)
    }

    fn warn_if_large(&self, venv: &Path) {
        let limit = self.config.max_venv_size.saturating_mul(1024 * 1024);
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

/// A failed build's error with its cause: the OS error, or the installer's line that says
/// what went wrong (its first line naming an error, else its last). `environment_status`
/// shows it until a build succeeds.
fn failure_text(err: &EnvError) -> String {
    let mut text = err.to_string();
    if let Some(source) = std::error::Error::source(err) {
        text = format!("{text}: {source}");
    }
    if let EnvError::CommandFailed { stderr, .. } | EnvError::BuildTimeout { stderr, .. } = err {
        let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
        let said = lines().find(|l| l.to_ascii_lowercase().contains("error")).or_else(|| lines().next_back());
        if let Some(said) = said {
            text = format!("{text}: {said}");
        }
    }
    text
}

/// The requirement set and the key of the environment the agent in `agent_path` needs.
fn plan_for(
    agent_path: &Path,
    manifest: &AgentManifest,
    config: &EnvironmentConfig,
) -> Result<BuildPlan, EnvError> {
    let requirements = RequirementSet::for_agent(agent_path, &manifest.dependencies)?;
    let constraint = manifest.python_version.as_ref().map(PythonConstraint::to_pep440);
    let wanted = [config.python_version.as_deref(), constraint.as_deref()];
    let mut salt = wanted.iter().flatten().copied().collect::<Vec<_>>().join(";");
    let installation_commands =
        if config.run_installation_commands { manifest.installation_commands.clone() } else { Vec::new() };
    if config.run_installation_commands {
        // Changed commands rebuild the environment, as changed requirements do.
        salt.push_str("\ninstallation:");
        salt.push_str(&installation_commands.join("\n"));
    }
    let key = requirements.key(Some(&salt));
    let agent = manifest.name.clone();
    Ok(BuildPlan { agent, requirements, python: manifest.python_version.clone(), installation_commands, key })
}

/// The key of the environment the agent in `agent_path` needs now (what its marker must
/// hold for the environment to be used): reads its requirement files, runs nothing.
pub fn environment_key(
    agent_path: &Path,
    manifest: &AgentManifest,
    config: &EnvironmentConfig,
) -> Result<String, EnvError> {
    plan_for(agent_path, manifest, config).map(|p| p.key)
}

/// Runs `work` on a thread of its own and waits for it without blocking the executor.
async fn offload<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EnvError> + Send + 'static,
) -> Result<T, EnvError> {
    agenthub_process::on_thread("agenthub-env-build", work)
        .await
        .map_err(|source| EnvError::Io { action: "start a build thread", path: PathBuf::new(), source })?
        .unwrap_or(Err(EnvError::Cancelled))
}

/// Runs installation commands in the agent directory with the new environment active:
/// each split into words like a shell would (quotes, escapes), then run without one.
fn run_installation_commands(venv: &Path, ctx: &BuildContext, commands: &[String]) -> Result<(), EnvError> {
    let activation = EnvironmentManager::activate_environment(venv);
    let search_path = activation.set.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
    for command in commands {
        let words = shlex::split(command).filter(|w| !w.is_empty());
        let Some(words) = words else {
            return Err(EnvError::BadInstallCommand { command: command.clone() });
        };
        let program = which::which_in(&words[0], search_path.as_ref(), &ctx.agent_dir)
            .map_err(|_| EnvError::ToolNotFound { tool: "the program of an installation command" })?;
        let mut tool = Tool::new(&program, &words[1..]);
        for (key, value) in &activation.set {
            tool = tool.env(key, value);
        }
        tool.run(ctx)?;
    }
    Ok(())
}

/// The marker of an environment, if it has a readable one (a bounded read of a regular
/// file inside the environment).
pub fn read_marker(venv: &Path) -> Option<EnvMarker> {
    let text = read_agent_file(venv, Path::new(MARKER_FILE), MAX_MARKER_BYTES).ok()??;
    serde_json::from_str(&text).ok()
}

/// Writes the marker atomically: a temporary file, then renamed into place. Not synced:
/// syncing the marker alone would not make the environment's other files durable (an
/// environment that lost files to a power cut is repaired with `agenthub env rebuild`),
/// and it cost a millisecond of a 20 ms build.
fn write_marker(venv: &Path, marker: &EnvMarker) -> Result<(), EnvError> {
    let path = venv.join(MARKER_FILE);
    let io = |action, source| EnvError::Io { action, path: path.clone(), source };
    let json =
        serde_json::to_vec_pretty(marker).map_err(|e| io("serialise marker", std::io::Error::other(e)))?;
    agenthub_fs::write_atomic(&path, &json).map_err(|e| {
        let action = match e.step {
            WriteStep::Create => "create marker",
            WriteStep::Write => "write marker",
            WriteStep::Rename => "rename marker",
        };
        io(action, e.source)
    })
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
