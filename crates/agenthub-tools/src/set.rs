//! A set of assigned tools: their names, what the agent is told about them (`tool_context`),
//! what MCP lists, and where each call goes.
//!
//! Invariants:
//! - names match `[A-Za-z0-9_-]{1,64}` and are unique within a set: agent methods are named
//!   as `mcp serve` names them (the method alone when the set has one agent and no MCP
//!   tools, `<agent>__<method>` otherwise), MCP tools as their server names them, and a
//!   clash gets `_2`, `_3`, … ([`agenthub_mcp::tools::unique_name`]);
//! - the `tool_context` and the MCP listing are made once per set, never per call.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use agenthub_runtime::LoadedAgent;
use serde_json::{Map, Value as Json, json};

use crate::upstream::{UpstreamTool, Upstreams};

/// Where a tool call goes.
#[derive(Clone)]
pub(crate) enum Source {
    /// A method of another agent, run through the runtime with that agent's own
    /// environment, limits, sandbox and tools.
    Agent {
        /// The agent.
        agent: Arc<LoadedAgent>,
        /// Its method.
        method: String,
    },
    /// A tool of one of the user's MCP servers.
    Upstream {
        /// The started servers.
        upstreams: Arc<Upstreams>,
        /// The server's name in the servers file.
        server: String,
        /// The tool's name on that server.
        tool: String,
    },
    /// A function of the embedder's own process.
    Function(Arc<dyn crate::ToolFunction>),
}

/// One assigned tool.
#[derive(Clone)]
pub struct Tool {
    /// The name the agent calls it by.
    pub name: String,
    /// What the agent is told it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub input_schema: Map<String, Json>,
    /// JSON Schema of its structured result, when it has one.
    pub output_schema: Option<Map<String, Json>>,
    /// `ns/name` of the agent, or `mcp:<server>`.
    pub namespace: String,
    /// What it returns, as the manifest or the output schema says (`any` when neither does).
    pub returns: String,
    pub(crate) source: Source,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// The tools one agent gets.
#[derive(Debug)]
pub struct ToolSet {
    tools: Vec<Tool>,
    by_name: HashMap<String, usize>,
    context: Json,
    listed: Vec<rmcp::model::Tool>,
}

/// An agent whose methods are assigned: all of them, or those named.
pub(crate) struct AgentTools {
    pub(crate) agent: Arc<LoadedAgent>,
    /// `ns/name`, or the directory for an agent named by path.
    pub(crate) namespace: String,
    pub(crate) methods: Option<Vec<String>>,
}

impl ToolSet {
    /// The set of `agents`' methods and `upstream` tools.
    pub(crate) fn new(
        agents: &[AgentTools],
        upstream: &[(Arc<Upstreams>, Vec<UpstreamTool>)],
        functions: &[crate::FunctionTool],
    ) -> Self {
        let mut taken = HashSet::new();
        let mut tools = Vec::new();
        let prefixed =
            agents.len() > 1 || upstream.iter().any(|(_, t)| !t.is_empty()) || !functions.is_empty();
        for assigned in agents {
            let agent = &assigned.agent;
            for (method, spec) in &agent.manifest.methods {
                if assigned.methods.as_ref().is_some_and(|only| !only.contains(method)) {
                    continue;
                }
                let wanted = if prefixed {
                    format!("{}{}{method}", agent.manifest.name, agenthub_mcp::tools::SEPARATOR)
                } else {
                    method.clone()
                };
                let mut description = if spec.description.trim().is_empty() {
                    format!("`{method}` of the agent {}", agent.manifest.name)
                } else {
                    spec.description.clone()
                };
                if !agent.manifest.description.trim().is_empty() {
                    let _ = write!(
                        description,
                        " (agent {}: {})",
                        agent.manifest.name, agent.manifest.description
                    );
                }
                tools.push(Tool {
                    name: agenthub_mcp::tools::unique_name(&wanted, &mut taken),
                    description,
                    input_schema: agenthub_mcp::tools::input_schema(spec),
                    output_schema: agenthub_mcp::tools::output_schema(spec),
                    namespace: assigned.namespace.clone(),
                    returns: spec
                        .returns
                        .as_ref()
                        .and_then(|r| r.return_type.clone())
                        .unwrap_or_else(|| "any".to_owned()),
                    source: Source::Agent { agent: Arc::clone(agent), method: method.clone() },
                });
            }
        }
        for (upstreams, listed) in upstream {
            for tool in listed {
                tools.push(Tool {
                    name: agenthub_mcp::tools::unique_name(&tool.name, &mut taken),
                    description: tool.description.clone(),
                    input_schema: tool.input_schema.clone(),
                    output_schema: tool.output_schema.clone(),
                    namespace: format!("mcp:{}", tool.server),
                    returns: tool
                        .output_schema
                        .as_ref()
                        .and_then(|s| s.get("type"))
                        .and_then(Json::as_str)
                        .unwrap_or("any")
                        .to_owned(),
                    source: Source::Upstream {
                        upstreams: Arc::clone(upstreams),
                        server: tool.server.clone(),
                        tool: tool.name.clone(),
                    },
                });
            }
        }
        for function in functions {
            tools.push(Tool {
                name: agenthub_mcp::tools::unique_name(&function.name, &mut taken),
                description: function.description.clone(),
                input_schema: function.input_schema.clone(),
                output_schema: None,
                namespace: "local".to_owned(),
                returns: "any".to_owned(),
                source: Source::Function(Arc::clone(&function.function)),
            });
        }
        let by_name = tools.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let listed = tools
            .iter()
            .map(|t| {
                let tool = rmcp::model::Tool::new(
                    t.name.clone(),
                    t.description.clone(),
                    Arc::new(t.input_schema.clone()),
                );
                match &t.output_schema {
                    Some(schema) => tool.with_raw_output_schema(Arc::new(schema.clone())),
                    None => tool,
                }
            })
            .collect();
        let context = tool_context(&tools);
        Self { tools, by_name, context, listed }
    }

