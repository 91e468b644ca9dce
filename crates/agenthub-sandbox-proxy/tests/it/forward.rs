//! The plain TCP bridge for declared `localhost:PORT` entries.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::time::Instant;

use agenthub_sandbox_proxy::Forward;

use crate::support::*;

#[test]
fn a_forward_splices_bytes_both_ways() {
    // The server speaks first, then answers each line in upper case.
    let server = TestServer::start(|mut stream| {
        stream.write_all(b"hello\n").unwrap();
        let mut buf = [0; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stream.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let forward = Forward::serve(listener, server.addr).unwrap();
    assert_eq!(forward.target(), server.addr);

    let mut stream = connect(addr);
    let mut greeting = [0; 6];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"hello\n");
    assert_eq!(round_trip(&mut stream, b"abc\n"), b"ABC\n");
    let big = vec![b'x'; 300_000];
    assert_eq!(round_trip(&mut stream, &big), vec![b'X'; 300_000]);
    // Any bytes at all: a forward is not HTTP.
    assert_eq!(round_trip(&mut stream, b"\0\xff\r\n\r\n"), b"\0\xff\r\n\r\n");
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut stream), "");
    eventually("the bridge's threads to end", || forward.active() == 0);

    // Several at once.
    let mut streams: Vec<_> = (0..4).map(|_| connect(addr)).collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let mut greeting = [0; 6];
        stream.read_exact(&mut greeting).unwrap();
        let line = format!("line {i}\n");
        assert_eq!(round_trip(stream, line.as_bytes()), line.to_uppercase().as_bytes());
    }
}

#[test]
fn a_forward_to_nothing_closes_the_connection() {
    // A port nothing listens on: bind one, note it, close it.
    let target = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let forward = Forward::serve(listener, target).unwrap();
    let mut stream = connect(addr);
    assert_eq!(read_to_close(&mut stream), "");
    eventually("the connection to end", || forward.active() == 0);
}

#[test]
fn dropping_a_forward_stops_accepting_and_ends_open_connections() {
    let echo = TestServer::echo();
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let forward = Forward::serve(listener, echo.addr).unwrap();
    let mut stream = connect(addr);
    assert_eq!(round_trip(&mut stream, b"before"), b"before");
    let started = Instant::now();
    drop(forward);
    assert!(started.elapsed() < WAIT);
    assert!(refused_or_closed(addr), "the forward still accepts after drop");
    assert_eq!(read_to_close(&mut stream), "");
}
