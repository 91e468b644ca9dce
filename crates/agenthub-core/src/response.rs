//! The one JSON object every execution returns (SPEC §5).

use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value as Json;

use crate::error::{AgentRuntimeError, format_bytes};

/// The outcome of one execution, serialising to exactly the object of SPEC §5.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionResponse {
    /// The agent's result, or why there is none.
    pub outcome: Result<Json, AgentRuntimeError>,
    /// From request to response.
    pub execution_time: Duration,
    /// Peak resident memory of the agent process, when known.
    pub memory_usage_bytes: Option<u64>,
    /// Text the agent printed to stdout before its JSON line.
    pub stdout_noise: Option<String>,
    /// The tools the call used, in the order they were called (SPEC §9).
    pub tool_calls: Vec<ToolCallRecord>,
}

/// One tool call an agent made during its call (`tool_calls` in the response).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolCallRecord {
    /// The tool's name, as the agent called it.
    pub name: String,
    /// Seconds from the tool call's request to its answer.
    pub duration: f64,
    /// `ok`, or the error type of what went wrong (`TimeoutError`, `AgentError`, …;
    /// `ToolNotAssigned` for a name the call was not given, `Cancelled` when the call ended
    /// first).
    pub outcome: String,
}

impl ExecutionResponse {
    /// A response for an error found before anything ran.
    pub fn failed(error: AgentRuntimeError, execution_time: Duration) -> Self {
        Self {
            outcome: Err(error),
            execution_time,
            memory_usage_bytes: None,
            stdout_noise: None,
            tool_calls: Vec::new(),
        }
    }

    /// Whether the agent returned a result.
    pub fn is_success(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The result, when there is one.
    pub fn result(&self) -> Option<&Json> {
        self.outcome.as_ref().ok()
    }

    /// The error, when there is one.
    pub fn error(&self) -> Option<&AgentRuntimeError> {
        self.outcome.as_ref().err()
    }

    /// The response as a JSON value.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

impl Serialize for ExecutionResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match &self.outcome {
            Ok(result) => map.serialize_entry("result", result)?,
            Err(err) => {
                map.serialize_entry("error", &err.to_string())?;
                map.serialize_entry("error_type", err.error_type())?;
                if let Some(suggestion) = err.suggestion() {
                    map.serialize_entry("suggestion", &suggestion)?;
                }
                if let Some(methods) = err.available_methods() {
                    map.serialize_entry("available_methods", methods)?;
                }
            }
        }
        map.serialize_entry("execution_time", &round_micros(self.execution_time))?;
        let memory =
            self.memory_usage_bytes.or_else(|| self.error().and_then(AgentRuntimeError::peak_memory_bytes));
        if let Some(bytes) = memory {
            map.serialize_entry("memory_usage", &format_bytes(bytes))?;
            map.serialize_entry("memory_usage_bytes", &bytes)?;
        }
        if let Err(err) = &self.outcome {
            if let Some(code) = err.return_code() {
                map.serialize_entry("return_code", &code)?;
            }
            if let Some(signal) = err.signal() {
                map.serialize_entry("signal", &signal)?;
            }
            if let AgentRuntimeError::Timeout { limit, .. } = err {
                map.serialize_entry("timeout", &limit.as_secs_f64())?;
            }
            if let Some(stderr) = err.stderr() {
                map.serialize_entry("stderr", stderr)?;
            }
        }
        if let Some(noise) = &self.stdout_noise {
            map.serialize_entry("stdout_noise", noise)?;
        }
        if !self.tool_calls.is_empty() {
            map.serialize_entry("tool_calls", &self.tool_calls)?;
        }
        map.end()
    }
}

fn round_micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn success_shape() {
        let r = ExecutionResponse {
            outcome: Ok(json!("hi")),
            execution_time: Duration::from_millis(21),
            memory_usage_bytes: Some(11_953_766),
            stdout_noise: None,
            tool_calls: Vec::new(),
        };
        assert_eq!(
            r.to_json(),
            json!({"result": "hi", "execution_time": 0.021, "memory_usage": "11.4MB", "memory_usage_bytes": 11_953_766})
        );
    }

    #[test]
    fn method_not_found_shape_matches_the_spec() {
        let r = ExecutionResponse::failed(
            AgentRuntimeError::MethodNotFound {
                method: "nope".into(),
                available: vec!["generate_code".into(), "explain_code".into()],
            },
            Duration::from_millis(1),
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"error":"Method 'nope' not found in agent interface","error_type":"MethodNotFoundError","suggestion":"Available methods: generate_code, explain_code","available_methods":["generate_code","explain_code"],"execution_time":0.001}"#
        );
    }

    #[test]
    fn execution_error_carries_its_details() {
        let r = ExecutionResponse {
            outcome: Err(AgentRuntimeError::Execution {
                message: "Agent was killed by signal 11 (SIGSEGV)".into(),
                return_code: None,
                signal: Some(11),
                stderr: Some("trace".into()),
            }),
            execution_time: Duration::ZERO,
            memory_usage_bytes: Some(1024 * 1024),
            stdout_noise: Some("noise".into()),
            tool_calls: Vec::new(),
        };
        let v = r.to_json();
        assert_eq!(v["signal"], 11);
        assert_eq!(v["stderr"], "trace");
        assert_eq!(v["stdout_noise"], "noise");
        assert_eq!(v["memory_usage"], "1.0MB");
        assert!(v.get("return_code").is_none());
    }
}
