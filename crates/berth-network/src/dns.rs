//! The embedded DNS server of user-defined networks: 127.0.0.11:53 (UDP and TCP) inside a
//! container's netns, answering names the [`Resolver`] knows and forwarding the rest to the
//! host's resolvers from the host netns.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::Result;

/// Names within a container's networks.
pub trait Resolver: Send + Sync + 'static {
    /// Addresses for `name` (A and AAAA); empty = unknown here, forward it.
    fn lookup(&self, name: &str) -> Vec<IpAddr>;
    /// The name for a PTR query, if known.
    fn reverse(&self, ip: IpAddr) -> Option<String> {
        let _ = ip;
        None
    }
}

/// A running DNS server; dropping it stops it and closes its sockets.
#[derive(Debug)]
pub struct DnsServer {
    _private: (),
}

/// Binds 127.0.0.11:53 UDP and TCP inside the netns at `netns` (sockets made by a thread in
/// that netns; they stay in it) and serves them with tokio tasks of the current runtime.
/// Unknown names are forwarded to `upstreams` from the host netns; with none, SERVFAIL.
pub fn serve(
    netns: &Path,
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
) -> Result<DnsServer> {
    let _ = (netns, resolver, upstreams);
    unimplemented!()
}
