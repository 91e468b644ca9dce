//! What `agenthub install` takes and what it leaves behind: the source of an install
//! (a directory, a git URL with an optional ref, or a registry shorthand), validated before
//! any git command sees it, and the provenance record written into every installed agent.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AgentId;

/// The provenance file in every agent directory agenthub installed. Its presence proves the
/// directory was made by `agenthub install` (so `update`, `remove` and `install --force`
/// may replace or delete it); nothing else does.
pub const INSTALL_RECORD_FILE: &str = ".agenthub-install.json";

/// Largest provenance file read.
pub const MAX_INSTALL_RECORD_BYTES: u64 = 64 * 1024;

/// Longest ref accepted (git's own limit on a ref name component is lower in practice).
pub const MAX_REF_LEN: usize = 255;

/// Where an install comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallSource {
    /// A local directory, copied (git is not involved).
    Path(PathBuf),
    /// A git repository, cloned with the `git` command.
    Git {
        /// The URL passed to git (`https://`, `ssh://`, `git://`, `file://` or
        /// `user@host:path`).
        url: String,
        /// The branch, tag or commit to check out; `None` is the remote's default branch.
        reference: Option<String>,
        /// The `ns/name` the source was written as, when it was the registry shorthand.
        shorthand: Option<AgentId>,
    },
}

/// Why an install source was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Not a path, URL or `ns/name`.
    #[error("`{0}` is not a directory, a git URL or ns/name")]
    Unrecognised(String),
    /// A URL with a scheme git must not be asked to use (`ext::` runs commands).
    #[error("`{url}`: the {scheme} transport is not allowed")]
    Scheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// A URL that could be read as an option, or holds whitespace or control characters.
    #[error("`{0}` is not a valid git URL")]
    BadUrl(String),
    /// A ref git would refuse, or that could be read as an option.
    #[error("invalid ref `{reference}`: {why}")]
    BadRef {
        /// The ref as given.
        reference: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// The registry template did not give a URL.
    #[error("registry template `{0}` does not give a git URL")]
    BadRegistry(String),
}

impl SourceError {
    /// What the user can do about it.
    pub fn suggestion(&self) -> String {
        match self {
            Self::Unrecognised(_) => "Give a directory (./dir, /dir, ~/dir), a git URL (https://…, ssh://…, git@host:…, file://…) with an optional @ref, or ns/name[@ref]".to_owned(),
            Self::Scheme { .. } => "Use an https://, ssh://, git://, file:// or git@host:path URL".to_owned(),
            Self::BadUrl(_) => "Check the URL; it must not start with `-` or contain spaces".to_owned(),
            Self::BadRef { .. } => "Use a branch, tag or commit name: letters, digits and . _ / - (git check-ref-format rules)".to_owned(),
            Self::BadRegistry(_) => "Set `registry:` in config.yaml or AGENTHUB_REGISTRY to a URL template such as https://github.com/{ns}/{name}.git".to_owned(),
        }
    }
}

