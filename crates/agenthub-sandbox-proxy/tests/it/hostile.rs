//! Random and hostile bytes at the proxy's socket: every one gets an error answer or a
//! close, nothing is reached, and the proxy keeps serving.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::OnceLock;

use agenthub_sandbox_proxy::Proxy;
use proptest::prelude::*;

use crate::support::*;

/// One proxy for every case (nothing granted, public allowed, names resolving to
/// loopback), kept for the whole test binary.
fn shared_proxy() -> SocketAddr {
    static PROXY: OnceLock<(Proxy, SocketAddr)> = OnceLock::new();
    PROXY
        .get_or_init(|| {
            let listener = listener();
            let addr = listener.local_addr().unwrap();
            let resolver = TableResolver::new(&[("a.test", "127.0.0.1"), ("b.test", "10.0.0.1")]);
            (Proxy::with_resolver(listener, policy(true, &[]), resolver).unwrap(), addr)
        })
        .1
}

/// Sends `bytes`, half closes, and returns what came back.
fn send(bytes: &[u8]) -> Vec<u8> {
    let mut stream = connect(shared_proxy());
    // The proxy may answer and close before everything is written.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = stream.take(1 << 20).read_to_end(&mut out);
    out
}

fn is_error_answer_or_nothing(answer: &[u8]) -> bool {
    answer.is_empty()
        || [b"HTTP/1.1 4", b"HTTP/1.1 5"].iter().any(|prefix| answer.starts_with(*prefix))
            && answer.ends_with(b"\n")
            && answer.len() < 1024
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_heads_get_an_error_or_a_close(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        terminated in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if terminated {
            bytes.extend_from_slice(b"\r\n\r\n");
        }
        let answer = send(&bytes);
        prop_assert!(is_error_answer_or_nothing(&answer), "{:?}", String::from_utf8_lossy(&answer));
    }

    #[test]
    fn request_shaped_heads_get_an_error_or_a_close(
        method in "(CONNECT|GET|POST|[A-Z]{1,7})",
        scheme in "(|http://|https://)",
        host in "(a\\.test|b\\.test|127\\.0\\.0\\.1|\\[::1\\]|\\[::ffff:10\\.0\\.0\\.1\\]|169\\.254\\.169\\.254|[a-z0-9.\\-]{0,12}|\\PC{0,6})",
        port in "(|:[0-9]{0,6}|:\\PC{0,3})",
        path in "(|/|/\\PC{0,12})",
        version in "(HTTP/1\\.1|HTTP/1\\.0|HTTP/2|\\PC{0,4})",
        headers in proptest::collection::vec("\\PC{0,40}", 0..4),
    ) {
        let mut head = format!("{method} {scheme}{host}{port}{path} {version}\r\n");
        for header in headers {
            head.push_str(&header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let answer = send(head.as_bytes());
        prop_assert!(is_error_answer_or_nothing(&answer), "{head:?}: {:?}", String::from_utf8_lossy(&answer));
    }
}

#[test]
fn the_proxy_keeps_serving_after_hostile_input() {
    for bytes in [
        &b"\0\0\0\0\r\n\r\n"[..],
        b"\n\n",
        b"CONNECT",
        b"CONNECT [:::::]:1 HTTP/1.1\r\n\r\n",
        b"CONNECT a.test:1\xff HTTP/1.1\r\n\r\n",
        b"GET http://[::1 HTTP/1.1\r\n\r\n",
    ] {
        assert!(is_error_answer_or_nothing(&send(bytes)));
    }
    let answer = send(b"CONNECT b.test:5432 HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with(b"HTTP/1.1 403 "), "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("it resolves to 10.0.0.1, a private address"));
}
