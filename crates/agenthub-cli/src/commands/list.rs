//! `agenthub list`.

use std::fmt::Write;
use std::process::ExitCode;

use agenthub_core::Config;
use agenthub_runtime::AgentSummary;

use crate::render;

pub(crate) fn run(config: &Config, json: bool) -> ExitCode {
    let agents = agenthub_runtime::list_agents(config);
    if json {
        render::out_json(&agents);
        return ExitCode::SUCCESS;
    }
    let root = config.agents_root();
    if agents.is_empty() {
        render::err(&format!(
            "No agents installed under {root}.\nInstall one with `agenthub install ./my-agent` (or \
             `agenthub install owner/name` from the registry), or run one by path: \
             `agenthub exec ./my-agent METHOD`\n",
            root = root.display()
        ));
        return ExitCode::SUCCESS;
    }
    render::out(&agenthub_core::escape_control(&table(&agents)));
    ExitCode::SUCCESS
}

/// `AGENT  VERSION  ENV  SOURCE  METHODS`, columns aligned.
fn table(agents: &[AgentSummary]) -> String {
    let rows: Vec<[String; 5]> = agents
        .iter()
        .map(|a| {
            let source = match (&a.source, &a.reference) {
                (Some(s), Some(r)) if !s.ends_with(&format!("@{r}")) => format!("{s} @{r}"),
                (Some(s), _) => s.clone(),
                (None, _) => "-".to_owned(),
            };
            let source = match &a.commit {
                Some(c) => format!("{source} ({})", c.get(..7).unwrap_or(c)),
                None => source,
            };
            match &a.error {
                Some(e) => [
                    a.id.clone(),
                    "?".to_owned(),
                    "-".to_owned(),
                    source,
                    format!("invalid manifest: {}", e.lines().next().unwrap_or_default()),
                ],
                None => [
                    a.id.clone(),
                    a.version.clone().unwrap_or_else(|| "?".to_owned()),
                    a.environment.map_or("-", |s| s.as_str()).to_owned(),
                    source,
                    a.methods.join(", "),
                ],
            }
        })
        .collect();
    let header = ["AGENT", "VERSION", "ENV", "SOURCE", "METHODS"].map(str::to_owned);
    let mut widths = [0; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter().zip(row) {
            let _ = write!(text, "{cell:w$}  ");
        }
        let _ = writeln!(text, "{}", row[4]);
    }
    text
}
