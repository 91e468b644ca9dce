//! The read side of agenthub: configuration in, reports out, never a backend. Loading an
//! agent and describing it (`catalog`), listing installed agents fast and never stale
//! (`listing`, its cache), checking agents without running them (`validate`, and `compile` for `agent.py`), the state and
//! upkeep of environments by agent name (`health`), the machine's and home's health
//! (`doctor`), and the Rust reading of `main()` blocks that `info` reports (`main_guard`).

mod catalog;
mod compile;
mod doctor;
mod health;
mod listing;
mod main_guard;
mod staging;
mod validate;

pub use catalog::{
    AgentInfo, AgentSummary, Example, LoadedAgent, PermissionsReport, WarmDispatch, agent_info, example_call,
    list_agents, load_agent, warm_dispatch,
};

pub use doctor::{
    DoctorProblem, DoctorReport, EnvReport, HomeReport, InterpreterReport, SandboxReport, Severity,
    ToolReport, ToolsReport, doctor,
};

pub use health::{GcError, GcReport, collect_unused_environments, environment_status, remove_environment};

pub use catalog::replays_main;
pub use compile::COMPILE_TIMEOUT;
pub use main_guard::{MainForm, main_guard};
pub use staging::{
    STAGING_MARKER, is_staging_of, leftover_staging, looks_like_staging, staging_agent, staging_dirs,
};
pub use validate::{
    MAX_WALK_DEPTH, MAX_WALK_ENTRIES, Problem, Validation, validate_agent, validate_installed,
};
pub use validate::{agenthub_names, check_dir, check_permissions, left_out};
