//! The kernel side of one overlay network on one node, over rtnetlink: a network namespace
//! holding a bridge (`br0`, with the network's gateway address) and a VXLAN device
//! (`vxlan0`, learning off, ARP proxy on) on it; a veth per container endpoint; static FDB
//! and neighbour entries for the endpoints on other nodes (no multicast, no flooding).
//!
//! The VXLAN device is created from the host netns straight into the overlay's netns
//! (IFLA_NET_NS_FD): the kernel keeps its UDP socket in the netns that created it, so the
//! encapsulated traffic leaves through the host's routes while the overlay's L2 domain stays
//! in its own namespace (as Docker's `vx-*` devices).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rtnetlink::LinkUnspec;
use rtnetlink::LinkVxlan;
use rtnetlink::packet_route::neighbour::NeighbourFlags;

use crate::link::{self, BridgeConfig, EndpointConfig};
use crate::{Error, Result, netns};

/// The bridge inside an overlay's netns.
pub const BRIDGE: &str = "br0";
/// The VXLAN device inside an overlay's netns.
pub const VXLAN: &str = "vxlan0";
/// Docker's overlay MTU: 1500 less the VXLAN headers.
pub const MTU: u32 = 1450;

/// One overlay network as this node builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// Where its netns is bind-mounted.
    pub ns: PathBuf,
    pub vni: u32,
    /// The gateway address with the subnet's prefix (held by `br0`).
    pub gateway: IpNet,
    /// This node's address: the tunnels' source.
    pub local: Ipv4Addr,
    /// The UDP port of VXLAN (`--data-path-port`, 4789 by default).
    pub port: u16,
}

/// An endpoint on another node: its address on the overlay and its node's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    pub ip: Ipv4Addr,
    pub node: Ipv4Addr,
}

/// Runs an async netlink job on a thread inside the netns at `ns`.
async fn in_ns<T, F, Fut>(ns: &Path, job: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    netns::run_in_async(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start a runtime inside the netns", e))?
            .block_on(job())
    })
    .await?
}

/// Makes the overlay's netns, bridge and VXLAN device exist and be up. Idempotent.
pub async fn ensure(cfg: &OverlayConfig) -> Result<()> {
    if !cfg.ns.exists() {
        netns::create(&cfg.ns)?;
    }
    let bridge = BridgeConfig {
        device: BRIDGE.into(),
        addresses: vec![cfg.gateway],
        mtu: Some(MTU),
    };
    in_ns(&cfg.ns, move || async move {
        link::ensure_bridge(&bridge).await
    })
    .await?;
    let has_vxlan = in_ns(&cfg.ns, || async {
        let h = link::connect()?;
        Ok(link::link_index(&h, VXLAN).await?.is_some())
    })
    .await?;
    if !has_vxlan {
        let ns = netns::open(&cfg.ns)?;
        let h = link::connect()?;
        let vxlan = LinkVxlan::new(VXLAN, cfg.vni)
            .port(cfg.port)
            .local(cfg.local)
            .learning(false)
            .proxy(true)
            .mtu(MTU)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        h.link().add(vxlan).execute().await.map_err(|e| {
            Error::netlink(
                format!(
                    "cannot create VXLAN device (id {}, port {}) for {}",
                    cfg.vni,
                    cfg.port,
                    cfg.ns.display()
                ),
                e,
            )
        })?;
    }
    in_ns(&cfg.ns, || async {
        let h = link::connect()?;
        let br = link::link_index(&h, BRIDGE)
            .await?
            .ok_or_else(|| Error::Invalid("overlay bridge vanished".into()))?;
        let vx = link::link_index(&h, VXLAN)
            .await?
            .ok_or_else(|| Error::Invalid("VXLAN device vanished".into()))?;
        h.link()
            .set(LinkUnspec::new_with_index(vx).controller(br).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("cannot put the VXLAN device on the bridge", e))
    })
    .await
}

/// Connects a container to the overlay: a veth pair from the overlay's bridge into the
/// container's netns (`ep.bridge` is ignored: it is always [`BRIDGE`]).
pub async fn attach(ns: &Path, mut ep: EndpointConfig) -> Result<()> {
    ep.bridge = BRIDGE.into();
    ep.mtu = Some(MTU);
    in_ns(ns, move || async move {
        // Made before this daemon restarted: the endpoint is there already.
        let h = link::connect()?;
        if link::link_index(&h, &ep.host_if).await?.is_some() {
            return Ok(());
        }
        link::attach(&ep).await
    })
    .await
}

/// Disconnects a container from the overlay (`network disconnect`): deletes its veth pair
/// by the overlay side's name. Ok if missing.
pub async fn detach(ns: &Path, host_if: &str) -> Result<()> {
    let host_if = host_if.to_string();
    in_ns(ns, move || async move { link::detach(&host_if).await }).await
}

