//! The sandbox policy of one call (SPEC §8): the mode ([`SandboxMode`]), what the user
//! grants ([`Grants`]: flags, and `grants` in config.yaml per agent), and what a call may
//! reach once the agent's declaration and the grants are put together
//! ([`SandboxPolicy::resolve`]). Plain data: the runtime hands it to the layers that
//! enforce it (namespaces, Landlock, seccomp, the egress proxy), which are not here.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::permissions::{
    EntryError, HostPattern, NetworkPermission, Permissions, Places, parse_net_grant, real_path,
};

/// Variables a strict-mode call gets from the caller besides the declared and granted ones:
/// none is a secret, and programs misbehave without them (the search path, the locale, the
/// time zone, the terminal, colour, Python's text encoding, where TLS certificates are).
/// `HOME` and `TMPDIR` are not here: the sandbox sets them to the agent's own.
pub const SANDBOX_BASE_ENV: [&str; 14] = [
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TERM",
    "NO_COLOR",
    "PYTHONIOENCODING",
    "PYTHONUTF8",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
];

/// How calls are sandboxed (`runtime.sandbox_mode`, `AGENTHUB_SANDBOX`, `--sandbox`). See
/// [`SandboxPolicy::resolve`] for what each mode lets a call reach; strict mode's
/// environment is [`SANDBOX_BASE_ENV`] and the declared and granted names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SandboxMode {
    /// Public network and the caller's environment; files closed but for the agent's own and what was declared or granted.
    #[default]
    Default,
    /// Only what was declared and granted: no network unless asked for, a base set of variables.
    Strict,
    /// No sandbox (said on stderr).
    Off,
}

impl SandboxMode {
    /// Every mode, as written.
    pub const NAMES: [&'static str; 3] = ["default", "strict", "off"];

    /// The mode as written in config and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Strict => "strict",
            Self::Off => "off",
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SandboxMode {
    type Err = String;

    /// `default`, `strict` or `off`, any case; anything else names the close one.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(Self::Default),
            "strict" => Ok(Self::Strict),
            "off" => Ok(Self::Off),
            other => {
                let close = crate::text::closest_name(other, Self::NAMES)
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                Err(format!("unknown sandbox mode `{s}` ({close}use default, strict or off)"))
            }
        }
    }
}

/// What a user grants an agent beyond its declaration: `--allow-net`, `--allow-read`,
/// `--allow-write`, `--allow-env` for one call, and `grants: {"ns/name": {net, read, write,
/// env}}` in config.yaml for every call of an agent.
///
/// Paths may start with `~`; relative ones are inside the agent directory (the CLI makes
/// its flags' relative paths absolute against the working directory first). A grant may
/// name any place: it is the user's choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// Hosts (and loopback ports) the agent may reach.
    #[serde(deserialize_with = "net_grants")]
    pub net: Vec<HostPattern>,
    /// Extra paths the agent may read.
    pub read: Vec<PathBuf>,
    /// Extra paths the agent may write.
    pub write: Vec<PathBuf>,
    /// Variables the agent sees in strict mode.
    pub env: Vec<String>,
}

fn net_grants<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<HostPattern>, D::Error> {
    let entries = Vec::<String>::deserialize(deserializer)?;
    entries.iter().map(|e| parse_net_grant(e).map_err(serde::de::Error::custom)).collect()
}

impl Grants {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.net.is_empty() && self.read.is_empty() && self.write.is_empty() && self.env.is_empty()
    }

    /// `self` and then `more` (a call's grants after the configured ones), without repeats.
    #[must_use]
    pub fn merged(mut self, more: &Self) -> Self {
        fn extend<T: Clone + PartialEq>(into: &mut Vec<T>, more: &[T]) {
            for item in more {
                if !into.contains(item) {
                    into.push(item.clone());
                }
            }
        }
        extend(&mut self.net, &more.net);
        extend(&mut self.read, &more.read);
        extend(&mut self.write, &more.write);
        extend(&mut self.env, &more.env);
        self
    }

    /// Checks what serde does not: variable names, and loopback entries with a port (for
    /// grants built in code).
    pub fn check(&self) -> Result<(), EntryError> {
        for entry in &self.net {
            if entry.is_loopback() && entry.port().is_none() {
                return Err(EntryError::LoopbackWithoutPort(entry.to_string()));
            }
        }
        self.env.iter().try_for_each(|name| crate::permissions::check_env_name(name))
    }
}

