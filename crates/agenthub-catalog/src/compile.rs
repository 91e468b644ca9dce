//! Whether `agent.py` compiles, for `validate`: Python's own `compile()` of the file, run
//! with the interpreter the agent would run with (its environment's when it has one, else
//! the one a build would pick), by an argument vector, within a deadline and with bounded
//! output. Nothing of the agent is executed: the file is read and compiled, not imported.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agenthub_core::{AgentManifest, Config, PythonConstraint};
use agenthub_process::{ToolOutcome, ToolRun};

/// Longest a compile of `agent.py` may take before it is reported as a problem.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(10);

/// Output of the compiling interpreter kept, at most.
const COMPILE_OUTPUT_BYTES: usize = 16 * 1024;

/// Compiles the file named by `sys.argv[1]` and prints nothing when it compiles, else one
/// JSON object: the line, the column and the message. `-I -S` (isolated, no `site`): no
/// `.pth` file of the environment runs, no variable or current directory changes what
/// Python loads.
const SCRIPT: &str = r#"import json, sys
path = sys.argv[1]
with open(path, "rb") as f:
    source = f.read()
try:
    compile(source, path, "exec", dont_inherit=True)
except SyntaxError as e:
    print(json.dumps({"line": e.lineno, "column": e.offset, "message": "%s: %s" % (type(e).__name__, e.msg)}))
except (ValueError, MemoryError, RecursionError) as e:
    print(json.dumps({"line": None, "column": None, "message": "%s: %s" % (type(e).__name__, e)}))
"#;

/// Why `agent.py` does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompileError {
    /// The line, when Python named one.
    pub(crate) line: Option<u64>,
    /// What Python said, with the column when it named one.
    pub(crate) message: String,
}

/// Finds the interpreter to compile with, once per Python constraint of a `validate` run.
#[derive(Default)]
pub(crate) struct Interpreters {
    found: std::collections::HashMap<Option<String>, Option<PathBuf>>,
}

impl Interpreters {
    /// The agent's environment's Python when it is there, else the Python a build would
    /// pick for `manifest` (`None` when there is none: then nothing is compiled; `doctor`
    /// says what is missing).
    pub(crate) fn for_agent(
        &mut self,
        dir: &Path,
        manifest: Option<&AgentManifest>,
        config: &Config,
    ) -> Option<PathBuf> {
        let venv_python = dir.join(&config.environment.venv_location).join("bin/python");
        if venv_python.is_file() {
            return Some(venv_python);
        }
        let constraint: Option<&PythonConstraint> = manifest.and_then(|m| m.python_version.as_ref());
        let key = constraint.map(PythonConstraint::to_pep440);
        self.found
            .entry(key)
            .or_insert_with(|| {
                let probe = config.runtime.subprocess_timeout.as_duration();
                agenthub_env::find_python(config.environment.python_request().as_ref(), constraint, probe)
                    .ok()
                    .map(|found| found.path)
            })
            .clone()
    }
}

/// Compiles `dir/agent.py` with `python`: `Ok(())` when it compiles or could not be
/// checked for a reason of this machine (the interpreter does not start), else why not.
pub(crate) fn compile_agent_py(python: &Path, dir: &Path) -> Result<(), CompileError> {
    let run = ToolRun {
        args: vec!["-I".into(), "-S".into(), "-c".into(), SCRIPT.into(), dir.join("agent.py").into()],
        deadline: Instant::now().checked_add(COMPILE_TIMEOUT),
        max_stdout_bytes: COMPILE_OUTPUT_BYTES,
        stderr_tail_bytes: COMPILE_OUTPUT_BYTES,
        ..ToolRun::new(python, dir)
    };
    let stderr_line = |stderr: Option<String>| {
        stderr.and_then(|s| s.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned))
    };
    match run.run() {
        Ok(ToolOutcome::Succeeded(stdout)) if stdout.iter().all(u8::is_ascii_whitespace) => Ok(()),
        Ok(ToolOutcome::Succeeded(stdout)) => Err(parse(&stdout)),
        Ok(ToolOutcome::TimedOut { .. }) => Err(CompileError {
            line: None,
            message: format!("did not compile within {} s", COMPILE_TIMEOUT.as_secs()),
        }),
        Ok(ToolOutcome::StdoutCapped { .. }) => Err(CompileError {
            line: None,
            message: "does not compile (the compiler's answer was too long to show)".to_owned(),
        }),
        Ok(ToolOutcome::Failed { status, stderr }) => Err(CompileError {
            line: None,
            message: format!(
                "could not be compiled by {} ({status}){}",
                python.display(),
                stderr_line(stderr).map(|l| format!(": {l}")).unwrap_or_default()
            ),
        }),
        // The interpreter did not start, or agenthub is shutting down: not the agent's fault.
        Err(_) => Ok(()),
    }
}

/// The answer of [`SCRIPT`]: `{"line", "column", "message"}`.
fn parse(stdout: &[u8]) -> CompileError {
    #[derive(serde::Deserialize)]
    struct Answer {
        line: Option<u64>,
        column: Option<u64>,
        message: String,
    }
    match serde_json::from_slice::<Answer>(stdout) {
        Ok(Answer { line, column, message }) => {
            let at = match (line, column) {
                (Some(_), Some(column)) if column > 0 => format!(" (column {column})"),
                _ => String::new(),
            };
            CompileError { line: line.filter(|l| *l > 0), message: format!("{message}{at}") }
        }
        Err(_) => CompileError {
            line: None,
            message: format!("does not compile: {}", String::from_utf8_lossy(stdout).trim()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python() -> PathBuf {
        which::which("python3").expect("python3 on PATH")
    }

    fn compile(source: &str) -> Result<(), CompileError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agent.py"), source).unwrap();
        compile_agent_py(&python(), dir.path())
    }

    #[test]
    fn a_syntax_error_is_reported_with_its_line_and_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let source =
            format!("open({:?}, 'w').write('x')\n\ndef f(:\n    pass\n", marker.display().to_string());
        std::fs::write(dir.path().join("agent.py"), source).unwrap();
        let err = compile_agent_py(&python(), dir.path()).unwrap_err();
        assert_eq!(err.line, Some(3), "{err:?}");
        assert!(err.message.starts_with("SyntaxError: "), "{err:?}");
        assert!(!marker.exists(), "the agent ran");
        // Valid code compiles, and is not run either.
        std::fs::write(
            dir.path().join("agent.py"),
            format!("open({:?}, 'w')\n", marker.display().to_string()),
        )
        .unwrap();
        assert_eq!(compile_agent_py(&python(), dir.path()), Ok(()));
        assert!(!marker.exists(), "the agent ran");
    }

    #[test]
    fn indentation_and_null_bytes_are_reported() {
        let err = compile("def f():\nreturn 1\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err:?}");
        assert!(err.message.starts_with("IndentationError: "), "{err:?}");
        let err = compile("x = 1\0\n").unwrap_err();
        assert!(err.message.contains("null"), "{err:?}");
    }

    #[test]
    fn an_interpreter_that_does_not_start_is_not_the_agents_fault() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agent.py"), "def f(:\n").unwrap();
        assert_eq!(compile_agent_py(Path::new("/nonexistent/python3"), dir.path()), Ok(()));
    }
}
