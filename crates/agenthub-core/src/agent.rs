//! Agent ids and paths (SPEC §1): what an agent argument names, and where it lives.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::error::AgentRuntimeError;

/// An installed agent's id, `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId {
    namespace: String,
    name: String,
}

impl AgentId {
    /// The namespace part.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name part.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why a string is not an [`AgentId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an agent id (`namespace/name`, each part [A-Za-z0-9][A-Za-z0-9._-]*)")]
pub struct InvalidAgentId(pub String);

fn valid_part(part: &str) -> bool {
    let mut bytes = part.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl FromStr for AgentId {
    type Err = InvalidAgentId;

    fn from_str(s: &str) -> Result<Self, InvalidAgentId> {
        match s.split_once('/') {
            Some((ns, name)) if valid_part(ns) && valid_part(name) => {
                Ok(Self { namespace: ns.to_owned(), name: name.to_owned() })
            }
            _ => Err(InvalidAgentId(s.to_owned())),
        }
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What an agent argument names: a directory, or an installed agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRef {
    /// A path (the argument started with `/`, `./`, `../` or `~`).
    Path(PathBuf),
    /// An id under the agents root.
    Id(AgentId),
}

impl AgentRef {
    /// Classifies an argument by SPEC §1: paths start with `/`, `./`, `../` or `~`.
    pub fn parse(arg: &str) -> Result<Self, InvalidAgentId> {
        let is_path = arg.starts_with('/')
            || arg.starts_with("./")
            || arg.starts_with("../")
            || arg.starts_with('~')
            || arg == "."
            || arg == "..";
        if is_path { Ok(Self::Path(expand_tilde(arg))) } else { arg.parse().map(Self::Id) }
    }
}

fn expand_tilde(arg: &str) -> PathBuf {
    let rest = if arg == "~" { Some("") } else { arg.strip_prefix("~/") };
    match (rest, std::env::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(arg),
    }
}

/// An agent argument resolved to an existing directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLocation {
    /// The canonical agent directory.
    pub dir: PathBuf,
    /// The id, when the agent was named by one.
    pub id: Option<AgentId>,
}

/// Resolves an agent argument (id or path) against `agents_root`.
///
/// Ids never resolve outside the agents root, also not through symlinks.
pub fn resolve_agent(arg: &str, agents_root: &Path) -> Result<AgentLocation, AgentRuntimeError> {
    let not_found = |reason: String| AgentRuntimeError::AgentNotFound { agent: arg.to_owned(), reason };
    match AgentRef::parse(arg).map_err(|e| not_found(e.to_string()))? {
        AgentRef::Path(path) => {
            let dir =
                path.canonicalize().map_err(|_| not_found(format!("no directory at {}", path.display())))?;
            if !dir.is_dir() {
                return Err(not_found(format!("{} is not a directory", path.display())));
            }
            Ok(AgentLocation { dir, id: None })
        }
        AgentRef::Id(id) => {
            let candidate = agents_root.join(&id.namespace).join(&id.name);
            let dir = candidate
                .canonicalize()
                .map_err(|_| not_found(format!("not installed under {}", agents_root.display())))?;
            let root = agents_root.canonicalize().map_err(|_| {
                not_found(format!("the agents root {} does not exist", agents_root.display()))
            })?;
            if !dir.starts_with(&root) || dir.components().any(|c| c == Component::ParentDir) {
                return Err(not_found("it resolves to a place outside the agents root".to_owned()));
            }
            if !dir.is_dir() {
                return Err(not_found(format!("{} is not a directory", candidate.display())));
            }
            Ok(AgentLocation { dir, id: Some(id) })
        }
    }
}

/// Lists the installed agents under `agents_root` (`<ns>/<name>` directories), sorted.
///
/// Hidden directories and names that are not valid id parts are skipped.
pub fn list_installed(agents_root: &Path) -> Vec<(AgentId, PathBuf)> {
    let mut found = Vec::new();
    let visible_dirs = |dir: &Path| {
        std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            (valid_part(&name) && entry.path().is_dir()).then(|| (name, entry.path()))
        })
    };
    for (ns, ns_path) in visible_dirs(agents_root) {
        for (name, path) in visible_dirs(&ns_path) {
            found.push((AgentId { namespace: ns.clone(), name }, path));
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths_are_told_apart() {
        assert!(matches!(AgentRef::parse("agentplug/coding-agent"), Ok(AgentRef::Id(_))));
        assert!(matches!(AgentRef::parse("./here"), Ok(AgentRef::Path(_))));
        assert!(matches!(AgentRef::parse("/abs"), Ok(AgentRef::Path(_))));
        assert!(matches!(AgentRef::parse("../up"), Ok(AgentRef::Path(_))));
        for bad in ["conf/../../etc", "a/b/c", "noslash", ".hidden/x", "a/", "/", "a/.b", "a b/c"] {
            if bad.starts_with('/') {
                continue;
            }
            assert!(AgentRef::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn ids_resolve_under_the_root_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("agents");
        std::fs::create_dir_all(root.join("ns/ok")).unwrap();
        std::fs::create_dir_all(tmp.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), root.join("ns/escape")).unwrap();

        let ok = resolve_agent("ns/ok", &root).unwrap();
        assert_eq!(ok.id.unwrap().to_string(), "ns/ok");
        for bad in ["ns/escape", "ns/missing", "ns/../../outside", "ns/.."] {
            let err = resolve_agent(bad, &root).unwrap_err();
            assert_eq!(err.error_type(), "AgentNotFoundError", "{bad}");
        }
    }

    #[test]
    fn listing_skips_hidden_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["b/two", "a/one", ".cache/x", "a/.hidden"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        std::fs::write(tmp.path().join("a/file"), "").unwrap();
        let ids: Vec<String> = list_installed(tmp.path()).into_iter().map(|(id, _)| id.to_string()).collect();
        assert_eq!(ids, ["a/one", "b/two"]);
    }
}
