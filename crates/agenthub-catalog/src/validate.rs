//! `agenthub validate`: everything wrong with an agent directory, without running it — the
//! manifest (every problem with its field path), `agent.py` (there, and compiling: see
//! `compile.rs`), and symlinks that leave the directory. Reads only; bounded on hostile
//! directories.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use agenthub_core::{
    AgentManifest, AgentRuntimeError, Config, ManifestError, Places, open_agent_file, resolve_agent,
};
use serde::Serialize;

use crate::compile::{Interpreters, compile_agent_py};

/// Entries of an agent directory looked at for escaping symlinks, at most.
pub const MAX_WALK_ENTRIES: usize = 100_000;
/// Directory levels below the agent directory looked at, at most.
pub const MAX_WALK_DEPTH: usize = 64;

/// One problem with an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file it is about, relative to the agent directory (`agent.yaml`), when one.
    pub file: Option<String>,
    /// The manifest field, as a dotted path (`interface.methods.greet.description`), when
    /// one.
    pub field: Option<String>,
    /// The line of the file, when the problem is at one (a syntax error in `agent.py`).
    pub line: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem with the agent as a whole, or with a whole file.
    pub fn new(file: Option<&str>, message: impl Into<String>) -> Self {
        Self { file: file.map(str::to_owned), field: None, line: None, message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    /// `agent.yaml: version: must not be empty`, `agent.py:3: SyntaxError: ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            f.write_str(file)?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The verdict on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validation {
    /// The agent as named: its id, or the path as given.
    pub agent: String,
    /// The agent directory, when the name resolved to one.
    pub path: Option<String>,
    /// Whether there are no problems.
    pub valid: bool,
    /// Every problem found: manifest first, then `agent.py`, then symlinks.
    pub problems: Vec<Problem>,
}

impl Validation {
    fn new(agent: String, path: Option<&Path>, problems: Vec<Problem>) -> Self {
        let path = path.map(|p| p.to_string_lossy().into_owned());
        Self { agent, path, valid: problems.is_empty(), problems }
    }
}

/// Validates the agent named by `agent` (an id or a path, resolved as `exec` does): the
/// checks of [`check_dir`], and whether `agent.py` compiles.
pub fn validate_agent(config: &Config, agent: &str) -> Validation {
    match resolve_agent(agent, &config.agents_root()) {
        Ok(location) => Validation::new(
            agent.to_owned(),
            Some(&location.dir),
            check_and_compile(&location.dir, config, &mut Interpreters::default()),
        ),
        Err(e) => {
            let message = match e {
                AgentRuntimeError::AgentNotFound { reason, .. } => format!("not found: {reason}"),
                other => other.to_string(),
            };
            Validation::new(agent.to_owned(), None, vec![Problem::new(None, message)])
        }
    }
}

/// Validates every installed agent (`<agents root>/<ns>/<name>`), sorted by id, including
/// those `list` leaves out because their manifest is refused, as [`validate_agent`] does.
pub fn validate_installed(config: &Config) -> Vec<Validation> {
    let mut interpreters = Interpreters::default();
    agenthub_core::list_agent_dirs(&config.agents_root())
        .into_iter()
        .map(|(id, dir)| {
            let dir = dir.canonicalize().unwrap_or(dir);
            let problems = check_and_compile(&dir, config, &mut interpreters);
            Validation::new(id.to_string(), Some(&dir), problems)
        })
        .collect()
}

/// The problems of the paths the manifest in `dir` declares on this machine (what parsing
/// cannot see): an absolute path into the home or the agenthub home, and, following
/// symlinks, a path that really is a protected place or a relative path that leaves the
/// agent directory. Nothing when the manifest does not load ([`check_dir`] reports that).
pub fn check_permissions(dir: &Path, config: &Config) -> Vec<Problem> {
    let Ok((manifest, path)) = AgentManifest::load(dir) else { return Vec::new() };
    let home = std::env::home_dir();
    let places = Places { agent_dir: dir, home: home.as_deref(), agenthub_home: &config.home };
    let file = relative(dir, &path);
    manifest
        .permissions
        .check_places(&places)
        .into_iter()
        .map(|(field, error)| Problem {
            file: Some(file.clone()),
            field: Some(field),
            message: error.to_string(),
            line: None,
        })
        .collect()
}

/// [`check_dir`], then, when `agent.py` is there, whether it compiles (with the agent's
/// interpreter: see [`Interpreters::for_agent`]).
fn check_and_compile(dir: &Path, config: &Config, interpreters: &mut Interpreters) -> Vec<Problem> {
    let mut problems = check_dir(dir, &config.environment.venv_location);
    problems.extend(check_permissions(dir, config));
    if problems.iter().any(|p| p.file.as_deref() == Some(AGENT_PY) && p.field.is_none()) {
        return problems; // missing or unreadable: nothing to compile
    }
    let manifest = AgentManifest::load(dir).ok().map(|(manifest, _)| manifest);
    if let Some(python) = interpreters.for_agent(dir, manifest.as_ref(), config)
        && let Err(e) = compile_agent_py(&python, dir)
    {
        let at =
            problems.iter().position(|p| p.file.as_deref() != Some("agent.yaml")).unwrap_or(problems.len());
        problems.insert(at, Problem { line: e.line, ..Problem::new(Some(AGENT_PY), e.message) });
    }
    problems
}

/// The agent's code, at the top of its directory.
const AGENT_PY: &str = "agent.py";

/// Every problem of the agent in `dir` (canonical). What an install leaves out
/// ([`left_out`]: at the top, `.git` and agenthub's own environment, named
/// by `venv_location`, whose interpreter links point at the base Python by design) is not
/// walked; everything an install would install is.
pub fn check_dir(dir: &Path, venv_location: &str) -> Vec<Problem> {
    let mut problems = manifest_problems(dir);
    let file_problem = |message: String| Problem::new(Some(AGENT_PY), message);
    match open_agent_file(dir, Path::new(AGENT_PY)) {
        Ok(Some(_)) => {}
        Ok(None) => problems.push(file_problem("is missing".to_owned())),
        Err(e) => problems.push(file_problem(e.to_string())),
    }
    problems.extend(escaping_symlinks(dir, venv_location));
    problems
}

fn manifest_problems(dir: &Path) -> Vec<Problem> {
    let whole = |file: &str, message: String| vec![Problem::new(Some(file), message)];
    match AgentManifest::load(dir) {
        Ok(_) => Vec::new(),
        Err(ManifestError::Missing { .. }) => {
            whole("agent.yaml", "is missing (nor is there an agent.yml)".to_owned())
        }
        Err(ManifestError::Unreadable { path, message, .. }) => whole(&relative(dir, &path), message),
        Err(ManifestError::Syntax { file, message }) => whole(&file, format!("not valid YAML: {message}")),
        Err(ManifestError::AliasExpansion { file, limit }) => {
            whole(&file, format!("expands to more than {limit} through YAML aliases"))
        }
        Err(ManifestError::Invalid { file, problems }) => problems
            .into_iter()
            .map(|p| Problem { field: Some(p.field), ..Problem::new(Some(&file), p.message) })
            .collect(),
    }
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).to_string_lossy().into_owned()
}

