//! Installing, updating and removing agents under `<home>/agents/<ns>/<name>`.
//!
//! An install is staged beside its target in a hidden directory agenthub names and marks
//! (`.<name>.staging-<pid>-<nanos>/`, holding [`STAGING_MARKER`] and the new tree in
//! `agent/`): fetched there (the `git` command, or a copy of a directory), validated,
//! given its provenance record and, unless asked not to, its environment; then swapped in
//! with one `renameat2(2)` (`RENAME_EXCHANGE` over a previous install, `RENAME_NOREPLACE`
//! for a new one), so the target is at every instant either the old install or the new
//! one. The previous install, now inside the staging directory, is deleted with it.
//!
//! **agenthub deletes only what it created**: an agent directory is replaced or removed
//! only when it holds an install record ([`INSTALL_RECORD_FILE`]) naming that agent, and a
//! staging directory only when it holds the staging marker; neither is ever reached
//! through a symlink. Installs of one agent are serialised by a lock file beside it
//! (`.<name>.install.lock`); a staging directory left by a killed install is removed by
//! the next install of that agent.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agenthub_core::{
    AgentId, AgentManifest, AgentRuntimeError, Config, INSTALL_RECORD_FILE, InstallRecord, InstallSource,
    SourceError, read_install_record,
};
use agenthub_env::{EnvError, EnvironmentManager};
use agenthub_process::{EnvSpec, ProcessLimits, ProcessSpec, StdProcessBackend, Termination};
use serde::Serialize;

use crate::validate::{Problem, check_dir};

/// The file that proves a staging directory was made by agenthub.
pub const STAGING_MARKER: &str = ".agenthub-staging";

/// Largest directory tree copied by a path install (entries).
pub const MAX_COPY_ENTRIES: usize = 100_000;

/// Deepest directory tree copied by a path install.
pub const MAX_COPY_DEPTH: usize = 64;

/// How much of git's stderr errors keep.
const GIT_STDERR_TAIL: usize = 16 * 1024;

/// `GIT_*` variables that would point git at another repository than the one it is asked
/// about (uv and cargo clear the same ones).
const GIT_LOCATION_VARS: [&str; 9] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
];

/// Where an install reports its steps (the CLI draws a spinner on a terminal).
pub trait Progress: Send + Sync {
    /// A new step has started: `cloning https://…`, `creating environment`. Shown while
    /// it runs (the CLI: on a terminal only).
    fn step(&self, message: &str);

    /// Something the user should read even when not watching a terminal (auto-install
    /// starting). By default, a step.
    fn notice(&self, message: &str) {
        self.step(message);
    }
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&self, _message: &str) {}
}

/// How to install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Install as this `ns/name` instead of the one the source implies.
    pub as_id: Option<AgentId>,
    /// Replace an existing install (one agenthub made; never anything else).
    pub force: bool,
    /// Do not build the environment (the first call builds it).
    pub no_env: bool,
    /// An agent already installed is success, not an error (auto-install on first use,
    /// where another process may have installed it meanwhile).
    pub if_missing: bool,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// `ns/name`.
    pub agent: String,
    /// The agent directory.
    pub path: PathBuf,
    /// Its provenance.
    pub record: InstallRecord,
    /// Whether a previous install was replaced.
    pub replaced: bool,
    /// Whether the environment was built (false with `no_env`).
    pub environment_built: bool,
    /// Whether nothing was done because it was installed already (`if_missing`).
    pub already_installed: bool,
}

/// What a removal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// `ns/name`.
    pub agent: String,
    /// The directory that was removed.
    pub path: PathBuf,
    /// Bytes freed.
    pub freed_bytes: u64,
}

