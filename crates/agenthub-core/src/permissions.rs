//! What an agent may reach beyond running itself (SPEC §8): the `permissions:` block of a
//! manifest ([`Permissions`]: network, extra paths, variables), what it says in words a
//! person reads at a glance ([`Permissions::describe`]), what a changed manifest asks for
//! beyond what was approved at install ([`Permissions::beyond`]), and the host patterns of a
//! network entry ([`HostPattern`]), shared by the manifest, the user's grants and the egress
//! proxy that enforces them.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use crate::manifest::FieldProblem;
use crate::yaml::Node as Yaml;

/// Why a network entry (`api.openai.com`, `*.anthropic.com:443`, `localhost:11434`) was
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HostPatternError {
    /// Empty, or only a port.
    #[error("`{0}` names no host")]
    Empty(String),
    /// The port is not a number from 1 to 65535.
    #[error("`{entry}`: `{port}` is not a port (1 to 65535)")]
    BadPort {
        /// The whole entry.
        entry: String,
        /// What stood where the port goes.
        port: String,
    },
    /// A character a host name cannot hold, a misplaced `*`, or an empty label.
    #[error("`{0}` is not a host name, IP address or `*.domain` pattern")]
    BadHost(String),
    /// A URL instead of a host.
    #[error("`{0}` is a URL; write the host only (and `:port` if one port)")]
    Url(String),
}

/// One network entry: a host (exact, `*.suffix`, or an IP address) and an optional port.
///
/// `localhost`, `127.0.0.1` and `::1` all mean the caller's loopback. A pattern is held
/// lower-case; `*.example.com` matches `a.example.com` and `a.b.example.com`, not
/// `example.com` itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostMatch {
    /// A name or an IP address, exactly.
    Exact(String),
    /// `*.` followed by this suffix (without the dot).
    Wildcard(String),
}

impl HostPattern {
    /// Parses `host`, `host:port`, `*.domain[:port]`, `[v6addr]:port` or a bare IPv6
    /// address.
    pub fn parse(entry: &str) -> Result<Self, HostPatternError> {
        let text = entry.trim();
        if text.contains("://") || text.contains('/') {
            return Err(HostPatternError::Url(entry.to_owned()));
        }
        let (host, port) = split_port(text, entry)?;
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(HostPatternError::Empty(entry.to_owned()));
        }
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            if !is_host_name(suffix) {
                return Err(HostPatternError::BadHost(entry.to_owned()));
            }
            HostMatch::Wildcard(suffix.to_owned())
        } else if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            // One spelling per address (`0:0::1` is `::1`): the one the proxy compares.
            HostMatch::Exact(ip.to_string())
        } else if is_host_name(&host) {
            HostMatch::Exact(host)
        } else {
            return Err(HostPatternError::BadHost(entry.to_owned()));
        };
        Ok(Self { host, port })
    }

    /// The port, when the entry names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether this entry is the caller's loopback (`localhost`, `127.0.0.1`, `::1`): such
    /// entries are bridged into the sandbox rather than reached through the proxy.
    pub fn is_loopback(&self) -> bool {
        match &self.host {
            HostMatch::Exact(h) => {
                h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            HostMatch::Wildcard(_) => false,
        }
    }

    /// Whether the host is a wildcard (`*.example.com`).
    pub fn is_wildcard(&self) -> bool {
        matches!(self.host, HostMatch::Wildcard(_))
    }

    /// Whether `host` (a name or an address, any case, without brackets) and `port` are
    /// allowed by this entry.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match &self.host {
            HostMatch::Exact(h) => *h == host,
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl HostPattern {
    /// Whether every host and port this entry allows is allowed by `self` too: the same
    /// host (or one `self`'s wildcard matches; a wildcard covers narrower wildcards), and
    /// `self` names no port or the same one.
    pub fn covers(&self, other: &Self) -> bool {
        if self.port.is_some() && self.port != other.port {
            return false;
        }
        match (&self.host, &other.host) {
            (HostMatch::Exact(a), HostMatch::Exact(b)) => a == b,
            (HostMatch::Wildcard(_), HostMatch::Exact(b)) => self.matches(b, other.port.unwrap_or(0)),
            (HostMatch::Wildcard(s), HostMatch::Wildcard(t)) => {
                t == s || t.strip_suffix(s.as_str()).is_some_and(|rest| rest.ends_with('.'))
            }
            (HostMatch::Exact(_), HostMatch::Wildcard(_)) => false,
        }
    }

    /// Whether the host is a link-local address (`169.254.0.0/16`, `fe80::/10`) or a cloud
    /// metadata name, where clouds serve a machine's credentials: only a user can grant
    /// those.
    pub fn is_link_local(&self) -> bool {
        let HostMatch::Exact(host) = &self.host else { return false };
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => ip.is_link_local(),
            Ok(std::net::IpAddr::V6(ip)) => {
                (ip.segments()[0] & 0xffc0) == 0xfe80
                    || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
            }
            Err(_) => METADATA_HOSTS.contains(&host.trim_end_matches('.')),
        }
    }
}

/// Names under which clouds serve instance metadata (and credentials).
const METADATA_HOSTS: [&str; 3] = ["metadata.google.internal", "metadata", "instance-data"];

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostMatch::Exact(h) if h.contains(':') => format!("[{h}]"),
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Wildcard(s) => format!("*.{s}"),
        };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

impl std::str::FromStr for HostPattern {
    type Err = HostPatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for HostPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HostPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Splits `host[:port]`, `[v6]:port`, or a bare IPv6 address.
fn split_port<'a>(text: &'a str, entry: &str) -> Result<(&'a str, Option<u16>), HostPatternError> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| HostPatternError::BadPort { entry: entry.to_owned(), port: p.to_owned() })
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or_else(|| HostPatternError::BadHost(entry.to_owned()))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostPatternError::BadHost(entry.to_owned()));
        }
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(HostPatternError::BadHost(entry.to_owned())),
        };
    }
    if text.matches(':').count() > 1 {
        // A bare IPv6 address has no port.
        return if text.parse::<std::net::Ipv6Addr>().is_ok() {
            Ok((text, None))
        } else {
            Err(HostPatternError::BadHost(entry.to_owned()))
        };
    }
    match text.split_once(':') {
        Some((host, p)) => Ok((host, Some(parse_port(p)?))),
        None => Ok((text, None)),
    }
}

/// A DNS name: labels of letters, digits, `-` and `_`, none empty, at most 253 bytes.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

