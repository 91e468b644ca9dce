//! `agenthub batch AGENT`: one request per stdin line through warm workers, one response
//! per stdout line, in input order.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::time::Instant;

use agenthub_core::{AgentRuntimeError, Config, Grants};
use agenthub_runtime::{AgentRuntime, Call, ExecutionResponse, LoadedAgent, ProcessBackendKind};
use serde_json::{Map, Value as Json};

use crate::args::BatchArgs;
use crate::render;

/// How often a batch thread waiting for a line checks for a shutdown.
const POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest request line read; longer lines get an error response.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// Lines taken from stdin and not printed yet, per call in flight (see [`Window`]).
const WINDOW_LINES_PER_CALL: usize = 4;

/// Bytes of requests and answers held in the window before the reader waits.
const MAX_WINDOW_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn run(mut config: Config, args: &BatchArgs) -> ExitCode {
    if args.concurrency == 0 || args.concurrency > 1024 {
        render::err("error: --concurrency must be from 1 to 1024\n");
        return ExitCode::from(2);
    }
    if let Some(timeout) = args.timeout {
        config.runtime.max_execution_time = agenthub_core::Seconds::new(timeout);
    }
    args.target.apply(&mut config);
    args.sandbox.apply(&mut config);
    config.runtime.mode = args.mode;
    config.runtime.workers_per_agent = args.concurrency;
    config.runtime.max_concurrency = config.runtime.max_concurrency.max(args.concurrency);
    if let Err(e) = config.validate() {
        return super::usage_error(&e);
    }
    // Every thread that starts workers lives until the batch ends, so workers may die with
    // the thread that started them (PR_SET_PDEATHSIG) without dying early.
    config.runtime.kill_agents_with_runtime = true;
    let runtime = match AgentRuntime::with_backends(config, None, ProcessBackendKind::Std) {
        Ok(runtime) => Arc::new(runtime.with_caller(agenthub_core::Caller::Cli)),
        Err(e) => return render::response(&ExecutionResponse::failed(e, std::time::Duration::ZERO), true),
    };
    runtime.cleanup_processes();
    let agent = runtime.load_agent(&args.agent);
    let tools = match &agent {
        Ok(agent) => match super::CallToolsSetup::new(&runtime, agent, &args.tools) {
            Ok(tools) => tools,
            Err(e) => {
                return render::response(&ExecutionResponse::failed(e, std::time::Duration::ZERO), true);
            }
        },
        Err(_) => None,
    };
    // Workers started ahead serve calls without tools only.
    if agent.is_ok()
        && tools.is_none()
        && runtime.config().runtime.target == agenthub_core::ExecutionTarget::Local
    {
        // One worker per line in flight, started in the background while the first lines
        // are read: a call finding them still starting waits for them at most its own
        // timeout. A failure here is reported by the calls themselves.
        runtime.prestart_workers_in_background(&args.agent);
    }
    if let Ok(agent) = &agent {
        crate::commands::sandbox_off_notice(runtime.config(), agent);
    }
    let grants = args.sandbox.grants();
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(args.concurrency * 2);
    let jobs_rx = Mutex::new(jobs_rx);
    let window = Arc::new(Window::new(args.concurrency * WINDOW_LINES_PER_CALL));
    // The reader is not scoped: on a signal the batch ends without waiting for stdin.
    let reader_window = Arc::clone(&window);
    let _ = std::thread::Builder::new()
        .name("agenthub-batch-stdin".to_owned())
        .spawn(move || read_lines(&mut std::io::stdin().lock(), &jobs_tx, &reader_window));
    let all_ok = std::thread::scope(|scope| {
        let (results_tx, results_rx) = mpsc::channel::<(usize, String, bool)>();
        for _ in 0..args.concurrency {
            let (jobs_rx, results_tx, runtime, agent, window, grants, tools) =
                (&jobs_rx, results_tx.clone(), &runtime, &agent, &window, &grants, tools.as_ref());
            scope.spawn(move || {
                loop {
                    let job = jobs_rx.lock().unwrap_or_else(PoisonError::into_inner).recv_timeout(POLL);
                    let Job { index, line, bytes } = match job {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) if !agenthub_process::is_shut_down() => continue,
                        Err(_) => return,
                    };
                    let (text, ok) = answer(runtime, &args.agent, (grants, tools), agent, line);
                    window.answered(bytes, text.len());
                    if results_tx.send((index, text, ok)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(results_tx);
        // Print in input order as answers arrive. What waits here is bounded by the
        // window: the reader takes no new line while it is full.
        let mut ready = BTreeMap::new();
        let mut next = 0;
        let mut all_ok = true;
        for (index, text, ok) in results_rx {
            all_ok &= ok;
            ready.insert(index, text);
            while let Some(text) = ready.remove(&next) {
                render::out(&text);
                window.printed(text.len());
                next += 1;
            }
        }
        all_ok
    });
    // Also stops worker starts still under way (a hanging import): the batch is over.
    drop(runtime);
    if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// One request line taken from stdin: its place in the input, the line (or why it is not
/// one) and the bytes it holds in the window.
struct Job {
    index: usize,
    line: std::io::Result<String>,
    bytes: usize,
}

/// The lines taken from stdin and not printed yet (in the job queue, being answered, or
/// answered and waiting for an earlier line): the reader takes a new line only while
/// fewer than `max_lines` and [`MAX_WINDOW_BYTES`] (requests, then answers) are held, or
/// none at all. A slow early call thus holds back reading, not memory; nothing is dropped.
struct Window {
    held: Mutex<Held>,
    room: Condvar,
    max_lines: usize,
}

#[derive(Default)]
struct Held {
    lines: usize,
    bytes: usize,
}

impl Window {
    fn new(max_lines: usize) -> Self {
        Self { held: Mutex::new(Held::default()), room: Condvar::new(), max_lines: max_lines.max(1) }
    }

    /// Waits until a line may be taken.
    fn wait_for_room(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while held.lines > 0 && (held.lines >= self.max_lines || held.bytes >= MAX_WINDOW_BYTES) {
            held = self.room.wait(held).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A line of `bytes` is taken.
    fn took(&self, bytes: usize) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.lines += 1;
        held.bytes = held.bytes.saturating_add(bytes);
    }

    /// A request of `request` bytes got its answer of `answer` bytes.
    fn answered(&self, request: usize, answer: usize) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.bytes = held.bytes.saturating_sub(request).saturating_add(answer);
        drop(held);
        self.room.notify_one();
    }

    /// An answer of `bytes` was printed.
    fn printed(&self, bytes: usize) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.lines = held.lines.saturating_sub(1);
        held.bytes = held.bytes.saturating_sub(bytes);
        drop(held);
        self.room.notify_one();
    }
}

/// Reads request lines (bounded) into the job queue, as the window has room for them.
/// Blank lines are skipped; an over-long line is skipped to its newline without being
/// kept and answered with an error; a read error is answered once and ends the input.
fn read_lines(input: &mut impl BufRead, jobs: &mpsc::SyncSender<Job>, window: &Window) {
    let mut index = 0;
    loop {
        window.wait_for_room();
        let (line, last) = match read_line(input, MAX_LINE) {
            Ok(Line::End) => return,
            Ok(Line::TooLong) => {
                (Err(std::io::Error::other(format!("the line is longer than {MAX_LINE} bytes"))), false)
            }
            Ok(Line::Text(bytes)) => {
                let line = String::from_utf8(bytes)
                    .map_err(|_| std::io::Error::other("the line is not valid UTF-8"));
                if line.as_ref().is_ok_and(|l| l.trim().is_empty()) {
                    continue;
                }
                (line, false)
            }
            // Reading again would most likely fail again, forever: the input ends here.
            Err(e) => (Err(e), true),
        };
        let bytes = line.as_ref().map_or(0, String::len);
        window.took(bytes);
        if jobs.send(Job { index, line, bytes }).is_err() || last {
            return;
        }
        index += 1;
    }
}

/// What [`read_line`] read.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line, without its newline (the last line of the input may have none).
    Text(Vec<u8>),
    /// A line longer than the limit; it was read to its end and dropped.
    TooLong,
    /// The end of the input.
    End,
}

/// Reads one line of at most `max` bytes (its newline not counted). A longer line is
/// read to its newline (or the end of the input) through the reader's buffer and never
/// held: the memory this takes is `max`, whatever the input.
fn read_line(input: &mut impl BufRead, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, used, ended) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (&chunk[..at], at + 1, true),
            None => (chunk, chunk.len(), false),
        };
        if !too_long {
            if line.len() + part.len() > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(part);
            }
        }
        input.consume(used);
        if ended {
            break;
        }
    }
    Ok(match (any, too_long) {
        (false, _) => Line::End,
        (true, true) => Line::TooLong,
        (true, false) => Line::Text(line),
    })
}

