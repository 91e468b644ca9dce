//! Agent ids and paths (SPEC §1): what an agent argument names, and where it lives.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::agent_file::{AgentFileError, open_agent_file};
use crate::error::AgentRuntimeError;
use crate::manifest::MANIFEST_FILE_NAMES;

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

    /// Whether `part` is a valid namespace or name: `[A-Za-z0-9][A-Za-z0-9._-]*`, the rule
    /// every new agent's name follows too (`agenthub init`).
    pub fn is_valid_part(part: &str) -> bool {
        valid_part(part)
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

/// `arg` with a leading `~` or `~/` made the user's home (as a shell would); anything else
/// as it is.
pub fn expand_tilde(arg: &str) -> PathBuf {
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
    /// The agent as the caller named it (`./my-agent`, `acme/hello`): what a message that
    /// suggests a command about this agent writes.
    pub name: String,
}

/// Resolves an agent argument (id or path) against `agents_root`.
///
/// Ids never resolve outside the agents root, also not through symlinks. A name that is
/// not found but names a directory here (`my-agent` where `./my-agent` exists) is an
/// error that says to write `./my-agent`.
pub fn resolve_agent(arg: &str, agents_root: &Path) -> Result<AgentLocation, AgentRuntimeError> {
    let not_found = |mut reason: String| {
        if !arg.starts_with(['/', '.', '~']) && Path::new(arg).is_dir() {
            reason = format!("{reason}; to run the directory, write ./{arg}");
        }
        AgentRuntimeError::AgentNotFound { agent: arg.to_owned(), reason }
    };
    match AgentRef::parse(arg).map_err(|e| not_found(e.to_string()))? {
        AgentRef::Path(path) => {
            let dir =
                path.canonicalize().map_err(|_| not_found(format!("no directory at {}", path.display())))?;
            if !dir.is_dir() {
                return Err(not_found(format!("{} is not a directory", path.display())));
            }
            Ok(AgentLocation { dir, id: None, name: arg.to_owned() })
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
            Ok(AgentLocation { dir, id: Some(id), name: arg.to_owned() })
        }
    }
}

/// Lists the installed agents under `agents_root` (`<ns>/<name>` directories), sorted.
///
/// Hidden directories and names that are not valid id parts are skipped, and so is every
/// entry that [`resolve_agent`] or manifest loading would refuse for containment: a
/// directory that resolves outside the agents root (a symlink), or a manifest that is not
/// a regular file inside the agent directory (a FIFO would block a reader). Agents with a
/// missing or invalid manifest are listed: loading them reports why.
pub fn list_installed(agents_root: &Path) -> Vec<(AgentId, PathBuf)> {
    let mut found = list_agent_dirs(agents_root);
    found.retain(|(_, path)| manifest_is_contained(path));
    found
}

/// The `<ns>/<name>` directories under `agents_root`, sorted, whatever their manifest: what
/// [`list_installed`] lists before it drops agents whose manifest is refused for what it is
/// or where it leads (for `agenthub validate`, which reports those). Hidden directories,
/// names that are not valid id parts and directories that resolve outside the agents root
/// are skipped.
pub fn list_agent_dirs(agents_root: &Path) -> Vec<(AgentId, PathBuf)> {
    let Ok(root) = agents_root.canonicalize() else { return Vec::new() };
    let contained_dirs = |dir: &Path| {
        let root = &root;
        std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(move |entry| {
            let name = entry.file_name().into_string().ok()?;
            let real = entry.path().canonicalize().ok()?;
            (valid_part(&name) && real.starts_with(root) && real.is_dir()).then(|| (name, entry.path()))
        })
    };
    let mut found = Vec::new();
    for (ns, ns_path) in contained_dirs(agents_root) {
        for (name, path) in contained_dirs(&ns_path) {
            found.push((AgentId { namespace: ns.clone(), name }, path));
        }
    }
    found.sort();
    found
}

/// Whether no manifest file of `dir` is refused for what it is or where it leads.
fn manifest_is_contained(dir: &Path) -> bool {
    MANIFEST_FILE_NAMES.iter().all(|name| {
        !matches!(
            open_agent_file(dir, Path::new(name)),
            Err(AgentFileError::NotRegular { .. } | AgentFileError::Escapes { .. })
        )
    })
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

    #[test]
    fn listing_skips_what_exec_refuses() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("agents");
        for d in ["ns/ok", "ns/fifo", "ns/escaping-yaml", "other/inside", "outside/agent"] {
            let dir = if d.starts_with("outside") { tmp.path().join(d) } else { root.join(d) };
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("agent.yaml"), "name: x\n").unwrap();
        }
        std::fs::remove_file(root.join("ns/fifo/agent.yaml")).unwrap();
        let fifo =
            std::ffi::CString::new(root.join("ns/fifo/agent.yaml").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: mkfifo reads a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::remove_file(root.join("ns/escaping-yaml/agent.yaml")).unwrap();
        std::os::unix::fs::symlink(
            tmp.path().join("outside/agent/agent.yaml"),
            root.join("ns/escaping-yaml/agent.yaml"),
        )
        .unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside/agent"), root.join("ns/escaping-dir")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), root.join("escaping-ns")).unwrap();
        std::os::unix::fs::symlink(root.join("other/inside"), root.join("ns/linked")).unwrap();

        let ids: Vec<String> = list_installed(&root).into_iter().map(|(id, _)| id.to_string()).collect();
        assert_eq!(ids, ["ns/linked", "ns/ok", "other/inside"]);
        for refused in ["ns/fifo", "ns/escaping-yaml", "ns/escaping-dir", "escaping-ns/agent"] {
            let err = resolve_agent(refused, &root)
                .map_err(|e| e.error_type())
                .and_then(|loc| crate::AgentManifest::load(&loc.dir).map_err(|_| "InvalidManifestError"));
            assert!(err.is_err(), "{refused} is listed only if exec takes it");
        }
    }
}
