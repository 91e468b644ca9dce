//! `agenthub bench AGENT METHOD [PARAMS]`: call latency of an agent, as users see it from
//! the library (one untimed warm-up call, then N timed calls, one after another).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agenthub_core::{AgentRuntimeError, Config, ExecutionMode, parse_cli_params};
use agenthub_runtime::{AgentRuntime, Call, ExecutionResponse, ProcessBackendKind};
use serde_json::json;

use crate::args::BenchArgs;
use crate::render;

/// The most calls one bench runs (their times are kept in memory).
const MAX_CALLS: usize = 10_000_000;

/// The most callers one bench runs at once (as `batch --concurrency`).
const MAX_CONCURRENCY: usize = 1024;

pub(crate) fn run(mut config: Config, args: &BenchArgs) -> ExitCode {
    if args.calls == 0 || args.calls > MAX_CALLS {
        render::err(&format!("error: --calls must be from 1 to {MAX_CALLS}\n"));
        return ExitCode::from(2);
    }
    if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
        render::err(&format!("error: --concurrency must be from 1 to {MAX_CONCURRENCY}\n"));
        return ExitCode::from(2);
    }
    config.runtime.mode = args.mode;
    config.runtime.workers_per_agent = args.concurrency;
    config.runtime.max_concurrency = config.runtime.max_concurrency.max(args.concurrency);
    if let Err(e) = config.validate() {
        return super::usage_error(&e);
    }
    config.runtime.kill_agents_with_runtime = true;
    match measure(config, args) {
        Ok(times) => report(args, &times),
        Err(response) => render::response(&response, args.json),
    }
}

