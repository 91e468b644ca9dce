//! Test doubles and fixtures for code built on agenthub: mockall doubles of both backend
//! traits, a [`TestAgent`] builder that writes real agents with scripted behaviours, a
//! [`TestContext`] that owns a temporary home, and [`validate_runtime_interface`].

mod agent;
mod procs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use agent::{Behaviour, TestAgent, TestMethod};
use agenthub_core::Config;
pub use agenthub_env::MockEnvironmentBackend;
pub use agenthub_process::MockProcessBackend;
use agenthub_runtime::{
    AgentRuntime, DynEnvironmentBackend, DynProcessBackend, EnvBackendKind, ProcessBackendKind,
};
pub use procs::{
    PYTHON_MCP_REQUIREMENT, host_pid, python_mcp, real_python, reported_alive, reported_pid, survivors,
};

/// A temporary `AGENTHUB_HOME` with an agents root, removed on drop.
#[derive(Debug)]
pub struct TestContext {
    home: tempfile::TempDir,
    config: Config,
}

impl TestContext {
    /// A fresh home with default configuration.
    pub fn new() -> Self {
        let home =
            tempfile::Builder::new().prefix("agenthub-test-").tempdir().expect("create a temporary home");
        let config =
            Config::from_sources(home.path().to_path_buf(), None, []).expect("default configuration");
        std::fs::create_dir_all(config.agents_root()).expect("create the agents root");
        Self { home, config }
    }

    /// Changes the configuration.
    #[must_use]
    pub fn with_config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The configuration runtimes of this context get.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Writes `agent` under `<home>/agents/<namespace>/<name>`; returns its directory.
    pub fn install(&self, agent: &TestAgent) -> PathBuf {
        let dir = self.config.agents_root().join(agent.namespace()).join(agent.name());
        agent.write_to(&dir).expect("write the test agent");
        dir
    }

    /// A runtime with the default backends (real uv or pip, std processes).
    pub fn runtime(&self) -> AgentRuntime {
        AgentRuntime::from_config(self.config.clone()).expect("default backends are available")
    }

    /// A runtime with the named real backends.
    pub fn runtime_with_kinds(&self, env: EnvBackendKind, process: ProcessBackendKind) -> AgentRuntime {
        AgentRuntime::with_backends(self.config.clone(), Some(env), process)
            .expect("the backends are available")
    }

