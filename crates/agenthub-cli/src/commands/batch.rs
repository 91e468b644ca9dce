//! `agenthub batch AGENT`: one request per stdin line through warm workers, one response
//! per stdout line, in input order.

use std::collections::BTreeMap;
use std::io::{BufRead, Read as _};
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Instant;

use agenthub_core::{AgentRuntimeError, Config, ExecutionMode};
use agenthub_runtime::{AgentRuntime, ExecutionResponse, LoadedAgent, ProcessBackendKind};
use serde_json::{Map, Value as Json};

use crate::args::BatchArgs;
use crate::render;

/// How often a batch thread waiting for a line checks for a shutdown.
const POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest request line read; longer lines get an error response.
const MAX_LINE: usize = 64 * 1024 * 1024;

pub(crate) fn run(mut config: Config, args: &BatchArgs) -> ExitCode {
    if args.concurrency == 0 || args.concurrency > 1024 {
        render::err("error: --concurrency must be from 1 to 1024\n");
        return ExitCode::from(2);
    }
    if let Some(timeout) = args.timeout {
        config.runtime.max_execution_time = agenthub_core::Seconds::new(timeout);
    }
    args.target.apply(&mut config);
    config.runtime.mode = ExecutionMode::Warm;
    config.runtime.workers_per_agent = args.concurrency;
    config.runtime.max_concurrency = config.runtime.max_concurrency.max(args.concurrency);
    if let Err(e) = config.validate() {
        return super::usage_error(&e);
    }
    // Every thread that starts workers lives until the batch ends, so workers may die with
    // the thread that started them (PR_SET_PDEATHSIG) without dying early.
    config.runtime.kill_agents_with_runtime = true;
    let runtime = match AgentRuntime::with_backends(config, None, ProcessBackendKind::Std) {
        Ok(runtime) => runtime,
        Err(e) => return render::response(&ExecutionResponse::failed(e, std::time::Duration::ZERO), true),
    };
    runtime.cleanup_processes();
    let agent = runtime.load_agent(&args.agent);
    if agent.is_ok() && runtime.config().runtime.target == agenthub_core::ExecutionTarget::Local {
        // One worker per line in flight, started before the first line is read. A failure
        // here is reported by the calls themselves.
        let _ = runtime.prestart_workers_blocking(&args.agent);
    }
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<(usize, std::io::Result<String>)>(args.concurrency * 2);
    let jobs_rx = Mutex::new(jobs_rx);
    // The reader is not scoped: on a signal the batch ends without waiting for stdin.
    let _ = std::thread::Builder::new()
        .name("agenthub-batch-stdin".to_owned())
        .spawn(move || read_lines(&jobs_tx));
    let all_ok = std::thread::scope(|scope| {
        let (results_tx, results_rx) = mpsc::channel::<(usize, String, bool)>();
        for _ in 0..args.concurrency {
            let (jobs_rx, results_tx, runtime, agent) = (&jobs_rx, results_tx.clone(), &runtime, &agent);
            scope.spawn(move || {
                loop {
                    let job = jobs_rx.lock().unwrap_or_else(PoisonError::into_inner).recv_timeout(POLL);
                    let (index, line) = match job {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) if !agenthub_process::is_shut_down() => continue,
                        Err(_) => return,
                    };
                    let (text, ok) = answer(runtime, &args.agent, agent, line);
                    if results_tx.send((index, text, ok)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(results_tx);
        // Print in input order as answers arrive.
        let mut ready = BTreeMap::new();
        let mut next = 0;
        let mut all_ok = true;
        for (index, text, ok) in results_rx {
            all_ok &= ok;
            ready.insert(index, text);
            while let Some(text) = ready.remove(&next) {
                render::out(&text);
                next += 1;
            }
        }
        all_ok
    });
    drop(runtime);
    if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// Reads stdin line by line (bounded) into the job queue.
fn read_lines(jobs: &mpsc::SyncSender<(usize, std::io::Result<String>)>) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = Vec::new();
    let mut index = 0;
    loop {
        buf.clear();
        let read = (&mut stdin).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf);
        let line = match read {
            Ok(0) => return,
            Ok(_) if buf.len() > MAX_LINE && !buf.ends_with(b"\n") => {
                // Skip the rest of the line.
                let mut rest = Vec::new();
                let _ = stdin.read_until(b'\n', &mut rest);
                Err(std::io::Error::other(format!("the line is longer than {MAX_LINE} bytes")))
            }
            Ok(_) => String::from_utf8(std::mem::take(&mut buf))
                .map_err(|_| std::io::Error::other("the line is not valid UTF-8")),
            Err(e) => Err(e),
        };
        if line.as_ref().is_ok_and(|l| l.trim().is_empty()) {
            continue;
        }
        if jobs.send((index, line)).is_err() {
            return;
        }
        index += 1;
    }
}

/// The response line for one request line, and whether the call succeeded.
fn answer(
    runtime: &AgentRuntime,
    name: &str,
    agent: &Result<LoadedAgent, AgentRuntimeError>,
    line: std::io::Result<String>,
) -> (String, bool) {
    let started = Instant::now();
    let (id, request) = parse(line);
    let response = match request {
        Err(problem) => ExecutionResponse::failed(bad_line(&problem), started.elapsed()),
        // The agent is loaded for every line: a call is validated against the manifest on
        // disk when it is made, as warm workers serve the code on disk.
        Ok(Request { method, params }) => match agent {
            Ok(_) => runtime.execute_agent_blocking(name, &method, params),
            Err(e) => ExecutionResponse::failed(e.clone(), started.elapsed()),
        },
    };
    let ok = response.is_success();
    let mut json = serde_json::to_value(&response).unwrap_or(Json::Null);
    if let (Some(id), Some(object)) = (id, json.as_object_mut()) {
        object.insert("id".to_owned(), id);
    }
    (format!("{json}\n"), ok)
}

/// One request line, parsed.
struct Request {
    method: String,
    params: Map<String, Json>,
}

/// A request line: its id (kept also when the rest is wrong) and the request.
fn parse(line: std::io::Result<String>) -> (Option<Json>, Result<Request, String>) {
    let mut request: Map<String, Json> = match line.map(|l| serde_json::from_str(&l)) {
        Ok(Ok(Json::Object(request))) => request,
        Ok(Ok(_)) => return (None, Err("a request line must be a JSON object".to_owned())),
        Ok(Err(e)) => return (None, Err(format!("the line is not JSON: {e}"))),
        Err(e) => return (None, Err(e.to_string())),
    };
    let id = request.remove("id");
    (id, request_of(request))
}

/// The method and parameters of a request object without its id.
fn request_of(mut request: Map<String, Json>) -> Result<Request, String> {
    let Some(Json::String(method)) = request.remove("method") else {
        return Err("the request has no \"method\" string".to_owned());
    };
    let params = match request.remove("parameters") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(params)) => params,
        Some(_) => return Err("\"parameters\" must be a JSON object".to_owned()),
    };
    if let Some(key) = request.keys().next() {
        return Err(format!("unknown field \"{key}\" (a request has method, parameters and id)"));
    }
    Ok(Request { method, params })
}

fn bad_line(problem: &str) -> AgentRuntimeError {
    AgentRuntimeError::NotRun {
        message: format!("Not a request: {problem}"),
        suggestion:
            "Write one JSON object per line: {\"method\": \"NAME\", \"parameters\": {...}, \"id\": ...}"
                .to_owned(),
    }
}
