//! Who made a call and how it is named in run history: [`Caller`] and [`RunId`].

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who made a call, as run history records it (`caller` in `agenthub runs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Caller {
    /// An embedding Rust program (the default).
    #[default]
    Library,
    /// The `agenthub` command line.
    Cli,
    /// `agenthub mcp serve`, for one of its clients.
    Mcp,
    /// The Python package (`import agenthub`).
    Python,
    /// Another call's agent, through an agent tool: the id of that call.
    Tool {
        /// The run id of the call whose agent called this one as a tool.
        parent: RunId,
    },
}

impl Caller {
    /// The name stored in run history: `library`, `cli`, `mcp`, `python` or `tool`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Library => "library",
            Self::Cli => "cli",
            Self::Mcp => "mcp",
            Self::Python => "python",
            Self::Tool { .. } => "tool",
        }
    }

    /// The calling call, for a tool call.
    pub fn parent(&self) -> Option<&RunId> {
        match self {
            Self::Tool { parent } => Some(parent),
            _ => None,
        }
    }
}

/// A call's id in run history: 16 hex digits, unique across processes with overwhelming
/// probability (a per-process random seed and a counter, mixed), made without a system call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    /// A new id.
    pub fn new() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            // std's hasher keys come from the OS's random source, once per thread.
            std::hash::RandomState::new().build_hasher().finish()
        });
        // The pid goes in every id: a forked child has its parent's seed and counter.
        let n = NEXT.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 40);
        Self(format!("{:016x}", splitmix64(seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))))
    }

    /// An id read back from storage or given by a user.
    pub fn from_string(id: String) -> Self {
        Self(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bijective mix of 64 bits (Steele, Lea and Flood's `SplitMix64` finalizer): distinct
/// counters give distinct ids.
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_distinct_hex() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| RunId::new()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|id| id.as_str().len() == 16 && id.as_str().bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }

    #[test]
    fn caller_names() {
        let parent = RunId::new();
        let tool = Caller::Tool { parent: parent.clone() };
        assert_eq!(tool.as_str(), "tool");
        assert_eq!(tool.parent(), Some(&parent));
        assert_eq!(Caller::default().as_str(), "library");
        assert_eq!(Caller::Cli.parent(), None);
    }
}
