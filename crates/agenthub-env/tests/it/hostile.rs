//! Agent directories are untrusted input: what the environment manager must never delete,
//! follow, block on or wait for without end.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenthub_core::{EnvBackendKind, EnvironmentConfig};
use agenthub_env::{EnvError, EnvironmentManager, backend_for};

use crate::manager::{agent_with, builds, manager, manifest, python_says};

fn ensure(m: &EnvironmentManager, agent: &Path) -> Result<agenthub_env::ReadyEnvironment, EnvError> {
    pollster::block_on(m.ensure_environment(agent, &manifest()))
}

fn with_config(config: EnvironmentConfig) -> EnvironmentManager {
    EnvironmentManager::new(backend_for(EnvBackendKind::Uv, true).unwrap(), config)
}

/// A directory of precious files: what a user might have anywhere.
fn precious() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["project-a", "project-b"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::write(dir.path().join(sub).join("work.txt"), "months of work").unwrap();
    }
    dir
}

fn assert_intact(dir: &Path) {
    for sub in ["project-a", "project-b"] {
        assert_eq!(std::fs::read_to_string(dir.join(sub).join("work.txt")).unwrap(), "months of work");
    }
}

#[test]
fn a_builds_directory_that_is_a_symlink_is_never_followed() {
    let home = precious();
    let agent = agent_with(&[]);
    symlink(home.path(), agent.path().join(".venv.d")).unwrap();
    let m = manager(EnvBackendKind::Uv);
    for _ in 0..2 {
        let err = ensure(&m, agent.path()).unwrap_err();
        assert!(matches!(err, EnvError::NotOurs { .. }), "{err:?}");
        let err = pollster::block_on(m.rebuild_environment(agent.path(), &manifest())).unwrap_err();
        assert!(matches!(err, EnvError::NotOurs { .. }), "{err:?}");
    }
    assert_intact(home.path());
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 2, "something was written into the target");
    let suggestion = err_suggestion(&m, agent.path());
    assert!(suggestion.contains("move"), "{suggestion}");
}

fn err_suggestion(m: &EnvironmentManager, agent: &Path) -> String {
    ensure(m, agent).unwrap_err().suggestion()
}