/// The per-call times and the total, or the first failed response. Each of the
/// `--concurrency` callers makes one untimed warm-up call (all at once, so that as many
/// workers start), then all start their share of the timed calls together.
fn measure(config: Config, args: &BenchArgs) -> Result<(Vec<Duration>, Duration), Box<ExecutionResponse>> {
    let failed = |e: AgentRuntimeError| Box::new(ExecutionResponse::failed(e, Duration::ZERO));
    let runtime = std::sync::Arc::new(
        AgentRuntime::with_backends(config, None, ProcessBackendKind::Std)
            .map_err(failed)?
            .with_caller(agenthub_core::Caller::Cli),
    );
    runtime.cleanup_processes();
    let agent = std::sync::Arc::new(runtime.load_agent(&args.agent).map_err(failed)?);
    let tools = super::CallToolsSetup::new(&runtime, &agent, &args.tools).map_err(failed)?;
    let call = |params: agenthub_core::Params| {
        let mut call = Call::shared(&agent, &args.method).params(params);
        if let Some(tools) = &tools {
            call = call.tools(tools.for_call(&agent));
        }
        runtime.call_blocking(call)
    };
    let spec = agent.manifest.method(&args.method);
    let params = parse_cli_params(&args.method, spec, &args.params).map_err(|e| {
        failed(AgentRuntimeError::InvalidParameters {
            method: args.method.clone(),
            problems: vec![e.to_string()],
            signature: spec.map_or_else(|| args.method.clone(), |s| s.signature(&args.method)),
        })
    })?;
    // Warm-up: builds the environment if needed (once, before the callers start) and, in
    // warm mode, starts the workers.
    let first = call(params.clone());
    if !first.is_success() {
        return Err(Box::new(first));
    }
    if args.mode == ExecutionMode::Isolated
        && let Some(agenthub_runtime::Isolation::Warm { reason }) =
            runtime.workers().isolation(&agent.location.dir)
    {
        render::err(&format!("note: isolated mode serves this agent warm: {reason}\n"));
    }
    let callers = args.concurrency;
    if callers > 1 && args.mode != ExecutionMode::Oneshot && tools.is_none() {
        // As many workers as callers, started before the clock does.
        runtime.workers().prestart_blocking(&args.agent).map_err(failed)?;
    }
    let start = Start::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let caller = |share: usize| -> Result<Vec<Duration>, Box<ExecutionResponse>> {
        // Arrives at the start when dropped too: a caller that panics never holds the rest.
        let arrival = start.arrival();
        let warm_up = if callers > 1 { Some(call(params.clone())) } else { None };
        arrival.wait();
        if let Some(response) = warm_up.filter(|r| !r.is_success()) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(Box::new(response));
        }
        let mut times = Vec::with_capacity(share);
        for _ in 0..share {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break; // another caller failed: its response is the report
            }
            let started = Instant::now();
            let response = call(params.clone());
            times.push(started.elapsed());
            if !response.is_success() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(Box::new(response));
            }
        }
        Ok(times)
    };
    std::thread::scope(|scope| {
        let mut threads = Vec::with_capacity(callers);
        let mut refused = None;
        for i in 0..callers {
            let share = args.calls / callers + usize::from(i < args.calls % callers);
            let spawned = std::thread::Builder::new()
                .name(format!("agenthub-bench-{i}"))
                .spawn_scoped(scope, move || caller(share));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = refused {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            start.go(threads.len());
            for thread in threads {
                let _ = thread.join();
            }
            return Err(failed(AgentRuntimeError::NotRun {
                message: format!("could not start {callers} callers: {e}"),
                suggestion: "Use a smaller --concurrency (the process is short of threads)".to_owned(),
            }));
        }
        start.go(threads.len());
        let all = Instant::now();
        let mut times = Vec::with_capacity(args.calls);
        let mut failure = None;
        for thread in threads {
            match thread.join() {
                Ok(Ok(mine)) => times.extend(mine),
                Ok(Err(response)) => failure = failure.or(Some(response)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        let total = all.elapsed();
        failure.map_or(Ok((times, total)), Err)
    })
}

/// The start of the timed calls: every caller arrives (after its warm-up), then all go.
#[derive(Default)]
struct Start {
    /// Callers arrived, and whether they may go.
    state: std::sync::Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
}

/// One caller's place at the [`Start`]; dropping it without [`Arrival::wait`] (a panic)
/// still counts it as arrived.
struct Arrival<'a> {
    start: &'a Start,
    arrived: bool,
}

impl Start {
    fn arrival(&self) -> Arrival<'_> {
        Arrival { start: self, arrived: false }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `callers` have arrived, then lets them go.
    fn go(&self, callers: usize) {
        let mut state = self.state();
        while state.0 < callers {
            state = self.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.1 = true;
        self.changed.notify_all();
    }
}

impl Arrival<'_> {
    /// Arrives and waits for the go.
    fn wait(mut self) {
        self.arrived = true;
        let mut state = self.start.state();
        state.0 += 1;
        self.start.changed.notify_all();
        while !state.1 {
            state = self.start.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.arrived {
            self.start.state().0 += 1;
            self.start.changed.notify_all();
        }
    }
}

fn report(args: &BenchArgs, (times, total): &(Vec<Duration>, Duration)) -> ExitCode {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    let median = at(0.5);
    let p99 = at(0.99);
    let p90 = at(0.9);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    let per_sec = ms.len() as f64 / total.as_secs_f64().max(f64::MIN_POSITIVE);
    let mode = match args.mode {
        ExecutionMode::Oneshot => "oneshot",
        ExecutionMode::Warm => "warm",
        ExecutionMode::Isolated => "isolated",
    };
    if args.json {
        let v = json!({"mode": mode, "calls": ms.len(), "concurrency": args.concurrency, "median_ms": median, "p90_ms": p90, "p99_ms": p99, "mean_ms": mean, "calls_per_sec": per_sec});
        render::out(&format!("{v}\n"));
    } else {
        render::out(&format!(
            "{mode}: {} calls of {} {}{}: median {median:.3} ms, p99 {p99:.3} ms, {per_sec:.0} calls/s\n",
            ms.len(),
            args.agent,
            args.method,
            if args.concurrency > 1 { format!(" from {} callers", args.concurrency) } else { String::new() }
        ));
    }
    ExitCode::SUCCESS
}
