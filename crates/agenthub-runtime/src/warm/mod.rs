//! Warm workers: one pool per agent directory of long-lived interpreters that imported the
//! agent once (`bootstrap.py`, protocol in `docs/design/workers.md`).
//!
//! Invariants:
//! - a call never runs older code or an older environment than the one on disk when it was
//!   made: every call computes the agent's [`Version`] (the environment key and the
//!   identity of `agent.yaml` and `agent.py`), and a worker of another version is shut
//!   down instead of used;
//! - one request in flight per worker, at most `workers_per_agent` workers per agent
//!   serving calls (a worn worker and its successor starting beside it count as one; the
//!   successor replaces it as soon as it is ready);
//! - a call waits (for a slot, for a worker being started, for its answer) at most until
//!   its own deadline: its timeout bounds everything it waits for here;
//! - a worker that timed out, hit a limit, answered out of turn or died is never reused,
//!   and a call is never retried;
//! - dropping the pools shuts every idle worker down; a worker in use is killed when its
//!   call ends without a pool to return to; closing them (the runtime is dropped) kills the
//!   workers being started ahead of calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use self::protocol::{Announcement, Reply, Request, Served};
use agenthub_core::{AgentRuntimeError, WorkerDispatch};
use agenthub_fs::{FileStamp, Symlinks};
use agenthub_process::{
    Containment, EnvSpec, ExitStatus, ProcessError, ProcessLimits, ProcessOutput, ProcessRegistry,
    ProcessSpec, Received, Termination, Worker,
};

/// The worker bootstrap, run as `python -u -c <this> <agent_dir> <dispatch> <methods>`.
pub(crate) const BOOTSTRAP: &str = include_str!("bootstrap.py");

#[cfg(test)]
mod guard_agrees;
mod protocol;

/// How long a worker being retired gets to leave by itself, then after SIGTERM.
const RETIRE_GRACE: Duration = Duration::from_millis(200);

/// The longest announcement line read from a starting worker.
const MAX_ANNOUNCEMENT: usize = 64 * 1024;

/// How often a call waiting for a worker looks whether it was cancelled.
const WAIT_TICK: Duration = Duration::from_millis(100);

/// How long closing the pools waits for the starts it stopped to be reaped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The longest a caller reads a worker's channel on the CPU before it sleeps (see
/// [`Pools::spin_for`]): only workers that typically answer within it are waited for so.
const SPIN_MAX: Duration = Duration::from_micros(200);

/// Files changed this recently are racy: a state read from them is not cached.
const RACY_WINDOW: Duration = Duration::from_secs(1);

/// What a call's code and environment are: a worker serves only calls of its own version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    env_key: String,
    files: [Option<FileStamp>; 2],
}

impl Version {
    /// The version of the agent with environment `env_key`, from the agent's [`stamps`].
    pub(crate) fn new(env_key: &str, stamps: &Stamps) -> Self {
        Self { env_key: env_key.to_owned(), files: [stamps[0], stamps[1]] }
    }
}

/// The stamps of `agent.yaml`, `agent.py`, `requirements.txt`, `pyproject.toml`, `uv.lock`
/// and the environment marker.
pub(crate) type Stamps = [Option<FileStamp>; 6];

/// An agent's checked environment and the [`Stamps`] when it was checked.
pub(crate) type Checked = (Stamps, agenthub_env::ReadyEnvironment);

/// The identity of the files that decide an agent's version and whether its checked
/// environment still holds: `agent.yaml`, `agent.py` and the requirement sources (followed
/// through symlinks, so an edit of a target shows), and the environment marker through our
/// `<venv>` symlink (so a swap shows). One path walk to the directory, then `fstatat`s.
pub(crate) fn stamps(dir: &Path, venv_location: &str) -> Stamps {
    let marker = format!("{venv_location}/{}", agenthub_env::MARKER_FILE);
    let names = ["agent.yaml", "agent.py", "requirements.txt", "pyproject.toml", "uv.lock", marker.as_str()];
    FileStamp::all_in(dir, names, Symlinks::Follow)
}

/// Whether a file of `stamps` changed within the last second ([`RACY_WINDOW`]). Like git's
/// racily clean index: such a file may change again without its stamp changing (coarse
/// timestamps), so a state that includes one is never cached.
pub(crate) fn is_racy(stamps: &Stamps) -> bool {
    let now = std::time::SystemTime::now();
    stamps.iter().flatten().any(|s| s.is_racy(now, RACY_WINDOW))
}

/// Everything a warm call needs.
#[derive(Clone)]
pub(crate) struct WarmCall {
    pub(crate) agent_dir: PathBuf,
    pub(crate) python: PathBuf,
    pub(crate) env: EnvSpec,
    pub(crate) limits: ProcessLimits,
    pub(crate) die_with_parent: bool,
    /// The sandbox the worker starts in (every call it serves runs in it).
    pub(crate) sandbox: Option<Arc<agenthub_process::sandbox::Sandbox>>,
    pub(crate) version: Version,
    pub(crate) methods: Vec<String>,
    pub(crate) method: String,
    pub(crate) request: String,
    /// Cancels the call: the worker serving it is killed (see `cancel.rs`).
    pub(crate) cancel: Option<crate::CallCancel>,
    /// The call's tools: a worker started for it gets a tool endpoint, and serves these
    /// for the length of the call.
    pub(crate) tools: Option<Arc<dyn crate::tools::CallTools>>,
    /// When the call's time is up (its timeout from when it reached the pools): waiting for
    /// a slot, for a worker to start and for the answer all end there.
    pub(crate) deadline: Option<Instant>,
    /// The call's span: a worker started for the call is a child of it.
    pub(crate) span: tracing::Span,
    /// The call's trace context (`TRACEPARENT`, `TRACESTATE`), set in the worker's
    /// environment for the length of the call.
    pub(crate) trace: Option<(String, Option<String>)>,
}

