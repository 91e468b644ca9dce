//! The warm worker's protocol as types: what the runtime writes to `bootstrap.py` and what
//! it reads back (newline-delimited JSON; `docs/design/workers.md` is the prose). The
//! round-trip test below drives the real bootstrap with these types, so the two sides cannot
//! drift apart silently.

use serde::{Deserialize, Serialize};

/// One call, runtime → worker.
#[derive(Debug, Serialize)]
#[expect(clippy::struct_field_names, reason = "`request` is the protocol's own field name")]
pub(crate) struct Request<'a> {
    /// Echoed in the reply.
    pub(crate) id: u64,
    /// The manifest method (instance dispatch calls it; main()-replay ignores it).
    pub(crate) method: &'a str,
    /// The exact JSON text a one-shot call passes as `sys.argv[1]`.
    pub(crate) request: &'a str,
    /// Whether the worker may poll for the next request on its CPU for a moment after it
    /// answers (the runtime says so while few requests are out: see `Pools::spin_for`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) spin: bool,
    /// The call's W3C trace context: `TRACEPARENT` in the agent's environment during the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) traceparent: Option<&'a str>,
    /// `TRACESTATE` likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tracestate: Option<&'a str>,
}

/// How the worker will serve calls, as announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Served {
    /// `main()` is replayed per call.
    Main,
    /// One instance of the agent's class; its methods are called.
    Instance,
    /// Not servable warm (the reason says why): the runtime runs the agent one-shot.
    None,
}

/// The worker's first line, worker → runtime.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Announcement {
    /// The import finished.
    Ready {
        /// The worker's pid.
        #[expect(dead_code, reason = "part of the protocol; the runtime knows the pid it spawned")]
        pid: u32,
        /// How calls are served.
        dispatch: Served,
        /// Why the agent cannot be served warm (with [`Served::None`]).
        #[serde(default)]
        reason: Option<String>,
        /// Isolated mode only: whether each call is served by a fork of this worker
        /// (`false`: the import left threads running, so calls are served warm).
        #[serde(default)]
        isolated: Option<bool>,
        /// Why the worker does not fork per call (with `isolated: false`).
        #[serde(default)]
        fork_refused: Option<String>,
    },
    /// The import (or the instance's constructor) raised.
    Error {
        /// `"<ExceptionType>: <message>"`.
        error: String,
    },
}

/// The answer to one [`Request`], worker → runtime.
#[derive(Debug, Deserialize)]
pub(crate) struct Reply {
    /// The request's id; `None` when the worker could not read the request's id.
    pub(crate) id: Option<u64>,
    /// What the call wrote to its `sys.stdout`.
    #[serde(default)]
    pub(crate) stdout: String,
    /// What the process exit status would have been, one-shot.
    #[serde(default = "one")]
    pub(crate) exit_code: i64,
    /// The call passed the output cap; the worker exits.
    #[serde(default)]
    pub(crate) stdout_limit: bool,
    /// The call ended in `os._exit`; the worker is gone after this line.
    #[serde(default)]
    pub(crate) exiting: bool,
    /// The request itself was malformed (a runtime bug, never the agent's doing).
    #[serde(default)]
    pub(crate) error: Option<String>,
    /// Isolated mode: the signal that killed the call's child before it answered.
    #[serde(default)]
    pub(crate) signal: Option<i32>,
    /// Isolated mode: the peak resident memory of the call's child, in bytes.
    #[serde(default)]
    pub(crate) peak_rss: Option<u64>,
}

fn one() -> i64 {
    1
}

impl Reply {
    /// Reads a reply line; `None` when it is not one (the channel cannot be trusted).
    pub(crate) fn parse(line: &[u8]) -> Option<Self> {
        serde_json::from_slice(line).ok()
    }
}

impl Announcement {
    /// Reads the first line; `None` when it is not an announcement.
    pub(crate) fn parse(line: &[u8]) -> Option<Self> {
        serde_json::from_slice(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    use super::*;

    fn worker(agent: &str, dispatch: &str) -> (tempfile::TempDir, std::process::Child) {
        worker_with(agent, &[dispatch, "greet", "1024"])
    }

    fn worker_with(agent: &str, args: &[&str]) -> (tempfile::TempDir, std::process::Child) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agent.py"), agent).unwrap();
        let child = Command::new("python3")
            .args(["-u", "-c", crate::warm::BOOTSTRAP])
            .arg(dir.path())
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (dir, child)
    }

    fn line(reader: &mut impl BufRead) -> Vec<u8> {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).unwrap();
        line
    }

