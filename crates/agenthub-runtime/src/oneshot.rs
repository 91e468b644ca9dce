//! The one-shot call: `<venv>/bin/python agent.py '<request>'` in a process of its own,
//! under the call's limits, marked for cancellation when the call can be cancelled.

use std::path::{Path, PathBuf};

use agenthub_core::{AgentRuntimeError, ExecutionResponse, RuntimeConfig};
use agenthub_process::{AgentInvocation, ProcessLimits, ProcessManager};

use crate::{CallCancel, agent_env, cancelled, outcome};

/// What a one-shot call runs.
pub(crate) struct OneShot<'a> {
    /// The environment's interpreter.
    pub(crate) python: PathBuf,
    /// The agent directory (the process's working directory).
    pub(crate) dir: &'a Path,
    /// The request, passed as the one argument after `agent.py`.
    pub(crate) request: String,
    /// The environment's activation variables.
    pub(crate) activation: agenthub_env::Activation,
    /// The call's limits.
    pub(crate) limits: ProcessLimits,
    /// The sandbox it runs in.
    pub(crate) sandbox: &'a crate::sandbox::CallSandbox,
    /// Its tools, served on an endpoint of its own.
    pub(crate) tools: Option<&'a std::sync::Arc<dyn crate::tools::CallTools>>,
    /// The call's trace context, for `TRACEPARENT` and `TRACESTATE`.
    pub(crate) trace: Option<(String, Option<String>)>,
}

/// Runs one call in a process of its own; one response (or the error that stands for it).
pub(crate) async fn run(
    processes: &ProcessManager,
    call: OneShot<'_>,
    rt: &RuntimeConfig,
    cancel: Option<&CallCancel>,
    trace: &mut crate::history::CallTrace,
) -> Result<ExecutionResponse, AgentRuntimeError> {
    let mut env_spec = crate::sandboxed_env(agent_env(rt, call.activation), call.sandbox);
    if let Some((traceparent, tracestate)) = call.trace {
        // The call's context, never one inherited from agenthub's own environment.
        env_spec.set.retain(|(k, _)| k != "TRACEPARENT" && k != "TRACESTATE");
        env_spec.set.push(("TRACEPARENT".into(), traceparent.into()));
        match tracestate {
            Some(state) => env_spec.set.push(("TRACESTATE".into(), state.into())),
            None => env_spec.remove.push("TRACESTATE".into()),
        }
    }
    if let Some(cancel) = cancel {
        // Marks the process, so that a cancellation can find it while it runs.
        let (name, value) = cancel.attach_one_shot(processes.registry()).ok_or_else(cancelled)?;
        env_spec.set.push((name.into(), value.into()));
    }
    let mut sandbox = call.sandbox.sandbox.as_deref().cloned();
    // The endpoint (and what serves it) lives as long as the process.
    let slot = crate::tools::ToolSlot::default();
    let mut _endpoint_guard = None;
    let _occupied = match call.tools {
        Some(tools) => {
            let endpoint = crate::tools::endpoint(sandbox.as_ref(), &tools.server(), &slot).map_err(|e| {
                AgentRuntimeError::Execution {
                    message: format!("Cannot serve the call's tools: {e}"),
                    return_code: None,
                    signal: None,
                    stderr: None,
                }
            })?;
            sandbox = endpoint.sandbox;
            env_spec.set.retain(|(k, _)| !endpoint.env.iter().any(|(name, _)| name == k));
            env_spec.set.extend(endpoint.env);
            _endpoint_guard = endpoint.guard;
            Some(crate::tools::Occupied::new(&slot, tools))
        }
        None => None,
    };
    let invocation = AgentInvocation {
        python: call.python,
        agent_dir: call.dir.to_path_buf(),
        script: "agent.py".into(),
        request_json: call.request,
        env: env_spec,
        limits: call.limits,
        containment: agenthub_process::Containment::Auto,
        die_with_parent: rt.kill_agents_with_runtime,
        sandbox,
    };
    let output = processes.execute_agent(invocation).await;
    if cancel.is_some_and(|c| c.detach_one_shot() || c.is_cancelled()) {
        return Err(cancelled());
    }
    let output = output?;
    trace.output(&output, true);
    let mut response = outcome::response_from(&output, rt);
    crate::sandbox::explain_denial(&mut response, call.sandbox);
    Ok(response)
}
