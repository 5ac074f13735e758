//! Pure functions from the cluster state: which overlay endpoints live on this node, their
//! peers on other nodes, the names the embedded DNS answers, and the nftables rules that
//! balance each service VIP over its running tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use berth_swarm::allocator::{self, endpoint_mode, service_aliases, service_networks};
use berth_swarm::allocator6;
use berth_swarm::store::State;
use berth_swarm::types::TaskState;
use ipnet::IpNet;

/// A local task's endpoint on one overlay.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalEndpoint {
    pub container: String,
    pub network: String,
    pub addr: IpNet,
    /// Its IPv6 address on a dual-stack overlay.
    pub addr6: Option<IpNet>,
    /// `eth0`, `eth1`... in the order of the task's attachments (docker_gwbridge is last);
    /// `eth1` for a plain container on an attachable overlay (`eth0` is its docker_gwbridge).
    pub ifname: String,
}

/// The endpoints of this node's running tasks, and of those waiting for their first healthy
/// check (`starting`: a check may need the overlay; they are not in rotation yet).
pub fn local_endpoints(s: &State, node: &str) -> Vec<LocalEndpoint> {
    let mut out = Vec::new();
    for t in s.tasks.values() {
        let up = matches!(t.status.state, TaskState::Starting | TaskState::Running);
        if t.node_id != node || !up {
            continue;
        }
        let Some(cs) = &t.status.container_status else {
            continue;
        };
        if cs.container_id.is_empty() {
            continue;
        }
        let v6 = allocator6::task_addresses6(t);
        for (i, (network, addr)) in allocator::task_addresses(t).into_iter().enumerate() {
            out.push(LocalEndpoint {
                container: cs.container_id.clone(),
                addr6: v6.iter().find(|(n, _)| *n == network).map(|(_, a)| *a),
                network,
                addr,
                ifname: format!("eth{i}"),
            });
        }
    }
    out
}

/// The endpoints of this node's plain containers on attachable networks.
pub fn local_attachments(s: &State, node: &str) -> Vec<LocalEndpoint> {
    let mut out = Vec::new();
    for n in s.networks.values() {
        for (container, (on, addr)) in &n.driver_state.attachments {
            if on != node {
                continue;
            }
            if let Ok(addr) = addr.parse() {
                out.push(LocalEndpoint {
                    container: container.clone(),
                    network: n.meta.id.clone(),
                    addr,
                    addr6: n
                        .driver_state
                        .attachments6
                        .get(container)
                        .and_then(|a| a.parse().ok()),
                    ifname: "eth1".into(),
                });
            }
        }
    }
    out
}

/// A node's address on the underlay (its advertised address).
pub fn node_addr(s: &State, node: &str) -> Option<Ipv4Addr> {
    s.nodes.get(node)?.status.addr.parse().ok()
}

/// The endpoints on other nodes of a network: (address, node address).
pub fn remote_peers(s: &State, node: &str, network: &str) -> BTreeSet<(Ipv4Addr, Ipv4Addr)> {
    let mut out = BTreeSet::new();
    if let Some(n) = s.networks.get(network) {
        for (other, addr) in n
            .driver_state
            .node_addresses
            .iter()
            .chain(n.driver_state.attachments.values().map(|(a, b)| (a, b)))
        {
            if let (false, Some(node_ip), Ok(IpNet::V4(a))) =
                (other == node, node_addr(s, other), addr.parse::<IpNet>())
            {
                out.insert((a.addr(), node_ip));
            }
        }
    }
    for t in s.tasks.values() {
        if t.node_id == node || t.node_id.is_empty() || !allocator::holds_addresses(t) {
            continue;
        }
        let Some(node_ip) = node_addr(s, &t.node_id) else {
            continue;
        };
        for (net, addr) in allocator::task_addresses(t) {
            if let (true, IpAddr::V4(ip)) = (net == network, addr.addr()) {
                out.insert((ip, node_ip));
            }
        }
    }
    out
}

