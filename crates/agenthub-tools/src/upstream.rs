#![allow(clippy::unused_async)] // placeholder
//! The user's MCP servers (`--tools-from FILE`): agenthub is their client.
//! (Placeholder types until the client lands.)

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;

/// A servers file.
#[derive(Debug)]
pub struct ServersFile;

impl ServersFile {
    /// Reads one.
    pub fn read(path: &Path) -> Result<Self, UpstreamError> {
        Err(UpstreamError::File(path.display().to_string()))
    }
}

/// One tool of a server.
#[derive(Debug, Clone)]
pub struct UpstreamTool {
    /// Server.
    pub server: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Input schema.
    pub input_schema: Map<String, Json>,
    /// Output schema.
    pub output_schema: Option<Map<String, Json>>,
}

/// Started servers.
#[derive(Debug)]
pub struct Upstreams;

impl Upstreams {
    /// Starts.
    pub async fn start(_file: &ServersFile, _timeout: Duration) -> Result<Self, UpstreamError> {
        Ok(Self)
    }
    /// Tools.
    pub fn tools(&self) -> &[UpstreamTool] {
        &[]
    }
    /// Calls.
    pub async fn call(
        &self,
        _server: &str,
        _tool: &str,
        _arguments: Map<String, Json>,
        _timeout: Duration,
        _cancel: CancellationToken,
    ) -> Result<rmcp::model::CallToolResult, UpstreamError> {
        Err(UpstreamError::File(String::new()))
    }
    /// Stops.
    pub async fn shutdown(&self) {}
}

/// Errors.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// File.
    #[error("{0}")]
    File(String),
}

/// Error type names.
pub(crate) fn error_type(_error: &UpstreamError) -> &'static str {
    "ToolError"
}
