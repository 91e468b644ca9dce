//! One module per command: turn arguments into one library call and render the answer.

mod batch;
mod bench;
mod completions;
mod doctor;
mod env;
mod exec;
mod info;
mod init;
mod install;
mod list;
mod mcp;
mod ray;
mod runs;
mod validate;

use std::process::ExitCode;

use agenthub_core::{Config, ConfigError};

use crate::args::{Cli, Command, McpCommand};
use crate::render;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> ExitCode {
    if let Command::Completions { shell } = cli.command {
        return completions::run(shell); // needs no configuration
    }
    let globals = &cli.globals;
    let ui = crate::progress::Ui::init(globals.quiet, globals.verbose, globals.color);
    let mut config = match Config::load_from(globals.home.clone()) {
        Ok(config) => config,
        Err(e) => return usage_error(&e),
    };
    // The CLI installs `ns/name` on first use unless configured not to.
    config.install.auto_install.get_or_insert(true);
    let exporter = init_logging(config.runtime.log_level, ui);
    // -v: installers (uv, pip, git) write to our stderr as they run.
    agenthub_runtime::set_stream_tool_output(ui.verbose > 0 && !ui.quiet);
    if matches!(
        cli.command,
        Command::Exec(_)
            | Command::Env(_)
            | Command::Batch(_)
            | Command::Bench(_)
            | Command::Install(_)
            | Command::Update(_)
            | Command::Remove(_)
            | Command::Ray(_)
            | Command::Mcp(McpCommand::Serve(_))
    ) {
        // Commands that run agents or installers clean up after themselves on a signal.
        crate::signals::handle();
    }
    let code = match cli.command {
        Command::Exec(args) => exec::run(config, &args),
        Command::List { json } => list::run(&config, json),
        Command::Info { agent, json, tools } => info::run(&config, &agent, json, &tools),
        Command::Env(cmd) => env::run(config, cmd),
        Command::Batch(args) => batch::run(config, &args),
        Command::Bench(args) => bench::run(config, &args),
        Command::Init(args) => init::run(&args),
        Command::Validate(args) => validate::run(&config, &args),
        Command::Install(args) => install::install(config, &args),
        Command::Ray(cmd) => ray::run(config, cmd),
        Command::Update(args) => install::update(config, &args),
        Command::Remove(args) => install::remove(config, &args),
        Command::Mcp(McpCommand::Serve(args)) => mcp::serve(config, &args),
        Command::Mcp(McpCommand::Config(args)) => mcp::config(&config, &args),
        Command::Doctor { json } => doctor::run(&config, json),
        Command::Runs(args) => runs::runs(&config, &args),
        Command::Stats(args) => runs::stats(&config, &args),
        Command::Completions { shell } => completions::run(shell),
    };
    // The command's spans have ended: what is queued goes to the collector now, waiting a
    // little at most (an unreachable collector costs the exit that, never a call).
    if let Some(exporter) = exporter
        && let Some(warning) = exporter.shutdown(std::time::Duration::from_secs(2))
    {
        render::err(&agenthub_core::escape_control(&format!("warning: {warning}\n")));
    }
    code
}

/// A configuration error (at load, or after flags were applied): exit 2 like any usage
/// error, with the suggestion.
pub(crate) fn usage_error(e: &ConfigError) -> ExitCode {
    let help = e.suggestion().map(|s| format!("  help: {s}\n")).unwrap_or_default();
    render::err(&agenthub_core::escape_control(&format!("error: {e}\n{help}")));
    ExitCode::from(2)
}

/// Whether `meta` is an event's (a log line), not a span's.
fn is_event(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_event()
}

