//! [`TestAgent`]: writes a real agent (manifest + `agent.py`) whose methods follow scripts.

use std::path::Path;

use agenthub_core::ParamType;
use serde_json::{Map, Value as Json, json};

/// What a test method does when called.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Prints `{"result": value}`.
    Return(Json),
    /// Returns the parameters it received.
    EchoParams,
    /// Prints `{"error": message}` and exits 1.
    Raise(String),
    /// Sleeps, then returns the seconds slept.
    Sleep(f64),
    /// Prints noise lines on stdout, then the result.
    Noise {
        /// Text printed before the JSON line.
        noise: String,
        /// The result.
        value: Json,
    },
    /// Writes `stderr` and exits with `code` without printing JSON.
    Crash {
        /// The exit code.
        code: i32,
        /// What it writes to stderr first.
        stderr: String,
    },
    /// Kills itself with a signal.
    Signal(i32),
    /// Writes exactly this to stdout and exits 0.
    RawStdout(String),
    /// Starts a grandchild that ignores SIGTERM (its command line carries `token`), ignores
    /// SIGTERM itself, and sleeps for `seconds`.
    SpawnAndHang {
        /// Marker on the grandchild's command line.
        token: String,
        /// How long to sleep.
        seconds: f64,
    },
    /// Returns `{name: value or null}` for these environment variables.
    EnvVars(Vec<String>),
    /// Allocates and touches `mib` MiB, then returns `mib`.
    Allocate {
        /// How much.
        mib: u64,
    },
    /// Runs this Python code with `params` in scope; the code prints its own response.
    Script(String),
}

impl Behaviour {
    fn to_json(&self) -> Json {
        match self {
            Self::Return(value) => json!({"kind": "return", "value": value}),
            Self::EchoParams => json!({"kind": "echo"}),
            Self::Raise(message) => json!({"kind": "raise", "message": message}),
            Self::Sleep(seconds) => json!({"kind": "sleep", "seconds": seconds}),
            Self::Noise { noise, value } => json!({"kind": "noise", "noise": noise, "value": value}),
            Self::Crash { code, stderr } => json!({"kind": "crash", "code": code, "stderr": stderr}),
            Self::Signal(signal) => json!({"kind": "signal", "signal": signal}),
            Self::RawStdout(text) => json!({"kind": "raw", "stdout": text}),
            Self::SpawnAndHang { token, seconds } => {
                json!({"kind": "spawn", "token": token, "seconds": seconds})
            }
            Self::Allocate { mib } => json!({"kind": "allocate", "mib": mib}),
            Self::EnvVars(names) => json!({"kind": "env", "names": names}),
            Self::Script(code) => json!({"kind": "script", "code": code}),
        }
    }
}

/// One method of a [`TestAgent`].
#[derive(Debug, Clone, PartialEq)]
pub struct TestMethod {
    name: String,
    params: Vec<(String, Json)>,
    behaviour: Behaviour,
}

impl TestMethod {
    /// A method that returns `null` until told otherwise.
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), params: Vec::new(), behaviour: Behaviour::Return(Json::Null) }
    }

    /// Declares a parameter.
    #[must_use]
    pub fn param(mut self, name: &str, ty: ParamType, required: bool) -> Self {
        self.params.push((name.to_owned(), json!({"type": ty.as_str(), "required": required})));
        self
    }

    /// Declares an optional parameter with a default.
    #[must_use]
    pub fn param_default(mut self, name: &str, ty: ParamType, default: Json) -> Self {
        let mut spec = json!({"type": ty.as_str(), "required": false});
        spec["default"] = default;
        self.params.push((name.to_owned(), spec));
        self
    }

    /// Sets the behaviour.
    #[must_use]
    pub fn behaves(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// Returns `value`.
    #[must_use]
    pub fn returns(self, value: Json) -> Self {
        self.behaves(Behaviour::Return(value))
    }
}

/// A test agent: a manifest and an `agent.py` that follows each method's [`Behaviour`].
#[derive(Debug, Clone, PartialEq)]
pub struct TestAgent {
    namespace: String,
    name: String,
    methods: Vec<TestMethod>,
    requirements: Option<String>,
    dependencies: Vec<String>,
    python_version: Option<String>,
}

const AGENT_PY: &str = r#"import json, os, signal, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "behaviours.json"), encoding="utf-8") as f:
    BEHAVIOURS = json.load(f)

request = json.loads(sys.argv[1])
params = request.get("parameters", {})
b = BEHAVIOURS.get(request["method"])
if b is None:
    print(json.dumps({"error": "unknown method " + request["method"]}))
    sys.exit(1)
