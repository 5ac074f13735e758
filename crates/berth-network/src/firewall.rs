//! Berth's nftables table: NAT, forwarding and isolation of its bridges, DNAT of published
//! ports. The table is rewritten as a whole, in one `nft` transaction, from a complete
//! [`Ruleset`] each time: the description is the truth, and what is not in it goes away.
//! Tables and chains that are not ours are never touched; the only foreign thing written is
//! one iptables accept rule per bridge when iptables' FORWARD policy is DROP (Docker installed),
//! each marked with a comment naming our table.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{Proto, Result};

/// Everything the firewall must do, for all of the daemon's bridges and published ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortForward>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub device: String,
    pub subnets: Vec<IpNet>,
    /// No traffic in or out of the bridge except between its own members.
    pub internal: bool,
    /// SNAT traffic leaving through other interfaces (com.docker.network.bridge.enable_ip_masquerade).
    pub masquerade: bool,
    /// Traffic between containers on this bridge allowed (com.docker.network.bridge.enable_icc).
    pub icc: bool,
}

/// A published port: DNAT of `host_ip:host_port` to `container_ip:container_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    pub proto: Proto,
    /// None = all host addresses.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
    /// The bridge the container is reached through.
    pub bridge: String,
}

/// The daemon's firewall table.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
}

impl Firewall {
    /// `table`: "berth" for the default data root, else "berth_" + 8 hex chars of a hash of the
    /// data root, so concurrent daemons never clobber each other's rules.
    pub fn new(table: &str) -> Self {
        Firewall {
            table: table.to_string(),
        }
    }

    /// The nftables table name (family `inet`, plus `ip`/`ip6` nat tables of the same name).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Replaces the whole table with the rules `rs` asks for, atomically.
    pub fn apply(&self, rs: &Ruleset) -> Result<()> {
        let _ = rs;
        unimplemented!()
    }

    /// Deletes our table and our iptables accept rules. Ok if missing.
    pub fn remove(&self) -> Result<()> {
        unimplemented!()
    }
}
