//! The seam between the control plane and the kernel. [`DataPlane`] is everything
//! [`crate::Networks`] asks of the host: bridges, veth endpoints, network namespaces, host
//! routes and addresses, the nftables ruleset, the port proxies and embedded DNS servers it
//! runs in the daemon, and the host's resolvers. [`HostDataPlane`] is the real one over
//! [`crate::link`], [`crate::netns`], [`crate::firewall`], [`crate::proxy`] and [`crate::dns`];
//! unit tests of the control plane pass a recording fake instead, and run without root.

use std::any::Any;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use ipnet::IpNet;

use crate::dns::{self, Resolver};
use crate::firewall::{Firewall, Ruleset};
use crate::link::{self, BridgeConfig, EndpointConfig};
use crate::tasks::Tasks;
use crate::{Error, Proto, Result, netns, proxy};

/// Something the data plane runs in the daemon for a container (a port proxy, a DNS server);
/// dropping it stops it.
pub struct Served {
    _held: Box<dyn Any + Send + Sync>,
}

impl Served {
    pub fn new(what: impl Any + Send + Sync) -> Served {
        Served {
            _held: Box::new(what),
        }
    }
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Served")
    }
}

/// A published port being served: the host port bound (the one picked when 0 was asked).
#[derive(Debug)]
pub struct PublishedPort {
    pub host_port: u16,
    pub served: Served,
}

/// What the control plane asks of the host. Implementations apply descriptions and know
/// nothing of containers or the API.
pub trait DataPlane: Send + Sync + 'static {
    /// Makes the bridge exist with these addresses, up (idempotent).
    fn ensure_bridge<'a>(&'a self, cfg: &'a BridgeConfig) -> BoxFuture<'a, Result<()>>;
    /// Deletes a bridge device; Ok if missing.
    fn remove_bridge<'a>(&'a self, device: &'a str) -> BoxFuture<'a, Result<()>>;
    /// The addresses of a device; `None` when it does not exist.
    fn device_addresses<'a>(&'a self, device: &'a str)
    -> BoxFuture<'a, Result<Option<Vec<IpNet>>>>;
    /// The host's route destinations and interface addresses (what a new subnet must not
    /// overlap); empty when they cannot be read.
    fn host_networks(&self) -> BoxFuture<'_, Vec<IpNet>>;
    /// Creates a network namespace kept at `path`.
    fn create_netns<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<()>>;
    /// Removes the namespace at `path`; Ok if missing.
    fn remove_netns<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<()>>;
    /// Creates a veth endpoint: host side on its bridge, peer configured in the netns. On
    /// failure nothing is left.
    fn attach<'a>(&'a self, ep: &'a EndpointConfig) -> BoxFuture<'a, Result<()>>;
    /// Takes a veth off its bridge (fast); `detach` deletes it later. Ok if missing.
    fn leave_bridge<'a>(&'a self, host_if: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Deletes a veth pair by its host side; Ok if missing.
    fn detach<'a>(&'a self, host_if: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Binds `host_ip:host_port` (None: all addresses; 0: any port) and forwards to `target`,
    /// on tasks of `tasks`. A taken port is [`Error::PortAllocated`].
    fn publish<'a>(
        &'a self,
        tasks: &'a Tasks,
        host_ip: Option<IpAddr>,
        host_port: u16,
        proto: Proto,
        target: SocketAddr,
    ) -> BoxFuture<'a, Result<PublishedPort>>;
    /// Serves DNS on 127.0.0.11:53 inside the netns at `netns`, on tasks of `tasks`.
    fn serve_dns(
        &self,
        tasks: &Tasks,
        netns: &Path,
        resolver: Arc<dyn Resolver>,
        upstreams: Vec<SocketAddr>,
    ) -> Result<Served>;
    /// Where the embedded DNS server forwards names it does not know.
    fn host_resolvers(&self) -> Vec<SocketAddr>;
    /// Replaces the firewall rules with `rs` as a whole (blocking: forks `nft`).
    fn apply_firewall(&self, rs: &Ruleset) -> Result<()>;
}

/// The kernel: netlink, namespaces, nftables, sockets.
#[derive(Debug)]
pub struct HostDataPlane {
    /// `None` with `--iptables=false`: rules are left alone.
    firewall: Option<Firewall>,
    /// Where the host's resolvers are listed.
    resolv_conf: PathBuf,
}

