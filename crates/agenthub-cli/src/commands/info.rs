//! `agenthub info AGENT`.

use std::fmt::Write;
use std::process::ExitCode;
use std::time::Instant;

use agenthub_core::{AgentRuntimeError, Config};
use agenthub_runtime::{AgentInfo, AgentRuntime, ExecutionResponse, WarmDispatch};

use crate::args::ToolArgs;
use crate::render;

pub(crate) fn run(config: &Config, agent: &str, json: bool, tools: &ToolArgs) -> ExitCode {
    let sandbox = agenthub_runtime::sandbox_summary(config);
    let started = Instant::now();
    let info = agenthub_runtime::agent_info(config, agent)
        .and_then(|info| Ok((tools_of(config, agent, tools)?, info)));
    match info {
        Ok((tools, info)) if json => {
            let mut value = serde_json::to_value(&info).unwrap_or_default();
            if let (Some(object), Some(tools)) = (value.as_object_mut(), tools) {
                object.insert("tool_context".to_owned(), tools);
            }
            render::out(&format!("{value}\n"));
            ExitCode::SUCCESS
        }
        Ok((tools, info)) => {
            let mut text = human(&info, &sandbox);
            if let Some(tools) = tools {
                text.push_str(&human_tools(&tools));
            }
            // Manifest text is untrusted: no escape sequences reach the terminal.
            render::out(&agenthub_core::escape_control(&text));
            ExitCode::SUCCESS
        }
        Err(e) => render::response(&ExecutionResponse::failed(e, started.elapsed()), json),
    }
}

/// The `tool_context` calls of `agent` would carry (the flags' tools, else config.yaml's);
/// `None` when it gets none.
fn tools_of(
    config: &Config,
    agent: &str,
    args: &ToolArgs,
) -> Result<Option<serde_json::Value>, AgentRuntimeError> {
    if args.tools.is_empty() && args.tools_from.is_empty() && config.tools.is_empty() {
        return Ok(None);
    }
    let runtime = std::sync::Arc::new(AgentRuntime::from_config(config.clone())?);
    let loaded = runtime.load_agent(agent)?;
    let setup = super::CallToolsSetup::new(&runtime, &loaded, args)?;
    Ok(setup.map(|s| s.set().context().clone()))
}

fn human_tools(context: &serde_json::Value) -> String {
    let mut t = String::new();
    let names = context["available_tools"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(t, "\ntools ({}):", names.len());
    for name in names.iter().filter_map(serde_json::Value::as_str) {
        let namespace = context["tool_namespaces"][name].as_str().unwrap_or_default();
        let params: Vec<String> = context["tool_parameters"][name]
            .as_object()
            .map(|p| {
                p.values()
                    .map(|v| {
                        let optional = if v["required"].as_bool() == Some(true) { "" } else { "?" };
                        format!(
                            "{}{optional}: {}",
                            v["name"].as_str().unwrap_or_default(),
                            v["type"].as_str().unwrap_or("any")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(t, "  {name}({}) [{namespace}]", params.join(", "));
        if let Some(description) = context["tool_descriptions"][name].as_str().filter(|d| !d.is_empty()) {
            let _ = writeln!(t, "      {description}");
        }
    }
    t
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
    if info.warm_dispatch != WarmDispatch::Oneshot {
        // runtime.mode: isolated; an agent served one-shot warm is one-shot there too.
        let _ = writeln!(
            t,
            "isolated:    a fork of the warm worker per call, unless the import leaves threads running: \
             then warm (decided when the worker starts; AGENTHUB_LOG_LEVEL=debug shows it)"
        );
    }
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