impl InstallSource {
    /// Parses SOURCE: a path (`./`, `../`, `/`, `~/`, `.`), a git URL with an optional
    /// `@ref`, or `ns/name[@ref]` expanded through `registry` (a template with `{ns}` and
    /// `{name}`). `home` expands `~/`.
    pub fn parse(source: &str, registry: &str, home: Option<&Path>) -> Result<Self, SourceError> {
        if source.is_empty() || source.chars().any(char::is_control) {
            return Err(SourceError::Unrecognised(source.escape_debug().to_string()));
        }
        if source == "." || source == ".." || source.starts_with("./") || source.starts_with("../") {
            return Ok(Self::Path(PathBuf::from(source)));
        }
        if source.starts_with('/') {
            return Ok(Self::Path(PathBuf::from(source)));
        }
        if let Some(rest) = source.strip_prefix("~/") {
            let home = home.ok_or_else(|| SourceError::Unrecognised(source.to_owned()))?;
            return Ok(Self::Path(home.join(rest)));
        }
        if let Some((scheme, rest)) = source.split_once("://") {
            let scheme_lower = scheme.to_ascii_lowercase();
            if !matches!(scheme_lower.as_str(), "https" | "http" | "ssh" | "git" | "file" | "git+ssh") {
                return Err(SourceError::Scheme { url: source.to_owned(), scheme: scheme.to_owned() });
            }
            // The ref follows the first `@` of the path (an `@` in the authority is a user).
            let path_start = if scheme_lower == "file" { 0 } else { rest.find('/').unwrap_or(rest.len()) };
            let (url, reference) = split_ref(source, scheme.len() + 3 + path_start);
            return Self::git(url, reference, None);
        }
        if source.contains("::") {
            // git's `transport::address` form (`ext::`, `fd::`) can run commands.
            let scheme = source.split("::").next().unwrap_or_default().to_owned();
            return Err(SourceError::Scheme { url: source.to_owned(), scheme });
        }
        if let Some((user_host, path)) = source.split_once(':') {
            // scp-like `user@host:path[@ref]`.
            if user_host.contains('@') && !user_host.contains('/') && !path.is_empty() {
                let (url, reference) = split_ref(source, user_host.len() + 1);
                return Self::git(url, reference, None);
            }
        }
        let (id, reference) = match source.split_once('@') {
            Some((id, reference)) => (id, Some(reference)),
            None => (source, None),
        };
        let Ok(id) = id.parse::<AgentId>() else {
            return Err(SourceError::Unrecognised(source.to_owned()));
        };
        let url = registry_url(registry, &id);
        if url.contains("{ns}") || url.contains("{name}") || url == registry {
            return Err(SourceError::BadRegistry(registry.to_owned()));
        }
        match Self::git(&url, reference, Some(id)) {
            Err(SourceError::Scheme { .. } | SourceError::BadUrl(_) | SourceError::Unrecognised(_)) => {
                Err(SourceError::BadRegistry(registry.to_owned()))
            }
            other => other,
        }
    }

    fn git(url: &str, reference: Option<&str>, shorthand: Option<AgentId>) -> Result<Self, SourceError> {
        if url.starts_with('-') || url.chars().any(|c| c.is_whitespace() || c.is_control()) || url.is_empty()
        {
            return Err(SourceError::BadUrl(url.to_owned()));
        }
        let reference = reference.map(validate_ref).transpose()?;
        Ok(Self::Git { url: url.to_owned(), reference, shorthand })
    }

    /// The `ns/name` this source installs as when `--as` is not given: the shorthand, or
    /// the last two path components of the URL or directory (`.git` dropped; a directory
    /// with one component goes to the `local` namespace).
    pub fn default_id(&self) -> Option<AgentId> {
        let path = match self {
            Self::Git { shorthand: Some(id), .. } => return Some(id.clone()),
            Self::Git { url, .. } => url.replace(':', "/"),
            Self::Path(path) => {
                let absolute = std::path::absolute(path).ok()?;
                let name = absolute.file_name()?.to_str()?.to_owned();
                return format!("local/{name}").parse().ok();
            }
        };
        let mut parts = path.trim_end_matches('/').rsplit('/');
        let name = parts.next()?.trim_end_matches(".git");
        let ns = parts.next()?;
        format!("{ns}/{name}").parse().ok()
    }

    /// The requested ref, if any.
    pub fn reference(&self) -> Option<&str> {
        match self {
            Self::Git { reference, .. } => reference.as_deref(),
            Self::Path(_) => None,
        }
    }
}

/// Splits `…@ref` at the first `@` at or after byte `from`.
fn split_ref(source: &str, from: usize) -> (&str, Option<&str>) {
    match source.get(from..).and_then(|tail| tail.find('@')) {
        Some(at) => (&source[..from + at], Some(&source[from + at + 1..])),
        None => (source, None),
    }
}

/// Checks a ref by git's `check-ref-format` rules (and a little stricter: no option-like
/// or shell-special characters), so no git command ever sees a ref it could misread.
pub fn validate_ref(reference: &str) -> Result<String, SourceError> {
    let bad = |why| Err(SourceError::BadRef { reference: reference.escape_debug().to_string(), why });
    if reference.is_empty() {
        return bad("it is empty");
    }
    if reference.len() > MAX_REF_LEN {
        return bad("it is longer than 255 bytes");
    }
    if reference.starts_with('-') {
        return bad("it starts with `-`");
    }
    if !reference.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-+".contains(&b)) {
        return bad("only letters, digits and . _ / - + are allowed");
    }
    if reference.starts_with('/') || reference.ends_with('/') || reference.contains("//") {
        return bad("it has an empty path component");
    }
    if reference.contains("..") {
        return bad("it contains `..`");
    }
    if reference.ends_with('.') || reference.to_ascii_lowercase().ends_with(".lock") {
        return bad("it ends with `.` or `.lock`");
    }
    if reference.split('/').any(|part| part.starts_with('.')) {
        return bad("a component starts with `.`");
    }
    Ok(reference.to_owned())
}

