//! Command-line arguments.

use std::path::PathBuf;

use agenthub_core::{EnvBackendKind, ExecutionMode};
use clap::{Args, Parser, Subcommand};

/// Run Python AI agents (agentplug format) in isolated environments and processes.
#[derive(Debug, Parser)]
#[command(name = "agenthub", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Home directory (default: $`AGENTHUB_HOME`, else ~/.agenthub).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run one method of an agent and print its response.
    #[command(
        after_help = "PARAMS is one JSON object ('{\"name\": \"World\"}'), key=value pairs typed by the \
manifest (a=2 b=40), or one plain string for the method's single required string parameter.\n\n\
Exit status: 0 result, 1 error response, 2 usage error."
    )]
    Exec(ExecArgs),
    /// List installed agents.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an agent's manifest, methods and environment.
    Info {
        /// Agent id (namespace/name) or path (./dir, /dir, ~/dir).
        agent: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage agent environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Run many calls of one agent through warm workers: one JSON request per stdin line
    /// (`{"method": ..., "parameters": {...}, "id": ...}`), one response per stdout line,
    /// in input order.
    #[command(
        after_help = "A line that is not a request gets an error response for that line; the rest go on. \
An \"id\" in a request is echoed back in its response.\n\nExit status: 0 when every call returned a result, \
1 when any failed, 2 usage error."
    )]
    Batch(BatchArgs),
    /// Measure an agent's call latency: median, p99 and calls per second.
    Bench(BenchArgs),
    /// Create a new agent: agent.yaml, agent.py and README.md, ready to validate and run.
    #[command(
        after_help = "Exit status: 0 created, 1 the directory is not empty or cannot be written, 2 usage \
error (such as an invalid name)."
    )]
    Init(InitArgs),
    /// Check agents without running them: the manifest (every problem with its field path),
    /// agent.py, and symlinks that leave the agent directory.
    #[command(after_help = "With no AGENT, every installed agent is checked.\n\n\
Exit status: 0 all valid, 1 any invalid, 2 usage error.")]
    Validate(ValidateArgs),
    /// Check this machine and the agenthub home: interpreters, uv/pip/virtualenv/git, the
    /// home directory, environments, leftovers; each problem with its fix.
    #[command(after_help = "Exit status: 0 nothing broken (warnings allowed), 1 something is broken.")]
    Doctor {
        /// Print one JSON object (see README).
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `agenthub completions bash > ~/.local/share/bash-completion/completions/agenthub`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `agenthub init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The agent's name: letters, digits, `.`, `_` and `-`, starting with a letter or digit.
    pub(crate) name: String,
    /// Where to write it (default: ./NAME). Must not exist, or be an empty directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) path: Option<PathBuf>,
}

/// `agenthub validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Agent ids (namespace/name) or paths (./dir, /dir, ~/dir); none: every installed agent.
    #[arg(value_name = "PATH|AGENT")]
    pub(crate) agents: Vec<String>,
    /// Print `[{"agent", "path", "valid", "problems": [{"file", "field", "message"}]}]`.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `agenthub batch`.
#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    /// Agent id (`namespace/name`) or path (`./dir`).
    pub(crate) agent: String,
    /// Calls in flight at once (and warm workers started for them).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) concurrency: usize,
    /// Print each response as the JSON object of SPEC §5 (the default prints it too; kept
    /// for symmetry with `exec`).
    #[arg(long)]
    pub(crate) json: bool,
    /// Per-call timeout in seconds (overrides `runtime.max_execution_time`).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<f64>,
}

/// `agenthub bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Agent id (`namespace/name`) or path (`./dir`).
    pub(crate) agent: String,
    /// Method to call.
    pub(crate) method: String,
    /// Parameters, as for `exec`.
    pub(crate) params: Vec<String>,
    /// How many calls to time (after one untimed warm-up call).
    #[arg(short = 'n', long = "calls", default_value_t = 100, value_name = "N")]
    pub(crate) calls: usize,
    /// `oneshot` starts an interpreter per call (as `exec` does); `warm` reuses a worker.
    #[arg(long, value_enum, default_value = "warm")]
    pub(crate) mode: ExecutionMode,
    /// Print `{"mode", "calls", "median_ms", "p99_ms", "calls_per_sec"}`.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Agent id (namespace/name) or path (./dir, /dir, ~/dir).
    pub(crate) agent: String,
    /// The method to call.
    pub(crate) method: String,
    /// Parameters: a JSON object, key=value pairs, or one plain string.
    pub(crate) params: Vec<String>,
    /// Print the response as one JSON object on stdout, and nothing else.
    #[arg(long)]
    pub(crate) json: bool,
    /// Time limit in seconds (default: `max_execution_time`, 30).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<f64>,
    /// Memory cap in MB, 0 for none (default: `max_memory_usage`, 1024).
    #[arg(long, value_name = "MB")]
    pub(crate) max_memory: Option<u64>,
    /// Which tool builds the environment (default: uv when found, else pip).
    #[arg(long, value_enum)]
    pub(crate) env_backend: Option<EnvBackendKind>,
    /// Pass the agent only a base set (PATH, HOME, USER, TMPDIR, TZ, the locale) and the
    /// --env-allow variables, not the whole environment.
    #[arg(long)]
    pub(crate) env_clear: bool,
    /// A variable to pass when the environment is cleared (repeatable; implies --env-clear).
    #[arg(long, value_name = "VAR")]
    pub(crate) env_allow: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EnvCommand {
    /// Build an agent's environment if it has none (a stale one is left as it is).
    Create(EnvBuildArgs),
    /// Make an agent's environment match its requirements: build it if missing, broken or
    /// stale, else do nothing.
    Sync(EnvBuildArgs),
    /// Rebuild an agent's environment from scratch.
    Rebuild(EnvBuildArgs),
    /// Print the path of an agent's environment (exit 1 when it is not built).
    Path {
        /// Agent id or path.
        agent: String,
    },
    /// Remove an agent's environment: what agenthub built, nothing else.
    Remove {
        /// Agent id or path.
        agent: String,
        /// Print `{"removed": [...], "bytes": N}`.
        #[arg(long)]
        json: bool,
    },
    /// Remove environments no agent uses any more (superseded, failed or killed builds of
    /// installed agents, unfinished uv installs) and print what that freed.
    Gc {
        /// Print `{"removed": [...], "bytes": N, "skipped": [...]}`.
        #[arg(long)]
        json: bool,
    },
}

/// `agenthub env create|sync|rebuild`.
#[derive(Debug, Args)]
pub(crate) struct EnvBuildArgs {
    /// Agent id or path.
    pub(crate) agent: String,
    /// Which tool builds the environment.
    #[arg(long, value_enum)]
    pub(crate) env_backend: Option<EnvBackendKind>,
}
