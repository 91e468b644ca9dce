//! The uv, pip and virtualenv backends, interpreter discovery, and running installer tools.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
#[cfg(any(feature = "uv", feature = "pip", feature = "virtualenv"))]
use std::sync::Arc;

use agenthub_core::{EnvBackendKind, PythonConstraint};
#[cfg(any(feature = "uv", feature = "pip", feature = "virtualenv"))]
use async_trait::async_trait;

#[cfg(any(feature = "uv", feature = "pip", feature = "virtualenv"))]
use crate::EnvironmentBackend;
use crate::{DynEnvironmentBackend, EnvError};

/// How much of an installer's stderr errors keep.
const STDERR_TAIL: usize = 64 * 1024;

/// Runs a tool to completion with an argument vector (never a shell); fails with its
/// stderr tail when it exits non-zero.
pub(crate) fn run_tool(program: &Path, args: &[&OsStr], envs: &[(&str, &str)]) -> Result<String, EnvError> {
    run_tool_in(program, args, envs, None)
}

/// [`run_tool`] in the working directory `cwd`.
pub(crate) fn run_tool_in(
    program: &Path,
    args: &[&OsStr],
    envs: &[(&str, &str)],
    cwd: Option<&Path>,
) -> Result<String, EnvError> {
    let mut cmd = Command::new(program);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.args(args).stdin(Stdio::null()).env_remove("PYTHONHOME").env_remove("VIRTUAL_ENV");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let command = std::iter::once(program.as_os_str())
        .chain(args.iter().copied())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    tracing::debug!(%command, "running installer tool");
    let out = cmd.output().map_err(|source| EnvError::Spawn { program: program.to_path_buf(), source })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let start = stderr.len().saturating_sub(STDERR_TAIL);
    let start = (start..stderr.len()).find(|&i| stderr.is_char_boundary(i)).unwrap_or(stderr.len());
    Err(EnvError::CommandFailed {
        command,
        status: out.status.to_string(),
        stderr: stderr[start..].trim().to_owned(),
    })
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

/// Asks `candidate` for its real path and version; `None` when it does not run.
fn probe(candidate: &Path) -> Option<Interpreter> {
    let code = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])";
    let out = Command::new(candidate).args(["-I", "-c", code]).stdin(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    let path = PathBuf::from(lines.next()?.trim());
    let mut parts = lines.next()?.trim().split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    Some(Interpreter { path, version })
}

/// Finds a Python for a new environment. Never downloads one.
///
/// `requested` (config `python_version`) is a path or a version like `3.11`; without it
/// the first of `python3`, `python`, `python3.N` (newest first) on PATH that satisfies
/// `constraint` wins.
pub fn find_python(
    requested: Option<&str>,
    constraint: Option<&PythonConstraint>,
) -> Result<Interpreter, EnvError> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    match requested {
        Some(r) if r.contains('/') => candidates.push(PathBuf::from(r)),
        Some(version) => candidates.extend(which::which(format!("python{version}")).ok()),
        None => {
            for name in ["python3", "python"] {
                candidates.extend(which::which(name).ok());
            }
            for minor in (8..=15).rev() {
                candidates.extend(which::which(format!("python3.{minor}")).ok());
            }
        }
    }
    let requested_constraint =
        requested.filter(|r| !r.contains('/')).and_then(|r| PythonConstraint::parse(r).ok());
    for candidate in candidates {
        let Some(found) = probe(&candidate) else {
            tried.push(format!("{} (does not run)", candidate.display()));
            continue;
        };
        let (major, minor, patch) = found.version;
        let fits = [constraint, requested_constraint.as_ref()]
            .into_iter()
            .flatten()
            .all(|c| c.allows(major, minor, patch));
        if fits {
            return Ok(found);
        }
        tried.push(format!("{} ({})", candidate.display(), found.version_string()));
    }
    Err(EnvError::NoPython {
        wanted: [requested.map(str::to_owned), constraint.map(|c| c.as_str().to_owned())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and "),
        tried,
    })
}

