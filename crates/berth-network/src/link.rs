//! Bridges and veth pairs over netlink (rtnetlink).

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::Result;

/// A host bridge device and the addresses it holds (the gateways of its subnets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub device: String,
    pub addresses: Vec<IpNet>,
    pub mtu: Option<u32>,
}

/// Makes the bridge exist, hold `addresses` (others it has are left alone) and be up; turns
/// on IP forwarding (IPv6 forwarding too when it has an IPv6 address). Idempotent.
pub async fn ensure_bridge(cfg: &BridgeConfig) -> Result<()> {
    let _ = cfg;
    unimplemented!()
}

/// Deletes the bridge device. Ok if it does not exist.
pub async fn remove_bridge(device: &str) -> Result<()> {
    let _ = device;
    unimplemented!()
}

/// One container interface on a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Host bridge device.
    pub bridge: String,
    /// Host side veth name, e.g. "veth" + 7 hex chars (at most 15 bytes).
    pub host_if: String,
    /// Container netns (from [`crate::netns::create`]).
    pub netns: PathBuf,
    /// Name inside the container: "eth0", "eth1", ...
    pub container_if: String,
    pub mac: [u8; 6],
    /// IPv4 and/or IPv6 addresses with their prefix length.
    pub addresses: Vec<IpNet>,
    /// Default routes to add (only the container's primary endpoint has them).
    pub gateways: Vec<IpAddr>,
    pub mtu: Option<u32>,
}

/// Creates the veth pair: host side on the bridge and up; peer moved into the netns, renamed,
/// given its MAC, addresses and default routes, and up. On failure nothing is left behind.
pub async fn attach(ep: &EndpointConfig) -> Result<()> {
    let _ = ep;
    unimplemented!()
}

/// Deletes the veth pair by its host side name (the peer goes with it). Ok if missing.
pub async fn detach(host_if: &str) -> Result<()> {
    let _ = host_if;
    unimplemented!()
}

/// Addresses (with prefix) configured on the host's interfaces, for choosing a subnet that
/// does not collide.
pub async fn host_addresses() -> Result<Vec<IpNet>> {
    unimplemented!()
}

/// Destinations of the host's routes (main table, v4 and v6), excluding default routes.
pub async fn host_routes() -> Result<Vec<IpNet>> {
    unimplemented!()
}