/// Why an install, update or removal failed. Nothing was changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// SOURCE is not a path, URL or `ns/name`, or its ref is invalid.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// No `ns/name` follows from SOURCE.
    #[error("cannot tell which ns/name to install `{source_arg}` as")]
    NoName {
        /// SOURCE as given.
        source_arg: String,
    },
    /// The agent is installed and `--force` was not given.
    #[error("{agent} is already installed at {}", path.display())]
    AlreadyInstalled {
        /// `ns/name`.
        agent: String,
        /// Its directory.
        path: PathBuf,
    },
    /// Something is at the target that agenthub did not install.
    #[error("{} was not installed by agenthub: {what}", path.display())]
    NotOurs {
        /// The path.
        path: PathBuf,
        /// What is there.
        what: String,
    },
    /// `update`/`remove` of an agent that is not installed.
    #[error("{agent} is not installed")]
    NotInstalled {
        /// `ns/name` as given.
        agent: String,
    },
    /// The `git` command is not on PATH.
    #[error("git was not found on PATH")]
    GitMissing,
    /// A git command failed.
    #[error("`{command}` failed ({status})")]
    Git {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// The tail of git's stderr.
        stderr: Option<String>,
    },
    /// A git command ran past `install.git_timeout`.
    #[error("`{command}` did not finish within {}s", limit.as_secs_f64())]
    GitTimeout {
        /// The command line.
        command: String,
        /// The limit.
        limit: Duration,
        /// The tail of git's stderr.
        stderr: Option<String>,
    },
    /// The ref is not a branch, tag or commit of the repository.
    #[error("ref `{reference}` was not found in {url}")]
    RefNotFound {
        /// The repository.
        url: String,
        /// The ref asked for.
        reference: String,
    },
    /// What was fetched is not a valid agent.
    #[error("{source_arg} is not a valid agent: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// SOURCE as given.
        source_arg: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// The environment could not be built; the previous install (if any) is untouched.
    #[error("the environment of {agent} could not be built: {source}")]
    Environment {
        /// `ns/name`.
        agent: String,
        /// Why.
        #[source]
        source: EnvError,
    },
    /// Another install of the agent held its lock past the wait.
    #[error("another install of {agent} is still running (waited {}s)", waited.as_secs())]
    Busy {
        /// `ns/name`.
        agent: String,
        /// How long this one waited.
        waited: Duration,
    },
    /// A removal needs confirmation.
    #[error("removing {agent} needs confirmation")]
    NotConfirmed {
        /// `ns/name`.
        agent: String,
    },
    /// The operating system refused.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stopped by a signal (the CLI's shutdown).
    #[error("the install was cancelled")]
    Cancelled,
}

impl InstallError {
    /// What the user can do about it.
    pub fn suggestion(&self) -> String {
        match self {
            Self::Source(e) => e.suggestion(),
            Self::NoName { .. } => "Name it with --as ns/name".to_owned(),
            Self::AlreadyInstalled { agent, .. } => {
                format!("Run `agenthub update {agent}`, or pass --force to install over it")
            }
            Self::NotOurs { path, .. } => format!(
                "Move {} away (or remove it yourself) and install again, or install under another name with --as",
                path.display()
            ),
            Self::NotInstalled { agent } => format!("Install it with `agenthub install {agent}`"),
            Self::GitMissing => {
                "Install git (e.g. `apt-get install git`, `brew install git`) and make sure it is on PATH"
                    .to_owned()
            }
            Self::Git { stderr, .. } => git_hint(stderr.as_deref()),
            Self::GitTimeout { .. } => {
                "Check the network and the URL, or raise install.git_timeout (AGENTHUB_GIT_TIMEOUT)"
                    .to_owned()
            }
            Self::RefNotFound { url, .. } => {
                format!(
                    "List the refs with `git ls-remote {url}` and give a branch, tag or commit that exists"
                )
            }
            Self::Invalid { .. } => {
                "Fix the agent in its repository (`agenthub validate` on a checkout lists every problem)"
                    .to_owned()
            }
            Self::Environment { source, .. } => {
                format!("{} The previous install, if any, was kept.", source.suggestion())
            }
            Self::Busy { .. } => "Wait for the other install to finish, then try again".to_owned(),
            Self::NotConfirmed { .. } => "Pass --yes to remove without asking".to_owned(),
            Self::Io { source, path, .. } => agenthub_core::io_error_suggestion(source, path),
            Self::Cancelled => "Run the command again".to_owned(),
        }
    }

