//! Printing responses: exact JSON for machines, a short summary for people.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;

use agenthub_runtime::ExecutionResponse;
use serde_json::Value as Json;

/// Lines of agent stderr shown in a human error summary.
const STDERR_LINES: usize = 20;

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn out(text: &str) {
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// Writes `value` as one line of JSON to stdout, streamed (a listing of 10,000 agents is
/// megabytes); a closed pipe is not an error.
pub(crate) fn out_json(value: &impl serde::Serialize) {
    let mut stdout = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let _ = serde_json::to_writer(&mut stdout, value)
        .map_err(io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
}

/// Writes `text` to stderr.
pub(crate) fn err(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// Prints a response and returns the exit code of SPEC §7.
pub(crate) fn response(response: &ExecutionResponse, json: bool) -> ExitCode {
    if json {
        out(&format!("{}\n", serde_json::to_string(response).unwrap_or_default()));
    } else {
        human(response);
    }
    if response.is_success() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn human(response: &ExecutionResponse) {
    if let Some(noise) = &response.stdout_noise {
        let warning =
            format!("warning: the agent printed text before its JSON response:\n{}\n", indent(noise));
        err(&agenthub_core::escape_control(&warning));
    }
    if !response.tool_calls.is_empty() {
        // The tools it called, one line (names are the tool set's, and safe to print).
        let calls: Vec<String> = response
            .tool_calls
            .iter()
            .take(20)
            .map(|c| format!("{} ({:.3} s, {})", c.name, c.duration, c.outcome))
            .collect();
        let more = response.tool_calls.len().saturating_sub(calls.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        err(&agenthub_core::escape_control(&format!("tools called: {}{more}\n", calls.join(", "))));
    }
    match &response.outcome {
        Ok(Json::String(text)) => out(&format!("{text}\n")),
        Ok(value) => out(&format!("{}\n", serde_json::to_string_pretty(value).unwrap_or_default())),
        Err(error) => {
            let mut text = format!("error[{}]: {error}\n", error.error_type());
            if let Some(stderr) = error.stderr() {
                let lines: Vec<&str> = stderr.lines().collect();
                let tail = &lines[lines.len().saturating_sub(STDERR_LINES)..];
                let _ = writeln!(
                    text,
                    "  stderr (last {} lines):
{}",
                    tail.len(),
                    indent(&tail.join(
                        "
"
                    ))
                );
            }
            if let Some(suggestion) = error.suggestion() {
                let _ = writeln!(text, "  help: {suggestion}");
            }
            // Messages quote manifests and agent output: no escape sequences reach the terminal.
            err(&agenthub_core::escape_control(&text));
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}
