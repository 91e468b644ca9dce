//! One call as run history stores it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest parameters or result stored (`history.record_payloads`); longer ones are cut.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Largest stderr tail stored.
pub const MAX_STDERR_BYTES: usize = 8 * 1024;

/// Where a call's time went. `None` is a step the call did not take (no slot to wait for,
/// an environment found ready by an earlier warm call, a worker already running).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    /// From the call to its response.
    #[serde(rename = "total_ms", serialize_with = "ms", deserialize_with = "from_ms")]
    pub total: Duration,
    /// Waiting for one of `max_concurrency` slots.
    #[serde(rename = "slot_ms", serialize_with = "opt_ms", deserialize_with = "from_opt_ms")]
    pub slot: Option<Duration>,
    /// Checking (or building) the agent's environment.
    #[serde(rename = "environment_ms", serialize_with = "opt_ms", deserialize_with = "from_opt_ms")]
    pub environment: Option<Duration>,
    /// Starting the warm worker (or zygote) the call started for itself (a worker started
    /// ahead of calls, which the call may have waited for, is not counted).
    #[serde(rename = "startup_ms", serialize_with = "opt_ms", deserialize_with = "from_opt_ms")]
    pub startup: Option<Duration>,
    /// The agent's process answering: a one-shot process from spawn to exit (its
    /// interpreter's start-up included), a worker from request to answer.
    #[serde(rename = "call_ms", serialize_with = "opt_ms", deserialize_with = "from_opt_ms")]
    pub call: Option<Duration>,
    /// The tool calls the agent made, added up.
    #[serde(rename = "tools_ms", serialize_with = "ms", deserialize_with = "from_ms")]
    pub tools: Duration,
}

/// One call, as `agenthub runs show` prints it (and as the journal holds it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The call's id (16 hex digits).
    pub id: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// The agent: its id when installed, else its directory.
    pub agent: String,
    /// The agent directory (written as text, any bytes that are not UTF-8 replaced).
    #[serde(serialize_with = "lossy_path")]
    pub agent_dir: PathBuf,
    /// The id the agent is installed as, when it is: the writer then reads the commit from
    /// its install record (if that record is the home's own). Not stored.
    #[serde(skip)]
    pub installed_as: Option<String>,
    /// The manifest's `version`.
    pub version: Option<String>,
    /// The commit an installed agent was checked out at (from its install record).
    pub commit: Option<String>,
    /// The method called.
    pub method: String,
    /// How it ran: `oneshot`, `warm`, `isolated` or `ray`.
    pub mode: String,
    /// `null` for a result, else the error type (SPEC §5).
    pub error_type: Option<String>,
    /// The error's message.
    pub error_message: Option<String>,
    /// Where the time went.
    pub durations: Durations,
    /// Whether the call built the agent's environment.
    pub environment_built: bool,
    /// Peak resident memory of the agent's process tree, in bytes.
    pub memory_bytes: Option<u64>,
    /// The agent process's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the agent process, when one did.
    pub signal: Option<i32>,
    /// The end of the agent's stderr (at most [`MAX_STDERR_BYTES`]).
    pub stderr_tail: Option<String>,
    /// `cli`, `mcp`, `library`, `python` or `tool`.
    pub caller: String,
    /// For a tool call: the id of the call whose agent made it.
    pub parent_id: Option<String>,
    /// How many tool calls the agent made.
    pub tool_calls: u32,
    /// The parameters as JSON (only with `history.record_payloads`), cut at
    /// [`MAX_PAYLOAD_BYTES`].
    pub params: Option<String>,
    /// The result as JSON (only with `history.record_payloads`), cut likewise.
    pub result: Option<String>,
}

impl RunRecord {
    /// Whether the call returned a result.
    pub fn is_success(&self) -> bool {
        self.error_type.is_none()
    }

    /// Roughly the bytes it holds (what the writer's queue counts).
    pub fn approx_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        256 + self.id.len()
            + self.agent.len()
            + self.agent_dir.as_os_str().len()
            + self.method.len()
            + self.mode.len()
            + self.caller.len()
            + text(&self.version)
            + text(&self.commit)
            + text(&self.error_type)
            + text(&self.error_message)
            + text(&self.stderr_tail)
            + text(&self.parent_id)
            + text(&self.params)
            + text(&self.result)
    }
}

/// `text` cut to at most `max` bytes on a character boundary, keeping its start (`tail`
/// false) or its end (`tail` true), with `…` where it was cut.
pub fn cap_text(text: &str, max: usize, tail: bool) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    if tail {
        let mut at = text.len() - max;
        while !text.is_char_boundary(at) {
            at += 1;
        }
        format!("…{}", &text[at..])
    } else {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        format!("{}…", &text[..at])
    }
}

fn lossy_path<S: serde::Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(to_ms(*d))
}

#[allow(clippy::ref_option, reason = "serde's serialize_with passes a reference to the field")]
fn opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&to_ms(*d)),
        None => s.serialize_none(),
    }
}

fn from_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(duration_of(f64::deserialize(d)?))
}

fn from_opt_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.map(duration_of))
}

/// `ms` milliseconds; a negative, infinite or NaN figure (never written) reads as zero.
fn duration_of(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1e3).unwrap_or_default()
}

/// Milliseconds, to the microsecond.
pub(crate) fn to_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_on_character_boundaries() {
        assert_eq!(cap_text("héllo", 10, false), "héllo");
        assert_eq!(cap_text("héllo", 2, false), "h…");
        assert_eq!(cap_text("héllo", 4, true), "…llo");
        assert_eq!(cap_text("abcdef", 3, true), "…def");
    }
}