    /// The tools, in the order they are listed.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The request's `tool_context` (SPEC §9).
    pub fn context(&self) -> &Json {
        &self.context
    }

    /// The tools as MCP lists them.
    pub(crate) fn listed(&self) -> &[rmcp::model::Tool] {
        &self.listed
    }
}

/// The original's `tool_context`: `available_tools`, and per name its description, a usage
/// example, its parameters (`{name, type, required, default}`), its return type and its
/// namespace.
fn tool_context(tools: &[Tool]) -> Json {
    let mut descriptions = Map::new();
    let mut examples = Map::new();
    let mut parameters = Map::new();
    let mut returns = Map::new();
    let mut namespaces = Map::new();
    for tool in tools {
        let properties = tool.input_schema.get("properties").and_then(Json::as_object);
        let required: Vec<&str> = tool
            .input_schema
            .get("required")
            .and_then(Json::as_array)
            .map(|r| r.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let mut params = Map::new();
        let mut example = Map::new();
        for (name, schema) in properties.into_iter().flatten() {
            let ty = schema.get("type").and_then(Json::as_str).unwrap_or("any");
            let default = schema.get("default").cloned().unwrap_or(Json::Null);
            params.insert(
                name.clone(),
                json!({"name": name, "type": ty, "required": required.contains(&name.as_str()), "default": default}),
            );
            example.insert(name.clone(), if default.is_null() { example_value(ty) } else { default });
        }
        let name = &tool.name;
        descriptions.insert(name.clone(), json!(tool.description));
        examples.insert(
            name.clone(),
            json!(format!(
                "{{\"tool_call\": {{\"tool_name\": \"{name}\", \"arguments\": {}}}}}",
                Json::Object(example)
            )),
        );
        parameters.insert(name.clone(), Json::Object(params));
        returns.insert(name.clone(), json!(tool.returns));
        namespaces.insert(name.clone(), json!(tool.namespace));
    }
    json!({
        "available_tools": tools.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "tool_descriptions": descriptions,
        "tool_usage_examples": examples,
        "tool_parameters": parameters,
        "tool_return_types": returns,
        "tool_namespaces": namespaces,
    })
}

/// A placeholder argument of JSON Schema type `ty` for a usage example.
fn example_value(ty: &str) -> Json {
    match ty {
        "string" => json!("..."),
        "integer" => json!(0),
        "number" => json!(0.0),
        "boolean" => json!(false),
        "array" => json!([]),
        "object" => json!({}),
        _ => Json::Null,
    }
}
