//! Name resolution, behind a trait so tests can map names to loopback addresses.

use std::io;
use std::net::{IpAddr, ToSocketAddrs};

/// Resolves a host name to its addresses. The proxy asks once per request and connects
/// only to addresses from that answer, so a name cannot change between the check and the
/// connection (no DNS rebinding).
pub trait Resolve: Send + Sync {
    /// The addresses of `name` (a DNS name, lower case, never an address literal), in the
    /// order to try them.
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>>;
}

/// The system's resolver (`getaddrinfo`, through the standard library), as the host sees
/// it. Its waits are the resolver's own (`/etc/resolv.conf`'s timeout and attempts).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        Ok((name, 0).to_socket_addrs()?.map(|addr| addr.ip()).collect())
    }
}
