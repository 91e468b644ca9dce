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
    AgentId, AgentManifest, AgentRuntimeError, Config, HomeInstallRecord, INSTALL_RECORD_FILE, InstallRecord,
    InstallSource, MANIFEST_FILE_NAMES, Permissions, SourceError, SourceKind, read_install_record,
};
use agenthub_env::{BuildProgress, EnvError, EnvironmentManager};
use agenthub_fs::{LockError, LockStep, LockedFile, Wait};
use agenthub_process::{EnvSpec, ToolOutcome, ToolRun};
use serde::Serialize;

use agenthub_catalog::{
    Problem, STAGING_MARKER, agenthub_names, check_dir, check_permissions, is_staging_of, left_out,
};

/// Most entries (files, directories, symlinks) one install puts on disk: a directory
/// copy stops there, a git checkout is refused before it starts.
pub const MAX_COPY_ENTRIES: usize = 100_000;

/// Deepest directory nesting one install puts on disk (directory copy and git checkout).
pub const MAX_COPY_DEPTH: usize = 64;

/// Most bytes of files one install puts on disk (directory copy and git checkout).
pub const MAX_COPY_BYTES: u64 = 1024 * 1024 * 1024;

/// Longest `git ls-tree` listing read when sizing a checkout: [`MAX_COPY_ENTRIES`] entries
/// of paths up to about 300 bytes; a longer one is refused as too large.
const MAX_LISTING_BYTES: usize = 32 * 1024 * 1024;

/// Largest `.git/index` copied to tell whether a directory's copy is its commit.
const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// Configuration on every git command agenthub runs, ahead of the user's: no fsmonitor
/// daemon or hook (agenthub's clones are not the user's work trees), no submodules.
const GIT_OVERRIDES: [&str; 6] =
    ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "submodule.recurse=false"];

/// `$GIT_DIR/info/attributes` of every repository agenthub checks out or compares: it
/// outranks the repository's `.gitattributes`, so no filter driver (even one the user
/// configured, such as Git LFS), `ident`, encoding or end-of-line conversion chosen by the
/// repository applies. Files are checked out byte for byte as committed, which is what
/// the size check before the checkout counted.
const NEUTRAL_ATTRIBUTES: &str = "* -text -filter -ident -working-tree-encoding\n";

/// Longest agent name part accepted for an install.
const MAX_NAME_LEN: usize = 100;

/// Problems listed in an [`InstallError::Invalid`] message (all are in the error).
const SHOWN_PROBLEMS: usize = 10;

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

/// Where an install reports its steps (the CLI draws a spinner on a terminal), and, as a
/// [`BuildProgress`], the environment builds of the runtime that holds it.
pub trait Progress: BuildProgress {
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

impl BuildProgress for NoProgress {}

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
    /// What the agent declared it needs (`permissions:` in agent.yaml), as recorded in the
    /// home: what its calls are held to until it is installed again.
    pub permissions: Permissions,
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
    /// An agent id that is not `ns/name`.
    #[error(
        "`{agent}` is not an agent id (ns/name, each part [A-Za-z0-9][A-Za-z0-9._-]*, at most 100 characters)"
    )]
    BadId {
        /// As given.
        agent: String,
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
    /// What would be installed is larger than an install may be ([`MAX_COPY_ENTRIES`],
    /// [`MAX_COPY_DEPTH`], [`MAX_COPY_BYTES`]); refused before a git checkout starts, and
    /// as soon as a directory copy passes the limit.
    #[error("{source_arg} is too large to install: {what}")]
    TooLarge {
        /// SOURCE as given.
        source_arg: String,
        /// Which limit, and where.
        what: String,
    },
    /// What was fetched is not a valid agent.
    #[error("{source_arg} is not a valid agent: {}", summarize(problems))]
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
            Self::BadId { .. } => {
                "Name an installed agent as ns/name (`agenthub list` shows them)".to_owned()
            }
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
            Self::TooLarge { .. } => format!(
                "An agent is installed whole: keep it under {MAX_COPY_ENTRIES} files and directories, {MAX_COPY_DEPTH} levels and 1 GiB (large data belongs in a download at run time). Nothing was installed; the previous install, if any, was kept."
            ),
            Self::Invalid { .. } => {
                "Fix the agent in its repository (`agenthub validate` on a checkout lists every problem)"
                    .to_owned()
            }
            // Nothing is installed to rebuild: what the environment's own advice would say.
            Self::Environment { source: EnvError::CommandFailed { .. } | EnvError::Spawn { .. }, .. } => {
                "Check the agent's requirements and the installer's output above, then install again \
                 (--no-env installs it without building its environment). The previous install, if any, \
                 was kept."
                    .to_owned()
            }
            Self::Environment { source, agent } => {
                format!("{} The previous install, if any, was kept.", source.suggestion_for(Some(agent)))
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
    /// `GitTimeout`, `RefNotFound`, `TooLarge`, `InvalidAgent`, `EnvironmentError`, `Busy`,
    /// `NotConfirmed`, `IoError` or `Cancelled`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Source(_) | Self::NoName { .. } | Self::BadId { .. } => "InvalidSource",
            Self::AlreadyInstalled { .. } => "AlreadyInstalled",
            Self::NotOurs { .. } => "NotOurs",
            Self::NotInstalled { .. } => "NotInstalled",
            Self::GitMissing => "GitMissing",
            Self::Git { .. } => "GitFailed",
            Self::GitTimeout { .. } => "GitTimeout",
            Self::RefNotFound { .. } => "RefNotFound",
            Self::TooLarge { .. } => "TooLarge",
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
        matches!(self, Self::Source(_) | Self::NoName { .. } | Self::BadId { .. } | Self::NotConfirmed { .. })
    }
}