impl WarmCall {
    /// The time the call has left (`None`: no deadline); zero once it has passed.
    fn left(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The error of a call whose deadline passed before its request could be sent.
    fn timed_out(&self, why: String) -> AgentRuntimeError {
        AgentRuntimeError::Timeout { limit: self.limits.timeout.unwrap_or_default(), stderr: Some(why) }
    }

    /// What starts the successor of a worker this call wore out: the same agent, version,
    /// environment, sandbox and limits, with no request, deadline or cancellation of its own.
    /// `None` for a call with tools (a worker's tool endpoint is made for the call that
    /// starts it; such a worker is replaced by the next call, as before).
    fn successor(&self) -> Option<Self> {
        if self.tools.is_some() {
            return None;
        }
        let mut next = self.clone();
        next.method.clear();
        next.request.clear();
        next.cancel = None;
        next.deadline = None;
        next.span = tracing::Span::none();
        next.trace = None;
        Some(next)
    }
}

/// Pool settings (from `RuntimeConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) workers_per_agent: usize,
    pub(crate) max_calls: u64,
    pub(crate) idle_timeout: Duration,
    pub(crate) init_timeout: Duration,
    pub(crate) recycle_bytes: Option<u64>,
    pub(crate) dispatch: WorkerDispatch,
    /// `runtime.mode: isolated`: each worker is a zygote that forks a child per call.
    pub(crate) isolated: bool,
}

/// How a warm call ended.
pub(crate) enum WarmOutcome {
    /// The call ran (successfully or not): turn this into the response as one-shot does.
    /// With how long starting the worker took, when the call started it.
    Ran(ProcessOutput, Option<Duration>),
    /// The agent cannot be served warm (no `main()` to replay, no class): run it one-shot.
    OneShot,
    /// The worker could not be started.
    Failed(AgentRuntimeError),
    /// The call was cancelled before its request was sent; the worker was not touched.
    Cancelled,
}

/// A started worker and its bookkeeping.
struct Warm {
    worker: Worker,
    /// The call its tool endpoint serves, and what serves an endpoint on the host (held
    /// as long as the worker); `None` for a worker without tools.
    tools: Option<(crate::tools::ToolSlot, Option<agenthub_process::sandbox::ListenerGuard>)>,
    version: Version,
    /// Isolated mode: each call runs in a fork of this worker (its zygote).
    forks: bool,
    calls: u64,
    /// How long this worker's recent answers took (a moving average), once it answered.
    typical: Option<Duration>,
    retire_after: u64,
    /// The start (an id in `starting`) of the worker that replaces this one, which has
    /// served its `retire_after` calls: it serves on until that worker is ready.
    successor: Option<u64>,
    idle_since: Instant,
}

/// The workers of one agent directory.
#[derive(Default)]
struct AgentPool {
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Warm>,
    /// Slots taken by calls: served, starting a worker, or waiting for one of `starting`.
    in_use: usize,
    /// Workers being started ahead of calls (`prestart`); each becomes idle when ready.
    starting: Vec<Start>,
    /// The versions of the calls that hold a slot and wait for one of `starting` (one entry
    /// per call): a call waits only for a start no other call waits for.
    awaiting: Vec<Version>,
    /// The version announced as not servable warm (cached so that every call does not
    /// start an interpreter only to hear it again).
    one_shot: Option<Version>,
}

impl PoolState {
    fn starting_of(&self, version: &Version) -> usize {
        self.starting.iter().filter(|s| &s.version == version).count()
    }

    fn awaiting_of(&self, version: &Version) -> usize {
        self.awaiting.iter().filter(|v| *v == version).count()
    }

    /// Takes the idle workers of other versions out (to be retired) and one of `version`.
    fn take_idle(&mut self, version: &Version, stale: &mut Vec<Warm>) -> Option<Warm> {
        let (mut fresh, old): (Vec<Warm>, Vec<Warm>) =
            std::mem::take(&mut self.idle).into_iter().partition(|w| &w.version == version);
        stale.extend(old);
        let found = fresh.pop();
        self.idle = fresh;
        found
    }
}

/// A worker being started ahead of calls; `cancel` kills it (the pools are closed).
struct Start {
    id: u64,
    version: Version,
    cancel: crate::CallCancel,
}

/// Every agent's pool, and the idle reaper.
pub(crate) struct Pools {
    agents: Mutex<HashMap<PathBuf, Arc<AgentPool>>>,
    settings: PoolSettings,
    registry: Arc<ProcessRegistry>,
    next_id: AtomicU64,
    reaper_started: std::sync::Once,
    /// The thread that spawns every worker (see [`Spawner`]).
    spawner: Mutex<Option<Spawner>>,
    /// Set by [`Pools::close`]: no more workers are started ahead of calls.
    closed: AtomicBool,
    /// Isolated mode: what each agent's last zygote announced.
    isolation: Mutex<HashMap<PathBuf, crate::Isolation>>,
    /// Requests sent to workers and not answered yet, and successors being started.
    in_flight: AtomicUsize,
    /// Work on threads of the pools' own that [`Pools::close`] waits for: successors being
    /// started, worn workers being shut down.
    background: Arc<Background>,
}

