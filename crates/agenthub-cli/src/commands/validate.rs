//! `agenthub validate [PATH|AGENT...] [--json]`.

use std::fmt::Write;
use std::process::ExitCode;

use agenthub_core::Config;
use agenthub_runtime::Validation;

use crate::args::ValidateArgs;
use crate::render;

pub(crate) fn run(config: &Config, args: &ValidateArgs) -> ExitCode {
    let all = args.agents.is_empty();
    let results: Vec<Validation> = if all {
        agenthub_runtime::validate_installed(config)
    } else {
        args.agents.iter().map(|agent| agenthub_runtime::validate_agent(config, agent)).collect()
    };
    if args.json {
        render::out(&format!("{}\n", serde_json::to_string(&results).unwrap_or_default()));
    } else if all && results.is_empty() {
        render::err(&agenthub_core::escape_control(&format!(
            "No agents installed under {}; name one to validate: agenthub validate ./my-agent\n",
            config.agents_root().display()
        )));
    } else {
        let mut text = String::new();
        for v in &results {
            let _ = writeln!(text, "{} {}", if v.valid { "ok " } else { "invalid" }, v.agent);
            for problem in &v.problems {
                let _ = writeln!(text, "  - {problem}");
            }
        }
        // Manifests and file names are untrusted: no escape sequences reach the terminal.
        render::out(&agenthub_core::escape_control(&text));
    }
    if results.iter().all(|v| v.valid) { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
