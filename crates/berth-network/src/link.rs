//! Bridges and veth pairs over netlink (rtnetlink).
//!
//! Netlink sockets belong to the netns of the thread that opened them, so every function opens
//! its own connection: host-side work on the caller's (host) netns, container-side work on a
//! thread that entered the container's netns ([`crate::netns::run_in`]) with a small
//! current-thread runtime of its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage, RouteType};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use crate::{Error, Result, netns};

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
    check_ifname(&cfg.device)?;
    let handle = connect()?;
    let index = match link_index(&handle, &cfg.device).await? {
        Some(i) => i,
        None => {
            // An explicit MAC pins it: otherwise the bridge takes the lowest MAC of its ports
            // and changes it as containers come and go, leaving stale gateway entries in the
            // ARP caches of the containers already there.
            let mut b = LinkBridge::new(&cfg.device).address(bridge_mac(&cfg.device).to_vec());
            if let Some(mtu) = cfg.mtu {
                b = b.mtu(mtu);
            }
            match handle.link().add(b.build()).execute().await {
                // Another caller made it meanwhile: fine, it is the same bridge.
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(Error::netlink(
                        format!("cannot create bridge {}", cfg.device),
                        e,
                    ));
                }
            }
            link_index(&handle, &cfg.device).await?.ok_or_else(|| {
                Error::Invalid(format!("bridge {} vanished after creation", cfg.device))
            })?
        }
    };
    let have = addresses_of(&handle, Some(index)).await?;
    // One IPv4 subnet per bridge, as dockerd's bridge driver: an IPv4 address the bridge
    // already has (left by an earlier daemon, or set by the operator) is replaced, never
    // joined by a second subnet. dockerd removes the address in the wanted subnet, else the
    // first one, and adds the wanted address.
    let want_v4: Vec<&IpNet> = cfg
        .addresses
        .iter()
        .filter(|a| matches!(a, IpNet::V4(_)))
        .collect();
    if let [want] = want_v4[..]
        && !have.contains(want)
        && let Some(old) = select_ipv4(&have, want)
    {
        del_address(&handle, index, old).await.map_err(|e| {
            Error::netlink(format!("cannot remove {old} from bridge {}", cfg.device), e)
        })?;
    }
    for addr in &cfg.addresses {
        if have.contains(addr) {
            continue;
        }
        add_address(&handle, index, *addr)
            .await
            .map_err(|e| Error::netlink(format!("cannot add {addr} to {}", cfg.device), e))?;
    }
    let mut up = LinkUnspec::new_with_index(index).up();
    if let Some(mtu) = cfg.mtu {
        up = up.mtu(mtu);
    }
    handle
        .link()
        .set(up.build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("cannot bring bridge {} up", cfg.device), e))?;
    enable_forwarding("/proc/sys/net/ipv4/ip_forward")?;
    if cfg.addresses.iter().any(|a| matches!(a, IpNet::V6(_))) {
        enable_forwarding("/proc/sys/net/ipv6/conf/all/forwarding")?;
    }
    Ok(())
}

/// The IPv4 address of `have` that a wanted bridge address replaces: the one inside the
/// wanted subnet, else the first (dockerd's `selectIPv4Address`).
fn select_ipv4(have: &[IpNet], want: &IpNet) -> Option<IpNet> {
    let v4: Vec<&IpNet> = have.iter().filter(|a| matches!(a, IpNet::V4(_))).collect();
    v4.iter()
        .find(|a| want.trunc().contains(&a.addr()))
        .or_else(|| v4.first())
        .map(|a| **a)
}

/// The addresses of an existing device; `None` when there is no such device.
pub async fn device_addresses(device: &str) -> Result<Option<Vec<IpNet>>> {
    let handle = connect()?;
    let Some(index) = link_index(&handle, device).await? else {
        return Ok(None);
    };
    addresses_of(&handle, Some(index)).await.map(Some)
}

