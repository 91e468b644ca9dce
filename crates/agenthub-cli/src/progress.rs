//! How the CLI talks to people on stderr: `-q`, `-v`, `--color`, and install progress (a
//! spinner on a terminal, nothing on a pipe unless `-v`).

use std::io::IsTerminal as _;
use std::sync::OnceLock;
use std::time::Duration;

use agenthub_runtime::Progress;
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

/// Install progress for the runtime: a spinner with the current step on a terminal; on a
/// pipe, steps only with `-v`; notices always, unless `-q`.
pub(crate) struct CliProgress {
    bar: Option<ProgressBar>,
    ui: Ui,
}

impl CliProgress {
    /// Progress drawn as `ui` says.
    pub(crate) fn new() -> Self {
        let ui = Ui::get();
        let bar = (ui.terminal && !ui.quiet && ui.verbose == 0).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let template = if ui.color { "{spinner:.cyan} {msg}" } else { "{spinner} {msg}" };
            bar.set_style(
                ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self { bar, ui }
    }

    /// Clears the spinner (before printing a result).
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for CliProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Progress for CliProgress {
    fn step(&self, message: &str) {
        let message = agenthub_core::escape_control(message);
        match &self.bar {
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
        match &self.bar {
            Some(bar) => bar.println(message),
            None => render::err(&format!("{message}\n")),
        }
    }
}
