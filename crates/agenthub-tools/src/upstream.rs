//! The user's MCP servers (`--tools-from FILE`): agenthub is their client.
//!
//! The file has the shape MCP clients (Claude Desktop, Cursor) use:
//!
//! ```json
//! {"mcpServers": {
//!    "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "env": {"K": "V"}},
//!    "remote": {"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer x"}},
//!    "calc": {"command": "python3", "args": ["calc.py"], "tools": ["add", "mul"]}
//! }}
//! ```
//!
//! Each server has either `command` (a stdio server: `args`, `env`, `cwd` go with it) or
//! `url` (a Streamable HTTP server: `headers` goes with it). `tools` is agenthub's own key:
//! only these tools of the server are assigned (absent: every tool the server lists).
//! `disabled: true` skips the server; `type` (`stdio`, `http`, `streamable-http`,
//! `streamableHttp`) is checked against the entry's shape, and `sse` servers are refused
//! (the legacy HTTP+SSE transport is not supported for upstreams: use Streamable HTTP).
//! Other keys (`autoApprove`, `timeout`, ...) are other clients' and ignored.
//!
//! Paths: a `command` or `cwd` that starts with `./` or `../` is resolved against the
//! directory of the file (made absolute when the file is parsed); any other relative `cwd`
//! is agenthub's working directory's, a `command` without a `/` is looked up on `PATH` as a
//! shell would, and any other relative `command` (`bin/server`) is passed on as it is,
//! which is ambiguous with a `cwd`: write it `./bin/server`.
//!
//! URLs must be `http://`: this build has no TLS in its HTTP client, so an `https://` URL is
//! refused when the file is read, naming the server.
//!
//! [`Upstreams::start`] spawns each stdio server with an argument vector (never a shell) in
//! a process group of its own, with `PR_SET_PDEATHSIG=SIGKILL`, the caller's environment
//! plus `env`, stdin and stdout for the protocol and stderr kept in a ring of its last
//! 64 KiB (logged with `tracing::debug!`). The group is killed on [`Upstreams::shutdown`]
//! and when [`Upstreams`] is dropped. `PR_SET_PDEATHSIG` fires when the *thread* that spawned
//! a server ends: start them from a thread that lives as long as they do (a tokio worker
//! thread or the thread that runs `block_on`, not a `spawn_blocking` thread).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ErrorData, Implementation};
use rmcp::service::{Peer, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value as Json;
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

/// The largest servers file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// How much of a stdio server's stderr is kept.
const STDERR_TAIL_BYTES: usize = 64 * 1024;
/// How much of the kept stderr an error message shows.
const STDERR_SHOWN_BYTES: usize = 4 * 1024;
/// How long a stdio server gets to exit on its own once its stdin is closed.
const GRACE: Duration = Duration::from_millis(300);
/// How long shutdown waits for each step (closing a session, reaping a process).
const STEP: Duration = Duration::from_secs(2);

/// Everything that can go wrong with the user's MCP servers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The servers file could not be read.
    #[error("cannot read the MCP servers file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The servers file as a whole is not what it should be (not JSON, no `mcpServers`, too
    /// big, not a regular file).
    #[error("the MCP servers file {} is not valid: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// One field of one server is not what it should be.
    #[error("the MCP servers file {}: server `{server}`: {message}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// The server's name in `mcpServers`.
        server: String,
        /// The field (`command`, `args[2]`, `env.KEY`, ...), empty for the entry as a whole.
        field: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A server could not be started, initialized or listed.
    #[error("MCP server `{server}` failed to start: {message}{}", shown_stderr(stderr))]
    Start {
        /// The server's name.
        server: String,
        /// What went wrong.
        message: String,
        /// The last 64 KiB of a stdio server's stderr (empty for URL servers).
        stderr: String,
    },
    /// The tool is not one assigned from this server (or there is no such server).
    #[error("tool `{tool}` of MCP server `{server}` is not assigned")]
    NotAssigned {
        /// The server asked for.
        server: String,
        /// The tool asked for.
        tool: String,
    },
    /// The call did not finish in time; the server was sent `notifications/cancelled`.
    #[error("tool `{tool}` of MCP server `{server}` did not answer within {timeout:?}")]
    Timeout {
        /// The server.
        server: String,
        /// The tool.
        tool: String,
        /// The limit.
        timeout: Duration,
    },
    /// The caller cancelled the call; the server was sent `notifications/cancelled`.
    #[error("the call of tool `{tool}` of MCP server `{server}` was cancelled")]
    Cancelled {
        /// The server.
        server: String,
        /// The tool.
        tool: String,
    },
    /// The server answered the call with a JSON-RPC error.
    #[error("MCP server `{server}` refused the call of `{tool}`: {error}")]
    Call {
        /// The server.
        server: String,
        /// The tool.
        tool: String,
        /// The error it sent.
        error: Box<ErrorData>,
    },
    /// The server broke the protocol (an answer that is not a tool result, a failed send).
    #[error("MCP server `{server}` failed the call of `{tool}`: {message}")]
    Protocol {
        /// The server.
        server: String,
        /// The tool.
        tool: String,
        /// What happened.
        message: String,
    },
    /// The server's connection is closed (a stdio server exited, an HTTP session ended).
    #[error("MCP server `{server}` is gone: {message}{}", shown_stderr(stderr))]
    Gone {
        /// The server.
        server: String,
        /// What is known about its end.
        message: String,
        /// The last 64 KiB of a stdio server's stderr (empty for URL servers).
        stderr: String,
    },
}

