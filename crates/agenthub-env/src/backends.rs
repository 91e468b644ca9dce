//! The uv, pip and virtualenv backends, interpreter discovery, and running installer tools.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
#[cfg(any(feature = "uv", feature = "pip", feature = "virtualenv"))]
use std::sync::Arc;
use std::time::Duration;

use agenthub_core::{EnvBackendKind, PythonConstraint, PythonRequest};
#[cfg(any(feature = "uv", feature = "pip", feature = "virtualenv"))]
use async_trait::async_trait;

#[cfg(any(feature = "uv", feature = "pip", feature = "virtualenv"))]
use crate::EnvironmentBackend;
#[cfg(any(feature = "uv", feature = "pip", feature = "virtualenv"))]
use crate::InstallArg;
use crate::tools::{BuildContext, Tool};
use crate::{DynEnvironmentBackend, EnvError};

/// `uv venv` for `python` (a path or a version request) at `venv`, never downloading an
/// interpreter, with entry points and activation scripts that work wherever the agent
/// directory is moved (an install builds it beside its target, then swaps it in).
#[cfg(feature = "uv")]
fn uv_venv_args<'a>(python: &'a OsStr, venv: &'a Path) -> [&'a OsStr; 8] {
    [
        os("venv"),
        os("--quiet"),
        os("--no-config"),
        os("--no-python-downloads"),
        os("--relocatable"),
        os("--python"),
        python,
        venv.as_os_str(),
    ]
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A Python interpreter found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// The real executable (`sys.executable`, not a shim).
    pub path: PathBuf,
    /// `major.minor.patch`.
    pub version: (u64, u64, u64),
}

impl Interpreter {
    /// The version as `3.11.7`.
    pub fn version_string(&self) -> String {
        format!("{}.{}.{}", self.version.0, self.version.1, self.version.2)
    }
}

/// Asks `candidate` for its real path and version (within `timeout`, supervised like any
/// tool); `None` when it does not run.
fn probe(candidate: &Path, timeout: Duration) -> Option<Interpreter> {
    let code = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])";
    let text = Tool::new(candidate, ["-I", "-c", code]).run(&BuildContext::probe(timeout)).ok()?;
    let mut lines = text.lines();
    let path = PathBuf::from(lines.next()?.trim());
    let mut parts = lines.next()?.trim().split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    Some(Interpreter { path, version })
}

/// The interpreter names looked for on `PATH`, in order.
fn candidate_names() -> impl Iterator<Item = String> {
    ["python3".to_owned(), "python".to_owned()]
        .into_iter()
        .chain((8..=15).rev().map(|m| format!("python3.{m}")))
}

/// Every interpreter candidate on `PATH` (`python3`, `python`, `python3.N`), each probed
/// within `probe_timeout`: `None` when it does not run.
pub fn python_candidates(probe_timeout: Duration) -> Vec<(PathBuf, Option<Interpreter>)> {
    let mut paths: Vec<PathBuf> = candidate_names().filter_map(|n| which::which(n).ok()).collect();
    paths.dedup();
    // Probed side by side: a pyenv shim takes ~150 ms to start.
    std::thread::scope(|scope| {
        let probes: Vec<_> = paths.iter().map(|p| scope.spawn(move || probe(p, probe_timeout))).collect();
        paths.iter().cloned().zip(probes.into_iter().map(|h| h.join().ok().flatten())).collect()
    })
}

/// The first line `program args…` prints on stdout within `timeout` (a version query);
/// `None` when it does not run or fails. `COLUMNS` is set wide: Python's argparse wraps a
/// version line (`virtualenv 21.1 from /a/long/path`) at the terminal's width, else 80.
pub fn tool_version(program: &Path, args: &[&str], timeout: Duration) -> Option<String> {
    let text = Tool::new(program, args).env("COLUMNS", "10000").run(&BuildContext::probe(timeout)).ok()?;
    text.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned)
}

