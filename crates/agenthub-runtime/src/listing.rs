//! `list_agents` over many installed agents, fast: a listing cache in
//! `<home>/cache/list-v1.json` keeps what parsing each manifest gave, keyed by the identity
//! of every file it came from, so a warm `list` parses no YAML at all.
//!
//! **Never stale**: an entry is used only when each file it was made from still has the
//! same (device, inode, size, mtime ns, ctime ns), as `lstat` says now — the manifest names,
//! the provenance record, and for the environment key also `pyproject.toml`, `uv.lock`,
//! `requirements.txt` and the configuration that salts the key. `ctime` cannot be set by a
//! user, and a file whose `ctime` is within [`RACY_NS`] of the moment the cache is written
//! is not cached at all (a same-size rewrite within one clock tick would otherwise look
//! unchanged, git's "racy clean" problem). Anything that is not a plain regular file
//! (symlinks, FIFOs) is never cached and goes through the full, contained read.
//!
//! **Hostile or corrupt cache**: the file is opened without following symlinks, must be a
//! regular file, is read bounded ([`MAX_CACHE_BYTES`]) and parsed as JSON; anything else is
//! an empty cache. Entries are looked up by the path the directory walk found, so a cache
//! cannot add, hide or move agents, only be ignored. It is rewritten atomically (temporary
//! file, `rename`) when something changed; failing to write it is not an error.
//!
//! `info` and `exec` never read it.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use agenthub_core::{
    AgentFileError, AgentId, AgentManifest, Config, InstallRecord, MANIFEST_FILE_NAMES, open_agent_file,
    read_install_record,
};
use agenthub_env::{environment_key, environment_status_with};
use serde::{Deserialize, Serialize};

use crate::catalog::AgentSummary;

/// The cache file, under `<home>/cache/`.
pub(crate) const CACHE_FILE: &str = "list-v1.json";

/// Largest cache file read (10,000 agents take about 5 MB).
pub(crate) const MAX_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// Files changed this recently (ctime, nanoseconds) before the cache is written are not
/// cached.
pub(crate) const RACY_NS: i128 = 2_000_000_000;

/// Files whose identity keys a cache entry: the manifest names, then the requirement files.
const KEY_FILES: [&str; 3] = ["pyproject.toml", "uv.lock", "requirements.txt"];

/// (device, inode, size, mtime ns, ctime ns) of a regular file.
type Stamp = [i128; 5];

/// What `lstat` says about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Not there.
    Absent,
    /// A regular file with this identity.
    File(Stamp),
    /// Anything else (symlink, FIFO, directory…): never cached.
    Other,
}

impl Seen {
    fn of(path: &Path) -> Self {
        match std::fs::symlink_metadata(path) {
            Err(_) => Self::Absent,
            Ok(m) if m.file_type().is_file() => Self::File([
                i128::from(m.dev()),
                i128::from(m.ino()),
                i128::from(m.size()),
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            ]),
            Ok(_) => Self::Other,
        }
    }

    fn stamp(self) -> Option<Option<Stamp>> {
        match self {
            Self::Absent => Some(None),
            Self::File(s) => Some(Some(s)),
            Self::Other => None,
        }
    }
}

/// One agent's cached facts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// Identity of `agent.yaml`, `agent.yml` (`None`: absent).
    manifest: [Option<Stamp>; 2],
    version: Option<String>,
    description: Option<String>,
    methods: Vec<String>,
    error: Option<String>,
    /// Identity of the provenance record and what it said.
    record_stamp: Option<Stamp>,
    record: Option<InstallRecord>,
    /// Identity of the requirement files, and the environment key they gave (with the
    /// manifest above and the cache's configuration salt).
    key_files: Option<[Option<Stamp>; 3]>,
    env_key: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    /// What salts environment keys: entries' keys are used only under the same.
    config: String,
    entries: HashMap<PathBuf, Entry>,
}

