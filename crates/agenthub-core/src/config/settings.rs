//! Every configuration setting, declared once: its key in config.yaml (section and field),
//! type, default, `AGENTHUB_*` variable, parser, range and doc. The first doc line of each
//! is what the README's table says; further lines are for rustdoc only.
//!
//! To add a setting, add it here (and, for a `top:` one, its field to `Config` and
//! `ConfigFile`), then run `UPDATE_README=1 cargo test -p agenthub-core readme` to update
//! the README's table.

use std::path::{Component, Path, PathBuf};

use super::setting::{Range, settings, trimmed, whole_to_1024};
use super::types::{
    AgentGrants, AgentTools, EnvBackendKind, ExecutionMode, ExecutionTarget, LogLevel, PythonRequest,
    Seconds, WorkerDispatch,
};
use super::{DEFAULT_RAY_VERSION, DEFAULT_REGISTRY, MAX_MEMORY_MIB, MAX_SECONDS};
use crate::SandboxMode;

settings! {
    /// Runtime limits and behaviour (`RuntimeConfig` of the Phase-1 design).
    section runtime: RuntimeConfig {
        /// Wall-clock limit of one execution (`--timeout`).
        max_execution_time: Seconds = Seconds::new(30.0), var "AGENTHUB_MAX_EXECUTION_TIME",
            check POSITIVE_SECONDS;
        /// Resident-memory cap of one agent's process tree, in MiB; 0 = no cap (`--max-memory`).
        max_memory_usage: u64 = 1024, var "AGENTHUB_MAX_MEMORY_USAGE", check MEMORY_MIB;
        /// Limit of the short probes around environment building (an installer's or interpreter's version).
        subprocess_timeout: Seconds = Seconds::new(5.0), var "AGENTHUB_SUBPROCESS_TIMEOUT",
            check POSITIVE_SECONDS;
        /// Time between sweeps for what dead runtimes left, by a long-lived runtime; 0 = off.
        cleanup_interval: Seconds = Seconds::new(60.0), var "AGENTHUB_CLEANUP_INTERVAL",
            check SECONDS_OR_OFF;
        /// How much agenthub logs to stderr.
        log_level: LogLevel = LogLevel::Info, var "AGENTHUB_LOG_LEVEL";
        /// Build environments with uv when it is found, else with pip.
        use_uv: bool = true, var "AGENTHUB_USE_UV";
        /// Force an environment backend, over `use_uv` (`--env-backend`).
        env_backend: Option<EnvBackendKind> = None, var "AGENTHUB_ENV_BACKEND";
        /// Cap on an agent's stdout, in bytes.
        max_stdout_bytes: u64 = 16 * 1024 * 1024, var "AGENTHUB_MAX_STDOUT_BYTES";
        /// Limit of one tool call an agent makes (another agent's method, an MCP server's tool).
        tool_timeout: Seconds = Seconds::new(30.0), var "AGENTHUB_TOOL_TIMEOUT", check POSITIVE_SECONDS;
        /// How deep tool calls may nest (an agent tool that has tools of its own).
        max_tool_depth: usize = 4, var "AGENTHUB_MAX_TOOL_DEPTH" parse whole_to_1024, check ONE_TO_1024;
        /// Time a timed-out agent gets between SIGTERM and SIGKILL.
        kill_grace_period: Seconds = Seconds::new(1.0), var "AGENTHUB_KILL_GRACE_PERIOD",
            check POSITIVE_SECONDS;
        /// Limit of one whole environment build (creating it, installing requirements), lock wait included.
        build_timeout: Seconds = Seconds::new(600.0), var "AGENTHUB_BUILD_TIMEOUT",
            check POSITIVE_SECONDS;
        /// Pass agents only a base set of variables and `env_allow`, not the caller's whole environment (`--env-clear`).
        ///
        /// The base set is [`super::BASE_ENV_VARS`]. Off by default: agents usually need API
        /// keys from the caller's environment.
        env_clear: bool = false, var "AGENTHUB_ENV_CLEAR";
        /// Variables passed to agents when `env_clear` is on (`--env-allow VAR` also turns it on).
        env_allow: Vec<String> = Vec::new(), var "AGENTHUB_ENV_ALLOW";
        /// Agents one runtime runs at once, further calls wait; 0 = twice the CPUs.
        max_concurrency: usize = 0, var "AGENTHUB_MAX_CONCURRENCY";
        /// Agents get SIGKILL when the thread that started them dies (`PR_SET_PDEATHSIG`); the CLI turns it on.
        ///
        /// Libraries on multi-threaded runtimes should leave it off.
        kill_agents_with_runtime: bool = false, var "AGENTHUB_KILL_AGENTS_WITH_RUNTIME";
        /// How calls run: a fresh interpreter per call, warm workers that import the agent once, or a fork of such a worker per call (`isolated`).
        mode: ExecutionMode = ExecutionMode::Oneshot, var "AGENTHUB_MODE";
        /// Warm workers per agent (all together bounded by `max_concurrency`).
        workers_per_agent: usize = 1, var "AGENTHUB_WORKERS_PER_AGENT" parse whole_to_1024,
            check ONE_TO_1024;
        /// A worker is replaced after this many calls (with up to 10% jitter); 0 = never.
        /// Its successor starts in the background while it serves on.
        max_calls_per_worker: u64 = 10_000, var "AGENTHUB_MAX_CALLS_PER_WORKER";
        /// An idle worker exits after this long.
        worker_idle_timeout: Seconds = Seconds::new(300.0), var "AGENTHUB_WORKER_IDLE_TIMEOUT",
            check POSITIVE_SECONDS;
        /// How long a worker may take to import its agent.
        worker_init_timeout: Seconds = Seconds::new(60.0), var "AGENTHUB_WORKER_INIT_TIMEOUT",
            check POSITIVE_SECONDS;
        /// A worker whose resident memory passes this many MiB after a call is replaced; 0 = off.
        worker_recycle_memory: u64 = 1024, var "AGENTHUB_WORKER_RECYCLE_MEMORY", check RECYCLE_MIB;
        /// How warm workers call methods.
        worker_dispatch: WorkerDispatch = WorkerDispatch::Auto, var "AGENTHUB_WORKER_DISPATCH";
        /// Where calls run (`--on`).
        target: ExecutionTarget = ExecutionTarget::Local, var "AGENTHUB_TARGET";
        /// How calls are sandboxed: `default`, `strict` or `off` (`--sandbox`).
        ///
        /// See [`SandboxMode`] and [`crate::SandboxPolicy::resolve`].
        sandbox_mode: SandboxMode = SandboxMode::Default, var "AGENTHUB_SANDBOX";
    }

    /// Environment management (`EnvironmentConfig` of the Phase-1 design).
    section environment: EnvironmentConfig {
        /// Python to build with: a version (`3.12`) or an interpreter's path; unset = the manifest's constraint.
        ///
        /// Without either, the `python3` on PATH. See [`Self::python_request`].
        python_version: Option<String> = None, var "AGENTHUB_PYTHON_VERSION", check PYTHON;
        /// Name of the environment directory inside the agent directory.
        venv_location: String = ".venv".to_owned(), var "AGENTHUB_VENV_LOCATION", check ONE_COMPONENT;
        /// Let the installer use its download cache.
        dependency_cache: bool = true, var "AGENTHUB_DEPENDENCY_CACHE";
        /// Remove a half-built environment when a build fails.
        auto_cleanup: bool = true, var "AGENTHUB_AUTO_CLEANUP";
        /// Warn when an environment grows past this many MB.
        max_venv_size: u64 = 500, var "AGENTHUB_MAX_VENV_SIZE";
        /// Run the manifest's `installation.commands` after installing requirements (split like a shell would, run without one).
        ///
        /// Off by default: a manifest is untrusted input.
        run_installation_commands: bool = false, var "AGENTHUB_RUN_INSTALLATION_COMMANDS";
    }

    /// Installing agents (`agenthub install`, auto-install on first use).
    section install: InstallConfig {
        /// Install an agent named `ns/name` that is not installed when it is first called; unset = on for the CLI, off for the library.
        auto_install: Option<bool> = None, var "AGENTHUB_AUTO_INSTALL";
        /// When uv is needed and not found, install it once into `<home>/tools/uv` with `python3 -m pip`.
        ///
        /// uv is needed when an agent ships `uv.lock`.
        provision_uv: bool = true, var "AGENTHUB_PROVISION_UV";
        /// Limit of one git command (clone, fetch, checkout).
        git_timeout: Seconds = Seconds::new(300.0), var "AGENTHUB_GIT_TIMEOUT", check POSITIVE_SECONDS;
    }

    /// The Ray execution target (`target: ray`).
    section ray: RayConfig {
        /// The cluster (`ray://host:10001`, `host:6379`, `auto`); unset = `RAY_ADDRESS`, else a cluster on this machine (`--ray-address`).
        address: Option<String> = None;
        /// A Python that has `ray` installed, to run agenthub's driver with.
        python: Option<PathBuf> = None, var "AGENTHUB_RAY_PYTHON";
        /// The Ray version of the Python agenthub builds for its driver when `python` is unset; it must be the cluster's.
        ///
        /// That Python lives in `<home>/tools/ray-<version>`.
        version: String = DEFAULT_RAY_VERSION.to_owned(), var "AGENTHUB_RAY_VERSION" parse trimmed,
            check RAY_RELEASE;
        /// Ray actors per agent (calls beyond that queue on them).
        actors_per_agent: usize = 2, var "AGENTHUB_RAY_ACTORS_PER_AGENT" parse whole_to_1024,
            check ONE_TO_1024;
        /// How long connecting to the cluster may take.
        connect_timeout: Seconds = Seconds::new(60.0), var "AGENTHUB_RAY_CONNECT_TIMEOUT",
            check POSITIVE_SECONDS;
    }

    /// Run history: one record per call in `<home>/history.db` (`agenthub runs`, `agenthub stats`).
    section history: HistoryConfig {
        /// Record every call in `<home>/history.db`.
        enabled: bool = true, var "AGENTHUB_HISTORY";
        /// Also store each call's parameters and result (capped at 64 KiB each); off because they may hold secrets.
        record_payloads: bool = false, var "AGENTHUB_HISTORY_RECORD_PAYLOADS";
        /// Days a record is kept; 0 = no limit by age.
        keep_days: u64 = 30, var "AGENTHUB_HISTORY_KEEP_DAYS";
        /// Records kept at most (the oldest go first); 0 = no limit by count.
        max_rows: u64 = 1_000_000, var "AGENTHUB_HISTORY_MAX_ROWS";
    }

    top: {
        /// Where `ns/name` is installed from: a URL template with `{ns}` and `{name}`.
        registry: String = DEFAULT_REGISTRY.to_owned(), var "AGENTHUB_REGISTRY" parse trimmed,
            check REGISTRY_TEMPLATE;
        /// What you grant installed agents beyond their declaration, per id: `ns/name: {net: [...], read: [...], write: [...], env: [...]}`.
        grants: AgentGrants = AgentGrants::new(), check GRANTS;
        /// The tools each installed agent gets, per id: `ns/name: {agents: [other/agent, x/y.method], mcp_servers: FILE}`.
        tools: AgentTools = AgentTools::new(), check TOOLS;
    }
}

