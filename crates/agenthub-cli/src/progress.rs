//! How the CLI talks to people on stderr: `-q`, `-v`, `--color`, and progress of installs
//! and environment builds (a spinner on a terminal, nothing on a pipe unless `-v`).

use std::io::IsTerminal as _;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use agenthub_runtime::{BuildProgress, EnvBuild, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::ColorChoice;
use crate::render;

/// The output settings of this run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    /// `-q`: results and errors only.
    pub(crate) quiet: bool,
    /// `-v` count.
    pub(crate) verbose: u8,
    /// Colour and terminal drawing on stderr.
    pub(crate) color: bool,
    /// stderr is a terminal.
    pub(crate) terminal: bool,
}

static UI: OnceLock<Ui> = OnceLock::new();

impl Ui {
    /// Decides the settings from the flags, `NO_COLOR` and whether stderr is a terminal.
    pub(crate) fn init(quiet: bool, verbose: u8, color: ColorChoice) -> Ui {
        let terminal = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color,
        };
        *UI.get_or_init(|| Ui { quiet, verbose, color, terminal })
    }

    /// The settings of this run (defaults before [`Ui::init`]).
    pub(crate) fn get() -> Ui {
        UI.get().copied().unwrap_or(Ui { quiet: false, verbose: 0, color: false, terminal: false })
    }
}

/// `text` in bold red when colour is on (error headings).
pub(crate) fn red(text: &str) -> String {
    if Ui::get().color { format!("\x1b[1;31m{text}\x1b[0m") } else { text.to_owned() }
}

/// Install and build progress for the runtime: a spinner with the current step on a
/// terminal (drawn from the first step on); on a pipe, steps only with `-v`; notices
/// always, unless `-q`.
///
/// An environment build is a spinner on a terminal, then one line (`Building environment
/// for my-agent (uv)... done in 0.3 s`); during an install, the install's step says it.
pub(crate) struct CliProgress {
    ui: Ui,
    /// The install's spinner, from its first step to [`CliProgress::finish`].
    install: Mutex<Option<ProgressBar>>,
    /// The spinner of an environment build outside an install.
    build: Mutex<Option<ProgressBar>>,
}

impl CliProgress {
    /// Progress drawn as `ui` says.
    pub(crate) fn new() -> Self {
        Self { ui: Ui::get(), install: Mutex::new(None), build: Mutex::new(None) }
    }

    /// Clears the spinner (before printing a result).
    pub(crate) fn finish(&self) {
        if let Some(bar) = lock(&self.install).take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for CliProgress {
    fn drop(&mut self) {
        self.finish();
        if let Some(bar) = lock(&self.build).take() {
            bar.finish_and_clear();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A spinner on stderr, when `ui` draws one (a terminal, neither `-q` nor `-v`).
fn spinner(ui: Ui) -> Option<ProgressBar> {
    (ui.terminal && !ui.quiet && ui.verbose == 0).then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let template = if ui.color { "{spinner:.cyan} {msg}" } else { "{spinner} {msg}" };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    })
}

/// `Building environment for my-agent (uv)`.
fn building(build: &EnvBuild) -> String {
    agenthub_core::escape_control(&format!(
        "Building environment for {} ({})",
        build.agent,
        build.backend.as_str()
    ))
}

/// `0.3 s`, `12 s`.
fn seconds(took: Duration) -> String {
    let secs = took.as_secs_f64();
    if secs < 10.0 { format!("{secs:.1} s") } else { format!("{secs:.0} s") }
}

impl Progress for CliProgress {
    fn step(&self, message: &str) {
        let message = agenthub_core::escape_control(message);
        let mut install = lock(&self.install);
        if install.is_none() {
            *install = spinner(self.ui);
        }
        match &*install {
            Some(bar) => bar.set_message(format!("{message}…")),
            None if self.ui.verbose > 0 && !self.ui.quiet => render::err(&format!("  {message}\n")),
            None => {}
        }
    }

    fn notice(&self, message: &str) {
        if self.ui.quiet {
            return;
        }
        let message = agenthub_core::escape_control(message);
        match &*lock(&self.install) {
            Some(bar) => bar.println(message),
            None => render::err(&format!("{message}\n")),
        }
    }
}

impl BuildProgress for CliProgress {
    fn build_started(&self, build: &EnvBuild) {
        if self.ui.quiet || lock(&self.install).is_some() {
            return; // the install's step (`creating environment`) says it
        }
        if let Some(bar) = spinner(self.ui) {
            bar.set_message(format!("{}…", building(build)));
            *lock(&self.build) = Some(bar);
        } else if self.ui.verbose > 0 {
            render::err(&format!("{}...\n", building(build)));
        }
    }

    fn build_finished(&self, build: &EnvBuild, took: Duration, ok: bool) {
        if self.ui.quiet || lock(&self.install).is_some() {
            return; // the install says how it ended
        }
        let outcome = if ok { "done" } else { "failed" };
        match lock(&self.build).take() {
            Some(bar) => {
                bar.finish_and_clear();
                render::err(&format!("{}... {outcome} in {}\n", building(build), seconds(took)));
            }
            None if self.ui.verbose > 0 => render::err(&format!("  {outcome} in {}\n", seconds(took))),
            None => {}
        }
    }
}
