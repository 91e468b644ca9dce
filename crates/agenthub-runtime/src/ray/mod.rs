//! The Ray target: agent calls run in Ray actors on a cluster, through agenthub's driver
//! (`ray/driver.py`, run by a Python that has `ray`), with many calls in flight at once.
//!
//! One driver per runtime, started on the first call: a supervised [`Worker`] whose stdin
//! takes request lines from any thread (under a lock) and whose stdout is read by one
//! thread that hands each answer to the call waiting for its id. Inside each actor the warm
//! worker's own dispatch code runs (`warm/bootstrap.py`), so a call means the same thing on the
//! cluster as locally; the requirement set is SPEC §3's, installed by Ray on each node
//! (`runtime_env.pip`). A driver that dies fails the calls in flight and is started again by
//! the next call.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use self::protocol::{Answer, CallErrorKind, ConnectError, Greeting, ToDriver};
use agenthub_core::{AgentRuntimeError, Config};
use agenthub_process::{
    Containment, EnvSpec, ExitStatus, ProcessLimits, ProcessOutput, ProcessRegistry, ProcessSpec, Received,
    Worker,
};
use serde::Serialize;

/// The driver, run as `python -u -c <this>`.
pub(crate) const DRIVER: &str = include_str!("driver.py");

mod protocol;

/// The longest line read from the driver (an answer carries the agent's whole stdout).
const MAX_LINE: usize = 256 * 1024 * 1024;

/// Extra time a call waits for the driver beyond its own limit (the driver enforces the
/// limit itself; this only bounds a driver that stopped answering).
const DRIVER_SLACK: Duration = Duration::from_secs(30);

/// What the driver said when it connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RayStatus {
    /// Ray's version on the driver's side.
    pub ray_version: String,
    /// The driver's Python version.
    pub python: String,
    /// Live nodes in the cluster.
    pub nodes: Option<u64>,
    /// The cluster's GCS address.
    pub address: Option<String>,
    /// The Python running the driver.
    pub driver_python: PathBuf,
    /// Ray's version on the cluster's side (asked of a node); `None` when no node answered.
    pub cluster_ray_version: Option<String>,
    /// The actor pools of this runtime's driver, alive now.
    pub pools: Vec<RayPool>,
}

/// One agent's actor pool on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RayPool {
    /// The agent directory.
    pub agent_dir: PathBuf,
    /// Actors alive (or starting).
    pub actors: u64,
    /// Calls sent to them and not answered yet.
    pub in_flight: u64,
}

/// One call for the cluster.
pub(crate) struct RayCall {
    pub(crate) agent_dir: PathBuf,
    pub(crate) key: String,
    pub(crate) requirements: Vec<String>,
    pub(crate) method: String,
    pub(crate) request: String,
    pub(crate) timeout: Option<Duration>,
    pub(crate) methods: Vec<String>,
}

/// Who waits for which answer; `Err` carries why the driver died.
type Waiters = Mutex<HashMap<u64, mpsc::Sender<Result<Answer, String>>>>;

/// A running driver.
struct Driver {
    writer: Mutex<File>,
    waiters: Arc<Waiters>,
    alive: Arc<AtomicBool>,
    status: RayStatus,
}

/// The Ray target of one runtime.
pub(crate) struct RayTarget {
    driver: Mutex<Option<Arc<Driver>>>,
    next_id: AtomicU64,
    registry: Arc<ProcessRegistry>,
    environments: agenthub_env::EnvironmentManager,
}

impl RayTarget {
    pub(crate) fn new(
        registry: Arc<ProcessRegistry>,
        environments: agenthub_env::EnvironmentManager,
    ) -> Self {
        Self { driver: Mutex::new(None), next_id: AtomicU64::new(1), registry, environments }
    }

