//! Which targets the proxy reaches: granted by name, or public by every address.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use agenthub_core::HostPattern;

use crate::resolve::Resolve;

/// What an agent's traffic may reach through the proxy.
///
/// A target is allowed when it matches an entry of [`hosts`](Self::hosts) by name (or by
/// the address an entry names), whatever it resolves to, loopback and private addresses
/// included; or, when [`public`](Self::public) is set, when every address it resolves to
/// is a public unicast address. Nothing else is reached, and a name neither granted nor
/// allowed by `public` is not even resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Whether hosts whose every address is public unicast may be reached (the sandbox's
    /// `default` mode).
    pub public: bool,
    /// The entries declared by the agent and granted by the user, reached by name.
    pub hosts: Vec<HostPattern>,
}

impl EgressPolicy {
    /// Whether `host` (a name, or an address without brackets) and `port` match an entry.
    pub fn grants(&self, host: &str, port: u16) -> bool {
        self.hosts.iter().any(|entry| entry.matches(host, port))
    }
}

/// Why the proxy refused a target.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The host and port match no entry of the agent's network permissions, and public
    /// hosts are not allowed.
    NotGranted,
    /// Public hosts are allowed, but the target is, or resolves to, this address, which is
    /// not a public unicast address (loopback, private, link-local and so cloud metadata,
    /// multicast, reserved...). Such addresses are reached only when granted by name.
    NotPublic {
        /// The first address that was not public.
        addr: IpAddr,
        /// What kind of address it is, in words (`loopback`, `private`, `link-local`...).
        kind: &'static str,
    },
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotGranted => f.write_str("not in this agent's network permissions"),
            Self::NotPublic { addr, kind } => {
                write!(f, "{addr} is {} {kind} address, reached only when granted by name", article(kind))
            }
        }
    }
}

/// A target the proxy refused: what the agent asked for and why it was not reached.
///
/// Its `Display` is the one line the agent receives as the body of the `403` answer, for
/// example `agenthub sandbox refused example.com:443 (not in this agent's network
/// permissions); grant it with --allow-net example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The host as asked for: a name (lower case, without a trailing dot) or an address
    /// (IPv6 without brackets).
    pub host: String,
    /// The port asked for.
    pub port: u16,
    /// Why it was refused.
    pub reason: RefusalReason,
}

