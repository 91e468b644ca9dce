//! The proxy's policy and protocol, end to end.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use agenthub_sandbox_proxy::{EgressPolicy, Proxy, ProxyOptions, REFUSALS_KEPT, RefusalReason};

use crate::support::*;

#[test]
fn connect_reaches_a_loopback_server_granted_by_address() {
    let echo = TestServer::echo();
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::serve(listener, policy(false, &[&format!("127.0.0.1:{}", echo.port())])).unwrap();

    let mut stream = tunnel(addr, &format!("127.0.0.1:{}", echo.port()));
    assert_eq!(round_trip(&mut stream, b"ping"), b"ping");
    let big = vec![7; 100_000];
    assert_eq!(round_trip(&mut stream, &big), big);
    // A half close passes through: the echo server ends, and so does the tunnel.
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut stream), "");
    eventually("the tunnel's threads to end", || proxy.active() == 0);
    assert!(proxy.refused().is_empty());
}

#[test]
fn connect_reaches_a_loopback_server_granted_as_localhost_with_early_bytes() {
    let echo = TestServer::echo();
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let _proxy = Proxy::serve(listener, policy(false, &[&format!("localhost:{}", echo.port())])).unwrap();

    // The head and the first bytes of the tunnel in one write, as clients sending a TLS
    // hello early do.
    let mut stream = connect(addr);
    write!(stream, "CONNECT LOCALHOST:{} HTTP/1.1\r\n\r\nearly", echo.port()).unwrap();
    let (status, _) = read_response_head(&mut stream);
    assert_eq!(status, 200);
    let mut early = [0; 5];
    stream.read_exact(&mut early).unwrap();
    assert_eq!(&early, b"early");
    assert_eq!(round_trip(&mut stream, b"more"), b"more");
}