// ---- The `permissions:` block --------------------------------------------------------------

/// Entries one list of a `permissions:` block may hold, at most.
pub const MAX_PERMISSION_ENTRIES: usize = 64;

/// The longest path a `permissions:` block may name, in bytes (Linux's `PATH_MAX`).
pub const MAX_PERMISSION_PATH_BYTES: usize = 4096;

/// Places under the user's home that an agent may not ask for, read or write, nor for a
/// directory that holds one: credentials, the shell's and the desktop's start-up files (a
/// write there runs code at the next login), and agenthub's own default home (its
/// configuration grants permissions). Only a user can grant them (`--allow-read`,
/// `--allow-write`, `grants` in config.yaml).
pub const PROTECTED_HOME_PATHS: [&str; 22] = [
    ".ssh",
    ".aws",
    ".gnupg",
    ".config/gcloud",
    ".kube",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
    ".config/gh",
    ".azure",
    ".password-store",
    ".local/share/keyrings",
    ".agenthub",
    ".bashrc",
    ".bash_profile",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".config/autostart",
    ".config/systemd",
];

/// System places an agent may not ask to read or write (nor a directory that holds one):
/// other processes' memory and environment, devices, sockets of system services (Docker's
/// API is root), boot files, and `/etc` (`/etc/shadow` and host keys, when run as root).
pub const PROTECTED_SYSTEM_PATHS: [&str; 7] = ["/boot", "/dev", "/etc", "/proc", "/run", "/sys", "/var/run"];

/// System places an agent may not ask to write (beyond [`PROTECTED_SYSTEM_PATHS`]): the
/// programs and libraries every process runs, writable when agenthub runs as root.
pub const PROTECTED_SYSTEM_WRITE_PATHS: [&str; 7] =
    ["/bin", "/lib", "/lib32", "/lib64", "/opt", "/sbin", "/usr"];

/// What an agent declares it needs beyond running itself: `permissions:` in `agent.yaml`
/// (SPEC §8). Nothing declared (the block absent) is [`Permissions::default`].
///
/// Entries are checked when the manifest is parsed (every bad one is an `InvalidManifestError`
/// problem naming its field, `permissions.filesystem.read[0]`): hosts parse as [`HostPattern`]s, a loopback entry names its
/// port, paths are [`DeclaredPath`]s outside the protected places, variables are names.
/// Serialised in the shape of the block: `{"network": true | false | [..] | null,
/// "filesystem": {"read": [..], "write": [..]}, "env": [..]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `network:`; `None` when not declared.
    pub network: Option<NetworkPermission>,
    /// `filesystem.read:` extra paths to read.
    pub read: Vec<DeclaredPath>,
    /// `filesystem.write:` extra paths to write.
    pub write: Vec<DeclaredPath>,
    /// `env:` variables the agent sees in strict mode.
    pub env: Vec<String>,
}

/// `network:` in a `permissions:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkPermission {
    /// `false`: no network at all, in every mode.
    Off,
    /// `true`: any public host (also in strict mode).
    Any,
    /// A list: these hosts (and, for loopback entries, these local ports).
    Hosts(Vec<HostPattern>),
}

/// A path in `filesystem.read` or `filesystem.write`, as declared: under the user's home
/// (`~/datasets`), inside the agent directory (`./output`, `output`), or absolute. Held
/// normalised (no `.` components, no trailing `/`); `..` is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeclaredPath {
    /// `~` or `~/…`: relative to the user's home (empty for `~` itself).
    Home(PathBuf),
    /// A relative path: inside the agent directory (empty for the directory itself).
    Agent(PathBuf),
    /// An absolute path.
    Absolute(PathBuf),
}

/// Why one entry of a `permissions:` block (or of a grant) was refused. The message reads
/// after the entry's field: `permissions.network[0]: …`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryError {
    /// Not a host pattern.
    #[error(transparent)]
    Host(#[from] HostPatternError),
    /// `localhost` (or `127.0.0.1`, `::1`) without a port.
    #[error(
        "`{0}` is this machine: name the port it may reach, as in `localhost:11434` (one entry per port)"
    )]
    LoopbackWithoutPort(String),
    /// A link-local address or a cloud metadata name, in a declaration.
    #[error(
        "`{0}` is a link-local or cloud metadata address, where a cloud machine's credentials are served: an agent may not ask for it, only a user can grant it (--allow-net)"
    )]
    LinkLocal(String),
    /// Not a variable name.
    #[error("`{0}` is not a variable name (letters, digits and `_`, not starting with a digit)")]
    EnvName(String),
    /// An empty path.
    #[error("a path must not be empty")]
    EmptyPath,
    /// A path with control characters, or longer than [`MAX_PERMISSION_PATH_BYTES`].
    #[error("`{0}` is not a path agenthub accepts (control characters, or longer than 4096 bytes)")]
    BadPath(String),
    /// `~user/…`.
    #[error(
        "`{0}`: only `~` and `~/…` (your home) are understood; write another user's home as an absolute path"
    )]
    OtherUsersHome(String),
    /// A `..` component.
    #[error("`{0}` contains `..`: write the path without it")]
    DotDot(String),
    /// A place only a user can grant (see [`PROTECTED_HOME_PATHS`], [`PROTECTED_SYSTEM_PATHS`]).
    #[error(
        "`{path}` {why}: an agent may not ask for it, only a user can grant it ({flag}, or `grants` in config.yaml)"
    )]
    Protected {
        /// The path as declared.
        path: String,
        /// Why: `is your whole home directory`, `holds credentials, start-up files or agenthub's configuration`.
        why: &'static str,
        /// The flag that grants it: `--allow-read` or `--allow-write`.
        flag: &'static str,
    },
    /// A relative path that leaves the agent directory through a symlink.
    #[error("`{path}` leaves the agent directory (it resolves to {})", real.display())]
    Escapes {
        /// The path as declared.
        path: String,
        /// Where it really is.
        real: PathBuf,
    },
    /// More entries than [`MAX_PERMISSION_ENTRIES`].
    #[error("more than {MAX_PERMISSION_ENTRIES} entries")]
    TooMany,
}

