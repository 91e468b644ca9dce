//! The machinery both servers share: an accept thread that a handle stops, a cap on live
//! connections, the sockets of live connections (shut down when the handle is dropped),
//! and the two-way splice.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack of a proxy connection's first thread, which calls `getaddrinfo` (and whatever
/// NSS module it loads): generous, since only what is touched is committed.
const HANDLER_STACK: usize = 1024 * 1024;
/// Stack of the accept thread and of a splice's second direction: a loop over a buffer on
/// the heap.
const STACK: usize = 256 * 1024;
/// Size of a splice direction's buffer.
const SPLICE_BUFFER: usize = 16 * 1024;

/// What the accept thread and every connection share.
pub(crate) struct Shared {
    stopped: AtomicBool,
    active: AtomicUsize,
    max: usize,
    /// The sockets of each live connection, by connection id, to shut down on stop.
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    next: u64,
    sockets: HashMap<u64, Vec<TcpStream>>,
}

impl Shared {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's place under the cap; gives it back (and forgets its sockets) on drop.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Slot {
    fn take(shared: &Arc<Shared>) -> Option<Slot> {
        shared
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < shared.max).then_some(n + 1))
            .ok()?;
        let id = {
            let mut live = shared.live();
            live.next += 1;
            live.next
        };
        Some(Slot { shared: Arc::clone(shared), id })
    }

    /// Records `socket` so that stopping the server shuts it down; `false` (and the socket
    /// shut down) when the server is already stopping.
    pub(crate) fn track(&self, socket: &TcpStream) -> bool {
        let mut live = self.shared.live();
        if self.shared.stopped.load(Ordering::Acquire) {
            drop(live);
            let _ = socket.shutdown(Shutdown::Both);
            return false;
        }
        if let Ok(clone) = socket.try_clone() {
            live.sockets.entry(self.id).or_default().push(clone);
            true
        } else {
            drop(live);
            let _ = socket.shutdown(Shutdown::Both);
            false
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let sockets = self.shared.live().sockets.remove(&self.id);
        drop(sockets);
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running accept loop; stopped (and joined) on drop.
pub(crate) struct Server {
    shared: Arc<Shared>,
    listener: Arc<TcpListener>,
    local_addr: Option<SocketAddr>,
    thread: Option<JoinHandle<()>>,
}

/// What a server does with a connection it accepted: the socket and its slot.
pub(crate) type Handler = Arc<dyn Fn(TcpStream, Slot) + Send + Sync>;

impl Server {
    /// Starts accepting on `listener`: each connection gets a thread running `handler`,
    /// up to `max` at once; beyond, `busy` gets the socket (it must not block).
    pub(crate) fn start(
        listener: TcpListener,
        max: usize,
        name: &str,
        handler: Handler,
        busy: fn(TcpStream),
    ) -> io::Result<Server> {
        listener.set_nonblocking(false)?;
        let local_addr = listener.local_addr().ok();
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            stopped: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            max,
            live: Mutex::new(Live::default()),
        });
        let thread = {
            let (listener, shared) = (Arc::clone(&listener), Arc::clone(&shared));
            let conn_name = format!("{name}-conn");
            thread::Builder::new()
                .name(format!("{name}-accept"))
                .stack_size(STACK)
                .spawn(move || accept_loop(&listener, &shared, &conn_name, &handler, busy))?
        };
        Ok(Server { shared, listener, local_addr, thread: Some(thread) })
    }

    /// The listener's address (in the namespace it was bound in).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// How many connections are live.
    pub(crate) fn active(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        // A listening socket shut down wakes a blocked accept(2) with EINVAL (Linux); the
        // listener may live in another network namespace, so connecting to it to wake the
        // thread is not an option.
        // SAFETY: the descriptor belongs to `self.listener`, which is alive here.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let live = std::mem::take(&mut self.shared.live().sockets);
        for socket in live.values().flatten() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    name: &str,
    handler: &Handler,
    busy: fn(TcpStream),
) {
    loop {
        let accepted = listener.accept();
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset => {
                    continue;
                }
                // Not listening any more.
                io::ErrorKind::InvalidInput => return,
                _ => {
                    // Out of descriptors or memory: wait a little rather than spin.
                    tracing::warn!(error = %e, "sandbox proxy: accept failed");
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let Some(slot) = Slot::take(shared) else {
            busy(stream);
            continue;
        };
        if !slot.track(&stream) {
            if shared.stopped.load(Ordering::Acquire) {
                return;
            }
            continue;
        }
        let handler = Arc::clone(handler);
        // On failure the closure, and with it the socket and the slot, is dropped.
        let _ = thread::Builder::new()
            .name(name.to_owned())
            .stack_size(HANDLER_STACK)
            .spawn(move || handler(stream, slot));
    }
}

/// Connects to the first of `addrs` that answers, all of them within `timeout`.
pub(crate) fn connect(addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connection timed out"));
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Copies bytes both ways between `client` and `upstream` (after sending `early` upstream)
/// until both directions have ended. An end of stream is passed on as a half close; an
/// error ends both directions.
pub(crate) fn splice(client: TcpStream, upstream: TcpStream, early: &[u8]) {
    let _ = client.set_read_timeout(None);
    let _ = client.set_write_timeout(None);
    let _ = client.set_nodelay(true);
    let (Ok(client_back), Ok(upstream_back)) = (client.try_clone(), upstream.try_clone()) else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return;
    };
    let back = thread::Builder::new()
        .name("agenthub-proxy-splice".to_owned())
        .stack_size(STACK)
        .spawn(move || pump(upstream_back, client_back));
    let Ok(back) = back else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return;
    };
    if early.is_empty() || (&upstream).write_all(early).is_ok() {
        pump(client, upstream);
    } else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
    }
    let _ = back.join();
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0; SPLICE_BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Writes `bytes` (an error answer) without waiting more than `timeout`, then closes
/// gracefully: half close, and read what the client still sends (up to 64 KiB, for at most
/// a second), so that the answer is not lost to a reset.
pub(crate) fn answer_and_close(mut stream: TcpStream, bytes: &[u8], timeout: Duration) {
    let _ = stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1))));
    if stream.write_all(bytes).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut drained = 0;
    let mut buf = [0; 4096];
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}
