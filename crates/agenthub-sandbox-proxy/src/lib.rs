//! The sandbox's egress proxy (issue 16, "Network").
//!
//! A sandboxed agent runs in an empty network namespace. When it may reach hosts, the
//! runtime binds a listening TCP socket inside that namespace (`127.0.0.1:PORT` there),
//! points the agent's proxy variables at it, and hands the listener to [`Proxy::serve`]:
//! the proxy accepts on it from threads of the runtime's own process and dials out from the
//! host's network. A declared `localhost:PORT` (a local model server) is bridged the same
//! way by a [`Forward`], a plain TCP relay to the host's loopback port. Both run on std
//! threads, nothing else: a one-shot call pays for no async runtime.
//!
//! # What it enforces
//!
//! - **Only what was granted.** A target is reached when it matches an entry of
//!   [`EgressPolicy::hosts`] by name (or the address an entry names), whatever it resolves
//!   to; or, with [`EgressPolicy::public`], when every address it resolves to is public
//!   unicast ([`is_public`]): loopback, private, shared, link-local (so cloud metadata at
//!   169.254.169.254), unique local, multicast, broadcast, documentation, benchmarking and
//!   reserved ranges, and the IPv4-mapped forms of these, are reached only when granted by
//!   name. A loopback service of the host is never reached unless an entry names it.
//! - **One resolution.** A name is resolved once per request and the proxy connects only
//!   to the addresses it checked: a name cannot answer a public address to the check and a
//!   private one to the connection (DNS rebinding). A name that is neither granted nor
//!   allowed by `public` is not resolved at all, so refused names leak nothing to DNS.
//! - **Refusals a person can act on.** A refused target is answered `403 Forbidden` with
//!   one line naming it, the reason and the `--allow-net` grant that would allow it
//!   ([`Refusal`]); it is logged with `tracing::warn!` (repeats at debug level) and kept in
//!   [`Proxy::refused`] (the last 32 distinct ones) for the runtime's error suggestions.
//! - **Bounds against hostile clients.** A request head is read into a fixed buffer (16 KiB)
//!   before a deadline (10 s); connections out time out (10 s); at most 64 connections are
//!   live per proxy (beyond: `503`); every buffer is fixed; connection threads end when
//!   both sides have closed, or when the handle is dropped.
//! - **Plain HTTP, one request per connection.** An absolute-form request (`GET
//!   http://host/path`) is forwarded in origin form with `Host` taken from the URL (not
//!   from the client's header) and `Connection: close`, so a second request on the same
//!   connection cannot reach another host.
//!
//! # What it does not do
//!
//! - It does not look inside tunnels: after `CONNECT`, the agent speaks whatever it likes
//!   (TLS or not) to the granted host and port. TLS's server name is not checked, so a
//!   front that serves a granted name and others (a CDN) can be asked for the others.
//! - It does not limit how much is sent to a granted host, nor how long a tunnel lasts:
//!   a grant is a grant.
//! - It authenticates no one: whoever can connect to the listener can use it, which is
//!   why the listener lives inside the sandbox's namespace.
//! - It speaks no SOCKS5 and carries no UDP (no QUIC, no DNS for the sandbox: names are
//!   resolved by the host's resolver, whose waits are its own).
//! - It does not make the namespace, set the proxy variables, or decide the policy: the
//!   runtime does, from what the agent declared and the user granted.
//!
//! Linux-only, like the rest of agenthub (stopping relies on `shutdown(2)` waking
//! `accept(2)` on a listening socket).

mod http;
mod policy;
mod resolve;
mod server;

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use policy::{EgressPolicy, Refusal, RefusalReason, is_public};
pub use resolve::{Resolve, SystemResolver};

use http::{HeadError, Request, Status};
use policy::Denied;
use server::{Server, Slot};

/// How many distinct refusals [`Proxy::refused`] keeps (the latest).
pub const REFUSALS_KEPT: usize = 32;