/// Adds (or replaces) the FDB and neighbour entries that send `peer`'s traffic to its node.
pub async fn add_peer(ns: &Path, peer: Peer) -> Result<()> {
    in_ns(ns, move || async move {
        let h = link::connect()?;
        let vx = link::link_index(&h, VXLAN)
            .await?
            .ok_or_else(|| Error::Invalid("no VXLAN device".into()))?;
        let mac = super::mac_bytes(IpAddr::V4(peer.ip));
        h.neighbours()
            .add(vx, IpAddr::V4(peer.ip))
            .link_local_address(&mac)
            .replace()
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("cannot add neighbour {}", peer.ip), e))?;
        let mut fdb = h
            .neighbours()
            .add_bridge(vx, &mac)
            .destination(IpAddr::V4(peer.node))
            .replace();
        fdb.message_mut().header.flags = NeighbourFlags::Own;
        fdb.execute().await.map_err(|e| {
            Error::netlink(
                format!("cannot add FDB entry {} via {}", peer.ip, peer.node),
                e,
            )
        })
    })
    .await
}

/// The IPv6 neighbour entry of an endpoint on another node (dual-stack overlays): its MAC
/// is its IPv4 address's ([`super::mac_bytes`]), whose FDB entry [`add_peer`] made; the
/// VXLAN device's proxy answers neighbour solicitations from these entries.
pub async fn add_peer6(ns: &Path, ip: std::net::Ipv6Addr, mac_of: Ipv4Addr) -> Result<()> {
    in_ns(ns, move || async move {
        let h = link::connect()?;
        let vx = link::link_index(&h, VXLAN)
            .await?
            .ok_or_else(|| Error::Invalid("no VXLAN device".into()))?;
        let mac = super::mac_bytes(IpAddr::V4(mac_of));
        h.neighbours()
            .add(vx, IpAddr::V6(ip))
            .link_local_address(&mac)
            .replace()
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("cannot add neighbour {ip}"), e))
    })
    .await
}

/// Removes an IPv6 neighbour entry made by [`add_peer6`]. Missing is fine.
pub async fn remove_peer6(ns: &Path, ip: std::net::Ipv6Addr, mac_of: Ipv4Addr) -> Result<()> {
    in_ns(ns, move || async move {
        let h = link::connect()?;
        let Some(vx) = link::link_index(&h, VXLAN).await? else {
            return Ok(());
        };
        let mac = super::mac_bytes(IpAddr::V4(mac_of));
        let mut neigh = h
            .neighbours()
            .add(vx, IpAddr::V6(ip))
            .link_local_address(&mac);
        let msg = neigh.message_mut().clone();
        let _ = h.neighbours().del(msg).execute().await;
        Ok(())
    })
    .await
}

/// Removes `peer`'s entries (gone or moved). Missing entries are fine.
pub async fn remove_peer(ns: &Path, peer: Peer) -> Result<()> {
    in_ns(ns, move || async move {
        let h = link::connect()?;
        let Some(vx) = link::link_index(&h, VXLAN).await? else {
            return Ok(());
        };
        let mac = super::mac_bytes(IpAddr::V4(peer.ip));
        let mut neigh = h
            .neighbours()
            .add(vx, IpAddr::V4(peer.ip))
            .link_local_address(&mac);
        let msg = neigh.message_mut().clone();
        let _ = h.neighbours().del(msg).execute().await;
        let mut fdb = h
            .neighbours()
            .add_bridge(vx, &mac)
            .destination(IpAddr::V4(peer.node));
        fdb.message_mut().header.flags = NeighbourFlags::Own;
        let msg = fdb.message_mut().clone();
        let _ = h.neighbours().del(msg).execute().await;
        Ok(())
    })
    .await
}

/// Removes the overlay's netns: its bridge, VXLAN device and the overlay ends of its veths
/// go with it.
pub fn remove(ns: &Path) -> Result<()> {
    netns::remove(ns)
}

/// Applies an nftables ruleset (`nft -f -` text, one transaction) inside a netns.
pub async fn nft_in(ns: &Path, ruleset: String) -> Result<()> {
    netns::run_in_async(ns, move || nft_run(&ruleset)).await?
}

