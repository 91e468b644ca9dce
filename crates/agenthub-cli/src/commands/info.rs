//! `agenthub info AGENT`.

use std::fmt::Write;
use std::process::ExitCode;
use std::time::Instant;

use agenthub_core::Config;
use agenthub_runtime::{AgentInfo, ExecutionResponse, WarmDispatch};

use crate::render;

pub(crate) fn run(config: &Config, agent: &str, json: bool) -> ExitCode {
    let sandbox = agenthub_runtime::sandbox_summary(config);
    let started = Instant::now();
    match agenthub_runtime::agent_info(config, agent) {
        Ok(info) if json => {
            render::out(&format!("{}\n", serde_json::to_string(&info).unwrap_or_default()));
            ExitCode::SUCCESS
        }
        Ok(info) => {
            // Manifest text is untrusted: no escape sequences reach the terminal.
            render::out(&agenthub_core::escape_control(&human(&info, &sandbox)));
            ExitCode::SUCCESS
        }
        Err(e) => render::response(&ExecutionResponse::failed(e, started.elapsed()), json),
    }
}

fn human(info: &AgentInfo, sandbox: &str) -> String {
    let m = &info.manifest;
    let mut t = String::new();
    let _ = writeln!(t, "{} {} by {}", m.name, m.version, m.author);
    let _ = writeln!(t, "{}", m.description);
    let _ = writeln!(t, "\npath:        {}", info.path.display());
    if let Some(id) = &info.id {
        let _ = writeln!(t, "id:          {id}");
    }
    if let Some(py) = &m.python_version {
        let _ = writeln!(t, "python:      {}", py.as_str());
    }
    let env = match &info.environment {
        Some(e) => {
            let requirements = match (e.requirements.len(), e.requirements_source.as_str()) {
                (0, _) | (_, "none") => "no requirements".to_owned(),
                (1, source) => format!("1 requirement from {source}"),
                (n, source) => format!("{n} requirements from {source}"),
            };
            format!("built with {} (Python {}, {requirements})", e.backend, e.python_version)
        }
        None => "not built yet (the first `agenthub exec` builds it)".to_owned(),
    };
    let env = match info.environment_state {
        agenthub_runtime::EnvState::Ready | agenthub_runtime::EnvState::Missing => env,
        state => format!("{} ({env})", state.as_str()),
    };
    let _ = writeln!(t, "environment: {env}");
    if let Some(record) = &info.install {
        let reference = record.requested_ref.as_deref().map(|r| format!(" @{r}")).unwrap_or_default();
        let commit = record.commit_sha.as_deref().map(|c| format!(", commit {c}")).unwrap_or_default();
        let _ = writeln!(t, "source:      {}{reference}{commit}", record.github_url);
        let _ = writeln!(t, "installed:   {} as `{}`", record.installed_at, record.source);
    }
    let warm = match info.warm_dispatch {
        WarmDispatch::Main => "main()-replay (imported once, main() run per call)",
        WarmDispatch::Instance => "one instance of the agent's class (runtime.worker_dispatch: instance)",
        WarmDispatch::Oneshot => "one-shot (agent.py has no `if __name__ == \"__main__\": main()` to replay)",
    };
    let _ = writeln!(t, "warm:        {warm}");
    let permissions = &info.permissions;
    for (i, line) in permissions.summary.iter().enumerate() {
        let label = if i == 0 { "permissions:" } else { "" };
        let _ = writeln!(t, "{label:<12} {line}");
    }
    if !permissions.beyond_install.is_empty() {
        let id = info.id.as_deref().unwrap_or("AGENT");
        let _ = writeln!(
            t,
            "{:<12} agent.yaml now asks for more than when it was installed ({}): not allowed until you review it with `agenthub update {id}`",
            "",
            permissions.beyond_install.join("; ")
        );
    }
    let _ = writeln!(t, "sandbox:     {sandbox}");
    let _ = writeln!(t, "\nmethods:");
    for (name, spec) in &m.methods {
        let _ = writeln!(t, "  {}", spec.signature(name));
        let _ = writeln!(t, "      {}", spec.description);
    }
    if !info.examples.is_empty() {
        let _ = writeln!(t, "\nexamples:");
        for example in &info.examples {
            let _ = writeln!(t, "  {}", example.command);
        }
    }
    t
}
