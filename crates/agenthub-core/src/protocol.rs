//! The one-shot wire protocol (SPEC §4): the request an agent gets and how its stdout is read.

use serde::Serialize;
use serde_json::Value as Json;

use crate::params::Params;

/// The request passed to `agent.py` as its one argument.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionRequest {
    /// The method to call.
    pub method: String,
    /// Its parameters, after validation and default filling.
    pub parameters: Params,
}

impl ExecutionRequest {
    /// The request as the JSON text passed on the command line.
    pub fn to_json(&self) -> String {
        // Serialising a map of JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What the agent answered.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentReply {
    /// `{"result": ...}`.
    Result(Json),
    /// `{"error": "..."}`; a non-string error value is kept as its JSON text.
    Error(String),
}

/// An agent's stdout, read by the rules of SPEC §4.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOutput {
    /// The reply.
    pub reply: AgentReply,
    /// Text printed before the JSON line, kept as a warning.
    pub noise: Option<String>,
}

/// Why stdout could not be read as a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    /// Nothing on stdout.
    #[error("the agent printed nothing on stdout")]
    Empty,
    /// Neither the whole output nor its last line is JSON.
    #[error("stdout is not JSON (last line: {last_line:?})")]
    NotJson {
        /// The last non-empty line, shortened.
        last_line: String,
    },
    /// JSON, but not an object.
    #[error("stdout is a JSON {kind}, not an object")]
    NotAnObject {
        /// `array`, `string`, …
        kind: &'static str,
    },
    /// An object with neither `result` nor `error`.
    #[error("the JSON object on stdout has neither `result` nor `error` (keys: {keys})")]
    NoReplyKey {
        /// The keys it has.
        keys: String,
    },
}

const EXCERPT: usize = 200;

/// Reads an agent's stdout: the whole of it as one JSON object, or else the last
/// non-empty line as one, keeping what came before as noise.
pub fn read_agent_output(stdout: &[u8]) -> Result<AgentOutput, ProtocolViolation> {
    let trimmed = stdout.trim_ascii();
    if trimmed.is_empty() {
        return Err(ProtocolViolation::Empty);
    }
    if let Ok(value) = serde_json::from_slice::<Json>(trimmed) {
        return reply_from(value).map(|reply| AgentOutput { reply, noise: None });
    }
    let (before, last) = match trimmed.iter().rposition(|&b| b == b'\n') {
        Some(i) => (&trimmed[..i], trimmed[i + 1..].trim_ascii()),
        None => (&b""[..], trimmed),
    };
    if let Ok(value) = serde_json::from_slice::<Json>(last) {
        let noise = String::from_utf8_lossy(before.trim_ascii()).into_owned();
        reply_from(value).map(|reply| AgentOutput { reply, noise: (!noise.is_empty()).then_some(noise) })
    } else {
        let text = String::from_utf8_lossy(last);
        let last_line = text.chars().take(EXCERPT).collect();
        Err(ProtocolViolation::NotJson { last_line })
    }
}

fn reply_from(value: Json) -> Result<AgentReply, ProtocolViolation> {
    let Json::Object(mut map) = value else {
        let kind = match value {
            Json::Array(_) => "array",
            Json::String(_) => "string",
            Json::Number(_) => "number",
            Json::Bool(_) => "boolean",
            _ => "null",
        };
        return Err(ProtocolViolation::NotAnObject { kind });
    };
    match map.remove("error") {
        Some(Json::Null) | None => {}
        Some(Json::String(message)) => return Ok(AgentReply::Error(message)),
        Some(other) => return Ok(AgentReply::Error(other.to_string())),
    }
    if let Some(result) = map.remove("result") {
        Ok(AgentReply::Result(result))
    } else {
        let keys: Vec<&str> = map.keys().map(String::as_str).take(10).collect();
        Err(ProtocolViolation::NoReplyKey { keys: keys.join(", ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_stdout_as_one_object() {
        let out = read_agent_output(b"{\n  \"result\": [1, 2]\n}\n").unwrap();
        assert_eq!(out.reply, AgentReply::Result(json!([1, 2])));
        assert_eq!(out.noise, None);
    }

    #[test]
    fn last_line_with_noise_kept() {
        let out = read_agent_output(b"loading...\nwarming up\n{\"result\": \"ok\"}\n").unwrap();
        assert_eq!(out.reply, AgentReply::Result(json!("ok")));
        assert_eq!(out.noise.as_deref(), Some("loading...\nwarming up"));
    }

    #[test]
    fn error_wins_and_is_kept_verbatim() {
        let out = read_agent_output(br#"{"error": "boom: bad input"}"#).unwrap();
        assert_eq!(out.reply, AgentReply::Error("boom: bad input".into()));
        let out = read_agent_output(br#"{"error": {"code": 3}, "result": 1}"#).unwrap();
        assert_eq!(out.reply, AgentReply::Error(r#"{"code":3}"#.into()));
        let out = read_agent_output(br#"{"error": null, "result": 1}"#).unwrap();
        assert_eq!(out.reply, AgentReply::Result(json!(1)));
    }

    #[test]
    fn violations_are_typed() {
        assert_eq!(read_agent_output(b"  \n"), Err(ProtocolViolation::Empty));
        assert!(matches!(read_agent_output(b"this is not json"), Err(ProtocolViolation::NotJson { .. })));
        assert_eq!(read_agent_output(b"[1,2,3]"), Err(ProtocolViolation::NotAnObject { kind: "array" }));
        assert!(matches!(read_agent_output(br#"{"foo": 1}"#), Err(ProtocolViolation::NoReplyKey { .. })));
        assert!(matches!(read_agent_output(b"\xff\xfe\n\xff"), Err(ProtocolViolation::NotJson { .. })));
    }

    #[test]
    fn request_json_shape() {
        let mut parameters = Params::new();
        parameters.insert("name".into(), json!("W"));
        let req = ExecutionRequest { method: "greet".into(), parameters };
        assert_eq!(req.to_json(), r#"{"method":"greet","parameters":{"name":"W"}}"#);
    }
}