/// The interpreter an environment was created with: the target of `<venv>/bin/python`
/// and `version_info` of `<venv>/pyvenv.cfg` (both written by the venv creator); `None`
/// when either cannot be read.
pub fn venv_interpreter(venv: &Path) -> Option<Interpreter> {
    let cfg = agenthub_core::read_agent_file(venv, Path::new("pyvenv.cfg"), 64 * 1024).ok()??;
    let version = cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "version_info" || key.trim() == "version").then(|| value.trim().to_owned())
    })?;
    let mut parts = version.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().ok()
    });
    let version = (parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0));
    let link = venv.join("bin").join("python");
    let path = match std::fs::read_link(&link) {
        Ok(target) if target.is_absolute() => target,
        Ok(target) => venv.join("bin").join(target),
        Err(_) => link,
    };
    Some(Interpreter { path, version })
}

/// Finds a Python for a new environment. Never downloads one.
///
/// `requested` (config `python_version`) is an interpreter path or a version constraint;
/// with a version (or nothing) the first of `python3`, `python`, `python3.N` (newest
/// first) on PATH that satisfies it and `constraint` wins. Each candidate is probed
/// within `probe_timeout`.
pub fn find_python(
    requested: Option<&PythonRequest>,
    constraint: Option<&PythonConstraint>,
    probe_timeout: Duration,
) -> Result<Interpreter, EnvError> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    let requested_constraint = match requested {
        Some(PythonRequest::Version(c)) => Some(c),
        _ => None,
    };
    match requested {
        Some(PythonRequest::Path(path)) => candidates.push(path.clone()),
        Some(PythonRequest::Version(_)) | None => {
            candidates.extend(candidate_names().filter_map(|n| which::which(n).ok()));
        }
    }
    candidates.dedup();
    for candidate in candidates {
        let Some(found) = probe(&candidate, probe_timeout) else {
            tried.push(format!("{} (does not run)", candidate.display()));
            continue;
        };
        let (major, minor, patch) = found.version;
        let fits =
            [constraint, requested_constraint].into_iter().flatten().all(|c| c.allows(major, minor, patch));
        if fits {
            return Ok(found);
        }
        tried.push(format!("{} ({})", candidate.display(), found.version_string()));
    }
    Err(EnvError::NoPython {
        wanted: [requested.map(ToString::to_string), constraint.map(|c| c.as_str().to_owned())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and "),
        tried,
    })
}

/// `uv export` of a locked project: the pinned requirements, without hashes or the project.
///
/// Needs uv whichever backend builds the environment: `uv` is the executable to run
/// (see [`crate::ensure_uv`]).
pub fn uv_export_lock(uv: &Path, project_dir: &Path, ctx: &BuildContext) -> Result<String, EnvError> {
    let args = [
        os("export"),
        os("--frozen"),
        os("--no-hashes"),
        os("--no-emit-project"),
        os("--no-header"),
        os("--quiet"),
        os("--directory"),
        project_dir.as_os_str(),
    ];
    Tool::new(uv, args).env("UV_NO_PROGRESS", "1").run(ctx)
}

/// Builds environments with `uv venv` and `uv pip install`.
#[cfg(feature = "uv")]
#[derive(Debug, Clone)]
pub struct UvBackend {
    uv: PathBuf,
    use_cache: bool,
}

#[cfg(feature = "uv")]
impl UvBackend {
    /// Finds `uv` on PATH.
    pub fn find() -> Result<Self, EnvError> {
        let uv = which::which("uv").map_err(|_| EnvError::ToolNotFound { tool: "uv" })?;
        Ok(Self::with_executable(uv))
    }

    /// Uses this `uv` executable.
    pub fn with_executable(uv: PathBuf) -> Self {
        Self { uv, use_cache: true }
    }

    /// Whether uv may use its cache (`dependency_cache`).
    #[must_use]
    pub fn use_cache(mut self, yes: bool) -> Self {
        self.use_cache = yes;
        self
    }
}

#[cfg(feature = "uv")]
#[async_trait]
impl EnvironmentBackend for UvBackend {
    fn kind(&self) -> EnvBackendKind {
        EnvBackendKind::Uv
    }