    /// A runtime over the given (usually mock) backends.
    pub fn runtime_with(&self, env: DynEnvironmentBackend, process: DynProcessBackend) -> AgentRuntime {
        AgentRuntime::new(self.config.clone(), env, process)
    }
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

/// A mock environment backend that "creates" an environment by making an empty
/// `bin/python` (so the runtime sees it as built) and accepts any install.
pub fn permissive_env_backend() -> Arc<MockEnvironmentBackend> {
    let mut env = MockEnvironmentBackend::new();
    env.expect_kind().return_const(EnvBackendKind::Uv);
    env.expect_python_executable().returning(|venv| venv.join("bin").join("python"));
    env.expect_create_venv_discovering().returning(|_, _, _| Ok(false));
    env.expect_create_venv().returning(|venv, _, _| {
        std::fs::create_dir_all(venv.join("bin")).expect("create bin");
        std::fs::write(venv.join("bin").join("python"), "").expect("create python");
        Ok(())
    });
    env.expect_install().returning(|_, _, _| Ok(()));
    Arc::new(env)
}

/// The file that proves a directory was written by [`create_test_agent`].
pub const TEST_AGENT_MARKER: &str = ".agenthub-test-agent";

/// Writes an agent from a manifest and code (Phase-1 `create_test_agent`), with
/// [`TEST_AGENT_MARKER`] so that [`cleanup_test_agent`] can prove it made the directory.
pub fn create_test_agent(agent_path: &Path, manifest_yaml: &str, agent_code: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(agent_path)?;
    std::fs::write(agent_path.join(TEST_AGENT_MARKER), b"written by agenthub-testkit\n")?;
    std::fs::write(agent_path.join("agent.yaml"), manifest_yaml)?;
    std::fs::write(agent_path.join("agent.py"), agent_code)
}

/// Removes an agent written by [`create_test_agent`] (Phase-1 `cleanup_test_agent`). Refuses
/// (`InvalidInput`) a symlink or a directory without [`TEST_AGENT_MARKER`]: agenthub deletes
/// only what it created. A missing directory is not an error.
pub fn cleanup_test_agent(agent_path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(agent_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(meta) if !meta.is_dir() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a directory written by create_test_agent", agent_path.display()),
            ));
        }
        Ok(_) => {}
    }
    if !std::fs::symlink_metadata(agent_path.join(TEST_AGENT_MARKER)).is_ok_and(|m| m.is_file()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} has no {TEST_AGENT_MARKER}: not written by create_test_agent", agent_path.display()),
        ));
    }
    match std::fs::remove_dir_all(agent_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Checks that a runtime behaves as the Phase-1 interface says, using a probe agent in a
/// temporary directory. Returns every violation found.
///
/// Runs the probe agent for real through the runtime's own backends, on the calling thread.
pub fn validate_runtime_interface(runtime: &AgentRuntime) -> Result<(), Vec<String>> {
    let mut violations = Vec::new();
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return Err(vec![format!("cannot create a temporary directory: {e}")]),
    };
    let probe = TestAgent::new("probe").method(TestMethod::new("ping").returns(serde_json::json!("pong")));
    let agent_dir = dir.path().join("probe");
    if let Err(e) = probe.write_to(&agent_dir) {
        return Err(vec![format!("cannot write the probe agent: {e}")]);
    }
    let agent = agent_dir.to_string_lossy().into_owned();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            violations.push(what.to_owned());
        }
    };
    match runtime.load_agent_manifest(&agent) {
        Ok(m) => {
            check(
                m.name == "probe" && m.method("ping").is_some(),
                "load_agent_manifest returns the manifest",
            );
        }
        Err(e) => check(false, &format!("load_agent_manifest failed: {e}")),
    }
    check(
        runtime.validate_method(&agent, "ping").ok() == Some(true),
        "validate_method finds a declared method",
    );
    check(
        runtime.validate_method(&agent, "nope").ok() == Some(false),
        "validate_method refuses an undeclared one",
    );
    check(
        runtime.get_agent_info(&agent).is_ok_and(|i| i.manifest.version == "0.1.0"),
        "get_agent_info returns the agent's metadata",
    );
    let ok = runtime.execute_agent_blocking(&agent, "ping", serde_json::Map::new());
    check(
        ok.result() == Some(&serde_json::json!("pong")),
        &format!("execute_agent returns the result (got {})", ok.to_json()),
    );
    let missing = runtime.execute_agent_blocking(&agent, "nope", serde_json::Map::new());
    check(
        missing.error().map(agenthub_core::AgentRuntimeError::error_type) == Some("MethodNotFoundError"),
        "an unknown method is a MethodNotFoundError",
    );
    let absent =
        runtime.execute_agent_blocking("/nonexistent/agenthub/probe", "ping", serde_json::Map::new());
    check(
        absent.error().map(agenthub_core::AgentRuntimeError::error_type) == Some("AgentNotFoundError"),
        "a missing agent is an AgentNotFoundError",
    );
    if violations.is_empty() { Ok(()) } else { Err(violations) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_removes_only_what_create_wrote() {
        let root = tempfile::tempdir().unwrap();
        let agent = root.path().join("agent");
        create_test_agent(&agent, "name: x\n", "print(1)\n").unwrap();
        cleanup_test_agent(&agent).unwrap();
        assert!(!agent.exists());
        cleanup_test_agent(&agent).unwrap();

        // A directory without the marker, and a symlink to one with it, are left alone.
        let precious = root.path().join("precious");
        std::fs::create_dir(&precious).unwrap();
        std::fs::write(precious.join("notes.txt"), "keep").unwrap();
        assert_eq!(cleanup_test_agent(&precious).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        std::fs::write(precious.join(TEST_AGENT_MARKER), "").unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&precious, &link).unwrap();
        assert_eq!(cleanup_test_agent(&link).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        assert!(precious.join("notes.txt").exists());
    }
}