    #[test]
    fn the_types_read_what_the_real_bootstrap_writes() {
        let agent = "import json, os, sys\n\
                     def main():\n    \
                     r = json.loads(sys.argv[1])\n    \
                     if r['parameters'].get('exit'):\n        print('bye'); os._exit(3)\n    \
                     if r['parameters'].get('big'):\n        print('x' * 4096)\n    \
                     print(json.dumps({'result': r['parameters']}))\n\
                     if __name__ == '__main__':\n    main()\n";
        let (_dir, mut child) = worker(agent, "auto");
        let mut input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        match Announcement::parse(&line(&mut output)) {
            Some(Announcement::Ready { dispatch: Served::Main, reason: None, .. }) => {}
            other => panic!("{other:?}"),
        }
        let mut send = |id: u64, params: &str| {
            let request = format!("{{\"method\":\"greet\",\"parameters\":{params}}}");
            let text = serde_json::to_string(&Request {
                id,
                method: "greet",
                request: &request,
                spin: false,
                traceparent: None,
                tracestate: None,
            })
            .unwrap();
            writeln!(input, "{text}").unwrap();
        };
        send(7, "{\"n\":1}");
        let reply = Reply::parse(&line(&mut output)).unwrap();
        assert_eq!(
            (reply.id, reply.exit_code, reply.stdout_limit, reply.exiting),
            (Some(7), 0, false, false)
        );
        assert_eq!(reply.stdout, "{\"result\": {\"n\": 1}}\n");
        assert_eq!(reply.error, None);
        send(8, "{\"big\":1}");
        let reply = Reply::parse(&line(&mut output)).unwrap();
        assert!(reply.stdout_limit && reply.id == Some(8), "{reply:?}");
        assert!(child.wait().unwrap().code() == Some(1));

        let (_dir, mut child) = worker(agent, "auto");
        let mut input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        assert!(Announcement::parse(&line(&mut output)).is_some());
        writeln!(input, "{{\"id\": 3}}").unwrap();
        let refused = Reply::parse(&line(&mut output)).unwrap();
        assert_eq!((refused.id, refused.exit_code), (Some(3), 2));
        assert!(refused.error.is_some_and(|e| e.contains("method")));
        let request = "{\"method\":\"greet\",\"parameters\":{\"exit\":1}}";
        writeln!(
            input,
            "{}",
            serde_json::to_string(&Request {
                id: 4,
                method: "greet",
                request,
                spin: true,
                traceparent: None,
                tracestate: None
            })
            .unwrap()
        )
        .unwrap();
        let exited = Reply::parse(&line(&mut output)).unwrap();
        assert_eq!(
            (exited.id, exited.exit_code, exited.exiting, exited.stdout.as_str()),
            (Some(4), 3, true, "bye\n")
        );
        assert_eq!(child.wait().unwrap().code(), Some(3));
    }

