//! The legacy "HTTP with SSE" transport (MCP revision 2024-11-05), which rmcp no longer
//! serves: `GET /sse` opens a stream whose first event names the endpoint
//! (`event: endpoint`, `data: <prefix>/messages/?session_id=<id>`); the client POSTs its
//! JSON-RPC messages there (each answered `202 Accepted`) and reads the server's messages on
//! the stream (`event: message`, `data: <json>`).
//!
//! - A session is one rmcp service over an [`SseTransport`]; it ends when the stream's client
//!   goes away (the response body is dropped), which cancels its session token and so its
//!   calls in flight, or when the server shuts down.
//! - The stream carries a keep-alive comment every `keep_alive`, so that a dead client is
//!   found by a failed write even without traffic.
//! - Both queues are bounded: a client that posts faster than the session reads waits,
//!   then gets 503; a client whose stream has [`OUTBOUND`] messages it has not read (it posts
//!   and does not read the answers, which rmcp sends each from a task of its own) loses its
//!   session; a stream that has not been written to for [`STALL_TICKS`] keep-alive periods
//!   (its client stopped reading) is a stalled one ([`Stall`]), and the server then drops
//!   its connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::RoleServer;
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Messages queued for a session from its client.
const QUEUE: usize = 64;

/// Messages queued for a session's client; one more ends the session.
pub(crate) const OUTBOUND: usize = 256;

/// Keep-alive periods without a write after which a stream is stalled.
pub(crate) const STALL_TICKS: u32 = 4;

/// How long a POST waits for room in its session's queue.
const POST_WAIT: Duration = Duration::from_secs(30);

/// The sessions open now, by id.
#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>,
}

/// Why a message could not be delivered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// No session has that id (or it has ended).
    Unknown,
    /// The session did not take the message in time.
    Busy,
}

impl Sessions {
    /// How many sessions are open.
    pub(crate) fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Opens a session: its id, the transport for its rmcp service, and the SSE body for the
    /// client (whose first event is the endpoint, `endpoint_prefix` + `/messages/?session_id=`).
    /// The session is forgotten, and `ct` cancelled, when the body is dropped; dropping the
    /// transport ends the body.
    pub(crate) fn open(
        self: &Arc<Self>,
        endpoint_prefix: &str,
        keep_alive: Duration,
        ct: CancellationToken,
    ) -> (String, SseTransport, SseBody, Stall) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (inbound_tx, inbound) = mpsc::channel(QUEUE);
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND);
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), inbound_tx);
        let endpoint = format!("event: endpoint\ndata: {endpoint_prefix}/messages/?session_id={id}\n\n");
        let keep_alive = keep_alive.max(Duration::from_millis(10));
        let now = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval_at(now + keep_alive, keep_alive);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let polled = Arc::new(Mutex::new(now));
        let body = SseBody {
            first: Some(Bytes::from(endpoint)),
            events: outbound_rx,
            keep_alive: ticks,
            polled: Arc::clone(&polled),
            _session: SessionGuard {
                sessions: Arc::clone(self),
                id: id.clone(),
                _ct: ct.clone().drop_guard(),
            },
        };
        let transport = SseTransport { inbound, outbound, session: ct };
        (id, transport, body, Stall { polled, keep_alive })
    }

    /// Hands `message` to session `id`.
    pub(crate) async fn deliver(&self, id: &str, message: ClientJsonRpcMessage) -> Result<(), Delivery> {
        let sender = self.open.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned();
        let sender = sender.ok_or(Delivery::Unknown)?;
        match tokio::time::timeout(POST_WAIT, sender.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Delivery::Unknown),
            Err(_) => Err(Delivery::Busy),
        }
    }

    fn forget(&self, id: &str) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}

/// Watches an [`SseBody`] for a client that stopped reading.
pub(crate) struct Stall {
    /// When the body was last asked for data.
    polled: Arc<Mutex<tokio::time::Instant>>,
    keep_alive: Duration,
}

impl Stall {
    /// Resolves once the body has not been asked for data for [`STALL_TICKS`] keep-alive
    /// periods: it wakes at every period, so only a connection that cannot write (its client
    /// reads nothing) stops asking.
    pub(crate) async fn stalled(self) {
        let limit = self.keep_alive * STALL_TICKS;
        loop {
            let last = *self.polled.lock().unwrap_or_else(PoisonError::into_inner);
            if last.elapsed() >= limit {
                return;
            }
            tokio::time::sleep_until(last + limit).await;
        }
    }
}

/// Forgets its session and cancels its token when dropped (with the SSE body).
struct SessionGuard {
    sessions: Arc<Sessions>,
    id: String,
    _ct: DropGuard,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.forget(&self.id);
    }
}

/// The server's end of one SSE session, for rmcp: fed by the POSTs, writing to the stream.
pub(crate) struct SseTransport {
    inbound: mpsc::Receiver<ClientJsonRpcMessage>,
    outbound: mpsc::Sender<Bytes>,
    /// The session's token: cancelled when its client leaves [`OUTBOUND`] messages unread.
    session: CancellationToken,
}

/// One `message` event: `serde_json` writes no raw newline, so the data is one line.
fn message_event(json: &str) -> Bytes {
    Bytes::from(format!("event: message\ndata: {json}\n\n"))
}