impl DeclaredPath {
    /// Parses a declared path: `~` or `~/…`, an absolute path, or a relative one (inside the
    /// agent directory). Refuses empty paths, control characters, `~user`, `..` and the
    /// protected places a declaration may not name whatever the machine
    /// ([`PROTECTED_HOME_PATHS`] under `~`, [`PROTECTED_SYSTEM_PATHS`], `/`); `write` also
    /// refuses [`PROTECTED_SYSTEM_WRITE_PATHS`]. Places that depend on the machine (an
    /// absolute path into the home, the agenthub home) are checked by
    /// [`Permissions::check_places`].
    pub fn parse(raw: &str, write: bool) -> Result<Self, EntryError> {
        if raw.is_empty() {
            return Err(EntryError::EmptyPath);
        }
        if raw.chars().any(char::is_control) || raw.len() > MAX_PERMISSION_PATH_BYTES {
            return Err(EntryError::BadPath(raw.escape_debug().to_string()));
        }
        let (kind, rest): (fn(PathBuf) -> Self, &str) = if raw == "~" {
            (Self::Home, "")
        } else if let Some(rest) = raw.strip_prefix("~/") {
            (Self::Home, rest)
        } else if raw.starts_with('~') {
            return Err(EntryError::OtherUsersHome(raw.to_owned()));
        } else if raw.starts_with('/') {
            (Self::Absolute, raw)
        } else {
            (Self::Agent, raw)
        };
        let mut normal = PathBuf::new();
        for component in Path::new(rest).components() {
            match component {
                Component::CurDir => {}
                Component::ParentDir => return Err(EntryError::DotDot(raw.to_owned())),
                other => normal.push(other),
            }
        }
        let path = kind(normal);
        if let Some(why) = path.protected_anywhere(write) {
            return Err(EntryError::Protected { path: path.to_string(), why, flag: flag(write) });
        }
        Ok(path)
    }

    /// Why this path is one a declaration may not name on any machine, if it is.
    fn protected_anywhere(&self, write: bool) -> Option<&'static str> {
        match self {
            Self::Home(rel) if rel.as_os_str().is_empty() => Some(WHOLE_HOME),
            Self::Home(rel) => protected_under_home(rel),
            Self::Absolute(path) => protected_system(path, write),
            Self::Agent(_) => None,
        }
    }

    /// The absolute path: `~` expanded with `home`, a relative path joined to `agent_dir`.
    /// `None` for a `~` path when there is no home.
    pub fn to_absolute(&self, agent_dir: &Path, home: Option<&Path>) -> Option<PathBuf> {
        Some(match self {
            Self::Home(rel) => join_rel(home?, rel),
            Self::Agent(rel) => join_rel(agent_dir, rel),
            Self::Absolute(path) => path.clone(),
        })
    }

    /// Whether everything under `other` is under `self` too (the same kind of path, and
    /// `self` is `other` or a directory holding it).
    pub fn covers(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Home(a), Self::Home(b))
            | (Self::Agent(a), Self::Agent(b))
            | (Self::Absolute(a), Self::Absolute(b)) => b.starts_with(a),
            _ => false,
        }
    }
}

fn join_rel(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() { base.to_path_buf() } else { base.join(rel) }
}

fn flag(write: bool) -> &'static str {
    if write { "--allow-write" } else { "--allow-read" }
}

const WHOLE_HOME: &str = "is your whole home directory";
const HOME_SECRETS: &str = "holds credentials, start-up files or agenthub's own configuration";

/// Why `rel` (relative to the home) may not be declared: it is, or holds, or is inside one
/// of [`PROTECTED_HOME_PATHS`].
fn protected_under_home(rel: &Path) -> Option<&'static str> {
    PROTECTED_HOME_PATHS
        .iter()
        .any(|p| rel.starts_with(p) || Path::new(p).starts_with(rel))
        .then_some(HOME_SECRETS)
}

/// Why the absolute `path` may not be declared: `/`, or it is, holds or is inside a system
/// place.
fn protected_system(path: &Path, write: bool) -> Option<&'static str> {
    if path.parent().is_none() {
        return Some("is the whole filesystem");
    }
    let writes = if write { &PROTECTED_SYSTEM_WRITE_PATHS[..] } else { &[] };
    PROTECTED_SYSTEM_PATHS
        .iter()
        .chain(writes)
        .any(|p| path.starts_with(p) || Path::new(p).starts_with(path))
        .then_some("is, holds or is inside a system directory (processes, devices, service sockets, /etc)")
}

impl fmt::Display for DeclaredPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, rel) = match self {
            Self::Home(rel) => ("~", rel),
            Self::Agent(rel) => (".", rel),
            Self::Absolute(path) => return write!(f, "{}", path.display()),
        };
        if rel.as_os_str().is_empty() { f.write_str(prefix) } else { write!(f, "{prefix}/{}", rel.display()) }
    }
}

/// Checks a variable name: letters, digits and `_`, not starting with a digit.
pub fn check_env_name(name: &str) -> Result<(), EntryError> {
    let mut bytes = name.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(()) } else { Err(EntryError::EnvName(name.escape_debug().to_string())) }
}

/// Parses a network entry a user grants (`--allow-net`, `grants` in config.yaml): a
/// [`HostPattern`], and a loopback entry must name its port.
pub fn parse_net_grant(entry: &str) -> Result<HostPattern, EntryError> {
    let pattern = HostPattern::parse(entry)?;
    if pattern.is_loopback() && pattern.port().is_none() {
        return Err(EntryError::LoopbackWithoutPort(pattern.to_string()));
    }
    Ok(pattern)
}

/// Parses a network entry an agent declares: as [`parse_net_grant`], and no link-local or
/// metadata address.
fn parse_net_declared(entry: &str) -> Result<HostPattern, EntryError> {
    let pattern = parse_net_grant(entry)?;
    if pattern.is_link_local() {
        return Err(EntryError::LinkLocal(pattern.to_string()));
    }
    Ok(pattern)
}

/// The machine-dependent places of [`Permissions::check_places`].
#[derive(Debug, Clone, Copy)]
pub struct Places<'a> {
    /// The agent directory (canonical).
    pub agent_dir: &'a Path,
    /// The user's home, when known.
    pub home: Option<&'a Path>,
    /// The agenthub home (`$AGENTHUB_HOME`, `~/.agenthub`).
    pub agenthub_home: &'a Path,
}

impl Permissions {
    /// Whether nothing is declared (also no `network: false`).
    pub fn is_empty(&self) -> bool {
        self.network.is_none() && self.read.is_empty() && self.write.is_empty() && self.env.is_empty()
    }