    /// The Python that runs the driver: `ray.python`, else one agenthub builds once with its
    /// own environment machinery at `<home>/tools/ray-<version>` (`ray[default]==<version>`).
    fn driver_python(&self, config: &Config) -> Result<PathBuf, AgentRuntimeError> {
        if let Some(python) = &config.ray.python {
            return Ok(python.clone());
        }
        let version = &config.ray.version;
        let dir = config.home.join("tools").join(format!("ray-{version}"));
        let manifest_text = format!(
            "name: ray-driver\nversion: \"{version}\"\ndescription: the Python agenthub runs its Ray driver with\n\
             author: agenthub\ndependencies: [\"ray[default]=={version}\"]\ninterface:\n  methods:\n    \
             driver:\n      description: not called\n"
        );
        let failed = |e: String| AgentRuntimeError::NotRun {
            message: format!(
                "Cannot make a Python with Ray {version} for the driver in {}: {e}",
                dir.display()
            ),
            suggestion:
                "Set ray.python (AGENTHUB_RAY_PYTHON) to a Python that has the cluster's Ray version, or \
                check that the package index can be reached"
                    .to_owned(),
        };
        std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
        let manifest_path = dir.join("agent.yaml");
        if std::fs::read_to_string(&manifest_path).ok().as_deref() != Some(manifest_text.as_str()) {
            std::fs::write(&manifest_path, &manifest_text).map_err(|e| failed(e.to_string()))?;
        }
        let manifest = agenthub_core::AgentManifest::from_yaml_str(&manifest_text, "agent.yaml")
            .map_err(|e| failed(e.to_string()))?;
        tracing::info!("making a Python with Ray {version} for the Ray driver in {} (once)", dir.display());
        let ready = pollster::block_on(self.environments.ensure_environment(&dir, &manifest))?;
        Ok(ready.python)
    }

    /// The driver, started (and connected to the cluster) if it is not running.
    fn driver(&self, config: &Config) -> Result<Arc<Driver>, AgentRuntimeError> {
        let mut slot = self.driver.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(driver) = slot.as_ref().filter(|d| d.alive.load(Ordering::Acquire)) {
            return Ok(Arc::clone(driver));
        }
        let driver = Arc::new(self.start(config)?);
        *slot = Some(Arc::clone(&driver));
        Ok(driver)
    }