/// The end of a stderr tail for an error message, introduced, or nothing.
fn shown_stderr(stderr: &str) -> String {
    let trimmed = stderr.trim_end();
    if trimmed.is_empty() {
        return String::new();
    }
    let mut start = trimmed.len().saturating_sub(STDERR_SHOWN_BYTES);
    while !trimmed.is_char_boundary(start) {
        start += 1;
    }
    let cut = if start > 0 { "..." } else { "" };
    format!("\nits stderr ends with:\n{cut}{}", &trimmed[start..])
}

/// The parsed, validated servers file.
#[derive(Clone)]
pub struct ServersFile {
    path: PathBuf,
    servers: Vec<ServerSpec>,
}

impl fmt::Debug for ServersFile {
    /// Names only: `env` and `headers` often hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServersFile")
            .field("path", &self.path)
            .field("servers", &self.server_names())
            .finish()
    }
}

#[derive(Clone)]
struct ServerSpec {
    name: String,
    transport: TransportSpec,
    /// `None`: every tool the server lists.
    tools: Option<Vec<String>>,
}

#[derive(Clone)]
enum TransportSpec {
    Stdio { command: OsString, args: Vec<String>, env: Vec<(String, String)>, cwd: Option<PathBuf> },
    Http { url: String, headers: HashMap<HeaderName, HeaderValue> },
}

