//! Command-line arguments. The doc comments of commands and arguments are their help
//! text, read on a terminal: no markdown, no references to sources a user of the binary
//! does not have, one wording for an agent argument ([`AGENT`]).
#![allow(clippy::doc_markdown, reason = "doc comments here are help text for a terminal, not rustdoc")]

use std::path::PathBuf;

use agenthub_core::{EnvBackendKind, ExecutionMode, ExecutionTarget, Grants, HostPattern, SandboxMode};
use clap::{Args, Parser, Subcommand};

/// The help of an argument naming one agent, the same for every command.
const AGENT: &str = "An installed agent (namespace/name) or an agent directory (./dir, /dir, ~/dir)";
/// The help of an argument naming agents.
const AGENTS: &str = "Installed agents (namespace/name) or agent directories (./dir, /dir, ~/dir)";
/// The help of an argument naming an installed agent.
const INSTALLED: &str = "An installed agent (namespace/name)";

/// Run Python AI agents (agentplug format) in isolated environments and processes.
#[derive(Debug, Parser)]
#[command(name = "agenthub", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) globals: Globals,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `agenthub exec …` alone: what the one-shot path parses, so that a call does not build
/// the whole command tree (every subcommand's arguments) first. Anything it does not take
/// as an `exec` call — help, a typo, another command — is parsed again by [`Cli`], which
/// says the same as always.
#[derive(Debug, Parser)]
#[command(name = "agenthub")]
struct ExecCli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: ExecOnly,
}

#[derive(Debug, Subcommand)]
enum ExecOnly {
    Exec(ExecArgs),
}

impl Cli {
    /// Parses the process's arguments (exits with clap's message on a usage error).
    pub(crate) fn parse_args() -> Self {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if argv.iter().skip(1).any(|a| a == "exec")
            && let Ok(ExecCli { globals, command: ExecOnly::Exec(args) }) = ExecCli::try_parse_from(&argv)
        {
            return Self { globals, command: Command::Exec(args) };
        }
        Self::parse_from(argv)
    }
}

/// Flags every command takes, listed once under their own heading.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Globals {
    /// Home directory (default: $AGENTHUB_HOME, else ~/.agenthub)
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
    /// Print nothing but results and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Say more on stderr: -v progress as lines and info logs, -vv debug logs
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Colour and spinners on stderr: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "WHEN",
        hide_possible_values = true
    )]
    pub(crate) color: ColorChoice,
}

/// --color.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
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
        /// Print one JSON array of the agents
        #[arg(long)]
        json: bool,
    },
    /// Show an agent's manifest, methods and environment.
    Info {
        #[arg(help = AGENT)]
        agent: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tools: ToolArgs,
    },
    /// Manage agent environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Run many calls of one agent through warm workers, one JSON request per stdin line
    #[command(
        after_help = "Each line is {\"method\": ..., \"parameters\": {...}, \"id\": ...}; each answer is one \
response line on stdout, in input order. A line that is not a request gets an error response for that line; the rest go on. \
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
    /// Check agents without running them
    #[command(after_help = "Checked: the manifest (every problem with its field), agent.py (there, and \
compiling, without being run), and symlinks that leave the agent directory. With no AGENT, every installed \
agent is checked.\n\n\
Exit status: 0 all valid, 1 any invalid, 2 usage error.")]
    Validate(ValidateArgs),
    /// Check this machine and the agenthub home, each problem with its fix
    #[command(after_help = "Checked: interpreters, uv, pip, virtualenv and git, the home directory, \
environments and leftovers.\n\nExit status: 0 nothing broken (warnings allowed), 1 something is broken.")]
    Doctor {
        /// Print one JSON object: {"home", "interpreters", "tools", "environments", "problems"}
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "For example: agenthub completions bash > ~/.local/share/bash-completion/completions/agenthub"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Install an agent from a git repository, a directory, or the registry (ns/name).
    #[command(
        after_help = "SOURCE is a directory (./dir, /dir, ~/dir), a git URL (https://, ssh://, git@host:path, \
file://) with an optional @ref (branch, tag or commit), or ns/name[@ref], which the registry template in \
config.yaml (AGENTHUB_REGISTRY; default https://github.com/{ns}/{name}.git) turns into a URL.\n\n\
The agent is fetched and checked beside its target and swapped in at once: a failure at any step leaves the \
previous install as it was.\n\nExit status: 0 installed, 1 failure, 2 usage error."
    )]
    Install(InstallArgs),
    /// Install an agent's recorded source again, at a new ref or the recorded one.
    #[command(after_help = "Exit status: 0 updated, 1 failure (the current install is kept), 2 usage error.")]
    Update(UpdateArgs),
    /// The Ray target: the status of the cluster calls run on with --on ray.
    #[command(subcommand)]
    Ray(RayCommand),
    /// Remove an installed agent and its environments.
    #[command(after_help = "Only agents agenthub installed are removed. On a terminal it asks first; \