/// The URL the registry template `registry` gives for `id`: `{ns}` and `{name}` replaced
/// by its namespace and name (the template is checked by configuration and by
/// [`InstallSource::parse`], not here).
pub fn registry_url(registry: &str, id: &AgentId) -> String {
    registry.replace("{ns}", id.namespace()).replace("{name}", id.name())
}

/// What kind of source an install record says an agent came from (`source_kind` in
/// `.agenthub-install.json`: `git` or `path`). A record written by another version with a
/// kind this one does not know still loads, keeping the string as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum SourceKind {
    /// Cloned with git.
    Git,
    /// Copied from a directory.
    Path,
    /// A kind this version does not know, as written.
    Other(String),
}

impl SourceKind {
    /// The kind of `source`.
    pub fn of(source: &InstallSource) -> Self {
        match source {
            InstallSource::Git { .. } => Self::Git,
            InstallSource::Path(_) => Self::Path,
        }
    }

    /// As written in the record.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Git => "git",
            Self::Path => "path",
            Self::Other(kind) => kind,
        }
    }
}

impl From<String> for SourceKind {
    fn from(kind: String) -> Self {
        match kind.as_str() {
            "git" => Self::Git,
            "path" => Self::Path,
            _ => Self::Other(kind),
        }
    }
}

impl From<SourceKind> for String {
    fn from(kind: SourceKind) -> Self {
        match kind {
            SourceKind::Other(kind) => kind,
            known => known.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Provenance of an installed agent, in `<agent>/.agenthub-install.json`. The first five
/// fields are agentplug's names for the same facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// `ns/name` it was installed as.
    pub agent_name: String,
    /// The URL it was cloned from (agentplug's name; any git URL), or the directory it
    /// was copied from.
    pub github_url: String,
    /// The commit checked out; `None` for a directory that is not a git work tree.
    pub commit_sha: Option<String>,
    /// The ref asked for (`@ref`); `None` for the default branch.
    pub requested_ref: Option<String>,
    /// When it was installed (RFC 3339, UTC).
    pub installed_at: String,
    /// SOURCE as the user gave it (`update` resolves it again).
    pub source: String,
    /// `git` or `path`.
    pub source_kind: SourceKind,
    /// The version of agenthub that installed it.
    pub agenthub_version: String,
    /// A random id that the agenthub home also holds (`<home>/installs/<ns>/<name>.json`):
    /// what proves the directory was installed by this home, since anything else in the
    /// directory could have come with the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_id: Option<String>,
}

/// Largest home install record read (permissions may hold a few hundred paths).
pub const MAX_HOME_INSTALL_RECORD_BYTES: u64 = 1024 * 1024;

/// agenthub's own record of an installed agent, in its home
/// (`<home>/installs/<ns>/<name>.json`), out of the agent's reach (the sandbox never shows
/// an agent the agenthub home): the install ids that prove the agent directory is this
/// home's, and the permissions the agent declared when it was installed, which its calls are
/// held to (an `agent.yaml` changed since cannot grant itself more; see
/// [`crate::approved_permissions`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeInstallRecord {
    /// The current install's id; during a swap the previous one's too.
    pub ids: Vec<String>,
    /// The declaration approved at install; `None` for an install made before agenthub
    /// recorded it, or a record this version cannot read back (nothing approved then).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_permissions")]
    pub permissions: Option<crate::Permissions>,
}

/// Permissions that do not read back (written by another version) are none, not a record
/// that does not load: the ids must still prove the install.
fn lenient_permissions<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::Permissions>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// Where the home keeps its record of the agent `id`: `<home>/installs/<ns>/<name>.json`.
pub fn home_install_record_path(home: &Path, id: &AgentId) -> PathBuf {
    home.join("installs").join(id.namespace()).join(format!("{}.json", id.name()))
}

/// Reads the home's record of the agent `id`: `None` when there is none or it is not one
/// (opened without following a final symlink, regular files only, at most
/// [`MAX_HOME_INSTALL_RECORD_BYTES`]).
pub fn read_home_install_record(home: &Path, id: &AgentId) -> Option<HomeInstallRecord> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = home_install_record_path(home, id);
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let text = crate::agent_file::read_bounded(file, path, MAX_HOME_INSTALL_RECORD_BYTES).ok()?;
    serde_json::from_str(&text).ok()
}