#[test]
fn a_builds_directory_agenthub_did_not_make_is_left_alone() {
    let agent = agent_with(&[]);
    let foreign = agent.path().join(".venv.d");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::create_dir(foreign.join("notes")).unwrap();
    std::fs::write(foreign.join("notes/todo.txt"), "keep").unwrap();
    let err = ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap_err();
    assert!(matches!(err, EnvError::NotOurs { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(foreign.join("notes/todo.txt")).unwrap(), "keep");
}

#[test]
fn a_builds_directory_of_an_older_agenthub_is_adopted() {
    let agent = agent_with(&[]);
    let stale = agent.path().join(".venv.d/0123456789abcdef0123456789abcdef-1-000000001");
    std::fs::create_dir_all(&stale).unwrap();
    let env = ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap();
    assert!(env.built);
    assert!(!stale.exists(), "the older agenthub's failed build was not collected");
    assert_eq!(builds(agent.path()).len(), 1);
}

#[test]
fn venv_location_outside_the_agent_directory_is_refused() {
    let parent = precious();
    let agent_dir = parent.path().join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    std::fs::write(agent_dir.join("agent.py"), "print('{}')").unwrap();
    let absolute = parent.path().join("project-a").display().to_string();
    for location in ["..", "", ".", absolute.as_str(), "../project-b", "a/b"] {
        let m = with_config(EnvironmentConfig {
            venv_location: location.to_owned(),
            ..EnvironmentConfig::default()
        });
        let err = ensure(&m, &agent_dir).unwrap_err();
        assert!(matches!(err, EnvError::BadVenvLocation { .. }), "{location:?}: {err:?}");
        let err = pollster::block_on(m.rebuild_environment(&agent_dir, &manifest())).unwrap_err();
        assert!(matches!(err, EnvError::BadVenvLocation { .. }), "{location:?}: {err:?}");
    }
    assert_intact(parent.path());
    assert!(agent_dir.join("agent.py").exists());
}

#[test]
fn an_authors_own_venv_is_never_deleted() {
    let agent = agent_with(&[]);
    let own = agent.path().join(".venv");
    std::fs::create_dir_all(own.join("lib")).unwrap();
    std::fs::write(own.join("lib/mine.py"), "x = 1").unwrap();
    let err = ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap_err();
    assert!(matches!(err, EnvError::NotOurs { .. }), "{err:?}");
    assert!(err.suggestion().contains("venv_location"), "{}", err.suggestion());
    assert_eq!(std::fs::read_to_string(own.join("lib/mine.py")).unwrap(), "x = 1");
    // A symlink the author made is theirs too.
    let other = agent_with(&[]);
    let target = precious();
    symlink(target.path(), other.path().join(".venv")).unwrap();
    assert!(matches!(ensure(&manager(EnvBackendKind::Uv), other.path()), Err(EnvError::NotOurs { .. })));
    assert_eq!(std::fs::read_link(other.path().join(".venv")).unwrap(), target.path());
    // The way out the suggestion names works, and leaves the author's .venv alone.
    let m = with_config(EnvironmentConfig {
        venv_location: ".agenthub-venv".to_owned(),
        ..EnvironmentConfig::default()
    });
    let env = ensure(&m, agent.path()).unwrap();
    assert_eq!(python_says(&env.python, "print(2)"), "2");
    assert_eq!(std::fs::read_to_string(own.join("lib/mine.py")).unwrap(), "x = 1");
}

#[test]
fn a_lock_file_symlink_is_not_followed() {
    let agent = agent_with(&[]);
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("created-by-agenthub");
    symlink(&target, agent.path().join(".venv.lock")).unwrap();
    let err = ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap_err();
    assert!(matches!(err, EnvError::NotOurs { .. }), "{err:?}");
    assert!(!target.exists(), "the lock was created through the symlink");
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn requirement_files_that_are_fifos_or_devices_fail_at_once() {
    for name in ["requirements.txt", "pyproject.toml"] {
        let agent = agent_with(&[]);
        mkfifo(&agent.path().join(name));
        let started = Instant::now();
        let err = ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap_err();
        assert!(matches!(err, EnvError::AgentFile(_)), "{name}: {err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("FIFO"), "{err}");
    }
    let agent = agent_with(&[]);
    symlink("/dev/zero", agent.path().join("requirements.txt")).unwrap();
    let err = ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    // A lock file: big regular files are refused by size, not read to the end.
    let agent = agent_with(&[("pyproject.toml", "[project]\nname='a'\nversion='0'\n")]);
    let lock = std::fs::File::create(agent.path().join("uv.lock")).unwrap();
    lock.set_len(agenthub_env::MAX_LOCK_BYTES + 1).unwrap();
    let err = ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn options_in_dependency_lists_are_refused() {
    let agent = agent_with(&[(
        "pyproject.toml",
        "[project]\nname='a'\nversion='0'\ndependencies=['--target=/tmp/x']\n",
    )]);
    let err = ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap_err();
    assert!(matches!(err, EnvError::BadRequirement { .. }), "{err:?}");
}

#[test]
fn installers_run_in_the_agent_directory() {
    // `-e .` in requirements.txt means the agent's own project, wherever the caller stands.
    let agent = agent_with(&[
        ("requirements.txt", "-e .\n"),
        (
            "pyproject.toml",
            "[project]\nname = 'agentpkg'\nversion = '0.3'\n\n[build-system]\nrequires = ['setuptools>=61']\n\
             build-backend = 'setuptools.build_meta'\n\n[tool.setuptools]\npy-modules = ['agent']\n",
        ),
        ("agent.py", "VALUE = 42\n"),
    ]);
    let env = ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap();
    let version = python_says(&env.python, "import importlib.metadata as m; print(m.version('agentpkg'))");
    assert_eq!(version, "0.3");
}

#[test]
fn a_hanging_index_is_cut_off_by_the_build_timeout() {
    // An index on loopback that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let agent = agent_with(&[(
        "requirements.txt",
        &format!("--index-url http://127.0.0.1:{port}/simple\nagenthub-never-answered==1\n"),
    )]);
    let m = EnvironmentManager::new(
        backend_for(EnvBackendKind::Uv, false).unwrap(),
        EnvironmentConfig::default(),
    )
    .with_build_limits(Duration::from_secs(3), Duration::from_secs(5), false);
    let started = Instant::now();
    let err = ensure(&m, agent.path()).unwrap_err();
    assert!(matches!(err, EnvError::BuildTimeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert!(builds(agent.path()).is_empty(), "the killed build was left behind");
    assert!(!agent.path().join(".venv").exists());
    drop(listener);
}

#[test]
fn waiting_for_another_build_is_bounded() {
    let agent = agent_with(&[]);
    let holder = std::fs::File::create(agent.path().join(".venv.lock")).unwrap();
    holder.lock().unwrap();
    let m = manager(EnvBackendKind::Uv).with_build_limits(
        Duration::from_millis(500),
        Duration::from_secs(5),
        false,
    );
    let started = Instant::now();
    let err = ensure(&m, agent.path()).unwrap_err();
    assert!(matches!(err, EnvError::LockTimeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(holder);
    assert!(ensure(&manager(EnvBackendKind::Uv), agent.path()).unwrap().built);
}

#[test]
fn a_cold_build_does_not_block_the_async_executor() {
    let mut slow = agenthub_env::MockEnvironmentBackend::new();
    slow.expect_kind().return_const(EnvBackendKind::Uv);
    slow.expect_python_executable().returning(|venv| venv.join("bin").join("python"));
    slow.expect_create_venv_discovering().returning(|_, _, _| Ok(false));
    slow.expect_create_venv().returning(|venv, _, _| {
        std::thread::sleep(Duration::from_millis(600));
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin").join("python"), "").unwrap();
        Ok(())
    });
    let m = EnvironmentManager::new(Arc::new(slow), EnvironmentConfig::default());
    let agent = agent_with(&[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = Arc::clone(&ticks);
    rt.block_on(async {
        let ticker = tokio::spawn(async move {
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let env = m.ensure_environment(agent.path(), &manifest()).await.unwrap();
        assert!(env.built);
        ticker.abort();
    });
    // The 600 ms build ran on its own thread: the one executor thread kept ticking.
    let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(ticks >= 20, "only {ticks} ticks of 10 ms during a 600 ms build");
}
