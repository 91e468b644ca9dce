//! `agenthub exec AGENT METHOD [PARAMS]`.

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use agenthub_core::{AgentRuntimeError, Caller, Config, MethodSpec, Params, parse_cli_params};
use agenthub_runtime::{AgentRuntime, Call, ExecutionResponse, ProcessBackendKind};

use crate::args::ExecArgs;
use crate::render;

pub(crate) fn run(mut config: Config, args: &ExecArgs) -> ExitCode {
    let started = Instant::now();
    if let Some(timeout) = args.timeout {
        config.runtime.max_execution_time = agenthub_core::Seconds::new(timeout);
    }
    args.target.apply(&mut config);
    args.sandbox.apply(&mut config);
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
    if args.interactive && !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        render::err(
            "error: -i asks for parameters on a terminal, and stdin or stderr is not one\n  help: pass the parameters as arguments instead: agenthub exec AGENT METHOD key=value …\n",
        );
        return ExitCode::from(2);
    }
    let mut runtime = None;
    let response = execute(config, args, &mut runtime)
        .unwrap_or_else(|e| ExecutionResponse::failed(e, started.elapsed()));
    let code = render::response(&response, args.json);
    // The runtime goes after the answer is shown: dropping it writes the call's record to
    // the run history.
    drop(runtime);
    code
}

fn execute(
    mut config: Config,
    args: &ExecArgs,
    keep: &mut Option<Arc<AgentRuntime>>,
) -> Result<ExecutionResponse, AgentRuntimeError> {
    // One thread spawns and outlives every agent here, so tie the agents' lives to it.
    config.runtime.kill_agents_with_runtime = true;
    let progress = Arc::new(crate::progress::CliProgress::new());
    let runtime = Arc::new(
        AgentRuntime::with_backends(config, args.env_backend, ProcessBackendKind::Std)?
            .with_progress(progress.clone())
            .with_caller(Caller::Cli),
    );
    *keep = Some(Arc::clone(&runtime));
    // Reap what a runtime that was killed outright left behind.
    runtime.cleanup_processes();
    let agent = pollster::block_on(runtime.load_or_install(&args.agent));
    progress.finish();
    let agent = agent?;
    let spec = agent.manifest.method(&args.method);
    // The method first, whatever form the parameters take: a mistyped method is that, not a
    // parameter error.
    if spec.is_none() {
        return Err(AgentRuntimeError::MethodNotFound {
            method: args.method.clone(),
            available: agent.manifest.method_names(),
        });
    }
    let invalid = |problem: String| AgentRuntimeError::InvalidParameters {
        method: args.method.clone(),
        problems: vec![problem],
        signature: spec.map_or_else(|| args.method.clone(), |s| s.signature(&args.method)),
    };
    let mut params =
        parse_cli_params(&args.method, spec, &args.params).map_err(|e| invalid(e.to_string()))?;
    if args.interactive
        && let Some(spec) = spec
    {
        ask(&args.method, spec, &mut params).map_err(invalid)?;
    }
    crate::commands::sandbox_off_notice(runtime.config(), &agent);
    let tools = super::CallToolsSetup::new(&runtime, &agent, &args.tools)?;
    let mut call = Call::loaded(&agent, &args.method).params(params).grants(args.sandbox.grants());
    if let Some(tools) = &tools {
        call = call.tools(tools.for_call(&agent));
    }
    Ok(runtime.call_blocking(call))
}

/// Asks on the terminal for each parameter not given, typed like `key=value` arguments;
/// an empty answer leaves an optional one out (its default applies).
fn ask(method: &str, spec: &MethodSpec, params: &mut Params) -> Result<(), String> {
    let stdin = std::io::stdin();
    for (name, parameter) in &spec.parameters {
        if params.contains_key(name) {
            continue;
        }
        let mut hint = parameter.param_type.as_str().to_owned();
        match (&parameter.default, parameter.required) {
            (Some(default), _) => {
                let _ = write!(hint, ", default {default}");
            }
            (None, true) => hint.push_str(", required"),
            (None, false) => hint.push_str(", optional"),
        }
        let about = parameter.description.as_deref().map(|d| format!(" — {d}")).unwrap_or_default();
        // At most a few tries per parameter: a closed terminal cannot loop us forever.
        for attempt in 0..5 {
            render::err(&agenthub_core::escape_control(&format!("{name} ({hint}){about}: ")));
            let mut line = String::new();
            if stdin.lock().read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err(format!("no answer for `{name}` (end of input)"));
            }
            let answer = line.trim_end_matches(['\n', '\r']);
            if answer.is_empty() {
                if parameter.required {
                    render::err(&format!("  `{name}` is required\n"));
                    continue;
                }
                break;
            }
            match parse_cli_params(method, Some(spec), &[format!("{name}={answer}")]) {
                Ok(one) => {
                    params.extend(one);
                    break;
                }
                Err(e) if attempt < 4 => render::err(&agenthub_core::escape_control(&format!("  {e}\n"))),
                Err(e) => return Err(e.to_string()),
            }
        }
        if parameter.required && !params.contains_key(name) {
            return Err(format!("no valid value for `{name}`"));
        }
    }
    Ok(())
}
