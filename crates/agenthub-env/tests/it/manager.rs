//! `EnvironmentManager` end to end, once per backend.

use std::path::Path;
use std::sync::Arc;

use agenthub_core::{AgentManifest, EnvBackendKind, EnvironmentConfig};
use agenthub_env::{EnvError, EnvironmentManager, MARKER_FILE, backend_for, read_marker};

pub(crate) const MANIFEST: &str =
    "name: t\nversion: '1'\ndescription: d\nauthor: a\ninterface:\n  methods:\n    m: {description: d}\n";

pub(crate) fn manifest() -> AgentManifest {
    AgentManifest::from_yaml_str(MANIFEST, "agent.yaml").unwrap()
}

pub(crate) fn manager(kind: EnvBackendKind) -> EnvironmentManager {
    EnvironmentManager::new(
        backend_for(kind, true).expect("backend tool installed"),
        EnvironmentConfig::default(),
    )
}

pub(crate) fn agent_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("agent.yaml"), MANIFEST).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

pub(crate) fn python_says(python: &Path, code: &str) -> String {
    let out = std::process::Command::new(python).args(["-c", code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

macro_rules! each_backend {
    ($($name:ident),* $(,)?) => {
        mod uv { $( #[test] fn $name() { super::$name(agenthub_core::EnvBackendKind::Uv) } )* }
        mod pip { $( #[test] fn $name() { super::$name(agenthub_core::EnvBackendKind::Pip) } )* }
        mod virtualenv { $( #[test] fn $name() { super::$name(agenthub_core::EnvBackendKind::Virtualenv) } )* }
    };
}

each_backend!(
    builds_once_installs_requirements_and_reuses,
    changed_requirements_rebuild,
    failed_install_reports_stderr_and_leaves_no_marker,
);

fn builds_once_installs_requirements_and_reuses(kind: EnvBackendKind) {
    let agent = agent_with(&[("requirements.txt", "# pinned\nsix==1.16.0\n")]);
    let m = manager(kind);
    let env = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap();
    assert!(env.built);
    assert_eq!(python_says(&env.python, "import six; print(six.__version__)"), "1.16.0");
    let marker = read_marker(&env.venv).unwrap();
    assert_eq!(marker.backend, kind.as_str());
    assert_eq!(marker.requirements_source, "requirements.txt");
    let again = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap();
    assert!(!again.built);
    assert_eq!(again.key, env.key);
}

fn changed_requirements_rebuild(kind: EnvBackendKind) {
    let agent = agent_with(&[]);
    let m = manager(kind);
    let first = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap();
    assert!(first.built);
    // Touching an unrelated file changes nothing.
    std::fs::write(agent.path().join("notes.txt"), "x").unwrap();
    assert!(!pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap().built);
    std::fs::write(agent.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
    let second = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap();
    assert!(second.built);
    assert_ne!(first.key, second.key);
    assert_eq!(python_says(&second.python, "import six; print(six.__version__)"), "1.16.0");
}

fn failed_install_reports_stderr_and_leaves_no_marker(kind: EnvBackendKind) {
    let agent = agent_with(&[("requirements.txt", "agenthub-no-such-package-xyz==9.9.9\n")]);
    let m = manager(kind);
    let err = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap_err();
    let EnvError::CommandFailed { stderr, .. } = &err else { panic!("{err:?}") };
    assert!(stderr.contains("agenthub-no-such-package-xyz"), "{stderr}");
    assert!(!agent.path().join(".venv").join(MARKER_FILE).exists());
    let runtime_error = agenthub_core::AgentRuntimeError::from(err);
    assert_eq!(runtime_error.error_type(), "EnvironmentError");
    assert!(runtime_error.stderr().unwrap().contains("agenthub-no-such-package-xyz"));
}

#[test]
fn manifest_dependencies_and_pyproject_are_installed() {
    let m = manager(EnvBackendKind::Uv);
    let agent = agent_with(&[(
        "pyproject.toml",
        "[project]\nname = 'a'\nversion = '0'\ndependencies = ['six==1.16.0']\n",
    )]);
    let env = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap();
    assert_eq!(read_marker(&env.venv).unwrap().requirements, ["six==1.16.0"]);
    assert_eq!(python_says(&env.python, "import six; print(six.__version__)"), "1.16.0");

    let with_deps =
        AgentManifest::from_yaml_str(&format!("{MANIFEST}dependencies: ['six==1.15.0']\n"), "agent.yaml")
            .unwrap();
    let agent = agent_with(&[]);
    let env = pollster::block_on(m.ensure_environment(agent.path(), &with_deps)).unwrap();
    assert_eq!(python_says(&env.python, "import six; print(six.__version__)"), "1.15.0");
}

#[test]
fn uv_lock_is_installed_frozen() {
    let agent = agent_with(&[(
        "pyproject.toml",
        "[project]\nname = 'locked'\nversion = '0.1.0'\nrequires-python = '>=3.8'\ndependencies = ['six==1.16.0']\n",
    )]);
    let lock = std::process::Command::new("uv")
        .args(["lock", "--quiet", "--directory"])
        .arg(agent.path())
        .output()
        .unwrap();
    assert!(lock.status.success(), "{}", String::from_utf8_lossy(&lock.stderr));
    let m = manager(EnvBackendKind::Uv);
    let env = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap();
    assert_eq!(read_marker(&env.venv).unwrap().requirements_source, "uv.lock");
    assert_eq!(python_says(&env.python, "import six; print(six.__version__)"), "1.16.0");
    // The project itself is never installed: it runs from its directory.
    let project =
        python_says(&env.python, "import importlib.util as u; print(u.find_spec('locked') is None)");
    assert_eq!(project, "True");
}

#[test]
fn concurrent_callers_build_one_environment() {
    let agent = agent_with(&[("requirements.txt", "six==1.16.0\n")]);
    let m = Arc::new(manager(EnvBackendKind::Uv));
    let path = agent.path().to_path_buf();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (m, path) = (Arc::clone(&m), path.clone());
            std::thread::spawn(move || pollster::block_on(m.ensure_environment(&path, &manifest())).unwrap())
        })
        .collect();
    let built = handles.into_iter().map(|h| h.join().unwrap()).filter(|env| env.built).count();
    assert_eq!(built, 1);
}

#[test]
fn activation_puts_the_venv_first_and_drops_pythonhome() {
    let act = EnvironmentManager::activate_environment(Path::new("/x/.venv"));
    assert_eq!(act.set[0], ("VIRTUAL_ENV".to_owned(), "/x/.venv".into()));
    assert!(act.set[1].1.to_string_lossy().starts_with("/x/.venv/bin"));
    assert_eq!(act.remove, ["PYTHONHOME"]);
}

#[test]
fn phase1_create_and_install() {
    let m = manager(EnvBackendKind::Pip);
    let agent = agent_with(&[]);
    let venv = pollster::block_on(m.create_environment(agent.path())).unwrap();
    assert_eq!(venv, agent.path().join(".venv"));
    pollster::block_on(m.install_dependencies(&venv, &["six==1.16.0".to_owned()])).unwrap();
    assert_eq!(python_says(&m.get_python_executable(&venv), "import six; print(six.__version__)"), "1.16.0");
}

#[test]
fn a_failed_rebuild_leaves_the_previous_environment_in_use() {
    let agent = agent_with(&[("requirements.txt", "six==1.16.0\n")]);
    let m = manager(EnvBackendKind::Uv);
    let good = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap();
    assert!(std::fs::symlink_metadata(&good.venv).unwrap().file_type().is_symlink());
    std::fs::write(agent.path().join("requirements.txt"), "agenthub-no-such-package-xyz==1\n").unwrap();
    let err = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap_err();
    assert!(matches!(err, EnvError::CommandFailed { .. }), "{err:?}");
    // The old environment is untouched: same key, six still importable.
    assert_eq!(read_marker(&good.venv).unwrap().key, good.key);
    assert_eq!(python_says(&good.python, "import six; print(six.__version__)"), "1.16.0");
    // Only the good build is left on disk (beside the builds directory's own marker), and
    // why the last build failed, which `environment_status` reports.
    assert_eq!(builds(agent.path()).len(), 1);
    let status = agenthub_env::environment_status(agent.path(), &manifest(), &EnvironmentConfig::default());
    let failure = status.last_failure.unwrap_or_default();
    let (_, reason) = failure.split_once("requirements.txt` failed (exit status 1): ").unwrap_or_default();
    assert!(reason.starts_with("error: "), "the installer's reason: {failure}");
    // A forced rebuild of the good set swaps in a new build and keeps the old one for calls
    // still running in it; the build before that is collected at the next swap.
    std::fs::write(agent.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
    let before = std::fs::read_link(&good.venv).unwrap();
    let rebuilt = pollster::block_on(m.rebuild_environment(agent.path(), &manifest())).unwrap();
    assert!(rebuilt.built);
    assert!(!agent.path().join(".venv.d").join(agenthub_env::LAST_FAILURE).exists(), "a success forgets it");
    assert_ne!(std::fs::read_link(&rebuilt.venv).unwrap(), before);
    assert!(agent.path().join(&before).exists(), "the superseded build is kept one round");
    pollster::block_on(m.rebuild_environment(agent.path(), &manifest())).unwrap();
    assert!(!agent.path().join(&before).exists(), "builds older than that are collected");
}

#[test]
fn a_phase1_environment_is_replaced_by_a_managed_one() {
    let agent = agent_with(&[]);
    let m = manager(EnvBackendKind::Uv);
    let venv = pollster::block_on(m.create_environment(agent.path())).unwrap();
    // The Phase-1 call builds a managed environment too, marked as agenthub's.
    assert!(read_marker(&venv).is_some());
    let env = pollster::block_on(m.ensure_environment(agent.path(), &manifest())).unwrap();
    assert!(env.built);
    assert!(std::fs::symlink_metadata(&env.venv).unwrap().file_type().is_symlink());
    assert_eq!(python_says(&env.python, "print(1)"), "1");
}

/// The builds in `<agent>/.venv.d`, without its marker and its record of the last failure.
pub(crate) fn builds(agent: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(agent.join(".venv.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != agenthub_env::BUILDS_MARKER && n != agenthub_env::LAST_FAILURE)
        .collect();
    names.sort();
    names
}

#[test]
fn installation_commands_run_only_when_enabled_and_never_through_a_shell() {
    let commands = "installation:\n  commands:\n    - \"python -c 'import sys; open(\\\"args.txt\\\", \\\"w\\\").write(repr(sys.argv[1:]))' '$(touch pwned)' ';' '&& touch pwned'\"\n";
    let with_commands = AgentManifest::from_yaml_str(&format!("{MANIFEST}{commands}"), "agent.yaml").unwrap();
    assert_eq!(with_commands.installation_commands.len(), 1, "{:?}", with_commands.installation_commands);

    let off = agent_with(&[]);
    pollster::block_on(manager(EnvBackendKind::Uv).ensure_environment(off.path(), &with_commands)).unwrap();
    assert!(!off.path().join("args.txt").exists(), "commands ran without being enabled");

    let config = EnvironmentConfig { run_installation_commands: true, ..EnvironmentConfig::default() };
    let on_manager = EnvironmentManager::new(backend_for(EnvBackendKind::Uv, true).unwrap(), config);
    let on = agent_with(&[]);
    pollster::block_on(on_manager.ensure_environment(on.path(), &with_commands)).unwrap();
    let args = std::fs::read_to_string(on.path().join("args.txt")).unwrap();
    assert_eq!(args, "['$(touch pwned)', ';', '&& touch pwned']");
    assert!(!on.path().join("pwned").exists(), "an installation command went through a shell");
}

#[test]
fn installer_runs_are_recorded_in_the_process_registry_while_they_run() {
    // A local package whose build backend hangs: the installer is running for a while.
    let agent = agent_with(&[("requirements.txt", "./slowpkg\n")]);
    let pkg = agent.path().join("slowpkg");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::write(
        pkg.join("pyproject.toml"),
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
    )
    .unwrap();
    std::fs::write(
        pkg.join("backend.py"),
        "import time\ndef get_requires_for_build_wheel(config_settings=None):\n    time.sleep(600)\n",
    )
    .unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(agenthub_process::ProcessRegistry::with_run_dir(run_dir.path().to_path_buf()));
    let m = manager(EnvBackendKind::Uv)
        .with_build_limits(std::time::Duration::from_secs(20), std::time::Duration::from_secs(5), false)
        .with_process_registry(Arc::clone(&registry));
    std::thread::scope(|scope| {
        let build = scope.spawn(|| pollster::block_on(m.ensure_environment(agent.path(), &manifest())));
        let started = std::time::Instant::now();
        // The installer is registered (the cleanup of a dying runtime kills it, and without a
        // cgroup it has a run record that the next runtime's sweep finds).
        while registry.running().is_empty() {
            assert!(started.elapsed() < std::time::Duration::from_secs(15), "no installer was registered");
            assert!(!build.is_finished(), "the build ended before its installer was seen");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(registry.kill_all() > 0);
        let err = build.join().unwrap().unwrap_err();
        assert!(!matches!(err, EnvError::BuildTimeout { .. }), "the installer was not killed: {err}");
    });
    assert!(registry.running().is_empty(), "an installer stayed registered after it ended");
}