    fn start(&self, config: &Config) -> Result<Driver, AgentRuntimeError> {
        let python = self.driver_python(config)?;
        let spec = ProcessSpec {
            program: python.clone(),
            args: vec!["-u".into(), "-c".into(), DRIVER.into()],
            cwd: config.home.clone(),
            env: EnvSpec::default(),
            limits: ProcessLimits {
                timeout: None,
                max_memory_bytes: None,
                stderr_tail_bytes: 64 * 1024,
                ..ProcessLimits::default()
            },
            registry: Some(Arc::clone(&self.registry)),
            // No memory cap to enforce and nothing it starts to contain (the actors are the
            // cluster's): its process group is enough, and is killed with it.
            containment: Containment::ProcessGroup,
            die_with_parent: false,
            // The Ray target is not sandboxed by agenthub (docs/design/ray.md).
            sandbox: None,
        };
        let mut worker = Worker::spawn(&spec).map_err(|e| AgentRuntimeError::NotRun {
            message: format!("Cannot start the Ray driver with {}: {e}", python.display()),
            suggestion: "Point ray.python (AGENTHUB_RAY_PYTHON) at an existing Python that has `ray`"
                .to_owned(),
        })?;
        let mut writer = worker.stdin_writer().map_err(|e| AgentRuntimeError::NotRun {
            message: format!("Cannot talk to the Ray driver: {e}"),
            suggestion: "Retry".to_owned(),
        })?;
        let hello = ToDriver::Hello {
            address: config.ray.address.as_deref(),
            actors_per_agent: config.ray.actors_per_agent,
            build_timeout: config.runtime.build_timeout.as_secs_f64(),
            bootstrap: crate::warm::BOOTSTRAP,
        };
        let said = writeln!(writer, "{}", hello.line());
        let stderr_of = |worker: &Worker| {
            let (tail, _) = worker.stderr_since(0);
            let text = String::from_utf8_lossy(&tail).trim_end().to_owned();
            text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        let first = match (said, worker.recv(Some(config.ray.connect_timeout.as_duration()), MAX_LINE)) {
            (Ok(()), Ok(Received::Line(line))) => serde_json::from_slice::<Greeting>(&line).ok(),
            (_, Ok(Received::Stopped(..))) => {
                return Err(unreachable(
                    config,
                    &format!("no answer within {}s", config.ray.connect_timeout),
                    &stderr_of(&worker),
                ));
            }
            (_, other) => {
                let how = match other {
                    Ok(Received::Exited(status)) => status.to_string(),
                    Err(e) => e.to_string(),
                    _ => "no answer".to_owned(),
                };
                return Err(AgentRuntimeError::NotRun {
                    message: format!(
                        "The Ray driver ({}) stopped before connecting: {how}",
                        python.display()
                    ),
                    suggestion: format!(
                        "Check that {} runs and has `ray` installed; its stderr: {}",
                        python.display(),
                        stderr_of(&worker)
                    ),
                });
            }
        };
        let (ray_version, driver_python_version, nodes, address) = match first {
            Some(Greeting::Ready { ray_version, python, nodes, address }) => {
                (ray_version, python, nodes, address)
            }
            Some(Greeting::Error { kind: ConnectError::NoRay, message }) => {
                return Err(AgentRuntimeError::NotRun {
                    message: format!("{} cannot import ray: {message}", python.display()),
                    suggestion: format!(
                        "Install it: `uv pip install --python {} 'ray[default]'` (the cluster's Ray version), \
                         or point ray.python (AGENTHUB_RAY_PYTHON) at a Python that has it",
                        python.display()
                    ),
                });
            }
            Some(Greeting::Error { kind: ConnectError::Unreachable, message }) => {
                return Err(unreachable(config, &message, &stderr_of(&worker)));
            }
            None => return Err(unreachable(config, "no answer", &stderr_of(&worker))),
        };
        let status = RayStatus {
            ray_version,
            python: driver_python_version,
            nodes,
            address,
            driver_python: python,
            cluster_ray_version: None,
            pools: Vec::new(),
        };
        let waiters: Arc<Waiters> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let (reader_waiters, reader_alive) = (Arc::clone(&waiters), Arc::clone(&alive));
        std::thread::Builder::new()
            .name("agenthub-ray-reader".to_owned())
            .spawn(move || read_answers(worker, &reader_waiters, &reader_alive))
            .map_err(|e| AgentRuntimeError::NotRun {
                message: format!("Cannot start the Ray driver's reader thread: {e}"),
                suggestion: "Retry; the system is short of threads".to_owned(),
            })?;
        Ok(Driver { writer: Mutex::new(writer), waiters, alive, status })
    }

    /// Connects (if needed) and reports what the driver found.
    /// Connects (if needed) and reports the cluster: nodes, Ray's version on both sides, and
    /// this runtime's actor pools.
    pub(crate) fn status(&self, config: &Config) -> Result<RayStatus, AgentRuntimeError> {
        let driver = self.driver(config)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        driver.waiters.lock().unwrap_or_else(PoisonError::into_inner).insert(id, tx);
        let sent = {
            let mut writer = driver.writer.lock().unwrap_or_else(PoisonError::into_inner);
            writeln!(writer, "{}", ToDriver::Status { id }.line())
        };
        let mut status = driver.status.clone();
        let answer = sent.ok().and_then(|()| rx.recv_timeout(Duration::from_secs(150)).ok());
        driver.waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        if let Some(Ok(answer)) = answer {
            status.nodes = answer.nodes.or(status.nodes);
            status.cluster_ray_version = answer.cluster_ray_version;
            status.pools = answer
                .pools
                .into_iter()
                .flatten()
                .map(|p| RayPool {
                    agent_dir: PathBuf::from(p.agent_dir),
                    actors: p.actors,
                    in_flight: p.in_flight,
                })
                .collect();
        }
        Ok(status)
    }

    /// Runs one call on the cluster, blocking the calling thread; the output as a one-shot
    /// process would have produced it.
    pub(crate) fn call(&self, config: &Config, call: &RayCall) -> Result<ProcessOutput, AgentRuntimeError> {
        let started = Instant::now();
        let driver = self.driver(config)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        driver.waiters.lock().unwrap_or_else(PoisonError::into_inner).insert(id, tx);
        let line = ToDriver::Call {
            id,
            agent_dir: &call.agent_dir,
            key: &call.key,
            requirements: &call.requirements,
            method: &call.method,
            request: &call.request,
            timeout: call.timeout.map(|t| t.as_secs_f64()),
            dispatch: config.runtime.worker_dispatch.as_str(),
            methods: &call.methods,
        }
        .line();
        let sent = {
            let mut writer = driver.writer.lock().unwrap_or_else(PoisonError::into_inner);
            writeln!(writer, "{line}")
        };
        if let Err(e) = sent {
            driver.alive.store(false, Ordering::Release);
            driver.waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            return Err(driver_died(&format!("it stopped reading requests ({e})")));
        }
        // The driver bounds the actor's start by `build_timeout` and the call by its timeout.
        let wait = call.timeout.map_or(Duration::MAX, |t| {
            t.saturating_add(config.runtime.build_timeout.as_duration()).saturating_add(DRIVER_SLACK)
        });
        let answer = match rx.recv_timeout(wait) {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                driver.waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                let mut writer = driver.writer.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = writeln!(writer, "{}", ToDriver::Cancel { id }.line());
                return Err(AgentRuntimeError::Timeout {
                    limit: call.timeout.unwrap_or_default(),
                    stderr: Some("the Ray driver did not answer in time".to_owned()),
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(driver_died("it exited while the call was running"));
            }
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(died) => return Err(driver_died(&died)),
        };
        if let Some(error) = answer.error {
            let message = error.message;
            return Err(match error.kind {
                CallErrorKind::Environment => AgentRuntimeError::Environment {
                    message: "Environment setup failed on the Ray cluster".to_owned(),
                    stderr: Some(message),
                    suggestion: "Check the agent's requirements; every node installs them (runtime_env.pip) \
                        from its package index, or from a wheelhouse set with PIP_FIND_LINKS when the cluster \
                        is offline"
                        .to_owned(),
                },
                CallErrorKind::Timeout => {
                    AgentRuntimeError::Timeout { limit: call.timeout.unwrap_or_default(), stderr: None }
                }
                CallErrorKind::Import => AgentRuntimeError::Execution {
                    message: "Importing agent.py failed in its Ray actor".to_owned(),
                    return_code: None,
                    signal: None,
                    stderr: Some(message),
                },
                CallErrorKind::Cancelled => AgentRuntimeError::Execution {
                    message: "The call was cancelled".to_owned(),
                    return_code: None,
                    signal: None,
                    stderr: None,
                },
                CallErrorKind::ActorDied => AgentRuntimeError::Execution {
                    message: "The Ray actor running the agent died; it has been replaced".to_owned(),
                    return_code: None,
                    signal: None,
                    stderr: Some(message),
                },
            });
        }
        let code = answer.exit_code.and_then(|c| i32::try_from(c).ok()).unwrap_or(1);
        Ok(ProcessOutput {
            pid: 0,
            status: ExitStatus::Exited(code),
            termination: None,
            stdout: answer.stdout.into_bytes(),
            stderr_tail: answer.stderr.into_bytes(),
            stderr_truncated: false,
            wall_time: started.elapsed(),
            peak_rss_bytes: answer.peak_rss,
        })
    }
}

/// The reader thread: hands each answer to the call waiting for its id; when the driver
/// ends, fails every call in flight and marks the driver dead.
fn read_answers(mut worker: Worker, waiters: &Waiters, alive: &AtomicBool) {
    loop {
        match worker.recv(None, MAX_LINE) {
            Ok(Received::Line(line)) => {
                let Some(answer) = Answer::parse(&line) else { continue };
                let Some(id) = answer.id else { continue };
                if let Some(tx) = waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&id) {
                    let _ = tx.send(Ok(answer));
                }
            }
            other => {
                alive.store(false, Ordering::Release);
                let how = match other {
                    Ok(Received::Exited(status)) => status.to_string(),
                    Ok(Received::Stopped(why, _)) => format!("stopped ({why:?})"),
                    Err(e) => e.to_string(),
                    Ok(Received::Line(_)) => String::new(),
                };
                let (tail, _) = worker.stderr_since(0);
                let tail = String::from_utf8_lossy(&tail);
                let last = tail.trim_end().lines().last().unwrap_or_default().to_owned();
                let message = format!("{how}; last stderr line: {last}");
                for (_, tx) in waiters.lock().unwrap_or_else(PoisonError::into_inner).drain() {
                    let _ = tx.send(Err(message.clone()));
                }
                return;
            }
        }
    }
}

fn driver_died(how: &str) -> AgentRuntimeError {
    AgentRuntimeError::Execution {
        message: format!("agenthub's Ray driver died: {how}"),
        return_code: None,
        signal: None,
        stderr: None,
    }
}

fn unreachable(config: &Config, message: &str, stderr: &str) -> AgentRuntimeError {
    let address = config
        .ray
        .address
        .clone()
        .or_else(|| std::env::var("RAY_ADDRESS").ok())
        .unwrap_or_else(|| "auto (a cluster on this machine)".to_owned());
    let stderr = if stderr.is_empty() { String::new() } else { format!("\n{stderr}") };
    AgentRuntimeError::NotRun {
        message: format!("Cannot reach the Ray cluster at {address}: {message}{stderr}"),
        suggestion: "Start one (`ray start --head`), or point ray.address in config.yaml, RAY_ADDRESS or \
            --ray-address at a running cluster; with token authentication, set RAY_AUTH_TOKEN or \
            RAY_AUTH_TOKEN_PATH"
            .to_owned(),
    }
}

/// The requirement lines the cluster installs for the agent in `dir` (SPEC §3's set: what
/// the local environment is built from), and the key of that set.
pub(crate) fn requirements(
    dir: &Path,
    manifest: &agenthub_core::AgentManifest,
    config: &Config,
) -> Result<(Vec<String>, String), AgentRuntimeError> {
    use agenthub_env::{RequirementSet, RequirementSource};
    let set = RequirementSet::for_agent(dir, &manifest.dependencies)?;
    let key =
        set.key(manifest.python_version.as_ref().map(agenthub_core::PythonConstraint::to_pep440).as_deref());
    let lines = match &set.source {
        RequirementSource::UvLock { project_dir } => {
            let ctx = agenthub_env::BuildContext::new(
                project_dir,
                config.runtime.build_timeout.as_duration(),
                false,
            );
            let provision = agenthub_env::UvProvision::from_config(config);
            let uv = agenthub_env::ensure_uv(Some(&provision), "uv (needed to export uv.lock)")?;
            agenthub_env::requirement_lines(&agenthub_env::uv_export_lock(&uv.path, project_dir, &ctx)?)
        }
        RequirementSource::RequirementsFile(_) => {
            let text = agenthub_core::read_agent_file(
                dir,
                Path::new("requirements.txt"),
                agenthub_env::MAX_REQUIREMENTS_BYTES,
            )
            .map_err(agenthub_env::EnvError::AgentFile)?
            .unwrap_or_default();
            agenthub_env::requirement_lines(&text)
        }
        _ => set.requirements.clone(),
    };
    Ok((lines, key))
}