/// Deletes the bridge device. Ok if it does not exist.
pub async fn remove_bridge(device: &str) -> Result<()> {
    delete_link(device).await
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

/// Creates the veth pair: host side on the bridge and up; peer created directly inside the
/// netns under its final name and MAC, then given its addresses and default routes, and up.
/// On failure nothing is left behind.
pub async fn attach(ep: &EndpointConfig) -> Result<()> {
    check_ifname(&ep.host_if)?;
    check_ifname(&ep.container_if)?;
    // Checked before anything is made: a missing netns is the caller's mistake.
    let ns = netns::open(&ep.netns)?;
    let handle = connect()?;
    let bridge = link_index(&handle, &ep.bridge)
        .await?
        .ok_or_else(|| Error::Invalid(format!("bridge {} does not exist", ep.bridge)))?;
    // The peer is born in the container's netns (IFLA_NET_NS_FD on the peer): no temporary
    // name in the host netns, no move, no rename.
    let mut peer = LinkUnspec::new_with_name(&ep.container_if)
        .address(ep.mac.to_vec())
        .setns_by_fd(ns.as_raw_fd());
    let mut veth =
        LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth).name(ep.host_if.clone());
    if let Some(mtu) = ep.mtu {
        peer = peer.mtu(mtu);
        veth = veth.mtu(mtu);
    }
    let veth = veth.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
    handle
        .link()
        .add(veth.build())
        .execute()
        .await
        .map_err(|e| {
            Error::netlink(
                format!(
                    "cannot create veth pair {} / {} in netns {}",
                    ep.host_if,
                    ep.container_if,
                    ep.netns.display()
                ),
                e,
            )
        })?;
    let done = attach_created(&handle, ep, bridge).await;
    if done.is_err() {
        // Deleting the host side deletes the peer too, wherever it is.
        let _ = delete_link(&ep.host_if).await;
    }
    done
}

async fn attach_created(handle: &Handle, ep: &EndpointConfig, bridge: u32) -> Result<()> {
    let host = link_index(handle, &ep.host_if)
        .await?
        .ok_or_else(|| Error::Invalid(format!("veth {} vanished after creation", ep.host_if)))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(host)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|e| {
            Error::netlink(
                format!("cannot put {} on bridge {}", ep.host_if, ep.bridge),
                e,
            )
        })?;
    // Hairpin lets a container reach its own published port through the host's address: the
    // DNATed packet leaves by the bridge port it came in on.
    handle
        .link()
        .set_port(LinkBridgePort::new(host).hairpin(true).build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("cannot set hairpin mode on {}", ep.host_if), e))?;
    let inside = ep.clone();
    netns::run_in_async(&ep.netns, move || configure_inside(&inside)).await?
}

/// The container side, on a thread inside the container's netns.
fn configure_inside(ep: &EndpointConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::io("cannot start a runtime inside the netns", e))?;
    rt.block_on(async {
        let handle = connect()?;
        let index = link_index(&handle, &ep.container_if)
            .await?
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} not found in {}",
                    ep.container_if,
                    ep.netns.display()
                ))
            })?;
        for addr in &ep.addresses {
            add_address(&handle, index, *addr).await.map_err(|e| {
                Error::netlink(format!("cannot add {addr} to {}", ep.container_if), e)
            })?;
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("cannot bring {} up", ep.container_if), e))?;
        for gw in &ep.gateways {
            let route = match gw {
                IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(*v4)
                    .output_interface(index)
                    .build(),
                IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                    .gateway(*v6)
                    .output_interface(index)
                    .build(),
            };
            handle
                .route()
                .add(route)
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("cannot add default route via {gw}"), e))?;
        }
        Ok(())
    })
}

/// Deletes the veth pair by its host side name (the peer goes with it). Ok if missing.
pub async fn detach(host_if: &str) -> Result<()> {
    delete_link(host_if).await
}

/// Takes a container's veth off its bridge (about a millisecond); [`detach`] can then delete
/// the pair later. Deleting a link waits out a kernel grace period (15–40 ms measured), which
/// the container's exit need not wait for once no traffic can reach the bridge through it.
/// Ok if missing.
pub async fn leave_bridge(host_if: &str) -> Result<()> {
    let handle = connect()?;
    let Some(index) = link_index(&handle, host_if).await? else {
        return Ok(());
    };
    match handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .nocontroller()
                .down()
                .build(),
        )
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(Error::netlink(
            format!("cannot take {host_if} off its bridge"),
            e,
        )),
    }
}

/// Addresses (with prefix) configured on the host's interfaces, for choosing a subnet that
/// does not collide.
pub async fn host_addresses() -> Result<Vec<IpNet>> {
    let handle = connect()?;
    addresses_of(&handle, None).await
}

