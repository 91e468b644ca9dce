//! Tools for agents (SPEC §9): the methods of other agents and the tools of the user's MCP
//! servers, assigned to a call and served to it over MCP inside its sandbox.
//!
//! ```no_run
//! use std::sync::Arc;
//! use agenthub_runtime::{AgentRuntime, Call, Config};
//! use agenthub_tools::{Assignment, ToolHost};
//!
//! let runtime = Arc::new(AgentRuntime::from_config(Config::load()?)?);
//! let host = ToolHost::new(Arc::clone(&runtime), agenthub_tools::HostOptions::from_config(runtime.config()));
//! let assignment = Assignment { agents: vec!["./agents/calc".into()], ..Assignment::default() };
//! let set = host.tool_set(&assignment)?;
//! let agent = runtime.load_agent("./agents/analyst")?;
//! let call = Call::loaded(&agent, "analyze").param("text", "6 times 7").tools(host.call_tools(&set, &agent));
//! let response = runtime.call_blocking(call); // response.tool_calls: what it called
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The layers: [`set`] is what a call is given (names, `tool_context`, the MCP listing),
//! [`scope`] what one call's tool calls may do and did, [`serve`] the endpoint the runtime
//! opens for a call's process (`agenthub_runtime::tools`), [`upstream`] the client of the
//! user's MCP servers. The runtime knows none of them: it sees [`agenthub_runtime::tools::CallTools`].
//!
//! Invariants:
//! - the MCP servers of one servers file are started once per [`ToolHost`] and stopped
//!   (their processes killed) when it is dropped or [`ToolHost::shutdown`] is called;
//! - a callee's own tools come from config.yaml (`tools:`) for its installed id, and are
//!   made once per host;
//! - nothing here blocks an async runtime thread: agent calls run on blocking threads.

pub mod scope;
pub mod serve;
pub mod set;
pub mod upstream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agenthub_core::{AgentRuntimeError, Config, ToolAssignment};
use agenthub_runtime::tools::{CallTools, ToolServer};
use agenthub_runtime::{AgentRuntime, LoadedAgent};

pub use set::{Tool, ToolSet};
use upstream::{ServersFile, UpstreamError, Upstreams};

/// Why tools could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// A `--tool` (or config.yaml `tools:` entry) that names no agent tool.
    #[error("{0}")]
    Spec(String),
    /// The agent a tool belongs to could not be loaded or installed.
    #[error("tool {tool}: {error}")]
    Agent {
        /// The tool as it was given.
        tool: String,
        /// Why.
        #[source]
        error: AgentRuntimeError,
    },
    /// A method named in a tool is not one of the agent's.
    #[error("tool {tool}: the agent has no method `{method}` (it has: {available})")]
    NoSuchMethod {
        /// The tool as it was given.
        tool: String,
        /// The method named.
        method: String,
        /// The agent's methods, comma-separated.
        available: String,
    },
    /// The user's MCP servers.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The async runtime that serves tools could not be started.
    #[error("could not start the tools' async runtime: {0}")]
    Runtime(String),
}

impl From<ToolsError> for AgentRuntimeError {
    fn from(error: ToolsError) -> Self {
        AgentRuntimeError::NotRun {
            message: format!("The call's tools could not be made ready: {error}"),
            suggestion: "Check `--tool` and `--tools-from` (or `tools:` in config.yaml); `agenthub info AGENT --tool …` \
                         shows what an agent would get"
                .to_owned(),
        }
    }
}

/// The error type name of an upstream failure, as `tool_calls` records it.
pub(crate) fn upstream_error_type(error: &UpstreamError) -> &'static str {
    match error {
        UpstreamError::Timeout { .. } => "TimeoutError",
        UpstreamError::Cancelled { .. } => "Cancelled",
        UpstreamError::NotAssigned { .. } => "ToolNotAssigned",
        UpstreamError::Gone { .. } | UpstreamError::Start { .. } => "ToolServerError",
        UpstreamError::Call { .. } | UpstreamError::Protocol { .. } => "ToolError",
        UpstreamError::Read { .. } | UpstreamError::File { .. } | UpstreamError::Field { .. } => {
            "ToolConfigError"
        }
    }
}

/// How tool calls are bounded.
#[derive(Debug, Clone, Copy)]
pub struct HostOptions {
    /// Limit of one tool call (`runtime.tool_timeout`).
    pub tool_timeout: Duration,
    /// How deep tool calls may nest (`runtime.max_tool_depth`).
    pub max_depth: usize,
    /// Limit of starting one MCP server and listing its tools.
    pub start_timeout: Duration,
}

