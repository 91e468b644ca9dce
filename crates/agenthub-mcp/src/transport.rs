//! The server's end of the stdio framing (one JSON-RPC message per line each way), in place
//! of rmcp's `AsyncRwTransport`, so that
//! - every line that is not a message rmcp can dispatch gets the answer JSON-RPC asks for
//!   (rmcp would answer a request whose params do not fit its types with -32601, since it falls
//!   back to a custom request, drop a line nested past `serde_json`'s depth limit without an
//!   answer, and answer other malformed requests -32600 without their id):
//!   - a request for a method this server answers whose params do not deserialize: -32602
//!     with its id; for any other method: -32601 with its id;
//!   - a JSON object that is not a request: -32600, with its id when that can be read;
//!   - a line that is not JSON (or longer than [`MAX_LINE_BYTES`]): -32700, id null;
//!   - a notification never gets an answer, whatever its shape;
//! - the end of the output ends the session as the end of the input does: a write that fails
//!   (a response, a progress notification, an answer of this transport), or a `hangup` future
//!   that resolves (the stdio server watches its stdout pipe), cancels `closing` (every call in
//!   flight) and ends [`Transport::receive`];
//! - what comes before the client's first request (a notification, a stray response) is
//!   dropped: rmcp would end a session that starts with anything but a request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequest, CallToolRequestMethod, ClientJsonRpcMessage, ClientRequest, ConstString,
    DiscoverRequest, DiscoverRequestMethod, ErrorCode, ErrorData, InitializeRequest, InitializeResultMethod,
    JsonRpcRequest, ListToolsRequest, ListToolsRequestMethod, PingRequest, PingRequestMethod, RequestId,
    ServerJsonRpcMessage,
};
use rmcp::service::RoleServer;
use rmcp::transport::Transport;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{MAX_LINE_BYTES, SHUTDOWN_GRACE};

/// Resolves when the output is known to be closed without a write having failed.
pub(crate) type Hangup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a request's params did not deserialize into rmcp's type for its method.
type ParamsCheck = fn(&[u8]) -> Option<serde_json::Error>;

/// The requests this server answers (the `ServerHandler` in `server.rs` implements tools;
/// rmcp answers the lifecycle), each with the check that finds what is wrong with its params.
/// Every other method is answered -32601, whatever its params.
const SERVED: [(&str, ParamsCheck); 5] = [
    (InitializeResultMethod::VALUE, params_error::<InitializeRequest>),
    (PingRequestMethod::VALUE, params_error::<PingRequest>),
    (DiscoverRequestMethod::VALUE, params_error::<DiscoverRequest>),
    (ListToolsRequestMethod::VALUE, params_error::<ListToolsRequest>),
    (CallToolRequestMethod::VALUE, params_error::<CallToolRequest>),
];

fn params_error<T: DeserializeOwned>(line: &[u8]) -> Option<serde_json::Error> {
    serde_json::from_slice::<JsonRpcRequest<T>>(line).err()
}

fn served(method: &str) -> Option<ParamsCheck> {
    SERVED.iter().find(|(name, _)| *name == method).map(|(_, check)| *check)
}

/// JSON-RPC over a line-oriented reader and writer, for the server.
pub(crate) struct LineTransport<R, W> {
    lines: Lines<R>,
    write: Arc<Mutex<Option<W>>>,
    /// Cancelled when the input ends or the output is closed: every call in flight stops.
    closing: CancellationToken,
    /// Cancelled when the output is closed: `receive` returns `None` from then on.
    output_closed: CancellationToken,
    hangup: Hangup,
    /// The write of this transport's own last answer, finished before the next line is read
    /// (a client that sends malformed lines without reading gets backpressure).
    answering: Option<JoinHandle<()>>,
    /// Whether a request has come yet.
    started: bool,
}

impl<R, W> LineTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    pub(crate) fn new(read: R, write: W, closing: CancellationToken, hangup: Hangup) -> Self {
        Self {
            lines: Lines { read: BufReader::new(read), line: Vec::new(), discarding: false },
            write: Arc::new(Mutex::new(Some(write))),
            closing,
            output_closed: CancellationToken::new(),
            hangup,
            answering: None,
            started: false,
        }
    }

    /// Cancelled once the output is closed.
    pub(crate) fn output_closed(&self) -> CancellationToken {
        self.output_closed.clone()
    }

    /// Writes `line` (a newline is added). A failure closes the output: nothing more is
    /// written, and the session ends.
    fn write_line(&self, mut line: Vec<u8>) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let write = Arc::clone(&self.write);
        let (closing, output_closed) = (self.closing.clone(), self.output_closed.clone());
        line.push(b'\n');
        async move {
            let mut guard = write.lock().await;
            let Some(writer) = guard.as_mut() else {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the output is closed"));
            };
            let written = match writer.write_all(&line).await {
                Ok(()) => writer.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = &written {
                tracing::info!(error = %e, "the output is closed: ending the session");
                *guard = None;
                output_closed.cancel();
                closing.cancel();
            }
            written
        }
    }
}