#[test]
fn public_mode_refuses_loopback_and_says_how_to_grant_it() {
    let echo = TestServer::echo();
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::serve(listener, policy(true, &[])).unwrap();

    let port = echo.port();
    let (status, body) = ask(addr, &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"));
    assert_eq!(status, 403);
    assert_eq!(
        body,
        format!(
            "agenthub sandbox refused 127.0.0.1:{port} (127.0.0.1 is a loopback address, reached only when \
             granted by name); grant it with --allow-net 127.0.0.1:{port}\n"
        )
    );
    let (status, _) = ask(addr, &format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n"));
    assert_eq!(status, 403);
    let (status, _) = ask(addr, &format!("CONNECT [::ffff:127.0.0.1]:{port} HTTP/1.1\r\n\r\n"));
    assert_eq!(status, 403);
    let (status, _) = ask(addr, &format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n"));
    assert_eq!(status, 403);
    assert_eq!(echo.accepted(), 0, "the refused server was reached");

    let refused = proxy.refused();
    // Each target once, the latest last: the GET repeated the first CONNECT's target.
    assert_eq!(refused.len(), 3);
    assert_eq!(refused[0].host, "localhost");
    assert_eq!(refused[1].host, "::ffff:127.0.0.1");
    assert_eq!(refused[2].host, "127.0.0.1");
    assert_eq!(refused[2].port, port);
    assert!(matches!(refused[2].reason, RefusalReason::NotPublic { kind: "loopback", .. }));
}

#[test]
fn a_name_resolving_to_loopback_is_refused_in_public_mode_and_reached_when_named() {
    let echo = TestServer::echo();
    let target = format!("public.test:{}", echo.port());

    let resolver = TableResolver::new(&[("public.test", "127.0.0.1")]);
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::with_resolver(listener, policy(true, &[]), resolver.clone()).unwrap();
    let (status, body) = ask(addr, &format!("CONNECT {target} HTTP/1.1\r\n\r\n"));
    assert_eq!(status, 403);
    assert!(body.contains("it resolves to 127.0.0.1, a loopback address"), "{body}");
    assert!(body.contains("--allow-net public.test:"), "{body}");
    assert_eq!(proxy.refused()[0].host, "public.test");
    assert_eq!(echo.accepted(), 0);
    drop(proxy);

    let resolver = TableResolver::new(&[("public.test", "127.0.0.1")]);
    let second = crate::support::listener();
    let addr = second.local_addr().unwrap();
    let proxy = Proxy::with_resolver(second, policy(true, &["public.test"]), resolver.clone()).unwrap();
    let mut stream = tunnel(addr, &target);
    assert_eq!(round_trip(&mut stream, b"named"), b"named");
    // Resolved once: the connection went to the address that was checked.
    assert_eq!(resolver.asked(), ["public.test"]);
    assert!(proxy.refused().is_empty());
}

#[test]
fn strict_mode_refuses_what_is_not_granted_without_resolving_it() {
    let resolver = TableResolver::new(&[("api.test", "8.8.8.8")]);
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::with_resolver(listener, policy(false, &["other.test"]), resolver.clone()).unwrap();
    let (status, body) = ask(addr, "CONNECT api.test:443 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 403);
    assert_eq!(
        body,
        "agenthub sandbox refused api.test:443 (not in this agent's network permissions); grant it with \
         --allow-net api.test\n"
    );
    assert!(resolver.asked().is_empty(), "a refused name was resolved");

    // The record keeps the latest ones only.
    for i in 0..REFUSALS_KEPT + 8 {
        let (status, _) = ask(addr, &format!("CONNECT h{i}.test:443 HTTP/1.1\r\n\r\n"));
        assert_eq!(status, 403);
    }
    let refused = proxy.refused();
    assert_eq!(refused.len(), REFUSALS_KEPT);
    assert_eq!(refused.last().unwrap().host, format!("h{}.test", REFUSALS_KEPT + 7));
    // A repeat moves its target to the back and pushes nothing out.
    let (status, _) = ask(addr, "CONNECT h20.test:443 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 403);
    let again = proxy.refused();
    assert_eq!(again.len(), REFUSALS_KEPT);
    assert_eq!(again[0], refused[0]);
    assert_eq!(again.last().unwrap().host, "h20.test");
    assert!(resolver.asked().is_empty());
}

#[test]
fn cloud_metadata_is_refused_in_every_spelling() {
    let resolver = TableResolver::new(&[("metadata.test", "169.254.169.254")]);
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::with_resolver(listener, policy(true, &["example.test"]), resolver).unwrap();
    for head in [
        "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n",
        "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
        "CONNECT [::ffff:169.254.169.254]:80 HTTP/1.1\r\n\r\n",
        "CONNECT [::ffff:a9fe:a9fe]:80 HTTP/1.1\r\n\r\n",
        "CONNECT [64:ff9b::a9fe:a9fe]:80 HTTP/1.1\r\n\r\n",
        "CONNECT metadata.test:80 HTTP/1.1\r\n\r\n",
        "GET http://metadata.test/computeMetadata/v1/ HTTP/1.1\r\n\r\n",
    ] {
        let (status, body) = ask(addr, head);
        assert_eq!(status, 403, "{head}: {body}");
        assert!(body.contains("a link-local address"), "{head}: {body}");
    }
    // Four targets: the GETs repeat two CONNECTs' targets, and `::ffff:a9fe:a9fe` is
    // `::ffff:169.254.169.254`.
    let hosts: Vec<_> = proxy.refused().into_iter().map(|r| r.host).collect();
    assert_eq!(hosts, ["169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "metadata.test"]);
}

#[test]
fn a_port_other_than_the_granted_one_is_refused() {
    let echo = TestServer::echo();
    let port = echo.port();
    let other = if port == u16::MAX { port - 1 } else { port + 1 };
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::serve(listener, policy(false, &[&format!("127.0.0.1:{port}")])).unwrap();
    let (status, body) = ask(addr, &format!("CONNECT 127.0.0.1:{other} HTTP/1.1\r\n\r\n"));
    assert_eq!(status, 403);
    assert!(body.ends_with(&format!("grant it with --allow-net 127.0.0.1:{other}\n")), "{body}");
    assert_eq!(proxy.refused()[0].reason, RefusalReason::NotGranted);
    // The granted port still works.
    let mut stream = tunnel(addr, &format!("127.0.0.1:{port}"));
    assert_eq!(round_trip(&mut stream, b"ok"), b"ok");
}

#[test]
fn absolute_form_requests_are_forwarded_in_origin_form() {
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let stub = TestServer::start(move |mut stream| {
        let mut request = Vec::new();
        let mut byte = [0];
        while !request.ends_with(b"\r\n\r\n") && request.len() < 64 * 1024 {
            match stream.read(&mut byte) {
                Ok(1) => request.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&request).into_owned();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
        let mut body = vec![0; length];
        stream.read_exact(&mut body).unwrap();
        seen_tx.send((head, String::from_utf8(body).unwrap())).unwrap();
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").unwrap();
    });
    let port = stub.port();
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let _proxy = Proxy::serve(listener, policy(false, &[&format!("localhost:{port}")])).unwrap();

    let mut stream = connect(addr);
    write!(
        stream,
        "POST http://localhost:{port}/submit?q=1 HTTP/1.1\r\nHost: elsewhere.test\r\nProxy-Connection: keep-alive\r\n\
         Proxy-Authorization: Basic eDp5\r\nContent-Length: 4\r\nUser-Agent: test\r\n\r\nbody"
    )
    .unwrap();
    let (status, head) = read_response_head(&mut stream);
    assert_eq!(status, 200, "{head}");
    assert_eq!(read_to_close(&mut stream), "hello");

    let (head, body) = seen_rx.recv_timeout(WAIT).unwrap();
    assert_eq!(
        head,
        format!(
            "POST /submit?q=1 HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: 4\r\nUser-Agent: test\r\n\
             Connection: close\r\n\r\n"
        )
    );
    assert_eq!(body, "body");
}

#[test]
fn malformed_and_non_proxy_requests_get_400() {
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::serve(listener, policy(true, &[])).unwrap();
    for head in [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET https://example.test/ HTTP/1.1\r\n\r\n",
        "CONNECT example.test HTTP/1.1\r\n\r\n",
        "GET http://a.test@127.0.0.1/ HTTP/1.1\r\n\r\n",
        "hello\r\n\r\n",
    ] {
        let (status, body) = ask(addr, head);
        assert_eq!(status, 400, "{head}: {body}");
        assert!(body.starts_with("agenthub sandbox proxy: "), "{body}");
    }
    assert!(proxy.refused().is_empty());
}

#[test]
fn an_unresolvable_granted_name_gets_502() {
    let resolver = TableResolver::new(&[]);
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let _proxy = Proxy::with_resolver(listener, policy(false, &["*.test"]), resolver).unwrap();
    let (status, body) = ask(addr, "CONNECT nowhere.test:443 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 502);
    assert!(body.contains("nowhere.test:443 did not resolve"), "{body}");
}

#[test]
fn an_over_long_head_is_answered_431_without_waiting_for_its_end() {
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let _proxy = Proxy::serve(listener, policy(true, &[])).unwrap();
    let mut stream = connect(addr);
    let mut head = b"CONNECT example.test:443 HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(17 * 1024, b'a');
    stream.write_all(&head).unwrap();
    let (status, _) = read_response_head(&mut stream);
    assert_eq!(status, 431);
    assert!(read_to_close(&mut stream).contains("longer than 16384 bytes"));
}

#[test]
fn a_slow_head_ends_at_the_deadline() {
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let options = ProxyOptions { head_timeout: Duration::from_millis(300), ..ProxyOptions::default() };
    let proxy = Proxy::with_options(listener, policy(true, &[]), TableResolver::new(&[]), options).unwrap();
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let started = Instant::now();
    let trickle = thread::spawn(move || {
        // One byte every 50 ms, for at most 5 s or until the proxy closes.
        let bytes = b"CONNECT example.test:443 HTTP/1.1\r\nX: ".iter().chain([b'y'; 60].iter());
        for byte in bytes {
            if writer.write_all(&[*byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let (status, _) = read_response_head(&mut stream);
    assert_eq!(status, 408);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(read_to_close(&mut stream).contains("did not arrive within"));
    trickle.join().unwrap();
    eventually("the connection's slot to be given back", || proxy.active() == 0);
}

#[test]
fn connections_beyond_the_cap_get_503() {
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let options = ProxyOptions { max_connections: 2, ..ProxyOptions::default() };
    let proxy = Proxy::with_options(listener, policy(true, &[]), TableResolver::new(&[]), options).unwrap();
    let idle: Vec<_> = (0..2).map(|_| connect(addr)).collect();
    eventually("two live connections", || proxy.active() == 2);
    let (status, body) = ask(addr, "CONNECT example.test:443 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 503);
    assert!(body.contains("too many connections"), "{body}");
    drop(idle);
    eventually("the idle connections to end", || proxy.active() == 0);
    let (status, _) = ask(addr, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, 400);
}

#[test]
fn dropping_the_proxy_stops_accepting_and_ends_open_tunnels() {
    let echo = TestServer::echo();
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::serve(listener, policy(false, &[&format!("127.0.0.1:{}", echo.port())])).unwrap();
    let mut stream = tunnel(addr, &format!("127.0.0.1:{}", echo.port()));
    assert_eq!(round_trip(&mut stream, b"before"), b"before");
    // A connection still sending its head, too.
    let mut pending = connect(addr);
    pending.write_all(b"CONNECT 127.0.0.1:1").unwrap();
    eventually("two live connections", || proxy.active() == 2);

    let started = Instant::now();
    drop(proxy);
    assert!(started.elapsed() < WAIT);
    assert!(refused_or_closed(addr), "the proxy still accepts after drop");
    assert_eq!(read_to_close(&mut stream), "");
    assert_eq!(read_to_close(&mut pending), "");
}

#[test]
fn a_proxy_with_nothing_granted_refuses_everything() {
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::serve(listener, EgressPolicy::default()).unwrap();
    let (status, _) = ask(addr, "CONNECT localhost:22 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 403);
    assert_eq!(proxy.refused()[0].grant(), "localhost:22");
}