/// The installed agents, sorted by id, with provenance and environment state; manifests
/// that do not load are listed with their error. See the module docs for the cache.
pub(crate) fn list_agents(config: &Config) -> Vec<AgentSummary> {
    let cache_path = config.home.join("cache").join(CACHE_FILE);
    let salt = config_salt(config);
    let mut old = read_cache(&cache_path);
    let keys_valid = old.config == salt;
    let mut new = CacheFile { config: salt, entries: HashMap::with_capacity(old.entries.len()) };
    let mut changed = false;
    let mut summaries = Vec::new();
    for (id, dir) in agent_dirs(&config.agents_root()) {
        let cached = old.entries.remove(&dir);
        let (summary, entry, fresh) = summarise(config, &id, &dir, cached, keys_valid);
        changed |= fresh;
        summaries.push(summary);
        if let Some(entry) = entry {
            new.entries.insert(dir, entry);
        }
    }
    if changed || !old.entries.is_empty() {
        write_cache(&cache_path, &new);
    }
    summaries
}

/// Builds one summary from the cache entry when every file it depends on is unchanged,
/// else from the files. Returns the entry to cache (`None`: not cacheable) and whether it is
/// new.
fn summarise(
    config: &Config,
    id: &AgentId,
    dir: &Path,
    cached: Option<Entry>,
    keys_valid: bool,
) -> (AgentSummary, Option<Entry>, bool) {
    let manifest_seen = MANIFEST_FILE_NAMES.map(|n| Seen::of(&dir.join(n)));
    let manifest_stamps = manifest_seen.map(Seen::stamp);
    let record_seen = Seen::of(&dir.join(agenthub_core::INSTALL_RECORD_FILE));
    let venv = &config.environment.venv_location;

    let mut fresh = false;
    let mut manifest: Option<Result<AgentManifest, String>> = None;

    // The manifest's facts.
    let stamps: Option<[Option<Stamp>; 2]> = match manifest_stamps {
        [Some(a), Some(b)] => Some([a, b]),
        _ => None,
    };
    let mut entry = match (cached, stamps) {
        (Some(e), Some(s)) if e.manifest == s => e,
        (_, stamps) => {
            fresh = true;
            let (version, description, methods, error) = match load(dir, &mut manifest) {
                Ok(m) => (Some(m.version.clone()), Some(m.description.clone()), m.method_names(), None),
                Err(e) => (None, None, Vec::new(), Some(e)),
            };
            Entry {
                manifest: stamps.unwrap_or_default(),
                version,
                description,
                methods,
                error,
                record_stamp: None,
                record: None,
                key_files: None,
                env_key: None,
            }
        }
    };
    let cacheable = stamps.is_some();

    // The provenance record.
    let record_stamp = record_seen.stamp();
    match record_stamp {
        Some(stamp) if !fresh && entry.record_stamp == stamp && (stamp.is_some() || entry.record.is_none()) => {}
        _ => {
            fresh = true;
            entry.record = read_install_record(dir);
            entry.record_stamp = record_stamp.flatten();
        }
    }
    let record_cacheable = record_stamp.is_some();

    // The environment: its state is looked at every time; only the key is cached.
    let key_seen = KEY_FILES.map(|n| Seen::of(&dir.join(n)).stamp());
    let key_stamps: Option<[Option<Stamp>; 3]> = match key_seen {
        [Some(a), Some(b), Some(c)] => Some([a, b, c]),
        _ => None,
    };
    let cached_key = (keys_valid && !fresh && key_stamps.is_some() && entry.key_files == key_stamps)
        .then(|| entry.env_key.clone())
        .flatten();
    let mut computed_key = None;
    let status = if entry.error.is_some() {
        None
    } else {
        Some(environment_status_with(dir, venv, || {
            if let Some(key) = cached_key {
                return Ok(key);
            }
            let m = load(dir, &mut manifest).map_err(|message| agenthub_env::EnvError::Pyproject {
                path: dir.to_path_buf(),
                message,
            })?;
            let key = environment_key(dir, &m, &config.environment)?;
            computed_key = Some(key.clone());
            Ok(key)
        }))
    };
    if let Some(key) = computed_key {
        fresh = true;
        entry.env_key = Some(key);
        entry.key_files = key_stamps;
    }

    let summary = AgentSummary {
        id: id.to_string(),
        path: dir.to_path_buf(),
        version: entry.version.clone(),
        description: entry.description.clone(),
        methods: entry.methods.clone(),
        error: entry.error.clone(),
        source: entry.record.as_ref().map(|r| r.source.clone()),
        source_kind: entry.record.as_ref().map(|r| r.source_kind.clone()),
        reference: entry.record.as_ref().and_then(|r| r.requested_ref.clone()),
        commit: entry.record.as_ref().and_then(|r| r.commit_sha.clone()),
        environment: status.map(|s| s.state),
    };
    let all_stamps = entry
        .manifest
        .iter()
        .chain(std::iter::once(&entry.record_stamp))
        .chain(entry.key_files.iter().flatten())
        .flatten();
    let now = now_ns();
    let settled = all_stamps.clone().all(|s| now - s[4] > RACY_NS);
    let keep = cacheable && record_cacheable && settled;
    (summary, keep.then_some(entry), fresh)
}

