//! `agenthub init NAME [--path DIR]`.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agenthub_runtime::{ScaffoldError, init_agent};

use crate::args::InitArgs;
use crate::render;

pub(crate) fn run(args: &InitArgs) -> ExitCode {
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    let author = ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    match init_agent(&args.name, &dir, &author) {
        Ok(made) if args.json => {
            let path = |p: &Path| p.to_string_lossy().into_owned();
            let object = serde_json::json!({
                "name": args.name,
                "path": path(&made.dir),
                "files": made.files.iter().map(|f| path(f)).collect::<Vec<_>>(),
                "class": made.class_name,
            });
            render::out(&format!("{object}\n"));
            ExitCode::SUCCESS
        }
        Ok(made) => {
            let shown = shell_path(&dir);
            let mut text = format!("Created agent `{}` in {shown}:\n", args.name);
            for file in &made.files {
                let _ = writeln!(text, "  {}", shell_path(file));
            }
            let _ = write!(
                text,
                "\nNext:\n  agenthub validate {shown}\n  agenthub exec {shown} greet name=World\n  \
                 agenthub exec {shown} add a=2 b=40\n"
            );
            render::out(&agenthub_core::escape_control(&text));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut text = format!("error: {e}");
            if let ScaffoldError::Io { source, .. } = &e {
                let _ = write!(text, ": {source}");
            }
            let _ = writeln!(text, "\n  help: {}", e.suggestion());
            render::err(&agenthub_core::escape_control(&text));
            ExitCode::from(if matches!(e, ScaffoldError::InvalidName { .. }) { 2 } else { 1 })
        }
    }
}

/// `path` as an agent argument the shell passes through: relative paths get `./` (a bare
/// name would be read as an agent id), and anything unusual is single-quoted.
fn shell_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let text = if path.is_relative() && !text.starts_with("./") && !text.starts_with("../") && text != "." {
        format!("./{text}")
    } else {
        text.into_owned()
    };
    if text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/+=:@,".contains(&b)) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
