//! `list_agents` over many installed agents, fast: a listing cache in
//! `<home>/cache/list-v1.json` keeps what parsing each manifest gave, keyed by the identity
//! of every file it came from, so a warm `list` parses no YAML at all.
//!
//! **Never stale**: an entry is used only when each file it was made from still has the
//! same (device, inode, size, mtime ns, ctime ns), as `lstat` says now — the manifest names,
//! the provenance record, and for the environment key also `pyproject.toml`, `uv.lock`,
//! `requirements.txt` and the configuration that salts the key. `ctime` cannot be set by a
//! user, and a file whose `ctime` (or a later `mtime`) is within [`RACY_WINDOW`] of the
//! moment the cache is written is not cached at all (a same-size rewrite within one clock tick would otherwise look
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
use std::fs::File;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agenthub_core::{
    AgentFileError, AgentId, AgentManifest, Config, InstallRecord, MANIFEST_FILE_NAMES, open_agent_file,
    read_install_record,
};
use agenthub_env::{environment_key, environment_status_with};
use agenthub_fs::{Dir, FileStamp, Symlinks};
use serde::{Deserialize, Serialize};

use crate::catalog::AgentSummary;

/// The cache file, under `<home>/cache/`.
pub(crate) const CACHE_FILE: &str = "list-v1.json";

/// Largest cache file read (10,000 agents take about 5 MB).
pub(crate) const MAX_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// Files changed this recently before the cache is written are not cached.
pub(crate) const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Files whose identity keys a cache entry: the manifest names, then the requirement files.
const KEY_FILES: [&str; 3] = ["pyproject.toml", "uv.lock", "requirements.txt"];

/// (device, inode, size, mtime ns, ctime ns) of a regular file, as one short string (cheap
/// to parse and compare).
type Stamp = String;

/// What `lstat` says about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Not there.
    Absent,
    /// A regular file with this identity.
    File(FileStamp),
    /// Anything else (symlink, FIFO, directory…): never cached.
    Other,
}

/// An agent directory, reached from its namespace directory's descriptor: `lstat`s resolve
/// two path components instead of the whole path (the walk's main cost).
#[derive(Debug, Clone)]
struct At {
    ns: Arc<File>,
    name: String,
}

impl Seen {
    /// `lstat` of `<agent>/<file>`.
    fn at(at: &At, file: &str) -> Self {
        let rel = Path::new(&at.name).join(file);
        match FileStamp::at(at.ns.as_fd(), &rel, Symlinks::NoFollow) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Self::Absent,
            Ok(stamp) if stamp.is_file() => Self::File(stamp),
            Err(_) | Ok(_) => Self::Other,
        }
    }

    /// The stamp to cache: `None` when absent (or not cacheable: see [`stamps`]).
    fn stamp(&self) -> Option<Stamp> {
        match self {
            Self::File(s) => Some(format!(
                "{:x}.{:x}.{:x}.{:x}.{:x}.{:x}",
                s.dev,
                s.ino,
                s.size,
                s.mtime.div_euclid(1_000_000_000) as i64,
                s.mtime.rem_euclid(1_000_000_000) as i64,
                s.ctime
            )),
            Self::Absent | Self::Other => None,
        }
    }

    /// Changed within [`RACY_WINDOW`] of `now`.
    fn racy(&self, now: SystemTime) -> bool {
        matches!(self, Self::File(s) if s.is_racy(now, RACY_WINDOW))
    }
}

/// The stamps of files that are all cacheable (each a regular file or absent).
fn stamps<const N: usize>(seen: &[Seen; N]) -> Option<[Option<Stamp>; N]> {
    (!seen.contains(&Seen::Other)).then(|| seen.clone().map(|s| s.stamp()))
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
    /// Identity of the provenance record and what `list` shows of it.
    record_stamp: Option<Stamp>,
    record: Option<Provenance>,
    /// Identity of the requirement files, and the environment key they gave (with the
    /// manifest above and the cache's configuration salt).
    key_files: Option<[Option<Stamp>; 3]>,
    env_key: Option<String>,
}