impl<R, W> Transport<RoleServer> for LineTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let line = serde_json::to_vec(&item).map_err(io::Error::from);
        let write = line.map(|line| self.write_line(line));
        async move { write?.await }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        let output_closed = self.output_closed.clone();
        loop {
            if let Some(answering) = self.answering.as_mut() {
                tokio::select! {
                    biased;
                    () = output_closed.cancelled() => return None,
                    _ = answering => self.answering = None,
                }
            }
            // Biased: once the output is closed, nothing more is read (and the hang-up future,
            // which closes it, is never polled again).
            let read = tokio::select! {
                biased;
                () = output_closed.cancelled() => return None,
                () = &mut self.hangup => {
                    tracing::info!("the output was closed by the client: ending the session");
                    output_closed.cancel();
                    self.closing.cancel();
                    return None;
                }
                read = self.lines.next() => read,
            };
            let decoded = match read {
                Read::Line => decode(self.lines.current()),
                Read::Oversized => {
                    tracing::warn!(max = MAX_LINE_BYTES, "a message longer than the limit was dropped");
                    Decoded::Answer(
                        None,
                        ErrorData::parse_error(
                            format!("Parse error: a line longer than {MAX_LINE_BYTES} bytes"),
                            None,
                        ),
                    )
                }
                Read::End => {
                    // Calls in flight are cancelled at once, not after the SDK's drain period.
                    self.closing.cancel();
                    return None;
                }
            };
            match decoded {
                Decoded::Message(message) => {
                    if self.started || matches!(message, ClientJsonRpcMessage::Request(_)) {
                        self.started = true;
                        return Some(message);
                    }
                    tracing::debug!("ignored a message that came before any request");
                }
                Decoded::Answer(id, error) => {
                    tracing::debug!(?id, code = error.code.0, message = %error.message, "answered a malformed message");
                    let answer = ErrorAnswer { jsonrpc: "2.0", id, error };
                    match serde_json::to_vec(&answer) {
                        Ok(line) => {
                            let write = self.write_line(line);
                            self.answering = Some(tokio::spawn(async move {
                                let _ = write.await;
                            }));
                        }
                        Err(e) => tracing::warn!(error = %e, "could not encode an error answer"),
                    }
                }
                Decoded::Nothing => {}
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Bounded: a write blocked on a client that does not read holds the lock.
        if let Ok(mut write) = tokio::time::timeout(SHUTDOWN_GRACE, self.write.lock()).await {
            drop(write.take());
        }
        Ok(())
    }
}

/// An error answer: `id` is written `null` when it cannot be read (JSON-RPC 2.0).
#[derive(serde::Serialize)]
struct ErrorAnswer {
    jsonrpc: &'static str,
    id: Option<RequestId>,
    error: ErrorData,
}

/// What a line is.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "short-lived, moved once; boxing would cost every message an allocation"
)]
enum Decoded {
    /// A message for rmcp.
    Message(ClientJsonRpcMessage),
    /// Answered here with this error.
    Answer(Option<RequestId>, ErrorData),
    /// Nothing to do (a blank line, a notification that does not parse).
    Nothing,
}

/// What can be read of a line that is not a message: its top-level fields, whatever the rest
/// holds (other fields are skipped by `serde_json` without recursion, so no nesting is too
/// deep here).
#[derive(Deserialize)]
struct Envelope {
    #[serde(default, deserialize_with = "present")]
    jsonrpc: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    method: Option<Json>,
    #[serde(default, deserialize_with = "seen")]
    result: bool,
    #[serde(default, deserialize_with = "seen")]
    error: bool,
}

/// `Some` for a field that is there, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(deserializer).map(Some)
}

fn seen<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

