//! `agenthub._native`: the extension module under the Python package `agenthub`
//! (`python/agenthub`). The package's classes (`ProcessManager`, `EnvironmentManager`,
//! `AgentRuntime`, `load_agent`) are thin Python over what this module exposes: a
//! [`runtime::Runtime`] (one `agenthub_runtime::AgentRuntime`), the [`runtime::Agent`]s it
//! loads, a [`runtime::Cancel`] handle, and [`tools::Tools`] (the tools a call is given,
//! Python functions among them).
//!
//! Invariants:
//! - every call into the runtime releases the GIL (`Python::detach`): calls from many Python
//!   threads run at once on the runtime's workers;
//! - values cross as JSON text, parsed and written by Python's `json` on the Python side and
//!   by serde on this side, so numbers are carried exactly both ways;
//! - errors are raised as the classes of `agenthub.errors`, built from the SPEC §5 response
//!   (`error`, `error_type`, `suggestion`, the stderr tail);
//! - a call made on the main thread is cancelled by Ctrl-C ([`interrupt`]): its processes
//!   are killed and `KeyboardInterrupt` is raised once it has ended;
//! - in a forked child, a runtime made by the parent is never used or dropped: the child
//!   makes its own on first use, and never signals the parent's workers ([`runtime`]).

mod interrupt;
mod runtime;
mod tools;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<runtime::Runtime>()?;
    m.add_class::<runtime::Agent>()?;
    m.add_class::<runtime::Cancel>()?;
    m.add_class::<tools::Tools>()?;
    m.add_function(wrap_pyfunction!(runtime::config_keys, m)?)?;
    m.add_function(wrap_pyfunction!(interrupt::interrupt_fd, m)?)?;
    m.add_function(wrap_pyfunction!(tools::interpreter_exiting, m)?)?;
    m.add_function(wrap_pyfunction!(tools::tools_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::flush_traces, m)?)?;
    Ok(())
}
