//! One [`ExecutionResponse`] as one MCP tool result.
//!
//! A result is text content: a string result as it is, anything else as compact JSON, and
//! the value again as `structuredContent` when the tool has an output schema. Every error
//! (bad arguments, the agent's own error, a timeout, a limit) is a result with
//! `isError: true` whose text carries the message, the `error_type` and the suggestion:
//! that is what the model reading it can act on.

use agenthub_core::AgentRuntimeError;
use agenthub_runtime::ExecutionResponse;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value as Json;

/// Lines of the agent's stderr included in an error result.
const STDERR_LINES: usize = 20;

/// The tool result for `response`; `structured`: the tool declares an output schema (an
/// object).
pub fn tool_result(response: &ExecutionResponse, structured: bool) -> CallToolResult {
    match &response.outcome {
        Ok(value) if structured && !value.is_object() => {
            CallToolResult::error(vec![ContentBlock::text(format!(
                "ProtocolError: the method declares that it returns an object, but it returned {}: {}",
                kind(value),
                text_of(value)
            ))])
        }
        Ok(value) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(text_of(value))]);
            if structured {
                result.structured_content = Some(value.clone());
            }
            result
        }
        Err(error) => CallToolResult::error(vec![ContentBlock::text(error_text(error))]),
    }
}

/// `<error_type>: <message>`, then the suggestion and the tail of the agent's stderr.
pub fn error_text(error: &AgentRuntimeError) -> String {
    let mut text = format!("{}: {error}", error.error_type());
    if let Some(suggestion) = error.suggestion() {
        text.push_str("\nsuggestion: ");
        text.push_str(&suggestion);
    }
    if let Some(stderr) = error.stderr().filter(|s| !s.trim().is_empty()) {
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = &lines[lines.len().saturating_sub(STDERR_LINES)..];
        text.push_str("\nstderr (last lines):\n");
        text.push_str(&tail.join("\n"));
    }
    text
}

fn text_of(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn ok(value: Json) -> ExecutionResponse {
        ExecutionResponse {
            outcome: Ok(value),
            execution_time: Duration::ZERO,
            memory_usage_bytes: None,
            stdout_noise: None,
            tool_calls: Vec::new(),
        }
    }

    fn wire(result: &CallToolResult) -> Json {
        serde_json::to_value(result).unwrap()
    }

    #[test]
    fn strings_are_text_and_objects_are_also_structured() {
        let v = wire(&tool_result(&ok(json!("Hello, World.")), false));
        assert_eq!(v["content"], json!([{"type": "text", "text": "Hello, World."}]));
        assert_eq!(v["isError"], false);
        assert!(v.get("structuredContent").is_none());
        let v = wire(&tool_result(&ok(json!({"a": 1})), true));
        assert_eq!(v["content"][0]["text"], "{\"a\":1}");
        assert_eq!(v["structuredContent"], json!({"a": 1}));
    }

    #[test]
    fn a_non_object_where_an_object_is_declared_is_an_error_result() {
        let v = wire(&tool_result(&ok(json!([1])), true));
        assert_eq!(v["isError"], true);
        assert!(v["content"][0]["text"].as_str().unwrap().contains("returned an array"), "{v}");
    }

    #[test]
    fn errors_carry_type_message_suggestion_and_stderr() {
        let error = AgentRuntimeError::Agent {
            message: "boom".to_owned(),
            return_code: Some(1),
            stderr: Some("Traceback\nValueError: boom".to_owned()),
        };
        let v = wire(&tool_result(&ExecutionResponse::failed(error, Duration::ZERO), false));
        assert_eq!(v["isError"], true);
        let text = v["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("AgentError: "), "{text}");
        assert!(text.contains("boom"), "{text}");
        assert!(text.contains("ValueError: boom"), "{text}");
    }
}
