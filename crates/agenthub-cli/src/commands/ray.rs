//! `agenthub ray status`.

use std::process::ExitCode;

use agenthub_core::{Config, ExecutionTarget};
use agenthub_runtime::{AgentRuntime, ProcessBackendKind};

use crate::args::RayCommand;
use crate::render;

pub(crate) fn run(mut config: Config, cmd: RayCommand) -> ExitCode {
    let RayCommand::Status { ray_address, json } = cmd;
    if let Some(address) = ray_address {
        config.ray.address = Some(address);
    }
    config.runtime.target = ExecutionTarget::Ray;
    let status = AgentRuntime::with_backends(config, None, ProcessBackendKind::Std)
        .and_then(|runtime| runtime.ray_status());
    match status {
        Ok(status) if json => {
            render::out(&format!("{}\n", serde_json::to_string(&status).unwrap_or_default()));
            ExitCode::SUCCESS
        }
        Ok(status) => {
            let nodes = status.nodes.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
            render::out(&agenthub_core::escape_control(&format!(
                "cluster:  {} ({nodes} live node{})\nray:      {} here (driver: {}, Python {}), {} on the cluster\n\
                 pools:    {}\n",
                status.address.as_deref().unwrap_or("unknown"),
                if status.nodes == Some(1) { "" } else { "s" },
                status.ray_version,
                status.driver_python.display(),
                status.python,
                status.cluster_ray_version.as_deref().unwrap_or("unknown"),
                if status.pools.is_empty() {
                    "none (pools live as long as the runtime that made them)".to_owned()
                } else {
                    status
                        .pools
                        .iter()
                        .map(|p| {
                            format!(
                                "{} ({} actors, {} in flight)",
                                p.agent_dir.display(),
                                p.actors,
                                p.in_flight
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            )));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let response = agenthub_runtime::ExecutionResponse::failed(e, std::time::Duration::ZERO);
            render::response(&response, json);
            ExitCode::from(1)
        }
    }
}
