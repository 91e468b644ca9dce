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
    init_logging(config.runtime.log_level, ui);
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
    match cli.command {
        Command::Exec(args) => exec::run(config, &args),
        Command::List { json } => list::run(&config, json),
        Command::Info { agent, json } => info::run(&config, &agent, json),
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
        Command::Completions { shell } => completions::run(shell),
    }
}

/// A configuration error (at load, or after flags were applied): exit 2 like any usage
/// error, with the suggestion.
pub(crate) fn usage_error(e: &ConfigError) -> ExitCode {
    let help = e.suggestion().map(|s| format!("  help: {s}\n")).unwrap_or_default();
    render::err(&agenthub_core::escape_control(&format!("error: {e}\n{help}")));
    ExitCode::from(2)
}

fn init_logging(level: agenthub_core::LogLevel, ui: crate::progress::Ui) {
    use agenthub_core::LogLevel;
    let level = match (ui.quiet, ui.verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => match level {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        },
        (false, 1) => tracing::Level::INFO,
        (false, 2) => tracing::Level::DEBUG,
        (false, _) => tracing::Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(ui.color)
        .try_init();
}

/// `--sandbox off` with an installed agent (someone else's code) is said once per call on
/// stderr: it runs with all of the user's rights.
pub(crate) fn sandbox_off_notice(config: &agenthub_core::Config, agent: &agenthub_runtime::LoadedAgent) {
    if config.runtime.sandbox_mode == agenthub_core::SandboxMode::Off
        && let Some(id) = agenthub_core::installed_id(config, &agent.location)
    {
        crate::render::err(&format!(
            "warning: the sandbox is off: {id} runs with all of your rights (files, keys, network)\n"
        ));
    }
}
