//! `agenthub env …`.

use std::process::ExitCode;
use std::time::Instant;

use agenthub_core::{AgentRuntimeError, Config};
use agenthub_runtime::{AgentRuntime, ExecutionResponse, ProcessBackendKind, ReadyEnvironment};

use crate::args::EnvCommand;
use crate::render;

pub(crate) fn run(mut config: Config, command: EnvCommand) -> ExitCode {
    // One thread spawns and outlives every installer here: they die with it.
    config.runtime.kill_agents_with_runtime = true;
    let EnvCommand::Rebuild { agent, env_backend } = command;
    let started = Instant::now();
    let rebuilt = || -> Result<ReadyEnvironment, AgentRuntimeError> {
        let runtime = AgentRuntime::with_backends(config, env_backend, ProcessBackendKind::Std)?;
        pollster::block_on(runtime.rebuild_environment(&agent))
    };
    match rebuilt() {
        Ok(env) => {
            render::out(&format!(
                "rebuilt {} in {:.1}s\n",
                env.venv.display(),
                started.elapsed().as_secs_f64()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => render::response(&ExecutionResponse::failed(e, started.elapsed()), false),
    }
}
