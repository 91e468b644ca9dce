//! The state of an agent's environment as `list`, `info` and `doctor` report it, and the
//! two ways to delete environments (`env remove`, `env gc`), both through `layout.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agenthub_core::{AgentManifest, EnvironmentConfig};
use serde::Serialize;

use crate::EnvError;
use crate::layout::{Freed, Layout, VenvState};
use crate::manager::{EnvMarker, environment_key, read_marker};

/// What state an agent's environment is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvState {
    /// Built, and its marker holds the key the agent needs now: calls use it as it is.
    Ready,
    /// Built for other requirements (or another Python constraint): the next call rebuilds.
    Stale,
    /// Ours, but without a readable marker or Python (a damaged environment): the next call
    /// rebuilds.
    Broken,
    /// Not built yet: the first call builds it.
    Missing,
    /// Something agenthub did not make is where the environment goes: calls fail until it
    /// is moved away.
    Foreign,
}

impl EnvState {
    /// The state's name, as `--json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Stale => "stale",
            Self::Broken => "broken",
            Self::Missing => "missing",
            Self::Foreign => "foreign",
        }
    }
}

/// An agent's environment: its state, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvStatus {
    /// The state.
    pub state: EnvState,
    /// `<agent>/<venv_location>`.
    pub venv: PathBuf,
    /// Why it is not ready, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Why the last build failed, when one failed and none succeeded since (the
    /// environment in use, if any, is the one before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// The marker, when there is a readable one.
    #[serde(skip)]
    pub marker: Option<EnvMarker>,
}

/// The state of the environment of the agent in `agent_dir`, without running anything:
/// what is at `<venv>` (ours or not), its marker, and the key the agent needs now
/// (computed by `key` only when there is a marker to compare it with).
pub fn environment_status_with(
    agent_dir: &Path,
    venv_location: &str,
    key: impl FnOnce() -> Result<String, EnvError>,
) -> EnvStatus {
    let venv = agent_dir.join(venv_location);
    let layout = match Layout::new(agent_dir, venv_location) {
        Ok(layout) => layout,
        Err(e) => {
            let detail = Some(e.to_string());
            return EnvStatus { state: EnvState::Foreign, venv, detail, last_failure: None, marker: None };
        }
    };
    let last_failure = layout.last_failure();
    let status = |state, detail: Option<String>, marker| EnvStatus {
        state,
        venv: venv.clone(),
        detail,
        last_failure: last_failure.clone(),
        marker,
    };
    match layout.venv_state() {
        VenvState::Missing => {
            let detail = last_failure.as_ref().map(|e| format!("its last build failed: {e}"));
            return status(EnvState::Missing, detail, None);
        }
        VenvState::Foreign(what) => {
            return status(EnvState::Foreign, Some(format!("{} is {what}", venv.display())), None);
        }
        VenvState::Managed(_) | VenvState::Legacy => {}
    }
    let Some(marker) = read_marker(&venv) else {
        return status(
            EnvState::Broken,
            Some("it has no readable agenthub-env.json marker".to_owned()),
            None,
        );
    };
    if std::fs::metadata(venv.join("bin").join("python")).is_err() {
        return status(EnvState::Broken, Some("its bin/python is missing".to_owned()), Some(marker));
    }
    match key() {
        Ok(key) if key == marker.key => status(EnvState::Ready, None, Some(marker)),
        Ok(_) => status(
            EnvState::Stale,
            Some("built for other requirements or another Python constraint".to_owned()),
            Some(marker),
        ),
        Err(e) => {
            status(EnvState::Stale, Some(format!("its requirements cannot be read: {e}")), Some(marker))
        }
    }
}

/// The state of the environment of the agent in `agent_dir` with manifest `manifest`.
pub fn environment_status(
    agent_dir: &Path,
    manifest: &AgentManifest,
    config: &EnvironmentConfig,
) -> EnvStatus {
    environment_status_with(agent_dir, &config.venv_location, || environment_key(agent_dir, manifest, config))
}

/// Removes the environment of the agent in `agent_dir` (see `Layout::remove_environment`),
/// waiting at most `limit` for a build in progress.
pub fn remove_environment(agent_dir: &Path, venv_location: &str, limit: Duration) -> Result<Freed, EnvError> {
    let layout = Layout::new(agent_dir, venv_location)?;
    layout.remove_environment(Instant::now().checked_add(limit), limit)
}

/// Removes the builds of the agent in `agent_dir` that its environment does not point at
/// (superseded, failed and killed builds). `Ok(None)` when a build is in progress (its lock
/// is held): nothing is touched then.
pub fn collect_unused(agent_dir: &Path, venv_location: &str) -> Result<Option<Freed>, EnvError> {
    Layout::new(agent_dir, venv_location)?.collect_unused()
}

/// The builds of the agent in `agent_dir` that `collect_unused` would remove, and their
/// bytes, without removing anything (for `doctor`).
pub fn unused_builds(agent_dir: &Path, venv_location: &str) -> Freed {
    let Ok(layout) = Layout::new(agent_dir, venv_location) else { return Freed::default() };
    layout.unused_builds()
}