/// Reads the provenance record of the agent in `agent_dir`: `None` when there is none or
/// it is not a well-formed record (read like any agent file: regular, bounded, inside).
pub fn read_install_record(agent_dir: &Path) -> Option<InstallRecord> {
    let text = crate::read_agent_file(agent_dir, Path::new(INSTALL_RECORD_FILE), MAX_INSTALL_RECORD_BYTES)
        .ok()??;
    serde_json::from_str(&text).ok()
}

/// Largest `.git/HEAD` or loose ref file read.
const MAX_REF_FILE_BYTES: u64 = 4096;

/// Largest `.git/packed-refs` read (one line per branch and tag).
const MAX_PACKED_REFS_BYTES: u64 = 32 * 1024 * 1024;

/// Symbolic refs followed from HEAD, at most (git's own limit).
const MAX_SYMREF_HOPS: usize = 5;

/// Whether `text` is a full git object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_object_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The commit HEAD names in the git repository at `dir/.git`, read as files: git is not
/// run, so nothing the repository configures (hooks, `core.fsmonitor`, filters, …) runs.
///
/// Reads like any file of a hostile directory (regular files only, bounded, never through
/// a symlink that leaves `dir`): `HEAD`, then the branch it names (up to
/// [`MAX_SYMREF_HOPS`] symbolic refs) as a loose ref or in `packed-refs`. `None` when it
/// cannot tell: no `.git` directory (a `.git` *file*, the pointer of a linked worktree or
/// submodule, is not followed), an unborn branch, a ref name outside `refs/` or not
/// plain, a ref storage it does not read (reftable).
pub fn read_git_head(dir: &Path) -> Option<String> {
    let git = Path::new(".git");
    if !std::fs::symlink_metadata(dir.join(git)).is_ok_and(|m| m.is_dir()) {
        return None;
    }
    let mut text = crate::read_agent_file(dir, &git.join("HEAD"), MAX_REF_FILE_BYTES).ok()??;
    for _ in 0..=MAX_SYMREF_HOPS {
        let line = text.trim_end();
        if is_object_id(line) {
            return Some(line.to_owned());
        }
        let name = line.strip_prefix("ref:")?.trim_start();
        if !name.starts_with("refs/") || validate_ref(name).is_err() {
            return None;
        }
        text = match crate::read_agent_file(dir, &git.join(name), MAX_REF_FILE_BYTES).ok()? {
            Some(loose) => loose,
            None => return packed_ref(dir, name),
        };
    }
    None
}

