//! Loopback servers, a table resolver and a small HTTP client, all with deadlines.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use agenthub_core::HostPattern;
use agenthub_sandbox_proxy::{EgressPolicy, Resolve};

/// The longest any test waits for one thing.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
/// How long a test server keeps accepting.
const SERVE_FOR: Duration = Duration::from_secs(20);

/// A listener on an ephemeral loopback port (standing in for the one in the namespace).
pub(crate) fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

pub(crate) fn policy(public: bool, hosts: &[&str]) -> EgressPolicy {
    EgressPolicy { public, hosts: hosts.iter().map(|h| HostPattern::parse(h).unwrap()).collect() }
}

/// A server on loopback that runs `serve` on each connection (each on its own thread, with
/// timeouts set), accepting for a bounded time. Counts the connections it accepted.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl TestServer {
    pub(crate) fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> TestServer {
        let listener = listener();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let serve = Arc::new(serve);
        thread::spawn(move || {
            let deadline = Instant::now() + SERVE_FOR;
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(WAIT)).unwrap();
                        stream.set_write_timeout(Some(WAIT)).unwrap();
                        let serve = Arc::clone(&serve);
                        thread::spawn(move || serve(stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TestServer { addr, accepted }
    }

    /// Echoes every byte until the client closes, then closes.
    pub(crate) fn echo() -> TestServer {
        Self::start(|mut stream| {
            let mut buf = [0; 4096];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Maps names to addresses and counts the questions.
#[derive(Default)]
pub(crate) struct TableResolver {
    table: HashMap<String, Vec<IpAddr>>,
    pub(crate) asked: Mutex<Vec<String>>,
}

impl TableResolver {
    pub(crate) fn new(entries: &[(&str, &str)]) -> Arc<TableResolver> {
        let mut table: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (name, ip) in entries {
            table.entry((*name).to_owned()).or_default().push(ip.parse().unwrap());
        }
        Arc::new(TableResolver { table, asked: Mutex::default() })
    }

    pub(crate) fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Resolve for TableResolver {
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        self.asked.lock().unwrap().push(name.to_owned());
        self.table.get(name).cloned().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such name"))
    }
}

/// A client connection with timeouts.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Reads a response head (up to its empty line, at most 64 KiB); returns the status code
/// and the head.
pub(crate) fn read_response_head(stream: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 64 * 1024, "response head too long");
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("response head cut short ({other:?}): {:?}", String::from_utf8_lossy(&head)),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, head)
}

/// Reads until the peer closes (or the timeout, or 1 MiB).
pub(crate) fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.take(1 << 20).read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `head` to a fresh connection to the proxy and returns the status and the body of
/// its (error) answer.
pub(crate) fn ask(proxy: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = connect(proxy);
    stream.write_all(head.as_bytes()).unwrap();
    let (status, _) = read_response_head(&mut stream);
    (status, read_to_close(&mut stream))
}

/// Opens a tunnel with `CONNECT target`; panics unless the answer is 200.
pub(crate) fn tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let mut stream = connect(proxy);
    write!(stream, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let (status, head) = read_response_head(&mut stream);
    assert_eq!(status, 200, "{head}");
    stream
}

/// Writes `bytes` and reads as many back.
pub(crate) fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).unwrap();
    let mut back = vec![0; bytes.len()];
    stream.read_exact(&mut back).unwrap();
    back
}

/// Polls `done` every 10 ms until it holds or `WAIT` passes.
pub(crate) fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a connection to `addr` is refused or closed without a byte, within `WAIT`.
pub(crate) fn refused_or_closed(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, WAIT) else { return true };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let _ = stream.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n");
    let _ = stream.shutdown(Shutdown::Write);
    match stream.read(&mut [0; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
    }
}