/// The first [`SHOWN_PROBLEMS`] problems, each cut to 300 characters, and how many more.
fn summarize(problems: &[Problem]) -> String {
    let mut shown: Vec<String> = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .map(|p| {
            let text = p.to_string();
            match text.char_indices().nth(300) {
                Some((at, _)) => format!("{}…", &text[..at]),
                None => text,
            }
        })
        .collect();
    if problems.len() > SHOWN_PROBLEMS {
        shown.push(format!("and {} more", problems.len() - SHOWN_PROBLEMS));
    }
    shown.join("; ")
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
            InstallError::Environment { source, .. } => match source.into_runtime_error(None) {
                AgentRuntimeError::Environment { message, stderr, .. } => {
                    AgentRuntimeError::Environment { message, stderr, suggestion }
                }
                other => other,
            },
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

/// One agent's paths.
struct Slot {
    id: AgentId,
    /// `<root>/<ns>`.
    ns_dir: PathBuf,
    /// `<root>/<ns>/<name>`.
    target: PathBuf,
    /// `<home>/installs/<ns>/<name>.json`: the home's record of the agent (the install ids
    /// this home made for it, the permissions approved at install).
    ids_file: PathBuf,
    /// `<home>/locks/<ns>/<name>.install.lock`.
    lock_file: PathBuf,
}

impl Installer {
    /// An installer for `config`'s home that builds environments with `environments`.
    pub fn new(config: Config, environments: EnvironmentManager, progress: Arc<dyn Progress>) -> Self {
        Self { config, environments, progress }
    }

    /// Installs SOURCE (a directory, a git URL with an optional `@ref`, or `ns/name[@ref]`).
    pub fn install(&self, source: &str, options: &InstallOptions) -> Result<Installed, InstallError> {
        let parsed =
            match InstallSource::parse(source, &self.config.registry, std::env::home_dir().as_deref()) {
                Err(SourceError::Unrecognised(s)) if Path::new(source).is_dir() => {
                    return Err(SourceError::Unrecognised(format!(
                        "{s}` (to install the directory, write `./{source}"
                    ))
                    .into());
                }
                other => other?,
            };
        if matches!(parsed, InstallSource::Git { shorthand: Some(_), .. }) && Path::new(source).is_dir() {
            self.progress.notice(&format!(
                "note: installing {source} from the registry; to install the directory ./{source}, write ./{source}"
            ));
        }
        let parsed = match parsed {
            // Recorded (and updated) from where it is, whatever the current directory.
            InstallSource::Path(dir) => {
                InstallSource::Path(dir.canonicalize().map_err(|source| InstallError::Io {
                    action: "read",
                    path: dir.clone(),
                    source,
                })?)
            }
            git @ InstallSource::Git { .. } => git,
        };
        let id = match &options.as_id {
            Some(id) => id.clone(),
            None => {
                parsed.default_id().ok_or_else(|| InstallError::NoName { source_arg: source.to_owned() })?
            }
        };
        let source = match &parsed {
            InstallSource::Path(dir) => dir.display().to_string(),
            InstallSource::Git { .. } => source.to_owned(),
        };
        self.install_parsed(&source, &parsed, &id, options)
    }

    /// Installs the agent `id` from the registry when it is not installed (auto-install on
    /// first use); an agent installed meanwhile by another process is success.
    pub fn install_missing(&self, id: &AgentId) -> Result<Installed, InstallError> {
        let source = id.to_string();
        let parsed = InstallSource::parse(&source, &self.config.registry, None)?;
        let options = InstallOptions { if_missing: true, ..InstallOptions::default() };
        self.install_parsed(&source, &parsed, id, &options)
    }

    /// Installs the recorded source of `agent` again (the URL or directory it was installed
    /// from, not the registry as configured now), at `reference` when given, else at the
    /// recorded ref; the current install stays if anything fails.
    pub fn update(&self, agent: &str, reference: Option<&str>) -> Result<Installed, InstallError> {
        let id = parse_id(agent)?;
        let slot = self.slot(&id);
        let record = Self::owned_install(&slot)?
            .ok_or_else(|| InstallError::NotInstalled { agent: agent.to_owned() })?;
        let reference = match reference {
            Some(r) => Some(agenthub_core::validate_ref(r)?),
            None => record.requested_ref.clone(),
        };
        let (parsed, source) = if record.source_kind == SourceKind::Git {
            let base = match &record.requested_ref {
                Some(old) => {
                    record.source.strip_suffix(&format!("@{old}")).unwrap_or(&record.source).to_owned()
                }
                None => record.source.clone(),
            };
            let source = match &reference {
                Some(r) => format!("{base}@{r}"),
                None => base,
            };
            (InstallSource::Git { url: record.github_url.clone(), reference, shorthand: None }, source)
        } else {
            if let Some(reference) = reference {
                return Err(SourceError::BadRef {
                    reference,
                    why: "the agent was installed from a directory, which has no refs",
                }
                .into());
            }
            (InstallSource::Path(PathBuf::from(&record.github_url)), record.github_url.clone())
        };
        let options = InstallOptions { as_id: Some(id.clone()), force: true, ..InstallOptions::default() };
        self.install_parsed(&source, &parsed, &id, &options)
    }

    /// Removes an installed agent and its environments. Only an install this home made is
    /// removed.
    pub fn remove(&self, agent: &str) -> Result<Removed, InstallError> {
        let id = parse_id(agent)?;
        let slot = self.slot(&id);
        let _lock = self.lock(&slot)?;
        remove_stale_staging(&slot);
        if Self::owned_install(&slot)?.is_none() {
            return Err(InstallError::NotInstalled { agent: agent.to_owned() });
        }
        let mut staging = Staging::create(&slot)?;
        rename_noreplace(&slot.target, &staging.tree)?;
        self.write_home(&slot, &[], None)?;
        let freed_bytes = tree_size(&staging.tree);
        staging.keep = in_use(&staging.tree);
        Ok(Removed { agent: id.to_string(), path: slot.target, freed_bytes })
    }

    fn install_parsed(
        &self,
        source: &str,
        parsed: &InstallSource,
        id: &AgentId,
        options: &InstallOptions,
    ) -> Result<Installed, InstallError> {
        check_id(id)?;
        let slot = self.slot(id);
        let _lock = self.lock(&slot)?;
        let existing = Self::owned_install(&slot)?;
        if let Some(record) = &existing {
            if options.if_missing {
                return Ok(Installed {
                    agent: id.to_string(),
                    path: slot.target.clone(),
                    record: record.clone(),
                    replaced: false,
                    environment_built: false,
                    already_installed: true,
                    permissions: Self::read_home(&slot).permissions.unwrap_or_default(),
                });
            }
            if !options.force {
                return Err(InstallError::AlreadyInstalled { agent: id.to_string(), path: slot.target });
            }
        }
        let created_ns = !slot.ns_dir.exists();
        let result = self.stage_and_swap(source, parsed, id, options, &slot, existing.as_ref());
        if result.is_err() && created_ns {
            // Nothing was installed: leave no empty namespace directory either.
            let _ = std::fs::remove_dir(&slot.ns_dir);
        }
        result
    }

    fn stage_and_swap(
        &self,
        source: &str,
        parsed: &InstallSource,
        id: &AgentId,
        options: &InstallOptions,
        slot: &Slot,
        existing: Option<&InstallRecord>,
    ) -> Result<Installed, InstallError> {
        Self::make_ns_dir(slot)?;
        remove_stale_staging(slot);
        let mut staging = Staging::create(slot)?;
        let venv = &self.config.environment.venv_location;
        let deadline = Instant::now().checked_add(self.config.install.git_timeout.as_duration());
        let commit_sha = match parsed {
            InstallSource::Git { url, reference, .. } => {
                let at = reference.as_ref().map(|r| format!(" at {r}")).unwrap_or_default();
                self.progress.step(&format!("cloning {url}{at}"));
                let commit = self.clone_repo(source, url, reference.as_deref(), &staging.tree, deadline)?;
                strip_ours(&staging.tree, venv)?;
                Some(commit)
            }
            InstallSource::Path(dir) => {
                if !MANIFEST_FILE_NAMES.iter().any(|n| dir.join(n).is_file()) {
                    return Err(InstallError::Invalid {
                        source_arg: source.to_owned(),
                        problems: vec![Problem::new(
                            Some("agent.yaml"),
                            "is missing (nor is there an agent.yml)",
                        )],
                    });
                }
                self.progress.step(&format!("copying {}", dir.display()));
                copy_agent_dir(source, dir, &staging.tree, venv)?;
                self.progress.step("reading the commit");
                let commit =
                    self.dir_commit(dir, &staging.tree, &staging.root.join("commit-check"), deadline);
                if agenthub_process::is_shut_down() {
                    return Err(InstallError::Cancelled);
                }
                commit
            }
        };
        self.progress.step("validating");
        let mut problems = check_dir(&staging.tree, venv);
        problems.extend(check_permissions(&staging.tree, &self.config));
        if !problems.is_empty() {
            return Err(InstallError::Invalid { source_arg: source.to_owned(), problems });
        }
        let (manifest, _) = AgentManifest::load(&staging.tree).map_err(|e| InstallError::Invalid {
            source_arg: source.to_owned(),
            problems: vec![Problem::new(Some("agent.yaml"), e.to_string())],
        })?;
        let install_id = random_id()?;
        let record = InstallRecord {
            agent_name: id.to_string(),
            github_url: match parsed {
                InstallSource::Git { url, .. } => url.clone(),
                InstallSource::Path(dir) => dir.display().to_string(),
            },
            commit_sha,
            requested_ref: parsed.reference().map(str::to_owned),
            installed_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            source: source.to_owned(),
            source_kind: SourceKind::of(parsed),
            agenthub_version: env!("CARGO_PKG_VERSION").to_owned(),
            install_id: Some(install_id.clone()),
        };
        write_new(
            &staging.tree.join(INSTALL_RECORD_FILE),
            &serde_json::to_vec_pretty(&record).unwrap_or_default(),
        )?;
        let environment_built = !options.no_env;
        if environment_built {
            self.progress.step("creating environment");
            pollster::block_on(self.environments.ensure_environment(&staging.tree, &manifest))
                .map_err(|source| InstallError::Environment { agent: id.to_string(), source })?;
        }
        self.progress.step("swapping in");
        // Both ids are ours while the swap happens; then only the new one. The permissions
        // recorded are the new install's from here on (the previous ones if the swap fails).
        let old_id = existing.and_then(|r| r.install_id.clone());
        let old_permissions = Self::read_home(slot).permissions;
        let permissions = manifest.permissions;
        self.write_home(
            slot,
            &[old_id.clone(), Some(install_id.clone())].into_iter().flatten().collect::<Vec<_>>(),
            Some(&permissions),
        )?;
        let replaced = existing.is_some();
        let swapped = if replaced {
            exchange(&staging.tree, &slot.target)
        } else {
            rename_noreplace(&staging.tree, &slot.target)
        };
        if let Err(e) = swapped {
            let _ = self.write_home(slot, &old_id.into_iter().collect::<Vec<_>>(), old_permissions.as_ref());
            return Err(e);
        }
        self.write_home(slot, &[install_id], Some(&permissions))?;
        if environment_built && self.environments.backend_kind() != agenthub_core::EnvBackendKind::Uv {
            // Only uv makes environments that can move (`--relocatable`): give the others
            // their final paths (entry points, activation scripts) by building in place.
            self.progress.step("re-creating environment in place");
            if let Ok((manifest, _)) = AgentManifest::load(&slot.target) {
                let rebuilt =
                    pollster::block_on(self.environments.rebuild_environment(&slot.target, &manifest));
                if let Err(e) = rebuilt {
                    tracing::warn!(
                        "the environment of {id} was built beside its target and could not be re-created in place: {e}"
                    );
                }
            }
        }
        // The previous install is now the staging tree: removed with it, unless a call is
        // still running in it (then the next install of this agent removes it).
        staging.keep = replaced && in_use(&staging.tree);
        drop(staging);
        Ok(Installed {
            agent: id.to_string(),
            path: slot.target.clone(),
            record,
            replaced,
            environment_built,
            already_installed: false,
            permissions,
        })
    }

    /// The paths of `id`.
    fn slot(&self, id: &AgentId) -> Slot {
        let ns_dir = self.config.agents_root().join(id.namespace());
        let home = &self.config.home;
        Slot {
            target: ns_dir.join(id.name()),
            ns_dir,
            ids_file: agenthub_core::home_install_record_path(home, id),
            lock_file: home.join("locks").join(id.namespace()).join(format!("{}.install.lock", id.name())),
            id: id.clone(),
        }
    }

    /// Creates `<root>/<ns>` if missing; it must be a real directory.
    fn make_ns_dir(slot: &Slot) -> Result<(), InstallError> {
        std::fs::create_dir_all(&slot.ns_dir).map_err(|source| InstallError::Io {
            action: "create",
            path: slot.ns_dir.clone(),
            source,
        })?;
        let meta = std::fs::symlink_metadata(&slot.ns_dir).map_err(|source| InstallError::Io {
            action: "inspect",
            path: slot.ns_dir.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(InstallError::NotOurs {
                path: slot.ns_dir.clone(),
                what: "a symlink or file where the namespace directory goes; agenthub never installs through one"
                    .to_owned(),
            });
        }
        Ok(())
    }

    /// The home's record of the agent (empty when there is none).
    fn read_home(slot: &Slot) -> HomeInstallRecord {
        let limit = agenthub_core::MAX_HOME_INSTALL_RECORD_BYTES;
        let Ok(bytes) = agenthub_fs::read_bounded(&slot.ids_file, limit) else {
            return HomeInstallRecord::default();
        };
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    /// Replaces the home's record of the agent: the ids it holds, and the permissions
    /// approved (atomically: a new file renamed over).
    fn write_home(
        &self,
        slot: &Slot,
        ids: &[String],
        permissions: Option<&Permissions>,
    ) -> Result<(), InstallError> {
        let dir = slot.ids_file.parent().unwrap_or(&self.config.home);
        std::fs::create_dir_all(dir).map_err(|source| InstallError::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        let record = HomeInstallRecord { ids: ids.to_vec(), permissions: permissions.cloned() };
        let text = serde_json::to_vec(&record).unwrap_or_default();
        agenthub_fs::write_atomic(&slot.ids_file, &text).map_err(|e| InstallError::Io {
            action: "write",
            path: e.path,
            source: e.source,
        })
    }

    /// The install record of the agent at the slot's target, when this home installed it
    /// (its `install_id` is one the home holds); an error when something else is there.
    fn owned_install(slot: &Slot) -> Result<Option<InstallRecord>, InstallError> {
        let meta = match std::fs::symlink_metadata(&slot.target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(InstallError::Io { action: "inspect", path: slot.target.clone(), source });
            }
            Ok(meta) => meta,
        };
        if !meta.is_dir() {
            return Err(InstallError::NotOurs {
                path: slot.target.clone(),
                what: if meta.file_type().is_symlink() { "a symlink" } else { "not a directory" }.to_owned(),
            });
        }
        let not_ours = |what: String| Err(InstallError::NotOurs { path: slot.target.clone(), what });
        match read_install_record(&slot.target) {
            None => not_ours(format!("it has no {INSTALL_RECORD_FILE} (cloned or copied by hand?)")),
            Some(record) => {
                let ids = Self::read_home(slot).ids;
                match &record.install_id {
                    Some(id) if record.agent_name == slot.id.to_string() && ids.contains(id) => {
                        Ok(Some(record))
                    }
                    _ => not_ours(format!(
                        "its {INSTALL_RECORD_FILE} is not one this agenthub home wrote (it may have come with the agent)"
                    )),
                }
            }
        }
    }

    /// Takes the agent's install lock, waiting at most as long as an install may take.
    fn lock(&self, slot: &Slot) -> Result<LockedFile, InstallError> {
        let path = &slot.lock_file;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| InstallError::Io {
                action: "create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let wait =
            self.config.install.git_timeout.as_duration() + self.config.runtime.build_timeout.as_duration();
        let mut say = || self.progress.step(&format!("waiting for another install of {}", slot.id));
        let waiting = Wait::default().on_contended(&mut say).cancelled_if(&agenthub_process::is_shut_down);
        LockedFile::acquire(path, Instant::now().checked_add(wait), waiting).map_err(|e| match e {
            LockError::Timeout { waited, .. } => InstallError::Busy { agent: slot.id.to_string(), waited },
            LockError::Cancelled { .. } => InstallError::Cancelled,
            LockError::NotRegular { path } => {
                InstallError::NotOurs { path, what: "not a regular file".to_owned() }
            }
            LockError::Symlink { path, source } | LockError::Io { step: LockStep::Open, path, source } => {
                InstallError::Io { action: "open the lock file", path, source }
            }
            LockError::Io { step: LockStep::Inspect, path, source } => {
                InstallError::Io { action: "inspect", path, source }
            }
            LockError::Io { step: LockStep::Lock, path, source } => {
                InstallError::Io { action: "lock", path, source }
            }
        })
    }

    /// Clones `url` into `dest` and checks out `reference` (the default branch when none);
    /// returns the commit. Every git command shares one deadline.
    ///
    /// The clone is made without a checkout; the tree of the commit is listed and sized
    /// first ([`check_listing`]: the limits of a directory copy), so a small repository of
    /// compressible blobs is refused before it fills the disk. The checkout is byte for
    /// byte ([`NEUTRAL_ATTRIBUTES`]).
    ///
    /// Nothing the repository holds runs: git reads the configuration of the new clone,
    /// which `git clone` writes (the remote cannot set any) on top of the user's own; hooks
    /// come from the user's template, never with a clone, and are off anyway
    /// ([`GIT_OVERRIDES`]); `.gitattributes` can only name drivers that configuration
    /// defines, and is outranked by [`NEUTRAL_ATTRIBUTES`]; submodules are not cloned; git
    /// refuses to check out a `.git` at any depth.
    fn clone_repo(
        &self,
        source: &str,
        url: &str,
        reference: Option<&str>,
        dest: &Path,
        deadline: Option<Instant>,
    ) -> Result<String, InstallError> {
        let mut clone: Vec<OsString> = vec!["clone".into(), "--no-checkout".into()];
        if !agenthub_env::stream_tool_output() {
            clone.push("--quiet".into());
        }
        clone.extend(["--".into(), url.into(), dest.as_os_str().to_owned()]);
        let cwd = dest.parent().unwrap_or(dest);
        self.git(cwd, clone, deadline)?;
        let commit = if let Some(reference) = reference {
            self.resolve_ref(dest, url, reference, deadline)?
        } else {
            self.git(dest, ["rev-parse", "--verify", "HEAD^{commit}"], deadline)?.trim().to_owned()
        };
        let listing = match self.git_output(
            dest,
            ["ls-tree", "-r", "-t", "-l", "-z", "--full-tree", &commit],
            deadline,
            MAX_LISTING_BYTES,
        )? {
            GitOutput::Complete(listing) => listing,
            GitOutput::Truncated { .. } => {
                return Err(InstallError::TooLarge {
                    source_arg: source.to_owned(),
                    what: format!(
                        "the list of its files is longer than {MAX_LISTING_BYTES} bytes (more than {MAX_COPY_ENTRIES} entries, or very long paths)"
                    ),
                });
            }
        };
        check_listing(&listing)
            .map_err(|what| InstallError::TooLarge { source_arg: source.to_owned(), what })?;
        let info = dest.join(".git/info");
        std::fs::create_dir_all(&info).map_err(|source| InstallError::Io {
            action: "create",
            path: info.clone(),
            source,
        })?;
        write_replacing(&info.join("attributes"), NEUTRAL_ATTRIBUTES.as_bytes())?;
        self.git(
            dest,
            ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", &commit],
            deadline,
        )?;
        Ok(commit)
    }

    /// The commit `reference` names in the clone at `repo`: a full commit id is that commit
    /// and nothing else (a branch named like it cannot take its place); otherwise a branch
    /// of the remote, then a tag, then an abbreviated commit.
    fn resolve_ref(
        &self,
        repo: &Path,
        url: &str,
        reference: &str,
        deadline: Option<Instant>,
    ) -> Result<String, InstallError> {
        let full_sha = matches!(reference.len(), 40 | 64) && reference.bytes().all(|b| b.is_ascii_hexdigit());
        let candidates = if full_sha {
            vec![reference.to_owned()]
        } else {
            vec![
                format!("refs/remotes/origin/{reference}"),
                format!("refs/tags/{reference}"),
                reference.to_owned(),
            ]
        };
        for candidate in candidates {
            let spec = format!("{candidate}^{{commit}}");
            match self.git(repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", &spec], deadline) {
                Ok(commit) if !commit.trim().is_empty() => return Ok(commit.trim().to_owned()),
                Err(e @ (InstallError::GitTimeout { .. } | InstallError::Cancelled)) => return Err(e),
                _ => {}
            }
        }
        Err(InstallError::RefNotFound { url: url.to_owned(), reference: reference.to_owned() })
    }

    /// The commit of the directory `dir` (canonical) when it is the top of a git work tree
    /// and `tree`, the copy made of it, is exactly that commit (nothing uncommitted, staged
    /// or not, in tracked files); `None` otherwise, or when it cannot tell.
    ///
    /// Nothing in `dir` runs, and git never reads its configuration or attributes: HEAD is
    /// read as files ([`agenthub_core::read_git_head`]), and the comparison is `git status`
    /// on a repository agenthub makes in `scratch` (its own configuration, HEAD and
    /// [`NEUTRAL_ATTRIBUTES`]; `dir`'s objects as a read-only alternate; a bounded copy of
    /// `dir`'s index) with the copy as its work tree, submodules ignored.
    fn dir_commit(
        &self,
        dir: &Path,
        tree: &Path,
        scratch: &Path,
        deadline: Option<Instant>,
    ) -> Option<String> {
        let commit = agenthub_core::read_git_head(dir)?;
        let objects = dir.join(".git/objects");
        let objects_text = objects.to_str().filter(|p| !p.contains('\n'))?;
        if !std::fs::symlink_metadata(&objects).is_ok_and(|m| m.is_dir()) {
            return None;
        }
        let (index, _) = agenthub_core::open_agent_file(dir, Path::new(".git/index")).ok()??;
        for sub in ["objects/info", "refs", "info"] {
            std::fs::create_dir_all(scratch.join(sub)).ok()?;
        }
        let format = if commit.len() == 64 {
            "\trepositoryformatversion = 1\n[extensions]\n\tobjectFormat = sha256\n"
        } else {
            "\trepositoryformatversion = 0\n"
        };
        let files = [
            ("config", format!("[core]\n\tbare = false\n{format}")),
            ("HEAD", format!("{commit}\n")),
            ("objects/info/alternates", format!("{objects_text}\n")),
            ("info/attributes", NEUTRAL_ATTRIBUTES.to_owned()),
        ];
        for (name, text) in files {
            write_new(&scratch.join(name), text.as_bytes()).ok()?;
        }
        let mut copy = File::options()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(scratch.join("index"))
            .ok()?;
        let copied = std::io::copy(&mut std::io::Read::take(index, MAX_INDEX_BYTES + 1), &mut copy).ok()?;
        if copied > MAX_INDEX_BYTES {
            return None;
        }
        let (git_dir, work_tree) = (scratch.as_os_str().to_owned(), tree.as_os_str().to_owned());
        let mut args: Vec<OsString> = Vec::new();
        for (flag, value) in [("--git-dir=", git_dir), ("--work-tree=", work_tree)] {
            let mut arg = OsString::from(flag);
            arg.push(value);
            args.push(arg);
        }
        args.extend(
            ["status", "--porcelain", "--untracked-files=no", "--ignore-submodules=all"].map(OsString::from),
        );
        // Any failure (a signal too: the caller then stops) is an unknown commit.
        let changes = self.git(scratch, args, deadline).ok()?;
        changes.trim().is_empty().then_some(commit)
    }

    /// Runs git in `cwd` with `args`, supervised (own process group, the fetch's deadline,
    /// killed on shutdown), with a cleaned git environment and no prompts; its stdout.
    fn git<I, S>(&self, cwd: &Path, args: I, deadline: Option<Instant>) -> Result<String, InstallError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        match self.git_output(cwd, args, deadline, 1024 * 1024)? {
            GitOutput::Complete(out) => Ok(String::from_utf8_lossy(&out).into_owned()),
            GitOutput::Truncated { command } => {
                Err(InstallError::Git { command, status: "printed more than 1 MiB".to_owned(), stderr: None })
            }
        }
    }

    /// [`Self::git`] keeping at most `max_stdout` bytes of stdout (git is stopped past
    /// them: [`GitOutput::Truncated`]). Every command runs with [`GIT_OVERRIDES`].
    fn git_output<I, S>(
        &self,
        cwd: &Path,
        args: I,
        deadline: Option<Instant>,
        max_stdout: usize,
    ) -> Result<GitOutput, InstallError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let git = which::which("git").map_err(|_| InstallError::GitMissing)?;
        let limit = self.config.install.git_timeout.as_duration();
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let command = std::iter::once("git".to_owned())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut set: Vec<(OsString, OsString)> = vec![
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            // Transports that cannot run commands; `ext::` and `fd::` stay refused even
            // when a repository redirects to them.
            ("GIT_ALLOW_PROTOCOL".into(), "file:git:http:https:ssh".into()),
            ("LC_ALL".into(), "C".into()),
        ];
        if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
            // No passphrase or host-key prompt that nobody can answer (git runs in a
            // process group of its own, without stdin).
            set.push(("GIT_SSH_COMMAND".into(), "ssh -o BatchMode=yes".into()));
        }
        let run = ToolRun {
            args: GIT_OVERRIDES.iter().map(OsString::from).chain(args).collect(),
            env: EnvSpec { clear: false, set, remove: GIT_LOCATION_VARS.iter().map(Into::into).collect() },
            deadline: deadline.or_else(|| Instant::now().checked_add(limit)),
            max_stdout_bytes: max_stdout,
            stderr_tail_bytes: GIT_STDERR_TAIL,
            echo_stderr: agenthub_env::stream_tool_output(),
            die_with_parent: self.config.runtime.kill_agents_with_runtime,
            ..ToolRun::new(&git, cwd)
        };
        let outcome = run.run().map_err(|e| match e {
            agenthub_process::ProcessError::Cancelled => InstallError::Cancelled,
            other => InstallError::Git { command: command.clone(), status: other.to_string(), stderr: None },
        })?;
        match outcome {
            ToolOutcome::Succeeded(stdout) => Ok(GitOutput::Complete(stdout)),
            ToolOutcome::TimedOut { stderr } => Err(InstallError::GitTimeout { command, limit, stderr }),
            ToolOutcome::StdoutCapped { .. } => Ok(GitOutput::Truncated { command }),
            ToolOutcome::Failed { status, stderr } => {
                Err(InstallError::Git { command, status: status.to_string(), stderr })
            }
        }
    }
}

/// What a git command printed on stdout.
enum GitOutput {
    /// All of it.
    Complete(Vec<u8>),
    /// More than the cap: git was stopped.
    Truncated {
        /// The command line.
        command: String,
    },
}

/// Checks a `git ls-tree -r -t -l -z` listing (every blob, symlink, submodule and
/// directory of a commit, with blob sizes) against the limits of a directory copy: at most
/// [`MAX_COPY_ENTRIES`] entries, none nested more than [`MAX_COPY_DEPTH`] levels, blobs
/// of at most [`MAX_COPY_BYTES`] together (symlinks are blobs; a submodule is an empty
/// directory). Which limit was passed, if one was.
fn check_listing(listing: &[u8]) -> Result<(), String> {
    let mut bytes: u64 = 0;
    for (count, entry) in listing.split(|&b| b == 0).filter(|e| !e.is_empty()).enumerate() {
        if count >= MAX_COPY_ENTRIES {
            return Err(format!(
                "it has more than {MAX_COPY_ENTRIES} entries (files, directories and links)"
            ));
        }
        // `<mode> <type> <object> <size>\t<path>`; the size is `-` for all but blobs.
        let tab = entry.iter().position(|&b| b == b'\t').ok_or("git listed an entry it did not describe")?;
        let (head, path) = (&entry[..tab], &entry[tab + 1..]);
        let depth = path.split(|&b| b == b'/').count() - 1;
        if depth > MAX_COPY_DEPTH {
            return Err(format!(
                "it nests directories more than {MAX_COPY_DEPTH} levels deep ({}…)",
                String::from_utf8_lossy(&path[..path.len().min(200)])
            ));
        }
        let size = head.rsplit(|&b| b == b' ').next().unwrap_or_default();
        if size != b"-" {
            let size: u64 = std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("git listed an entry without a size")?;
            bytes = bytes.saturating_add(size);
            if bytes > MAX_COPY_BYTES {
                return Err(format!("its files add up to more than 1 GiB ({MAX_COPY_BYTES} bytes)"));
            }
        }
    }
    Ok(())
}

/// `agent` as an id, or a usage error.
fn parse_id(agent: &str) -> Result<AgentId, InstallError> {
    let id: AgentId = agent.parse().map_err(|_| InstallError::BadId { agent: agent.to_owned() })?;
    check_id(&id)?;
    Ok(id)
}

fn check_id(id: &AgentId) -> Result<(), InstallError> {
    if id.namespace().len() > MAX_NAME_LEN || id.name().len() > MAX_NAME_LEN {
        return Err(InstallError::BadId { agent: id.to_string() });
    }
    Ok(())
}

/// 128 random bits, hex.
fn random_id() -> Result<String, InstallError> {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if usize::try_from(n).ok() != Some(bytes.len()) {
        return Err(InstallError::Io {
            action: "get random bytes for",
            path: PathBuf::from("the install id"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(bytes.iter().fold(String::with_capacity(32), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

/// Removes from a fresh clone what only agenthub may make there: the environment paths
/// (`<venv>`, `<venv>.d`, `<venv>.lock`) and an install record. The clone is agenthub's own
/// staging tree; nothing is followed through a symlink.
fn strip_ours(tree: &Path, venv: &str) -> Result<(), InstallError> {
    for name in agenthub_names(venv) {
        let path = tree.join(&name);
        let removed = match std::fs::symlink_metadata(&path) {
            Err(_) => continue,
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
        };
        removed.map_err(|source| InstallError::Io { action: "remove", path, source })?;
    }
    Ok(())
}

/// Whether a process has its working directory in `dir` (a call still running in a
/// previous install).
fn in_use(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else { return false };
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|entry| {
        entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
    })
}

/// A staging directory: created empty and marked, removed (with whatever is in it) on drop
/// unless `keep` is set.
struct Staging {
    root: PathBuf,
    /// `<root>/agent`: the tree being installed, or the one being removed.
    tree: PathBuf,
    /// Leave it for the next install of the agent (a call still runs in it).
    keep: bool,
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
        let staging = Self { tree: root.join("agent"), root, keep: false };
        write_new(&staging.root.join(STAGING_MARKER), b"agenthub install staging\n")?;
        Ok(staging)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            remove_staging_dir(&self.root);
        }
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
/// install owns them), unless a call still runs in one.
fn remove_stale_staging(slot: &Slot) {
    let Ok(entries) = std::fs::read_dir(&slot.ns_dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(|n| is_staging_of(n, slot.id.name()))
            && !in_use(&entry.path())
        {
            remove_staging_dir(&entry.path());
        }
    }
}

/// Writes `path` (in a directory agenthub made), replacing a file there; never through a
/// symlink.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    use std::io::Write as _;
    let io = |source| InstallError::Io { action: "write", path: path.to_path_buf(), source };
    let mut file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    use std::io::Write as _;
    let io = |source| InstallError::Io { action: "write", path: path.to_path_buf(), source };
    let mut file =
        File::options().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (from_c, to_c) = (c(from)?, c(to)?);
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

/// Copies the agent directory `from` into a new `to`: regular files (opened without
/// following symlinks, never blocking) and directories, and symlinks as symlinks
/// (validation then refuses any that leave the directory). What [`left_out`] names is not
/// copied (`.git` and agenthub's own files, at the top); FIFOs, sockets and devices are
/// skipped. Bounded in entries, depth and bytes ([`InstallError::TooLarge`]); stops on
/// shutdown.
fn copy_agent_dir(source: &str, from: &Path, to: &Path, venv: &str) -> Result<(), InstallError> {
    let mut budget = (MAX_COPY_ENTRIES, MAX_COPY_BYTES);
    copy_tree(from, to, 0, venv, &mut budget).map_err(|e| match e {
        CopyError::TooLarge(what) => InstallError::TooLarge { source_arg: source.to_owned(), what },
        CopyError::Install(e) => e,
    })
}

/// Why a copy stopped.
enum CopyError {
    /// A limit was passed: which.
    TooLarge(String),
    /// Anything else.
    Install(InstallError),
}

impl From<InstallError> for CopyError {
    fn from(e: InstallError) -> Self {
        Self::Install(e)
    }
}

fn copy_tree(
    from: &Path,
    to: &Path,
    depth: usize,
    venv: &str,
    budget: &mut (usize, u64),
) -> Result<(), CopyError> {
    let io = |action, path: &Path, source| InstallError::Io { action, path: path.to_path_buf(), source };
    if depth > MAX_COPY_DEPTH {
        return Err(CopyError::TooLarge(format!(
            "it nests directories more than {MAX_COPY_DEPTH} levels deep ({})",
            from.display()
        )));
    }
    std::fs::create_dir(to).map_err(|e| io("create", to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io("read", from, e))? {
        if agenthub_process::is_shut_down() {
            return Err(InstallError::Cancelled.into());
        }
        let entry = entry.map_err(|e| io("read", from, e))?;
        let name = entry.file_name();
        if left_out(&name, depth, venv) {
            continue;
        }
        budget.0 = budget.0.checked_sub(1).ok_or_else(|| {
            CopyError::TooLarge(format!(
                "it has more than {MAX_COPY_ENTRIES} entries (files, directories and links)"
            ))
        })?;
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().map_err(|e| io("inspect", &src, e))?;
        if kind.is_dir() {
            copy_tree(&src, &dst, depth + 1, venv, budget)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&src).map_err(|e| io("read", &src, e))?;
            std::os::unix::fs::symlink(link, &dst).map_err(|e| io("create", &dst, e))?;
        } else if kind.is_file() {
            let input = File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&src)
                .map_err(|e| io("read", &src, e))?;
            if !input.metadata().is_ok_and(|m| m.is_file()) {
                continue; // swapped for something else since it was listed
            }
            let mut output =
                File::options().write(true).create_new(true).open(&dst).map_err(|e| io("create", &dst, e))?;
            let copied =
                std::io::copy(&mut std::io::Read::take(input, budget.1.saturating_add(1)), &mut output)
                    .map_err(|e| io("copy", &src, e))?;
            budget.1 = budget.1.checked_sub(copied).ok_or_else(|| {
                CopyError::TooLarge(format!("its files add up to more than 1 GiB ({MAX_COPY_BYTES} bytes)"))
            })?;
        }
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_agents_are_summarised_not_dumped() {
        let problems: Vec<Problem> =
            (0..50).map(|i| Problem::new(Some(&format!("f{i}")), "x".repeat(1000))).collect();
        let text = summarize(&problems);
        assert!(text.contains("and 40 more"), "{text}");
        assert!(text.len() < 4000, "{}", text.len());
    }

    #[test]
    fn listings_are_held_to_the_limits_of_a_copy() {
        let oid = "0".repeat(40);
        let entry = |mode: &str, kind: &str, size: &str, path: &str| {
            format!("{mode} {kind} {oid} {size:>7}\t{path}\0")
        };
        let listing = |entries: &[String]| entries.concat().into_bytes();
        let fine = [
            entry("040000", "tree", "-", "src"),
            entry("100644", "blob", "12", "src/a b\tc.py"),
            entry("120000", "blob", "9", "link"),
            entry("160000", "commit", "-", "sub"),
        ];
        assert_eq!(check_listing(&listing(&fine)), Ok(()));
        assert_eq!(check_listing(b""), Ok(()));
        let half = (MAX_COPY_BYTES / 2).to_string();
        let err = check_listing(&listing(&[
            entry("100644", "blob", &half, "a"),
            entry("100644", "blob", &half, "b"),
        ]));
        assert_eq!(err, Ok(()), "exactly the limit is allowed");
        let err = check_listing(&listing(&[
            entry("100644", "blob", &half, "a"),
            entry("100644", "blob", &half, "b"),
            entry("120000", "blob", "1", "c"),
        ]));
        assert!(err.unwrap_err().contains("1 GiB"));
        let deep = format!("{}f", "d/".repeat(MAX_COPY_DEPTH));
        assert_eq!(check_listing(&listing(&[entry("100644", "blob", "1", &deep)])), Ok(()));
        let deeper = format!("d/{deep}");
        assert!(
            check_listing(&listing(&[entry("100644", "blob", "1", &deeper)])).unwrap_err().contains("levels")
        );
        let many: Vec<String> =
            (0..=MAX_COPY_ENTRIES).map(|i| entry("100644", "blob", "0", &format!("f{i}"))).collect();
        assert!(check_listing(&listing(&many)).unwrap_err().contains("entries"));
        assert_eq!(check_listing(&listing(&many[1..])), Ok(()));
        assert!(check_listing(b"100644 blob x 1 no-tab\0").is_err());
        assert!(check_listing(b"100644 blob x huge\tf\0").is_err());
    }

    #[test]
    fn what_an_install_leaves_out_is_only_at_the_top() {
        use std::ffi::OsStr;
        for name in [".git", ".venv", ".venv.d", ".venv.lock", INSTALL_RECORD_FILE] {
            assert!(left_out(OsStr::new(name), 0, ".venv"), "{name}");
            assert!(!left_out(OsStr::new(name), 1, ".venv"), "{name}");
        }
        assert!(!left_out(OsStr::new(".venv"), 0, "env"));
        assert!(!left_out(OsStr::new(".gitignore"), 0, ".venv"));
    }

    #[test]
    fn random_ids_differ() {
        let (a, b) = (random_id().unwrap(), random_id().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