/// A count of background tasks, which [`Pools::close`] waits for.
#[derive(Default)]
struct Background {
    count: Mutex<usize>,
    done: Condvar,
}

/// One background task under way: counted from [`Background::begin`] until dropped.
struct Task(Arc<Background>);

impl Background {
    fn begin(self: &Arc<Self>) -> Task {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Task(Arc::clone(self))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.0.done.notify_all();
    }
}

/// Spawns workers on one thread that lives as long as the pools. With `die_with_parent`
/// (`PR_SET_PDEATHSIG`) a child dies when the *thread* that spawned it ends; workers outlive
/// the call that started them, so they must not be spawned by a call's (short-lived) thread.
struct Spawner {
    requests: std::sync::mpsc::Sender<(ProcessSpec, std::sync::mpsc::Sender<Result<Worker, ProcessError>>)>,
}

impl Spawner {
    fn start() -> std::io::Result<Self> {
        let (requests, rx) =
            std::sync::mpsc::channel::<(ProcessSpec, std::sync::mpsc::Sender<Result<Worker, ProcessError>>)>(
            );
        std::thread::Builder::new().name("agenthub-worker-spawner".to_owned()).spawn(move || {
            // Ends when the pools (the only sender) are dropped.
            for (spec, reply) in rx {
                let _ = reply.send(Worker::spawn(&spec));
            }
        })?;
        Ok(Self { requests })
    }
}

impl Pools {
    pub(crate) fn new(settings: PoolSettings, registry: Arc<ProcessRegistry>) -> Arc<Self> {
        Arc::new(Self {
            agents: Mutex::new(HashMap::new()),
            settings,
            registry,
            next_id: AtomicU64::new(1),
            reaper_started: std::sync::Once::new(),
            spawner: Mutex::new(None),
            closed: AtomicBool::new(false),
            isolation: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            background: Arc::default(),
        })
    }

    /// Isolated mode: how the last zygote of the agent in `dir` serves calls.
    pub(crate) fn isolation(&self, dir: &Path) -> Option<crate::Isolation> {
        self.isolation.lock().unwrap_or_else(PoisonError::into_inner).get(dir).cloned()
    }

    /// The pool of an agent directory (created on first use).
    fn pool(&self, dir: &Path) -> Arc<AgentPool> {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(agents.entry(dir.to_path_buf()).or_default())
    }