/// The response line for one request line, and whether the call succeeded.
fn answer(
    runtime: &AgentRuntime,
    name: &str,
    (grants, tools): (&Grants, Option<&super::CallToolsSetup>),
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
            Ok(agent) => {
                let mut call = Call::new(name, method).params(params).grants(grants.clone());
                if let Some(tools) = tools {
                    call = call.tools(tools.for_call(agent));
                }
                runtime.call_blocking(call)
            }
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

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::{Line, Window, read_line};

    /// Every line of `input` read through a 4-byte buffer with a limit of 5 bytes.
    fn lines(input: &[u8]) -> Vec<Line> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            match read_line(&mut reader, 5).unwrap() {
                Line::End => return out,
                line => out.push(line),
            }
            assert!(out.len() <= input.len(), "read_line does not advance");
        }
    }

    #[test]
    fn lines_are_read_across_buffer_refills_up_to_the_limit() {
        let text = |s: &str| Line::Text(s.as_bytes().to_vec());
        assert_eq!(lines(b""), vec![]);
        assert_eq!(lines(b"ab\n\ncdefg\nhi"), vec![text("ab"), text(""), text("cdefg"), text("hi")]);
        // Over the limit, also where the limit falls inside one buffer or at its end, and a
        // last line without a newline; the next line is read whole.
        assert_eq!(lines(b"abcdef\nxy\n"), vec![Line::TooLong, text("xy")]);
        assert_eq!(lines(b"abcdefghijklmnop\nxy"), vec![Line::TooLong, text("xy")]);
        assert_eq!(lines(b"ab\nabcdefghij"), vec![text("ab"), Line::TooLong]);
    }

    #[test]
    fn the_window_has_room_while_under_its_bounds_and_always_when_empty() {
        let window = Window::new(2);
        window.wait_for_room();
        window.took(super::MAX_WINDOW_BYTES * 2);
        // Full by bytes: room again once that answer is printed.
        window.answered(super::MAX_WINDOW_BYTES * 2, 10);
        window.took(1);
        let held = |w: &Window| {
            let h = w.held.lock().unwrap();
            (h.lines, h.bytes)
        };
        assert_eq!(held(&window), (2, 11));
        window.printed(10);
        window.answered(1, 3);
        window.printed(3);
        assert_eq!(held(&window), (0, 0));
        window.wait_for_room();
    }
}