    /// Reads a `permissions:` block (`null` is nothing declared), pushing a problem for
    /// every bad entry with its field (`permissions.filesystem.read[0]`). Bad entries are
    /// left out of the result.
    pub(crate) fn from_yaml(value: &Yaml, problems: &mut Vec<FieldProblem>) -> Self {
        let mut problem = |field: String, message: String| problems.push(FieldProblem { field, message });
        let mut out = Self::default();
        let Some(entries) = value.as_map() else {
            if !value.is_null() {
                problem(
                    "permissions".into(),
                    "must be a mapping with `network`, `filesystem` and `env`".into(),
                );
            }
            return out;
        };
        for (key, value) in entries {
            let Yaml::Str(key) = key else {
                problem("permissions".into(), "keys must be strings".into());
                continue;
            };
            let field = format!("permissions.{key}");
            match key.as_str() {
                "network" => out.network = network_from_yaml(value, &field, &mut problem),
                "env" => {
                    for (i, name) in list_from_yaml(value, &field, "variable names", &mut problem) {
                        match check_env_name(&name) {
                            Ok(()) if out.env.contains(&name) => {}
                            Ok(()) => out.env.push(name),
                            Err(e) => problem(format!("{field}[{i}]"), e.to_string()),
                        }
                    }
                }
                "filesystem" => {
                    let Some(fs) = value.as_map() else {
                        if !value.is_null() {
                            problem(field, "must be a mapping with `read` and `write`".into());
                        }
                        continue;
                    };
                    for (key, value) in fs {
                        let Yaml::Str(key) = key else {
                            problem(field.clone(), "keys must be strings".into());
                            continue;
                        };
                        let field = format!("{field}.{key}");
                        let (list, write) = match key.as_str() {
                            "read" => (&mut out.read, false),
                            "write" => (&mut out.write, true),
                            other => {
                                problem(field, unknown_key(other, &["read", "write"]));
                                continue;
                            }
                        };
                        for (i, raw) in list_from_yaml(value, &field, "paths", &mut problem) {
                            match DeclaredPath::parse(&raw, write) {
                                Ok(path) if list.contains(&path) => {}
                                Ok(path) => list.push(path),
                                Err(e) => problem(format!("{field}[{i}]"), e.to_string()),
                            }
                        }
                    }
                }
                other => problem(field, unknown_key(other, &["network", "filesystem", "env"])),
            }
        }
        out
    }

    /// The problems of the declared paths on this machine, each with its field: an absolute
    /// path that is (or holds) the home, a protected place under it, or the agenthub home;
    /// and, following symlinks, a path that really is one of those, or a relative path that
    /// leaves the agent directory. What [`DeclaredPath::parse`] checks is not repeated.
    pub fn check_places(&self, places: &Places<'_>) -> Vec<(String, EntryError)> {
        let mut problems = Vec::new();
        for (list, write, name) in [(&self.read, false, "read"), (&self.write, true, "write")] {
            for (i, path) in list.iter().enumerate() {
                if let Err(e) = check_place(path, write, places) {
                    problems.push((format!("permissions.filesystem.{name}[{i}]"), e));
                }
            }
        }
        problems
    }

    /// What a person reads in five seconds: one short line per kind of thing asked for
    /// (`network: api.openai.com, *.anthropic.com; local port 11434`, `reads ~/datasets`,
    /// `writes ./output`, `sees OPENAI_API_KEY in strict mode`), or `asks for nothing beyond
    /// its own directory`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.network {
            Some(NetworkPermission::Off) => lines.push("no network".to_owned()),
            Some(NetworkPermission::Any) => lines.push("network: any public host".to_owned()),
            Some(NetworkPermission::Hosts(hosts)) if !hosts.is_empty() => {
                let names: Vec<String> =
                    hosts.iter().filter(|h| !h.is_loopback()).map(ToString::to_string).collect();
                let mut ports: Vec<u16> =
                    hosts.iter().filter(|h| h.is_loopback()).filter_map(HostPattern::port).collect();
                ports.sort_unstable();
                ports.dedup();
                let mut parts = Vec::new();
                if !names.is_empty() {
                    parts.push(names.join(", "));
                }
                if !ports.is_empty() {
                    let ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
                    let s = if ports.len() == 1 { "" } else { "s" };
                    parts.push(format!("local port{s} {}", ports.join(", ")));
                }
                lines.push(format!("network: {}", parts.join("; ")));
            }
            Some(NetworkPermission::Hosts(_)) | None => {}
        }
        let joined =
            |paths: &[DeclaredPath]| paths.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if !self.read.is_empty() {
            lines.push(format!("reads {}", joined(&self.read)));
        }
        if !self.write.is_empty() {
            lines.push(format!("writes {}", joined(&self.write)));
        }
        if !self.env.is_empty() {
            lines.push(format!("sees {} in strict mode", self.env.join(", ")));
        }
        if lines.is_empty() {
            lines.push("asks for nothing beyond its own directory".to_owned());
        }
        lines
    }

    /// Whether the agent asks for network hosts or extra paths: what `agenthub install`
    /// points out.
    pub fn asks_for_access(&self) -> bool {
        matches!(&self.network, Some(NetworkPermission::Any))
            || matches!(&self.network, Some(NetworkPermission::Hosts(h)) if !h.is_empty())
            || !self.read.is_empty()
            || !self.write.is_empty()
    }

    /// What `self` (a manifest as it is now) asks for beyond `approved` (the declaration
    /// recorded when the agent was installed): hosts, paths and variables `approved` does
    /// not cover, and `network: true` (or undeclared network, which is public in default
    /// mode) where less was approved. Empty ([`Self::is_empty`]) when it asks for nothing
    /// more.
    #[must_use]
    pub fn beyond(&self, approved: &Self) -> Self {
        Self {
            network: network_beyond(self.network.as_ref(), approved.network.as_ref()),
            read: self
                .read
                .iter()
                .filter(|p| !approved.read.iter().chain(&approved.write).any(|a| a.covers(p)))
                .cloned()
                .collect(),
            write: self
                .write
                .iter()
                .filter(|p| !approved.write.iter().any(|a| a.covers(p)))
                .cloned()
                .collect(),
            env: self.env.iter().filter(|v| !approved.env.contains(v)).cloned().collect(),
        }
    }

    /// `self` limited to `approved`: what `self` asks for that `approved` covers (its
    /// restrictions kept, such as `network: false`); where `self`'s network asks for more,
    /// `approved`'s network. Never more than `approved` in any mode.
    #[must_use]
    pub fn within(&self, approved: &Self) -> Self {
        let beyond = self.beyond(approved);
        Self {
            network: if beyond.network.is_some() { approved.network.clone() } else { self.network.clone() },
            read: self.read.iter().filter(|p| !beyond.read.contains(p)).cloned().collect(),
            write: self.write.iter().filter(|p| !beyond.write.contains(p)).cloned().collect(),
            env: self.env.iter().filter(|v| !beyond.env.contains(v)).cloned().collect(),
        }
    }

    /// The warning for an installed agent whose manifest now asks for `self` beyond what was
    /// approved at install (`None` when `self` is empty): what was dropped, and how to
    /// review it.
    pub fn beyond_install_warning(&self, agent: &str) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        Some(format!(
            "{agent}'s agent.yaml asks for more than when it was installed ({}); that is not allowed. To review and allow it, install it again: `agenthub update {agent}`",
            self.describe().join("; ")
        ))
    }
}

