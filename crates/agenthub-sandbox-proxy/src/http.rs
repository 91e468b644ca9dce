//! The little HTTP a forward proxy speaks: a request head read with a bound and a
//! deadline, `CONNECT host:port` and absolute-form requests, and one-line answers.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream};
use std::time::Instant;

use crate::policy::{Host, Target};

/// The status lines the proxy answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    BadRequest,
    Forbidden,
    RequestTimeout,
    HeadTooLarge,
    BadGateway,
    Unavailable,
    GatewayTimeout,
    VersionNotSupported,
}

impl Status {
    pub(crate) fn line(self) -> &'static str {
        match self {
            Self::BadRequest => "400 Bad Request",
            Self::Forbidden => "403 Forbidden",
            Self::RequestTimeout => "408 Request Timeout",
            Self::HeadTooLarge => "431 Request Header Fields Too Large",
            Self::BadGateway => "502 Bad Gateway",
            Self::Unavailable => "503 Service Unavailable",
            Self::GatewayTimeout => "504 Gateway Timeout",
            Self::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }
}

/// A whole answer: status, a one-line text body, and `Connection: close`.
pub(crate) fn response(status: Status, body: &str) -> Vec<u8> {
    let body = format!("{}\n", body.trim_end());
    format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        status.line(),
        body.len()
    )
    .into_bytes()
}

/// The answer to a tunnel that was opened.
pub(crate) const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// Why no request head was read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// The buffer filled up before the head ended.
    TooLarge,
    /// The deadline passed before the head ended.
    Timeout,
    /// The client closed, or the socket failed.
    Closed,
}

/// Reads from `stream` into `buf` (whose length is the bound) until a request head ends or
/// `deadline` passes; returns where the head ends and how many bytes were read (bytes past
/// the head belong to the body or the tunnel).
pub(crate) fn read_head(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<(usize, usize), HeadError> {
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        stream.set_read_timeout(Some(left)).map_err(|_| HeadError::Closed)?;
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => {
                let from = len;
                len += n;
                if let Some(end) = head_end(&buf[..len], from) {
                    return Ok((end, len));
                }
                if len == buf.len() {
                    return Err(HeadError::TooLarge);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(HeadError::Timeout);
            }
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

/// Where the head in `buf` ends (just past its empty line, `\n\n` or `\n\r\n`), looking
/// only at line feeds from `from` on (the earlier ones were looked at before).
pub(crate) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len())
        .find(|&i| {
            buf[i] == b'\n'
                && ((i >= 1 && buf[i - 1] == b'\n') || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'))
        })
        .map(|i| i + 1)
}

/// A request the proxy understood.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// `CONNECT host:port`: a tunnel.
    Connect(Target),
    /// An absolute-form request, and its head rewritten for the origin server (origin-form
    /// target, `Host` from the URL, hop-by-hop fields dropped, `Connection: close`).
    Http { target: Target, head: Vec<u8> },
}

/// A request the proxy refuses to read: the status and a short reason.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed {
    pub(crate) status: Status,
    pub(crate) reason: String,
}

fn bad(reason: impl Into<String>) -> Malformed {
    Malformed { status: Status::BadRequest, reason: reason.into() }
}

