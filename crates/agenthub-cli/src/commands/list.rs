//! `agenthub list`.

use std::fmt::Write;
use std::process::ExitCode;

use agenthub_core::Config;

use crate::render;

pub(crate) fn run(config: &Config, json: bool) -> ExitCode {
    let agents = agenthub_runtime::list_agents(config);
    if json {
        render::out(&format!("{}\n", serde_json::to_string(&agents).unwrap_or_default()));
        return ExitCode::SUCCESS;
    }
    let root = config.agents_root();
    if agents.is_empty() {
        render::err(&format!(
            "No agents installed under {root}.\nInstall one as {root}/<namespace>/<name>/, or run one by path: \
             agenthub exec ./my-agent METHOD\n",
            root = root.display()
        ));
        return ExitCode::SUCCESS;
    }
    let width = agents.iter().map(|a| a.id.len()).max().unwrap_or(0);
    let mut text = String::new();
    for a in &agents {
        let detail = match &a.error {
            Some(e) => format!("invalid manifest: {}", e.lines().next().unwrap_or_default()),
            None => format!("{}  {}", a.version.as_deref().unwrap_or("?"), a.methods.join(", ")),
        };
        let _ = writeln!(text, "{:width$}  {detail}", a.id);
    }
    render::out(&agenthub_core::escape_control(&text));
    ExitCode::SUCCESS
}