/// Where a call may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkPolicy {
    /// Any public host (not loopback, private or link-local addresses).
    pub public: bool,
    /// Hosts outside this machine reached through agenthub's proxy: also private addresses
    /// when named here.
    pub hosts: Vec<HostPattern>,
    /// Ports of this machine's loopback bridged into the sandbox.
    pub loopback_ports: Vec<u16>,
}

impl NetworkPolicy {
    /// No network at all: neither public hosts nor any listed.
    pub fn is_none(&self) -> bool {
        !self.public && self.hosts.is_empty() && self.loopback_ports.is_empty()
    }

    fn add(&mut self, entry: &HostPattern) {
        match entry.port() {
            Some(port) if entry.is_loopback() => {
                if !self.loopback_ports.contains(&port) {
                    self.loopback_ports.push(port);
                }
            }
            _ => {
                if !self.hosts.contains(entry) {
                    self.hosts.push(entry.clone());
                }
            }
        }
    }
}

/// The environment a call gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvPolicy {
    /// The caller's (default mode; `runtime.env_clear` still applies).
    Inherit,
    /// Only these names from the caller's environment (strict mode): [`SANDBOX_BASE_ENV`],
    /// then the declared and granted names.
    Only(Vec<String>),
}

/// What one call may reach: plain data for the layers that enforce it.
///
/// Paths are absolute, `~` expanded, relative ones joined to the agent directory, `..`
/// resolved, and symlinks resolved as far as the path exists (the rest joined as written),
/// so that each names the place the kernel will check; no repeats. `write` entries are not
/// repeated in `read`: what may be written may be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxPolicy {
    /// The mode it was resolved for; `Off` means nothing else applies.
    pub mode: SandboxMode,
    /// Where it may connect.
    pub network: NetworkPolicy,
    /// Extra paths it may read (declared, then granted).
    pub read: Vec<PathBuf>,
    /// Extra paths it may write (declared, then granted).
    pub write: Vec<PathBuf>,
    /// Its environment.
    pub env: EnvPolicy,
}

/// Where an entry of a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The agent's declaration (`permissions:` in agent.yaml, or its install record).
    Declared,
    /// A user's grant (a flag or config.yaml).
    Granted,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Declared => "agent.yaml",
            Self::Granted => "the grant",
        })
    }
}

/// Why no policy could be resolved for a call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// A loopback network entry without a port.
    #[error("{origin}: `{entry}` names this machine without a port")]
    LoopbackWithoutPort {
        /// The entry.
        entry: String,
        /// Where it came from.
        origin: Origin,
    },
    /// A declared path is a place only a user can grant on this machine, or leaves the agent
    /// directory.
    #[error("agent.yaml: {field}: {error}")]
    Declared {
        /// The field: `permissions.filesystem.read[0]`.
        field: String,
        /// What is wrong.
        error: EntryError,
    },
    /// A `~` path and no home directory to expand it.
    #[error("{origin}: `{path}` starts with `~`, and there is no home directory")]
    NoHome {
        /// The path as given.
        path: String,
        /// Where it came from.
        origin: Origin,
    },
    /// A grant that is not valid (a variable name, a loopback entry without a port).
    #[error("the grant: {0}")]
    Grant(EntryError),
}

