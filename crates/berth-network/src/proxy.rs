//! The userland port proxy: serves published ports where NAT cannot (127.0.0.1, the host's own
//! connections), one tokio task per port inside the daemon, no process per port. Binding the
//! host port also reserves it, so a taken port fails like Docker's.

use std::net::{IpAddr, SocketAddr};

use crate::{Proto, Result};

/// A running proxy for one published port; dropping it (or [`PortProxy::close`]) stops it.
#[derive(Debug)]
pub struct PortProxy {
    host_port: u16,
}

impl PortProxy {
    /// The bound host port (the one picked when 0 was asked).
    pub fn host_port(&self) -> u16 {
        self.host_port
    }

    /// Stops the proxy and frees the port.
    pub fn close(self) {}
}

/// Binds `host_ip:host_port` (None = all addresses, 0 = pick a free port) and forwards to
/// `target`. TCP: each connection is copied both ways. UDP: per-client flows with an idle
/// timeout. A taken port gives "Bind for 0.0.0.0:8080 failed: port is already allocated".
/// Needs a tokio runtime.
pub async fn publish(
    host_ip: Option<IpAddr>,
    host_port: u16,
    proto: Proto,
    target: SocketAddr,
) -> Result<PortProxy> {
    let _ = (host_ip, host_port, proto, target);
    unimplemented!()
}
