//! `agenthub doctor`.

use std::fmt::Write as _;
use std::process::ExitCode;

use agenthub_core::Config;
use agenthub_runtime::{DoctorReport, EnvState, Severity, ToolReport, UvOrigin};

use crate::render;

pub(crate) fn run(config: &Config, json: bool) -> ExitCode {
    let report = agenthub_runtime::doctor(config);
    if json {
        render::out(&format!("{}\n", serde_json::to_string(&report).unwrap_or_default()));
    } else {
        // Paths and tool output may hold anything: no escape sequences reach the terminal.
        render::out(&agenthub_core::escape_control(&human(&report)));
    }
    if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn tool(t: Option<&ToolReport>, what: &str) -> String {
    match t {
        Some(t) => {
            let origin = match t.origin {
                Some(UvOrigin::Provisioned) => ", installed by agenthub",
                Some(UvOrigin::Path) => ", from PATH",
                None => "",
            };
            format!("{} ({}{origin})", t.path.display(), t.version.as_deref().unwrap_or("version unknown"))
        }
        None => format!("not found{what}"),
    }
}

fn human(r: &DoctorReport) -> String {
    let mut t = String::new();
    let h = &r.home;
    let state = if h.exists {
        format!(
            "{}, {} agent{}{}",
            if h.writable { "writable" } else { "NOT writable" },
            h.agents,
            if h.agents == 1 { "" } else { "s" },
            if h.config_file { ", config.yaml" } else { "" }
        )
    } else {
        "does not exist yet".to_owned()
    };
    let _ = writeln!(t, "home          {} ({state})", h.path.display());
    if r.interpreters.is_empty() {
        let _ = writeln!(t, "python        none on PATH");
    }
    let (shims, interpreters): (Vec<_>, Vec<_>) = r.interpreters.iter().partition(|py| py.pyenv_shim);
    for (i, py) in interpreters.iter().enumerate() {
        let label = if i == 0 { "python" } else { "" };
        let what = match (&py.executable, &py.version) {
            (Some(exe), Some(v)) if exe != &py.path => {
                format!("{} -> {} ({v})", py.path.display(), exe.display())
            }
            (_, Some(v)) => format!("{} ({v})", py.path.display()),
            _ => format!("{} (does not run)", py.path.display()),
        };
        let _ = writeln!(t, "{label:14}{what}");
    }
    if !shims.is_empty() {
        // One line for them all: pyenv makes a shim for every version it ever installed.
        let mut groups: Vec<(&std::path::Path, Vec<String>)> = Vec::new();
        for py in &shims {
            let dir = py.path.parent().unwrap_or(std::path::Path::new(""));
            let name = py.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            match groups.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, names)) => names.push(name),
                None => groups.push((dir, vec![name])),
            }
        }
        let places: Vec<String> =
            groups.iter().map(|(dir, names)| format!("{} in {}", names.join(", "), dir.display())).collect();
        let label = if interpreters.is_empty() { "python" } else { "" };
        let _ = writeln!(
            t,
            "{label:14}{}: pyenv shims of versions not installed or not selected (skipped)",
            places.join("; ")
        );
    }
    let _ = writeln!(t, "uv            {}", tool(r.tools.uv.as_ref(), ""));
    let _ = writeln!(t, "pip           {}", tool(r.tools.pip.as_ref(), ""));
    let _ = writeln!(
        t,
        "virtualenv    {}",
        tool(r.tools.virtualenv.as_ref(), " (only --env-backend virtualenv needs it)")
    );
    let _ = writeln!(t, "git           {}", tool(r.tools.git.as_ref(), ""));
    let count = |s: EnvState| r.environments.iter().filter(|e| e.state == s).count();
    let _ = writeln!(
        t,
        "environments  {} ready, {} stale, {} broken, {} missing, {} foreign",
        count(EnvState::Ready),
        count(EnvState::Stale),
        count(EnvState::Broken),
        count(EnvState::Missing),
        count(EnvState::Foreign)
    );
    let s = &r.sandbox;
    let _ = writeln!(
        t,
        "sandbox       namespaces {}, Landlock {}, seccomp {}",
        if s.namespaces && s.trial_error.is_none() { "yes" } else { "no" },
        s.landlock_abi.map_or_else(|| "off".to_owned(), |abi| format!("ABI {abi}")),
        if s.seccomp { "yes" } else { "no" },
    );
    let _ = writeln!(t, "              default mode enforces: {}", s.default_layers.join(", "));
    let _ = writeln!(
        t,
        "              strict mode: {}",
        if s.strict_available { "available" } else { "refuses calls here (see the warning below)" }
    );
    let _ = writeln!(t);
    for p in &r.problems {
        let label = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(t, "{label}: {}\n  fix: {}", p.message, p.fix);
    }
    let errors = r.problems.iter().filter(|p| p.severity == Severity::Error).count();
    let warnings = r.problems.len() - errors;
    if r.problems.is_empty() {
        let _ = writeln!(t, "no problems found");
    } else {
        let _ = writeln!(t, "{errors} errors, {warnings} warnings");
    }
    t
}