impl Transport<RoleServer> for SseTransport {
    type Error = io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        // Queued now, never waited for: rmcp sends each message from a task of its own and goes
        // on reading requests, so waiting would keep every unread answer in memory.
        let sent = serde_json::to_string(&item).map_err(io::Error::from).and_then(|json| {
            self.outbound.try_send(message_event(&json)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    self.session.cancel();
                    io::Error::other("the client does not read its SSE stream: its session ended")
                }
                mpsc::error::TrySendError::Closed(_) => {
                    io::Error::new(io::ErrorKind::BrokenPipe, "the SSE stream is closed")
                }
            })
        });
        std::future::ready(sent)
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        self.inbound.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inbound.close();
        Ok(())
    }
}

/// The SSE response body: the endpoint event, then the session's messages, with a keep-alive
/// comment when nothing else was sent for a while. Ends when the transport is dropped.
pub(crate) struct SseBody {
    first: Option<Bytes>,
    events: mpsc::Receiver<Bytes>,
    keep_alive: tokio::time::Interval,
    polled: Arc<Mutex<tokio::time::Instant>>,
    _session: SessionGuard,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        *self.polled.lock().unwrap_or_else(PoisonError::into_inner) = tokio::time::Instant::now();
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                self.keep_alive.reset();
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        match self.keep_alive.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n"))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http_body_util::BodyExt as _;
    use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
    use rmcp::transport::Transport as _;
    use tokio_util::sync::CancellationToken;

    use super::{Delivery, Sessions};

    fn ping() -> ClientJsonRpcMessage {
        serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap()
    }

    async fn next_text(body: &mut super::SseBody) -> String {
        let frame =
            tokio::time::timeout(Duration::from_secs(5), body.frame()).await.unwrap().unwrap().unwrap();
        String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_first_event_names_the_endpoint_with_its_prefix() {
        let sessions = Arc::new(Sessions::default());
        let (id, _transport, mut body, _) =
            sessions.open("/tok", Duration::from_secs(60), CancellationToken::new());
        assert_eq!(
            next_text(&mut body).await,
            format!("event: endpoint\ndata: /tok/messages/?session_id={id}\n\n")
        );
        assert_eq!(id.len(), 32);
    }

    #[tokio::test]
    async fn posts_reach_the_transport_and_its_messages_reach_the_stream() {
        let sessions = Arc::new(Sessions::default());
        let (id, mut transport, mut body, _) =
            sessions.open("", Duration::from_secs(60), CancellationToken::new());
        next_text(&mut body).await;
        sessions.deliver(&id, ping()).await.unwrap();
        let received = transport.receive().await.unwrap();
        assert!(matches!(received, ClientJsonRpcMessage::Request(_)));
        let answer: ServerJsonRpcMessage =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"result":{"a":"x\ny"}}"#).unwrap();
        transport.send(answer).await.unwrap();
        let event = next_text(&mut body).await;
        assert!(event.starts_with("event: message\ndata: {"), "{event}");
        assert_eq!(event.matches('\n').count(), 3, "one data line: {event}");
        // The transport gone, the stream ends.
        drop(transport);
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn unknown_sessions_are_refused_and_a_dropped_stream_ends_its_session() {
        let sessions = Arc::new(Sessions::default());
        assert_eq!(sessions.deliver("nope", ping()).await, Err(Delivery::Unknown));
        let ct = CancellationToken::new();
        let (id, _transport, body, _) = sessions.open("", Duration::from_secs(60), ct.clone());
        assert_eq!(sessions.len(), 1);
        drop(body);
        assert!(ct.is_cancelled());
        assert_eq!(sessions.len(), 0);
        assert_eq!(sessions.deliver(&id, ping()).await, Err(Delivery::Unknown));
    }

    #[tokio::test]
    async fn answers_a_client_does_not_read_cannot_pile_up() {
        // rmcp sends each answer from a task of its own and goes on reading requests: a
        // client that posts requests and never reads its stream must not make answers pile
        // up in memory without bound (a tools/list of ~60 bytes answers a kilobyte or more).
        let sessions = Arc::new(Sessions::default());
        let ct = CancellationToken::new();
        let (_id, mut transport, _unread, _) = sessions.open("", Duration::from_secs(60), ct.clone());
        let answer: ServerJsonRpcMessage =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#).unwrap();
        let sends: Vec<_> = (0..2_000).map(|_| tokio::spawn(transport.send(answer.clone()))).collect();
        let mut refused = 0;
        for send in sends {
            let sent = tokio::time::timeout(Duration::from_secs(5), send)
                .await
                .expect("an answer waits, held in memory, for a client that reads nothing")
                .unwrap();
            refused += usize::from(sent.is_err());
        }
        assert!(refused > 0);
        assert!(ct.is_cancelled(), "the session of a client that reads nothing goes on");
    }

    #[tokio::test]
    async fn an_idle_stream_gets_keep_alive_comments() {
        let sessions = Arc::new(Sessions::default());
        let (_id, _transport, mut body, _) =
            sessions.open("", Duration::from_millis(20), CancellationToken::new());
        next_text(&mut body).await;
        assert_eq!(next_text(&mut body).await, ": keep-alive\n\n");
    }

    #[tokio::test]
    async fn a_stream_nobody_reads_is_stalled_and_one_that_is_read_is_not() {
        let sessions = Arc::new(Sessions::default());
        let every = Duration::from_millis(20);
        let (_id, _transport, mut read, stall) = sessions.open("", every, CancellationToken::new());
        let reading = tokio::spawn(async move { while read.frame().await.is_some() {} });
        let limit = every * super::STALL_TICKS;
        assert!(tokio::time::timeout(limit * 5, stall.stalled()).await.is_err(), "a read stream stalled");
        reading.abort();
        let (_id, _transport, _unread, stall) = sessions.open("", every, CancellationToken::new());
        let started = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), stall.stalled()).await.unwrap();
        assert!(started.elapsed() >= limit);
    }
}