fn decode(line: &[u8]) -> Decoded {
    let line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Decoded::Nothing;
    }
    let why = match serde_json::from_slice::<ClientJsonRpcMessage>(line) {
        Ok(ClientJsonRpcMessage::Request(request)) => {
            // rmcp reads a request whose params do not fit the type of its method as a custom
            // request (which would be answered -32601).
            if let ClientRequest::CustomRequest(custom) = &request.request
                && let Some(check) = served(&custom.method)
            {
                let why =
                    check(line).map_or_else(|| "they do not fit the method".to_owned(), |e| e.to_string());
                return Decoded::Answer(Some(request.id), invalid_params(&custom.method, &why));
            }
            return Decoded::Message(ClientJsonRpcMessage::Request(request));
        }
        Ok(message) => return Decoded::Message(message),
        Err(e) => e,
    };
    // Not a message rmcp reads. Is it JSON at all? (`IgnoredAny` has no depth limit.)
    if let Err(e) = serde_json::from_slice::<IgnoredAny>(line) {
        return Decoded::Answer(None, ErrorData::parse_error(format!("Parse error: {e}"), None));
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(line) else {
        return Decoded::Answer(None, invalid_request("not a JSON-RPC message object"));
    };
    let id = envelope.id.as_ref().map(RequestId::deserialize);
    match (envelope.method, id) {
        // A notification is never answered.
        (Some(_), None) => {
            tracing::debug!(error = %why, "ignored a notification that does not parse");
            Decoded::Nothing
        }
        // Both a request and a response: whose id it carries is unclear.
        (Some(_), Some(_)) if envelope.result || envelope.error => {
            Decoded::Answer(None, invalid_request("a method with a result or an error"))
        }
        (Some(method), Some(Ok(id))) => {
            let Json::String(method) = method else {
                return Decoded::Answer(Some(id), invalid_request("the method is not a string"));
            };
            if envelope.jsonrpc.as_ref().and_then(Json::as_str) != Some("2.0") {
                return Decoded::Answer(Some(id), invalid_request("\"jsonrpc\" must be \"2.0\""));
            }
            match served(&method) {
                Some(check) => {
                    let why = check(line).unwrap_or(why);
                    Decoded::Answer(Some(id), invalid_params(&method, &why.to_string()))
                }
                None => Decoded::Answer(
                    Some(id),
                    ErrorData::new(ErrorCode::METHOD_NOT_FOUND, format!("Method not found: {method}"), None),
                ),
            }
        }
        (Some(_), Some(Err(_))) => {
            Decoded::Answer(None, invalid_request("the id must be a string or an integer"))
        }
        // A response or error from the client that does not parse: its id is one of ours,
        // so it is not echoed.
        (None, _) if envelope.result || envelope.error => {
            Decoded::Answer(None, invalid_request("not a valid response"))
        }
        (None, Some(Ok(id))) => Decoded::Answer(Some(id), invalid_request("no method")),
        (None, _) => Decoded::Answer(None, invalid_request("not a request, notification or response")),
    }
}

fn invalid_params(method: &str, why: &str) -> ErrorData {
    ErrorData::invalid_params(format!("Invalid params for {method}: {why}"), None)
}

fn invalid_request(why: &str) -> ErrorData {
    ErrorData::invalid_request(format!("Invalid Request: {why}"), None)
}

/// Lines of at most [`MAX_LINE_BYTES`], read so that a cancelled read loses nothing (the
/// partial line stays in `line`) and a longer line is never held in memory.
struct Lines<R> {
    read: BufReader<R>,
    line: Vec<u8>,
    /// Dropping the rest of a line that was too long.
    discarding: bool,
}