// ---- Ranges -----------------------------------------------------------------------------

const POSITIVE_SECONDS: Range<Seconds> = Range {
    accepts: "seconds, greater than 0 and at most 1000000000",
    check: |&s| {
        if s.is_positive_in_range() {
            return Ok(());
        }
        Err(format!("must be a number of seconds greater than 0 and at most {MAX_SECONDS:.0}, got {s}"))
    },
};

const SECONDS_OR_OFF: Range<Seconds> = Range {
    accepts: "seconds, from 0 (off) to 1000000000",
    check: |&s| {
        let secs = s.as_secs_f64();
        if secs.is_finite() && (0.0..=MAX_SECONDS).contains(&secs) {
            return Ok(());
        }
        Err(format!("must be a number of seconds from 0 (off) to {MAX_SECONDS:.0}, got {s}"))
    },
};

const MEMORY_MIB: Range<u64> = Range {
    accepts: "MiB, from 0 (no cap) to 17592186044415",
    check: |&mib| {
        if mib <= MAX_MEMORY_MIB {
            return Ok(());
        }
        Err(format!("must be a whole number of MiB from 0 (no cap) to {MAX_MEMORY_MIB}, got {mib}"))
    },
};

const RECYCLE_MIB: Range<u64> = Range {
    accepts: "MiB, from 0 (off) to 17592186044415",
    check: |&mib| {
        if mib <= MAX_MEMORY_MIB {
            return Ok(());
        }
        Err(format!("must be a whole number of MiB from 0 (off) to {MAX_MEMORY_MIB}"))
    },
};