    /// The tail of the failing tool's stderr, when there is one.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Self::Git { stderr, .. } | Self::GitTimeout { stderr, .. } => stderr.as_deref(),
            Self::Environment {
                source: EnvError::CommandFailed { stderr, .. } | EnvError::BuildTimeout { stderr, .. },
                ..
            } if !stderr.is_empty() => Some(stderr),
            _ => None,
        }
    }

    /// A stable name for the kind of failure, for JSON output: `InvalidSource`,
    /// `AlreadyInstalled`, `NotOurs`, `NotInstalled`, `GitMissing`, `GitFailed`,
    /// `GitTimeout`, `RefNotFound`, `InvalidAgent`, `EnvironmentError`, `Busy`,
    /// `NotConfirmed`, `IoError` or `Cancelled`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Source(_) | Self::NoName { .. } => "InvalidSource",
            Self::AlreadyInstalled { .. } => "AlreadyInstalled",
            Self::NotOurs { .. } => "NotOurs",
            Self::NotInstalled { .. } => "NotInstalled",
            Self::GitMissing => "GitMissing",
            Self::Git { .. } => "GitFailed",
            Self::GitTimeout { .. } => "GitTimeout",
            Self::RefNotFound { .. } => "RefNotFound",
            Self::Invalid { .. } => "InvalidAgent",
            Self::Environment { .. } => "EnvironmentError",
            Self::Busy { .. } => "Busy",
            Self::NotConfirmed { .. } => "NotConfirmed",
            Self::Io { .. } => "IoError",
            Self::Cancelled => "Cancelled",
        }
    }

    /// Whether the error is the caller's (exit status 2): a bad SOURCE, a missing name, a
    /// missing confirmation.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Source(_) | Self::NoName { .. } | Self::NotConfirmed { .. })
    }
}

fn git_hint(stderr: Option<&str>) -> String {
    let stderr = stderr.unwrap_or_default();
    if stderr.contains("not found")
        || stderr.contains("does not exist")
        || stderr.contains("not appear to be")
    {
        "Check the URL (and `registry` / AGENTHUB_REGISTRY for ns/name)".to_owned()
    } else if stderr.contains("Authentication")
        || stderr.contains("Permission denied")
        || stderr.contains("could not read Username")
    {
        "Check your git credentials for this host (agenthub uses your git configuration, SSH keys and credential helpers)".to_owned()
    } else {
        "See git's message above; the install changed nothing".to_owned()
    }
}

impl From<InstallError> for AgentRuntimeError {
    fn from(e: InstallError) -> Self {
        let suggestion = e.suggestion();
        match e {
            InstallError::Environment { source, .. } => source.into(),
            other => {
                let stderr = other.stderr().map(str::to_owned);
                let message = format!("could not install the agent: {other}");
                let message = match stderr {
                    Some(stderr) => format!("{message}\n{stderr}"),
                    None => message,
                };
                AgentRuntimeError::NotRun { message, suggestion }
            }
        }
    }
}

/// Installs agents into one home. Cheap to clone; `'static`, so async callers can run it
/// on a thread of its own.
#[derive(Clone)]
pub struct Installer {
    config: Config,
    environments: EnvironmentManager,
    progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for Installer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installer").field("home", &self.config.home).finish_non_exhaustive()
    }
}

/// One agent's paths under the agents root.
struct Slot {
    id: AgentId,
    /// `<root>/<ns>`.
    ns_dir: PathBuf,
    /// `<root>/<ns>/<name>`.
    target: PathBuf,
}

impl Installer {
    /// An installer for `config`'s home that builds environments with `environments`.
    pub fn new(config: Config, environments: EnvironmentManager, progress: Arc<dyn Progress>) -> Self {
        Self { config, environments, progress }
    }