/// Symlinks under `dir` that resolve (or, dangling, point) outside it, and symlink loops.
/// Walks without following symlinks, skipping what an install leaves out
/// ([`left_out`]), at most [`MAX_WALK_ENTRIES`] entries and
/// [`MAX_WALK_DEPTH`] levels.
fn escaping_symlinks(dir: &Path, venv_location: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let problem = |path: &Path, message: String| Problem::new(Some(&relative(dir, path)), message);
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((current, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_WALK_ENTRIES {
                problems.push(Problem::new(
                    None,
                    format!(
                        "more than {MAX_WALK_ENTRIES} entries: the rest were not checked for escaping symlinks"
                    ),
                ));
                sort(&mut problems);
                return problems;
            }
            let path = entry.path();
            if left_out(&entry.file_name(), depth, venv_location) {
                continue;
            }
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                if depth + 1 > MAX_WALK_DEPTH {
                    problems.push(problem(
                        &path,
                        format!("nested deeper than {MAX_WALK_DEPTH} levels: not checked"),
                    ));
                } else {
                    stack.push((path, depth + 1));
                }
            } else if kind.is_symlink()
                && let Some(message) = symlink_problem(dir, &path)
            {
                problems.push(problem(&path, message));
            }
        }
    }
    sort(&mut problems);
    problems
}

fn sort(problems: &mut [Problem]) {
    problems.sort_by(|a, b| a.file.cmp(&b.file));
}

