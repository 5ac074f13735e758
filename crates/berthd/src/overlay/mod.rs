//! The overlay agent of a node: makes the kernel match the cluster state for this node's
//! overlay endpoints (`berth_network::overlay::kernel`): a netns per overlay network in use
//! here (bridge + VXLAN), a veth into each task container per network, FDB/neighbour entries
//! for the endpoints on other nodes, the VIP load balancer inside each task container, and
//! the names the embedded DNS answers. One pass after every store change and every second;
//! each pass diffs against what it applied before, so only changes reach the kernel.

pub mod attachable;
pub mod endpoints;
pub mod mesh;
pub mod plain;
pub mod ready;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_network::link::EndpointConfig;
use berth_network::overlay::kernel::{self, OverlayConfig, Peer};
use berth_network::overlay::mac_bytes;
use berth_swarm::store::State;

use crate::state::AppState;

/// The local network task containers of overlay services join for their way out and their
/// embedded DNS (Docker's `docker_gwbridge`).
pub const GWBRIDGE: &str = "docker_gwbridge";

/// What the agent has applied, to diff against.
#[derive(Default)]
struct Applied {
    /// Overlay netns made here, by network id.
    networks: BTreeMap<String, OverlayConfig>,
    /// (container, network) pairs with a veth.
    attached: BTreeSet<(String, String)>,
    /// Peers programmed per network.
    peers: BTreeMap<String, BTreeSet<Peer>>,
    /// IPv6 neighbours programmed per dual-stack network (address, MAC source, node).
    peers6: BTreeMap<String, BTreeSet<(std::net::Ipv6Addr, Ipv4Addr, Ipv4Addr)>>,
    /// The load balancer text applied per container.
    lb: BTreeMap<String, String>,
    /// Containers whose overlays are all internal, their default routes taken out.
    isolated: BTreeSet<String>,
    /// Task containers on the ingress network whose replies from their ingress address go
    /// back through this node's ingress netns ([`kernel::reply_route`]), with that address:
    /// the routing mesh brings them connections without SNAT.
    reply_routes: BTreeMap<String, Ipv4Addr>,
}

/// Names per container, read by the embedded DNS servers.
#[derive(Default)]
pub struct Names {
    table: Mutex<BTreeMap<String, BTreeMap<String, Vec<IpAddr>>>>,
}

impl berth_network::ExternalNames for Names {
    fn lookup(&self, container: &str, name: &str) -> Vec<IpAddr> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .get(container)
            .and_then(|names| names.get(name))
            .cloned()
            .unwrap_or_default()
    }
}

fn overlay_dir(state: &AppState) -> PathBuf {
    state.config.exec_root.join("overlay")
}