elsewhere --yes is required.\n\nExit status: 0 removed, 1 failure, 2 usage error (such as no --yes).")]
    Remove(RemoveArgs),
    /// Serve agents to MCP clients (Claude Desktop, Claude Code, Cursor): every method a tool.
    #[command(subcommand)]
    Mcp(McpCommand),
    /// List recorded calls, newest first (the run history in <home>/history.db).
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Every call is recorded: exec, batch, bench, mcp serve, agent tools and the libraries; \
parameters and results only with history.record_payloads: true. Turn recording off with history.enabled: false.\n\n\
Exit status: 0 listed, 1 the history cannot be read, 2 usage error."
    )]
    Runs(RunsArgs),
    /// Call counts, error rates and latency percentiles from the run history.
    #[command(after_help = "Latency is the total time of a call, per agent, method and mode; cold calls \
started a process for themselves (one-shot, or a warm call that started its worker).\n\n\
Exit status: 0 reported, 1 the history cannot be read, 2 usage error.")]
    Stats(StatsArgs),
}

/// `agenthub runs`.
#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    #[command(subcommand)]
    pub(crate) command: Option<RunsCommand>,
    /// Only this agent's calls (ns/name, or a path)
    #[arg(value_name = "AGENT")]
    pub(crate) agent: Option<String>,
    /// Only calls that failed
    #[arg(long)]
    pub(crate) failed: bool,
    /// Only calls started within this time: 30m, 1h, 2days
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub(crate) since: Option<std::time::Duration>,
    /// How many to list at most
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
    pub(crate) limit: usize,
    /// Print one JSON array of the runs
    #[arg(long)]
    pub(crate) json: bool,
}

/// `agenthub runs show|prune`.
#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// Everything recorded about one call: times, exit, stderr tail, its tool calls.
    Show {
        /// The run's id, or its first digits (at least 4)
        id: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Apply retention now: drop records older than history.keep_days and beyond history.max_rows.
    Prune {
        /// Print one JSON object: {"removed_by_age", "removed_by_count", "left"}
        #[arg(long)]
        json: bool,
    },
}

/// `agenthub stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this agent's calls (ns/name, or a path)
    #[arg(value_name = "AGENT")]
    pub(crate) agent: Option<String>,
    /// Only calls started within this time: 30m, 1h, 2days
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub(crate) since: Option<std::time::Duration>,
    /// Print one JSON object
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (write an age such as 30m, 1h or 2days)"))
}

/// `agenthub ray`.
#[derive(Debug, Subcommand)]
pub(crate) enum RayCommand {
    /// Connect to the cluster and report Ray's versions on both sides and the nodes.
    Status {
        /// The cluster (default: ray.address in config.yaml, else $RAY_ADDRESS, else a local one)
        #[arg(long, value_name = "ADDRESS")]
        ray_address: Option<String>,
        /// Print {"ray_version", "python", "nodes", "address", "driver_python"}
        #[arg(long)]
        json: bool,
    },
}

/// Where calls run: --on and --ray-address.
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    /// Where the calls run: local (default) or ray (actors on a Ray cluster)
    #[arg(long = "on", value_enum, value_name = "TARGET", hide_possible_values = true)]
    pub(crate) on: Option<ExecutionTarget>,
    /// The Ray cluster (implies --on ray; default: ray.address in config.yaml, else $RAY_ADDRESS)
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) ray_address: Option<String>,
}

impl TargetArgs {
    /// Applies the flags to the configuration.
    pub(crate) fn apply(&self, config: &mut agenthub_core::Config) {
        if let Some(on) = self.on {
            config.runtime.target = on;
        }
        if let Some(address) = &self.ray_address {
            config.ray.address = Some(address.clone());
            config.runtime.target = ExecutionTarget::Ray;
        }
    }
}