impl ServersFile {
    /// Reads and parses the file: a regular file (opened with `O_NONBLOCK`, so a FIFO cannot
    /// hang the read) of at most 1 MiB.
    ///
    /// # Errors
    ///
    /// [`UpstreamError::Read`] when it cannot be opened or read, [`UpstreamError::File`] when
    /// it is not a regular file or too big, and what [`ServersFile::parse`] returns.
    pub fn read(path: &Path) -> Result<Self, UpstreamError> {
        let read_error = |source| UpstreamError::Read { path: path.to_path_buf(), source };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(read_error)?;
        let meta = file.metadata().map_err(read_error)?;
        let kind = meta.file_type();
        if !kind.is_file() {
            let what = if kind.is_dir() {
                "a directory"
            } else if kind.is_fifo() {
                "a FIFO"
            } else {
                "not a regular file"
            };
            return Err(UpstreamError::File { path: path.to_path_buf(), message: format!("it is {what}") });
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(UpstreamError::File {
                path: path.to_path_buf(),
                message: format!("it is larger than {MAX_FILE_BYTES} bytes"),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| UpstreamError::File {
            path: path.to_path_buf(),
            message: "it is not UTF-8".into(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a servers file; `origin` is its path, for messages and for
    /// resolving a `command` or `cwd` that starts with `./` or `../` (against its directory).
    ///
    /// # Errors
    ///
    /// [`UpstreamError::File`] for the file as a whole (not JSON, no `mcpServers` object),
    /// [`UpstreamError::Field`] naming the server and the field for anything in an entry.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, UpstreamError> {
        let file_error = |message: String| UpstreamError::File { path: origin.to_path_buf(), message };
        let root: Json =
            serde_json::from_str(text).map_err(|e| file_error(format!("it is not JSON: {e}")))?;
        let Json::Object(root) = root else {
            return Err(file_error("it is not a JSON object".into()));
        };
        let servers = match root.get("mcpServers") {
            Some(Json::Object(servers)) => servers,
            Some(_) => return Err(file_error("`mcpServers` is not an object".into())),
            None => return Err(file_error("it has no `mcpServers` object".into())),
        };
        // Absolute, so that a resolved `command` does not depend on the server's `cwd`.
        let base = match origin.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let mut parsed = Vec::new();
        for (name, entry) in servers {
            if let Some(spec) = parse_server(name, entry, &base, origin)? {
                parsed.push(spec);
            }
        }
        Ok(Self { path: origin.to_path_buf(), servers: parsed })
    }

    /// The names of the servers that are not disabled, in the file's order.
    pub fn server_names(&self) -> Vec<&str> {
        self.servers.iter().map(|s| s.name.as_str()).collect()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One entry of `mcpServers`; `None` when it is disabled.
fn parse_server(
    name: &str,
    entry: &Json,
    base: &Path,
    origin: &Path,
) -> Result<Option<ServerSpec>, UpstreamError> {
    let err = |field: &str, message: String| UpstreamError::Field {
        path: origin.to_path_buf(),
        server: name.to_owned(),
        field: field.to_owned(),
        message,
    };
    if name.is_empty() {
        return Err(err("", "a server's name is empty".into()));
    }
    let Json::Object(entry) = entry else {
        return Err(err("", "the entry is not an object".into()));
    };
    let string = |field: &str| -> Result<Option<String>, UpstreamError> {
        match entry.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(field, format!("`{field}` is not a string"))),
        }
    };
    let strings = |field: &str| -> Result<Option<Vec<String>>, UpstreamError> {
        match entry.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Json::String(s) => Ok(s.clone()),
                    _ => Err(err(&format!("{field}[{i}]"), format!("`{field}[{i}]` is not a string"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(err(field, format!("`{field}` is not an array of strings"))),
        }
    };
    let string_map = |field: &str| -> Result<Option<Vec<(String, String)>>, UpstreamError> {
        match entry.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Json::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(err(&format!("{field}.{k}"), format!("`{field}.{k}` is not a string"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(err(field, format!("`{field}` is not an object of strings"))),
        }
    };

    match entry.get("disabled") {
        None | Some(Json::Null | Json::Bool(false)) => {}
        Some(Json::Bool(true)) => return Ok(None),
        Some(_) => return Err(err("disabled", "`disabled` is not true or false".into())),
    }
    let command = string("command")?;
    let url = string("url")?;
    let kind = string("type")?;
    let transport = match (command, url) {
        (Some(_), Some(_)) => {
            return Err(err(
                "",
                "it has both `command` (a stdio server) and `url` (an HTTP server); keep one".into(),
            ));
        }
        (None, None) => {
            if kind.as_deref() == Some("sse") {
                return Err(err("type", sse_refusal()));
            }
            return Err(err(
                "",
                "it has neither `command` (a stdio server) nor `url` (an HTTP server)".into(),
            ));
        }
        (Some(command), None) => {
            match kind.as_deref() {
                None | Some("stdio") => {}
                Some(other) => {
                    return Err(err(
                        "type",
                        format!("`type` is `{other}` but the entry has `command`, a stdio server"),
                    ));
                }
            }
            for field in ["headers"] {
                if entry.contains_key(field) {
                    return Err(err(field, format!("`{field}` is for HTTP servers (`url`), not `command`")));
                }
            }
            if command.is_empty() {
                return Err(err("command", "`command` is empty".into()));
            }
            if command.contains('\0') {
                return Err(err("command", "`command` contains a NUL byte".into()));
            }
            let args = strings("args")?.unwrap_or_default();
            if let Some(i) = args.iter().position(|a| a.contains('\0')) {
                return Err(err(&format!("args[{i}]"), format!("`args[{i}]` contains a NUL byte")));
            }
            let env = string_map("env")?.unwrap_or_default();
            for (k, v) in &env {
                if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                    return Err(err(&format!("env.{k}"), format!("`env.{k}` is not a valid variable")));
                }
            }
            let cwd = string("cwd")?.map(|cwd| resolve(&cwd, base));
            let command = resolve(&command, base).into_os_string();
            TransportSpec::Stdio { command, args, env, cwd }
        }
        (None, Some(url)) => {
            match kind.as_deref() {
                None | Some("http" | "streamable-http" | "streamableHttp") => {}
                Some("sse") => return Err(err("type", sse_refusal())),
                Some(other) => {
                    return Err(err(
                        "type",
                        format!("`type` is `{other}` but the entry has `url`; use `http`"),
                    ));
                }
            }
            for field in ["args", "env", "cwd"] {
                if entry.contains_key(field) {
                    return Err(err(field, format!("`{field}` is for stdio servers (`command`), not `url`")));
                }
            }
            check_url(&url).map_err(|message| err("url", message))?;
            let mut headers = HashMap::new();
            for (k, v) in string_map("headers")?.unwrap_or_default() {
                let field = format!("headers.{k}");
                let header = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| err(&field, format!("`{field}` is not a valid header name")))?;
                if ["accept", "mcp-session-id", "mcp-protocol-version", "last-event-id"]
                    .contains(&header.as_str())
                {
                    return Err(err(&field, format!("`{field}` is set by the MCP transport itself")));
                }
                let value = HeaderValue::from_str(&v)
                    .map_err(|_| err(&field, format!("`{field}` is not a valid header value")))?;
                headers.insert(header, value);
            }
            TransportSpec::Http { url, headers }
        }
    };
    let tools = strings("tools")?;
    if tools.as_ref().is_some_and(Vec::is_empty) {
        return Err(err(
            "tools",
            "`tools` is empty: list the tools to assign, leave it out for all, or set `disabled`".into(),
        ));
    }
    Ok(Some(ServerSpec { name: name.to_owned(), transport, tools }))
}

fn sse_refusal() -> String {
    "`type` is `sse`: servers over the legacy HTTP+SSE transport are not supported as upstreams; \
     use the server's Streamable HTTP endpoint (`type: http`, usually at `/mcp`)"
        .into()
}

/// `./x` and `../x` against the file's directory; anything else as it is.
fn resolve(path: &str, base: &Path) -> PathBuf {
    if path.starts_with("./") || path.starts_with("../") { base.join(path) } else { PathBuf::from(path) }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("`url` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err("`url` is https, and this build's HTTP client has no TLS; \
                        use an http:// URL (a server on this machine, or a local TLS proxy)"
                .into());
        }
        _ => return Err("`url` is not an http:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("`url` has no host".into());
    }
    Ok(())
}

/// One tool assigned from one of the user's servers, as the server gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTool {
    /// The server's name in the file.
    pub server: String,
    /// The tool's name, as the server gave it.
    pub name: String,
    /// Its description (empty when the server gave none).
    pub description: String,
    /// Its input schema.
    pub input_schema: serde_json::Map<String, Json>,
    /// Its output schema, if it declared one.
    pub output_schema: Option<serde_json::Map<String, Json>>,
}

/// The user's servers, started and initialized, with the tools assigned from them.
/// `Send + Sync`: share it with an `Arc`.
pub struct Upstreams {
    servers: Vec<Upstream>,
    tools: Vec<UpstreamTool>,
}

impl fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.servers.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("Upstreams").field("servers", &names).field("tools", &self.tools.len()).finish()
    }
}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Upstreams>();
};

/// A server started, with its assigned tools.
type Started = Result<(Upstream, Vec<UpstreamTool>), UpstreamError>;

struct Upstream {
    name: String,
    assigned: HashSet<String>,
    peer: Peer<RoleClient>,
    service: Mutex<Option<RunningService<RoleClient, ClientConfig>>>,
    process: Option<StdioProcess>,
}

impl Upstreams {
    /// Starts (stdio) or connects to (url) every server, initializes it, lists its tools
    /// (following pagination) and keeps those assigned. All servers start at once, each
    /// bounded by `timeout`.
    ///
    /// # Errors
    ///
    /// [`UpstreamError::Start`] for the first server (in the file's order) that failed,
    /// with a stdio server's stderr tail; also when `tools` names a tool the server does not
    /// offer. Every server already started is then shut down.
    pub async fn start(file: &ServersFile, timeout: Duration) -> Result<Self, UpstreamError> {
        let mut set = tokio::task::JoinSet::new();
        for (index, spec) in file.servers.iter().cloned().enumerate() {
            set.spawn(async move { (index, start_one(spec, timeout).await) });
        }
        let mut started: Vec<Option<Started>> = (0..file.servers.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((index, result)) => started[index] = Some(result),
                Err(e) => {
                    // A panic in start_one: its process guard has killed its server.
                    tracing::warn!("an MCP server's start task failed: {e}");
                }
            }
        }
        let mut servers = Vec::new();
        let mut tools = Vec::new();
        let mut failure = None;
        for (spec, result) in file.servers.iter().zip(started) {
            match result {
                Some(Ok((upstream, assigned))) => {
                    servers.push(upstream);
                    tools.extend(assigned);
                }
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                }
                None => {
                    failure.get_or_insert(UpstreamError::Start {
                        server: spec.name.clone(),
                        message: "its start task panicked".into(),
                        stderr: String::new(),
                    });
                }
            }
        }
        let upstreams = Self { servers, tools };
        if let Some(e) = failure {
            upstreams.shutdown().await;
            return Err(e);
        }
        Ok(upstreams)
    }