/// The bounds of a [`Proxy`] or a [`Forward`]; [`Default`] gives the ones to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyOptions {
    /// The longest request head read, in bytes (16 KiB); a longer one is answered `431`.
    pub head_limit: usize,
    /// How long a client has to send its whole request head (10 s); then `408`.
    pub head_timeout: Duration,
    /// How long connecting out may take, over all the addresses of a name (10 s).
    pub connect_timeout: Duration,
    /// How many connections may be live at once (64); beyond, the proxy answers `503` and
    /// a forward closes the connection.
    pub max_connections: usize,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            head_limit: 16 * 1024,
            head_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// A running egress proxy. Dropping it stops accepting (the listener is shut down and its
/// thread joined) and shuts down the connections still open.
pub struct Proxy {
    server: Server,
    state: Arc<State>,
}

struct State {
    policy: EgressPolicy,
    resolver: Arc<dyn Resolve>,
    options: ProxyOptions,
    refused: Mutex<VecDeque<Refusal>>,
}

impl Proxy {
    /// Serves `listener` (bound and listening, typically inside the sandbox's network
    /// namespace) with `policy`, resolving names with the system's resolver.
    pub fn serve(listener: TcpListener, policy: EgressPolicy) -> io::Result<Proxy> {
        Self::with_options(listener, policy, Arc::new(SystemResolver), ProxyOptions::default())
    }

    /// [`serve`](Self::serve) with another resolver (tests map names to loopback
    /// addresses).
    pub fn with_resolver(
        listener: TcpListener,
        policy: EgressPolicy,
        resolver: Arc<dyn Resolve>,
    ) -> io::Result<Proxy> {
        Self::with_options(listener, policy, resolver, ProxyOptions::default())
    }

    /// [`serve`](Self::serve) with another resolver and other bounds.
    pub fn with_options(
        listener: TcpListener,
        policy: EgressPolicy,
        resolver: Arc<dyn Resolve>,
        options: ProxyOptions,
    ) -> io::Result<Proxy> {
        let state = Arc::new(State { policy, resolver, options, refused: Mutex::new(VecDeque::new()) });
        let handler = {
            let state = Arc::clone(&state);
            Arc::new(move |stream, slot| handle(&state, stream, slot))
        };
        let server =
            Server::start(listener, state.options.max_connections, "agenthub-proxy", handler, answer_busy)?;
        Ok(Proxy { server, state })
    }

    /// The targets refused so far, each once, least recently refused first: the last
    /// [`REFUSALS_KEPT`].
    pub fn refused(&self) -> Vec<Refusal> {
        self.state.refused.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// The listener's address, as seen in the namespace it was bound in.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.local_addr()
    }

    /// How many connections are open through the proxy now.
    pub fn active(&self) -> usize {
        self.server.active()
    }