enum Read {
    /// A whole line is in `line` (see [`Lines::current`]).
    Line,
    /// A line longer than the limit was (or is being) dropped.
    Oversized,
    /// The end of the input, or a read error.
    End,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    async fn next(&mut self) -> Read {
        // The last line, now handled.
        if self.line.last() == Some(&b'\n') {
            self.line.clear();
        }
        loop {
            let available = match self.read.fill_buf().await {
                Ok([]) => return Read::End,
                Ok(available) => available,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the input");
                    return Read::End;
                }
            };
            let newline = available.iter().position(|b| *b == b'\n');
            let take = newline.map_or(available.len(), |i| i + 1);
            // Decided and applied with no await in between, so a cancelled call loses nothing.
            if self.discarding {
                self.read.consume(take);
                self.discarding = newline.is_none();
            } else if self.line.len() + take > MAX_LINE_BYTES + 1 {
                self.read.consume(take);
                self.line.clear();
                self.discarding = newline.is_none();
                return Read::Oversized;
            } else {
                self.line.extend_from_slice(&available[..take]);
                self.read.consume(take);
                if newline.is_some() {
                    return Read::Line;
                }
            }
        }
    }

    /// The line just read, without its line ending.
    fn current(&self) -> &[u8] {
        let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        line.strip_suffix(b"\r").unwrap_or(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The answer `line` gets: `(id, code)`, or `None` for no answer.
    fn answer(line: &str) -> Option<(Json, i32)> {
        match decode(line.as_bytes()) {
            Decoded::Answer(id, error) => {
                Some((id.map_or(Json::Null, RequestId::into_json_value), error.code.0))
            }
            Decoded::Message(_) | Decoded::Nothing => None,
        }
    }

    fn is_message(line: &str) -> bool {
        matches!(decode(line.as_bytes()), Decoded::Message(_))
    }

    #[test]
    fn messages_rmcp_reads_go_through() {
        assert!(is_message(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{}}}"#
        ));
        assert!(is_message("\u{feff}{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"ping\"}"));
        // Unknown methods are rmcp's (-32601 from the handler).
        assert!(is_message(r#"{"jsonrpc":"2.0","id":1,"method":"foo/bar","params":{"x":1}}"#));
        assert!(is_message(r#"{"jsonrpc":"2.0","method":"notifications/whatever"}"#));
        assert!(is_message(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#));
        assert!(matches!(decode(b"  \t"), Decoded::Nothing));
    }

    #[test]
    fn requests_for_served_methods_with_bad_params_are_invalid_params_with_their_id() {
        let deep = format!("{}1{}", "{\"a\":".repeat(300), "}".repeat(300));
        for (line, id) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":[1]}}"#
                    .to_owned(),
                json!(1),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"t","_meta":[]}}"#
                    .to_owned(),
                json!("x"),
            ),
            (
                format!(
                    r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"t","arguments":{deep}}}}}"#
                ),
                json!(2),
            ),
            (r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":5}"#.to_owned(), json!(3)),
            (r#"{"jsonrpc":"2.0","id":4,"method":"server/discover","params":[]}"#.to_owned(), json!(4)),
            (r#"{"jsonrpc":"2.0","id":5,"method":"initialize","params":{}}"#.to_owned(), json!(5)),
            (r#"{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"_meta":"m"}}"#.to_owned(), json!(6)),
        ] {
            assert_eq!(answer(&line), Some((id, -32602)), "{}", &line[..line.len().min(100)]);
        }
        match decode(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":"text"}}"#,
        ) {
            Decoded::Answer(_, error) => {
                assert!(error.message.starts_with("Invalid params for tools/call: "), "{}", error.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_malformed_lines_get_the_code_json_rpc_asks_for() {
        let deep = "[".repeat(300);
        for (line, expected) in [
            // Unknown methods: -32601 whatever the params.
            (
                format!(
                    r#"{{"jsonrpc":"2.0","id":1,"method":"x/y","params":{{"a":{deep}{}}}}}"#,
                    "]".repeat(300)
                ),
                Some((json!(1), -32601)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":5}"#.to_owned(),
                Some((json!(1), -32601)),
            ),
            // Not a request: -32600, with the id when it can be read and is the client's.
            (r#"{"jsonrpc":"2.0","id":2}"#.to_owned(), Some((json!(2), -32600))),
            (r#"{"id":3,"method":"ping"}"#.to_owned(), Some((json!(3), -32600))),
            (r#"{"jsonrpc":"2.0","id":4,"method":["ping"]}"#.to_owned(), Some((json!(4), -32600))),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.to_owned(), Some((Json::Null, -32600))),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.to_owned(), Some((Json::Null, -32600))),
            (
                format!(r#"{{"jsonrpc":"2.0","id":{deep}{},"method":"ping"}}"#, "]".repeat(300)),
                Some((Json::Null, -32600)),
            ),
            (r#"{"jsonrpc":"2.0","id":5,"error":5}"#.to_owned(), Some((Json::Null, -32600))),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"ping","result":{}}"#.to_owned(),
                Some((Json::Null, -32600)),
            ),
            ("[]".to_owned(), Some((Json::Null, -32600))),
            ("7".to_owned(), Some((Json::Null, -32600))),
            // Not JSON: -32700, id null.
            ("{".to_owned(), Some((Json::Null, -32700))),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"} trailing"#.to_owned(), Some((Json::Null, -32700))),
            (deep.clone(), Some((Json::Null, -32700))),
            // A notification is never answered.
            (r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":5}"#.to_owned(), None),
            (
                format!(r#"{{"jsonrpc":"2.0","method":"tools/call","params":{deep}{}}}"#, "]".repeat(300)),
                None,
            ),
        ] {
            assert_eq!(answer(&line), expected, "{}", &line[..line.len().min(100)]);
        }
    }
}