    /// The runtime is going away: stops (kills) the workers being started ahead of calls
    /// and starts no more, then waits a little for their starts to end, so that none
    /// outlives the runtime. Idle workers are shut down when the pools are dropped.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let pools: Vec<Arc<AgentPool>> =
            self.agents.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        let until = Instant::now() + CLOSE_WAIT;
        for pool in pools {
            let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            for start in &state.starting {
                start.cancel.cancel();
            }
            while !state.starting.is_empty() {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = pool.freed.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
            }
        }
        let mut tasks = self.background.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *tasks > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tasks = self.background.done.wait_timeout(tasks, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// How many workers are alive (idle or in use), over all agents.
    pub(crate) fn worker_count(&self) -> usize {
        let agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        agents
            .values()
            .map(|p| {
                let s = p.state.lock().unwrap_or_else(PoisonError::into_inner);
                s.idle.len() + s.in_use
            })
            .sum()
    }

    /// Pids of the idle workers.
    pub(crate) fn idle_pids(&self) -> Vec<u32> {
        let agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        agents
            .values()
            .flat_map(|p| {
                let s = p.state.lock().unwrap_or_else(PoisonError::into_inner);
                s.idle.iter().map(|w| w.worker.pid()).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Shuts down every idle worker (of one agent directory, or of all) and stops the starts
    /// under way (ahead of calls, successors: they may have imported the code before the
    /// restart); returns how many idle workers were shut down.
    pub(crate) fn restart(&self, dir: Option<&Path>) -> usize {
        let pools: Vec<Arc<AgentPool>> = {
            let agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
            agents
                .iter()
                .filter(|(d, _)| dir.is_none_or(|want| want == d.as_path()))
                .map(|(_, p)| Arc::clone(p))
                .collect()
        };
        let mut retired = Vec::new();
        for pool in pools {
            let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.one_shot = None;
            for start in &state.starting {
                start.cancel.cancel();
            }
            retired.append(&mut state.idle);
        }
        let n = retired.len();
        retire_all(retired);
        n
    }

    /// Runs one call on a warm worker of the agent (blocking: run it on a thread that may
    /// block).
    pub(crate) fn call(self: &Arc<Self>, call: &WarmCall) -> WarmOutcome {
        self.start_reaper();
        let pool = self.pool(&call.agent_dir);
        let mut stale = Vec::new();
        let taken = self.take_slot(&pool, call, &mut stale);
        retire_all(stale);
        let found = match taken {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        let release = Release { pool: &pool };
        let reuse = found.and_then(|mut w| (!w.worker.has_exited()).then_some(w));
        let mut startup = None;
        let mut warm = match reuse {
            Some(w) => w,
            None => match (Instant::now(), {
                let _starting = tracing::info_span!(
                    target: "agenthub::call",
                    parent: &call.span,
                    "start_worker",
                    otel.name = "start_worker",
                    agenthub.isolated = self.settings.isolated,
                )
                .entered();
                self.start(call, call.left(), call.cancel.as_ref())
            }) {
                (starting, Ok(Some(w))) => {
                    startup = Some(starting.elapsed());
                    w
                }
                (_, Ok(None)) => {
                    // Calls waiting for this pool hear it when the slot is given back.
                    pool.state.lock().unwrap_or_else(PoisonError::into_inner).one_shot =
                        Some(call.version.clone());
                    return WarmOutcome::OneShot;
                }
                (_, Err(e)) => return WarmOutcome::Failed(e),
            },
        };
        if call.left().is_some_and(|left| left.is_zero()) {
            // No time left to send the request: the worker stays for the next call.
            self.give_back(&pool, warm);
            drop(release);
            return WarmOutcome::Failed(call.timed_out(
                "agenthub: the call's time was up before a warm worker could take its request".to_owned(),
            ));
        }
        if let Some(cancel) = &call.cancel
            && !cancel.attach(warm.worker.pid())
        {
            self.give_back(&pool, warm);
            drop(release);
            return WarmOutcome::Cancelled;
        }
        let (output, rss, mut reusable) = self.request(&mut warm, call);
        // Detached before the worker can be reaped below; a worker killed by a cancellation
        // (even one that answered first) is never reused.
        if call.cancel.as_ref().is_some_and(crate::CallCancel::detach) {
            reusable = false;
        }
        warm.calls += 1;
        // Recycle before the memory cap would fail a call: at the threshold, and at three
        // quarters of the cap at the latest.
        let cap_share = call.limits.max_memory_bytes.map(|cap| cap / 4 * 3);
        let threshold = [self.settings.recycle_bytes, cap_share].into_iter().flatten().min();
        let heavy = threshold.is_some_and(|limit| rss.is_some_and(|rss| rss > limit));
        let used_up = warm.retire_after > 0 && warm.calls >= warm.retire_after;
        if reusable && !heavy && used_up && warm.successor.is_none() {
            warm.successor = self.start_successor(&pool, call);
        }
        if reusable && !heavy && (!used_up || warm.successor.is_some()) {
            self.give_back(&pool, warm);
        } else if reusable {
            let task = self.background.begin();
            Self::retire_in_background(warm, task);
        }
        drop(release);
        WarmOutcome::Ran(output, startup)
    }

    /// Puts a worker that may serve again back among the idle ones, unless it is a worn
    /// worker whose successor is no longer starting (ready, or it could not be started:
    /// then the next call starts one), which is retired.
    fn give_back(&self, pool: &AgentPool, mut warm: Warm) {
        let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
        let replaced = warm.successor.is_some_and(|id| state.starting.iter().all(|s| s.id != id));
        if replaced {
            // Counted under the pool's lock, as `start_ahead` counts what it retires.
            let task = self.background.begin();
            drop(state);
            Self::retire_in_background(warm, task);
        } else {
            warm.idle_since = Instant::now();
            state.idle.push(warm);
        }
    }

    /// Shuts a worn worker down on a thread of its own, so that the call that wore it out
    /// does not wait for the interpreter's exit. [`Self::close`] waits for these (`task`,
    /// counted by the caller). Without a thread the closure is dropped, and the worker with
    /// it: killed and reaped by `Worker`'s drop instead of shut down gracefully.
    fn retire_in_background(warm: Warm, task: Task) {
        let _ = std::thread::Builder::new().name("agenthub-worker-retire".to_owned()).spawn(move || {
            retire_all(vec![warm]);
            drop(task);
        });
    }

    /// Starts the successor of a worker that has served its calls, on a thread of its own,
    /// so that no call waits for the start: the worn worker serves on until the successor
    /// is ready (see `start_ahead`). Returns the start's id, `None` when no successor is
    /// started (the pools are closing, the call has tools, no thread): then the worker is
    /// retired now and the next call starts one, as it would without successors.
    fn start_successor(self: &Arc<Self>, pool: &Arc<AgentPool>, call: &WarmCall) -> Option<u64> {
        let successor = call.successor()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = crate::CallCancel::new();
        let task = {
            // Under the pool's lock, which `close` takes after setting `closed`: a start is
            // either refused here or seen (cancelled, and its task waited for) there.
            let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            state.starting.push(Start { id, version: call.version.clone(), cancel: cancel.clone() });
            // The thread's handles on the pools go before its task ends: `close` waits for
            // the task, so the runtime that closes keeps the last handle (never this thread).
            self.background.begin()
        };
        // The import takes a CPU as a request does: callers do not spin meanwhile (a caller
        // spinning on the CPU its worker needs would make every call wait out the spin).
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let start = SuccessorStart { pools: Arc::clone(self), pool: Arc::clone(pool), id };
        let spawned = std::thread::Builder::new().name("agenthub-worker-successor".to_owned()).spawn(move || {
            let _task = task;
            if let Err(e) = start.pools.start_ahead(&start.pool, &successor, id, &cancel) {
                tracing::debug!(agent = %successor.agent_dir.display(), error = %e, "a worker's successor could not be started");
            }
            drop(start);
        });
        // No thread: the closure, with `start` (which undoes the above) and `task`, is gone.
        spawned.is_ok().then_some(id)
    }

    /// Waits for a worker slot of the agent, then for an idle worker of the call's version
    /// if one is being started ahead of calls (a call waits only for a start no other call
    /// waits for); both waits end at the call's deadline or its cancellation. `Ok(None)`:
    /// the call holds a slot and must start a worker itself. Idle workers of other versions
    /// are moved to `stale`.
    fn take_slot(
        &self,
        pool: &AgentPool,
        call: &WarmCall,
        stale: &mut Vec<Warm>,
    ) -> Result<Option<Warm>, WarmOutcome> {
        let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut slot = false;
        let (ended, why) = loop {
            if state.one_shot.as_ref() == Some(&call.version) {
                break (WarmOutcome::OneShot, String::new());
            }
            if !slot && state.in_use < self.settings.workers_per_agent {
                state.in_use += 1;
                slot = true;
            }
            let for_start = slot && {
                if let Some(found) = state.take_idle(&call.version, stale) {
                    return Ok(Some(found));
                }
                state.starting_of(&call.version) > state.awaiting_of(&call.version)
            };
            if slot && !for_start {
                return Ok(None);
            }
            if call.cancel.as_ref().is_some_and(crate::CallCancel::is_cancelled) {
                break (WarmOutcome::Cancelled, String::new());
            }
            let left = call.left();
            if left.is_some_and(|left| left.is_zero()) {
                let why = if for_start {
                    "agenthub: no warm worker was ready within the call's timeout: the one being \
                     started for the agent was still importing agent.py"
                        .to_owned()
                } else {
                    format!(
                        "agenthub: the call waited for a warm worker until its timeout: all {} of the \
                         agent's workers were busy (runtime.workers_per_agent)",
                        self.settings.workers_per_agent
                    )
                };
                break (WarmOutcome::Failed(call.timed_out(why.clone())), why);
            }
            let wait = left.map_or(WAIT_TICK, |left| left.min(WAIT_TICK));
            if for_start {
                state.awaiting.push(call.version.clone());
            }
            state = pool.freed.wait_timeout(state, wait).unwrap_or_else(PoisonError::into_inner).0;
            if for_start && let Some(at) = state.awaiting.iter().position(|v| v == &call.version) {
                state.awaiting.swap_remove(at);
            }
        };
        if slot {
            state.in_use -= 1;
            drop(state);
            pool.freed.notify_all();
        }
        if !why.is_empty() {
            tracing::debug!(agent = %call.agent_dir.display(), why, "warm call timed out waiting");
        }
        Err(ended)
    }

    /// Starts workers ahead of calls until the agent has (or is starting) `workers_per_agent`
    /// of this version, up to 8 side by side; each becomes idle as soon as it is ready, and a
    /// call that finds none idle waits for one being started rather than starting another.
    /// Returns how many were started (0 when the agent is served one-shot). Waits for each
    /// start up to `worker_init_timeout`, or until the pools are closed.
    pub(crate) fn prestart(self: &Arc<Self>, call: &WarmCall) -> Result<usize, AgentRuntimeError> {
        self.start_reaper();
        let pool = self.pool(&call.agent_dir);
        let starts: Vec<(u64, crate::CallCancel)> = {
            let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            if self.closed.load(Ordering::SeqCst) || state.one_shot.as_ref() == Some(&call.version) {
                return Ok(0);
            }
            // Calls holding a slot start a worker themselves, unless they wait for a start.
            // A worn worker (with a successor starting) is counted as its successor.
            let have =
                state.idle.iter().filter(|w| w.version == call.version && w.successor.is_none()).count()
                    + state.in_use.saturating_sub(state.awaiting.len())
                    + state.starting_of(&call.version);
            let missing = self.settings.workers_per_agent.saturating_sub(have);
            (0..missing)
                .map(|_| {
                    let (id, cancel) =
                        (self.next_id.fetch_add(1, Ordering::Relaxed), crate::CallCancel::new());
                    state.starting.push(Start { id, version: call.version.clone(), cancel: cancel.clone() });
                    (id, cancel)
                })
                .collect()
        };
        let mut started = 0;
        let mut first_error = None;
        for batch in starts.chunks(8) {
            let give_up = first_error.is_some()
                || self.closed.load(Ordering::SeqCst)
                || pool.state.lock().unwrap_or_else(PoisonError::into_inner).one_shot.as_ref()
                    == Some(&call.version);
            let results: Vec<Result<bool, AgentRuntimeError>> = if give_up {
                Vec::new()
            } else {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = batch
                        .iter()
                        .map(|(id, cancel)| scope.spawn(|| self.start_ahead(&pool, call, *id, cancel)))
                        .collect();
                    handles.into_iter().filter_map(|h| h.join().ok()).collect()
                })
            };
            // Starts given up (or one that panicked) are no longer under way: calls waiting
            // for them start their own.
            let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            let before = state.starting.len();
            state.starting.retain(|s| batch.iter().all(|(id, _)| *id != s.id));
            let gone = state.starting.len() < before;
            drop(state);
            if gone {
                pool.freed.notify_all();
            }
            for result in results {
                match result {
                    Ok(true) => started += 1,
                    Ok(false) => {}
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
        }
        match first_error {
            Some(e) if started == 0 => Err(e),
            _ => Ok(started),
        }
    }

    /// One start of [`Self::prestart`]: the worker becomes idle (`Ok(true)`), or the agent is
    /// marked one-shot, or the start failed; in every case its entry in `starting` goes and
    /// waiting calls are woken.
    fn start_ahead(
        &self,
        pool: &AgentPool,
        call: &WarmCall,
        id: u64,
        cancel: &crate::CallCancel,
    ) -> Result<bool, AgentRuntimeError> {
        let result = self.start(call, None, Some(cancel));
        let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.starting.retain(|s| s.id != id);
        let mut unwanted = Vec::new();
        // The worker this start replaces, if it is idle (one that is serving a call is
        // retired when the call gives it back).
        if let Some(at) = state.idle.iter().position(|w| w.successor == Some(id)) {
            unwanted.push(state.idle.swap_remove(at));
        }
        let outcome = match result {
            Ok(Some(w)) if !self.closed.load(Ordering::SeqCst) => {
                state.idle.push(w);
                Ok(true)
            }
            Ok(Some(w)) => {
                unwanted.push(w);
                Ok(false)
            }
            Ok(None) => {
                state.one_shot = Some(call.version.clone());
                Ok(false)
            }
            Err(e) => Err(e),
        };
        // Counted before the start leaves `starting` is seen (both under the pool's lock):
        // `close` waits for these shutdowns too.
        let task = (!unwanted.is_empty()).then(|| self.background.begin());
        drop(state);
        pool.freed.notify_all();
        retire_all(unwanted);
        drop(task);
        outcome
    }

    /// Spawns a worker on the spawner thread.
    fn spawn(&self, spec: ProcessSpec) -> Result<Worker, ProcessError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = {
            let mut spawner = self.spawner.lock().unwrap_or_else(PoisonError::into_inner);
            if spawner.is_none() {
                *spawner = Some(Spawner::start().map_err(ProcessError::Io)?);
            }
            spawner.as_ref().is_some_and(|s| s.requests.send((spec, tx)).is_ok())
        };
        if !sent {
            return Err(ProcessError::Io(std::io::Error::other("the worker spawner thread is gone")));
        }
        rx.recv().unwrap_or_else(|_| {
            Err(ProcessError::Io(std::io::Error::other("the worker spawner thread is gone")))
        })
    }

    /// Starts a worker and waits for its announcement: `Ok(None)` when the agent cannot be
    /// served warm. A call waits at most the time it has left (`wait`: then it is a
    /// `TimeoutError`, as the import would be in one-shot); a start ahead of calls (`None`)
    /// waits `worker_init_timeout`. `cancel` kills the worker while it starts.
    fn start(
        &self,
        call: &WarmCall,
        wait: Option<Duration>,
        cancel: Option<&crate::CallCancel>,
    ) -> Result<Option<Warm>, AgentRuntimeError> {
        if wait.is_some_and(|w| w.is_zero()) {
            return Err(call.timed_out(
                "agenthub: the call's time was up before a warm worker could be started for it".to_owned(),
            ));
        }
        let mut env = call.env.clone();
        let mut sandbox = call.sandbox.as_deref().cloned();
        let tools = match &call.tools {
            Some(tools) => {
                let slot = crate::tools::ToolSlot::default();
                let endpoint =
                    crate::tools::endpoint(sandbox.as_ref(), &tools.server(), &slot).map_err(|e| {
                        AgentRuntimeError::Execution {
                            message: format!("Cannot serve the call's tools: {e}"),
                            return_code: None,
                            signal: None,
                            stderr: None,
                        }
                    })?;
                sandbox = endpoint.sandbox;
                env.set.retain(|(k, _)| !endpoint.env.iter().any(|(name, _)| name == k));
                env.set.extend(endpoint.env);
                Some((slot, endpoint.guard))
            }
            None => None,
        };
        let spec = ProcessSpec {
            program: call.python.clone(),
            args: vec![
                "-u".into(),
                "-c".into(),
                BOOTSTRAP.into(),
                call.agent_dir.as_os_str().to_owned(),
                self.settings.dispatch.as_str().into(),
                call.methods.join(",").into(),
                call.limits.max_stdout_bytes.to_string().into(),
            ]
            .into_iter()
            .chain(self.settings.isolated.then(|| "isolated".into()))
            .collect(),
            cwd: call.agent_dir.clone(),
            env,
            limits: call.limits,
            registry: Some(Arc::clone(&self.registry)),
            containment: Containment::Auto,
            die_with_parent: call.die_with_parent,
            sandbox,
        };
        let started = Instant::now();
        let mut worker = self.spawn(spec)?;
        // The worker is not reaped before `recv` (this thread owns it), so the pidfd that
        // `attach` opens cannot name another process.
        if let Some(cancel) = cancel
            && !cancel.attach(worker.pid())
        {
            let _ = worker.shutdown(RETIRE_GRACE);
            return Err(AgentRuntimeError::Execution {
                message: "The warm worker's start was stopped (the call was cancelled or the runtime \
                          is shutting down)"
                    .to_owned(),
                return_code: None,
                signal: None,
                stderr: None,
            });
        }
        let failed = |message: String, status: Option<ExitStatus>, worker: &Worker| {
            let (stderr, _) = worker.stderr_since(0);
            let stderr = String::from_utf8_lossy(&stderr).trim_end().to_owned();
            AgentRuntimeError::Execution {
                message,
                return_code: status.and_then(ExitStatus::code),
                signal: status.and_then(ExitStatus::signal),
                stderr: Some(stderr).filter(|s| !s.is_empty()),
            }
        };
        let bound = wait.filter(|t| *t < self.settings.init_timeout);
        let received = worker.recv(Some(bound.unwrap_or(self.settings.init_timeout)), MAX_ANNOUNCEMENT);
        if let Some(cancel) = cancel {
            cancel.detach();
        }
        let line = match received? {
            Received::Line(line) => line,
            Received::Exited(status) => {
                return Err(failed(
                    "The agent's warm worker exited while importing agent.py".to_owned(),
                    Some(status),
                    &worker,
                ));
            }
            Received::Stopped(Termination::Timeout, _) if bound.is_some() => {
                let (stderr, _) = worker.stderr_since(0);
                let stderr = String::from_utf8_lossy(&stderr).trim_end().to_owned();
                return Err(AgentRuntimeError::Timeout {
                    limit: call.limits.timeout.or(bound).unwrap_or_default(),
                    stderr: Some(stderr).filter(|s| !s.is_empty()),
                });
            }
            Received::Stopped(Termination::Timeout, status) => {
                return Err(failed(
                    format!(
                        "The agent's warm worker did not finish importing agent.py within {:?} \
                         (runtime.worker_init_timeout)",
                        self.settings.init_timeout
                    ),
                    Some(status),
                    &worker,
                ));
            }
            Received::Stopped(why, status) => {
                return Err(failed(
                    format!("The agent's warm worker was stopped while importing agent.py: {why:?}"),
                    Some(status),
                    &worker,
                ));
            }
        };
        match Announcement::parse(&line) {
            Some(Announcement::Ready { dispatch: Served::None, reason, .. }) => {
                tracing::debug!(agent = %call.agent_dir.display(), reason = reason.as_deref().unwrap_or_default(), "agent served one-shot");
                let _ = worker.shutdown(RETIRE_GRACE);
                Ok(None)
            }
            Some(Announcement::Ready { dispatch, isolated, fork_refused, .. }) => {
                let isolation = match (isolated, fork_refused) {
                    (Some(false), why) => {
                        let reason = why.unwrap_or_default();
                        tracing::debug!(
                            agent = %call.agent_dir.display(),
                            reason,
                            "isolated mode: the zygote cannot fork safely; agent served warm"
                        );
                        Some(crate::Isolation::Warm { reason })
                    }
                    (Some(true), _) => {
                        tracing::debug!(
                            agent = %call.agent_dir.display(),
                            "isolated mode: zygote ready, each call runs in a fork of it"
                        );
                        Some(crate::Isolation::Forked)
                    }
                    (None, _) => None,
                };
                if let Some(isolation) = isolation {
                    self.isolation
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(call.agent_dir.clone(), isolation);
                }
                tracing::debug!(pid = worker.pid(), ?dispatch, took = ?started.elapsed(), "warm worker ready");
                let jitter = self.next_id.load(Ordering::Relaxed) % (self.settings.max_calls / 10 + 1);
                Ok(Some(Warm {
                    worker,
                    tools,
                    version: call.version.clone(),
                    forks: isolated == Some(true),
                    calls: 0,
                    typical: None,
                    retire_after: self.settings.max_calls.saturating_sub(jitter),
                    successor: None,
                    idle_since: Instant::now(),
                }))
            }
            Some(Announcement::Error { error }) => {
                let status = worker_status(worker, RETIRE_GRACE);
                Err(AgentRuntimeError::Execution {
                    message: format!("Importing agent.py failed: {error}"),
                    return_code: status.0.and_then(ExitStatus::code),
                    signal: status.0.and_then(ExitStatus::signal),
                    stderr: status.1,
                })
            }
            None => Err(failed("The agent's warm worker did not announce itself".to_owned(), None, &worker)),
        }
    }

    /// Sends one request and waits for its answer; the output as a one-shot process would
    /// have produced it, the worker's resident memory after it, and whether the worker may
    /// serve again.
    fn request(&self, warm: &mut Warm, call: &WarmCall) -> (ProcessOutput, Option<u64>, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let spin = Self::spin_for(warm.typical, in_flight);
        let line = serde_json::to_vec(&Request {
            id,
            method: &call.method,
            request: &call.request,
            spin: !spin.is_zero(),
            traceparent: call.trace.as_ref().map(|t| t.0.as_str()),
            tracestate: call.trace.as_ref().and_then(|t| t.1.as_deref()),
        })
        .unwrap_or_default();
        let started = Instant::now();
        let forks = warm.forks;
        let worker = &mut warm.worker;
        let mark = worker.stderr_mark();
        worker.reset_peak();
        // JSON escapes newlines: one line. The worker's answer may be up to ~6x its output.
        let max_line = call.limits.max_stdout_bytes.saturating_mul(6).saturating_add(4096);
        // The rest of the call's time: what it spent waiting for a slot and a start counts.
        // The worker's tool endpoint serves this call while it runs.
        let occupied = match (&warm.tools, &call.tools) {
            (Some((slot, _)), Some(tools)) => Some(crate::tools::Occupied::new(slot, tools)),
            _ => None,
        };
        worker.set_spin(spin);
        let sent = Instant::now();
        let received = worker.request(&line, call.left().or(call.limits.timeout), max_line);
        let took = sent.elapsed();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        warm.typical = Some(warm.typical.map_or(took, |typical| (typical * 7 + took) / 8));
        drop(occupied);
        let (peak, rss) = worker.memory();
        let mut output = ProcessOutput {
            pid: worker.pid(),
            status: ExitStatus::Exited(0),
            termination: None,
            stdout: Vec::new(),
            stderr_tail: Vec::new(),
            stderr_truncated: false,
            wall_time: Duration::ZERO,
            peak_rss_bytes: peak,
        };
        let reusable = match received {
            Ok(Received::Line(line)) => {
                match Reply::parse(&line) {
                    Some(reply) if reply.id == Some(id) && reply.stdout_limit => {
                        // The worker stopped the call at the output cap (and exits); in
                        // isolated mode only the call's child exited.
                        output.termination = Some(Termination::StdoutLimit);
                        forks
                    }
                    Some(reply) if reply.id == Some(id) && reply.error.is_none() => {
                        let code = i32::try_from(reply.exit_code).unwrap_or(1);
                        output.status = reply.signal.map_or(ExitStatus::Exited(code), ExitStatus::Signaled);
                        if let Some(peak) = reply.peak_rss {
                            // Isolated mode: the call's child, not the zygote.
                            output.peak_rss_bytes = Some(peak);
                        }
                        if reply.stdout.len() > call.limits.max_stdout_bytes {
                            output.termination = Some(Termination::StdoutLimit);
                        } else {
                            output.stdout = reply.stdout.into_bytes();
                        }
                        // `os._exit` in the call: the worker answered and is leaving.
                        !reply.exiting
                    }
                    other => {
                        // Out of turn (something in the worker wrote to its channel) or refused:
                        // the channel cannot be trusted any more; the worker is replaced.
                        let got =
                            other.and_then(|r| r.id).map_or_else(|| "null".to_owned(), |i| i.to_string());
                        output.status = ExitStatus::Exited(1);
                        output.stderr_tail = format!(
                            "agenthub: the warm worker answered out of turn (a reply for request {got} while \
                             waiting for {id}); it has been replaced. The call was not retried."
                        )
                        .into_bytes();
                        false
                    }
                }
            }
            Ok(Received::Exited(status)) => {
                output.status = status;
                false
            }
            Ok(Received::Stopped(why, status)) => {
                output.status = status;
                output.termination = Some(why);
                false
            }
            Err(e) => {
                output.status = ExitStatus::Exited(1);
                output.stderr_tail = e.to_string().into_bytes();
                false
            }
        };
        if output.stderr_tail.is_empty() {
            let (tail, cut) = worker.stderr_since(mark);
            output.stderr_tail = tail;
            output.stderr_truncated = cut;
        }
        output.wall_time = started.elapsed();
        (output, rss, reusable)
    }

    /// How long a caller may read the channel on the CPU before it sleeps, for a worker
    /// whose answers typically take `typical`, with `in_flight` requests out (this one
    /// included). An answer on another CPU wakes a sleeping caller through the scheduler,
    /// which on these machines costs about as much as a short call itself; a caller that
    /// is still on its CPU reads it at once. Only for workers that typically answer within
    /// [`SPIN_MAX`] (for that long at most), and only while at most
    /// one request per two CPUs is out, so that spinning callers never take the CPUs the
    /// workers need. Zero otherwise: the caller sleeps at once, as before.
    fn spin_for(typical: Option<Duration>, in_flight: usize) -> Duration {
        static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cpus =
            *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
        match typical {
            Some(typical) if typical <= SPIN_MAX && in_flight * 2 <= cpus => SPIN_MAX,
            _ => Duration::ZERO,
        }
    }

    /// Starts the thread that retires idle workers after `idle_timeout` (once; it ends when
    /// the pools are dropped).
    fn start_reaper(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        self.reaper_started.call_once(|| {
            let tick =
                (self.settings.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
            let _ = std::thread::Builder::new().name("agenthub-worker-reaper".to_owned()).spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    let Some(pools) = weak.upgrade() else { return };
                    pools.retire_idle();
                }
            });
        });
    }

    /// Retires workers idle for longer than `idle_timeout`.
    fn retire_idle(&self) {
        let pools: Vec<Arc<AgentPool>> =
            self.agents.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        for pool in pools {
            let expired = {
                let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
                let (expired, kept): (Vec<Warm>, Vec<Warm>) = std::mem::take(&mut state.idle)
                    .into_iter()
                    .partition(|w| w.idle_since.elapsed() >= self.settings.idle_timeout);
                state.idle = kept;
                expired
            };
            retire_all(expired);
        }
    }
}

impl Drop for Pools {
    fn drop(&mut self) {
        let pools: Vec<Arc<AgentPool>> =
            self.agents.get_mut().unwrap_or_else(PoisonError::into_inner).drain().map(|(_, p)| p).collect();
        let mut retired = Vec::new();
        for pool in pools {
            retired.append(&mut pool.state.lock().unwrap_or_else(PoisonError::into_inner).idle);
        }
        retire_all(retired);
    }
}

/// Gives a slot back (also when the call unwinds).
struct Release<'a> {
    pool: &'a AgentPool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.in_use = state.in_use.saturating_sub(1);
        drop(state);
        self.pool.freed.notify_all();
    }
}