impl HostOptions {
    /// The options `config` sets.
    pub fn from_config(config: &Config) -> Self {
        Self {
            tool_timeout: config.runtime.tool_timeout.as_duration(),
            max_depth: config.runtime.max_tool_depth,
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// What tools an agent gets: other agents (`ns/name`, `ns/name.method`, a path, or
/// `PATH:method`), MCP servers files, and functions of the embedder's own process.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    /// Agent tools.
    pub agents: Vec<String>,
    /// `{"mcpServers": {...}}` files.
    pub servers_files: Vec<PathBuf>,
    /// Tools the embedder runs itself (the Python package's `@agenthub.tool` functions).
    pub functions: Vec<FunctionTool>,
}

impl Assignment {
    /// Whether it assigns nothing.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.servers_files.is_empty() && self.functions.is_empty()
    }
}

/// A tool the embedder implements in its own process: called on a blocking thread of the
/// tools' async runtime when the agent calls it, bounded by `runtime.tool_timeout` (a call
/// cut off by its timeout or by the end of the agent's call is reported as such to the
/// agent, while the function itself runs to its end: it cannot be stopped from outside).
pub trait ToolFunction: Send + Sync {
    /// Runs the tool with the agent's arguments: its result, or the text of its error,
    /// which the agent is told (`ToolError: <text>`).
    fn call(
        &self,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value, String>;
}

/// One tool of the embedder's own process, as it is assigned.
#[derive(Clone)]
pub struct FunctionTool {
    /// The name the agent calls it by (`[A-Za-z0-9_-]{1,64}`; a clash gets `_2`).
    pub name: String,
    /// What the agent is told it does.
    pub description: String,
    /// JSON Schema of its arguments (an object schema).
    pub input_schema: serde_json::Map<String, serde_json::Value>,
    /// What runs it.
    pub function: Arc<dyn ToolFunction>,
}

impl std::fmt::Debug for FunctionTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionTool").field("name", &self.name).finish_non_exhaustive()
    }
}

impl From<&ToolAssignment> for Assignment {
    fn from(assignment: &ToolAssignment) -> Self {
        Self {
            functions: Vec::new(),
            agents: assignment.agents.clone(),
            servers_files: assignment
                .mcp_servers
                .iter()
                .map(|p| agenthub_core::expand_tilde(&p.to_string_lossy()))
                .collect(),
        }
    }
}

/// Makes tool sets and serves them to calls: one per runtime.
pub struct ToolHost {
    inner: Arc<HostInner>,
}

impl std::fmt::Debug for ToolHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolHost").field("options", &self.inner.options).finish_non_exhaustive()
    }
}

pub(crate) struct HostInner {
    pub(crate) runtime: Arc<AgentRuntime>,
    pub(crate) server: Arc<dyn ToolServer>,
    pub(crate) options: HostOptions,
    /// Started servers, by servers file.
    upstreams: Mutex<HashMap<PathBuf, Arc<Upstreams>>>,
    /// Callees' own tool sets, by agent key (`None`: it has none).
    callee_sets: Mutex<HashMap<String, Option<Arc<ToolSet>>>>,
    /// Serialises starting servers (two calls never start the same file twice).
    starting: tokio::sync::Mutex<()>,
}

/// The async runtime tool endpoints and MCP clients run on: made once per process, never
/// dropped (a runtime cannot be dropped from inside one, and tool calls end on its threads).
/// A forked child (the Python package's) gets one of its own: the parent's threads are not
/// in the child, so the parent's runtime would never run a task there; it is leaked.
pub(crate) fn tokio_runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    use std::sync::atomic::{AtomicPtr, Ordering};
    static RUNTIME: AtomicPtr<(u32, tokio::runtime::Runtime)> = AtomicPtr::new(std::ptr::null_mut());
    let pid = std::process::id();
    let current = RUNTIME.load(Ordering::Acquire);
    // SAFETY: a non-null pointer was leaked from a Box below and is never freed.
    if let Some((owner, runtime)) = unsafe { current.as_ref() }
        && *owner == pid
    {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agenthub-tools")
        // A tool call's agent may be started on a blocking thread, and agents may be tied to
        // the thread that started them (`kill_agents_with_runtime`): those threads stay.
        .thread_keep_alive(Duration::from_secs(u64::from(u32::MAX)))
        .enable_all()
        .build()?;
    let made = Box::into_raw(Box::new((pid, runtime)));
    match RUNTIME.compare_exchange(current, made, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `made` is ours and now published for good.
        Ok(_) => Ok(unsafe { &(*made).1 }),
        Err(won) => {
            // Another thread published one first: use it; ours was never used, so it may go
            // (dropped on a thread of its own: never inside an async context).
            // SAFETY: `made` was not published; `won` was, and is never freed.
            let ours = unsafe { Box::from_raw(made) };
            std::thread::spawn(move || drop(ours));
            Ok(unsafe { &(*won).1 })
        }
    }
}