    /// The policy the proxy enforces.
    pub fn policy(&self) -> &EgressPolicy {
        &self.state.policy
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("local_addr", &self.local_addr())
            .field("policy", &self.state.policy)
            .field("options", &self.state.options)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Keeps `refusal` as the latest, once (an agent retrying the same target moves it to
    /// the back rather than pushing others out), and logs it: a warning the first time,
    /// while it is kept, and at debug level when it repeats.
    fn record(&self, refusal: &Refusal) {
        let repeated = {
            let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
            let earlier = refused.iter().position(|kept| kept == refusal);
            if let Some(earlier) = earlier {
                refused.remove(earlier);
            } else if refused.len() == REFUSALS_KEPT {
                refused.pop_front();
            }
            refused.push_back(refusal.clone());
            earlier.is_some()
        };
        if repeated {
            tracing::debug!(host = %refusal.host, port = refusal.port, reason = %refusal.reason, "{refusal}");
        } else {
            tracing::warn!("{refusal}");
        }
    }
}

/// One connection to the proxy: its head, the decision, the connection out, the splice.
fn handle(state: &State, mut client: TcpStream, slot: Slot) {
    let options = &state.options;
    let fail = |client, status, message: &str| {
        server::answer_and_close(client, &http::response(status, message), options.head_timeout);
    };
    let mut buf = vec![0; options.head_limit.max(64)];
    let deadline = Instant::now() + options.head_timeout;
    let (end, len) = match http::read_head(&mut client, &mut buf, deadline) {
        Ok(read) => read,
        Err(HeadError::TooLarge) => {
            let message =
                format!("agenthub sandbox proxy: the request head is longer than {} bytes", buf.len());
            return fail(client, Status::HeadTooLarge, &message);
        }
        Err(HeadError::Timeout) => {
            let message = format!(
                "agenthub sandbox proxy: the request head did not arrive within {:?}",
                options.head_timeout
            );
            return fail(client, Status::RequestTimeout, &message);
        }
        Err(HeadError::Closed) => return,
    };
    let request = match http::parse_head(&buf[..end]) {
        Ok(request) => request,
        Err(malformed) => {
            return fail(client, malformed.status, &format!("agenthub sandbox proxy: {}", malformed.reason));
        }
    };
    let (Request::Connect(target) | Request::Http { target, .. }) = &request;
    let addrs = match policy::decide(&state.policy, target, &*state.resolver) {
        Ok(addrs) => addrs,
        Err(Denied::Refused(refusal)) => {
            state.record(&refusal);
            return fail(client, Status::Forbidden, &refusal.to_string());
        }
        Err(Denied::Unresolved(e)) => {
            tracing::debug!(%target, error = %e, "sandbox proxy: no address");
            let message = format!("agenthub sandbox proxy: {target} did not resolve ({e})");
            return fail(client, Status::BadGateway, &message);
        }
    };
    let upstream = match server::connect(&addrs, options.connect_timeout) {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::debug!(%target, error = %e, "sandbox proxy: connection failed");
            let status =
                if e.kind() == io::ErrorKind::TimedOut { Status::GatewayTimeout } else { Status::BadGateway };
            return fail(
                client,
                status,
                &format!("agenthub sandbox proxy: could not connect to {target} ({e})"),
            );
        }
    };
    if !slot.track(&upstream) {
        return;
    }
    let early = &buf[end..len];
    match request {
        Request::Connect(_) => {
            let _ = client.set_write_timeout(Some(options.head_timeout));
            if client.write_all(http::ESTABLISHED).is_ok() {
                server::splice(client, upstream, early);
            }
        }
        Request::Http { mut head, .. } => {
            head.extend_from_slice(early);
            server::splice(client, upstream, &head);
        }
    }
    drop(slot);
}

/// The answer when every slot is taken; never blocks the accept thread.
fn answer_busy(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write(&http::response(
        Status::Unavailable,
        "agenthub sandbox proxy: too many connections at once; retry when some have closed",
    ));
}

/// A running TCP bridge: every connection accepted on the listener is relayed to one
/// target (a declared `localhost:PORT`, on the host's loopback). Dropping it stops
/// accepting and shuts down the connections still open.
pub struct Forward {
    server: Server,
    target: SocketAddr,
}

impl Forward {
    /// Relays every connection accepted on `listener` to `target`.
    pub fn serve(listener: TcpListener, target: SocketAddr) -> io::Result<Forward> {
        Self::with_options(listener, target, ProxyOptions::default())
    }

    /// [`serve`](Self::serve) with other bounds (only the connect timeout and the
    /// connection cap apply).
    pub fn with_options(
        listener: TcpListener,
        target: SocketAddr,
        options: ProxyOptions,
    ) -> io::Result<Forward> {
        let timeout = options.connect_timeout;
        let handler =
            Arc::new(move |client: TcpStream, slot: Slot| match server::connect(&[target], timeout) {
                Ok(upstream) => {
                    if slot.track(&upstream) {
                        server::splice(client, upstream, &[]);
                    }
                }
                Err(e) => tracing::warn!(%target, error = %e, "sandbox forward: could not connect"),
            });
        let server = Server::start(listener, options.max_connections, "agenthub-forward", handler, drop)?;
        Ok(Forward { server, target })
    }

    /// Where connections are relayed to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The listener's address, as seen in the namespace it was bound in.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.local_addr()
    }

    /// How many connections are open through the bridge now.
    pub fn active(&self) -> usize {
        self.server.active()
    }
}

impl fmt::Debug for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forward")
            .field("local_addr", &self.local_addr())
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Proxy>();
        shared::<Forward>();
        shared::<Refusal>();
    }
}
