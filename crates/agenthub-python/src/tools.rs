//! Tools for a call, Python functions among them (`@agenthub.tool`).
//!
//! A Python function tool is called back in the user's process: on a blocking thread of
//! the tools' async runtime, which takes the GIL for the call (the thread that made the
//! agent call released it while it waits). Arguments and the result cross as JSON text
//! through `agenthub._tools._invoke`, which calls the function with the arguments as
//! keywords and writes its result as JSON; an exception the function raises is what the
//! agent is told (`ToolError: <type>: <message>`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agenthub_tools::{FunctionTool, ToolFunction, ToolSet};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use serde_json::{Map, Value as Json};

/// The tools a call is given (`Runtime.tools(...)`), passed to `Runtime.call`.
#[pyclass(frozen, module = "agenthub._native")]
pub(crate) struct Tools {
    pub(crate) set: Arc<ToolSet>,
}

#[pymethods]
impl Tools {
    /// The tools' names, as the agent calls them.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.set.tools().iter().map(|t| t.name.clone()).collect()
    }

    /// The request's `tool_context` (SPEC §9), as JSON text.
    #[getter]
    fn context_json(&self) -> String {
        self.set.context().to_string()
    }
}

/// A Python callable as a tool.
struct PyFunction {
    callable: Py<PyAny>,
}

/// Set when the interpreter begins to exit (`atexit`): from then on no thread of ours takes
/// the GIL for a tool. A thread that tries while Python finalizes is ended by Python with a
/// forced unwind, which through Rust frames aborts the process.
static CLOSING: AtomicBool = AtomicBool::new(false);

/// Function tool calls that passed the `CLOSING` check and have not returned. Counted
/// before the check (both sequentially consistent), so `interpreter_exiting` either sees a
/// call counted or the call sees `CLOSING`.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Called by the package's `atexit` hook: function tools are refused from now on, and this
/// waits (GIL released) up to `wait` seconds for those still running. Whether none runs.
#[pyfunction]
pub(crate) fn interpreter_exiting(py: Python<'_>, wait: f64) -> bool {
    CLOSING.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::try_from_secs_f64(wait).unwrap_or(Duration::ZERO);
    py.detach(|| {
        while ACTIVE.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    })
}

/// In a forked child: the parent's running tool calls are not the child's.
#[pyfunction]
pub(crate) fn tools_after_fork() {
    ACTIVE.store(0, Ordering::SeqCst);
}

/// One counted function tool call (see [`ACTIVE`]).
struct Counted;

impl Counted {
    fn enter() -> Option<Self> {
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        let counted = Self;
        (!CLOSING.load(Ordering::SeqCst)).then_some(counted)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // Never below zero: a call that forked counts in the child too, after the reset.
        let _ = ACTIVE.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(1)));
    }
}

/// `agenthub._tools._invoke`, looked up once.
fn invoke(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static INVOKE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    INVOKE.get_or_try_init(py, || Ok(py.import("agenthub._tools")?.getattr("_invoke")?.unbind()))
}

impl ToolFunction for PyFunction {
    fn call(&self, arguments: Map<String, Json>) -> Result<Json, String> {
        let Some(_counted) = Counted::enter() else {
            return Err("the Python process that provides this tool is exiting".to_owned());
        };
        let arguments = Json::Object(arguments).to_string();
        let text = Python::attach(|py| -> PyResult<String> {
            invoke(py)?.call1(py, (self.callable.clone_ref(py), arguments))?.extract(py)
        })
        .map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("the tool's result is not JSON: {e}"))
    }
}

/// A function tool from what the Python side gives: name, description, input schema (JSON
/// text of an object schema) and the callable.
pub(crate) fn function_tool(
    name: String,
    description: String,
    schema: &str,
    callable: Py<PyAny>,
) -> PyResult<FunctionTool> {
    let input_schema: Map<String, Json> = serde_json::from_str(schema).map_err(|e| {
        PyValueError::new_err(format!("tool {name}: the input schema must be a JSON object: {e}"))
    })?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(PyValueError::new_err(format!(
            "tool name {name:?}: use 1 to 64 letters, digits, `_` or `-` (MCP tool names)"
        )));
    }
    Ok(FunctionTool { name, description, input_schema, function: Arc::new(PyFunction { callable }) })
}