impl HostDataPlane {
    pub fn new(firewall_table: Option<&str>) -> HostDataPlane {
        HostDataPlane {
            firewall: firewall_table.map(Firewall::new),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// Runs blocking namespace work off the async threads.
async fn blocking(f: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("netns task failed", std::io::Error::other(e)))?
}

impl DataPlane for HostDataPlane {
    fn ensure_bridge<'a>(&'a self, cfg: &'a BridgeConfig) -> BoxFuture<'a, Result<()>> {
        Box::pin(link::ensure_bridge(cfg))
    }
    fn remove_bridge<'a>(&'a self, device: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(link::remove_bridge(device))
    }
    fn device_addresses<'a>(
        &'a self,
        device: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<IpNet>>>> {
        Box::pin(link::device_addresses(device))
    }
    fn host_networks(&self) -> BoxFuture<'_, Vec<IpNet>> {
        Box::pin(async {
            let mut v = link::host_routes().await.unwrap_or_default();
            v.extend(link::host_addresses().await.unwrap_or_default());
            v
        })
    }
    fn create_netns<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<()>> {
        let path = path.to_path_buf();
        Box::pin(blocking(move || netns::create(&path)))
    }
    fn remove_netns<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<()>> {
        let path = path.to_path_buf();
        Box::pin(blocking(move || netns::remove(&path)))
    }
    fn attach<'a>(&'a self, ep: &'a EndpointConfig) -> BoxFuture<'a, Result<()>> {
        Box::pin(link::attach(ep))
    }
    fn leave_bridge<'a>(&'a self, host_if: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(link::leave_bridge(host_if))
    }
    fn detach<'a>(&'a self, host_if: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(link::detach(host_if))
    }
    fn publish<'a>(
        &'a self,
        tasks: &'a Tasks,
        host_ip: Option<IpAddr>,
        host_port: u16,
        proto: Proto,
        target: SocketAddr,
    ) -> BoxFuture<'a, Result<PublishedPort>> {
        Box::pin(async move {
            let px = proxy::publish_on(tasks, host_ip, host_port, proto, target).await?;
            Ok(PublishedPort {
                host_port: px.host_port(),
                served: Served::new(px),
            })
        })
    }
    fn serve_dns(
        &self,
        tasks: &Tasks,
        netns: &Path,
        resolver: Arc<dyn Resolver>,
        upstreams: Vec<SocketAddr>,
    ) -> Result<Served> {
        dns::serve_on(tasks, netns, resolver, upstreams).map(Served::new)
    }
    fn host_resolvers(&self) -> Vec<SocketAddr> {
        let text = std::fs::read_to_string(&self.resolv_conf).unwrap_or_default();
        resolvers_of(&text)
    }
    fn apply_firewall(&self, rs: &Ruleset) -> Result<()> {
        match &self.firewall {
            Some(fw) => fw.apply(rs),
            None => Ok(()),
        }
    }
}

/// The `nameserver` lines of a resolv.conf (read from the host netns, so 127.0.0.53-style
/// local resolvers work); Google's public servers when there are none, as Docker.
pub fn resolvers_of(text: &str) -> Vec<SocketAddr> {
    let v: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if !v.is_empty() {
        return v;
    }
    vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 53),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)), 53),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nnameserver 127.0.0.53\nsearch lan\nnameserver ::1\nnameserver x\n";
        assert_eq!(
            resolvers_of(text),
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(resolvers_of("").len(), 2);
    }

    #[tokio::test]
    async fn served_ports_run_on_the_given_tasks() {
        let tasks = Tasks::new(tokio::runtime::Handle::current());
        let dp = HostDataPlane::new(None);
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let p = dp
            .publish(
                &tasks,
                Some(localhost),
                0,
                Proto::Tcp,
                "127.0.0.1:9".parse().unwrap(),
            )
            .await
            .unwrap();
        assert_ne!(p.host_port, 0);
        assert_eq!(tasks.len(), 1);
        // Dropping it stops the proxy; its task ends and the tracker sees it.
        drop(p.served);
        tokio::time::timeout(std::time::Duration::from_secs(10), tasks.close())
            .await
            .unwrap();
        assert!(tasks.is_empty());
    }
}