/// What `list` shows of an install record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Provenance {
    source: String,
    source_kind: agenthub_core::SourceKind,
    #[serde(rename = "ref")]
    reference: Option<String>,
    commit: Option<String>,
}

impl From<InstallRecord> for Provenance {
    fn from(r: InstallRecord) -> Self {
        Self {
            source: r.source,
            source_kind: r.source_kind,
            reference: r.requested_ref,
            commit: r.commit_sha,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    /// What salts environment keys: entries' keys are used only under the same.
    config: String,
    /// By `ns/name` (the cache lives in the home, so an id names one directory).
    entries: HashMap<String, Entry>,
}

/// The installed agents, sorted by id, with provenance and environment state; manifests
/// that do not load are listed with their error. See the module docs for the cache.
pub(crate) fn list_agents(config: &Config) -> Vec<AgentSummary> {
    let cache_path = config.home.join("cache").join(CACHE_FILE);
    let salt = config_salt(config);
    let mut summaries = Vec::new();
    let now = SystemTime::now();
    // The cache is parsed while the agents root is walked.
    let (mut old, dirs) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| read_cache(&cache_path));
        let dirs = agent_dirs(&config.agents_root());
        (reader.join().unwrap_or_default(), dirs)
    });
    let keys_valid = old.config == salt;
    let mut new = CacheFile { config: salt, entries: HashMap::with_capacity(old.entries.len()) };
    let mut changed = false;
    let mut work: Vec<(AgentId, PathBuf, At, Option<Entry>)> = dirs
        .into_iter()
        .map(|(id, dir, at)| {
            let cached = old.entries.remove(&id.to_string());
            (id, dir, at, cached)
        })
        .collect();
    // Two threads: the walk is `lstat`s, which scale with cores.
    let half = work.len().div_ceil(2).max(1);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .chunks_mut(half)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter_mut()
                        .map(|(id, dir, at, cached)| {
                            (&*id, summarise(config, id, dir, at, cached.take(), keys_valid, now))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    for (id, result) in results {
        let Some((summary, entry, fresh)) = result else {
            continue; // refused, as `list_installed` would
        };
        changed |= fresh;
        summaries.push(summary);
        if let Some(entry) = entry {
            new.entries.insert(id.to_string(), entry);
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
    at: &At,
    cached: Option<Entry>,
    keys_valid: bool,
    now: SystemTime,
) -> Option<(AgentSummary, Option<Entry>, bool)> {
    let manifest_seen = MANIFEST_FILE_NAMES.map(|n| Seen::at(at, n));
    if manifest_seen.contains(&Seen::Other) && !manifest_is_contained(dir) {
        return None;
    }
    let record_seen = Seen::at(at, agenthub_core::INSTALL_RECORD_FILE);
    let venv = &config.environment.venv_location;
    let mut racy = manifest_seen.iter().any(|s| s.racy(now)) || record_seen.racy(now);

    let mut fresh = false;
    let mut manifest: Option<Result<AgentManifest, String>> = None;

    // The manifest's facts.
    let manifest_stamps = stamps(&manifest_seen);
    let cacheable = manifest_stamps.is_some();
    let mut entry = match (cached, &manifest_stamps) {
        (Some(e), Some(s)) if e.manifest == *s => e,
        (_, manifest_stamps) => {
            fresh = true;
            let (version, description, methods, error) = match load(dir, &mut manifest) {
                Ok(m) => (Some(m.version.clone()), Some(m.description.clone()), m.method_names(), None),
                Err(e) => (None, None, Vec::new(), Some(e)),
            };
            Entry {
                manifest: manifest_stamps.clone().unwrap_or_default(),
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

    // The provenance record.
    let record_cacheable = record_seen != Seen::Other;
    let record_stamp = record_seen.stamp();
    let record_unchanged = !fresh
        && record_cacheable
        && entry.record_stamp == record_stamp
        && (record_stamp.is_some() || entry.record.is_none());
    if !record_unchanged {
        fresh = true;
        entry.record = read_install_record(dir).map(Provenance::from);
        entry.record_stamp = record_stamp;
    }

    // The environment: its state is looked at every time; only the key is cached, keyed
    // also by the requirement files (looked at only when there is a marker to compare).
    let mut computed = None;
    let status = if entry.error.is_some() {
        None
    } else if Seen::at(at, venv) == Seen::Absent {
        Some(agenthub_env::EnvStatus {
            state: agenthub_env::EnvState::Missing,
            venv: dir.join(venv),
            detail: None,
            last_failure: None,
            marker: None,
        })
    } else {
        let entry = &entry;
        let manifest = &mut manifest;
        let computed = &mut computed;
        Some(environment_status_with(dir, venv, move || {
            let key_seen = KEY_FILES.map(|n| Seen::at(at, n));
            let key_stamps = stamps(&key_seen);
            if keys_valid
                && !fresh
                && key_stamps.is_some()
                && entry.key_files == key_stamps
                && let Some(key) = &entry.env_key
            {
                return Ok(key.clone());
            }
            let m = load(dir, manifest)
                .map_err(|message| agenthub_env::EnvError::Pyproject { path: dir.to_path_buf(), message })?;
            let key = environment_key(dir, &m, &config.environment)?;
            let racy = key_seen.iter().any(|s| s.racy(now));
            *computed = Some((key.clone(), key_stamps, racy));
            Ok(key)
        }))
    };
    if let Some((key, key_stamps, key_racy)) = computed {
        fresh = true;
        racy |= key_racy;
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
        reference: entry.record.as_ref().and_then(|r| r.reference.clone()),
        commit: entry.record.as_ref().and_then(|r| r.commit.clone()),
        environment: status.map(|s| s.state),
    };
    let keep = cacheable && record_cacheable && !racy;
    Some((summary, keep.then_some(entry), fresh))
}

/// The manifest, parsed once per agent at most.
fn load(dir: &Path, slot: &mut Option<Result<AgentManifest, String>>) -> Result<AgentManifest, String> {
    slot.get_or_insert_with(|| AgentManifest::load(dir).map(|(m, _)| m).map_err(|e| e.to_string())).clone()
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
/// `agenthub_core::list_agent_dirs` gives, with the directory entry's type instead of a
/// `realpath` per entry (a real directory inside the agents root is inside it; only
/// symlinks are resolved and checked). [`summarise`] then drops agents whose manifest
/// `list_installed` would refuse.
fn agent_dirs(agents_root: &Path) -> Vec<(AgentId, PathBuf, At)> {
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
        let Ok(ns_dir) = File::open(ns.path()).map(Arc::new) else { continue };
        for agent in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let Some(name) = contained(&agent) else { continue };
            let Ok(id) = format!("{ns_name}/{name}").parse::<AgentId>() else { continue };
            found.push((id, agent.path(), At { ns: Arc::clone(&ns_dir), name }));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
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

/// The cache's directory, opened without following a symlink in its place (a symlink or
/// anything else there means no cache: it is neither read through nor written through).
fn open_cache_dir(dir: &Path) -> Option<Dir> {
    Dir::open_nofollow(dir).ok()
}

fn read_cache(path: &Path) -> CacheFile {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return CacheFile::default();
    };
    let Some(bytes) = open_cache_dir(dir).and_then(|d| d.read_bounded(name, MAX_CACHE_BYTES).ok()) else {
        return CacheFile::default();
    };
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// Writes the cache beside itself and renames it into place, both relative to the cache
/// directory's descriptor: a symlink in the place of `<home>/cache` (or one swapped in
/// meanwhile) is never written through.
fn write_cache(path: &Path, cache: &CacheFile) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else { return };
    if let Err(e) = std::fs::create_dir(dir)
        && e.kind() != std::io::ErrorKind::AlreadyExists
        && std::fs::create_dir_all(dir).is_err()
    {
        return;
    }
    let Some(dir) = open_cache_dir(dir) else { return };
    let Ok(bytes) = serde_json::to_vec(cache) else { return };
    let _ = dir.write_atomic(name, &bytes);
}