    async fn create_venv(&self, venv: &Path, python: &Path, ctx: &BuildContext) -> Result<(), EnvError> {
        Tool::new(&self.uv, uv_venv_args(python.as_os_str(), venv))
            .env("UV_NO_PROGRESS", "1")
            .run(ctx)
            .map(drop)
    }

    async fn create_venv_discovering(
        &self,
        venv: &Path,
        python: &str,
        ctx: &BuildContext,
    ) -> Result<bool, EnvError> {
        // Interpreters on PATH only, as `find_python` looks (never uv-managed downloads).
        Tool::new(&self.uv, uv_venv_args(os(python), venv))
            .env("UV_NO_PROGRESS", "1")
            .env("UV_PYTHON_PREFERENCE", "only-system")
            .run(ctx)
            .map_err(|e| match e {
                EnvError::CommandFailed { stderr, .. } if stderr.contains("No interpreter found") => {
                    EnvError::NoPython { wanted: python.to_owned(), tried: Vec::new() }
                }
                other => other,
            })?;
        Ok(true)
    }

    async fn install(
        &self,
        venv: &Path,
        requirements: &[InstallArg],
        ctx: &BuildContext,
    ) -> Result<(), EnvError> {
        let python = self.python_executable(venv);
        let mut args = vec![
            os("pip"),
            os("install"),
            os("--quiet"),
            os("--no-config"),
            // The environment is read-only to a sandboxed agent: without compiled bytecode
            // every call would compile its imports again (pip compiles by default).
            os("--compile-bytecode"),
            os("--python"),
            python.as_os_str(),
        ];
        if !self.use_cache {
            args.push(os("--no-cache"));
        }
        args.extend(install_args(requirements));
        Tool::new(&self.uv, args)
            .env("UV_NO_PROGRESS", "1")
            .env("UV_PYTHON_DOWNLOADS", "never")
            .run(ctx)
            .map(drop)
    }
}

/// Builds environments with `python -m venv` and pip.
#[cfg(feature = "pip")]
#[derive(Debug, Clone, Default)]
pub struct PipBackend {
    no_cache: bool,
}

#[cfg(feature = "pip")]
impl PipBackend {
    /// A pip backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether pip may use its cache (`dependency_cache`).
    #[must_use]
    pub fn use_cache(mut self, yes: bool) -> Self {
        self.no_cache = !yes;
        self
    }
}

#[cfg(any(feature = "pip", feature = "virtualenv"))]
const PIP_ENV: [(&str, &str); 2] = [("PIP_DISABLE_PIP_VERSION_CHECK", "1"), ("PIP_NO_INPUT", "1")];

#[cfg(any(feature = "pip", feature = "virtualenv"))]
/// `<venv python> -m pip install ...`, bootstrapping pip with ensurepip when it is missing.
fn pip_install(
    venv_python: &Path,
    requirements: &[InstallArg],
    no_cache: bool,
    ctx: &BuildContext,
) -> Result<(), EnvError> {
    let pip_tool =
        |args: Vec<&OsStr>| PIP_ENV.iter().fold(Tool::new(venv_python, args), |t, (k, v)| t.env(k, v));
    let has_pip = Tool::new(venv_python, ["-c", "import pip"]).run(ctx).is_ok();
    if !has_pip {
        pip_tool(vec![os("-m"), os("ensurepip"), os("--default-pip")]).run(ctx)?;
    }
    let mut args = vec![os("-m"), os("pip"), os("install"), os("--quiet")];
    if no_cache {
        args.push(os("--no-cache-dir"));
    }
    args.extend(install_args(requirements));
    pip_tool(args).run(ctx).map(drop)
}

#[cfg(feature = "pip")]
#[async_trait]
impl EnvironmentBackend for PipBackend {
    fn kind(&self) -> EnvBackendKind {
        EnvBackendKind::Pip
    }

