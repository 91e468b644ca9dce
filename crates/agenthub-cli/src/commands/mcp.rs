//! `agenthub mcp serve AGENT… [--all]` and `agenthub mcp config AGENT…`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agenthub_core::{AgentRuntimeError, Config};
use agenthub_mcp::{McpServer, Options};
use agenthub_runtime::{AgentRuntime, LoadedAgent, ProcessBackendKind};

use crate::args::{McpConfigArgs, McpServeArgs};
use crate::render;

pub(crate) fn serve(mut config: Config, args: &McpServeArgs) -> ExitCode {
    if args.workers == 0 || args.workers > 1024 {
        render::err("error: --workers must be from 1 to 1024\n");
        return ExitCode::from(2);
    }
    let Some(progress_interval) =
        Duration::try_from_secs_f64(args.progress_interval).ok().filter(|d| *d >= Duration::from_millis(10))
    else {
        render::err("error: --progress-interval must be at least 0.01 seconds\n");
        return ExitCode::from(2);
    };
    let token = match http_token(args) {
        Ok(token) => token,
        Err(code) => return code,
    };
    if let Some(timeout) = args.timeout {
        config.runtime.max_execution_time = agenthub_core::Seconds::new(timeout);
    }
    config.runtime.mode = args.mode;
    config.runtime.workers_per_agent = args.workers;
    args.sandbox.apply(&mut config);
    if let Err(e) = config.validate() {
        return super::usage_error(&e);
    }
    // Workers are spawned by the runtime's spawner thread and one-shot calls by the thread
    // that waits for them, both alive as long as what they spawned: tie the agents' lives to
    // this process.
    config.runtime.kill_agents_with_runtime = true;
    let agents = match load_agents(&config, &args.agents, args.all) {
        Ok(agents) => agents,
        Err(code) => return code,
    };
    let runtime = match AgentRuntime::with_backends(config, None, ProcessBackendKind::Std) {
        Ok(runtime) => Arc::new(runtime.with_caller(agenthub_core::Caller::Mcp)),
        Err(e) => return failed(&e, 1),
    };
    runtime.cleanup_processes();
    let tools = match configured_tools(&runtime, &agents) {
        Ok(tools) => tools,
        Err(e) => return failed(&e, 1),
    };
    let server = match McpServer::new(
        Arc::clone(&runtime),
        agents,
        Options { progress_interval, grants: args.sandbox.grants(), tools },
    ) {
        Ok(server) => server,
        Err(e) => {
            render::err(&format!("error: {e}\n"));
            return ExitCode::from(2);
        }
    };
    let served = if let Some(addr) = args.http {
        tracing::info!(tools = server.tools().len(), %addr, "serving MCP over HTTP");
        let options = agenthub_mcp::HttpOptions { token, ..agenthub_mcp::HttpOptions::default() };
        let bound = |addr: std::net::SocketAddr| {
            render::err(&format!(
                "agenthub: serving MCP on http://{addr}/mcp (Streamable HTTP) and /sse (legacy SSE)\n"
            ));
        };
        agenthub_mcp::serve_http_blocking(&server, addr, options, bound, || {
            crate::signals::received().is_some()
        })
    } else {
        tracing::info!(tools = server.tools().len(), "serving MCP on stdin/stdout");
        agenthub_mcp::serve_stdio(server)
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            render::err(&agenthub_core::escape_control(&format!("error: {e}\n")));
            ExitCode::from(1)
        }
    }
}

/// What gives each served agent the tools config.yaml gives it (`tools:`); `None` when no
/// agent has any. The servers and agents of every assignment are made ready here, so a
/// broken one is an error at start, not at the first call.
fn configured_tools(
    runtime: &Arc<AgentRuntime>,
    agents: &[LoadedAgent],
) -> Result<Option<agenthub_mcp::ToolsFor>, AgentRuntimeError> {
    let host = agenthub_tools::ToolHost::new(
        Arc::clone(runtime),
        agenthub_tools::HostOptions::from_config(runtime.config()),
    );
    let mut sets = std::collections::HashMap::new();
    for agent in agents {
        let assignment = host.configured(agent);
        if !assignment.is_empty() {
            sets.insert(agent.location.dir.clone(), host.tool_set(&assignment)?);
        }
    }
    if sets.is_empty() {
        return Ok(None);
    }
    let host = Arc::new(host);
    Ok(Some(agenthub_mcp::ToolsFor(Arc::new(move |agent: &LoadedAgent| {
        sets.get(&agent.location.dir).map(|set| host.call_tools(set, agent))
    }))))
}