/// Why the symlink at `link` (inside `root`) is a problem, if it is.
fn symlink_problem(root: &Path, link: &Path) -> Option<String> {
    let target = std::fs::read_link(link).ok()?;
    match link.canonicalize() {
        Ok(real) if real.starts_with(root) => None,
        Ok(real) => Some(format!(
            "symlink to {} leaves the agent directory (it resolves to {})",
            target.display(),
            real.display()
        )),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            Some(format!("symlink loop (through {})", target.display()))
        }
        Err(_) => {
            // Dangling: harmless while it points inside, a trap once its target outside appears.
            let base = link.parent().unwrap_or(root);
            (!lexically_inside(root, &base.join(&target)))
                .then(|| format!("dangling symlink to {}, outside the agent directory", target.display()))
        }
    }
}

/// Whether `path` stays under `root` by its components alone (`..` taken literally).
fn lexically_inside(root: &Path, path: &Path) -> bool {
    let mut normal: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal.iter().collect::<PathBuf>().starts_with(root)
}

/// Names at the top of an agent directory that are not the agent's: what agenthub makes
/// there (the environment `<venv>`, `<venv>.d`, `<venv>.lock`, and the install record).
pub fn agenthub_names(venv: &str) -> [String; 4] {
    [
        venv.to_owned(),
        format!("{venv}.d"),
        format!("{venv}.lock"),
        agenthub_core::INSTALL_RECORD_FILE.to_owned(),
    ]
}

/// Whether an install leaves the entry `name`, `depth` levels below the top of an agent
/// directory, out of what it installs, so that `validate` need not look at it: at the top
/// only, agenthub's own names ([`agenthub_names`]) and `.git` (a directory install does
/// not copy it; a git install's is the clone agenthub made). Everything else is installed
/// and checked, a `.git` further down (a vendored repository) included.
pub fn left_out(name: &std::ffi::OsStr, depth: usize, venv: &str) -> bool {
    depth == 0
        && (name.as_bytes() == b".git"
            || agenthub_names(venv).iter().any(|n| name.as_bytes() == n.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_are_judged_by_where_they_lead() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap().join("agent");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("data.txt"), "x").unwrap();
        symlink("../data.txt", root.join("sub/ok")).unwrap();
        symlink("/etc/hostname", root.join("sub/deeper/out")).unwrap();
        symlink("..", root.join("sub/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("../../nowhere", root.join("sub/dangling-out")).unwrap();
        symlink("nowhere", root.join("dangling-in")).unwrap();
        symlink("/usr/bin", root.join(".venv")).unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        symlink("/", root.join(".git/out")).unwrap();
        // Only what an install leaves out is skipped, and only at the top: the configured
        // environment and `.git`.
        symlink("/", root.join("sub/.venv")).unwrap();
        symlink("/", root.join(".other-venv")).unwrap();
        std::fs::create_dir_all(root.join("vendor/lib/.git")).unwrap();
        symlink("/", root.join("vendor/lib/.git/root")).unwrap();

        let found: Vec<String> = escaping_symlinks(&root, ".venv").iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 6, "{found:#?}");
        assert!(found[5].starts_with("vendor/lib/.git/root: symlink to / leaves"), "{found:#?}");
        assert!(found[0].starts_with(".other-venv: symlink to / leaves"), "{found:#?}");
        let found: Vec<String> =
            escaping_symlinks(&root, ".other-venv").iter().map(ToString::to_string).collect();
        assert!(found.iter().any(|f| f.starts_with(".venv: symlink to /usr/bin leaves")), "{found:#?}");
        let found: Vec<String> = escaping_symlinks(&root, ".venv")
            .iter()
            .map(ToString::to_string)
            .filter(|f| !f.contains(".venv") && !f.starts_with(".other") && !f.starts_with("vendor"))
            .collect();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].starts_with("loop: symlink loop"), "{found:#?}");
        assert!(found[1].starts_with("sub/dangling-out: dangling symlink to ../../nowhere"), "{found:#?}");
        assert!(found[2].starts_with("sub/deeper/out: symlink to /etc/hostname leaves"), "{found:#?}");
    }

    #[test]
    fn deep_trees_are_cut_off() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let mut deep = root.clone();
        for _ in 0..=MAX_WALK_DEPTH {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let found = escaping_symlinks(&root, ".venv");
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("nested deeper"), "{found:?}");
    }
}
