//! Domain types of agenthub: agent ids, manifests, parameters, the wire protocol, responses,
//! errors and configuration. No process I/O; reading files is limited to manifests,
//! configuration and agent directories.

mod agent;
mod agent_file;
mod config;
mod error;
mod install;
mod manifest;
mod params;
mod permissions;
mod protocol;
mod response;
mod run;
mod sandbox;
mod text;
mod yaml;

pub use agent::{
    AgentId, AgentLocation, AgentRef, InvalidAgentId, expand_tilde, list_agent_dirs, list_installed,
    resolve_agent,
};
pub use agent_file::{AgentFileError, open_agent_file, read_agent_file};
pub use config::{
    AgentGrants, AgentTools, BASE_ENV_VARS, CONFIG_VARS, Config, ConfigError, DEFAULT_RAY_VERSION,
    DEFAULT_REGISTRY, EnvBackendKind, EnvironmentConfig, ExecutionMode, ExecutionTarget, HistoryConfig,
    InstallConfig, LogLevel, MAX_CONFIG_BYTES, MAX_MEMORY_MIB, MAX_SECONDS, NON_CONFIG_VARS, PythonRequest,
    RayConfig, RuntimeConfig, Seconds, ToolAssignment, WorkerDispatch, configuration_table, parse_agent_tool,
};
pub use error::{AgentRuntimeError, ResourceLimit, format_bytes, io_error_suggestion};
pub use install::{
    HomeInstallRecord, INSTALL_RECORD_FILE, InstallRecord, InstallSource, MAX_HOME_INSTALL_RECORD_BYTES,
    MAX_INSTALL_RECORD_BYTES, MAX_REF_LEN, SourceError, SourceKind, home_install_record_path, is_object_id,
    read_git_head, read_home_install_record, read_install_record, registry_url, validate_ref,
};
pub use manifest::{
    AgentManifest, FieldProblem, MANIFEST_FILE_NAMES, MAX_ALIAS_EXPANSION, MAX_FLOW_NESTING,
    MAX_MANIFEST_BYTES, ManifestError, MethodSpec, ParamType, ParameterSpec, PythonConstraint, ReturnSpec,
};
pub use params::{CliParamsError, Params, parse_cli_params, validate_parameters};
pub use permissions::{
    DeclaredPath, EntryError, HostPattern, HostPatternError, MAX_PERMISSION_ENTRIES,
    MAX_PERMISSION_PATH_BYTES, NetworkPermission, PROTECTED_HOME_PATHS, PROTECTED_SYSTEM_PATHS,
    PROTECTED_SYSTEM_WRITE_PATHS, Permissions, Places, check_env_name, parse_net_grant,
};
pub use protocol::{
    AgentOutput, AgentReply, ExecutionRequest, MAX_JSON_DEPTH, ProtocolViolation, read_agent_output,
};
pub use response::{ExecutionResponse, ToolCallRecord};
pub use run::{Caller, RunId};
pub use sandbox::{
    EnvPolicy, Grants, NetworkPolicy, Origin, PolicyError, SANDBOX_BASE_ENV, SandboxMode, SandboxPolicy,
    approved_declaration, approved_permissions, installed_id,
};
pub use text::{closest_name, escape_control, shell_quote};