    async fn create_venv(&self, venv: &Path, python: &Path, ctx: &BuildContext) -> Result<(), EnvError> {
        // Without pip: most agents install nothing, and ensurepip costs seconds.
        Tool::new(python, [os("-m"), os("venv"), os("--without-pip"), venv.as_os_str()]).run(ctx).map(drop)
    }

    async fn install(
        &self,
        venv: &Path,
        requirements: &[InstallArg],
        ctx: &BuildContext,
    ) -> Result<(), EnvError> {
        pip_install(&self.python_executable(venv), requirements, self.no_cache, ctx)
    }
}

/// Builds environments with `virtualenv` and pip.
#[cfg(feature = "virtualenv")]
#[derive(Debug, Clone)]
pub struct VirtualenvBackend {
    program: Option<PathBuf>,
    no_cache: bool,
}

#[cfg(feature = "virtualenv")]
impl VirtualenvBackend {
    /// Uses `virtualenv` from PATH, else `python -m virtualenv` of the chosen interpreter.
    pub fn new() -> Self {
        Self { program: which::which("virtualenv").ok(), no_cache: false }
    }

    /// Whether pip may use its cache (`dependency_cache`).
    #[must_use]
    pub fn use_cache(mut self, yes: bool) -> Self {
        self.no_cache = !yes;
        self
    }
}

#[cfg(feature = "virtualenv")]
impl Default for VirtualenvBackend {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "virtualenv")]
#[async_trait]
impl EnvironmentBackend for VirtualenvBackend {
    fn kind(&self) -> EnvBackendKind {
        EnvBackendKind::Virtualenv
    }

    async fn create_venv(&self, venv: &Path, python: &Path, ctx: &BuildContext) -> Result<(), EnvError> {
        let common =
            [os("--quiet"), os("--no-download"), os("--python"), python.as_os_str(), venv.as_os_str()];
        if let Some(program) = &self.program {
            Tool::new(program, common).run(ctx).map(drop)
        } else {
            let mut args = vec![os("-m"), os("virtualenv")];
            args.extend(common);
            Tool::new(python, args).run(ctx).map_err(|e| match e {
                EnvError::CommandFailed { stderr, .. } if stderr.contains("No module named virtualenv") => {
                    EnvError::ToolNotFound { tool: "virtualenv" }
                }
                other => other,
            })?;
            Ok(())
        }
    }

    async fn install(
        &self,
        venv: &Path,
        requirements: &[InstallArg],
        ctx: &BuildContext,
    ) -> Result<(), EnvError> {
        pip_install(&self.python_executable(venv), requirements, self.no_cache, ctx)
    }
}

#[cfg(any(feature = "uv", feature = "pip", feature = "virtualenv"))]
/// Installer arguments: requirements as they are, files after `-r`.
fn install_args(requirements: &[InstallArg]) -> Vec<&OsStr> {
    requirements
        .iter()
        .flat_map(|arg| match arg {
            InstallArg::Requirement(r) => vec![os(r)],
            InstallArg::RequirementsFile(path) => vec![os("-r"), path.as_os_str()],
        })
        .collect()
}

/// The backend of `kind`, configured by `dependency_cache`; fails when its tool is missing
/// or it was compiled out.
pub fn backend_for(kind: EnvBackendKind, dependency_cache: bool) -> Result<DynEnvironmentBackend, EnvError> {
    let _ = dependency_cache; // unused when no backend is compiled in
    match kind {
        #[cfg(feature = "uv")]
        EnvBackendKind::Uv => Ok(Arc::new(UvBackend::find()?.use_cache(dependency_cache))),
        #[cfg(feature = "pip")]
        EnvBackendKind::Pip => Ok(Arc::new(PipBackend::new().use_cache(dependency_cache))),
        #[cfg(feature = "virtualenv")]
        EnvBackendKind::Virtualenv => Ok(Arc::new(VirtualenvBackend::new().use_cache(dependency_cache))),
        #[allow(
            unreachable_patterns,
            reason = "reachable only when a backend feature is off; `expect` would fail in the feature matrix"
        )]
        other => Err(EnvError::BackendNotCompiled { kind: other.as_str() }),
    }
}

