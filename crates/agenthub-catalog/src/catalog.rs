//! Read-only views of agents on disk: loading, listing, describing. Needs configuration
//! only, no backend.

use std::path::PathBuf;

use agenthub_core::{AgentLocation, AgentManifest, AgentRuntimeError, Config, resolve_agent, shell_quote};
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
    /// How warm workers would call it (see [`warm_dispatch`]).
    pub warm_dispatch: WarmDispatch,
    /// `ready`, `stale`, `broken`, `missing` or `foreign`.
    pub environment_state: agenthub_env::EnvState,
    /// Where it was installed from (`.agenthub-install.json`), when `agenthub install` made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<agenthub_core::InstallRecord>,
    /// One example `agenthub exec` line per method, in declaration order.
    pub examples: Vec<Example>,
    /// What the agent asks for beyond running itself.
    pub permissions: PermissionsReport,
}

/// What an agent asks for beyond running itself, as `agenthub info` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionsReport {
    /// The `permissions:` block of its agent.yaml as it is now.
    pub declared: agenthub_core::Permissions,
    /// What it asks for, in words (one line each; see
    /// [`agenthub_core::Permissions::describe`]).
    pub summary: Vec<String>,
    /// For an installed agent whose agent.yaml now asks for more than when it was
    /// installed: what more, in words (not allowed until it is installed again).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub beyond_install: Vec<String>,
}

impl PermissionsReport {
    /// The report of the agent at `location` whose manifest declares `declared`.
    pub fn of(config: &Config, location: &AgentLocation, declared: &agenthub_core::Permissions) -> Self {
        let (approved, _) = agenthub_core::approved_declaration(config, location, declared);
        let beyond = declared.beyond(&approved);
        Self {
            declared: declared.clone(),
            summary: declared.describe(),
            beyond_install: if beyond.is_empty() { Vec::new() } else { beyond.describe() },
        }
    }
}

/// How warm workers would serve an agent; serialised as `main`, `instance` or `oneshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmDispatch {
    /// Imported once, its `main()` run per call.
    Main,
    /// One instance of the agent's class (`runtime.worker_dispatch: instance`).
    Instance,
    /// One process per call: `agent.py` has no `main()` block the worker can replay.
    Oneshot,
}

impl WarmDispatch {
    /// As serialised: `main`, `instance` or `oneshot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Instance => "instance",
            Self::Oneshot => "oneshot",
        }
    }
}

/// An example call of one method.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// The method.
    pub method: String,
    /// A command line that calls it, with placeholder values typed by the manifest.
    pub command: String,
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
    /// SOURCE as given to `agenthub install` (from `.agenthub-install.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `git` or `path`, for an installed agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<agenthub_core::SourceKind>,
    /// The ref asked for at install (`@ref`).
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The commit installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `ready`, `stale`, `broken`, `missing` or `foreign`; absent when the manifest does
    /// not load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<agenthub_env::EnvState>,
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
    let dir = &loaded.location.dir;
    let status = agenthub_env::environment_status(dir, &loaded.manifest, &config.environment);
    let id = loaded.location.id.as_ref().map(ToString::to_string);
    let target = id.clone().unwrap_or_else(|| agent.to_owned());
    Ok(AgentInfo {
        permissions: PermissionsReport::of(config, &loaded.location, &loaded.manifest.permissions),
        environment: status.marker,
        environment_state: status.state,
        warm_dispatch: warm_dispatch(config, dir),
        install: agenthub_core::read_install_record(dir),
        examples: loaded
            .manifest
            .methods
            .iter()
            .map(|(name, spec)| Example { method: name.clone(), command: example_call(&target, name, spec) })
            .collect(),
        id,
        path: loaded.location.dir,
        manifest: loaded.manifest,
    })
}

/// `agenthub exec AGENT METHOD key=value…` with a placeholder per required parameter (and
/// the JSON form when one is an array or object), quoted for a POSIX shell.
pub fn example_call(agent: &str, method: &str, spec: &agenthub_core::MethodSpec) -> String {
    use agenthub_core::ParamType;
    let required: Vec<(&String, ParamType)> =
        spec.parameters.iter().filter(|(_, p)| p.required).map(|(n, p)| (n, p.param_type)).collect();
    let mut words = vec!["agenthub".to_owned(), "exec".to_owned(), shell_quote(agent), shell_quote(method)];
    let sample = |t: ParamType| match t {
        ParamType::String => serde_json::json!("text"),
        ParamType::Integer => serde_json::json!(1),
        ParamType::Number => serde_json::json!(1.5),
        ParamType::Boolean => serde_json::json!(true),
        ParamType::Array => serde_json::json!([]),
        ParamType::Object => serde_json::json!({}),
    };
    if required.iter().any(|(_, t)| matches!(t, ParamType::Array | ParamType::Object)) {
        let object: serde_json::Map<String, serde_json::Value> =
            required.iter().map(|(n, t)| ((*n).clone(), sample(*t))).collect();
        words.push(shell_quote(&serde_json::Value::Object(object).to_string()));
    } else {
        for (name, t) in required {
            let value = match sample(t) {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            words.push(shell_quote(&format!("{name}={value}")));
        }
    }
    words.join(" ")
}

/// The installed agents, sorted by id, with provenance and environment state; broken
/// manifests are listed with their error. Served from a listing cache in the home that is
/// never stale (see `listing.rs`).
pub fn list_agents(config: &Config) -> Vec<AgentSummary> {
    crate::listing::list_agents(config)
}

/// How warm workers would serve the agent in `dir` (what the worker bootstrap decides,
/// without starting Python): `main` when `agent.py` has exactly one top-level
/// `if __name__ == "__main__":` block whose whole body calls `main()` (plainly, through
/// `sys.exit`/`exit`/`quit`/`raise SystemExit`, or `asyncio.run`) and dispatch is not
/// `instance`; `instance` when so configured (the worker falls back to one-shot if no class
/// covers every method); `oneshot` otherwise.
pub fn warm_dispatch(config: &Config, dir: &std::path::Path) -> WarmDispatch {
    use agenthub_core::WorkerDispatch;
    if config.runtime.worker_dispatch == WorkerDispatch::Instance {
        return WarmDispatch::Instance;
    }
    let source = agenthub_core::read_agent_file(dir, std::path::Path::new("agent.py"), 8 * 1024 * 1024);
    match source {
        Ok(Some(source)) if replays_main(&source) => WarmDispatch::Main,
        _ => WarmDispatch::Oneshot,
    }
}

/// Whether `source` has exactly one top-level `__main__` guard whose body is one call of
/// `main()` in a form the worker can replay (see `main_guard.rs`).
pub fn replays_main(source: &str) -> bool {
    crate::main_guard::main_guard(source).is_some()
}

#[cfg(test)]
mod tests {
    use super::replays_main;

    #[test]
    fn main_guards_are_recognised_as_the_bootstrap_does() {
        assert!(replays_main("def main():\n    pass\n\nif __name__ == \"__main__\":\n    main()\n"));
        assert!(replays_main("if __name__ == '__main__':\n    # run\n    sys.exit(main())\n"));
        assert!(replays_main("if __name__ == '__main__': asyncio.run(main())\n"));
        assert!(!replays_main("import sys\nprint(sys.argv)\n"));
        assert!(!replays_main("if __name__ == '__main__':\n    setup()\n    main()\n"));
        assert!(!replays_main("if __name__ == '__main__':\n    main(sys.argv)\n"));
        assert!(!replays_main(
            "if __name__ == '__main__':\n    main()\nif __name__ == '__main__':\n    main()\n"
        ));
    }
}