const ONE_TO_1024: Range<usize> = Range {
    accepts: "a whole number from 1 to 1024",
    check: |&n| {
        if (1..=1024).contains(&n) {
            return Ok(());
        }
        Err(format!("must be a whole number from 1 to 1024, got {n}"))
    },
};

const PYTHON: Range<Option<String>> = Range {
    accepts: "a version constraint (`3.12`, `3.11+`, `>=3.10,<3.13`) or a path containing `/`; or unset",
    check: |raw| match raw {
        Some(raw) => PythonRequest::parse(raw).map(drop),
        None => Ok(()),
    },
};

const ONE_COMPONENT: Range<String> = Range {
    accepts: "one directory name (not `.` or `..`, no `/`)",
    check: |venv| {
        let mut components = Path::new(venv).components();
        let plain = matches!(components.next(), Some(Component::Normal(_)))
            && components.next().is_none()
            && !venv.contains(['/', '\0']);
        if plain {
            return Ok(());
        }
        Err(format!(
            "must be the name of a directory inside the agent directory (one path component, not `.` or `..`), got `{venv}`"
        ))
    },
};

const RAY_RELEASE: Range<String> = Range {
    accepts: "a Ray release (`2.60.0`)",
    check: |version| {
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
            return Ok(());
        }
        Err(format!("must be a Ray release such as 2.60.0, got `{version}`"))
    },
};