/// The default backend (SPEC §3): `forced` if given, else uv when `use_uv` and `uv` is on
/// PATH, else pip.
pub fn default_backend(
    forced: Option<EnvBackendKind>,
    use_uv: bool,
    dependency_cache: bool,
) -> Result<DynEnvironmentBackend, EnvError> {
    select_backend(forced, use_uv, dependency_cache, None)
}

/// [`default_backend`], with uv also looked for in `<home>/tools/uv` (see
/// [`crate::UvProvision`]): when uv is forced and missing it is installed there (if
/// provisioning is enabled); when it is merely preferred (`use_uv`), a provisioned uv is
/// used if there is one, else pip.
pub fn select_backend(
    forced: Option<EnvBackendKind>,
    #[cfg_attr(not(feature = "uv"), expect(unused_variables, reason = "only the uv backend reads it"))]
    use_uv: bool,
    dependency_cache: bool,
    #[cfg_attr(not(feature = "uv"), expect(unused_variables, reason = "only the uv backend reads it"))]
    provision: Option<&crate::UvProvision>,
) -> Result<DynEnvironmentBackend, EnvError> {
    #[cfg(feature = "uv")]
    if forced == Some(EnvBackendKind::Uv) && provision.is_some() {
        let uv = crate::ensure_uv(provision, "uv")?;
        return Ok(Arc::new(UvBackend::with_executable(uv.path).use_cache(dependency_cache)));
    }
    if let Some(kind) = forced {
        return backend_for(kind, dependency_cache);
    }
    #[cfg(feature = "uv")]
    if use_uv && let Some(uv) = crate::find_uv(provision) {
        return Ok(Arc::new(UvBackend::with_executable(uv.path).use_cache(dependency_cache)));
    }
    backend_for(EnvBackendKind::Pip, dependency_cache)
        .or_else(|_| backend_for(EnvBackendKind::Uv, dependency_cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_line_is_not_wrapped_at_the_terminal_width() {
        // argparse wraps `--version` output at $COLUMNS (else 80), mid-path.
        let script = "import argparse; p = argparse.ArgumentParser(); \
                      p.add_argument('--version', action='version', version='tool 1.0 from ' + '/long-dir' * 20); \
                      p.parse_args()";
        let line = tool_version(Path::new("python3"), &["-c", script, "--version"], Duration::from_secs(20));
        assert_eq!(line, Some(format!("tool 1.0 from {}", "/long-dir".repeat(20))));
    }

    #[test]
    fn failing_tools_keep_their_stderr_and_run_in_the_given_directory() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let ctx = BuildContext::new(&dir, Duration::from_secs(20), false);
        let err = Tool::new(Path::new("python3"), ["-c", "import os, sys; sys.exit('nope: ' + os.getcwd())"])
            .run(&ctx)
            .unwrap_err();
        match err {
            EnvError::CommandFailed { stderr, command, .. } => {
                assert_eq!(stderr, format!("nope: {}", dir.display()));
                assert!(command.starts_with("python3 -c"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tools_past_the_build_deadline_are_killed() {
        let ctx = BuildContext::new(&std::env::temp_dir(), Duration::from_millis(500), false);
        let started = std::time::Instant::now();
        let err =
            Tool::new(Path::new("python3"), ["-c", "import time; time.sleep(30)"]).run(&ctx).unwrap_err();
        assert!(matches!(err, EnvError::BuildTimeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[test]
    fn finds_the_real_python_and_refuses_impossible_constraints() {
        let timeout = Duration::from_secs(20);
        let py = find_python(None, None, timeout).unwrap();
        assert!(py.path.is_absolute() && py.version.0 == 3, "{py:?}");
        let impossible = PythonConstraint::parse(">=4").unwrap();
        let err = find_python(None, Some(&impossible), timeout).unwrap_err();
        assert!(matches!(err, EnvError::NoPython { .. }), "{err:?}");
    }
}