impl PolicyError {
    /// What the user can do about it.
    pub fn suggestion(&self) -> String {
        match self {
            Self::LoopbackWithoutPort { entry, origin: Origin::Declared } => {
                format!("Write `{entry}:PORT` in permissions.network of agent.yaml, one entry per port")
            }
            Self::LoopbackWithoutPort { entry, origin: Origin::Granted }
            | Self::Grant(EntryError::LoopbackWithoutPort(entry)) => {
                format!("Grant `{entry}:PORT` (--allow-net {entry}:11434), one entry per port")
            }
            Self::Declared { error: EntryError::Protected { flag, .. }, .. } => format!(
                "Remove the entry from permissions in agent.yaml; if you want the agent to have it, grant it yourself ({flag} PATH, or `grants` in config.yaml)"
            ),
            Self::Declared { .. } => {
                "Fix permissions in agent.yaml (`agenthub validate` lists every problem)".to_owned()
            }
            Self::NoHome { .. } => "Set HOME, or write the path as an absolute one".to_owned(),
            Self::Grant(_) => "Fix the grant (the flag, or `grants` in config.yaml)".to_owned(),
        }
    }
}

impl SandboxPolicy {
    /// The policy of a call with the sandbox off.
    pub fn off() -> Self {
        Self {
            mode: SandboxMode::Off,
            network: NetworkPolicy { public: true, ..NetworkPolicy::default() },
            read: Vec::new(),
            write: Vec::new(),
            env: EnvPolicy::Inherit,
        }
    }

    /// Puts a call's policy together from the mode, what the agent declared (for an
    /// installed agent, the declaration approved at install: see [`Permissions::within`]),
    /// what the user granted, the agent directory (canonical), the user's home and the
    /// agenthub home.
    ///
    /// - `Off`: [`Self::off`]; nothing else is looked at.
    /// - `Default`: public network unless the agent declared `network: false`; declared and
    ///   granted hosts added (loopback ones as bridged ports); the caller's environment.
    /// - `Strict`: public network only when declared `network: true`; declared and granted
    ///   hosts; the environment [`SANDBOX_BASE_ENV`] plus the declared and granted names.
    ///
    /// Declared paths are checked against this machine's protected places
    /// ([`Permissions::check_places`]); granted ones are not (the user chose them).
    pub fn resolve(
        mode: SandboxMode,
        declared: &Permissions,
        grants: &Grants,
        agent_dir: &Path,
        home: Option<&Path>,
        agenthub_home: &Path,
    ) -> Result<Self, PolicyError> {
        if mode == SandboxMode::Off {
            return Ok(Self::off());
        }
        grants.check().map_err(PolicyError::Grant)?;
        let places = Places { agent_dir, home, agenthub_home };
        if let Some((field, error)) = declared.check_places(&places).into_iter().next() {
            return Err(PolicyError::Declared { field, error });
        }
        let mut network = NetworkPolicy {
            public: match (&declared.network, mode) {
                (Some(NetworkPermission::Off), _) => false,
                (Some(NetworkPermission::Any), _) | (_, SandboxMode::Default) => true,
                (_, _) => false,
            },
            ..NetworkPolicy::default()
        };
        if let Some(NetworkPermission::Hosts(hosts)) = &declared.network {
            for entry in hosts {
                if entry.is_loopback() && entry.port().is_none() {
                    return Err(PolicyError::LoopbackWithoutPort {
                        entry: entry.to_string(),
                        origin: Origin::Declared,
                    });
                }
                network.add(entry);
            }
        }
        for entry in &grants.net {
            network.add(entry);
        }
        network.loopback_ports.sort_unstable();
        let mut read = Vec::new();
        let mut write = Vec::new();
        for (declared, into) in [(&declared.read, &mut read), (&declared.write, &mut write)] {
            for path in declared {
                let absolute = path.to_absolute(agent_dir, home).ok_or_else(|| PolicyError::NoHome {
                    path: path.to_string(),
                    origin: Origin::Declared,
                })?;
                push_new(into, real_path(&absolute));
            }
        }
        for (granted, into) in [(&grants.read, &mut read), (&grants.write, &mut write)] {
            for path in granted {
                push_new(into, real_path(&granted_path(path, agent_dir, home)?));
            }
        }
        let env = match mode {
            SandboxMode::Strict => {
                let mut names: Vec<String> = SANDBOX_BASE_ENV.iter().map(|&n| n.to_owned()).collect();
                for name in declared.env.iter().chain(&grants.env) {
                    push_new(&mut names, name.clone());
                }
                EnvPolicy::Only(names)
            }
            SandboxMode::Default | SandboxMode::Off => EnvPolicy::Inherit,
        };
        Ok(Self { mode, network, read, write, env })
    }
}

