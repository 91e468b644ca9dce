//! Integration tests of the egress proxy and the forward, over real loopback sockets.
//!
//! Every wait is bounded: sockets carry read and write timeouts, servers stop after a
//! deadline, polls give up.

mod forward;
mod hostile;
mod proxy;
mod support;