    /// The assigned tools, server by server in the file's order, each server's in its order.
    pub fn tools(&self) -> &[UpstreamTool] {
        &self.tools
    }

    /// Calls one assigned tool. Bounded by `timeout` (then [`UpstreamError::Timeout`], and
    /// the server gets `notifications/cancelled`); stops when `cancel` is cancelled (then
    /// [`UpstreamError::Cancelled`], and the server gets `notifications/cancelled` too). A
    /// tool that is not assigned is refused without contacting the server. A result with
    /// `isError: true` is `Ok`: the caller forwards it.
    ///
    /// # Errors
    ///
    /// [`UpstreamError::NotAssigned`], [`UpstreamError::Timeout`],
    /// [`UpstreamError::Cancelled`], [`UpstreamError::Call`] (a JSON-RPC error),
    /// [`UpstreamError::Gone`] (the server's connection is closed, with a stdio server's
    /// stderr tail), [`UpstreamError::Protocol`].
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: serde_json::Map<String, Json>,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<CallToolResult, UpstreamError> {
        let Some(upstream) = self.servers.iter().find(|s| s.name == server && s.assigned.contains(tool))
        else {
            return Err(UpstreamError::NotAssigned { server: server.to_owned(), tool: tool.to_owned() });
        };
        if upstream.peer.is_transport_closed() {
            return Err(upstream.gone("its connection is closed"));
        }
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        // Dropping the call's future before its answer sends `notifications/cancelled`
        // (rmcp's guard in `call_tool_once`).
        let call = upstream.peer.call_tool(params);
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                return Err(UpstreamError::Cancelled { server: server.to_owned(), tool: tool.to_owned() });
            }
            outcome = tokio::time::timeout(timeout, call) => outcome,
        };
        match outcome {
            Err(_) => {
                Err(UpstreamError::Timeout { server: server.to_owned(), tool: tool.to_owned(), timeout })
            }
            Ok(Ok(result)) => Ok(result),
            Ok(Err(ServiceError::McpError(error))) => Err(UpstreamError::Call {
                server: server.to_owned(),
                tool: tool.to_owned(),
                error: Box::new(error),
            }),
            Ok(Err(ServiceError::TransportClosed)) => {
                Err(upstream.gone("its connection closed during the call"))
            }
            Ok(Err(ServiceError::TransportSend(e))) if upstream.peer.is_transport_closed() => {
                Err(upstream.gone(&format!("the call could not be sent: {e}")))
            }
            Ok(Err(e)) => Err(UpstreamError::Protocol {
                server: server.to_owned(),
                tool: tool.to_owned(),
                message: e.to_string(),
            }),
        }
    }

    /// Ends every session (an HTTP server gets its session deleted, a stdio server its stdin
    /// closed and a moment to exit) and kills every stdio server's process group; bounded
    /// (a few seconds at most, whatever the servers do). Calls after it fail with
    /// [`UpstreamError::Gone`].
    pub async fn shutdown(&self) {
        let mut ends = tokio::task::JoinSet::new();
        for upstream in &self.servers {
            let service = upstream.service.lock().unwrap_or_else(PoisonError::into_inner).take();
            let process = upstream.process.as_ref().map(StdioProcess::share);
            let name = upstream.name.clone();
            ends.spawn(async move {
                if let Some(mut service) = service {
                    match service.close_with_timeout(STEP).await {
                        Ok(Some(_)) => {}
                        Ok(None) => tracing::debug!(server = %name, "its session did not close in time"),
                        Err(e) => tracing::debug!(server = %name, "closing its session: {e}"),
                    }
                }
                if let Some(process) = process {
                    process.end().await;
                }
            });
        }
        while ends.join_next().await.is_some() {}
    }
}

