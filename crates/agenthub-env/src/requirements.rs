//! The requirement set of an agent (SPEC §3) and the environment key derived from it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::EnvError;

/// Where an agent's requirements come from, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequirementSource {
    /// `uv.lock` with `pyproject.toml`: installed from `uv export` of the lock.
    UvLock {
        /// The agent directory holding both files.
        project_dir: PathBuf,
    },
    /// `[project].dependencies` of `pyproject.toml`.
    Pyproject,
    /// `requirements.txt`, passed to the installer with `-r`.
    RequirementsFile(PathBuf),
    /// The manifest's `dependencies`.
    Manifest,
    /// Nothing to install.
    Empty,
}

impl RequirementSource {
    /// A short name for markers and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::UvLock { .. } => "uv.lock",
            Self::Pyproject => "pyproject.toml",
            Self::RequirementsFile(_) => "requirements.txt",
            Self::Manifest => "agent.yaml",
            Self::Empty => "none",
        }
    }
}

/// An agent's requirements, ready to key and to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementSet {
    /// Where they come from.
    pub source: RequirementSource,
    /// The requirements, normalised (comments and blank lines dropped), in file order.
    pub requirements: Vec<String>,
    /// What keys the environment: the sorted requirements, or the lock file's bytes.
    key_material: String,
}

/// Largest `requirements.txt` or `pyproject.toml` read.
pub const MAX_REQUIREMENTS_BYTES: u64 = 1024 * 1024;

/// Largest `uv.lock` read.
pub const MAX_LOCK_BYTES: u64 = 32 * 1024 * 1024;

/// One argument for an installer: a requirement, or a requirements file. Parsed once; the
/// backends turn it into their own argument vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallArg {
    /// A PEP 508 requirement (never an option: it cannot start with `-`).
    Requirement(String),
    /// A requirements file, passed with `-r`; the installer applies its own rules to the
    /// options inside it.
    RequirementsFile(PathBuf),
}

impl InstallArg {
    /// Reads `-r FILE` / `--requirement FILE` as a file and anything else as a requirement;
    /// other options are refused (they could redirect the installer, e.g. `--target`).
    pub fn parse(text: &str) -> Result<Self, EnvError> {
        let text = text.trim();
        for flag in ["-r", "--requirement"] {
            if let Some(rest) = text.strip_prefix(flag) {
                let file = rest.trim_start_matches('=').trim();
                if !file.is_empty() && (rest.starts_with([' ', '\t', '='])) {
                    return Ok(Self::RequirementsFile(PathBuf::from(file)));
                }
            }
        }
        Self::requirement(text, "the requirements")
    }

    /// A requirement from a list (`source` names the list in errors).
    fn requirement(text: &str, list: &str) -> Result<Self, EnvError> {
        if text.starts_with('-') || text.is_empty() {
            return Err(EnvError::BadRequirement { requirement: text.to_owned(), list: list.to_owned() });
        }
        Ok(Self::Requirement(text.to_owned()))
    }
}

impl RequirementSet {
    /// Reads the requirement set of the agent in `agent_dir` by SPEC §3's precedence.
    ///
    /// Files are read as untrusted input: regular files only, bounded, never through a
    /// symlink that leaves the agent directory.
    pub fn for_agent(agent_dir: &Path, manifest_dependencies: &[String]) -> Result<Self, EnvError> {
        let read = |name: &str, limit: u64| -> Result<Option<String>, EnvError> {
            agenthub_core::read_agent_file(agent_dir, Path::new(name), limit).map_err(EnvError::AgentFile)
        };
        let pyproject = read("pyproject.toml", MAX_REQUIREMENTS_BYTES)?;
        if let Some(pyproject) = &pyproject {
            if let Some(lock) = read("uv.lock", MAX_LOCK_BYTES)? {
                return Ok(Self {
                    source: RequirementSource::UvLock { project_dir: agent_dir.to_path_buf() },
                    requirements: Vec::new(),
                    key_material: format!("{lock}\n--pyproject--\n{pyproject}"),
                });
            }
            let deps = pyproject_dependencies(pyproject)
                .map_err(|message| EnvError::Pyproject { path: agent_dir.join("pyproject.toml"), message })?;
            if let Some(deps) = deps {
                check_requirements(&deps, "pyproject.toml [project].dependencies")?;
                return Ok(Self::from_list(RequirementSource::Pyproject, deps));
            }
        }
        if let Some(text) = read("requirements.txt", MAX_REQUIREMENTS_BYTES)? {
            let lines = requirement_lines(&text);
            return Ok(Self::from_list(
                RequirementSource::RequirementsFile(agent_dir.join("requirements.txt")),
                lines,
            ));
        }
        check_requirements(manifest_dependencies, "agent.yaml dependencies")?;
        Ok(Self::from_list(RequirementSource::Manifest, manifest_dependencies.to_vec()))
    }

    /// Nothing to install.
    pub fn empty() -> Self {
        Self::from_list(RequirementSource::Empty, Vec::new())
    }

    /// What to pass the installer (a lock is exported at build time instead: empty here).
    pub fn install_args(&self) -> Vec<InstallArg> {
        match &self.source {
            RequirementSource::RequirementsFile(path) => vec![InstallArg::RequirementsFile(path.clone())],
            RequirementSource::Pyproject | RequirementSource::Manifest => {
                self.requirements.iter().map(|r| InstallArg::Requirement(r.clone())).collect()
            }
            RequirementSource::UvLock { .. } | RequirementSource::Empty => Vec::new(),
        }
    }