const GRANTS: Range<AgentGrants> = Range {
    accepts: "agent ids, each with `net`, `read`, `write` and `env` lists (config.yaml only)",
    check: |grants| {
        for (id, grant) in grants {
            id.parse::<crate::AgentId>().map_err(|e| format!("{e}; grants are given per installed agent"))?;
            grant.check().map_err(|e| format!("{id}: {e}"))?;
        }
        Ok(())
    },
};

const TOOLS: Range<AgentTools> = Range {
    accepts: "agent ids, each with `agents` (ids, or `ns/name.method`) and `mcp_servers` (a file) (config.yaml only)",
    check: |tools| {
        for (id, assigned) in tools {
            id.parse::<crate::AgentId>().map_err(|e| format!("{e}; tools are given per installed agent"))?;
            assigned.check().map_err(|e| format!("{id}: {e}"))?;
        }
        Ok(())
    },
};

const REGISTRY_TEMPLATE: Range<String> = Range {
    accepts: "a URL template containing `{ns}` and `{name}`",
    check: |registry| {
        if registry.contains("{ns}") && registry.contains("{name}") {
            return Ok(());
        }
        Err(format!(
            "must be a URL template with {{ns}} and {{name}}, such as {DEFAULT_REGISTRY}, got `{registry}`"
        ))
    },
};