impl ToolHost {
    /// A host whose agent tools run on `runtime`.
    pub fn new(runtime: Arc<AgentRuntime>, options: HostOptions) -> Self {
        Self {
            inner: Arc::new(HostInner {
                runtime,
                server: Arc::new(serve::SlotServer),
                options,
                upstreams: Mutex::default(),
                callee_sets: Mutex::default(),
                starting: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The tools `assignment` gives: its agents loaded (installed when the runtime
    /// auto-installs), its MCP servers started (once per host). Blocks; call it outside
    /// any async runtime.
    pub fn tool_set(&self, assignment: &Assignment) -> Result<Arc<ToolSet>, ToolsError> {
        let runtime = tokio_runtime().map_err(|e| ToolsError::Runtime(e.to_string()))?;
        let inner = Arc::clone(&self.inner);
        let assignment = assignment.clone();
        runtime.block_on(async move { inner.resolve(&assignment).await })
    }

    /// The tools of one call of `agent` (the top of its chain of calls): give them to
    /// [`agenthub_runtime::Call::tools`].
    pub fn call_tools(&self, set: &Arc<ToolSet>, agent: &LoadedAgent) -> Arc<dyn CallTools> {
        let key = self.inner.agent_key(agent);
        Arc::new(scope::CallScope::new(Arc::clone(&self.inner), Arc::clone(set), vec![key]))
    }

    /// The tools config.yaml gives the installed agent `agent` (none for an agent run by
    /// path, or without a `tools:` entry).
    pub fn configured(&self, agent: &LoadedAgent) -> Assignment {
        let config = self.inner.runtime.config();
        agenthub_core::installed_id(config, &agent.location)
            .map(|id| Assignment::from(&config.tools_for(&id)))
            .unwrap_or_default()
    }

    /// Stops every MCP server this host started (their processes are killed).
    pub fn shutdown(&self) {
        let all: Vec<Arc<Upstreams>> = {
            let mut map = self.inner.upstreams.lock().unwrap_or_else(PoisonError::into_inner);
            map.drain().map(|(_, u)| u).collect()
        };
        if all.is_empty() {
            return;
        }
        let Ok(runtime) = tokio_runtime() else { return };
        let stop = move || {
            runtime.block_on(async {
                for upstreams in all {
                    upstreams.shutdown().await;
                }
            });
        };
        // A host may be dropped on an async runtime's thread (`mcp serve`), where blocking on
        // another runtime is not allowed: then on a thread of its own, waited for (bounded by
        // the servers' own shutdown).
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("agenthub-tools-stop".to_owned())
                .spawn(stop)
                .map(std::thread::JoinHandle::join);
        } else {
            stop();
        }
    }
}

impl Drop for ToolHost {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl HostInner {
    /// `ns/name` for an installed agent, else `path:<dir>`.
    pub(crate) fn agent_key(&self, agent: &LoadedAgent) -> String {
        agenthub_core::installed_id(self.runtime.config(), &agent.location)
            .map_or_else(|| format!("path:{}", agent.location.dir.display()), |id| id.to_string())
    }

    /// The tools a callee gets on its own (config.yaml), for a call whose chain is `chain`.
    pub(crate) async fn callee_tools(
        self: &Arc<Self>,
        agent: &LoadedAgent,
        chain: Vec<String>,
    ) -> Result<Option<Arc<dyn CallTools>>, ToolsError> {
        let key = chain.last().cloned().unwrap_or_default();
        let known = self.callee_sets.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        let set = if let Some(set) = known {
            set
        } else {
            let config = self.runtime.config();
            let assignment = agenthub_core::installed_id(config, &agent.location)
                .map(|id| Assignment::from(&config.tools_for(&id)))
                .unwrap_or_default();
            let set = if assignment.is_empty() { None } else { Some(self.resolve(&assignment).await?) };
            self.callee_sets.lock().unwrap_or_else(PoisonError::into_inner).insert(key, set.clone());
            set
        };
        Ok(set.map(|set| Arc::new(scope::CallScope::new(Arc::clone(self), set, chain)) as Arc<dyn CallTools>))
    }

    async fn resolve(self: &Arc<Self>, assignment: &Assignment) -> Result<Arc<ToolSet>, ToolsError> {
        let mut agents = Vec::new();
        for tool in &assignment.agents {
            let (target, method) = agent_tool(tool)?;
            let runtime = Arc::clone(&self.runtime);
            let loading = target.clone();
            let loaded =
                tokio::task::spawn_blocking(move || pollster::block_on(runtime.load_or_install(&loading)))
                    .await
                    .map_err(|e| ToolsError::Runtime(e.to_string()))?
                    .map_err(|error| ToolsError::Agent { tool: tool.clone(), error })?;
            if let Some(method) = &method
                && loaded.manifest.method(method).is_none()
            {
                return Err(ToolsError::NoSuchMethod {
                    tool: tool.clone(),
                    method: method.clone(),
                    available: loaded.manifest.method_names().join(", "),
                });
            }
            let namespace = self.agent_key(&loaded);
            // The same agent named twice (`a/b.x` and `a/b.y`): one entry, both methods.
            if let Some(entry) =
                agents.iter_mut().find(|a: &&mut set::AgentTools| a.agent.location.dir == loaded.location.dir)
            {
                match (&mut entry.methods, method) {
                    (Some(methods), Some(method)) => methods.push(method),
                    (methods, _) => *methods = None,
                }
                continue;
            }
            agents.push(set::AgentTools {
                agent: Arc::new(loaded),
                namespace,
                methods: method.map(|m| vec![m]),
            });
        }
        let mut upstream = Vec::new();
        for file in &assignment.servers_files {
            let upstreams = self.upstreams_of(file).await?;
            let tools = upstreams.tools().to_vec();
            upstream.push((upstreams, tools));
        }
        Ok(Arc::new(ToolSet::new(&agents, &upstream, &assignment.functions)))
    }

    /// The servers of `file`, started on first use.
    async fn upstreams_of(&self, file: &std::path::Path) -> Result<Arc<Upstreams>, ToolsError> {
        let key = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let _starting = self.starting.lock().await;
        if let Some(found) = self.upstreams.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(Arc::clone(found));
        }
        let servers = ServersFile::read(file)?;
        let started = Arc::new(Upstreams::start(&servers, self.options.start_timeout).await?);
        self.upstreams.lock().unwrap_or_else(PoisonError::into_inner).insert(key, Arc::clone(&started));
        Ok(started)
    }
}

/// An agent tool as given: what to load (an id or a path) and the method, if one is named.
/// Ids are `ns/name` or `ns/name.method`; paths (`./`, `../`, `/`, `~`) are `PATH` or
/// `PATH:method`.
pub fn agent_tool(tool: &str) -> Result<(String, Option<String>), ToolsError> {
    let is_path = tool.starts_with(['.', '/', '~']);
    if is_path {
        if let Some((path, method)) = tool.rsplit_once(':')
            && !method.is_empty()
            && method.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Ok((path.to_owned(), Some(method.to_owned())));
        }
        return Ok((tool.to_owned(), None));
    }
    let (id, method) = agenthub_core::parse_agent_tool(tool).map_err(ToolsError::Spec)?;
    Ok((id.to_string(), method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_tools_name_an_id_or_a_path_and_maybe_a_method() {
        assert_eq!(agent_tool("acme/calc").unwrap(), ("acme/calc".to_owned(), None));
        assert_eq!(agent_tool("acme/calc.add").unwrap(), ("acme/calc".to_owned(), Some("add".to_owned())));
        assert_eq!(agent_tool("./agents/calc").unwrap(), ("./agents/calc".to_owned(), None));
        assert_eq!(
            agent_tool("./agents/calc:add").unwrap(),
            ("./agents/calc".to_owned(), Some("add".to_owned()))
        );
        assert_eq!(agent_tool("/srv/a.b/calc").unwrap(), ("/srv/a.b/calc".to_owned(), None));
        let err = agent_tool("calc").unwrap_err().to_string();
        assert!(err.contains("ns/name"), "{err}");
    }
}