    /// Installs SOURCE (a directory, a git URL with an optional `@ref`, or `ns/name[@ref]`).
    pub fn install(&self, source: &str, options: &InstallOptions) -> Result<Installed, InstallError> {
        let parsed = InstallSource::parse(source, &self.config.registry, std::env::home_dir().as_deref())?;
        let id = options
            .as_id
            .clone()
            .or_else(|| parsed.default_id())
            .ok_or_else(|| InstallError::NoName { source_arg: source.to_owned() })?;
        self.install_parsed(source, &parsed, &id, options)
    }

    /// Installs the agent `id` from the registry when it is not installed (auto-install on
    /// first use); an agent installed meanwhile by another process is success.
    pub fn install_missing(&self, id: &AgentId) -> Result<Installed, InstallError> {
        let source = id.to_string();
        let parsed = InstallSource::parse(&source, &self.config.registry, None)?;
        let options = InstallOptions { if_missing: true, ..InstallOptions::default() };
        self.install_parsed(&source, &parsed, id, &options)
    }

    /// Installs the recorded source of `agent` again, at `reference` when given, else at
    /// the recorded ref; the current install stays if anything fails.
    pub fn update(&self, agent: &str, reference: Option<&str>) -> Result<Installed, InstallError> {
        let id: AgentId =
            agent.parse().map_err(|_| InstallError::NotInstalled { agent: agent.to_owned() })?;
        let slot = self.slot(&id)?;
        let record =
            owned_install(&slot)?.ok_or_else(|| InstallError::NotInstalled { agent: agent.to_owned() })?;
        let reference = match reference {
            Some(r) => Some(agenthub_core::validate_ref(r)?),
            None => record.requested_ref.clone(),
        };
        // The recorded source without its ref, then the ref wanted now.
        let mut parsed = InstallSource::parse(&record.source, &self.config.registry, None)?;
        let mut source = record.source.clone();
        if let InstallSource::Git { reference: r, .. } = &mut parsed {
            if let Some(old) = r.take() {
                source.truncate(source.len() - old.len() - 1);
            }
            r.clone_from(&reference);
            if let Some(reference) = &reference {
                source = format!("{source}@{reference}");
            }
        } else if reference.is_some() {
            return Err(SourceError::BadRef {
                reference: reference.unwrap_or_default(),
                why: "the agent was installed from a directory, which has no refs",
            }
            .into());
        }
        let options = InstallOptions { as_id: Some(id.clone()), force: true, ..InstallOptions::default() };
        self.install_parsed(&source, &parsed, &id, &options)
    }

    /// Removes an installed agent and its environments. Only an install agenthub made is
    /// removed.
    pub fn remove(&self, agent: &str) -> Result<Removed, InstallError> {
        let id: AgentId =
            agent.parse().map_err(|_| InstallError::NotInstalled { agent: agent.to_owned() })?;
        let slot = self.slot(&id)?;
        let _lock = self.lock(&slot)?;
        if owned_install(&slot)?.is_none() {
            return Err(InstallError::NotInstalled { agent: agent.to_owned() });
        }
        let staging = Staging::create(&slot)?;
        rename_noreplace(&slot.target, &staging.tree)?;
        let freed_bytes = tree_size(&staging.tree);
        drop(staging);
        Ok(Removed { agent: id.to_string(), path: slot.target, freed_bytes })
    }

