//! `agenthub doctor`: what this machine and the agenthub home look like, and every problem
//! found with its fix. Reads and probes only; changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agenthub_core::{AgentManifest, Config, list_installed};
use agenthub_env::{EnvState, FoundUv, UvOrigin, python_candidates, tool_version};
use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something does not work: `doctor` exits 1.
    Error,
    /// Works, but worth fixing (space, speed, leftovers).
    Warning,
}

/// One problem `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorProblem {
    /// How bad it is.
    pub severity: Severity,
    /// A stable name for the kind of problem (`no_python`, `env_foreign`, …).
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
    /// The path concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// An interpreter found on `PATH`.
#[derive(Debug, Clone, Serialize)]
pub struct InterpreterReport {
    /// Where it was found on `PATH`.
    pub path: PathBuf,
    /// The real executable (`sys.executable`), when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<PathBuf>,
    /// `3.11.7`, when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A pyenv shim that runs no Python: its version is not installed, or not selected
    /// (`pyenv global`, `pyenv local`). Not a problem: agenthub skips it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pyenv_shim: bool,
}

/// A tool agenthub uses.
#[derive(Debug, Clone, Serialize)]
pub struct ToolReport {
    /// The executable (for pip and a `python -m virtualenv`: the interpreter).
    pub path: PathBuf,
    /// What `--version` printed, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// For uv: `path` (found on PATH) or `provisioned` (installed into `<home>/tools/uv`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<UvOrigin>,
}

/// The tools agenthub uses; `null` when not found.
#[derive(Debug, Clone, Serialize)]
pub struct ToolsReport {
    /// uv, the one environments are built with.
    pub uv: Option<ToolReport>,
    /// pip of the first interpreter.
    pub pip: Option<ToolReport>,
    /// virtualenv.
    pub virtualenv: Option<ToolReport>,
    /// git, for `agenthub install`.
    pub git: Option<ToolReport>,
}

/// The agenthub home.
#[derive(Debug, Clone, Serialize)]
pub struct HomeReport {
    /// Its path.
    pub path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Whether this user can write it.
    pub writable: bool,
    /// Whether `config.yaml` is there.
    pub config_file: bool,
    /// Installed agents.
    pub agents: usize,
}