/// The IPv6 endpoints on other nodes of a dual-stack network: (IPv6 address, the IPv4
/// address its MAC derives from, node address).
pub fn remote_peers6(
    s: &State,
    node: &str,
    network: &str,
) -> BTreeSet<(std::net::Ipv6Addr, Ipv4Addr, Ipv4Addr)> {
    let mut out = BTreeSet::new();
    if let Some(n) = s.networks.get(network) {
        for (container, (other, addr)) in &n.driver_state.attachments {
            let a6 = n.driver_state.attachments6.get(container);
            if let (false, Some(node_ip), Ok(IpNet::V4(a)), Some(Ok(IpNet::V6(a6)))) = (
                other == node,
                node_addr(s, other),
                addr.parse::<IpNet>(),
                a6.map(|a| a.parse::<IpNet>()),
            ) {
                out.insert((a6.addr(), a.addr(), node_ip));
            }
        }
    }
    for t in s.tasks.values() {
        if t.node_id == node || t.node_id.is_empty() || !allocator::holds_addresses(t) {
            continue;
        }
        let Some(node_ip) = node_addr(s, &t.node_id) else {
            continue;
        };
        let v6 = allocator6::task_addresses6(t);
        for (net, addr) in allocator::task_addresses(t) {
            let a6 = v6.iter().find(|(n, _)| *n == net).map(|(_, a)| a.addr());
            if let (true, IpAddr::V4(ip), Some(IpAddr::V6(ip6))) = (net == network, addr.addr(), a6)
            {
                out.insert((ip6, ip, node_ip));
            }
        }
    }
    out
}

/// The running tasks' IPv6 addresses of a service on a network (dual-stack overlays).
pub fn backends6(s: &State, service: &str, network: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = s
        .tasks
        .values()
        .filter(|t| {
            t.service_id == service
                && t.status.state == TaskState::Running
                && t.desired_state == TaskState::Running
                && s.nodes
                    .get(&t.node_id)
                    .is_none_or(|n| n.status.state != "down")
        })
        .flat_map(|t| allocator6::task_addresses6(t))
        .filter(|(net, _)| net == network)
        .map(|(_, a)| a.addr())
        .collect();
    out.sort();
    out
}

/// The running tasks' addresses of a service on a network: where its VIP leads.
pub fn backends(s: &State, service: &str, network: &str) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = s
        .tasks
        .values()
        .filter(|t| {
            t.service_id == service
                && t.status.state == TaskState::Running
                && t.desired_state == TaskState::Running
                && s.nodes
                    .get(&t.node_id)
                    .is_none_or(|n| n.status.state != "down")
        })
        .flat_map(|t| allocator::task_addresses(t))
        .filter(|(net, _)| net == network)
        .filter_map(|(_, a)| match a.addr() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect();
    out.sort();
    out
}

/// What a container on `networks` resolves: service names and aliases (to the VIP, or to
/// the tasks in `dnsrr` mode) and `tasks.NAME`.
pub fn names_for(s: &State, networks: &BTreeSet<String>) -> BTreeMap<String, Vec<IpAddr>> {
    let mut names: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for svc in s.services.values() {
        let vips = allocator::service_vips(svc);
        for net_id in service_networks(s, svc) {
            if !networks.contains(&net_id) {
                continue;
            }
            let Some(net) = s.networks.get(&net_id) else {
                continue;
            };
            if net.ingress() {
                // The routing mesh's network carries no service discovery (as Docker's).
                continue;
            }
            let mut tasks: Vec<IpAddr> = backends(s, &svc.meta.id, &net_id)
                .into_iter()
                .map(IpAddr::V4)
                .collect();
            // AAAA records for the tasks of a dual-stack network (VIPs stay IPv4).
            tasks.extend(backends6(s, &svc.meta.id, &net_id));
            let answer: Vec<IpAddr> = if endpoint_mode(svc) == "vip" {
                vips.iter()
                    .filter(|(n, _)| *n == net_id)
                    .map(|(_, a)| a.addr())
                    .collect()
            } else {
                tasks.clone()
            };
            let mut keys = vec![svc.name().to_ascii_lowercase()];
            keys.extend(
                service_aliases(svc, net)
                    .iter()
                    .map(|a| a.to_ascii_lowercase()),
            );
            for k in keys {
                let entry = names.entry(k).or_default();
                for ip in &answer {
                    if !entry.contains(ip) {
                        entry.push(*ip);
                    }
                }
            }
            let entry = names
                .entry(format!("tasks.{}", svc.name().to_ascii_lowercase()))
                .or_default();
            for ip in &tasks {
                if !entry.contains(ip) {
                    entry.push(*ip);
                }
            }
        }
    }
    // Plain containers on attachable networks, wherever they run: by name and short id (as
    // dockerd's embedded DNS answers for them).
    for net in networks.iter().filter_map(|id| s.networks.get(id)) {
        for (container, (_, addr)) in &net.driver_state.attachments {
            let Ok(addr) = addr.parse::<IpNet>() else {
                continue;
            };
            let mut keys = vec![container.chars().take(12).collect::<String>()];
            if let Some(name) = net.driver_state.attachment_names.get(container) {
                keys.push(name.to_ascii_lowercase());
            }
            let mut addrs = vec![addr.addr()];
            if let Some(Ok(a6)) = net
                .driver_state
                .attachments6
                .get(container)
                .map(|a| a.parse::<IpNet>())
            {
                addrs.push(a6.addr());
            }
            for k in keys {
                let entry = names.entry(k).or_default();
                for a in &addrs {
                    if !entry.contains(a) {
                        entry.push(*a);
                    }
                }
            }
        }
    }
    names
}