/// The manifest, parsed once per agent at most.
fn load(dir: &Path, slot: &mut Option<Result<AgentManifest, String>>) -> Result<AgentManifest, String> {
    slot.get_or_insert_with(|| AgentManifest::load(dir).map(|(m, _)| m).map_err(|e| e.to_string())).clone()
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0))
}

/// What salts environment keys besides the agent's files.
fn config_salt(config: &Config) -> String {
    let e = &config.environment;
    format!(
        "{}|{:?}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        e.python_version,
        e.run_installation_commands,
        e.venv_location
    )
}

/// The `<ns>/<name>` directories under `agents_root`, sorted: what
/// `agenthub_core::list_installed` gives, with one `lstat` per entry instead of a
/// `realpath` (a real directory inside the agents root is inside it; only symlinks are
/// resolved and checked).
fn agent_dirs(agents_root: &Path) -> Vec<(AgentId, PathBuf)> {
    let Ok(root) = agents_root.canonicalize() else { return Vec::new() };
    let contained = |entry: &std::fs::DirEntry| -> Option<String> {
        let name = entry.file_name().into_string().ok()?;
        if !AgentId::is_valid_part(&name) {
            return None;
        }
        let kind = entry.file_type().ok()?;
        if kind.is_dir() {
            return Some(name);
        }
        let real = entry.path().canonicalize().ok()?;
        (kind.is_symlink() && real.starts_with(&root) && real.is_dir()).then_some(name)
    };
    let mut found = Vec::new();
    for ns in std::fs::read_dir(agents_root).into_iter().flatten().flatten() {
        let Some(ns_name) = contained(&ns) else { continue };
        for agent in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let Some(name) = contained(&agent) else { continue };
            let Ok(id) = format!("{ns_name}/{name}").parse::<AgentId>() else { continue };
            found.push((id, agent.path()));
        }
    }
    found.sort();
    found.retain(|(_, dir)| manifest_is_contained(dir));
    found
}

/// `list_installed`'s rule: an agent whose manifest is refused for what it is or where it
/// leads is not listed. A regular file (or none) needs no further look.
fn manifest_is_contained(dir: &Path) -> bool {
    MANIFEST_FILE_NAMES.iter().all(|name| {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Err(_) => true,
            Ok(m) if m.file_type().is_file() => true,
            Ok(_) => !matches!(
                open_agent_file(dir, Path::new(name)),
                Err(AgentFileError::NotRegular { .. } | AgentFileError::Escapes { .. })
            ),
        }
    })
}

fn read_cache(path: &Path) -> CacheFile {
    use std::io::Read as _;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    else {
        return CacheFile::default();
    };
    if !file.metadata().is_ok_and(|m| m.is_file() && m.len() <= MAX_CACHE_BYTES) {
        return CacheFile::default();
    }
    let mut bytes = Vec::new();
    if file.take(MAX_CACHE_BYTES).read_to_end(&mut bytes).is_err() {
        return CacheFile::default();
    }
    serde_json::from_slice(&bytes).unwrap_or_default()
}

fn write_cache(path: &Path, cache: &CacheFile) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(bytes) = serde_json::to_vec(cache) else { return };
    let tmp = dir.join(format!(".{CACHE_FILE}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes));
    if written.is_err() || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}