/// The object id `packed-refs` gives the ref `name`.
fn packed_ref(dir: &Path, name: &str) -> Option<String> {
    let packed = crate::read_agent_file(dir, Path::new(".git/packed-refs"), MAX_PACKED_REFS_BYTES).ok()??;
    packed.lines().find_map(|line| {
        let (id, rest) = line.split_once(' ')?;
        (rest == name && is_object_id(id)).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = "https://github.com/{ns}/{name}.git";

    fn parse(s: &str) -> Result<InstallSource, SourceError> {
        InstallSource::parse(s, REG, Some(Path::new("/home/u")))
    }

    fn git(url: &str, reference: Option<&str>) -> InstallSource {
        InstallSource::Git { url: url.to_owned(), reference: reference.map(str::to_owned), shorthand: None }
    }

    #[test]
    fn paths_are_paths() {
        assert_eq!(parse("./a").unwrap(), InstallSource::Path("./a".into()));
        assert_eq!(parse("/x/y").unwrap(), InstallSource::Path("/x/y".into()));
        assert_eq!(parse("~/y").unwrap(), InstallSource::Path("/home/u/y".into()));
        assert_eq!(parse(".").unwrap(), InstallSource::Path(".".into()));
    }

    #[test]
    fn urls_take_a_ref_after_the_path() {
        assert_eq!(parse("https://h.org/a/b.git").unwrap(), git("https://h.org/a/b.git", None));
        assert_eq!(parse("https://h.org/a/b.git@v1").unwrap(), git("https://h.org/a/b.git", Some("v1")));
        assert_eq!(
            parse("ssh://git@h.org/a/b@feature/x").unwrap(),
            git("ssh://git@h.org/a/b", Some("feature/x"))
        );
        assert_eq!(parse("git@h.org:a/b.git@v2").unwrap(), git("git@h.org:a/b.git", Some("v2")));
        assert_eq!(parse("git@h.org:a/b.git").unwrap(), git("git@h.org:a/b.git", None));
        assert_eq!(parse("file:///srv/a/b@main").unwrap(), git("file:///srv/a/b", Some("main")));
    }

    #[test]
    fn shorthand_goes_through_the_registry() {
        let InstallSource::Git { url, reference, shorthand } = parse("acme/tool@v1.2").unwrap() else {
            panic!("not git")
        };
        assert_eq!(url, "https://github.com/acme/tool.git");
        assert_eq!(reference.as_deref(), Some("v1.2"));
        assert_eq!(shorthand.unwrap().to_string(), "acme/tool");
        let local = InstallSource::parse("a/b", "file:///srv/{ns}/{name}", None).unwrap();
        assert_eq!(
            local,
            InstallSource::Git {
                url: "file:///srv/a/b".into(),
                reference: None,
                shorthand: Some("a/b".parse().unwrap())
            }
        );
        assert!(matches!(InstallSource::parse("a/b", "nothing", None), Err(SourceError::BadRegistry(_))));
    }

    #[test]
    fn dangerous_sources_are_refused() {
        assert!(matches!(parse("ext::sh -c touch% /tmp/x"), Err(SourceError::Scheme { .. })));
        assert!(matches!(parse("fd::3"), Err(SourceError::Scheme { .. })));
        assert!(matches!(parse("javascript://x"), Err(SourceError::Scheme { .. })));
        assert!(matches!(parse("-uhttps://x"), Err(SourceError::Scheme { .. })));
        assert!(matches!(parse("-u/x"), Err(SourceError::Unrecognised(_))));
        assert!(matches!(parse("https://h/a b"), Err(SourceError::BadUrl(_))));
        assert!(matches!(parse("a/b\n"), Err(SourceError::Unrecognised(_))));
        assert!(matches!(parse("justaname"), Err(SourceError::Unrecognised(_))));
    }

    #[test]
    fn refs_follow_git_rules() {
        for good in ["main", "v1.2.3", "feature/x-y", "0123abcd", "release_1+build"] {
            assert_eq!(validate_ref(good).unwrap(), good);
        }
        for bad in [
            "",
            "-x",
            "--upload-pack=evil",
            "a..b",
            "a//b",
            "/a",
            "a/",
            "a.lock",
            "a.",
            ".a",
            "a/.b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a@{1}",
            "a\\b",
            "a*",
            "a?",
        ] {
            assert!(validate_ref(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_ref(&"a".repeat(256)).is_err());
        assert!(matches!(parse("a/b@--upload-pack=x"), Err(SourceError::BadRef { .. })));
    }

    #[test]
    fn default_ids() {
        let id = |s: &str| parse(s).unwrap().default_id().map(|i| i.to_string());
        assert_eq!(id("https://h.org/acme/tool.git@v1").as_deref(), Some("acme/tool"));
        assert_eq!(id("git@h.org:acme/tool.git").as_deref(), Some("acme/tool"));
        assert_eq!(id("acme/tool").as_deref(), Some("acme/tool"));
        assert_eq!(id("/srv/agents/hello").as_deref(), Some("local/hello"));
    }

    #[test]
    fn records_round_trip_and_garbage_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_install_record(dir.path()).is_none());
        let record = InstallRecord {
            agent_name: "a/b".into(),
            github_url: "file:///x".into(),
            commit_sha: Some("abc".into()),
            requested_ref: None,
            installed_at: "2026-11-27T00:00:00Z".into(),
            source: "a/b".into(),
            source_kind: SourceKind::Git,
            agenthub_version: "0.1.0".into(),
            install_id: Some("0123".into()),
        };
        std::fs::write(dir.path().join(INSTALL_RECORD_FILE), serde_json::to_string(&record).unwrap())
            .unwrap();
        assert_eq!(read_install_record(dir.path()), Some(record));
        std::fs::write(dir.path().join(INSTALL_RECORD_FILE), "{not json").unwrap();
        assert!(read_install_record(dir.path()).is_none());
    }

    #[test]
    fn source_kinds_are_the_record_strings_and_unknown_ones_load() {
        for (kind, text) in [(SourceKind::Git, "git"), (SourceKind::Path, "path")] {
            assert_eq!(serde_json::to_value(&kind).unwrap(), text);
            assert_eq!(serde_json::from_value::<SourceKind>(text.into()).unwrap(), kind);
        }
        let other: SourceKind = serde_json::from_value("svn".into()).unwrap();
        assert_eq!(other, SourceKind::Other("svn".into()));
        assert_eq!(serde_json::to_value(&other).unwrap(), "svn");
    }

    #[test]
    fn registry_templates_expand_both_names() {
        let id: AgentId = "acme/tool".parse().unwrap();
        assert_eq!(registry_url("https://h/{ns}/{name}.git", &id), "https://h/acme/tool.git");
        assert_eq!(registry_url("file:///r/{name}-{ns}-{name}", &id), "file:///r/tool-acme-tool");
    }

    #[test]
    fn git_head_is_read_from_files_and_unknown_when_unclear() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let (a, b) = ("a".repeat(40), "b".repeat(64));
        assert_eq!(read_git_head(&dir), None);
        std::fs::create_dir_all(dir.join(".git/refs/heads/feature")).unwrap();
        std::fs::write(dir.join(".git/HEAD"), format!("{a}\n")).unwrap();
        assert_eq!(read_git_head(&dir).as_deref(), Some(a.as_str()), "detached");
        std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(read_git_head(&dir), None, "unborn");
        std::fs::write(
            dir.join(".git/packed-refs"),
            format!("# pack-refs\n{a} refs/heads/mainx\n{b} refs/heads/main\n^{a}\n"),
        )
        .unwrap();
        assert_eq!(read_git_head(&dir).as_deref(), Some(b.as_str()), "packed");
        std::fs::write(dir.join(".git/refs/heads/main"), format!("{a}\n")).unwrap();
        assert_eq!(read_git_head(&dir).as_deref(), Some(a.as_str()), "loose before packed");
        std::fs::write(dir.join(".git/refs/heads/main"), "ref: refs/heads/feature/x\n").unwrap();
        std::fs::write(dir.join(".git/refs/heads/feature/x"), format!("{b}\n")).unwrap();
        assert_eq!(read_git_head(&dir).as_deref(), Some(b.as_str()), "symbolic");
        std::fs::write(dir.join(".git/refs/heads/feature/x"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(read_git_head(&dir), None, "a loop ends");
        for bad in [
            "ref: ../../etc/passwd",
            "ref: refs/../../x",
            "ref: HEAD",
            "ref: refs/heads/.invalid",
            "junk",
            &a[..39],
        ] {
            std::fs::write(dir.join(".git/HEAD"), bad).unwrap();
            assert_eq!(read_git_head(&dir), None, "{bad}");
        }
        // A ref that is a symlink out of the directory, a FIFO or a directory: unknown.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("ref"), format!("{a}\n")).unwrap();
        std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/out\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("ref"), dir.join(".git/refs/heads/out")).unwrap();
        assert_eq!(read_git_head(&dir), None, "escaping symlink");
        std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/feature\n").unwrap();
        assert_eq!(read_git_head(&dir), None, "a directory");
        // A `.git` file (a linked worktree) or symlink is not followed.
        std::fs::remove_dir_all(dir.join(".git")).unwrap();
        std::fs::write(dir.join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert_eq!(read_git_head(&dir), None);
        std::fs::remove_file(dir.join(".git")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.join(".git")).unwrap();
        assert_eq!(read_git_head(&dir), None);
    }
}