/// The sandbox of the calls a command runs: its mode and what the user grants beyond the
/// agent's declaration.
#[derive(Debug, Args)]
#[command(next_help_heading = "Sandbox")]
pub(crate) struct SandboxArgs {
    /// How calls are sandboxed: default, strict or off (default: sandbox_mode in config.yaml)
    #[arg(long, value_enum, value_name = "MODE", hide_possible_values = true)]
    pub(crate) sandbox: Option<SandboxMode>,
    /// Let the agent reach HOST: api.example.com, *.example.com, host:443, localhost:PORT (repeatable)
    #[arg(long = "allow-net", value_name = "HOST", value_parser = parse_net_grant)]
    pub(crate) allow_net: Vec<HostPattern>,
    /// Let the agent read PATH (repeatable).
    #[arg(long = "allow-read", value_name = "PATH")]
    pub(crate) allow_read: Vec<PathBuf>,
    /// Let the agent write PATH (repeatable).
    #[arg(long = "allow-write", value_name = "PATH")]
    pub(crate) allow_write: Vec<PathBuf>,
    /// Let the agent see the variable VAR in strict mode (repeatable).
    #[arg(long = "allow-env", value_name = "VAR", value_parser = parse_env_name)]
    pub(crate) allow_env: Vec<String>,
}

impl SandboxArgs {
    /// Applies the mode to the configuration.
    pub(crate) fn apply(&self, config: &mut agenthub_core::Config) {
        if let Some(mode) = self.sandbox {
            config.runtime.sandbox_mode = mode;
        }
    }

    /// The grants, with relative paths made absolute against the working directory (a `~`
    /// path is left for the runtime to expand).
    pub(crate) fn grants(&self) -> Grants {
        let absolute = |paths: &[PathBuf]| -> Vec<PathBuf> {
            paths
                .iter()
                .map(|p| {
                    if p.starts_with("~") {
                        p.clone()
                    } else {
                        std::path::absolute(p).unwrap_or_else(|_| p.clone())
                    }
                })
                .collect()
        };
        Grants {
            net: self.allow_net.clone(),
            read: absolute(&self.allow_read),
            write: absolute(&self.allow_write),
            env: self.allow_env.clone(),
        }
    }
}

/// The tools a command's calls get (SPEC §9): other agents' methods and the user's MCP
/// servers' tools. None given: what config.yaml gives the agent (`tools:`).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Tools")]
pub(crate) struct ToolArgs {
    /// Give the agent another agent's methods as tools: ns/name (all), ns/name.method, or a
    /// directory (./dir, ./dir:method) (repeatable)
    #[arg(long = "tool", value_name = "AGENT")]
    pub(crate) tools: Vec<String>,
    /// Give the agent the tools of the MCP servers in FILE ({"mcpServers": {...}}, as MCP
    /// clients write it) (repeatable)
    #[arg(long = "tools-from", value_name = "FILE")]
    pub(crate) tools_from: Vec<PathBuf>,
}

impl ToolArgs {
    /// What the flags assign (relative files made absolute against the working directory).
    pub(crate) fn assignment(&self) -> agenthub_tools::Assignment {
        agenthub_tools::Assignment {
            agents: self.tools.clone(),
            servers_files: self
                .tools_from
                .iter()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                .collect(),
            functions: Vec::new(),
        }
    }
}

fn parse_net_grant(value: &str) -> Result<HostPattern, String> {
    agenthub_core::parse_net_grant(value).map_err(|e| e.to_string())
}

fn parse_env_name(value: &str) -> Result<String, String> {
    agenthub_core::check_env_name(value).map(|()| value.to_owned()).map_err(|e| e.to_string())
}

/// `agenthub install`.
#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// A directory, a git URL[@ref], or ns/name[@ref].
    pub(crate) source: String,
    /// Install as this ns/name (default: from the source).
    #[arg(long = "as", value_name = "NS/NAME")]
    pub(crate) as_id: Option<String>,
    /// Replace an existing install of the agent.
    #[arg(long)]
    pub(crate) force: bool,
    /// Do not build the environment now (the first call builds it).
    #[arg(long)]
    pub(crate) no_env: bool,
    /// Print {"agent", "path", "record": {...}, "replaced", "environment_built", "already_installed"}
    #[arg(long)]
    pub(crate) json: bool,
}

/// agenthub update.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    #[arg(help = INSTALLED)]
    pub(crate) agent: String,
    /// The ref to move to (@v2 or v2; default: the recorded ref, or the default branch)
    #[arg(value_name = "@REF")]
    pub(crate) reference: Option<String>,
    /// Print one JSON object, as install --json does
    #[arg(long)]
    pub(crate) json: bool,
}