/// Logs go to stderr at the configured level (`runtime.log_level`, `AGENTHUB_LOG_LEVEL`);
/// `-v` raises it to info, `-vv` to debug, `-q` lowers it to errors. What people are told
/// (progress, notices) does not go through logs. Other crates' records (rmcp's, for
/// `mcp serve`) stay below warnings unless debug logs were asked for: their info is for
/// their authors. rmcp's warnings, unless debug logs were asked for, are not logged either:
/// they repeat what an MCP peer sent (a request id, an error naming a tool), and the peers of
/// a call's tool endpoint are the agent, which could fill the log at will.
///
/// Traces: with the standard `OTEL_*` variables set (`OTEL_EXPORTER_OTLP_ENDPOINT`, …),
/// agenthub's spans go to an OTLP/HTTP collector (agenthub-telemetry); the log never shows
/// them. Returns the exporter, to be shut down before the process exits.
fn init_logging(
    level: agenthub_core::LogLevel,
    ui: crate::progress::Ui,
) -> Option<agenthub_telemetry::export::Exporter> {
    use agenthub_core::LogLevel;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
    let level = match (ui.quiet, ui.verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => match level {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        },
        (false, 1) => LevelFilter::INFO,
        (false, 2) => LevelFilter::DEBUG,
        (false, _) => LevelFilter::TRACE,
    };
    let others = if level >= LevelFilter::DEBUG { level } else { level.min(LevelFilter::WARN) };
    let rmcp = if level >= LevelFilter::DEBUG { level } else { level.min(LevelFilter::ERROR) };
    let filter = Targets::new().with_default(others).with_target("rmcp", rmcp).with_target("agenthub", level);
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(ui.color)
        // Spans are for traces: a log line never carries them.
        .with_filter(filter.and(tracing_subscriber::filter::filter_fn(is_event)));
    agenthub_telemetry::export::install(log)
}

/// `--sandbox off` with an installed agent (someone else's code) is said once per call on
/// The tools calls of one agent get: a host that serves them and the set.
pub(crate) struct CallToolsSetup {
    host: agenthub_tools::ToolHost,
    set: std::sync::Arc<agenthub_tools::ToolSet>,
}

impl CallToolsSetup {
    /// The flags' tools (`--tool`, `--tools-from`), else those config.yaml gives the agent;
    /// `None` when it gets none.
    pub(crate) fn new(
        runtime: &std::sync::Arc<agenthub_runtime::AgentRuntime>,
        agent: &agenthub_runtime::LoadedAgent,
        args: &crate::args::ToolArgs,
    ) -> Result<Option<Self>, agenthub_core::AgentRuntimeError> {
        let host = agenthub_tools::ToolHost::new(
            std::sync::Arc::clone(runtime),
            agenthub_tools::HostOptions::from_config(runtime.config()),
        );
        let mut assignment = args.assignment();
        if assignment.is_empty() {
            assignment = host.configured(agent);
        }
        if assignment.is_empty() {
            return Ok(None);
        }
        let set = host.tool_set(&assignment)?;
        Ok(Some(Self { host, set }))
    }

    /// The tools of one call of `agent`.
    pub(crate) fn for_call(
        &self,
        agent: &agenthub_runtime::LoadedAgent,
    ) -> std::sync::Arc<dyn agenthub_runtime::tools::CallTools> {
        self.host.call_tools(&self.set, agent)
    }

    /// The set.
    pub(crate) fn set(&self) -> &agenthub_tools::ToolSet {
        &self.set
    }
}

/// stderr: it runs with all of the user's rights. With `-v`, the mode and the layers active
/// on this machine are said too.
pub(crate) fn sandbox_off_notice(config: &agenthub_core::Config, agent: &agenthub_runtime::LoadedAgent) {
    let ui = crate::progress::Ui::get();
    if ui.verbose > 0 && !ui.quiet {
        crate::render::err(&format!("sandbox: {}\n", agenthub_runtime::sandbox_summary(config)));
    }
    if config.runtime.sandbox_mode == agenthub_core::SandboxMode::Off
        && let Some(id) = agenthub_core::installed_id(config, &agent.location)
    {
        crate::render::err(&format!(
            "warning: the sandbox is off: {id} runs with all of your rights (files, keys, network)\n"
        ));
    }
}