/// Parses a request head (as [`head_end`] delimits it).
pub(crate) fn parse_head(head: &[u8]) -> Result<Request, Malformed> {
    let mut lines = head.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    let request_line = std::str::from_utf8(request_line)
        .ok()
        .filter(|l| l.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or_else(|| bad("the request line is not printable ASCII"))?;
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(bad("the request line is not `METHOD target HTTP/1.1`"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(if version.starts_with("HTTP/") {
            Malformed { status: Status::VersionNotSupported, reason: format!("{version} is not spoken here") }
        } else {
            bad("the request line is not `METHOD target HTTP/1.1`")
        });
    }
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(bad("the method is not a token"));
    }
    if method == "CONNECT" {
        return parse_authority(target, None).map(Request::Connect).map_err(bad);
    }
    let Some(rest) = strip_prefix_ignore_case(target, "http://") else {
        return Err(bad(if strip_prefix_ignore_case(target, "https://").is_some() {
            "https:// URLs go through CONNECT (set HTTPS_PROXY)".to_owned()
        } else {
            format!("{method} {target}: a proxy takes `CONNECT host:port` or an absolute http:// URL")
        }));
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(bad("a URL with user information is not forwarded"));
    }
    let target = parse_authority(authority, Some(80)).map_err(bad)?;
    let path = path.split('#').next().unwrap_or_default();
    let path = match path.as_bytes().first() {
        None => "/".to_owned(),
        Some(b'/') => path.to_owned(),
        Some(_) => format!("/{path}"),
    };

    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(
        format!("{method} {path} {version}\r\nHost: {}\r\n", target.authority(80)).as_bytes(),
    );
    let mut upgrade = false;
    let mut connection_upgrade = false;
    for line in lines.take_while(|line| !line.is_empty()) {
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(bad("folded header lines are not accepted"));
        }
        let colon = line.iter().position(|&b| b == b':').ok_or_else(|| bad("a header line has no `:`"))?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.is_empty() || !name.iter().copied().all(is_token_byte) {
            return Err(bad("a header name is not a token"));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(bad("a header value holds a control character"));
        }
        let lower = name.to_ascii_lowercase();
        match &lower[..] {
            b"host" | b"proxy-connection" | b"keep-alive" | b"proxy-authorization" => continue,
            b"connection" => {
                connection_upgrade |= value
                    .split(|&b| b == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
                continue;
            }
            b"upgrade" => upgrade = true,
            _ => {}
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    // One request per connection: a second request on it could name another host.
    out.extend_from_slice(if upgrade && connection_upgrade {
        b"Connection: upgrade\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    Ok(Request::Http { target, head: out })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// RFC 9110's `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses `host:port`, `[v6]:port`, or (with a default port) `host` / `[v6]`.
pub(crate) fn parse_authority(text: &str, default_port: Option<u16>) -> Result<Target, String> {
    let invalid = || format!("`{text}` is not host:port");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(invalid)?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| invalid())?;
        (Host::Ip(IpAddr::V6(ip)), after)
    } else {
        let (host, port) = match text.find(':') {
            Some(colon) => text.split_at(colon),
            None => (text, ""),
        };
        (parse_host(host).ok_or_else(invalid)?, port)
    };
    let port = match port.strip_prefix(':') {
        Some(digits) => parse_port(digits).ok_or_else(invalid)?,
        None if port.is_empty() => default_port.ok_or_else(|| format!("`{text}` names no port"))?,
        None => return Err(invalid()),
    };
    Ok(Target { host, port })
}

fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&p| p > 0)
}

/// An IPv4 address, or a DNS name (letters, digits, `-`, `_`; labels of 1 to 63, 253 in
/// all), lower-cased and without a trailing dot.
fn parse_host(text: &str) -> Option<Host> {
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Some(Host::Ip(IpAddr::V4(ip)));
    }
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(Host::Name(name))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn name(host: &str, port: u16) -> Target {
        Target { host: Host::Name(host.to_owned()), port }
    }

    #[test]
    fn heads_end_at_the_first_empty_line() {
        assert_eq!(head_end(b"CONNECT a:1 HTTP/1.1\r\n\r\nrest", 0), Some(24));
        assert_eq!(head_end(b"CONNECT a:1 HTTP/1.1\n\nrest", 0), Some(22));
        assert_eq!(head_end(b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n", 0), None);
        // Looking from the middle still sees a line feed before `from`.
        assert_eq!(head_end(b"X\r\n\r\n", 4), Some(5));
    }

    #[test]
    fn connect_and_absolute_form_parse() {
        assert_eq!(
            parse_head(b"CONNECT Example.COM.:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Request::Connect(name("example.com", 443)))
        );
        assert_eq!(
            parse_head(b"CONNECT [::1]:8080 HTTP/1.1\r\n\r\n"),
            Ok(Request::Connect(Target { host: Host::Ip("::1".parse().unwrap()), port: 8080 }))
        );
        let Ok(Request::Http { target, head }) = parse_head(
            b"POST HTTP://api.test:8080/v1/x?q=1#frag HTTP/1.1\r\nHost: evil.test\r\n\
              Proxy-Connection: keep-alive\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n",
        ) else {
            panic!("not parsed")
        };
        assert_eq!(target, name("api.test", 8080));
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /v1/x?q=1 HTTP/1.1\r\nHost: api.test:8080\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
        );
        let Ok(Request::Http { head, .. }) = parse_head(b"GET http://a.test?x HTTP/1.0\r\n\r\n") else {
            panic!("not parsed")
        };
        assert!(head.starts_with(b"GET /?x HTTP/1.0\r\nHost: a.test\r\n"));
        let Ok(Request::Http { head, .. }) = parse_head(
            b"GET http://a.test/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        ) else {
            panic!("not parsed")
        };
        assert!(head.ends_with(b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"));
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        for head in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET https://a.test/ HTTP/1.1\r\n\r\n",
            b"CONNECT a.test HTTP/1.1\r\n\r\n",
            b"CONNECT a.test:0 HTTP/1.1\r\n\r\n",
            b"CONNECT a.test:+80 HTTP/1.1\r\n\r\n",
            b"CONNECT a.test:99999 HTTP/1.1\r\n\r\n",
            b"CONNECT ::1:80 HTTP/1.1\r\n\r\n",
            b"CONNECT [fe80::1%eth0]:80 HTTP/1.1\r\n\r\n",
            b"CONNECT a..b:80 HTTP/1.1\r\n\r\n",
            b"CONNECT a b:80 HTTP/1.1\r\n\r\n",
            b"CONNECT a.test:80  HTTP/1.1\r\n\r\n",
            b"CONNECT a.test:80 FTP/1.1\r\n\r\n",
            b"GET http://allowed.test@evil.test/ HTTP/1.1\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\n folded\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"G(T http://a.test/ HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"GET http://a.test/\xff HTTP/1.1\r\n\r\n",
        ] {
            let result = parse_head(head);
            assert!(
                matches!(result, Err(Malformed { status: Status::BadRequest, .. })),
                "{}: {result:?}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(
            parse_head(b"CONNECT a.test:80 HTTP/2.0\r\n\r\n").unwrap_err().status,
            Status::VersionNotSupported
        );
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = head_end(&bytes, 0);
            if let Ok(Request::Http { head, .. }) = parse_head(&bytes) {
                // What is forwarded is one head, ending at its first empty line.
                prop_assert_eq!(head_end(&head, 0), Some(head.len()));
            }
        }

        #[test]
        fn request_like_bytes_parse_or_are_refused_without_panic(
            method in "(CONNECT|GET|POST|[A-Z]{1,8}|\\PC{0,4})",
            target in "(http://|https://|HTTP://)?(\\[[0-9a-f:]{0,12}\\]|[a-z0-9.:@_-]{0,24}|\\PC{0,8})(:[0-9+-]{0,7})?(/\\PC{0,16})?",
            version in "(HTTP/1.1|HTTP/1.0|HTTP/\\PC{0,3}|\\PC{0,6})",
            headers in proptest::collection::vec("[A-Za-z-]{0,12}(:| :|)[ \\t]?\\PC{0,24}", 0..6),
        ) {
            let mut head = format!("{method} {target} {version}\r\n");
            for h in headers {
                head.push_str(&h);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            match parse_head(head.as_bytes()) {
                Ok(Request::Http { head, .. }) => {
                    prop_assert_eq!(head_end(&head, 0), Some(head.len()));
                }
                Ok(Request::Connect(t)) => prop_assert!(t.port > 0),
                Err(m) => prop_assert!(!m.reason.is_empty()),
            }
        }
    }
}