/// One installed agent's environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvReport {
    /// `ns/name`.
    pub agent: String,
    /// `ready`, `stale`, `broken`, `missing` or `foreign`.
    pub state: EnvState,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Everything `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// No problem of severity `error`.
    pub ok: bool,
    /// The home directory.
    pub home: HomeReport,
    /// Interpreters on `PATH`.
    pub interpreters: Vec<InterpreterReport>,
    /// uv, pip, virtualenv, git.
    pub tools: ToolsReport,
    /// Every installed agent's environment.
    pub environments: Vec<EnvReport>,
    /// Which sandbox layers this machine offers, and what each mode enforces.
    pub sandbox: SandboxReport,
    /// Every problem, errors first.
    pub problems: Vec<DoctorProblem>,
}

/// The sandbox on this machine (see `docs/design/sandbox.md`).
#[derive(Debug, Clone, Serialize)]
pub struct SandboxReport {
    /// User, PID, mount, IPC and network namespaces can be made.
    pub namespaces: bool,
    /// Why not, with the fix.
    pub namespaces_reason: Option<String>,
    /// The kernel's Landlock ABI (`None`: Landlock is off).
    pub landlock_abi: Option<i32>,
    /// seccomp filters can be installed.
    pub seccomp: bool,
    /// A sandboxed `/bin/true` with every layer required ran (`None`), or why it did not.
    pub trial_error: Option<String>,
    /// The layers `default` mode enforces here.
    pub default_layers: Vec<&'static str>,
    /// Whether `strict` mode can run calls here (it refuses when a layer is missing).
    pub strict_available: bool,
}

fn sandbox_report(problems: &mut Vec<DoctorProblem>) -> SandboxReport {
    let layers = agenthub_process::sandbox::probe();
    let trial_error = agenthub_process::sandbox::trial().err();
    let mut default_layers = Vec::new();
    if layers.namespaces && trial_error.is_none() {
        default_layers.extend(["namespaces", "private /tmp", "network proxy"]);
    }
    if layers.landlock_abi.is_some() {
        default_layers.push("Landlock");
    }
    if layers.seccomp {
        default_layers.push("seccomp");
    }
    let strict_available = layers.missing().is_none() && trial_error.is_none();
    if let Some(missing) = layers.missing().or_else(|| trial_error.clone()) {
        problems.push(problem(
            Severity::Warning,
            "sandbox_degraded",
            format!("the sandbox runs with fewer layers here: {missing}"),
            "Calls in the default mode still run, with the layers listed; strict mode refuses them until this \
             is fixed"
                .to_owned(),
        ));
    }
    SandboxReport {
        namespaces: layers.namespaces,
        namespaces_reason: layers.namespaces_reason.map(str::to_owned),
        landlock_abi: layers.landlock_abi,
        seccomp: layers.seccomp,
        trial_error,
        default_layers,
        strict_available,
    }
}

/// Whether the file at `path` is a pyenv shim: a small script that hands its name to
/// `pyenv exec` (read at most 4 KiB of a regular file; nothing is run).
fn is_pyenv_shim(path: &Path) -> bool {
    use std::io::Read as _;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|file| file.take(4096).read_to_end(&mut head));
    let head = String::from_utf8_lossy(&head);
    read.is_ok() && head.starts_with("#!") && head.contains("PYENV_ROOT") && head.contains(" exec ")
}

fn problem(severity: Severity, kind: &'static str, message: String, fix: String) -> DoctorProblem {
    DoctorProblem { severity, kind, message, fix, path: None }
}

/// Checks the machine and the home of `config`.
pub fn doctor(config: &Config) -> DoctorReport {
    let timeout = config.runtime.subprocess_timeout.as_duration().max(Duration::from_secs(5));
    let mut problems = Vec::new();

    let interpreters: Vec<InterpreterReport> = python_candidates(timeout)
        .into_iter()
        .map(|(path, found)| InterpreterReport {
            executable: found.as_ref().map(|i| i.path.clone()),
            version: found.as_ref().map(agenthub_env::Interpreter::version_string),
            pyenv_shim: found.is_none() && is_pyenv_shim(&path),
            path,
        })
        .collect();
    for broken in interpreters.iter().filter(|i| i.version.is_none() && !i.pyenv_shim) {
        problems.push(DoctorProblem {
            path: Some(broken.path.clone()),
            ..problem(
                Severity::Warning,
                "python_broken",
                format!("{} is on PATH but does not run", broken.path.display()),
                "Fix or remove it; agenthub skips it and tries the next interpreter".to_owned(),
            )
        });
    }
    let first_python = interpreters.iter().find_map(|i| i.executable.clone());
    if first_python.is_none() {
        problems.push(problem(
            Severity::Error,
            "no_python",
            "no working Python interpreter on PATH (python3, python, python3.N)".to_owned(),
            "Install Python 3 (agenthub never downloads one), or set environment.python_version to an \
             interpreter path"
                .to_owned(),
        ));
    }

    let tools = tools_report(config, first_python.as_deref(), timeout, &mut problems);
    let home = home_report(config, &mut problems);
    let environments = environments_report(config, &mut problems);
    leftovers(config, &mut problems);
    let sandbox = sandbox_report(&mut problems);

    problems.sort_by_key(|p| p.severity != Severity::Error);
    DoctorReport {
        ok: problems.iter().all(|p| p.severity != Severity::Error),
        home,
        interpreters,
        tools,
        environments,
        sandbox,
        problems,
    }
}

fn tools_report(
    config: &Config,
    python: Option<&Path>,
    timeout: Duration,
    problems: &mut Vec<DoctorProblem>,
) -> ToolsReport {
    let provision = agenthub_env::UvProvision::from_config(config);
    let uv = agenthub_env::find_uv(Some(&provision)).map(|FoundUv { path, origin }| ToolReport {
        version: tool_version(&path, &["--version"], timeout),
        path,
        origin: Some(origin),
    });
    if uv.is_none() {
        let (severity, fix) = if config.install.provision_uv {
            (
                Severity::Warning,
                format!(
                    "Environments are built with pip meanwhile; an agent that ships uv.lock gets uv installed \
                     into {} on first use. Or install it now: python3 -m pip install uv",
                    provision.dir().display()
                ),
            )
        } else {
            (
                Severity::Warning,
                "Install uv (python3 -m pip install uv) or set install.provision_uv: true; agents that ship \
                 uv.lock cannot be built without it"
                    .to_owned(),
            )
        };
        problems.push(problem(severity, "uv_missing", "uv is not on PATH".to_owned(), fix));
    }
    let pip = python.and_then(|py| {
        tool_version(py, &["-m", "pip", "--version"], timeout).map(|version| ToolReport {
            path: py.to_path_buf(),
            version: Some(version),
            origin: None,
        })
    });
    if pip.is_none() && python.is_some() {
        problems.push(problem(
            Severity::Warning,
            "pip_missing",
            "the first Python on PATH has no pip".to_owned(),
            "Install pip for it (python3 -m ensurepip), or use uv".to_owned(),
        ));
    }
    let virtualenv = match which::which("virtualenv") {
        Ok(path) => {
            Some(ToolReport { version: tool_version(&path, &["--version"], timeout), path, origin: None })
        }
        Err(_) => python.and_then(|py| {
            tool_version(py, &["-m", "virtualenv", "--version"], timeout).map(|version| ToolReport {
                path: py.to_path_buf(),
                version: Some(version),
                origin: None,
            })
        }),
    };
    let git = which::which("git").ok().map(|path| ToolReport {
        version: tool_version(&path, &["--version"], timeout),
        path,
        origin: None,
    });
    if git.is_none() {
        problems.push(problem(
            Severity::Warning,
            "git_missing",
            "git is not on PATH".to_owned(),
            "Install git (e.g. apt-get install git): `agenthub install` of a git URL or ns/name needs it"
                .to_owned(),
        ));
    }
    ToolsReport { uv, pip, virtualenv, git }
}

fn home_report(config: &Config, problems: &mut Vec<DoctorProblem>) -> HomeReport {
    let path = config.home.clone();
    let meta = std::fs::metadata(&path);
    let exists = meta.as_ref().is_ok_and(std::fs::Metadata::is_dir);
    let writable = exists && writable(&path);
    if meta.is_ok() && !exists {
        problems.push(DoctorProblem {
            path: Some(path.clone()),
            ..problem(
                Severity::Error,
                "home_not_a_directory",
                format!("the home {} is not a directory", path.display()),
                "Move it away, or point AGENTHUB_HOME (or --home) elsewhere".to_owned(),
            )
        });
    } else if exists && !writable {
        problems.push(DoctorProblem {
            path: Some(path.clone()),
            ..problem(
                Severity::Error,
                "home_not_writable",
                format!("the home {} is not writable", path.display()),
                "Fix its permissions, or point AGENTHUB_HOME (or --home) elsewhere".to_owned(),
            )
        });
    }
    HomeReport {
        config_file: path.join("config.yaml").exists(),
        agents: list_installed(&config.agents_root()).len(),
        exists,
        writable,
        path,
    }
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn environments_report(config: &Config, problems: &mut Vec<DoctorProblem>) -> Vec<EnvReport> {
    let mut reports = Vec::new();
    let mut unused = agenthub_env::Freed::default();
    for (id, dir) in list_installed(&config.agents_root()) {
        unused.merge(agenthub_env::unused_builds(&dir, &config.environment.venv_location));
        let manifest = match AgentManifest::load(&dir) {
            Ok((manifest, _)) => manifest,
            Err(e) => {
                problems.push(DoctorProblem {
                    path: Some(dir.clone()),
                    ..problem(
                        Severity::Error,
                        "invalid_manifest",
                        format!("{id}: {}", e.to_string().lines().next().unwrap_or_default()),
                        format!("Run `agenthub validate {id}` for every problem with its field"),
                    )
                });
                continue;
            }
        };
        let status = agenthub_env::environment_status(&dir, &manifest, &config.environment);
        let fix = match status.state {
            EnvState::Foreign => Some((
                Severity::Error,
                "env_foreign",
                format!(
                    "Move {} away (agenthub never deletes what it did not make), or set \
                     environment.venv_location to another name",
                    status.venv.display()
                ),
            )),
            EnvState::Broken => Some((
                Severity::Error,
                "env_broken",
                format!("Run `agenthub env rebuild {id}` (the next call also rebuilds it)"),
            )),
            EnvState::Stale => Some((
                Severity::Warning,
                "env_stale",
                format!("Run `agenthub env sync {id}` (the next call also rebuilds it)"),
            )),
            EnvState::Ready | EnvState::Missing => None,
        };
        if let Some((severity, kind, fix)) = fix {
            let detail = status.detail.clone().unwrap_or_default();
            problems.push(DoctorProblem {
                path: Some(status.venv.clone()),
                ..problem(
                    severity,
                    kind,
                    format!("{id}: environment {}: {detail}", status.state.as_str()),
                    fix,
                )
            });
        }
        reports.push(EnvReport { agent: id.to_string(), state: status.state, detail: status.detail });
    }
    if !unused.removed.is_empty() {
        problems.push(problem(
            Severity::Warning,
            "unused_environments",
            format!(
                "{} environment builds no agent uses any more ({} bytes)",
                unused.removed.len(),
                unused.bytes
            ),
            "Run `agenthub env gc`".to_owned(),
        ));
    }
    reports
}

fn leftovers(config: &Config, problems: &mut Vec<DoctorProblem>) {
    let registry = agenthub_process::ProcessRegistry::with_run_dir(config.home.join("run"));
    let stale = registry.stale_records();
    if !stale.is_empty() {
        problems.push(DoctorProblem {
            path: Some(config.home.join("run")),
            ..problem(
                Severity::Warning,
                "stale_run_records",
                format!("{} run records of agenthub processes that died", stale.len()),
                "Run any `agenthub exec` (it clears them, killing what is left of those calls)".to_owned(),
            )
        });
    }
    for staging in crate::staging_dirs(&config.agents_root()) {
        problems.push(DoctorProblem {
            path: Some(staging.clone()),
            ..problem(
                Severity::Warning,
                "install_staging",
                format!("{} is left from an install that did not finish", staging.display()),
                format!("When no `agenthub install` is running, remove it: rm -rf '{}'", staging.display()),
            )
        });
    }
    let provision = agenthub_env::UvProvision::from_config(config);
    for staging in agenthub_env::uv_staging_leftovers(&provision) {
        problems.push(DoctorProblem {
            path: Some(staging.clone()),
            ..problem(
                Severity::Warning,
                "uv_staging",
                format!("{} is left from a uv install that did not finish", staging.display()),
                "Run `agenthub env gc`".to_owned(),
            )
        });
    }
}
