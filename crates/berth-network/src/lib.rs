//! Berth's networks.
//!
//! Two halves: the data plane (network namespaces, bridges and veth pairs over netlink, the
//! nftables table, the port proxy, the embedded DNS server) applies plain descriptions of what
//! must exist; the control plane (network records, IPAM, endpoints) decides what that is and
//! remembers it across daemon restarts.
//!
//! Data plane modules: [`netns`], [`link`], [`firewall`], [`proxy`], [`dns`]. They know nothing of
//! containers or the API: each takes a description and makes the kernel match it. The control
//! plane reaches them only through the [`DataPlane`] trait ([`dataplane`]), so it is unit-tested
//! over a recording fake without root; [`HostDataPlane`] is the real one.
//!
//! Refinements of the interface agreed in the networking contract (for the control plane):
//! - `link::host_addresses()` and `link::host_routes()` are async (netlink).
//! - `netns::run_in_async` is `run_in` for async callers; `netns::open` gives a handle.
//! - [`Proto`] lives at the crate root (`berth_network::Proto`), parses "tcp"/"udp".
//! - [`Error::PortAllocated`] carries Docker's "port is already allocated" text;
//!   `From<Error> for ApiError` maps `Invalid` to 400 and the rest to 500.
//! - `Firewall::apply`/`remove` fork `nft` (and `iptables -S`): call them from a blocking
//!   context (`spawn_blocking`) and serialize them per daemon; each apply is complete.
//! - `dns::serve` must be called within a tokio runtime; `dns::LISTEN` is 127.0.0.11:53.

pub mod dataplane;
pub mod dns;
pub mod error;
pub mod firewall;
pub mod link;
pub mod netns;
pub mod overlay;
pub mod proxy;
pub mod tasks;

pub use error::{Error, Result};
pub use ipnet::IpNet;

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// Docker's spelling: "tcp" or "udp".
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Proto {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(Error::Invalid(format!("invalid proto: {other}"))),
        }
    }
}

// Control plane: records, addresses and the network service (see `manager`).
pub mod control_error;
pub mod ipam;
pub mod manager;
pub mod store;

pub use control_error::ControlError;
pub use dataplane::{DataPlane, HostDataPlane};
pub use manager::{NetworkEvents, NetworkOptions, NetworkRequest, Networks, StartInfo};
pub use tasks::Tasks;