pub(crate) fn config(config: &Config, args: &McpConfigArgs) -> ExitCode {
    let agents = match load_agents(config, &args.agents, args.all) {
        Ok(agents) => agents,
        Err(code) => return code,
    };
    // What the client passes back: ids as they are, paths made absolute (the client starts
    // the server from a directory of its own).
    let names: Vec<String> = if args.all {
        vec!["--all".to_owned()]
    } else {
        agents
            .iter()
            .map(|a| match &a.location.id {
                Some(id) => id.to_string(),
                None => a.location.dir.display().to_string(),
            })
            .collect()
    };
    let binary = std::env::current_exe().and_then(|p| p.canonicalize());
    let binary = match binary {
        Ok(binary) => binary,
        Err(e) => {
            render::err(&format!("error: cannot find the path of the agenthub binary: {e}\n"));
            return ExitCode::from(1);
        }
    };
    let shared: Vec<Arc<LoadedAgent>> = agents.into_iter().map(Arc::new).collect();
    let name = args.name.clone().unwrap_or_else(|| agenthub_mcp::server_name(&shared));
    let snippet = agenthub_mcp::client_config(&name, &binary, &names, &config.home);
    render::out(&format!("{}\n", serde_json::to_string_pretty(&snippet).unwrap_or_default()));
    ExitCode::SUCCESS
}

/// The named agents, or every installed one whose manifest loads (`--all`).
fn load_agents(config: &Config, names: &[String], all: bool) -> Result<Vec<LoadedAgent>, ExitCode> {
    let mut agents = Vec::new();
    if all {
        for summary in agenthub_runtime::list_agents(config) {
            if let Some(error) = &summary.error {
                render::err(&agenthub_core::escape_control(&format!(
                    "warning: skipping {}: {error}\n",
                    summary.id
                )));
                continue;
            }
            match agenthub_runtime::load_agent(config, &summary.id) {
                Ok(agent) => agents.push(agent),
                Err(e) => render::err(&agenthub_core::escape_control(&format!(
                    "warning: skipping {}: {e}\n",
                    summary.id
                ))),
            }
        }
        if agents.is_empty() {
            render::err(&format!(
                "error: no installed agent loads (agents root: {})\n",
                config.agents_root().display()
            ));
            return Err(ExitCode::from(2));
        }
        return Ok(agents);
    }
    for name in names {
        match agenthub_runtime::load_agent(config, name) {
            Ok(agent) => agents.push(agent),
            Err(e) => return Err(failed(&e, 2)),
        }
    }
    Ok(agents)
}

/// The longest token file read.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// The `--token-file`'s token, if any; exit 2 for a non-loopback `--http` address without one,
/// or a token file that cannot be used.
fn http_token(args: &McpServeArgs) -> Result<Option<String>, ExitCode> {
    let usage = |message: String| {
        render::err(&agenthub_core::escape_control(&format!("error: {message}\n")));
        ExitCode::from(2)
    };
    let Some(addr) = args.http else { return Ok(None) };
    let Some(path) = &args.token_file else {
        if addr.ip().is_loopback() {
            return Ok(None);
        }
        return Err(usage(format!(
            "--http {addr} is not a loopback address: pass --token-file FILE (a file holding the token \
             clients must send), or listen on 127.0.0.1"
        )));
    };
    read_token(path).map(Some).map_err(|why| usage(format!("--token-file {}: {why}", path.display())))
}

/// The token in `path`: a regular file (opened without blocking, so a FIFO cannot hang us) of
/// at most [`MAX_TOKEN_FILE_BYTES`], trimmed; not empty, visible ASCII only (it goes in a header).
fn read_token(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| e.to_string())?;
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("not a regular file".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(format!("longer than {MAX_TOKEN_FILE_BYTES} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let token = text.trim();
    if token.is_empty() {
        return Err("the file is empty".to_owned());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII characters only (no spaces)".to_owned());
    }
    Ok(token.to_owned())
}

/// Prints an error with its suggestion; returns `code`.
fn failed(e: &AgentRuntimeError, code: u8) -> ExitCode {
    let help = e.suggestion().map(|s| format!("  help: {s}\n")).unwrap_or_default();
    render::err(&agenthub_core::escape_control(&format!("error[{}]: {e}\n{help}", e.error_type())));
    ExitCode::from(code)
}
