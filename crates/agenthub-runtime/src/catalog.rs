//! Read-only views of agents on disk: loading, listing, describing. Needs configuration
//! only, no backend.

use std::path::PathBuf;

use agenthub_core::{AgentLocation, AgentManifest, AgentRuntimeError, Config, list_installed, resolve_agent};
use agenthub_env::EnvMarker;
use serde::Serialize;

/// An agent whose directory was found and whose manifest parsed.
#[derive(Debug, Clone)]
pub struct LoadedAgent {
    /// Where it is.
    pub location: AgentLocation,
    /// Its manifest.
    pub manifest: AgentManifest,
    /// The manifest file.
    pub manifest_path: PathBuf,
}

/// What `get_agent_info` returns.
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    /// The id, when the agent is installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The agent directory.
    pub path: PathBuf,
    /// The manifest.
    #[serde(flatten)]
    pub manifest: AgentManifest,
    /// The environment's marker, when it has been built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvMarker>,
}

/// One line of `list_agents`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentSummary {
    /// `namespace/name`.
    pub id: String,
    /// The agent directory.
    pub path: PathBuf,
    /// The manifest's version, when it loads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The manifest's description, when it loads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The methods, when the manifest loads.
    pub methods: Vec<String>,
    /// Why the manifest does not load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Resolves an id or path against the configured agents root and parses its manifest.
pub fn load_agent(config: &Config, agent: &str) -> Result<LoadedAgent, AgentRuntimeError> {
    let location = resolve_agent(agent, &config.agents_root())?;
    let (manifest, manifest_path) = AgentManifest::load(&location.dir)?;
    Ok(LoadedAgent { location, manifest, manifest_path })
}

/// The agent's manifest, location and environment state.
pub fn agent_info(config: &Config, agent: &str) -> Result<AgentInfo, AgentRuntimeError> {
    let loaded = load_agent(config, agent)?;
    let venv = config.venv_dir(&loaded.location.dir);
    Ok(AgentInfo {
        id: loaded.location.id.as_ref().map(ToString::to_string),
        environment: agenthub_env::read_marker(&venv),
        path: loaded.location.dir,
        manifest: loaded.manifest,
    })
}

/// The installed agents, sorted by id; broken manifests are listed with their error.
pub fn list_agents(config: &Config) -> Vec<AgentSummary> {
    list_installed(&config.agents_root())
        .into_iter()
        .map(|(id, path)| match AgentManifest::load(&path) {
            Ok((m, _)) => AgentSummary {
                id: id.to_string(),
                path,
                version: Some(m.version.clone()),
                description: Some(m.description.clone()),
                methods: m.method_names(),
                error: None,
            },
            Err(e) => AgentSummary {
                id: id.to_string(),
                path,
                version: None,
                description: None,
                methods: Vec::new(),
                error: Some(e.to_string()),
            },
        })
        .collect()
}