/// agenthub remove.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    #[arg(help = INSTALLED)]
    pub(crate) agent: String,
    /// Do not ask.
    #[arg(short, long)]
    pub(crate) yes: bool,
    /// Print {"agent", "path", "freed_bytes"}
    #[arg(long)]
    pub(crate) json: bool,
}

/// `agenthub mcp`.
#[derive(Debug, Subcommand)]
pub(crate) enum McpCommand {
    /// Run an MCP server on stdin/stdout (or over HTTP): each method of each AGENT is a tool
    #[command(after_help = "A tool is named after its method for one agent, AGENT__METHOD for several; \
calls are run by warm workers. Stdout carries nothing but the protocol; logs go to stderr. The server ends \
when stdin closes: calls in flight are cancelled and every worker is shut down.\n\n\
With --http ADDR it serves HTTP instead (Streamable HTTP at /mcp, the legacy HTTP+SSE transport at /sse), \
until SIGINT or SIGTERM; the URL is printed on stderr. A session that ends cancels its own calls.\n\n\
Exit status: 0 stdin closed, 1 the server failed, 2 usage error (no agent, an agent that does not load, \
a non-loopback --http address without --token-file), 128+N killed by signal N.")]
    Serve(McpServeArgs),
    /// Print the {"mcpServers": ...} JSON with which an MCP client starts agenthub mcp serve
    #[command(after_help = "Claude Desktop, Cursor and Claude Code read it from their configuration.")]
    Config(McpConfigArgs),
}

/// `agenthub mcp serve`.
#[derive(Debug, Args)]
pub(crate) struct McpServeArgs {
    #[arg(value_name = "AGENT", required_unless_present = "all", help = AGENTS)]
    pub(crate) agents: Vec<String>,
    /// Serve every installed agent (agents whose manifest does not load are skipped).
    #[arg(long, conflicts_with = "agents")]
    pub(crate) all: bool,
    /// Warm workers per agent: calls to one agent beyond this many wait.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub(crate) workers: usize,
    /// Per-call timeout in seconds (default: max_execution_time in config.yaml, 30)
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<f64>,
    /// Seconds between progress notifications of a running call (for requests that carry a
    /// progressToken).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub(crate) progress_interval: f64,
    /// warm reuses a worker per agent; isolated runs each call in a fork of it (nothing a
    /// call does is seen by the next); oneshot starts an interpreter per call
    #[arg(long, value_enum, default_value = "warm", hide_possible_values = true)]
    pub(crate) mode: ExecutionMode,
    /// Serve over HTTP on ADDR (host:port, e.g. 127.0.0.1:8765; port 0 picks a free one)
    /// instead of stdin/stdout. Loopback only, unless --token-file is given.
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// With --http: a file holding the token every request must carry (Authorization:
    /// Bearer TOKEN)
    #[arg(long, value_name = "FILE", requires = "http")]
    pub(crate) token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) sandbox: SandboxArgs,
}

/// `agenthub mcp config`.
#[derive(Debug, Args)]
pub(crate) struct McpConfigArgs {
    /// Installed agents (namespace/name) or agent directories (./dir, /dir, ~/dir; written
    /// as absolute paths)
    #[arg(value_name = "AGENT", required_unless_present = "all")]
    pub(crate) agents: Vec<String>,
    /// Serve every installed agent.
    #[arg(long, conflicts_with = "agents")]
    pub(crate) all: bool,
    /// The server's name in the client's configuration (default: agenthub-AGENT for one
    /// agent, agenthub otherwise)
    #[arg(long)]
    pub(crate) name: Option<String>,
}

/// `agenthub init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The agent's name: letters, digits, dots, underscores and dashes, starting with a letter or digit
    pub(crate) name: String,
    /// Where to write it (default: ./NAME). Must not exist, or be an empty directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) path: Option<PathBuf>,
    /// Print {"name", "path", "files", "class"}
    #[arg(long)]
    pub(crate) json: bool,
}

/// `agenthub validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Installed agents (namespace/name) or agent directories (./dir, /dir, ~/dir); none:
    /// every installed agent
    #[arg(value_name = "AGENT")]
    pub(crate) agents: Vec<String>,
    /// Print [{"agent", "path", "valid", "problems": [{"file", "field", "line", "message"}]}]
    #[arg(long)]
    pub(crate) json: bool,
}