/// Destinations of the host's routes (main table, v4 and v6), excluding default routes.
pub async fn host_routes() -> Result<Vec<IpNet>> {
    let handle = connect()?;
    let mut out = Vec::new();
    for query in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let mut routes = handle.route().get(query).execute();
        while let Some(r) = routes
            .try_next()
            .await
            .map_err(|e| Error::netlink("cannot list routes", e))?
        {
            if let Some(net) = route_destination(&r) {
                out.push(net);
            }
        }
    }
    Ok(out)
}

const RT_TABLE_MAIN: u8 = 254;

fn route_destination(r: &RouteMessage) -> Option<IpNet> {
    let len = r.header.destination_prefix_length;
    // Only the main table: local/broadcast entries would make every host address a "route".
    if len == 0 || r.header.table != RT_TABLE_MAIN {
        return None;
    }
    if !matches!(r.header.kind, RouteType::Unicast) {
        return None;
    }
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => {
            let ip: IpAddr = match d {
                rtnetlink::packet_route::route::RouteAddress::Inet(v4) => (*v4).into(),
                rtnetlink::packet_route::route::RouteAddress::Inet6(v6) => (*v6).into(),
                _ => return None,
            };
            IpNet::new(ip, len).ok().map(|n| n.trunc())
        }
        _ => None,
    })
}

pub(crate) fn connect() -> Result<Handle> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| Error::io("cannot open a netlink socket", e))?;
    // Not on the service's `Tasks`: the connection task lives only as long as this operation's
    // handle, and inside a netns thread it must run on that thread's own runtime.
    tokio::spawn(conn);
    Ok(handle)
}

pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(LinkMessage { header, .. })) => Ok(Some(header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(Error::netlink(format!("cannot look up link {name}"), e)),
    }
}

pub(crate) async fn delete_link(name: &str) -> Result<()> {
    let handle = connect()?;
    let Some(index) = link_index(&handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(Error::netlink(format!("cannot delete link {name}"), e)),
    }
}

pub(crate) async fn add_address(
    handle: &Handle,
    index: u32,
    addr: IpNet,
) -> Result<(), rtnetlink::Error> {
    let mut req = handle.address().add(index, addr.addr(), addr.prefix_len());
    if addr.addr().is_ipv6() {
        // No duplicate address detection: the IPAM owns uniqueness, and DAD would leave the
        // address "tentative" (unusable) for a second or two after start.
        let msg: &mut AddressMessage = req.message_mut();
        msg.header.flags |= AddressHeaderFlags::Nodad;
    }
    match req.execute().await {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

async fn del_address(handle: &Handle, index: u32, addr: IpNet) -> Result<(), rtnetlink::Error> {
    let mut msg = AddressMessage::default();
    msg.header.family = match addr {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(addr.addr()));
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    match handle.address().del(msg).execute().await {
        Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
        other => other,
    }
}

async fn addresses_of(handle: &Handle, index: Option<u32>) -> Result<Vec<IpNet>> {
    let mut req = handle.address().get();
    if let Some(i) = index {
        req = req.set_link_index_filter(i);
    }
    let mut stream = req.execute();
    let mut out = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| Error::netlink("cannot list addresses", e))?
    {
        if !matches!(
            msg.header.family,
            AddressFamily::Inet | AddressFamily::Inet6
        ) {
            continue;
        }
        // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS the
        // peer there, the own address elsewhere.
        let local = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = local.or_else(|| {
            msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let Some(ip) = addr
            && let Ok(net) = IpNet::new(ip, msg.header.prefix_len)
        {
            out.push(net);
        }
    }
    Ok(out)
}

fn enable_forwarding(knob: &str) -> Result<()> {
    if std::fs::read_to_string(knob)
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
    {
        return Ok(());
    }
    std::fs::write(knob, "1").map_err(|e| Error::io(format!("cannot enable {knob}"), e))
}

pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        return Err(Error::Invalid(format!("invalid interface name: {name:?}")));
    }
    Ok(())
}

/// A locally administered unicast MAC derived from the device name (FNV-1a), so a bridge
/// re-created after a daemon restart gets the same one.
fn bridge_mac(device: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}
