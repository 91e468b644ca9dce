//! The Ray driver's protocol as types: what the runtime writes to `ray/driver.py` and what
//! it reads back (newline-delimited JSON on the driver's stdin and stdout, many calls in
//! flight, matched by id). The tests below drive the real driver's Python code with these
//! types, so the two sides cannot drift apart silently.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Runtime → driver.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum ToDriver<'a> {
    /// The first line: where the cluster is and how to run calls.
    Hello {
        /// The cluster (`None`: `RAY_ADDRESS`, else the one running here).
        address: Option<&'a str>,
        /// Actors per agent.
        actors_per_agent: usize,
        /// Seconds an actor may take to start (its environment is built then).
        build_timeout: f64,
        /// The warm worker's bootstrap, whose dispatch functions the actors run.
        bootstrap: &'a str,
    },
    /// One call.
    Call {
        /// Matches the answer.
        id: u64,
        /// The agent's directory (shipped to the cluster through the object store).
        agent_dir: &'a Path,
        /// The environment key: actors are pooled per directory and key.
        key: &'a str,
        /// SPEC §3's requirement set, for `runtime_env.pip`.
        requirements: &'a [String],
        /// The method.
        method: &'a str,
        /// The exact request text a one-shot call gets as `sys.argv[1]`.
        request: &'a str,
        /// Seconds; `None` for no limit.
        timeout: Option<f64>,
        /// `auto`, `main` or `instance`.
        dispatch: &'a str,
        /// The manifest's methods (for instance dispatch).
        methods: &'a [String],
    },
    /// Stop a call (its actor is killed).
    Cancel {
        /// The call's id.
        id: u64,
    },
    /// Report the cluster and the pools.
    Status {
        /// Matches the answer.
        id: u64,
    },
}

impl ToDriver<'_> {
    /// The message as one protocol line, without its newline.
    pub(crate) fn line(&self) -> String {
        // Strings, numbers and paths only: serialising cannot fail (a non-UTF-8 path is
        // refused by serde and sent as an empty object, which the driver ignores).
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Why the driver could not connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConnectError {
    /// Its Python cannot import ray.
    NoRay,
    /// `ray.init` failed (also any kind this runtime does not know).
    #[serde(other)]
    Unreachable,
}

/// Driver → runtime, the first line.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Greeting {
    /// Connected.
    Ready {
        /// The driver's Ray version.
        ray_version: String,
        /// The driver's Python version.
        python: String,
        /// Nodes alive.
        #[serde(default)]
        nodes: Option<u64>,
        /// The cluster's GCS address.
        #[serde(default)]
        address: Option<String>,
    },
    /// Not connected.
    Error {
        /// Why.
        kind: ConnectError,
        /// What Python said.
        message: String,
    },
}

/// Why a call failed on the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CallErrorKind {
    /// The node could not build the agent's environment.
    Environment,
    /// Importing `agent.py` in the actor failed.
    Import,
    /// The call passed its timeout.
    Timeout,
    /// The call was cancelled.
    Cancelled,
    /// The actor died (also any kind this runtime does not know).
    #[serde(other)]
    ActorDied,
}

/// A call's failure.
#[derive(Debug, Deserialize)]
pub(crate) struct CallError {
    /// Why.
    pub(crate) kind: CallErrorKind,
    /// The details.
    #[serde(default)]
    pub(crate) message: String,
}

/// One actor pool, in a status answer.
#[derive(Debug, Deserialize)]
pub(crate) struct PoolStatus {
    /// The agent directory.
    pub(crate) agent_dir: String,
    /// Actors alive or starting.
    #[serde(default)]
    pub(crate) actors: u64,
    /// Calls queued or running.
    #[serde(default)]
    pub(crate) in_flight: u64,
}

/// Driver → runtime, after the greeting: the answer to a call or a status request. One
/// struct rather than an untagged enum: `serde_json`'s `arbitrary_precision` (on in this
/// workspace) does not mix with untagged enums.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Answer {
    /// The request's id.
    pub(crate) id: Option<u64>,
    /// A call's failure (then no output fields).
    #[serde(default)]
    pub(crate) error: Option<CallError>,
    /// A call's stdout.
    #[serde(default)]
    pub(crate) stdout: String,
    /// A call's exit code, as one-shot.
    #[serde(default)]
    pub(crate) exit_code: Option<i64>,
    /// A call's stderr tail.
    #[serde(default)]
    pub(crate) stderr: String,
    /// A call's peak resident memory, bytes.
    #[serde(default)]
    pub(crate) peak_rss: Option<u64>,
    /// A status answer's pools.
    #[serde(default)]
    pub(crate) pools: Option<Vec<PoolStatus>>,
    /// A status answer's live nodes.
    #[serde(default)]
    pub(crate) nodes: Option<u64>,
    /// A status answer's Ray version on a node.
    #[serde(default)]
    pub(crate) cluster_ray_version: Option<String>,
}