impl Upstream {
    fn gone(&self, message: &str) -> UpstreamError {
        let (message, stderr) = match &self.process {
            Some(process) => {
                let status = process.exit_status();
                let message = match status {
                    Some(status) => format!("{message} (its process {status})"),
                    None => message.to_owned(),
                };
                (message, process.stderr.text())
            }
            None => (message.to_owned(), String::new()),
        };
        UpstreamError::Gone { server: self.name.clone(), message, stderr }
    }
}

/// How agenthub introduces itself to the servers.
fn client_config() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.client_info = Implementation::new("agenthub", env!("CARGO_PKG_VERSION"));
    config
}

async fn start_one(
    spec: ServerSpec,
    timeout: Duration,
) -> Result<(Upstream, Vec<UpstreamTool>), UpstreamError> {
    let name = spec.name.clone();
    let start_error =
        |message: String, stderr: String| UpstreamError::Start { server: name.clone(), message, stderr };
    let (service, listed, process) = match &spec.transport {
        TransportSpec::Stdio { command, args, env, cwd } => {
            let (process, stdout, stdin) =
                StdioProcess::spawn(&spec.name, command, args, env, cwd.as_deref()).map_err(|e| {
                    start_error(format!("cannot run {}: {e}", Path::new(command).display()), String::new())
                })?;
            let session = async {
                let service = client_config().serve((stdout, stdin)).await.map_err(|e| e.to_string())?;
                let tools = service.peer().list_all_tools().await.map_err(|e| format!("tools/list: {e}"))?;
                Ok::<_, String>((service, tools))
            };
            match tokio::time::timeout(timeout, session).await {
                Ok(Ok((service, tools))) => (service, tools, Some(process)),
                outcome => {
                    let message = match outcome {
                        Ok(Err(message)) => message,
                        _ => format!("it did not initialize and list its tools within {timeout:?}"),
                    };
                    let status = process.end().await;
                    let message = match status {
                        Some(status) if status.signal() != Some(libc::SIGKILL) => {
                            format!("{message} (it exited: {status})")
                        }
                        _ => message,
                    };
                    return Err(start_error(message, process.stderr.text()));
                }
            }
        }
        TransportSpec::Http { url, headers } => {
            let config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(headers.clone());
            let transport = StreamableHttpClientTransport::from_config(config);
            let session = async {
                let service = client_config().serve(transport).await.map_err(|e| e.to_string())?;
                let tools = service.peer().list_all_tools().await.map_err(|e| format!("tools/list: {e}"))?;
                Ok::<_, String>((service, tools))
            };
            match tokio::time::timeout(timeout, session).await {
                Ok(Ok((service, tools))) => (service, tools, None),
                Ok(Err(message)) => return Err(start_error(format!("{url}: {message}"), String::new())),
                Err(_) => {
                    return Err(start_error(
                        format!("{url}: it did not initialize and list its tools within {timeout:?}"),
                        String::new(),
                    ));
                }
            }
        }
    };
    let keep = |tool: &str| spec.tools.as_ref().is_none_or(|wanted| wanted.iter().any(|w| w == tool));
    if let Some(wanted) = &spec.tools {
        let missing: Vec<&str> =
            wanted.iter().filter(|w| !listed.iter().any(|t| t.name == **w)).map(String::as_str).collect();
        if !missing.is_empty() {
            let offered: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).collect();
            let mut service = service;
            let _ = service.close_with_timeout(STEP).await;
            if let Some(process) = &process {
                process.end().await;
            }
            return Err(start_error(
                format!(
                    "`tools` names {} that it does not offer (it offers: {})",
                    missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                    offered.join(", ")
                ),
                String::new(),
            ));
        }
    }
    let tools: Vec<UpstreamTool> = listed
        .into_iter()
        .filter(|t| keep(&t.name))
        .map(|t| UpstreamTool {
            server: spec.name.clone(),
            name: t.name.into_owned(),
            description: t.description.map(std::borrow::Cow::into_owned).unwrap_or_default(),
            input_schema: (*t.input_schema).clone(),
            output_schema: t.output_schema.map(|s| (*s).clone()),
        })
        .collect();
    let upstream = Upstream {
        name: spec.name.clone(),
        assigned: tools.iter().map(|t| t.name.clone()).collect(),
        peer: service.peer().clone(),
        service: Mutex::new(Some(service)),
        process,
    };
    Ok((upstream, tools))
}

