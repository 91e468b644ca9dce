//! [`BuildProgress`]: what an environment build reports while it runs, so that a front end
//! can say so to people (the CLI: a spinner or one line on a terminal, nothing on a pipe).
//! Logs are not for that: they are details for whoever asked for them.

use std::path::PathBuf;
use std::time::Duration;

use agenthub_core::EnvBackendKind;

/// One environment build, as [`BuildProgress`] hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvBuild {
    /// The agent's name (its manifest's `name`, else its directory's name).
    pub agent: String,
    /// The agent directory.
    pub agent_dir: PathBuf,
    /// The backend building it.
    pub backend: EnvBackendKind,
}

/// Hears about environment builds as they happen. Only builds that really run are
/// reported: not an environment that was found ready, before or after the build lock.
/// Called on the building thread; both methods do nothing by default.
pub trait BuildProgress: Send + Sync {
    /// A build started (the build lock is held).
    fn build_started(&self, build: &EnvBuild) {
        let _ = build;
    }

    /// That build ended after `took`: `ok` when the environment is in place.
    fn build_finished(&self, build: &EnvBuild, took: Duration, ok: bool) {
        let _ = (build, took, ok);
    }
}