    fn install_parsed(
        &self,
        source: &str,
        parsed: &InstallSource,
        id: &AgentId,
        options: &InstallOptions,
    ) -> Result<Installed, InstallError> {
        let slot = self.slot(id)?;
        let _lock = self.lock(&slot)?;
        let existing = owned_install(&slot)?;
        if let Some(record) = &existing {
            if options.if_missing {
                return Ok(Installed {
                    agent: id.to_string(),
                    path: slot.target.clone(),
                    record: record.clone(),
                    replaced: false,
                    environment_built: false,
                    already_installed: true,
                });
            }
            if !options.force {
                return Err(InstallError::AlreadyInstalled { agent: id.to_string(), path: slot.target });
            }
        }
        remove_stale_staging(&slot);
        let staging = Staging::create(&slot)?;
        let commit_sha = match parsed {
            InstallSource::Git { url, reference, .. } => {
                self.progress.step(&format!(
                    "cloning {url}{}",
                    reference.as_ref().map(|r| format!(" at {r}")).unwrap_or_default()
                ));
                self.clone_repo(url, reference.as_deref(), &staging.tree)?
            }
            InstallSource::Path(dir) => {
                self.progress.step(&format!("copying {}", dir.display()));
                copy_agent_dir(dir, &staging.tree, &self.config.environment.venv_location)?;
                self.git_head(dir)
            }
        };
        self.progress.step("validating");
        let problems = check_dir(&staging.tree);
        if !problems.is_empty() {
            return Err(InstallError::Invalid { source_arg: source.to_owned(), problems });
        }
        let record = InstallRecord {
            agent_name: id.to_string(),
            github_url: match parsed {
                InstallSource::Git { url, .. } => url.clone(),
                InstallSource::Path(dir) => {
                    std::path::absolute(dir).unwrap_or_else(|_| dir.clone()).display().to_string()
                }
            },
            commit_sha,
            requested_ref: parsed.reference().map(str::to_owned),
            installed_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            source: source.to_owned(),
            source_kind: if matches!(parsed, InstallSource::Git { .. }) { "git" } else { "path" }.to_owned(),
            agenthub_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        write_new(
            &staging.tree.join(INSTALL_RECORD_FILE),
            &serde_json::to_vec_pretty(&record).unwrap_or_default(),
        )?;
        let environment_built = !options.no_env;
        if environment_built {
            self.progress.step("creating environment");
            let (manifest, _) = AgentManifest::load(&staging.tree).map_err(|e| InstallError::Invalid {
                source_arg: source.to_owned(),
                problems: vec![Problem {
                    file: Some("agent.yaml".to_owned()),
                    field: None,
                    message: e.to_string(),
                }],
            })?;
            pollster::block_on(self.environments.ensure_environment(&staging.tree, &manifest))
                .map_err(|source| InstallError::Environment { agent: id.to_string(), source })?;
        }
        self.progress.step("swapping in");
        let replaced = existing.is_some();
        if replaced {
            exchange(&staging.tree, &slot.target)?;
        } else {
            rename_noreplace(&staging.tree, &slot.target)?;
        }
        drop(staging);
        Ok(Installed {
            agent: id.to_string(),
            path: slot.target,
            record,
            replaced,
            environment_built,
            already_installed: false,
        })
    }

    /// The paths of `id`, with `<root>/<ns>` created (a real directory inside the root).
    fn slot(&self, id: &AgentId) -> Result<Slot, InstallError> {
        let ns_dir = self.config.agents_root().join(id.namespace());
        std::fs::create_dir_all(&ns_dir).map_err(|source| InstallError::Io {
            action: "create",
            path: ns_dir.clone(),
            source,
        })?;
        let meta = std::fs::symlink_metadata(&ns_dir).map_err(|source| InstallError::Io {
            action: "inspect",
            path: ns_dir.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(InstallError::NotOurs {
                path: ns_dir.clone(),
                what: "a symlink or file where the namespace directory goes; agenthub never installs through one"
                    .to_owned(),
            });
        }
        Ok(Slot { target: ns_dir.join(id.name()), ns_dir, id: id.clone() })
    }

    /// Takes the agent's install lock, waiting at most as long as an install may take.
    fn lock(&self, slot: &Slot) -> Result<File, InstallError> {
        let path = slot.ns_dir.join(format!(".{}.install.lock", slot.id.name()));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| InstallError::Io {
                action: "open the lock file",
                path: path.clone(),
                source,
            })?;
        let wait = self.config.install.git_timeout() + self.config.runtime.build_timeout();
        let started = Instant::now();
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(InstallError::Io { action: "lock", path, source });
                }
            }
            if !said {
                self.progress.step(&format!("waiting for another install of {}", slot.id));
                said = true;
            }
            if started.elapsed() >= wait {
                return Err(InstallError::Busy { agent: slot.id.to_string(), waited: started.elapsed() });
            }
            if agenthub_process::is_shut_down() {
                return Err(InstallError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clones `url` into `dest` and checks out `reference` (the default branch when none);
    /// returns the commit.
    fn clone_repo(
        &self,
        url: &str,
        reference: Option<&str>,
        dest: &Path,
    ) -> Result<Option<String>, InstallError> {
        let dest_arg = dest.as_os_str().to_owned();
        let mut clone: Vec<OsString> = vec!["clone".into()];
        if !agenthub_env::stream_tool_output() {
            clone.push("--quiet".into());
        }
        if reference.is_some() {
            clone.push("--no-checkout".into());
        }
        clone.extend(["--".into(), url.into(), dest_arg]);
        let cwd = dest.parent().unwrap_or(dest);
        self.git(cwd, clone)?;
        if let Some(reference) = reference {
            let commit = self.resolve_ref(dest, url, reference)?;
            self.git(dest, ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", &commit])?;
        }
        let head = self.git(dest, ["rev-parse", "HEAD"])?;
        Ok(Some(head.trim().to_owned()))
    }

    /// The commit `reference` names in the clone at `repo`: a branch of the remote, a tag,
    /// or a commit.
    fn resolve_ref(&self, repo: &Path, url: &str, reference: &str) -> Result<String, InstallError> {
        for candidate in [
            format!("refs/remotes/origin/{reference}"),
            format!("refs/tags/{reference}"),
            reference.to_owned(),
        ] {
            let spec = format!("{candidate}^{{commit}}");
            if let Ok(commit) =
                self.git(repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", &spec])
            {
                let commit = commit.trim();
                if !commit.is_empty() {
                    return Ok(commit.to_owned());
                }
            }
        }
        Err(InstallError::RefNotFound { url: url.to_owned(), reference: reference.to_owned() })
    }

    /// The commit of a directory that is a git work tree; `None` otherwise (or without git).
    fn git_head(&self, dir: &Path) -> Option<String> {
        let out = self.git(dir, ["rev-parse", "--verify", "--quiet", "HEAD"]).ok()?;
        Some(out.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// Runs git in `cwd` with `args`, supervised (own process group, deadline, killed on
    /// shutdown), with a cleaned git environment; its stdout.
    fn git<I, S>(&self, cwd: &Path, args: I) -> Result<String, InstallError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let git = which::which("git").map_err(|_| InstallError::GitMissing)?;
        let limit = self.config.install.git_timeout();
        let mut spec = ProcessSpec::new(&git, cwd).args(args);
        let command = std::iter::once("git".to_owned())
            .chain(spec.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        spec.env = EnvSpec {
            clear: false,
            set: vec![
                ("GIT_TERMINAL_PROMPT".into(), "0".into()),
                // Transports that cannot run commands; `ext::` and `fd::` stay refused even
                // when a repository redirects to them.
                ("GIT_ALLOW_PROTOCOL".into(), "file:git:http:https:ssh".into()),
                ("LC_ALL".into(), "C".into()),
            ],
            remove: GIT_LOCATION_VARS.iter().map(Into::into).collect(),
        };
        spec.limits = ProcessLimits {
            timeout: Some(limit),
            grace_period: Duration::from_millis(500),
            max_stdout_bytes: 1024 * 1024,
            stderr_tail_bytes: GIT_STDERR_TAIL,
            max_memory_bytes: None,
            echo_stderr: agenthub_env::stream_tool_output(),
            ..ProcessLimits::default()
        };
        spec.die_with_parent = self.config.runtime.kill_agents_with_runtime;
        let out = StdProcessBackend.run_blocking(&spec).map_err(|e| match e {
            agenthub_process::ProcessError::Cancelled => InstallError::Cancelled,
            other => InstallError::Git { command: command.clone(), status: other.to_string(), stderr: None },
        })?;
        let stderr = out.stderr_text();
        match out.termination {
            Some(Termination::Timeout) => return Err(InstallError::GitTimeout { command, limit, stderr }),
            Some(Termination::Cancelled) => return Err(InstallError::Cancelled),
            _ => {}
        }
        if out.status.success() && out.termination.is_none() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let status = match out.status {
            agenthub_process::ExitStatus::Exited(code) => format!("exit status {code}"),
            agenthub_process::ExitStatus::Signaled(sig) => format!("killed by signal {sig}"),
        };
        Err(InstallError::Git { command, status, stderr })
    }
}

/// The install record of the agent at the slot's target, when agenthub installed it; an
/// error when something else is there.
fn owned_install(slot: &Slot) -> Result<Option<InstallRecord>, InstallError> {
    let meta = match std::fs::symlink_metadata(&slot.target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(InstallError::Io { action: "inspect", path: slot.target.clone(), source }),
        Ok(meta) => meta,
    };
    if !meta.is_dir() {
        return Err(InstallError::NotOurs {
            path: slot.target.clone(),
            what: if meta.file_type().is_symlink() { "a symlink" } else { "not a directory" }.to_owned(),
        });
    }
    match read_install_record(&slot.target) {
        Some(record) if record.agent_name == slot.id.to_string() => Ok(Some(record)),
        Some(record) => Err(InstallError::NotOurs {
            path: slot.target.clone(),
            what: format!("its {INSTALL_RECORD_FILE} names {}", record.agent_name),
        }),
        None => Err(InstallError::NotOurs {
            path: slot.target.clone(),
            what: format!("it has no {INSTALL_RECORD_FILE} (cloned or copied by hand?)"),
        }),
    }
}

/// A staging directory: created empty and marked, removed (with whatever is in it) on drop.
struct Staging {
    root: PathBuf,
    /// `<root>/agent`: the tree being installed, or the one being removed.
    tree: PathBuf,
}

impl Staging {
    fn create(slot: &Slot) -> Result<Self, InstallError> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let root = slot.ns_dir.join(format!(".{}.staging-{}-{nanos:09}", slot.id.name(), std::process::id()));
        std::fs::create_dir(&root).map_err(|source| InstallError::Io {
            action: "create",
            path: root.clone(),
            source,
        })?;
        let staging = Self { tree: root.join("agent"), root };
        write_new(&staging.root.join(STAGING_MARKER), b"agenthub install staging\n")?;
        Ok(staging)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        remove_staging_dir(&self.root);
    }
}

/// Removes a staging directory if it is ours: a real directory holding the marker.
fn remove_staging_dir(root: &Path) {
    let is_dir = std::fs::symlink_metadata(root).is_ok_and(|m| m.is_dir());
    let marked = std::fs::symlink_metadata(root.join(STAGING_MARKER)).is_ok_and(|m| m.is_file());
    if is_dir
        && marked
        && let Err(e) = std::fs::remove_dir_all(root)
    {
        tracing::warn!("cannot remove {}: {e}", root.display());
    }
}

/// Removes what killed installs of this agent left (the caller holds its lock, so no live
/// install owns them).
fn remove_stale_staging(slot: &Slot) {
    let prefix = format!(".{}.staging-", slot.id.name());
    let Ok(entries) = std::fs::read_dir(&slot.ns_dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
            remove_staging_dir(&entry.path());
        }
    }
}

/// Stale staging directories under `agents_root` (left by killed installs): for `doctor`.
pub fn leftover_staging(agents_root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for ns in std::fs::read_dir(agents_root).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.')
                && name.contains(".staging-")
                && entry.path().join(STAGING_MARKER).is_file()
            {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    use std::io::Write as _;
    let io = |source| InstallError::Io { action: "write", path: path.to_path_buf(), source };
    let mut file =
        File::options().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)
}

fn c_path(path: &Path) -> Result<CString, InstallError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| InstallError::Io {
        action: "name",
        path: path.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let io = |p: &Path| c_path(p).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput));
    let (from_c, to_c) = (io(from)?, io(to)?);
    // SAFETY: both paths are NUL-terminated C strings that live across the call.
    let rc =
        unsafe { libc::renameat2(libc::AT_FDCWD, from_c.as_ptr(), libc::AT_FDCWD, to_c.as_ptr(), flags) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Moves `from` to `to`, failing if `to` exists.
fn rename_noreplace(from: &Path, to: &Path) -> Result<(), InstallError> {
    renameat2(from, to, libc::RENAME_NOREPLACE).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            InstallError::NotOurs { path: to.to_path_buf(), what: "it appeared while installing".to_owned() }
        } else {
            InstallError::Io { action: "move into place", path: to.to_path_buf(), source }
        }
    })
}

/// Swaps `staged` and `target` atomically: afterwards `target` is the new install and
/// `staged` the old one.
fn exchange(staged: &Path, target: &Path) -> Result<(), InstallError> {
    renameat2(staged, target, libc::RENAME_EXCHANGE).map_err(|source| InstallError::Io {
        action: "swap in",
        path: target.to_path_buf(),
        source,
    })
}

/// Copies the agent directory `from` into a new `to`: regular files and directories, and
/// symlinks as symlinks (validation then refuses any that leave the directory). The
/// environment (`<venv>`, `<venv>.d`, `<venv>.lock`), `.git` and an install record are
/// left out; FIFOs, sockets and devices are skipped. Bounded in entries and depth.
fn copy_agent_dir(from: &Path, to: &Path, venv: &str) -> Result<(), InstallError> {
    let meta = std::fs::metadata(from).map_err(|source| InstallError::Io {
        action: "read",
        path: from.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(InstallError::Io {
            action: "read",
            path: from.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    let skip_top = [
        venv.to_owned(),
        format!("{venv}.d"),
        format!("{venv}.lock"),
        ".git".to_owned(),
        INSTALL_RECORD_FILE.to_owned(),
    ];
    let mut budget = MAX_COPY_ENTRIES;
    copy_tree(from, to, 0, &skip_top, &mut budget)
}

fn copy_tree(
    from: &Path,
    to: &Path,
    depth: usize,
    skip_top: &[String],
    budget: &mut usize,
) -> Result<(), InstallError> {
    let io = |action, path: &Path, source| InstallError::Io { action, path: path.to_path_buf(), source };
    let too_big = |path: &Path| {
        io(
            "copy",
            path,
            std::io::Error::other(format!("more than {MAX_COPY_ENTRIES} entries or {MAX_COPY_DEPTH} levels")),
        )
    };
    if depth > MAX_COPY_DEPTH {
        return Err(too_big(from));
    }
    std::fs::create_dir(to).map_err(|e| io("create", to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io("read", from, e))? {
        let entry = entry.map_err(|e| io("read", from, e))?;
        let name = entry.file_name();
        if depth == 0 && skip_top.iter().any(|s| name.as_bytes() == s.as_bytes()) {
            continue;
        }
        *budget = budget.checked_sub(1).ok_or_else(|| too_big(from))?;
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().map_err(|e| io("inspect", &src, e))?;
        if kind.is_dir() {
            copy_tree(&src, &dst, depth + 1, skip_top, budget)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&src).map_err(|e| io("read", &src, e))?;
            std::os::unix::fs::symlink(link, &dst).map_err(|e| io("create", &dst, e))?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| io("copy", &src, e))?;
        }
    }
    Ok(())
}

/// Bytes of the regular files under `dir` (not following symlinks), bounded like a copy.
pub(crate) fn tree_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: usize, budget: &mut usize) -> u64 {
        if depth > MAX_COPY_DEPTH {
            return 0;
        }
        let mut total = 0;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                total += walk(&entry.path(), depth + 1, budget);
            } else if meta.is_file() {
                total += meta.len();
            }
        }
        total
    }
    let mut budget = 10 * MAX_COPY_ENTRIES;
    walk(dir, 0, &mut budget)
}