/// `uv export` of a locked project: the pinned requirements, without hashes or the project.
///
/// Needs `uv` on PATH whichever backend builds the environment.
pub fn uv_export_lock(project_dir: &Path) -> Result<String, EnvError> {
    let uv = which::which("uv")
        .map_err(|_| EnvError::ToolNotFound { tool: "uv (needed to install from uv.lock)" })?;
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
    run_tool(&uv, &args, &[("UV_NO_PROGRESS", "1")])
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

    async fn create_venv(&self, venv: &Path, python: &Path) -> Result<(), EnvError> {
        let args = [
            os("venv"),
            os("--quiet"),
            os("--no-config"),
            os("--no-python-downloads"),
            os("--python"),
            python.as_os_str(),
            venv.as_os_str(),
        ];
        run_tool(&self.uv, &args, &[("UV_NO_PROGRESS", "1")]).map(drop)
    }

    async fn install(&self, venv: &Path, requirements: &[String]) -> Result<(), EnvError> {
        let python = self.python_executable(venv);
        let mut args = vec![
            os("pip"),
            os("install"),
            os("--quiet"),
            os("--no-config"),
            os("--python"),
            python.as_os_str(),
        ];
        if !self.use_cache {
            args.push(os("--no-cache"));
        }
        let split = split_options(requirements);
        args.extend(split.iter().map(OsStr::new));
        run_tool(&self.uv, &args, &[("UV_NO_PROGRESS", "1"), ("UV_PYTHON_DOWNLOADS", "never")]).map(drop)
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
fn pip_install(venv_python: &Path, requirements: &[String], no_cache: bool) -> Result<(), EnvError> {
    let has_pip = run_tool(venv_python, &[os("-c"), os("import pip")], &[]).is_ok();
    if !has_pip {
        run_tool(venv_python, &[os("-m"), os("ensurepip"), os("--default-pip")], &PIP_ENV)?;
    }
    let mut args = vec![os("-m"), os("pip"), os("install"), os("--quiet")];
    if no_cache {
        args.push(os("--no-cache-dir"));
    }
    let split = split_options(requirements);
    args.extend(split.iter().map(OsStr::new));
    run_tool(venv_python, &args, &PIP_ENV).map(drop)
}

#[cfg(feature = "pip")]
#[async_trait]
impl EnvironmentBackend for PipBackend {
    fn kind(&self) -> EnvBackendKind {
        EnvBackendKind::Pip
    }

    async fn create_venv(&self, venv: &Path, python: &Path) -> Result<(), EnvError> {
        // Without pip: most agents install nothing, and ensurepip costs seconds.
        run_tool(python, &[os("-m"), os("venv"), os("--without-pip"), venv.as_os_str()], &[]).map(drop)
    }

    async fn install(&self, venv: &Path, requirements: &[String]) -> Result<(), EnvError> {
        pip_install(&self.python_executable(venv), requirements, self.no_cache)
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

    async fn create_venv(&self, venv: &Path, python: &Path) -> Result<(), EnvError> {
        let common =
            [os("--quiet"), os("--no-download"), os("--python"), python.as_os_str(), venv.as_os_str()];
        if let Some(program) = &self.program {
            run_tool(program, &common, &[]).map(drop)
        } else {
            let mut args = vec![os("-m"), os("virtualenv")];
            args.extend(common);
            run_tool(python, &args, &[]).map_err(|e| match e {
                EnvError::CommandFailed { stderr, .. } if stderr.contains("No module named virtualenv") => {
                    EnvError::ToolNotFound { tool: "virtualenv" }
                }
                other => other,
            })?;
            Ok(())
        }
    }

    async fn install(&self, venv: &Path, requirements: &[String]) -> Result<(), EnvError> {
        pip_install(&self.python_executable(venv), requirements, self.no_cache)
    }
}

#[cfg(any(feature = "uv", feature = "pip", feature = "virtualenv"))]
/// Splits `-r file` / `--opt value` lines into separate arguments; requirements stay whole.
fn split_options(requirements: &[String]) -> Vec<String> {
    requirements
        .iter()
        .flat_map(|line| {
            if line.starts_with('-') {
                line.splitn(2, [' ', '=']).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
            } else {
                vec![line.clone()]
            }
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
    #[cfg_attr(not(feature = "uv"), expect(unused_variables, reason = "only the uv backend reads it"))]
    use_uv: bool,
    dependency_cache: bool,
) -> Result<DynEnvironmentBackend, EnvError> {
    if let Some(kind) = forced {
        return backend_for(kind, dependency_cache);
    }
    #[cfg(feature = "uv")]
    if use_uv && let Ok(uv) = UvBackend::find() {
        return Ok(Arc::new(uv.use_cache(dependency_cache)));
    }
    backend_for(EnvBackendKind::Pip, dependency_cache)
        .or_else(|_| backend_for(EnvBackendKind::Uv, dependency_cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_requirements_are_not() {
        let reqs =
            ["-r /a/requirements.txt".to_owned(), "six >= 1".to_owned(), "--index-url=https://x".to_owned()];
        assert_eq!(
            split_options(&reqs),
            ["-r", "/a/requirements.txt", "six >= 1", "--index-url", "https://x"]
        );
    }

    #[test]
    fn failing_tools_keep_their_stderr() {
        let err =
            run_tool(Path::new("python3"), &[os("-c"), os("import sys; sys.exit('nope: broken')")], &[])
                .unwrap_err();
        match err {
            EnvError::CommandFailed { stderr, command, .. } => {
                assert_eq!(stderr, "nope: broken");
                assert!(command.starts_with("python3 -c"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finds_the_real_python_and_refuses_impossible_constraints() {
        let py = find_python(None, None).unwrap();
        assert!(py.path.is_absolute() && py.version.0 == 3, "{py:?}");
        let impossible = PythonConstraint::parse(">=4").unwrap();
        let err = find_python(None, Some(&impossible)).unwrap_err();
        assert!(matches!(err, EnvError::NoPython { .. }), "{err:?}");
    }
}
