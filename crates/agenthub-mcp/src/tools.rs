//! Agent methods as MCP tools: names clients accept, and JSON Schemas from the manifests.
//!
//! Invariants:
//! - a tool name matches `[A-Za-z0-9_-]{1,64}` and is unique within one server;
//! - names are derived in the order the agents and their methods are given, so the same
//!   command line always yields the same names;
//! - `inputSchema` admits exactly what `validate_parameters` admits for the types it can
//!   express: the declared properties (no others), the required ones, their defaults.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use agenthub_core::{MethodSpec, ParamType};
use agenthub_runtime::LoadedAgent;
use serde_json::{Map, Value as Json, json};

/// The longest tool name clients accept.
pub const MAX_TOOL_NAME: usize = 64;

/// Separates the agent from the method in a tool name when several agents are served.
pub const SEPARATOR: &str = "__";

/// One tool: which method of which agent it runs, and how it is described.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// The agent the tool belongs to.
    pub agent: Arc<LoadedAgent>,
    /// The method it calls.
    pub method: String,
    /// What clients are told it does.
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: Map<String, Json>,
    /// JSON Schema of the structured result, when the method returns an object.
    pub output_schema: Option<Map<String, Json>>,
}

/// The tools of `agents`: one per method, named after the method when one agent is served
/// and `<agent>__<method>` otherwise.
pub fn tools_of(agents: &[Arc<LoadedAgent>]) -> Vec<ToolSpec> {
    let mut taken = HashSet::new();
    let mut tools = Vec::new();
    let prefixed = agents.len() > 1;
    for agent in agents {
        for (method, spec) in &agent.manifest.methods {
            let wanted =
                if prefixed { format!("{}{SEPARATOR}{method}", agent.manifest.name) } else { method.clone() };
            let name = unique_name(&wanted, &mut taken);
            tools.push(ToolSpec {
                name,
                agent: Arc::clone(agent),
                method: method.clone(),
                description: description(agent, method, spec),
                input_schema: input_schema(spec),
                output_schema: output_schema(spec),
            });
        }
    }
    tools
}

/// `wanted` made acceptable to clients: characters outside `[A-Za-z0-9_-]` become `_`, at
/// most [`MAX_TOOL_NAME`] characters, and a `_2`, `_3`, … suffix when the name is taken.
pub fn unique_name<S: std::hash::BuildHasher>(wanted: &str, taken: &mut HashSet<String, S>) -> String {
    let mut base: String = wanted
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(MAX_TOOL_NAME)
        .collect();
    if base.is_empty() {
        base.push_str("tool");
    }
    let mut name = base.clone();
    let mut n = 2u32;
    while taken.contains(&name) {
        let suffix = format!("_{n}");
        // All ASCII: byte and character counts agree.
        let keep = base.len().min(MAX_TOOL_NAME - suffix.len());
        name = format!("{}{suffix}", &base[..keep]);
        n += 1;
    }
    taken.insert(name.clone());
    name
}

fn description(agent: &LoadedAgent, method: &str, spec: &MethodSpec) -> String {
    let manifest = &agent.manifest;
    let mut text = if spec.description.trim().is_empty() {
        format!("`{method}` of the agent {}", manifest.name)
    } else {
        spec.description.clone()
    };
    if !manifest.description.trim().is_empty() {
        let _ = write!(text, " (agent {}: {})", manifest.name, manifest.description);
    }
    text
}

/// `{"type": "object", "properties": {...}, "required": [...], "additionalProperties": false}`.
pub fn input_schema(spec: &MethodSpec) -> Map<String, Json> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, param) in &spec.parameters {
        let mut property = Map::new();
        property.insert("type".to_owned(), json!(json_schema_type(param.param_type)));
        if let Some(description) = &param.description {
            property.insert("description".to_owned(), json!(description));
        }
        if let Some(default) = &param.default {
            property.insert("default".to_owned(), default.clone());
        }
        properties.insert(name.clone(), Json::Object(property));
        if param.required {
            required.push(json!(name));
        }
    }
    let mut schema = Map::new();
    schema.insert("type".to_owned(), json!("object"));
    schema.insert("properties".to_owned(), Json::Object(properties));
    schema.insert("required".to_owned(), Json::Array(required));
    // The runtime refuses parameters the manifest does not declare.
    schema.insert("additionalProperties".to_owned(), json!(false));
    schema
}

/// `{"type": "object"}` (with the description) when the method declares it returns an
/// object (`object` or `dict`); `None` otherwise.
pub fn output_schema(spec: &MethodSpec) -> Option<Map<String, Json>> {
    let returns = spec.returns.as_ref()?;
    let kind = returns.return_type.as_deref()?.trim().to_ascii_lowercase();
    if kind != "object" && kind != "dict" {
        return None;
    }
    let mut schema = Map::new();
    schema.insert("type".to_owned(), json!("object"));
    if let Some(description) = &returns.description {
        schema.insert("description".to_owned(), json!(description));
    }
    Some(schema)
}

/// The JSON Schema type of a manifest type (the manifest's names are JSON Schema's).
pub fn json_schema_type(ty: ParamType) -> &'static str {
    ty.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_bounded_and_unique() {
        let mut taken = HashSet::new();
        assert_eq!(unique_name("greet", &mut taken), "greet");
        assert_eq!(unique_name("greet", &mut taken), "greet_2");
        assert_eq!(unique_name("greet", &mut taken), "greet_3");
        assert_eq!(unique_name("my agent/v1.x__run", &mut taken), "my_agent_v1_x__run");
        assert_eq!(unique_name("", &mut taken), "tool");
        assert_eq!(unique_name("héllo", &mut taken), "h_llo");
        let long = "a".repeat(100);
        let first = unique_name(&long, &mut taken);
        assert_eq!(first, "a".repeat(64));
        let second = unique_name(&long, &mut taken);
        assert_eq!(second.len(), 64);
        assert!(second.ends_with("_2"));
        for name in &taken {
            assert!(name.len() <= MAX_TOOL_NAME);
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{name}");
        }
    }
}