fn push_new<T: PartialEq>(into: &mut Vec<T>, item: T) {
    if !into.contains(&item) {
        into.push(item);
    }
}

/// A granted path made absolute: `~` expanded, relative joined to the agent directory, `.`
/// and `..` resolved as written.
fn granted_path(path: &Path, agent_dir: &Path, home: Option<&Path>) -> Result<PathBuf, PolicyError> {
    let mut components = path.components();
    let base = match components.clone().next() {
        Some(Component::Normal(first)) if first == "~" => {
            components.next();
            home.ok_or_else(|| PolicyError::NoHome {
                path: path.display().to_string(),
                origin: Origin::Granted,
            })?
            .to_path_buf()
        }
        Some(Component::RootDir) => PathBuf::new(),
        _ => agent_dir.to_path_buf(),
    };
    let mut out = base;
    for component in components {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The declaration the calls of the agent at `location` are held to, and a warning when
/// its manifest (`live`) now asks for more.
///
/// An agent agenthub installed (named by its id, or by a path to its directory under the
/// agents root; its home holds a record of it) gets what was approved at install
/// ([`approved_permissions`]). Any other directory, a local one (`exec ./dir`) or one put
/// under the agents root by hand, gets its manifest as it is: that is what the user pointed
/// at.
pub fn approved_declaration(
    config: &crate::Config,
    location: &crate::AgentLocation,
    live: &Permissions,
) -> (Permissions, Option<String>) {
    match installed_id(config, location)
        .and_then(|id| Some((crate::read_home_install_record(&config.home, &id)?, id)))
    {
        Some((record, id)) => approved_permissions(&id.to_string(), live, record.permissions.as_ref()),
        None => (live.clone(), None),
    }
}

/// The id of the agent at `location` as the agents root holds it: the id it was named by,
/// or, for a path to `<agents root>/<ns>/<name>`, that id. A call of an installed agent by
/// its path is a call of the installed agent (its approved declaration, its grants, its
/// sandbox home), not of a stranger's directory.
pub fn installed_id(config: &crate::Config, location: &crate::AgentLocation) -> Option<crate::AgentId> {
    location.id.clone().or_else(|| {
        let root = config.agents_root().canonicalize().ok()?;
        let rel = location.dir.strip_prefix(root).ok()?;
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
        match parts.as_slice() {
            [ns, name] => format!("{ns}/{name}").parse().ok(),
            _ => None,
        }
    })
}

/// What the runtime resolves an installed agent's policy from: the declaration recorded at
/// install (`None` for an install made before permissions were recorded: nothing approved),
/// limited by the manifest as it is now (its restrictions kept), and the warning to give
/// when the manifest now asks for more.
pub fn approved_permissions(
    agent: &str,
    live: &Permissions,
    recorded: Option<&Permissions>,
) -> (Permissions, Option<String>) {
    let none = Permissions::default();
    let approved = recorded.unwrap_or(&none);
    (live.within(approved), live.beyond(approved).beyond_install_warning(agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(yaml: &str) -> Permissions {
        let text = format!(
            "name: x\nversion: '1'\ndescription: d\nauthor: a\ninterface:\n  methods:\n    m: {{description: d}}\npermissions:\n{yaml}"
        );
        crate::AgentManifest::from_yaml_str(&text, "agent.yaml").unwrap().permissions
    }

    fn host(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    struct Dirs {
        _tmp: tempfile::TempDir,
        home: PathBuf,
        hub: PathBuf,
        agent: PathBuf,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let (home, hub) = (root.join("home"), root.join("home/.agenthub"));
        let agent = hub.join("agents/a/b");
        std::fs::create_dir_all(&agent).unwrap();
        Dirs { _tmp: tmp, home, hub, agent }
    }

    fn resolve(
        mode: SandboxMode,
        declared: &Permissions,
        grants: &Grants,
        d: &Dirs,
    ) -> Result<SandboxPolicy, PolicyError> {
        SandboxPolicy::resolve(mode, declared, grants, &d.agent, Some(&d.home), &d.hub)
    }

    #[test]
    fn modes_parse_with_a_close_name() {
        assert_eq!("Strict".parse::<SandboxMode>(), Ok(SandboxMode::Strict));
        assert_eq!(" off ".parse::<SandboxMode>(), Ok(SandboxMode::Off));
        assert_eq!(
            "strct".parse::<SandboxMode>().unwrap_err(),
            "unknown sandbox mode `strct` (did you mean `strict`? use default, strict or off)"
        );
        assert_eq!(
            "none".parse::<SandboxMode>().unwrap_err(),
            "unknown sandbox mode `none` (use default, strict or off)"
        );
        assert_eq!(serde_json::to_value(SandboxMode::Default).unwrap(), "default");
        assert_eq!(SandboxMode::default(), SandboxMode::Default);
    }

    #[test]
    fn default_mode_keeps_declare_nothing_agents_working() {
        let d = dirs();
        let p = resolve(SandboxMode::Default, &Permissions::default(), &Grants::default(), &d).unwrap();
        assert_eq!(p.network, NetworkPolicy { public: true, hosts: vec![], loopback_ports: vec![] });
        assert_eq!(p.env, EnvPolicy::Inherit);
        assert!(p.read.is_empty() && p.write.is_empty());

        let off =
            resolve(SandboxMode::Default, &declared("  network: false\n"), &Grants::default(), &d).unwrap();
        assert!(off.network.is_none());
        let granted = Grants { net: vec![host("api.x.org")], ..Grants::default() };
        let off = resolve(SandboxMode::Default, &declared("  network: false\n"), &granted, &d).unwrap();
        assert_eq!(
            off.network,
            NetworkPolicy { public: false, hosts: vec![host("api.x.org")], loopback_ports: vec![] }
        );

        let listed = declared("  network: [\"localhost:11434\", \"db.internal:5432\", \"[::1]:8080\"]\n");
        let p = resolve(SandboxMode::Default, &listed, &Grants::default(), &d).unwrap();
        assert!(p.network.public);
        assert_eq!(p.network.hosts, [host("db.internal:5432")]);
        assert_eq!(p.network.loopback_ports, [8080, 11434]);
    }

    #[test]
    fn strict_mode_is_only_what_was_declared_and_granted() {
        let d = dirs();
        let nothing = resolve(SandboxMode::Strict, &Permissions::default(), &Grants::default(), &d).unwrap();
        assert!(nothing.network.is_none());
        let EnvPolicy::Only(names) = &nothing.env else { panic!("{:?}", nothing.env) };
        assert_eq!(names, &SANDBOX_BASE_ENV.map(str::to_owned));
        assert!(!names.iter().any(|n| n == "HOME" || n == "TMPDIR"));

        let any =
            resolve(SandboxMode::Strict, &declared("  network: true\n"), &Grants::default(), &d).unwrap();
        assert!(any.network.public);
        let p = declared("  network: [\"api.openai.com\"]\n  env: [OPENAI_API_KEY, PATH]\n");
        let grants = Grants {
            net: vec![host("localhost:11434"), host("api.openai.com")],
            env: vec!["HF_TOKEN".into()],
            ..Grants::default()
        };
        let strict = resolve(SandboxMode::Strict, &p, &grants, &d).unwrap();
        assert_eq!(
            strict.network,
            NetworkPolicy { public: false, hosts: vec![host("api.openai.com")], loopback_ports: vec![11434] }
        );
        let EnvPolicy::Only(names) = &strict.env else { panic!() };
        assert_eq!(&names[SANDBOX_BASE_ENV.len()..], ["OPENAI_API_KEY", "HF_TOKEN"]);
    }

    #[test]
    fn off_is_off_whatever_else() {
        let d = dirs();
        let bad = Grants { net: vec![host("localhost")], ..Grants::default() };
        let p = resolve(SandboxMode::Off, &declared("  network: false\n"), &bad, &d).unwrap();
        assert_eq!(p, SandboxPolicy::off());
        assert!(p.network.public);
    }

    #[test]
    fn paths_are_absolute_normalised_and_real() {
        let d = dirs();
        std::fs::create_dir_all(d.home.join("datasets")).unwrap();
        std::fs::create_dir_all(d.home.join("real")).unwrap();
        std::os::unix::fs::symlink(d.home.join("real"), d.home.join("link")).unwrap();
        let p = declared(
            "  filesystem:\n    read: [\"~/datasets\", \"/srv/x/./y\"]\n    write: [\"./output\"]\n",
        );
        let grants = Grants {
            read: vec!["~/link/sub".into(), "/etc/../srv/y".into(), "/data/./a/../b".into()],
            write: vec!["cache".into()],
            ..Grants::default()
        };
        let policy = resolve(SandboxMode::Default, &p, &grants, &d).unwrap();
        let srv_y = real_path(Path::new("/srv/y"));
        assert_eq!(
            policy.read,
            [
                d.home.join("datasets"),
                real_path(Path::new("/srv/x/y")),
                d.home.join("real/sub"),
                srv_y,
                real_path(Path::new("/data/b"))
            ]
        );
        assert_eq!(policy.write, [d.agent.join("output"), d.agent.join("cache")]);
        assert!(policy.read.iter().chain(&policy.write).all(|p| p.is_absolute()));
    }

    #[test]
    fn refused_policies_say_why_and_what_to_do() {
        let d = dirs();
        let grants = Grants { net: vec![host("127.0.0.1")], ..Grants::default() };
        let err = resolve(SandboxMode::Default, &Permissions::default(), &grants, &d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the grant: `127.0.0.1` is this machine: name the port it may reach, as in `localhost:11434` (one entry per port)"
        );
        assert!(err.suggestion().contains("--allow-net 127.0.0.1:11434"), "{}", err.suggestion());

        let hub = d.hub.join("config.yaml").display().to_string();
        let p = Permissions {
            write: vec![crate::DeclaredPath::parse(&hub, true).unwrap()],
            ..Permissions::default()
        };
        let err = resolve(SandboxMode::Strict, &p, &Grants::default(), &d).unwrap_err();
        assert!(
            matches!(&err, PolicyError::Declared { field, .. } if field == "permissions.filesystem.write[0]"),
            "{err}"
        );
        assert!(err.to_string().contains("agenthub"), "{err}");
        assert!(err.suggestion().contains("--allow-write PATH"), "{}", err.suggestion());
        // What a user grants is theirs to grant.
        let grants = Grants {
            write: vec![d.hub.join("config.yaml")],
            read: vec!["~/.ssh".into()],
            ..Grants::default()
        };
        let p = resolve(SandboxMode::Strict, &Permissions::default(), &grants, &d).unwrap();
        assert_eq!(p.read, [d.home.join(".ssh")]);

        let home_path = declared("  filesystem:\n    read: [\"~/data\"]\n");
        let err = SandboxPolicy::resolve(
            SandboxMode::Default,
            &home_path,
            &Grants::default(),
            &d.agent,
            None,
            &d.hub,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "agent.yaml: `~/data` starts with `~`, and there is no home directory");

        let bad_env = Grants { env: vec!["NO-PE".into()], ..Grants::default() };
        assert!(matches!(
            resolve(SandboxMode::Strict, &Permissions::default(), &bad_env, &d),
            Err(PolicyError::Grant(_))
        ));
    }

    #[test]
    fn grants_merge_and_read_from_config() {
        let a = Grants { net: vec![host("a.org")], env: vec!["A".into()], ..Grants::default() };
        let b =
            Grants { net: vec![host("a.org"), host("b.org")], read: vec!["/x".into()], ..Grants::default() };
        let merged = a.merged(&b);
        assert_eq!(merged.net, [host("a.org"), host("b.org")]);
        assert_eq!(merged.read, [PathBuf::from("/x")]);
        assert!(!merged.is_empty() && Grants::default().is_empty());
        let yaml = "net: [\"localhost:11434\"]\nread: [\"~/d\"]\nenv: [K]\n";
        let g: Grants = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(g.net, [host("localhost:11434")]);
        let err = serde_yaml::from_str::<Grants>("net: [localhost]\n").unwrap_err().to_string();
        assert!(err.contains("name the port"), "{err}");
        let err = serde_yaml::from_str::<Grants>("nett: []\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `nett`"), "{err}");
    }

    #[test]
    fn installed_agents_get_what_was_approved_and_a_warning_for_the_rest() {
        let live = declared("  network: [\"localhost:11434\"]\n  env: [K]\n");
        let (approved, warning) = approved_permissions("a/b", &live, Some(&live));
        assert_eq!((approved, warning), (live.clone(), None));
        let (approved, warning) = approved_permissions("a/b", &live, None);
        assert_eq!(approved, Permissions::default());
        assert!(warning.unwrap().contains("(network: local port 11434; sees K in strict mode)"));
        let off = declared("  network: false\n");
        let (approved, warning) = approved_permissions("a/b", &off, None);
        assert_eq!((approved, warning), (off, None), "a restriction needs no approval");
    }
    #[test]
    fn installed_agents_are_held_to_their_home_record_and_others_to_their_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        let config = crate::Config::from_sources(home.clone(), None, []).unwrap();
        let id: crate::AgentId = "a/b".parse().unwrap();
        let dir = config.agents_root().join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        let live = declared("  network: [\"localhost:1\"]\n");
        let installed = crate::AgentLocation { dir: dir.clone(), id: Some(id.clone()), name: id.to_string() };
        let by_path = crate::AgentLocation { dir: dir.clone(), id: None, name: "./x".to_owned() };
        // Put there by hand: what the user pointed at.
        assert_eq!(approved_declaration(&config, &installed, &live), (live.clone(), None));
        let record = crate::HomeInstallRecord { ids: vec!["x".into()], permissions: None };
        let path = crate::home_install_record_path(&home, &id);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string(&record).unwrap()).unwrap();
        for location in [&installed, &by_path] {
            let (approved, warning) = approved_declaration(&config, location, &live);
            assert_eq!(approved, Permissions::default());
            assert!(warning.unwrap().starts_with("a/b's agent.yaml asks for more"));
        }
        let record = crate::HomeInstallRecord { ids: vec!["x".into()], permissions: Some(live.clone()) };
        std::fs::write(&path, serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(crate::read_home_install_record(&home, &id), Some(record));
        assert_eq!(approved_declaration(&config, &installed, &live), (live.clone(), None));
        // A record this version cannot read back approves nothing, and still holds its ids.
        std::fs::write(&path, r#"{"ids": ["x"], "permissions": {"network": ["localhost"]}}"#).unwrap();
        let read = crate::read_home_install_record(&home, &id).unwrap();
        assert_eq!((read.ids, read.permissions), (vec!["x".to_owned()], None));
        let elsewhere = crate::AgentLocation { dir: tmp.path().join("x"), id: None, name: "./x".to_owned() };
        assert_eq!(approved_declaration(&config, &elsewhere, &live), (live, None));
    }
}
