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
    /// The call's tools in the original's shape (SPEC §9); absent when none are assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_context: Option<Json>,
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
    /// Bare `NaN`, `Infinity` or `-Infinity`: not JSON, but what Python's `json.dumps`
    /// writes for non-finite floats by default.
    #[error(
        "stdout has NaN or Infinity, which JSON does not allow (Python's json.dumps writes them by default): use json.dumps(..., allow_nan=False) to find them, and convert them to null or strings"
    )]
    NonFiniteNumber,
    /// JSON nested deeper than [`MAX_JSON_DEPTH`] levels.
    #[error("stdout JSON is nested deeper than {MAX_JSON_DEPTH} levels (the reply object included)")]
    TooDeep,
    /// An object with neither `result` nor `error`.
    #[error("the JSON object on stdout has neither `result` nor `error` (keys: {keys})")]
    NoReplyKey {
        /// The keys it has.
        keys: String,
    },
}

const EXCERPT: usize = 200;

/// The deepest JSON read from an agent, counting the reply object itself: the nesting
/// `serde_json` accepts (its recursion limit is 128), as for the parameters sent in.
pub const MAX_JSON_DEPTH: usize = 127;

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
        let looks_like_json = |text: &[u8]| text.first().is_some_and(|b| matches!(b, b'{' | b'['));
        for candidate in [trimmed, last] {
            if looks_like_json(candidate) {
                let scan = scan_json(candidate);
                if scan.max_depth > MAX_JSON_DEPTH {
                    return Err(ProtocolViolation::TooDeep);
                }
                if scan.non_finite {
                    return Err(ProtocolViolation::NonFiniteNumber);
                }
            }
        }
        let text = String::from_utf8_lossy(last);
        let last_line = text.chars().take(EXCERPT).collect();
        Err(ProtocolViolation::NotJson { last_line })
    }
}

/// What a linear pass over text that failed to parse as JSON finds outside strings.
struct JsonScan {
    max_depth: usize,
    non_finite: bool,
}

fn scan_json(text: &[u8]) -> JsonScan {
    let mut scan = JsonScan { max_depth: 0, non_finite: false };
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                scan.max_depth = scan.max_depth.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'N' if text[i..].starts_with(b"NaN") => scan.non_finite = true,
            b'I' if text[i..].starts_with(b"Infinity") => scan.non_finite = true,
            _ => {}
        }
    }
    scan
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
    fn non_finite_numbers_are_named_with_the_fix() {
        for out in [
            &b"{\"result\": NaN}"[..],
            b"{\"result\": [1, Infinity]}",
            b"log line\n{\"result\": -Infinity}\n",
            b"{\n  \"result\": {\"x\": NaN}\n}\n",
        ] {
            let err = read_agent_output(out).unwrap_err();
            assert_eq!(err, ProtocolViolation::NonFiniteNumber, "{}", String::from_utf8_lossy(out));
            let msg = err.to_string();
            assert!(msg.contains("NaN or Infinity") && msg.contains("allow_nan=False"), "{msg}");
        }
        // In strings they are text, and a broken line is still just not JSON.
        let ok = read_agent_output(b"{\"result\": \"NaN Infinity\"}").unwrap();
        assert_eq!(ok.reply, AgentReply::Result(json!("NaN Infinity")));
        assert!(matches!(read_agent_output(b"{\"result\": \"NaN"), Err(ProtocolViolation::NotJson { .. })));
        assert!(matches!(read_agent_output(b"loss: NaN"), Err(ProtocolViolation::NotJson { .. })));
    }

    #[test]
    fn output_nested_past_the_limit_says_so() {
        let nested =
            |depth: usize| format!("{{\"result\": {}{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1));
        assert!(read_agent_output(nested(MAX_JSON_DEPTH).as_bytes()).is_ok());
        let err = read_agent_output(nested(MAX_JSON_DEPTH + 1).as_bytes()).unwrap_err();
        assert_eq!(err, ProtocolViolation::TooDeep);
        assert!(err.to_string().contains("nested deeper than 127 levels"), "{err}");
        let noisy = format!("[[[ log ]]]\n{}", nested(MAX_JSON_DEPTH + 1));
        assert_eq!(read_agent_output(noisy.as_bytes()), Err(ProtocolViolation::TooDeep));
    }

    #[test]
    fn big_integers_in_results_stay_exact() {
        let out =
            read_agent_output(b"{\"result\": [12345678901234567890123, -98765432109876543210987654321]}")
                .unwrap();
        let AgentReply::Result(v) = out.reply else { panic!() };
        assert_eq!(v.to_string(), "[12345678901234567890123,-98765432109876543210987654321]");
    }

    #[test]
    fn request_json_shape() {
        let mut parameters = Params::new();
        parameters.insert("name".into(), json!("W"));
        let req = ExecutionRequest { method: "greet".into(), parameters, tool_context: None };
        assert_eq!(req.to_json(), r#"{"method":"greet","parameters":{"name":"W"}}"#);
    }
}