/// The VIPs reachable on `networks`, each with its backends.
pub fn vip_map(s: &State, networks: &BTreeSet<String>) -> Vec<(Ipv4Addr, Vec<Ipv4Addr>)> {
    let mut out = Vec::new();
    for svc in s.services.values() {
        if endpoint_mode(svc) != "vip" {
            continue;
        }
        for (net, addr) in allocator::service_vips(svc) {
            if !networks.contains(&net) {
                continue;
            }
            if let IpAddr::V4(vip) = addr.addr() {
                out.push((vip, backends(s, &svc.meta.id, &net)));
            }
        }
    }
    out.sort();
    out
}

/// The nftables table name of the load balancer inside a container or an overlay netns.
pub const LB_TABLE: &str = "berth_lb";

/// One transaction that replaces the load balancer's table: connections to a VIP are
/// DNATed (before routing, in the output hook) to one of its backends, in turn
/// (`numgen inc`); a VIP without backends refuses connections at once.
pub fn lb_ruleset(vips: &[(Ipv4Addr, Vec<Ipv4Addr>)]) -> String {
    let mut text = format!("table ip {LB_TABLE} {{}}\ndelete table ip {LB_TABLE}\n");
    text.push_str(&format!("table ip {LB_TABLE} {{\n"));
    text.push_str("  chain out {\n    type nat hook output priority -100; policy accept;\n");
    for (vip, backends) in vips {
        if backends.is_empty() {
            continue;
        }
        let map: Vec<String> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{i} : {b}"))
            .collect();
        text.push_str(&format!(
            "    ip daddr {vip} dnat to numgen inc mod {} map {{ {} }}\n",
            backends.len(),
            map.join(", ")
        ));
    }
    text.push_str("  }\n");
    text.push_str("  chain empty {\n    type filter hook output priority 0; policy accept;\n");
    for (vip, backends) in vips {
        if backends.is_empty() {
            text.push_str(&format!(
                "    ip daddr {vip} meta l4proto tcp reject with tcp reset\n    ip daddr {vip} reject\n"
            ));
        }
    }
    text.push_str("  }\n}\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_spread_over_backends_in_one_transaction() {
        let a: Ipv4Addr = "10.0.1.2".parse().unwrap();
        let b1: Ipv4Addr = "10.0.1.3".parse().unwrap();
        let b2: Ipv4Addr = "10.0.1.4".parse().unwrap();
        let none: Ipv4Addr = "10.0.1.9".parse().unwrap();
        let text = lb_ruleset(&[(a, vec![b1, b2]), (none, vec![])]);
        assert!(text.starts_with("table ip berth_lb {}\ndelete table ip berth_lb\n"));
        assert!(text.contains(
            "ip daddr 10.0.1.2 dnat to numgen inc mod 2 map { 0 : 10.0.1.3, 1 : 10.0.1.4 }"
        ));
        assert!(text.contains("ip daddr 10.0.1.9 reject"));
    }
}
