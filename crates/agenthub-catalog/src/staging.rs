//! The one rule for install staging directories: `<agents>/<ns>/.<name>.staging-<pid>-<9
//! digits>`, marked by [`STAGING_MARKER`] when agenthub made it. Install creates and removes
//! them (only marked ones); `doctor` lists those left behind.

use std::path::{Path, PathBuf};

/// The file agenthub writes into every staging directory it creates: what proves the
/// directory is agenthub's to remove.
pub const STAGING_MARKER: &str = ".agenthub-staging";

/// The agent name a staging directory's file name belongs to, when it follows the rule
/// `.<name>.staging-<pid>-<9 digits>` (the last `.staging-` counts, so agent `a` never
/// claims one of agent `a.staging-1`).
pub fn staging_agent(file_name: &str) -> Option<&str> {
    let (name, rest) = file_name.strip_prefix('.')?.rsplit_once(".staging-")?;
    let (pid, nanos) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (!name.is_empty() && digits(pid) && nanos.len() == 9 && digits(nanos)).then_some(name)
}

/// Whether `file_name` is a staging directory of the agent named `name`.
pub fn is_staging_of(file_name: &str, name: &str) -> bool {
    staging_agent(file_name) == Some(name)
}

/// Whether a file name looks like a staging directory's (`.<anything>.staging-<anything>`):
/// what `doctor` reports, a superset of every name [`staging_agent`] accepts, so that a
/// leftover is shown even when its name was mangled; only the exact rule claims one.
pub fn looks_like_staging(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.contains(".staging-")
}

/// The directories under `agents_root` that look like staging directories
/// ([`looks_like_staging`]), marked or not, sorted.
pub fn staging_dirs(agents_root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(agents_root) else { return found };
    for ns in namespaces.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        let Ok(entries) = std::fs::read_dir(ns.path()) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(looks_like_staging) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// The staging directories under `agents_root` that agenthub made (named by the rule and
/// holding the marker): what killed installs left.
pub fn leftover_staging(agents_root: &Path) -> Vec<PathBuf> {
    staging_dirs(agents_root)
        .into_iter()
        .filter(|d| d.file_name().and_then(|n| n.to_str()).and_then(staging_agent).is_some())
        .filter(|d| d.join(STAGING_MARKER).is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_belong_to_exactly_one_agent() {
        assert!(is_staging_of(".a.staging-12-123456789", "a"));
        assert!(!is_staging_of(".a.staging-1.staging-12-123456789", "a"));
        assert!(is_staging_of(".a.staging-1.staging-12-123456789", "a.staging-1"));
        assert!(!is_staging_of(".a.staging-12-12345678", "a"));
        assert!(!is_staging_of(".ab.staging-12-123456789", "a"));
        assert!(!is_staging_of("a.staging-12-123456789", "a"));
        assert_eq!(staging_agent(".staging-1-123456789"), None);
        // What doctor shows is wider than what install claims.
        assert!(looks_like_staging(".new.staging-1-2") && staging_agent(".new.staging-1-2").is_none());
    }
}
