//! The library's install path: `Installer` and auto-install on the call path, which is off
//! unless configured, never for paths, and reports through `Progress`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use agenthub_runtime::{BuildProgress, InstallError, InstallOptions, ProcessBackendKind, Progress};
use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod};
use serde_json::{Map, json};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn step(&self, message: &str) {
        self.0.lock().unwrap().push(format!("step: {message}"));
    }

    fn notice(&self, message: &str) {
        self.0.lock().unwrap().push(format!("notice: {message}"));
    }
}

impl BuildProgress for Recorder {}

/// A git repository `<repos>/acme/pinger` holding an agent whose `ping` returns `answer`.
fn repo(repos: &Path, answer: &str) {
    let dir = repos.join("acme/pinger");
    TestAgent::new("pinger")
        .method(TestMethod::new("ping").behaves(Behaviour::Return(json!(answer))))
        .write_to(&dir)
        .unwrap();
    for args in [&["init", "-q"][..], &["add", "-A"], &["commit", "-qm", "v1"]] {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

fn context(repos: &Path, auto_install: Option<bool>) -> TestContext {
    let registry = format!("file://{}/{{ns}}/{{name}}", repos.display());
    TestContext::new().with_config(|c| {
        c.registry = registry;
        c.install.auto_install = auto_install;
    })
}

#[test]
fn auto_install_is_off_for_the_library_by_default_and_on_when_configured() {
    let repos = tempfile::tempdir().unwrap();
    repo(repos.path(), "pong");
    let off = context(repos.path(), None);
    let response =
        pollster::block_on(off.runtime().execute_agent("acme/pinger", "ping", Map::new())).to_json();
    assert_eq!(response["error_type"], "AgentNotFoundError", "{response}");
    assert!(!off.config().agents_root().join("acme/pinger").exists());

    let on = context(repos.path(), Some(true));
    let progress = Arc::new(Recorder::default());
    let rt = on
        .runtime_with_kinds(agenthub_runtime::EnvBackendKind::Uv, ProcessBackendKind::Tokio)
        .with_progress(progress.clone());
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let response = tokio.block_on(rt.execute_agent("acme/pinger", "ping", Map::new())).to_json();
    assert_eq!(response["result"], "pong", "{response}");
    let said = progress.0.lock().unwrap().clone();
    assert!(said.iter().any(|m| m.starts_with("notice: acme/pinger is not installed")), "{said:?}");
    assert!(said.iter().any(|m| m == "step: creating environment"), "{said:?}");
    let record = agenthub_core::read_install_record(&on.config().agents_root().join("acme/pinger")).unwrap();
    assert_eq!(record.agent_name, "acme/pinger");
    assert_eq!(record.source_kind, agenthub_core::SourceKind::Git);
    // A path is never installed, whatever the setting.
    let response = tokio.block_on(rt.execute_agent("./acme/pinger", "ping", Map::new())).to_json();
    assert_eq!(response["error_type"], "AgentNotFoundError");
}

#[test]
fn installer_refuses_what_it_did_not_make_and_reinstalls_what_it_did() {
    let repos = tempfile::tempdir().unwrap();
    repo(repos.path(), "pong");
    let ctx = context(repos.path(), None);
    let installer = ctx.runtime().installer();
    let first = installer
        .install("acme/pinger", &InstallOptions { no_env: true, ..InstallOptions::default() })
        .unwrap();
    assert!(!first.replaced && !first.environment_built);
    let again = installer.install("acme/pinger", &InstallOptions::default());
    assert!(matches!(again, Err(InstallError::AlreadyInstalled { .. })), "{again:?}");
    let missing = installer.install_missing(&"acme/pinger".parse().unwrap()).unwrap();
    assert!(missing.already_installed);
    let forced = installer
        .install("acme/pinger", &InstallOptions { force: true, ..InstallOptions::default() })
        .unwrap();
    assert!(forced.replaced && forced.environment_built);
    // Hand-made: never replaced.
    ctx.install(
        &TestAgent::new("byhand").method(TestMethod::new("ping").behaves(Behaviour::Return(json!(1)))),
    );
    let options = InstallOptions {
        as_id: Some("test/byhand".parse().unwrap()),
        force: true,
        ..InstallOptions::default()
    };
    let refused = installer.install("acme/pinger", &options);
    assert!(matches!(refused, Err(InstallError::NotOurs { .. })), "{refused:?}");
    assert!(matches!(installer.remove("test/byhand"), Err(InstallError::NotOurs { .. })));
    assert!(ctx.config().agents_root().join("test/byhand/agent.yaml").exists());
    let removed = installer.remove("acme/pinger").unwrap();
    assert!(removed.freed_bytes > 0);
    assert!(!ctx.config().agents_root().join("acme/pinger").exists());
}