    /// The worker's CPU time so far, in clock ticks (user + system).
    fn cpu_ticks(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    #[test]
    fn a_worker_told_to_spin_answers_back_to_back_and_stays_quiet_when_idle() {
        let agent = "import json, sys\n\
                     def main():\n    \
                     print(json.dumps({'result': json.loads(sys.argv[1])['parameters']}))\n\
                     if __name__ == '__main__':\n    main()\n";
        let (_dir, mut child) = worker(agent, "auto");
        let pid = child.id();
        let mut input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        assert!(Announcement::parse(&line(&mut output)).is_some());
        for id in 1..=200 {
            let request = format!("{{\"method\":\"greet\",\"parameters\":{{\"n\":{id}}}}}");
            let text = serde_json::to_string(&Request {
                id,
                method: "greet",
                request: &request,
                spin: true,
                traceparent: None,
                tracestate: None,
            })
            .unwrap();
            writeln!(input, "{text}").unwrap();
            let reply = Reply::parse(&line(&mut output)).unwrap();
            assert_eq!(reply.id, Some(id));
            assert_eq!(reply.stdout, format!("{{\"result\": {{\"n\": {id}}}}}\n"));
        }
        // Polling ends within 100 µs of an answer: an idle worker uses no CPU.
        let before = cpu_ticks(pid);
        std::thread::sleep(std::time::Duration::from_millis(800));
        let idle = cpu_ticks(pid) - before;
        assert!(idle <= 2, "an idle worker used {idle} ticks of CPU in 0.8 s");
        // End of input ends it, spinning or not.
        drop(input);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the worker did not exit at EOF");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn an_isolated_worker_forks_per_call_and_answers_for_a_child_that_died() {
        let agent = "import json, os, sys\n\
                     N = 0\n\
                     def main():\n    \
                     global N\n    \
                     N += 1\n    \
                     if json.loads(sys.argv[1])['parameters'].get('die'):\n        os.kill(os.getpid(), 9)\n    \
                     print(json.dumps({'result': N}))\n\
                     if __name__ == '__main__':\n    main()\n";
        let (_dir, mut child) = worker_with(agent, &["auto", "greet", "1024", "isolated"]);
        let mut input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        match Announcement::parse(&line(&mut output)) {
            Some(Announcement::Ready {
                dispatch: Served::Main,
                isolated: Some(true),
                fork_refused: None,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let mut send = |id: u64, params: &str| {
            let request = format!("{{\"method\":\"greet\",\"parameters\":{params}}}");
            let text = serde_json::to_string(&Request {
                id,
                method: "greet",
                request: &request,
                spin: false,
                traceparent: None,
                tracestate: None,
            })
            .unwrap();
            writeln!(input, "{text}").unwrap();
        };
        for id in 1..=2 {
            send(id, "{}");
            let reply = Reply::parse(&line(&mut output)).unwrap();
            // Each call runs in a fresh fork: the counter is 1 every time.
            assert_eq!(
                (reply.id, reply.exit_code, reply.stdout.as_str()),
                (Some(id), 0, "{\"result\": 1}\n")
            );
            assert!(reply.peak_rss.is_some_and(|p| p > 0), "{reply:?}");
        }
        send(3, "{\"die\":1}");
        let died = Reply::parse(&line(&mut output)).unwrap();
        assert_eq!((died.id, died.signal, died.exiting), (Some(3), Some(9), false));
        send(4, "{}");
        assert_eq!(Reply::parse(&line(&mut output)).unwrap().stdout, "{\"result\": 1}\n");
        drop(input);
        assert_eq!(child.wait().unwrap().code(), Some(0));

        let threaded = format!(
            "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n{agent}"
        );
        let (_dir, mut child) = worker_with(&threaded, &["auto", "greet", "1024", "isolated"]);
        let mut output = BufReader::new(child.stdout.take().unwrap());
        match Announcement::parse(&line(&mut output)) {
            Some(Announcement::Ready { isolated: Some(false), fork_refused: Some(why), .. }) => {
                assert!(why.contains("1 Python threads") && why.contains("served warm"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        drop(child.stdin.take());
        let _ = child.wait();
    }

    #[test]
    fn an_agent_that_cannot_be_served_warm_or_fails_to_import_is_announced_as_such() {
        let (_dir, mut child) = worker("print('script style')\n", "auto");
        let mut output = BufReader::new(child.stdout.take().unwrap());
        match Announcement::parse(&line(&mut output)) {
            Some(Announcement::Ready { dispatch: Served::None, reason: Some(reason), .. }) => {
                assert!(reason.contains("__main__"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let _ = child.wait();
        let (_dir, mut child) = worker(
            "raise RuntimeError('no model')\ndef main(): pass\nif __name__ == '__main__':\n    main()\n",
            "auto",
        );
        let mut output = BufReader::new(child.stdout.take().unwrap());
        match Announcement::parse(&line(&mut output)) {
            Some(Announcement::Error { error }) => assert_eq!(error, "RuntimeError: no model"),
            other => panic!("{other:?}"),
        }
        let _ = child.wait();
    }
}
