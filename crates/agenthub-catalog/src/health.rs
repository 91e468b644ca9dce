//! Environment upkeep by agent name: state, removal and garbage collection (deleting only
//! through `agenthub-env`'s `layout.rs`), and `doctor`'s checks of the machine and home.

use std::path::PathBuf;

use agenthub_core::{AgentRuntimeError, Config, list_agent_dirs};
use agenthub_env::{EnvStatus, Freed, UvProvision};
use serde::Serialize;

use crate::catalog::load_agent;

/// The state of an agent's environment (id or path), running nothing.
pub fn environment_status(config: &Config, agent: &str) -> Result<EnvStatus, AgentRuntimeError> {
    let loaded = load_agent(config, agent)?;
    Ok(agenthub_env::environment_status(&loaded.location.dir, &loaded.manifest, &config.environment))
}

/// Removes an agent's environment (what agenthub built there, nothing else), waiting at
/// most `build_timeout` for a build in progress.
pub fn remove_environment(config: &Config, agent: &str) -> Result<Freed, AgentRuntimeError> {
    let location = agenthub_core::resolve_agent(agent, &config.agents_root())?;
    let limit = config.runtime.build_timeout.as_duration();
    Ok(agenthub_env::remove_environment(&location.dir, &config.environment.venv_location, limit)?)
}

/// What `env gc` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// What was removed, and the bytes freed.
    #[serde(flatten)]
    pub freed: Freed,
    /// Agent directories skipped because a build was in progress there.
    pub skipped: Vec<PathBuf>,
    /// Agent directories where something was in the way (e.g. a builds directory that is
    /// not agenthub's), with the reason.
    pub errors: Vec<GcError>,
}

/// An agent directory `env gc` could not clean.
#[derive(Debug, Clone, Serialize)]
pub struct GcError {
    /// The agent directory.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

/// Removes, in every installed agent, the builds its environment does not point at
/// (superseded, failed, killed), and unfinished uv installs in `<home>/tools`.
pub fn collect_unused_environments(config: &Config) -> GcReport {
    let mut report = GcReport::default();
    let venv = &config.environment.venv_location;
    for (_, dir) in list_agent_dirs(&config.agents_root()) {
        match agenthub_env::collect_unused(&dir, venv) {
            Ok(Some(freed)) => report.freed.merge(freed),
            Ok(None) => report.skipped.push(dir),
            Err(e) => report.errors.push(GcError { path: dir, error: e.to_string() }),
        }
    }
    match agenthub_env::remove_uv_staging_leftovers(&UvProvision::new(&config.home, false)) {
        Ok(freed) => report.freed.merge(freed),
        Err(e) => report.errors.push(GcError { path: config.home.join("tools"), error: e.to_string() }),
    }
    report
}