/// agenthub batch.
#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    #[arg(help = AGENT)]
    pub(crate) agent: String,
    /// Calls in flight at once (and warm workers started for them).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) concurrency: usize,
    /// warm reuses workers; isolated runs each call in a fork of a worker (nothing a call
    /// does is seen by the next); oneshot starts an interpreter per call
    #[arg(long, value_enum, default_value = "warm", hide_possible_values = true)]
    pub(crate) mode: ExecutionMode,
    /// Print each response as one JSON object (what batch prints anyway; as for exec)
    #[arg(long)]
    pub(crate) json: bool,
    /// Per-call timeout in seconds (default: max_execution_time in config.yaml, 30)
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<f64>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    #[command(flatten)]
    pub(crate) sandbox: SandboxArgs,
    #[command(flatten)]
    pub(crate) tools: ToolArgs,
}

/// agenthub bench.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[arg(help = AGENT)]
    pub(crate) agent: String,
    /// Method to call.
    pub(crate) method: String,
    /// Parameters, as for exec
    pub(crate) params: Vec<String>,
    /// How many calls to time (after one untimed warm-up call).
    #[arg(short = 'n', long = "calls", default_value_t = 100, value_name = "N")]
    pub(crate) calls: usize,
    /// oneshot starts an interpreter per call (as exec does), warm reuses a worker,
    /// isolated runs each call in a fork of a worker
    #[arg(long, value_enum, default_value = "warm", hide_possible_values = true)]
    pub(crate) mode: ExecutionMode,
    /// Callers at once, each on a thread of its own (and as many warm workers); the N
    /// calls are shared among them
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) concurrency: usize,
    /// Print {"mode", "calls", "concurrency", "median_ms", "p90_ms", "p99_ms", "mean_ms", "calls_per_sec"}
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) tools: ToolArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    #[arg(help = AGENT)]
    pub(crate) agent: String,
    /// The method to call.
    pub(crate) method: String,
    /// Parameters: a JSON object, key=value pairs, or one plain string.
    pub(crate) params: Vec<String>,
    /// Print the response as one JSON object on stdout, and nothing else.
    #[arg(long)]
    pub(crate) json: bool,
    /// Ask for each parameter of the method on the terminal, by its type.
    #[arg(short, long)]
    pub(crate) interactive: bool,
    /// Time limit in seconds (default: max_execution_time in config.yaml, 30)
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<f64>,
    /// Memory cap in MB, 0 for none (default: max_memory_usage in config.yaml, 1024)
    #[arg(long, value_name = "MB")]
    pub(crate) max_memory: Option<u64>,
    /// Which tool builds the environment: uv, pip or virtualenv (default: uv when found, else pip)
    #[arg(long, value_enum, value_name = "TOOL", hide_possible_values = true)]
    pub(crate) env_backend: Option<EnvBackendKind>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// Pass the agent only a base set (PATH, HOME, USER, TMPDIR, TZ, the locale) and the
    /// --env-allow variables, not the whole environment.
    #[arg(long)]
    pub(crate) env_clear: bool,
    /// A variable to pass when the environment is cleared (repeatable; implies --env-clear).
    #[arg(long, value_name = "VAR")]
    pub(crate) env_allow: Vec<String>,
    #[command(flatten)]
    pub(crate) sandbox: SandboxArgs,
    #[command(flatten)]
    pub(crate) tools: ToolArgs,
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
        #[arg(help = AGENT)]
        agent: String,
        /// Print {"path", "state"}
        #[arg(long)]
        json: bool,
    },
    /// Remove an agent's environment: what agenthub built, nothing else.
    Remove {
        #[arg(help = AGENT)]
        agent: String,
        /// Print {"removed": [...], "bytes": N}
        #[arg(long)]
        json: bool,
    },
    /// Remove environments no agent uses any more (superseded, failed or killed builds of
    /// installed agents, unfinished uv installs) and print what that freed.
    Gc {
        /// Print {"removed": [...], "bytes": N, "skipped": [...]}
        #[arg(long)]
        json: bool,
    },
}

/// agenthub env create|sync|rebuild.
#[derive(Debug, Args)]
pub(crate) struct EnvBuildArgs {
    #[arg(help = AGENT)]
    pub(crate) agent: String,
    /// Which tool builds the environment: uv, pip or virtualenv (default: uv when found, else pip)
    #[arg(long, value_enum, value_name = "TOOL", hide_possible_values = true)]
    pub(crate) env_backend: Option<EnvBackendKind>,
    /// Print {"path", "state", "built", "seconds"} (an error as the response object)
    #[arg(long)]
    pub(crate) json: bool,
}