impl Answer {
    /// Reads an answer line; `None` when it is not one.
    pub(crate) fn parse(line: &[u8]) -> Option<Self> {
        serde_json::from_slice(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    /// Runs `code` with the driver's source loaded as a module (no Ray needed): what
    /// `ray/driver.py` writes and reads, checked against these types.
    fn python(code: &str, stdin: &str) -> Vec<u8> {
        let script = format!(
            "import io, json, sys\nns = {{'__name__': 'agenthub_ray_driver'}}\n\
             exec(compile(sys.argv[1], '<driver>', 'exec'), ns)\n{code}"
        );
        let mut child = Command::new("python3")
            .args(["-c", &script, crate::ray::DRIVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn the_driver_reads_what_the_runtime_writes() {
        let requirements = vec!["six==1.16.0".to_owned()];
        let methods = vec!["greet".to_owned()];
        let lines = [
            ToDriver::Hello { address: None, actors_per_agent: 2, build_timeout: 600.0, bootstrap: "x = 1" },
            ToDriver::Call {
                id: 5,
                agent_dir: Path::new("/srv/agent"),
                key: "k",
                requirements: &requirements,
                method: "greet",
                request: "{}",
                timeout: Some(2.5),
                dispatch: "auto",
                methods: &methods,
            },
            ToDriver::Cancel { id: 5 },
            ToDriver::Status { id: 6 },
        ]
        .iter()
        .map(|m| m.line() + "\n")
        .collect::<String>();
        // The fields the driver reads from each message, by the names it uses.
        let seen = python(
            "for line in sys.stdin:\n    m = json.loads(line)\n    print(m['type'], sorted(m))\n",
            &lines,
        );
        assert_eq!(
            String::from_utf8(seen).unwrap(),
            "hello ['actors_per_agent', 'address', 'bootstrap', 'build_timeout', 'type']\n\
             call ['agent_dir', 'dispatch', 'id', 'key', 'method', 'methods', 'request', 'requirements', 'timeout', 'type']\n\
             cancel ['id', 'type']\n\
             status ['id', 'type']\n"
        );
    }

    #[test]
    fn the_runtime_reads_what_the_driver_writes() {
        // The driver's own `_send` and the messages it builds, as in ray/driver.py.
        let out = python(
            "buf = io.BytesIO()\n\
             send = ns['_send']\n\
             send(buf, {'type': 'ready', 'ray_version': '2.60.0', 'python': '3.11.7', 'nodes': 1, 'address': '127.0.0.1:6379'})\n\
             send(buf, {'type': 'error', 'kind': 'no_ray', 'message': 'ModuleNotFoundError: ray'})\n\
             send(buf, {'id': 5, 'stdout': 'out', 'exit_code': 0, 'stderr': 'err', 'peak_rss': 123})\n\
             send(buf, {'id': 6, 'error': {'kind': 'timeout', 'message': 'too slow'}})\n\
             send(buf, {'id': 7, 'error': {'kind': 'something new', 'message': 'x'}})\n\
             send(buf, {'id': 8, 'type': 'status', 'pools': [{'agent_dir': '/a', 'actors': 2, 'in_flight': 1}], 'nodes': 3, 'cluster_ray_version': '2.60.0'})\n\
             sys.stdout.buffer.write(buf.getvalue())\n",
            "",
        );
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 6);
        assert!(matches!(
            serde_json::from_slice::<Greeting>(lines[0]).unwrap(),
            Greeting::Ready { ref ray_version, nodes: Some(1), .. } if ray_version == "2.60.0"
        ));
        assert!(matches!(
            serde_json::from_slice::<Greeting>(lines[1]).unwrap(),
            Greeting::Error { kind: ConnectError::NoRay, .. }
        ));
        let ran = Answer::parse(lines[2]).unwrap();
        assert_eq!(
            (ran.id, ran.exit_code, ran.stdout.as_str(), ran.peak_rss),
            (Some(5), Some(0), "out", Some(123))
        );
        let failed = Answer::parse(lines[3]).unwrap();
        assert_eq!(failed.error.as_ref().map(|e| e.kind), Some(CallErrorKind::Timeout));
        assert_eq!(Answer::parse(lines[4]).unwrap().error.map(|e| e.kind), Some(CallErrorKind::ActorDied));
        let status = Answer::parse(lines[5]).unwrap();
        assert_eq!((status.id, status.nodes), (Some(8), Some(3)));
        assert_eq!(status.pools.unwrap()[0].in_flight, 1);
    }
}