/// A stdio server's process: the leader of its own process group. Until it is reaped its
/// pid (and so its group id) cannot be reused, so killing the group is safe; it is reaped
/// only in [`StdioProcess::end`], after the group is killed.
struct StdioProcess {
    inner: Arc<ProcessInner>,
}

struct ProcessInner {
    server: String,
    pid: libc::pid_t,
    child: tokio::sync::Mutex<Option<tokio::process::Child>>,
    /// Set once reaped: the group id may be reused from then on.
    status: Mutex<Option<std::process::ExitStatus>>,
    stderr: Arc<StderrRing>,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::ops::Deref for StdioProcess {
    type Target = ProcessInner;
    fn deref(&self) -> &ProcessInner {
        &self.inner
    }
}

impl StdioProcess {
    fn spawn(
        server: &str,
        command: &OsString,
        args: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
    ) -> std::io::Result<(Self, tokio::process::ChildStdout, tokio::process::ChildStdin)> {
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: between fork and exec the closure calls only async-signal-safe functions
        // (prctl, getppid) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("agenthub exited"));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().and_then(|p| libc::pid_t::try_from(p).ok()).unwrap_or(0);
        let (Some(stdout), Some(stdin), Some(stderr)) =
            (child.stdout.take(), child.stdin.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("its pipes were not made"));
        };
        let ring = Arc::new(StderrRing::default());
        let reader = tokio::spawn(read_stderr(server.to_owned(), stderr, Arc::clone(&ring)));
        let process = Self {
            inner: Arc::new(ProcessInner {
                server: server.to_owned(),
                pid,
                child: tokio::sync::Mutex::new(Some(child)),
                status: Mutex::new(None),
                stderr: ring,
                reader: Mutex::new(Some(reader)),
            }),
        };
        tracing::debug!(server, pid, "started MCP server");
        Ok((process, stdout, stdin))
    }