/// A successor's start on its thread: dropped when it ends (also by a panic), it takes the
/// start out of `starting` if `start_ahead` did not, wakes the calls waiting on the pool and
/// gives back its share of `in_flight`.
struct SuccessorStart {
    pools: Arc<Pools>,
    pool: Arc<AgentPool>,
    id: u64,
}

impl Drop for SuccessorStart {
    fn drop(&mut self) {
        self.pool.state.lock().unwrap_or_else(PoisonError::into_inner).starting.retain(|s| s.id != self.id);
        self.pool.freed.notify_all();
        self.pools.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Shuts workers down, all at once (each gets the grace period in parallel).
fn retire_all(workers: Vec<Warm>) {
    match workers.len() {
        0 => {}
        1 => {
            for w in workers {
                let _ = w.worker.shutdown(RETIRE_GRACE);
            }
        }
        _ => std::thread::scope(|scope| {
            for w in workers {
                scope.spawn(move || w.worker.shutdown(RETIRE_GRACE));
            }
        }),
    }
}

/// A failed worker's exit status and stderr, after it is shut down.
fn worker_status(worker: Worker, grace: Duration) -> (Option<ExitStatus>, Option<String>) {
    let (stderr, _) = worker.stderr_since(0);
    let status = worker.shutdown(grace);
    let stderr = String::from_utf8_lossy(&stderr).trim_end().to_owned();
    (Some(status), Some(stderr).filter(|s| !s.is_empty()))
}