    fn from_list(source: RequirementSource, requirements: Vec<String>) -> Self {
        let source = if requirements.is_empty() { RequirementSource::Empty } else { source };
        let mut sorted = requirements.clone();
        sorted.sort();
        sorted.dedup();
        Self { source, requirements, key_material: sorted.join("\n") }
    }

    /// Whether there is nothing to install.
    pub fn is_empty(&self) -> bool {
        self.source == RequirementSource::Empty
    }

    /// The environment key: a hash of the requirements and the Python constraint.
    /// The backend does not enter into it.
    pub fn key(&self, python_constraint: Option<&str>) -> String {
        let mut hash = Sha256::new();
        hash.update(b"agenthub-env-v1\n");
        hash.update(python_constraint.unwrap_or("").as_bytes());
        hash.update(b"\n");
        hash.update(self.source.name().as_bytes());
        hash.update(b"\n");
        hash.update(self.key_material.as_bytes());
        let digest = hash.finalize();
        digest[..16].iter().fold(String::with_capacity(32), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }
}

/// Refuses list entries that are installer options rather than requirements.
fn check_requirements(entries: &[String], list: &str) -> Result<(), EnvError> {
    entries.iter().try_for_each(|r| InstallArg::requirement(r.trim(), list).map(drop))
}

/// Requirement lines of a requirements file: comments and blank lines dropped, options
/// (`-r`, `--index-url` …) kept for the installer.
pub fn requirement_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let line = line.trim();
            // `#` starts a comment at the start of a line or after whitespace (pip's rule).
            match line.find(" #").or_else(|| line.find("\t#")) {
                Some(i) => line[..i].trim_end(),
                None if line.starts_with('#') => "",
                None => line,
            }
        })
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `[project].dependencies`, or `None` when the table or key is absent.
fn pyproject_dependencies(text: &str) -> Result<Option<Vec<String>>, String> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_owned())?;
    let Some(deps) = doc.get("project").and_then(|p| p.get("dependencies")) else {
        return Ok(None);
    };
    let deps = deps.as_array().ok_or("[project].dependencies must be an array of strings")?;
    deps.iter()
        .map(|d| {
            d.as_str().map(str::to_owned).ok_or_else(|| "[project].dependencies must hold strings".to_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn precedence_lock_then_pyproject_then_requirements_then_manifest() {
        let manifest = vec!["six".to_owned()];
        let pyproject = "[project]\nname='a'\ndependencies=['requests>=2', 'six']\n";
        let all = agent(&[("uv.lock", "lock"), ("pyproject.toml", pyproject), ("requirements.txt", "x\n")]);
        let set = RequirementSet::for_agent(all.path(), &manifest).unwrap();
        assert!(matches!(set.source, RequirementSource::UvLock { .. }));

        let py = agent(&[("pyproject.toml", pyproject), ("requirements.txt", "x\n")]);
        let set = RequirementSet::for_agent(py.path(), &manifest).unwrap();
        assert_eq!(set.source, RequirementSource::Pyproject);
        assert_eq!(set.requirements, ["requests>=2", "six"]);

        let no_deps = agent(&[("pyproject.toml", "[project]\nname='a'\n"), ("requirements.txt", "x # c\n")]);
        let set = RequirementSet::for_agent(no_deps.path(), &manifest).unwrap();
        assert!(matches!(set.source, RequirementSource::RequirementsFile(_)));
        assert_eq!(set.requirements, ["x"]);

        let bare = agent(&[]);
        let set = RequirementSet::for_agent(bare.path(), &manifest).unwrap();
        assert_eq!(set.source, RequirementSource::Manifest);
        assert!(RequirementSet::for_agent(bare.path(), &[]).unwrap().is_empty());
    }

    #[test]
    fn requirement_lines_drop_comments_keep_options() {
        let text = "# top\n\nsix==1.16.0  # pinned\n-r other.txt\n--index-url https://x/simple\nurl#egg=a\n";
        assert_eq!(
            requirement_lines(text),
            ["six==1.16.0", "-r other.txt", "--index-url https://x/simple", "url#egg=a"]
        );
    }

    #[test]
    fn key_ignores_order_and_comments_but_not_content_or_python() {
        let a = agent(&[("requirements.txt", "b\na\n")]);
        let b = agent(&[("requirements.txt", "# c\na\nb\n")]);
        let c = agent(&[("requirements.txt", "a\nb==2\n")]);
        let key = |d: &tempfile::TempDir, py| RequirementSet::for_agent(d.path(), &[]).unwrap().key(py);
        assert_eq!(key(&a, None), key(&b, None));
        assert_ne!(key(&a, None), key(&c, None));
        assert_ne!(key(&a, None), key(&a, Some(">=3.12")));
        assert_eq!(key(&a, None).len(), 32);
    }

    #[test]
    fn bad_pyproject_is_named() {
        let d = agent(&[("pyproject.toml", "[project\n")]);
        let err = RequirementSet::for_agent(d.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("pyproject.toml"), "{err}");
    }
}