    fn share(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }

    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the leader [`GRACE`] to exit on its own (its stdin is closed by then, or it
    /// is exiting), kills the group, reaps the leader and waits (bounded) for the rest of
    /// its stderr. Returns the leader's status when it was reaped.
    async fn end(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().await;
        if child.is_some() {
            let deadline = tokio::time::Instant::now() + GRACE;
            while !self.leader_exited() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.kill_group();
            if let Some(mut leader) = child.take() {
                match tokio::time::timeout(STEP, leader.wait()).await {
                    Ok(Ok(status)) => {
                        tracing::debug!(server = %self.server, pid = self.pid, %status, "MCP server ended");
                        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
                    }
                    Ok(Err(e)) => tracing::warn!(server = %self.server, "waiting for the MCP server: {e}"),
                    // Dropped with kill_on_drop: tokio reaps it later.
                    Err(_) => {
                        tracing::warn!(server = %self.server, pid = self.pid, "the MCP server was not reaped");
                    }
                }
            }
        }
        drop(child);
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(reader) = reader {
            // Its stderr ends when the last process of its group holding it is gone.
            let abort = reader.abort_handle();
            if tokio::time::timeout(Duration::from_millis(500), reader).await.is_err() {
                abort.abort();
            }
        }
        self.exit_status()
    }

    /// Whether the leader has exited (without reaping it).
    fn leader_exited(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only reads the child's state; `info` is valid.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                libc::id_t::try_from(self.pid).unwrap_or(0),
                &raw mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info`; si_pid is 0 when no child changed state.
        rc != 0 || unsafe { info.si_pid() } != 0
    }
}

impl ProcessInner {
    /// SIGKILL to the group, unless the leader was reaped (its group id may be reused).
    fn kill_group(&self) {
        let reaped = self.status.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        if !reaped && self.pid > 0 {
            // SAFETY: plain system call; the group is ours while the leader is not reaped.
            unsafe {
                libc::killpg(self.pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessInner {
    fn drop(&mut self) {
        // The leader is still unreaped here unless `end` reaped it (then `status` is set).
        if self.child.get_mut().is_some() {
            self.kill_group();
        }
        if let Some(reader) = self.reader.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            reader.abort();
        }
    }
}

/// The last [`STDERR_TAIL_BYTES`] of a server's stderr.
#[derive(Default)]
struct StderrRing {
    bytes: Mutex<VecDeque<u8>>,
}

impl StderrRing {
    fn push(&self, chunk: &[u8]) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let chunk = &chunk[chunk.len().saturating_sub(STDERR_TAIL_BYTES)..];
        let overflow = (bytes.len() + chunk.len()).saturating_sub(STDERR_TAIL_BYTES);
        bytes.drain(..overflow);
        bytes.extend(chunk);
    }

    fn text(&self) -> String {
        let bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let (a, b) = bytes.as_slices();
        let mut all = Vec::with_capacity(a.len() + b.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// Copies a server's stderr into its ring and the debug log, line by line (lines longer
/// than 4 KiB are logged in pieces).
async fn read_stderr(server: String, mut stderr: tokio::process::ChildStderr, ring: Arc<StderrRing>) {
    const LINE: usize = 4096;
    let mut chunk = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let log = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if !text.is_empty() {
            tracing::debug!(server = %server, "stderr: {text}");
        }
    };
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        ring.push(&chunk[..n]);
        for &byte in &chunk[..n] {
            if byte == b'\n' || line.len() >= LINE {
                log(&line);
                line.clear();
            }
            if byte != b'\n' {
                line.push(byte);
            }
        }
    }
    log(&line);
}