/// The network `live` asks for beyond `approved` (see [`Permissions::beyond`]).
fn network_beyond(
    live: Option<&NetworkPermission>,
    approved: Option<&NetworkPermission>,
) -> Option<NetworkPermission> {
    use NetworkPermission::{Any, Hosts, Off};
    match (live, approved) {
        (Some(Off), _) | (None, None | Some(Any | Hosts(_))) | (Some(Any), Some(Any)) => None,
        // Undeclared network is public in default mode.
        (None, Some(Off)) | (Some(Any), _) => Some(Any),
        (Some(live), Some(Off)) => Some(live.clone()),
        (Some(Hosts(hosts)), approved) => {
            let covered = |h: &HostPattern| match approved {
                Some(Any) => !h.is_loopback(),
                Some(Hosts(approved)) => approved.iter().any(|a| a.covers(h)),
                _ => false,
            };
            let extra: Vec<HostPattern> = hosts.iter().filter(|h| !covered(h)).cloned().collect();
            (!extra.is_empty()).then_some(Hosts(extra))
        }
    }
}

/// Checks one declared path against the places of this machine (see
/// [`Permissions::check_places`]): as written, and with symlinks resolved (against the
/// places resolved too).
fn check_place(path: &DeclaredPath, write: bool, places: &Places<'_>) -> Result<(), EntryError> {
    let protected = |why| EntryError::Protected { path: path.to_string(), why, flag: flag(write) };
    let Some(absolute) = path.to_absolute(places.agent_dir, places.home) else { return Ok(()) };
    let real = real_path(&absolute);
    let (home, agenthub, dir) =
        (places.home.map(real_path), real_path(places.agenthub_home), real_path(places.agent_dir));
    let resolved = Places { agent_dir: &dir, home: home.as_deref(), agenthub_home: &agenthub };
    for (candidate, places) in [(&absolute, places), (&real, &resolved)] {
        if let Some(why) = protected_place(candidate, write, places) {
            return Err(protected(why));
        }
    }
    if matches!(path, DeclaredPath::Agent(_)) && !real.starts_with(&dir) {
        return Err(EntryError::Escapes { path: path.to_string(), real });
    }
    Ok(())
}

/// Why the absolute `path` is a place an agent may not ask for on this machine, if it is.
/// The agent's own directory is its own (also under the agenthub home): a path inside it
/// is refused only when it holds a protected place, never for being inside one.
fn protected_place(path: &Path, write: bool, places: &Places<'_>) -> Option<&'static str> {
    let inside_agent = path.starts_with(places.agent_dir);
    let holds = |place: &Path| place.starts_with(path);
    let is_in_or_holds = |place: &Path| holds(place) || (!inside_agent && path.starts_with(place));
    if !inside_agent && let Some(why) = protected_system(path, write) {
        return Some(why);
    }
    if let Some(home) = places.home {
        if holds(home) {
            return Some(if path == home { WHOLE_HOME } else { "holds your whole home directory" });
        }
        if PROTECTED_HOME_PATHS.iter().any(|p| is_in_or_holds(&home.join(p))) {
            return Some(HOME_SECRETS);
        }
    }
    if is_in_or_holds(places.agenthub_home) {
        return Some("is, holds or is inside the agenthub home (its configuration grants permissions)");
    }
    None
}

/// `path` with symlinks resolved as far as it exists: the canonical form of its longest
/// existing ancestor, joined with the rest; a dangling symlink on the way is followed to
/// where it points (at most 40 links, as the kernel does).
pub(crate) fn real_path(path: &Path) -> PathBuf {
    real_path_within(path, 40)
}

fn real_path_within(path: &Path, links: usize) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        let join_rest = |base: PathBuf| rest.iter().rev().fold(base, |acc: PathBuf, part| acc.join(part));
        if let Ok(real) = existing.canonicalize() {
            return join_rest(real);
        }
        if links > 0
            && let Ok(target) = std::fs::read_link(existing)
        {
            let parent = existing.parent().unwrap_or(Path::new("/"));
            return real_path_within(&lexical(&join_rest(parent.join(target))), links - 1);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// `path` with `.` dropped and `..` taking off the component before it, as written.
pub(crate) fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn unknown_key(key: &str, known: &[&str]) -> String {
    match crate::text::closest_name(key, known.iter().copied()) {
        Some(close) => format!("unknown key; did you mean `{close}`?"),
        None => format!("unknown key (known: {})", known.join(", ")),
    }
}

/// A YAML list of strings, each with its index; a problem for the list or an item that is
/// not one, or for too many items.
fn list_from_yaml(
    value: &Yaml,
    field: &str,
    what: &str,
    problem: &mut impl FnMut(String, String),
) -> Vec<(usize, String)> {
    let items = match value {
        Yaml::Null => return Vec::new(),
        Yaml::Seq(items) => items,
        _ => {
            problem(field.to_owned(), format!("must be a list of {what}"));
            return Vec::new();
        }
    };
    if items.len() > MAX_PERMISSION_ENTRIES {
        problem(field.to_owned(), EntryError::TooMany.to_string());
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            if let Yaml::Str(s) = item {
                Some((i, s.clone()))
            } else {
                problem(format!("{field}[{i}]"), "must be a string".to_owned());
                None
            }
        })
        .collect()
}

fn network_from_yaml(
    value: &Yaml,
    field: &str,
    problem: &mut impl FnMut(String, String),
) -> Option<NetworkPermission> {
    match value {
        Yaml::Null => None,
        Yaml::Bool(true) => Some(NetworkPermission::Any),
        Yaml::Bool(false) => Some(NetworkPermission::Off),
        Yaml::Seq(_) => {
            let mut hosts: Vec<HostPattern> = Vec::new();
            for (i, entry) in list_from_yaml(value, field, "hosts", problem) {
                match parse_net_declared(&entry) {
                    Ok(h) if hosts.contains(&h) => {}
                    Ok(h) => hosts.push(h),
                    Err(e) => problem(format!("{field}[{i}]"), e.to_string()),
                }
            }
            Some(NetworkPermission::Hosts(hosts))
        }
        _ => {
            problem(
                field.to_owned(),
                "must be true, false or a list of hosts (`api.openai.com`, `*.anthropic.com`, `localhost:11434`)"
                    .to_owned(),
            );
            None
        }
    }
}

// ---- Serde: the shape of the block ----------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPermissions {
    #[serde(default)]
    network: Option<RawNetwork>,
    #[serde(default)]
    filesystem: RawFilesystem,
    #[serde(default)]
    env: Vec<String>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilesystem {
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum RawNetwork {
    Switch(bool),
    Hosts(Vec<String>),
}

impl serde::Serialize for Permissions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = |paths: &[DeclaredPath]| paths.iter().map(ToString::to_string).collect();
        RawPermissions {
            network: self.network.as_ref().map(|n| match n {
                NetworkPermission::Off => RawNetwork::Switch(false),
                NetworkPermission::Any => RawNetwork::Switch(true),
                NetworkPermission::Hosts(h) => RawNetwork::Hosts(h.iter().map(ToString::to_string).collect()),
            }),
            filesystem: RawFilesystem { read: text(&self.read), write: text(&self.write) },
            env: self.env.clone(),
        }
        .serialize(serializer)
    }
}