kind = b["kind"]
if kind == "return":
    print(json.dumps({"result": b["value"]}))
elif kind == "echo":
    print(json.dumps({"result": params}))
elif kind == "raise":
    print(json.dumps({"error": b["message"]}))
    sys.exit(1)
elif kind == "sleep":
    time.sleep(b["seconds"])
    print(json.dumps({"result": b["seconds"]}))
elif kind == "noise":
    print(b["noise"])
    print(json.dumps({"result": b["value"]}))
elif kind == "crash":
    sys.stderr.write(b["stderr"])
    sys.exit(b["code"])
elif kind == "signal":
    sys.stdout.flush()
    os.kill(os.getpid(), b["signal"])
elif kind == "raw":
    sys.stdout.write(b["stdout"])
elif kind == "spawn":
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    subprocess.Popen([sys.executable, "-c", code, b["token"]])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(b["seconds"])
    print(json.dumps({"result": "woke up"}))
elif kind == "env":
    print(json.dumps({"result": {n: os.environ.get(n) for n in b["names"]}}))
elif kind == "allocate":
    block = bytearray(b["mib"] * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    print(json.dumps({"result": b["mib"]}))
elif kind == "script":
    exec(b["code"], {"params": params, "json": json, "os": os, "signal": signal, "subprocess": subprocess, "sys": sys, "time": time})
"#;

impl TestAgent {
    /// An agent `test/<name>` with no methods yet.
    pub fn new(name: &str) -> Self {
        Self {
            namespace: "test".to_owned(),
            name: name.to_owned(),
            methods: Vec::new(),
            requirements: None,
            dependencies: Vec::new(),
            python_version: None,
        }
    }

    /// The namespace it installs under.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the namespace.
    #[must_use]
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.namespace);
        self
    }

    /// Adds a method.
    #[must_use]
    pub fn method(mut self, method: TestMethod) -> Self {
        self.methods.push(method);
        self
    }

    /// Writes a `requirements.txt`.
    #[must_use]
    pub fn requirements_txt(mut self, text: &str) -> Self {
        self.requirements = Some(text.to_owned());
        self
    }

    /// Adds manifest `dependencies`.
    #[must_use]
    pub fn dependency(mut self, requirement: &str) -> Self {
        self.dependencies.push(requirement.to_owned());
        self
    }

    /// Sets the manifest's `python_version`.
    #[must_use]
    pub fn python_version(mut self, constraint: &str) -> Self {
        self.python_version = Some(constraint.to_owned());
        self
    }

    /// The manifest as YAML (written in JSON's flow style, which YAML reads: `serde_yaml`
    /// cannot serialise `arbitrary_precision` numbers).
    pub fn manifest_yaml(&self) -> String {
        let mut methods = Map::new();
        for m in &self.methods {
            let params: Map<String, Json> = m.params.iter().cloned().collect();
            methods.insert(
                m.name.clone(),
                json!({"description": format!("test method {}", m.name), "parameters": params}),
            );
        }
        let mut doc = json!({
            "name": self.name,
            "version": "0.1.0",
            "description": "A test agent written by agenthub-testkit",
            "author": "agenthub-testkit",
            "interface": {"methods": methods},
        });
        if !self.dependencies.is_empty() {
            doc["dependencies"] = json!(self.dependencies);
        }
        if let Some(v) = &self.python_version {
            doc["python_version"] = json!(v);
        }
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }

    /// Writes the agent into `dir` (created if needed).
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        let behaviours: Map<String, Json> =
            self.methods.iter().map(|m| (m.name.clone(), m.behaviour.to_json())).collect();
        crate::create_test_agent(dir, &self.manifest_yaml(), AGENT_PY)?;
        std::fs::write(dir.join("behaviours.json"), Json::Object(behaviours).to_string())?;
        if let Some(reqs) = &self.requirements {
            std::fs::write(dir.join("requirements.txt"), reqs)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_manifest_that_parses_with_declared_order() {
        let agent = TestAgent::new("t")
            .method(TestMethod::new("b").param("x", ParamType::Integer, true))
            .method(TestMethod::new("a").param_default("y", ParamType::String, json!("d")));
        let m = agenthub_core::AgentManifest::from_yaml_str(&agent.manifest_yaml(), "agent.yaml").unwrap();
        assert_eq!(m.method_names(), ["b", "a"]);
        assert_eq!(m.method("a").unwrap().parameters["y"].default, Some(json!("d")));
    }
}