/// The routing mesh's way in on this node: the ingress netns's bridge takes this node's
/// ingress address (and the MAC derived from it, so other nodes' FDB entries reach it), and
/// a veth pair links the host (`host_if`, `host_addr`) to the ingress netns (`mesh0`,
/// `ns_addr`). Idempotent.
pub async fn mesh_link(
    ns: &Path,
    node_addr: IpNet,
    host_if: &str,
    host_addr: IpNet,
    ns_addr: IpNet,
) -> Result<()> {
    in_ns(ns, move || async move {
        let h = link::connect()?;
        let br = link::link_index(&h, BRIDGE)
            .await?
            .ok_or_else(|| Error::Invalid("no ingress bridge".into()))?;
        h.link()
            .set(
                LinkUnspec::new_with_index(br)
                    .address(super::mac_bytes(node_addr.addr()).to_vec())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| Error::netlink("cannot set the ingress bridge's MAC", e))?;
        match link::add_address(&h, br, node_addr).await {
            Ok(()) => Ok(()),
            Err(e) if link::errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(Error::netlink(
                format!("cannot add {node_addr} to the ingress bridge"),
                e,
            )),
        }
    })
    .await?;
    let h = link::connect()?;
    if link::link_index(&h, host_if).await?.is_none() {
        let nsf = netns::open(ns)?;
        let peer = LinkUnspec::new_with_name("mesh0").setns_by_fd(nsf.as_raw_fd());
        let veth = rtnetlink::LinkMessageBuilder::<rtnetlink::LinkVeth>::new_with_info_kind(
            rtnetlink::packet_route::link::InfoKind::Veth,
        )
        .name(host_if.to_string())
        .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
            rtnetlink::packet_route::link::InfoVeth::Peer(peer.build()),
        ));
        h.link()
            .add(veth.build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("cannot create the mesh veth {host_if}"), e))?;
        let idx = link::link_index(&h, host_if)
            .await?
            .ok_or_else(|| Error::Invalid(format!("{host_if} vanished")))?;
        link::add_address(&h, idx, host_addr)
            .await
            .map_err(|e| Error::netlink(format!("cannot add {host_addr} to {host_if}"), e))?;
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("cannot bring {host_if} up"), e))?;
        // Connections to a published port on 127.0.0.1 leave through this veth after DNAT.
        let knob = format!("/proc/sys/net/ipv4/conf/{host_if}/route_localnet");
        std::fs::write(&knob, "1").map_err(|e| Error::io(format!("cannot write {knob}"), e))?;
        in_ns(ns, move || async move {
            let h = link::connect()?;
            let idx = link::link_index(&h, "mesh0")
                .await?
                .ok_or_else(|| Error::Invalid("mesh0 vanished".into()))?;
            link::add_address(&h, idx, ns_addr)
                .await
                .map_err(|e| Error::netlink(format!("cannot add {ns_addr} to mesh0"), e))?;
            h.link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await
                .map_err(|e| Error::netlink("cannot bring mesh0 up", e))
        })
        .await?;
    }
    Ok(())
}

/// Deletes a host link (the mesh veth); fine when it is gone.
pub async fn remove_link(name: &str) -> Result<()> {
    link::delete_link(name).await
}

/// Runs `nft -f -` in the host netns (the mesh's host-side table).
pub async fn nft_host(ruleset: String) -> Result<()> {
    tokio::task::spawn_blocking(move || nft_run(&ruleset))
        .await
        .map_err(|e| Error::Invalid(format!("nft task failed: {e}")))?
}

fn nft_run(ruleset: &str) -> Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("cannot run nft", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .map_err(|e| Error::io("cannot write to nft", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("cannot wait for nft", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "nft failed: {}\n{ruleset}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Takes the default routes out of a container's netns: a task whose overlays are all
/// `--internal` keeps its overlay subnets and embedded DNS, and reaches nothing beyond them.
pub async fn drop_default_routes(netns: &Path) -> Result<()> {
    netns::run_in_async(netns, || {
        for family in ["-4", "-6"] {
            // Fails once no default route is left: that is the goal.
            while std::process::Command::new("ip")
                .args([family, "route", "del", "default"])
                .stderr(std::process::Stdio::null())
                .status()
                .map_err(|e| Error::io("cannot run ip", e))?
                .success()
            {}
        }
        Ok(())
    })
    .await?
}

/// Runs `ip ARGS` in the calling thread's netns; its stderr in the error.
fn ip(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::io("cannot run ip", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The ingress netns's way back to clients: a default route to the host through the mesh
/// veth, so connections from the host keep their client address here (no masquerade on
/// the host) and replies still return through the host's conntrack. Idempotent.
pub async fn mesh_default_route(ns: &Path, host_addr: Ipv4Addr) -> Result<()> {
    netns::run_in_async(ns, move || {
        ip(&[
            "route",
            "replace",
            "default",
            "via",
            &host_addr.to_string(),
            "dev",
            "mesh0",
        ])
    })
    .await?
}

/// The routing table a task container's replies from its ingress address use.
pub const REPLY_TABLE: &str = "4789";

/// Routes what a task container sends from its address on the ingress network (`addr` on
/// `ifname`) back into the ingress network, to this node's ingress netns (`via`), instead
/// of out of its default route (`docker_gwbridge`): its replies to connections the routing
/// mesh brought without SNAT (the client's own address) then return through the netns that
/// DNATed them. Source-based policy routing: nothing else the task sends uses that
/// address. Idempotent.
pub async fn reply_route(netns: &Path, ifname: String, addr: IpNet, via: Ipv4Addr) -> Result<()> {
    netns::run_in_async(netns, move || {
        let from = addr.addr().to_string();
        // Left by an earlier pass of a daemon that restarted: one rule only.
        while ip(&["rule", "del", "from", &from, "table", REPLY_TABLE]).is_ok() {}
        ip(&[
            "route",
            "replace",
            &addr.trunc().to_string(),
            "dev",
            &ifname,
            "table",
            REPLY_TABLE,
        ])?;
        ip(&[
            "route",
            "replace",
            "default",
            "via",
            &via.to_string(),
            "dev",
            &ifname,
            "table",
            REPLY_TABLE,
        ])?;
        ip(&[
            "rule",
            "add",
            "from",
            &from,
            "table",
            REPLY_TABLE,
            "priority",
            "100",
        ])
    })
    .await?
}
