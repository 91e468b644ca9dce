//! What an agent may reach beyond running itself (SPEC §8): the host patterns of a network
//! permission, shared by the manifest's `permissions:` block, the user's grants and the
//! egress proxy that enforces them.

use std::fmt;

use thiserror::Error;

/// Why a network entry (`api.openai.com`, `*.anthropic.com:443`, `localhost:11434`) was
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HostPatternError {
    /// Empty, or only a port.
    #[error("`{0}` names no host")]
    Empty(String),
    /// The port is not a number from 1 to 65535.
    #[error("`{entry}`: `{port}` is not a port (1 to 65535)")]
    BadPort {
        /// The whole entry.
        entry: String,
        /// What stood where the port goes.
        port: String,
    },
    /// A character a host name cannot hold, a misplaced `*`, or an empty label.
    #[error("`{0}` is not a host name, IP address or `*.domain` pattern")]
    BadHost(String),
    /// A URL instead of a host.
    #[error("`{0}` is a URL; write the host only (and `:port` if one port)")]
    Url(String),
}

/// One network entry: a host (exact, `*.suffix`, or an IP address) and an optional port.
///
/// `localhost`, `127.0.0.1` and `::1` all mean the caller's loopback. A pattern is held
/// lower-case; `*.example.com` matches `a.example.com` and `a.b.example.com`, not
/// `example.com` itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostMatch {
    /// A name or an IP address, exactly.
    Exact(String),
    /// `*.` followed by this suffix (without the dot).
    Wildcard(String),
}

impl HostPattern {
    /// Parses `host`, `host:port`, `*.domain[:port]`, `[v6addr]:port` or a bare IPv6
    /// address.
    pub fn parse(entry: &str) -> Result<Self, HostPatternError> {
        let text = entry.trim();
        if text.contains("://") || text.contains('/') {
            return Err(HostPatternError::Url(entry.to_owned()));
        }
        let (host, port) = split_port(text, entry)?;
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(HostPatternError::Empty(entry.to_owned()));
        }
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            if !is_host_name(suffix) {
                return Err(HostPatternError::BadHost(entry.to_owned()));
            }
            HostMatch::Wildcard(suffix.to_owned())
        } else if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            // One spelling per address (`0:0::1` is `::1`): the one the proxy compares.
            HostMatch::Exact(ip.to_string())
        } else if is_host_name(&host) {
            HostMatch::Exact(host)
        } else {
            return Err(HostPatternError::BadHost(entry.to_owned()));
        };
        Ok(Self { host, port })
    }

    /// The port, when the entry names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether this entry is the caller's loopback (`localhost`, `127.0.0.1`, `::1`): such
    /// entries are bridged into the sandbox rather than reached through the proxy.
    pub fn is_loopback(&self) -> bool {
        match &self.host {
            HostMatch::Exact(h) => {
                h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            HostMatch::Wildcard(_) => false,
        }
    }

    /// Whether the host is a wildcard (`*.example.com`).
    pub fn is_wildcard(&self) -> bool {
        matches!(self.host, HostMatch::Wildcard(_))
    }

    /// Whether `host` (a name or an address, any case, without brackets) and `port` are
    /// allowed by this entry.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match &self.host {
            HostMatch::Exact(h) => *h == host,
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostMatch::Exact(h) if h.contains(':') => format!("[{h}]"),
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Wildcard(s) => format!("*.{s}"),
        };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

impl std::str::FromStr for HostPattern {
    type Err = HostPatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for HostPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HostPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Splits `host[:port]`, `[v6]:port`, or a bare IPv6 address.
fn split_port<'a>(text: &'a str, entry: &str) -> Result<(&'a str, Option<u16>), HostPatternError> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| HostPatternError::BadPort { entry: entry.to_owned(), port: p.to_owned() })
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or_else(|| HostPatternError::BadHost(entry.to_owned()))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostPatternError::BadHost(entry.to_owned()));
        }
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(HostPatternError::BadHost(entry.to_owned())),
        };
    }
    if text.matches(':').count() > 1 {
        // A bare IPv6 address has no port.
        return if text.parse::<std::net::Ipv6Addr>().is_ok() {
            Ok((text, None))
        } else {
            Err(HostPatternError::BadHost(entry.to_owned()))
        };
    }
    match text.split_once(':') {
        Some((host, p)) => Ok((host, Some(parse_port(p)?))),
        None => Ok((text, None)),
    }
}

/// A DNS name: labels of letters, digits, `-` and `_`, none empty, at most 253 bytes.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_match_as_written() {
        let p = HostPattern::parse("API.OpenAI.com").unwrap();
        assert!(p.matches("api.openai.com", 443));
        assert!(p.matches("api.openai.com.", 80));
        assert!(!p.matches("openai.com", 443));

        let w = HostPattern::parse("*.anthropic.com:443").unwrap();
        assert!(w.matches("api.anthropic.com", 443));
        assert!(w.matches("a.b.anthropic.com", 443));
        assert!(!w.matches("anthropic.com", 443));
        assert!(!w.matches("evilanthropic.com", 443));
        assert!(!w.matches("api.anthropic.com", 80));

        let l = HostPattern::parse("localhost:11434").unwrap();
        assert!(l.is_loopback());
        assert_eq!(l.port(), Some(11434));
        assert!(HostPattern::parse("[::1]:8080").unwrap().is_loopback());
        assert!(HostPattern::parse("127.0.0.1").unwrap().is_loopback());
        assert!(!HostPattern::parse("10.0.0.1").unwrap().is_loopback());
        assert_eq!(HostPattern::parse("::1").unwrap().to_string(), "[::1]");
        assert!(HostPattern::parse("[0:0::1]:80").unwrap().matches("::1", 80));
        assert_eq!(HostPattern::parse("FE80:0::1").unwrap().to_string(), "[fe80::1]");
        assert_eq!(w.to_string(), "*.anthropic.com:443");
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        assert!(matches!(HostPattern::parse("https://api.openai.com"), Err(HostPatternError::Url(_))));
        assert!(matches!(HostPattern::parse("host:0"), Err(HostPatternError::BadPort { .. })));
        assert!(matches!(HostPattern::parse("host:99999"), Err(HostPatternError::BadPort { .. })));
        assert!(matches!(HostPattern::parse(":80"), Err(HostPatternError::Empty(_))));
        for bad in ["a..b", "*", "*.", "a.*.com", "ho st", "[nothost]:1", "exa$mple.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