/// Read back with the checks of a manifest (agenthub's install records hold this shape).
impl<'de> serde::Deserialize<'de> for Permissions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw = RawPermissions::deserialize(deserializer)?;
        let too_many = |n: usize| {
            if n > MAX_PERMISSION_ENTRIES { Err(D::Error::custom(EntryError::TooMany)) } else { Ok(()) }
        };
        too_many(raw.filesystem.read.len().max(raw.filesystem.write.len()).max(raw.env.len()))?;
        let network = match raw.network {
            None => None,
            Some(RawNetwork::Switch(true)) => Some(NetworkPermission::Any),
            Some(RawNetwork::Switch(false)) => Some(NetworkPermission::Off),
            Some(RawNetwork::Hosts(hosts)) => {
                too_many(hosts.len())?;
                Some(NetworkPermission::Hosts(
                    hosts
                        .iter()
                        .map(|h| parse_net_declared(h))
                        .collect::<Result<_, _>>()
                        .map_err(D::Error::custom)?,
                ))
            }
        };
        let paths = |list: &[String], write| {
            list.iter()
                .map(|p| DeclaredPath::parse(p, write))
                .collect::<Result<Vec<_>, _>>()
                .map_err(D::Error::custom)
        };
        for name in &raw.env {
            check_env_name(name).map_err(D::Error::custom)?;
        }
        Ok(Self {
            network,
            read: paths(&raw.filesystem.read, false)?,
            write: paths(&raw.filesystem.write, true)?,
            env: raw.env,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_match_as_written() {
        let p = HostPattern::parse("API.OpenAI.com").unwrap();
        assert!(p.matches("api.openai.com", 443));
        assert!(p.matches("api.openai.com.", 80));
        assert!(!p.matches("openai.com", 443));

        let w = HostPattern::parse("*.anthropic.com:443").unwrap();
        assert!(w.matches("api.anthropic.com", 443));
        assert!(w.matches("a.b.anthropic.com", 443));
        assert!(!w.matches("anthropic.com", 443));
        assert!(!w.matches("evilanthropic.com", 443));
        assert!(!w.matches("api.anthropic.com", 80));

        let l = HostPattern::parse("localhost:11434").unwrap();
        assert!(l.is_loopback());
        assert_eq!(l.port(), Some(11434));
        assert!(HostPattern::parse("[::1]:8080").unwrap().is_loopback());
        assert!(HostPattern::parse("127.0.0.1").unwrap().is_loopback());
        assert!(!HostPattern::parse("10.0.0.1").unwrap().is_loopback());
        assert_eq!(HostPattern::parse("::1").unwrap().to_string(), "[::1]");
        assert!(HostPattern::parse("[0:0::1]:80").unwrap().matches("::1", 80));
        assert_eq!(HostPattern::parse("FE80:0::1").unwrap().to_string(), "[fe80::1]");
        assert_eq!(w.to_string(), "*.anthropic.com:443");
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        assert!(matches!(HostPattern::parse("https://api.openai.com"), Err(HostPatternError::Url(_))));
        assert!(matches!(HostPattern::parse("host:0"), Err(HostPatternError::BadPort { .. })));
        assert!(matches!(HostPattern::parse("host:99999"), Err(HostPatternError::BadPort { .. })));
        assert!(matches!(HostPattern::parse(":80"), Err(HostPatternError::Empty(_))));
        for bad in ["a..b", "*", "*.", "a.*.com", "ho st", "[nothost]:1", "exa$mple.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} parsed");
        }
    }
    fn manifest(permissions: &str) -> Result<crate::AgentManifest, crate::ManifestError> {
        let text = format!(
            "name: x\nversion: '1'\ndescription: d\nauthor: a\ninterface:\n  methods:\n    m: {{description: d}}\npermissions:\n{permissions}"
        );
        crate::AgentManifest::from_yaml_str(&text, "agent.yaml")
    }

    fn problems(permissions: &str) -> Vec<String> {
        match manifest(permissions) {
            Err(crate::ManifestError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| format!("{}: {}", p.field, p.message)).collect()
            }
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn the_spec_block_parses_and_reads_in_five_seconds() {
        let m = manifest(
            "  network: [\"api.openai.com\", \"*.anthropic.com\", \"localhost:11434\"]\n  filesystem:\n    read: [\"~/datasets\"]\n    write: [\"./output\"]\n  env: [\"OPENAI_API_KEY\"]\n",
        )
        .unwrap();
        let p = &m.permissions;
        assert_eq!(p.read, [DeclaredPath::Home("datasets".into())]);
        assert_eq!(p.write, [DeclaredPath::Agent("output".into())]);
        assert_eq!(
            p.describe(),
            [
                "network: api.openai.com, *.anthropic.com; local port 11434",
                "reads ~/datasets",
                "writes ./output",
                "sees OPENAI_API_KEY in strict mode"
            ]
        );
        assert!(p.asks_for_access());
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "network": ["api.openai.com", "*.anthropic.com", "localhost:11434"],
                "filesystem": {"read": ["~/datasets"], "write": ["./output"]},
                "env": ["OPENAI_API_KEY"]
            })
        );
        assert_eq!(&serde_json::from_value::<Permissions>(json).unwrap(), p);
    }

    #[test]
    fn absent_true_and_false_network() {
        let none = crate::AgentManifest::from_yaml_str(
            "name: x\nversion: '1'\ndescription: d\nauthor: a\ninterface:\n  methods:\n    m: {description: d}\n",
            "agent.yaml",
        )
        .unwrap();
        assert!(none.permissions.is_empty());
        assert_eq!(none.permissions.describe(), ["asks for nothing beyond its own directory"]);
        assert!(!none.permissions.asks_for_access());
        assert!(manifest("  null\n").unwrap().permissions.is_empty());
        let any = manifest("  network: true\n").unwrap().permissions;
        assert_eq!(any.network, Some(NetworkPermission::Any));
        assert_eq!(any.describe(), ["network: any public host"]);
        assert!(any.asks_for_access());
        let off = manifest("  network: false\n").unwrap().permissions;
        assert_eq!(off.describe(), ["no network"]);
        assert!(!off.is_empty() && !off.asks_for_access());
        let ports = manifest("  network: [\"localhost:8080\", \"127.0.0.1:11434\"]\n").unwrap().permissions;
        assert_eq!(ports.describe(), ["network: local ports 8080, 11434"]);
        assert_eq!(serde_json::to_value(&off).unwrap()["network"], false);
        assert_eq!(serde_json::to_value(Permissions::default()).unwrap()["network"], serde_json::Value::Null);
    }

    #[test]
    fn every_bad_entry_is_named_with_its_field() {
        let found = problems(
            "  netwrok: true\n  network: [\"https://x.org\", \"localhost\", \"169.254.169.254\", 3]\n  filesystem:\n    wrte: []\n    read: [\"~/.ssh\", \"~/.config\", \"../up\", \"~bob/x\", \"\", \"/\", \"~\"]\n    write: [\"/usr/lib/x\", \"/proc\"]\n  env: [\"1BAD\", \"OK_1\"]\n",
        );
        let expected = [
            "permissions.env[0]: `1BAD` is not a variable name",
            "permissions.filesystem.read[0]: `~/.ssh` holds credentials",
            "permissions.filesystem.read[1]: `~/.config` holds credentials",
            "permissions.filesystem.read[2]: `../up` contains `..`",
            "permissions.filesystem.read[3]: `~bob/x`: only `~` and `~/…`",
            "permissions.filesystem.read[4]: a path must not be empty",
            "permissions.filesystem.read[5]: `/` is the whole filesystem",
            "permissions.filesystem.read[6]: `~` is your whole home directory",
            "permissions.filesystem.write[0]: `/usr/lib/x` is, holds or is inside a system directory",
            "permissions.filesystem.write[1]: `/proc` is, holds or is inside a system directory",
            "permissions.filesystem.wrte: unknown key; did you mean `write`?",
            "permissions.network[0]: `https://x.org` is a URL",
            "permissions.network[1]: `localhost` is this machine: name the port",
            "permissions.network[2]: `169.254.169.254` is a link-local or cloud metadata address",
            "permissions.network[3]: must be a string",
            "permissions.netwrok: unknown key; did you mean `network`?",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(found.starts_with(expected), "{found}\n  expected {expected}");
        }
        assert!(
            found[1].ends_with("only a user can grant it (--allow-read, or `grants` in config.yaml)"),
            "{}",
            found[1]
        );
        assert_eq!(
            problems("  network: yes please\n"),
            [
                "permissions.network: must be true, false or a list of hosts (`api.openai.com`, `*.anthropic.com`, `localhost:11434`)"
            ]
        );
        assert_eq!(
            problems("  [a]\n"),
            ["permissions: must be a mapping with `network`, `filesystem` and `env`"]
        );
        assert_eq!(
            problems("  filesystem: [a]\n"),
            ["permissions.filesystem: must be a mapping with `read` and `write`"]
        );
        assert_eq!(
            problems("  frobnicate: 1\n"),
            ["permissions.frobnicate: unknown key (known: network, filesystem, env)"]
        );
        let many = format!("  env: [{}]\n", (0..65).map(|i| format!("V{i}")).collect::<Vec<_>>().join(", "));
        assert_eq!(problems(&many), ["permissions.env: more than 64 entries"]);
    }

    #[test]
    fn usr_may_be_read_and_written_places_are_normalised() {
        let p = manifest("  filesystem:\n    read: [\"/usr/share/dict\", \"data/./x/\", \".\", \"~/a//b\"]\n    write: [\"./out\", \"out\"]\n").unwrap().permissions;
        let shown: Vec<String> = p.read.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["/usr/share/dict", "./data/x", ".", "~/a/b"]);
        assert_eq!(p.write, [DeclaredPath::Agent("out".into())], "repeats are dropped");
    }

    #[test]
    fn machine_places_are_checked_as_written_and_through_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let home = root.join("home");
        let agenthub = root.join("hub");
        let agent = agenthub.join("agents/a/b");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(&agent).unwrap();
        std::fs::create_dir_all(home.join("data")).unwrap();
        std::os::unix::fs::symlink(home.join(".ssh"), agent.join("keys")).unwrap();
        std::os::unix::fs::symlink(home.join(".ssh"), home.join("innocent")).unwrap();
        let places = Places { agent_dir: &agent, home: Some(&home), agenthub_home: &agenthub };
        let check = |raw: &str| {
            let p = Permissions {
                read: vec![DeclaredPath::parse(raw, false).unwrap()],
                ..Permissions::default()
            };
            p.check_places(&places).into_iter().map(|(f, e)| format!("{f}: {e}")).collect::<Vec<_>>()
        };
        assert!(check("~/data").is_empty());
        assert!(check("./output").is_empty(), "inside the agent directory, also under the agenthub home");
        assert!(check(&home.join("data").display().to_string()).is_empty());
        for bad in [
            home.display().to_string(),
            root.display().to_string(),
            home.join(".ssh/id_ed25519").display().to_string(),
            agenthub.display().to_string(),
            agenthub.join("config.yaml").display().to_string(),
            agenthub.join("agents/other/x").display().to_string(),
            "~/innocent".to_owned(),
        ] {
            let found = check(&bad);
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert!(found[0].contains("an agent may not ask for it"), "{found:?}");
        }
        let escape = check("./keys");
        assert!(escape[0].contains("holds credentials"), "{escape:?}");
        std::os::unix::fs::symlink(root.join("elsewhere"), agent.join("out")).unwrap();
        let escape = check("./out/x");
        assert!(escape[0].contains("leaves the agent directory"), "{escape:?}");
    }

    #[test]
    fn a_changed_manifest_gets_no_more_than_was_approved() {
        let parse = |text: &str| manifest(text).unwrap().permissions;
        let approved = parse(
            "  network: [\"*.openai.com\", \"localhost:11434\"]\n  filesystem:\n    read: [\"~/data\"]\n    write: [\"./out\"]\n  env: [A]\n",
        );
        let same = parse(
            "  network: [\"api.openai.com:443\", \"localhost:11434\"]\n  filesystem:\n    read: [\"~/data/x\", \"./out/y\"]\n  env: [A]\n",
        );
        assert!(same.beyond(&approved).is_empty(), "{:?}", same.beyond(&approved));
        assert_eq!(same.within(&approved), same);
        let more = parse(
            "  network: [\"api.openai.com\", \"evil.example\", \"localhost:5432\"]\n  filesystem:\n    read: [\"~/docs\"]\n    write: [\"./out\", \"~/data\"]\n  env: [A, B]\n",
        );
        let beyond = more.beyond(&approved);
        assert_eq!(
            beyond.describe(),
            [
                "network: evil.example; local port 5432",
                "reads ~/docs",
                "writes ~/data",
                "sees B in strict mode"
            ]
        );
        let within = more.within(&approved);
        assert_eq!(within.network, approved.network);
        assert!(within.read.is_empty());
        assert_eq!(within.write, [DeclaredPath::Agent("out".into())]);
        assert_eq!(within.env, ["A"]);
        let warning = beyond.beyond_install_warning("a/b").unwrap();
        assert!(
            warning.starts_with(
                "a/b's agent.yaml asks for more than when it was installed (network: evil.example"
            ),
            "{warning}"
        );
        assert!(warning.ends_with("`agenthub update a/b`"), "{warning}");
        assert_eq!(Permissions::default().beyond_install_warning("a/b"), None);

        // Network: undeclared is public in default mode; `true` covers hosts but not loopback.
        let off = parse("  network: false\n");
        let any = parse("  network: true\n");
        let none = Permissions::default();
        assert_eq!(none.beyond(&off).network, Some(NetworkPermission::Any));
        assert_eq!(none.within(&off).network, Some(NetworkPermission::Off));
        assert_eq!(off.beyond(&none).network, None, "a restriction is never more");
        assert_eq!(off.within(&any).network, Some(NetworkPermission::Off), "and is kept");
        assert_eq!(any.beyond(&none).network, Some(NetworkPermission::Any), "true is public in strict mode");
        let hosts = parse("  network: [\"a.org\", \"localhost:1\"]\n");
        assert_eq!(hosts.beyond(&any).describe(), ["network: local port 1"]);
        assert_eq!(any.beyond(&hosts).network, Some(NetworkPermission::Any));
    }

    #[test]
    fn covering_patterns() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("*.a.org").covers(&p("x.a.org:443")));
        assert!(p("*.a.org").covers(&p("*.x.a.org")));
        assert!(!p("*.a.org").covers(&p("a.org")));
        assert!(!p("*.a.org").covers(&p("*.xa.org")));
        assert!(!p("*.a.org:443").covers(&p("x.a.org")), "a port does not cover every port");
        assert!(p("a.org").covers(&p("a.org:80")));
        assert!(!p("a.org").covers(&p("*.a.org")));
        for ll in ["169.254.169.254", "[fe80::1]:80", "metadata.google.internal", "::ffff:169.254.1.1"] {
            assert!(p(ll).is_link_local(), "{ll}");
        }
        assert!(!p("10.0.0.1").is_link_local() && !p("*.google.internal").is_link_local());
    }

    #[test]
    fn records_that_break_the_rules_do_not_read_back() {
        for bad in [
            serde_json::json!({"network": ["localhost"]}),
            serde_json::json!({"filesystem": {"read": ["~/.aws"]}}),
            serde_json::json!({"env": ["A-B"]}),
            serde_json::json!({"netwerk": true}),
        ] {
            assert!(serde_json::from_value::<Permissions>(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::from_value::<Permissions>(serde_json::json!({})).unwrap(),
            Permissions::default()
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// A declared path prints as it parses back, and parsing never panics.
        #[test]
        fn declared_paths_round_trip(raw in "(~/|/|\\./)?([a-z.]{1,4}/){0,3}[a-z.]{0,4}") {
            if let Ok(path) = DeclaredPath::parse(&raw, false) {
                let shown = path.to_string();
                prop_assert_eq!(DeclaredPath::parse(&shown, false).unwrap(), path);
            }
        }

        /// What a manifest gets is never beyond what was approved, and is all of it when it
        /// asks for nothing more.
        #[test]
        fn within_is_never_beyond(live in permissions(), approved in permissions()) {
            let within = live.within(&approved);
            prop_assert!(within.beyond(&approved).is_empty(), "{:?}", within.beyond(&approved));
            if live.beyond(&approved).is_empty() {
                prop_assert_eq!(within, live);
            }
        }
    }

    fn permissions() -> impl Strategy<Value = Permissions> {
        let host = prop::sample::select(vec![
            "a.org",
            "*.a.org",
            "b.a.org:443",
            "localhost:1",
            "localhost:2",
            "c.net",
        ]);
        let network = prop_oneof![
            Just(None),
            Just(Some(NetworkPermission::Off)),
            Just(Some(NetworkPermission::Any)),
            prop::collection::vec(host, 0..3).prop_map(|h| Some(NetworkPermission::Hosts(
                h.into_iter().map(|s| HostPattern::parse(s).unwrap()).collect()
            ))),
        ];
        let path = prop::sample::select(vec!["~/d", "~/d/x", "./o", "o/p", "/srv", "/srv/x"])
            .prop_map(|p| DeclaredPath::parse(p, true).unwrap());
        let env = prop::sample::select(vec!["A", "B", "C"]).prop_map(str::to_owned);
        (
            network,
            prop::collection::vec(path.clone(), 0..3),
            prop::collection::vec(path, 0..3),
            prop::collection::vec(env, 0..3),
        )
            .prop_map(|(network, read, write, env)| Permissions { network, read, write, env })
    }
}