impl Refusal {
    /// The `--allow-net` entry that would allow this target: the host alone for ports 80
    /// and 443, `host:port` otherwise.
    pub fn grant(&self) -> String {
        let host = bracketed(&self.host);
        match self.port {
            80 | 443 => host,
            port => format!("{host}:{port}"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agenthub sandbox refused {}:{} (", bracketed(&self.host), self.port)?;
        match &self.reason {
            // A name: say what it resolved to.
            RefusalReason::NotPublic { addr, kind } if self.host.parse::<IpAddr>().ok() != Some(*addr) => {
                write!(
                    f,
                    "it resolves to {addr}, {} {kind} address, reached only when granted by name",
                    article(kind)
                )?;
            }
            reason => write!(f, "{reason}")?,
        }
        write!(f, "); grant it with --allow-net {}", self.grant())
    }
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with("unspecified") { "an" } else { "a" }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

/// The host part of a request's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
    /// An address literal.
    Ip(IpAddr),
}

/// What a request asks to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) host: Host,
    pub(crate) port: u16,
}

impl Target {
    /// The host as entries match it: the name, or the address without brackets.
    pub(crate) fn host_text(&self) -> String {
        match &self.host {
            Host::Name(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }

    /// `host` or `host:port` (the port when not `default`), IPv6 bracketed: a `Host`
    /// header's value.
    pub(crate) fn authority(&self, default: u16) -> String {
        let host = bracketed(&self.host_text());
        if self.port == default { host } else { format!("{host}:{}", self.port) }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", bracketed(&self.host_text()), self.port)
    }
}

/// Why a target is not reached.
#[derive(Debug)]
pub(crate) enum Denied {
    /// By policy.
    Refused(Refusal),
    /// The name did not resolve (or to nothing).
    Unresolved(io::Error),
}

/// At most this many addresses of one name are kept (and tried).
const MAX_ADDRS: usize = 16;

/// Decides whether `target` is reached and, if so, at which addresses: the very addresses
/// that were checked, from one resolution.
pub(crate) fn decide(
    policy: &EgressPolicy,
    target: &Target,
    resolver: &dyn Resolve,
) -> Result<Vec<SocketAddr>, Denied> {
    let host = target.host_text();
    let named = policy.grants(&host, target.port);
    let refusal = |reason| Denied::Refused(Refusal { host: host.clone(), port: target.port, reason });
    if !named && !policy.public {
        return Err(refusal(RefusalReason::NotGranted));
    }
    let mut addrs: Vec<IpAddr> = match &target.host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) if name == "localhost" || name.ends_with(".localhost") => {
            // RFC 6761: always the loopback, whatever a resolver says.
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
        }
        Host::Name(name) => resolver.resolve(name).map_err(Denied::Unresolved)?,
    };
    let mut unique = Vec::with_capacity(addrs.len().min(MAX_ADDRS));
    for ip in addrs.drain(..) {
        if unique.len() == MAX_ADDRS {
            break;
        }
        if !unique.contains(&ip) {
            unique.push(ip);
        }
    }
    let addrs = unique;
    if addrs.is_empty() {
        return Err(Denied::Unresolved(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )));
    }
    if !named && let Some((addr, kind)) = addrs.iter().find_map(|ip| non_public(*ip).map(|k| (*ip, k))) {
        return Err(refusal(RefusalReason::NotPublic { addr, kind }));
    }
    Ok(addrs.into_iter().map(|ip| SocketAddr::new(ip, target.port)).collect())
}

/// Whether `ip` is a public unicast address, one the proxy reaches in public mode without
/// a grant by name.
///
/// Refused: unspecified, loopback, private (RFC 1918), shared (100.64.0.0/10), link-local
/// (169.254.0.0/16, where cloud metadata answers, and `fe80::/10`), unique local (`fc00::/7`),
/// site-local, multicast, broadcast, documentation, benchmarking, 0.0.0.0/8, 240.0.0.0/4,
/// IETF protocol assignments, every IPv6 address outside `2000::/3`, and the IPv4-mapped,
/// IPv4-compatible, 6to4 and NAT64 forms of the refused IPv4 addresses.
pub fn is_public(ip: IpAddr) -> bool {
    non_public(ip).is_none()
}

/// What kind of non-public address `ip` is, or `None` when it is public.
fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let n = u32::from(ip);
    let within = |net: [u8; 4], bits: u32| (n ^ u32::from_be_bytes(net)) >> (32 - bits) == 0;
    Some(if n == 0 {
        "unspecified"
    } else if n == u32::MAX {
        "broadcast"
    } else if within([0, 0, 0, 0], 8) {
        "reserved (0.0.0.0/8)"
    } else if within([127, 0, 0, 0], 8) {
        "loopback"
    } else if within([10, 0, 0, 0], 8) || within([172, 16, 0, 0], 12) || within([192, 168, 0, 0], 16) {
        "private"
    } else if within([100, 64, 0, 0], 10) {
        "shared (carrier-grade NAT)"
    } else if within([169, 254, 0, 0], 16) {
        "link-local"
    } else if within([192, 0, 0, 0], 24) {
        "reserved (IETF protocol assignment)"
    } else if within([192, 0, 2, 0], 24) || within([198, 51, 100, 0], 24) || within([203, 0, 113, 0], 24) {
        "documentation"
    } else if within([192, 88, 99, 0], 24) {
        "reserved (6to4 relay)"
    } else if within([198, 18, 0, 0], 15) {
        "benchmarking"
    } else if within([224, 0, 0, 0], 4) {
        "multicast"
    } else if within([240, 0, 0, 0], 4) {
        "reserved (240.0.0.0/4)"
    } else {
        return None;
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let n = u128::from(ip);
    let within = |net: u128, bits: u32| (n ^ net) >> (128 - bits) == 0;
    let embedded = |shift: u32| Ipv4Addr::from(((n >> shift) & 0xffff_ffff) as u32);
    if within(0xffff_0000_0000, 96) {
        // IPv4-mapped: the IPv4 address it is.
        return non_public_v4(embedded(0));
    }
    Some(if n == 0 {
        "unspecified"
    } else if n == 1 {
        "loopback"
    } else if within(0, 96) {
        // IPv4-compatible (deprecated): never routed as such.
        non_public_v4(embedded(0)).unwrap_or("reserved (IPv4-compatible)")
    } else if within(0x0064_ff9b << 96, 96) {
        // NAT64's well-known prefix: as public as the IPv4 address it carries.
        return non_public_v4(embedded(0));
    } else if within(0x2002 << 112, 16) {
        // 6to4: as public as the IPv4 address it carries.
        return non_public_v4(embedded(80));
    } else if within(0xfe80 << 112, 10) {
        "link-local"
    } else if within(0xfec0 << 112, 10) {
        "site-local"
    } else if within(0xfc00 << 112, 7) {
        "unique local"
    } else if within(0xff00 << 112, 8) {
        "multicast"
    } else if within(0x2001_0db8 << 96, 32) || within(0x3fff << 112, 20) {
        "documentation"
    } else if within(0x2001 << 112, 23) {
        "reserved (IETF protocol assignment)"
    } else if !within(0x2000 << 112, 3) {
        "reserved (outside 2000::/3)"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn public_addresses_are_told_from_the_rest() {
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for text in public {
            let ip: IpAddr = text.parse().unwrap();
            assert!(is_public(ip), "{text} should be public");
        }
        let refused = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "reserved (0.0.0.0/8)"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("100.127.255.255", "shared (carrier-grade NAT)"),
            ("169.254.169.254", "link-local"),
            ("192.0.0.8", "reserved (IETF protocol assignment)"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved (240.0.0.0/4)"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.1.2.3", "private"),
            ("::127.0.0.1", "loopback"),
            ("::8.8.8.8", "reserved (IPv4-compatible)"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("2002:c0a8:101::1", "private"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2001::1", "reserved (IETF protocol assignment)"),
            ("2001:2::1", "reserved (IETF protocol assignment)"),
            ("100::1", "reserved (outside 2000::/3)"),
            ("4000::1", "reserved (outside 2000::/3)"),
        ];
        for (text, kind) in refused {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(non_public(ip), Some(kind), "{text}");
        }
    }

    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl Resolve for Table {
        fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
            self.0.get(host).cloned().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown"))
        }
    }

    fn table() -> Table {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        Table(HashMap::from([
            ("public.test", vec![ip("8.8.8.8"), ip("2606:4700:4700::1111")]),
            ("mixed.test", vec![ip("8.8.8.8"), ip("10.0.0.1")]),
            ("inside.test", vec![ip("10.0.0.1")]),
            ("many.test", (0..40).map(|i| ip(&format!("8.8.8.{i}"))).collect()),
        ]))
    }

    fn target(host: &str, port: u16) -> Target {
        let host = host.parse().map_or_else(|_| Host::Name(host.to_owned()), Host::Ip);
        Target { host, port }
    }

    fn policy(public: bool, hosts: &[&str]) -> EgressPolicy {
        EgressPolicy { public, hosts: hosts.iter().map(|h| HostPattern::parse(h).unwrap()).collect() }
    }

    fn reason(result: Result<Vec<SocketAddr>, Denied>) -> RefusalReason {
        match result {
            Err(Denied::Refused(r)) => r.reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn decisions_follow_names_then_public_addresses() {
        let r = table();
        let public = policy(true, &[]);
        let addrs = decide(&public, &target("public.test", 443), &r).unwrap();
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[0], "8.8.8.8:443".parse().unwrap());
        assert!(matches!(
            reason(decide(&public, &target("mixed.test", 443), &r)),
            RefusalReason::NotPublic { kind: "private", .. }
        ));
        assert!(matches!(
            reason(decide(&public, &target("localhost", 80), &r)),
            RefusalReason::NotPublic { kind: "loopback", .. }
        ));
        assert!(matches!(
            reason(decide(&public, &target("169.254.169.254", 80), &r)),
            RefusalReason::NotPublic { kind: "link-local", .. }
        ));
        assert!(matches!(decide(&public, &target("nowhere.test", 80), &r), Err(Denied::Unresolved(_))));
        assert_eq!(decide(&public, &target("many.test", 80), &r).unwrap().len(), MAX_ADDRS);

        let strict = policy(false, &["inside.test:5432", "*.example.com", "10.9.8.7"]);
        assert_eq!(
            decide(&strict, &target("inside.test", 5432), &r).unwrap(),
            vec!["10.0.0.1:5432".parse().unwrap()]
        );
        assert_eq!(reason(decide(&strict, &target("inside.test", 5433), &r)), RefusalReason::NotGranted);
        assert_eq!(reason(decide(&strict, &target("public.test", 443), &r)), RefusalReason::NotGranted);
        assert_eq!(
            decide(&strict, &target("10.9.8.7", 22), &r).unwrap(),
            vec!["10.9.8.7:22".parse().unwrap()]
        );
        // Granted by a wildcard, refused before any resolution (the table knows no such name).
        assert!(matches!(decide(&strict, &target("a.example.com", 443), &r), Err(Denied::Unresolved(_))));
        assert_eq!(reason(decide(&strict, &target("example.com", 443), &r)), RefusalReason::NotGranted);
    }

    #[test]
    fn refusals_read_as_one_line_with_the_grant() {
        let r = Refusal { host: "example.com".into(), port: 443, reason: RefusalReason::NotGranted };
        assert_eq!(
            r.to_string(),
            "agenthub sandbox refused example.com:443 (not in this agent's network permissions); \
             grant it with --allow-net example.com"
        );
        let r = Refusal {
            host: "::1".into(),
            port: 8080,
            reason: RefusalReason::NotPublic { addr: "::1".parse().unwrap(), kind: "loopback" },
        };
        assert_eq!(
            r.to_string(),
            "agenthub sandbox refused [::1]:8080 (::1 is a loopback address, reached only when granted \
             by name); grant it with --allow-net [::1]:8080"
        );
        assert!(HostPattern::parse(&r.grant()).unwrap().matches("::1", 8080));
    }
}
