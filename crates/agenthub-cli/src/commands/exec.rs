//! `agenthub exec AGENT METHOD [PARAMS]`.

use std::process::ExitCode;
use std::time::Instant;

use agenthub_core::{AgentRuntimeError, Config, parse_cli_params};
use agenthub_runtime::{AgentRuntime, ExecutionResponse, ProcessBackendKind};

use crate::args::ExecArgs;
use crate::render;

pub(crate) fn run(mut config: Config, args: &ExecArgs) -> ExitCode {
    let started = Instant::now();
    if let Some(timeout) = args.timeout {
        config.runtime.max_execution_time = timeout;
    }
    if let Some(mb) = args.max_memory {
        config.runtime.max_memory_usage = mb;
    }
    if args.env_clear || !args.env_allow.is_empty() {
        config.runtime.env_clear = true;
        config.runtime.env_allow.extend(args.env_allow.iter().cloned());
    }
    if let Err(e) = config.validate() {
        return super::usage_error(&e);
    }
    let response = execute(config, args).unwrap_or_else(|e| ExecutionResponse::failed(e, started.elapsed()));
    render::response(&response, args.json)
}

fn execute(mut config: Config, args: &ExecArgs) -> Result<ExecutionResponse, AgentRuntimeError> {
    // One thread spawns and outlives every agent here, so tie the agents' lives to it.
    config.runtime.kill_agents_with_runtime = true;
    let runtime = AgentRuntime::with_backends(config, args.env_backend, ProcessBackendKind::Std)?;
    // Reap what a runtime that was killed outright left behind.
    runtime.cleanup_processes();
    let agent = runtime.load_agent(&args.agent)?;
    let spec = agent.manifest.method(&args.method);
    let params = parse_cli_params(&args.method, spec, &args.params).map_err(|e| {
        AgentRuntimeError::InvalidParameters {
            method: args.method.clone(),
            problems: vec![e.to_string()],
            signature: spec.map_or_else(|| args.method.clone(), |s| s.signature(&args.method)),
        }
    })?;
    Ok(runtime.execute_blocking(&agent, &args.method, params))
}