/// Starts the agent; it ends with the daemon.
pub fn spawn(state: &AppState) {
    state.plain.bind(state);
    let names = Arc::new(Names::default());
    state.networks.set_external_names(names.clone());
    let state = state.clone();
    tokio::spawn(async move {
        let mut applied = Applied::default();
        let mut mesh = mesh::Mesh::default();
        loop {
            // Managers wake on every store change, workers on every new view their managers
            // send (a task leaving the rotation must reach every node's rules at once); the
            // second's poll catches the rest (containers gone meanwhile).
            let mut watch = state.swarm.handle().await.map(|h| h.store().watch());
            let view_changed = state.swarm.worker_view_changed().await;
            match state.swarm.node_view().await {
                Some((node, snapshot)) => {
                    pass(&state, &snapshot, &node, &mut applied, &names).await;
                    let direct = applied.reply_routes.values().copied().collect();
                    mesh.pass(&state, &snapshot, &node, &applied.networks, &direct)
                        .await;
                }
                None => {
                    clear(&state, &mut applied, &names);
                    mesh.clear(&state).await;
                }
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = async {
                    match watch.as_mut() {
                        Some(w) => { let _ = w.changed().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
                _ = async {
                    match &view_changed {
                        Some(n) => n.notified().await,
                        None => std::future::pending::<()>().await,
                    }
                } => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// Out of the swarm: every overlay netns goes (the tasks' containers went with `leave`).
fn clear(state: &AppState, applied: &mut Applied, names: &Names) {
    *applied = Applied::default();
    state.overlay_ready.set(&BTreeSet::new());
    self::endpoints::set(BTreeMap::new());
    names
        .table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let dir = overlay_dir(state);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if let Err(err) = kernel::remove(&e.path()) {
                tracing::warn!(error = %err, "removing an overlay netns");
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// The config of a network's netns here, when the network and this node's address are known.
pub fn overlay_config(
    state: &AppState,
    s: &State,
    node: &str,
    network: &str,
) -> Option<OverlayConfig> {
    let n = s.networks.get(network)?;
    let subnet = n.driver_state.subnet()?;
    let gateway =
        ipnet::IpNet::V4(ipnet::Ipv4Net::new(n.driver_state.gateway()?, subnet.prefix_len()).ok()?);
    let port = s
        .cluster()
        .map(|c| c.data_path_port)
        .filter(|p| *p > 0)
        .unwrap_or(4789) as u16;
    Some(OverlayConfig {
        ns: overlay_dir(state).join(network),
        vni: n.driver_state.vxlan_id,
        gateway,
        local: rules::node_addr(s, node).unwrap_or(Ipv4Addr::LOCALHOST),
        port,
    })
}

async fn pass(state: &AppState, s: &State, node: &str, applied: &mut Applied, names: &Names) {
    let mut endpoints = rules::local_endpoints(s, node);
    let plain: Vec<_> = rules::local_attachments(s, node)
        .into_iter()
        .filter(|e| state.networks.netns_of(&e.container).is_some())
        .collect();
    let attached_plain: BTreeSet<(String, String)> = plain
        .iter()
        .map(|e| (e.container.clone(), e.network.clone()))
        .collect();
    endpoints.extend(plain);
    attachable::release_gone(state, s, node).await;
    let mut needed: BTreeSet<String> = endpoints.iter().map(|e| e.network.clone()).collect();
    // The routing mesh needs the ingress network on every node as soon as a port is published.
    if let Some(ingress) = mesh::ingress_in_use(s) {
        needed.insert(ingress);
    }
    for net in &needed {
        let Some(cfg) = overlay_config(state, s, node, net) else {
            continue;
        };
        if applied.networks.get(net) == Some(&cfg) {
            continue;
        }
        match kernel::ensure(&cfg).await {
            Ok(()) => {
                applied.networks.insert(net.clone(), cfg);
            }
            Err(e) => tracing::warn!(network = %net, error = %e, "cannot set up an overlay"),
        }
    }
    // Veths into the task containers.
    let mut live: BTreeSet<(String, String)> = BTreeSet::new();
    for ep in &endpoints {
        let key = (ep.container.clone(), ep.network.clone());
        live.insert(key.clone());
        if applied.attached.contains(&key) {
            continue;
        }
        let (Some(_), Some(netns)) = (
            applied.networks.get(&ep.network),
            state.networks.netns_of(&ep.container),
        ) else {
            continue;
        };
        // A plain container's interface: the first free ethN (it may have joined other
        // networks before this one).
        let container_if = if attached_plain.contains(&key) {
            attachable::free_ifname(&netns)
                .await
                .unwrap_or_else(|| ep.ifname.clone())
        } else {
            ep.ifname.clone()
        };
        let cfg = EndpointConfig {
            bridge: kernel::BRIDGE.into(),
            host_if: format!("ve{}", &hex_of(&key)[..10]),
            netns,
            container_if,
            mac: mac_bytes(ep.addr.addr()),
            addresses: std::iter::once(ep.addr).chain(ep.addr6).collect(),
            gateways: Vec::new(),
            mtu: None,
        };
        match kernel::attach(&applied.networks[&ep.network].ns, cfg).await {
            Ok(()) => {
                applied.attached.insert(key);
            }
            Err(e) => {
                tracing::warn!(container = %ep.container, network = %ep.network, error = %e, "cannot attach a task to its overlay")
            }
        }
    }
    // Containers gone took their veths with them; a container still there left the network
    // (`network disconnect`): its veth goes.
    let left: Vec<(String, String)> = applied
        .attached
        .iter()
        .filter(|k| !live.contains(*k))
        .cloned()
        .collect();
    for key in left {
        if state.networks.netns_of(&key.0).is_some()
            && let Some(cfg) = applied.networks.get(&key.1)
            && let Err(e) = kernel::detach(&cfg.ns, &format!("ve{}", &hex_of(&key)[..10])).await
        {
            tracing::warn!(container = %key.0, error = %e, "cannot take a container off its overlay");
        }
        applied.attached.remove(&key);
    }
    reply_routes(state, s, node, &endpoints, applied).await;
    state.overlay_ready.set(&applied.attached);
    // Peers on other nodes.
    for net in &needed {
        let Some(cfg) = applied.networks.get(net) else {
            continue;
        };
        let want: BTreeSet<Peer> = rules::remote_peers(s, node, net)
            .into_iter()
            .map(|(ip, node)| Peer { ip, node })
            .collect();
        let have = applied.peers.entry(net.clone()).or_default();
        for p in have.difference(&want).copied().collect::<Vec<_>>() {
            if kernel::remove_peer(&cfg.ns, p).await.is_ok() {
                have.remove(&p);
            }
        }
        for p in want.difference(&have.clone()).copied().collect::<Vec<_>>() {
            match kernel::add_peer(&cfg.ns, p).await {
                Ok(()) => {
                    have.insert(p);
                }
                Err(e) => tracing::warn!(error = %e, "cannot program an overlay peer"),
            }
        }
        let want6 = rules::remote_peers6(s, node, net);
        let have6 = applied.peers6.entry(net.clone()).or_default();
        for p in have6.difference(&want6).copied().collect::<Vec<_>>() {
            if kernel::remove_peer6(&cfg.ns, p.0, p.1).await.is_ok() {
                have6.remove(&p);
            }
        }
        for p in want6
            .difference(&have6.clone())
            .copied()
            .collect::<Vec<_>>()
        {
            match kernel::add_peer6(&cfg.ns, p.0, p.1).await {
                Ok(()) => {
                    have6.insert(p);
                }
                Err(e) => tracing::warn!(error = %e, "cannot program an overlay IPv6 neighbour"),
            }
        }
    }
    // The load balancer and names per task container.
    let mut by_container: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ep in &endpoints {
        by_container
            .entry(ep.container.clone())
            .or_default()
            .insert(ep.network.clone());
    }
    for (container, nets) in &by_container {
        let internal = nets.iter().all(|n| {
            s.networks
                .get(n)
                .is_some_and(|n| n.spec["Internal"] == true)
        });
        if !internal || applied.isolated.contains(container) {
            continue;
        }
        if let Some(netns) = state.networks.netns_of(container) {
            match kernel::drop_default_routes(&netns).await {
                Ok(()) => drop(applied.isolated.insert(container.clone())),
                Err(e) => tracing::warn!(%container, error = %e, "cannot isolate an internal task"),
            }
        }
    }
    applied.isolated.retain(|c| by_container.contains_key(c));
    let mut table = BTreeMap::new();
    for (container, nets) in &by_container {
        table.insert(container.clone(), rules::names_for(s, nets));
        let text = rules::lb_ruleset(&rules::vip_map(s, nets));
        if applied.lb.get(container) == Some(&text) {
            continue;
        }
        let Some(netns) = state.networks.netns_of(container) else {
            continue;
        };
        match kernel::nft_in(&netns, text.clone()).await {
            Ok(()) => {
                applied.lb.insert(container.clone(), text);
            }
            Err(e) => {
                tracing::warn!(%container, error = %e, "cannot program the VIP load balancer")
            }
        }
    }
    applied.lb.retain(|c, _| by_container.contains_key(c));
    *names.table.lock().unwrap_or_else(|e| e.into_inner()) = table;
    let mut shown: BTreeMap<String, BTreeMap<String, _>> = BTreeMap::new();
    for ep in &endpoints {
        if let Some(n) = s.networks.get(&ep.network) {
            shown.entry(ep.container.clone()).or_default().insert(
                n.name().to_string(),
                self::endpoints::endpoint(&ep.network, &ep.container, ep.addr, ep.addr6),
            );
        }
    }
    self::endpoints::set(shown);
    // Networks no longer used here.
    let stale: Vec<String> = applied
        .networks
        .keys()
        .filter(|n| !needed.contains(*n))
        .cloned()
        .collect();
    // Left by an earlier daemon (restarted meanwhile) and no longer used.
    if let Ok(entries) = std::fs::read_dir(overlay_dir(state)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !needed.contains(&name)
                && !applied.networks.contains_key(&name)
                && let Err(err) = kernel::remove(&e.path())
            {
                tracing::warn!(error = %err, "removing a stale overlay netns");
            }
        }
    }
    for net in stale {
        if let Some(cfg) = applied.networks.remove(&net) {
            applied.peers.remove(&net);
            applied.peers6.remove(&net);
            applied.attached.retain(|(_, n)| *n != net);
            if let Err(e) = kernel::remove(&cfg.ns) {
                tracing::warn!(network = %net, error = %e, "cannot remove an overlay netns");
            }
        }
    }
}

/// Gives the local tasks on the ingress network their way back through this node's ingress
/// netns (see [`Applied::reply_routes`]).
async fn reply_routes(
    state: &AppState,
    s: &State,
    node: &str,
    endpoints: &[rules::LocalEndpoint],
    applied: &mut Applied,
) {
    let ingress = s.networks.values().find(|n| n.ingress());
    let me = ingress.and_then(|n| match n.driver_state.node_addresses.get(node)?.parse() {
        Ok(ipnet::IpNet::V4(a)) => Some(a.addr()),
        _ => None,
    });
    let mut live = BTreeSet::new();
    for ep in endpoints {
        let (Some(net), Some(me), IpAddr::V4(addr)) = (ingress, me, ep.addr.addr()) else {
            continue;
        };
        if ep.network != net.meta.id
            || !applied
                .attached
                .contains(&(ep.container.clone(), ep.network.clone()))
        {
            continue;
        }
        live.insert(ep.container.clone());
        if applied.reply_routes.get(&ep.container) == Some(&addr) {
            continue;
        }
        let Some(netns) = state.networks.netns_of(&ep.container) else {
            continue;
        };
        match kernel::reply_route(&netns, ep.ifname.clone(), ep.addr, me).await {
            Ok(()) => drop(applied.reply_routes.insert(ep.container.clone(), addr)),
            Err(e) => {
                tracing::warn!(container = %ep.container, error = %e, "cannot route a task's mesh replies back through the ingress netns; its mesh connections keep the SNAT")
            }
        }
    }
    applied.reply_routes.retain(|c, _| live.contains(c));
}

fn hex_of(key: &(String, String)) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{}/{}", key.0, key.1).as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes the local `docker_gwbridge` network exist (task containers of overlay services
/// join it first).
pub async fn ensure_gwbridge(networks: &berth_network::Networks) -> Result<(), String> {
    if networks.get(GWBRIDGE).is_ok() {
        return Ok(());
    }
    let req = berth_api::models::network::NetworkCreateRequest {
        name: GWBRIDGE.into(),
        driver: "bridge".into(),
        ..Default::default()
    };
    match networks.create(req).await {
        Ok(_) => Ok(()),
        Err(_) if networks.get(GWBRIDGE).is_ok() => Ok(()),
        Err(e) => Err(format!("cannot create {GWBRIDGE}: {e}")),
    }
}
