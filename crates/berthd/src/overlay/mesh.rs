//! The routing mesh on one node: a port a service publishes in `ingress` mode answers on
//! every node. The host DNATs connections to its published ports (nftables, prerouting and
//! output, any local address) to the ingress netns through a veth pair; there the
//! connection is DNATed again to one of the service's running tasks on the ingress network,
//! on any node (`numgen inc`, over VXLAN), and SNATed to this node's ingress address so that
//! the reply comes back through the same node. The address and port rewrites are the same
//! as Docker's `ingress-sbox` with IPVS; see docs/architecture.md for the client address and
//! idle timeouts.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_network::overlay::kernel::{self, OverlayConfig};
use berth_swarm::store::State;
use ipnet::{IpNet, Ipv4Net};

use super::rules;
use crate::state::AppState;

/// The mesh's table in the ingress netns.
const NS_TABLE: &str = "berth_mesh";

/// One published port: protocol, published port, target port, backends.
type Published = (String, u32, u32, Vec<Ipv4Addr>);

#[derive(Default)]
pub struct Mesh {
    linked: Option<String>,
    host_rules: Option<String>,
    ns_rules: Option<String>,
}

/// The ingress network's id when some service publishes a port through it.
pub fn ingress_in_use(s: &State) -> Option<String> {
    let ingress = s.networks.values().find(|n| n.ingress())?;
    s.services
        .values()
        .any(|svc| {
            svc.endpoint["Ports"].as_array().is_some_and(|ports| {
                ports
                    .iter()
                    .any(|p| p["PublishMode"] == "ingress" && p["PublishedPort"].as_u64() > Some(0))
            })
        })
        .then(|| ingress.meta.id.clone())
}

fn published(s: &State, ingress: &str) -> Vec<Published> {
    let mut out = Vec::new();
    for svc in s.services.values() {
        let backends = rules::backends(s, &svc.meta.id, ingress);
        for p in svc.endpoint["Ports"].as_array().into_iter().flatten() {
            if p["PublishMode"] != "ingress" {
                continue;
            }
            let (Some(published), Some(target)) =
                (p["PublishedPort"].as_u64(), p["TargetPort"].as_u64())
            else {
                continue;
            };
            let proto = p["Protocol"].as_str().unwrap_or("tcp").to_string();
            out.push((proto, published as u32, target as u32, backends.clone()));
        }
    }
    out.sort();
    out
}

/// Per daemon: the host-side names and the /30 between host and ingress netns, derived from
/// the exec root so that several daemons on one host (tests) never collide.
fn tag(state: &AppState) -> (String, String, Ipv4Addr, Ipv4Addr) {
    use sha2::Digest;
    let d = sha2::Sha256::digest(state.config.exec_root.to_string_lossy().as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    let block = u32::from_be_bytes([169, 254, d[0], d[1] & 0xfc]);
    (
        format!("bm{}", &hex[..10]),
        format!("berth_mesh_{}", &hex[..10]),
        Ipv4Addr::from(block + 1),
        Ipv4Addr::from(block + 2),
    )
}

fn host_ruleset(table: &str, host_if: &str, to: Ipv4Addr, ports: &[Published]) -> String {
    let mut t = format!("table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{\n");
    for (chain, hook) in [("pre", "prerouting"), ("out", "output")] {
        t.push_str(&format!(
            "  chain {chain} {{\n    type nat hook {hook} priority -100; policy accept;\n"
        ));
        for (proto, published, _, _) in ports {
            t.push_str(&format!(
                "    fib daddr type local {proto} dport {published} dnat ip to {to}\n"
            ));
        }
        t.push_str("  }\n");
    }
    t.push_str(&format!(
        "  chain post {{\n    type nat hook postrouting priority 100; policy accept;\n    oifname \"{host_if}\" masquerade\n  }}\n"
    ));
    t.push_str(&format!(
        "  chain through {{\n    type filter hook forward priority -1; policy accept;\n    oifname \"{host_if}\" accept\n    iifname \"{host_if}\" accept\n  }}\n}}\n"
    ));
    t
}

fn ns_ruleset(me: Ipv4Addr, ports: &[Published]) -> String {
    let mut t = format!(
        "table ip {NS_TABLE} {{}}\ndelete table ip {NS_TABLE}\ntable ip {NS_TABLE} {{\n  chain pre {{\n    type nat hook prerouting priority -100; policy accept;\n"
    );
    for (proto, published, target, backends) in ports {
        if backends.is_empty() {
            continue;
        }
        let map: Vec<String> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{i} : {b} . {target}"))
            .collect();
        t.push_str(&format!(
            "    iifname \"mesh0\" {proto} dport {published} dnat ip to numgen inc mod {} map {{ {} }}\n",
            backends.len(),
            map.join(", ")
        ));
    }
    t.push_str(&format!(
        "  }}\n  chain post {{\n    type nat hook postrouting priority 100; policy accept;\n    oifname \"{}\" snat ip to {me}\n  }}\n}}\n",
        kernel::BRIDGE
    ));
    t
}

impl Mesh {
    pub async fn pass(
        &mut self,
        state: &AppState,
        s: &State,
        node: &str,
        networks: &BTreeMap<String, OverlayConfig>,
    ) {
        let Some(ingress) = ingress_in_use(s) else {
            self.clear(state).await;
            return;
        };
        let (Some(cfg), Some(net)) = (networks.get(&ingress), s.networks.get(&ingress)) else {
            return;
        };
        let Some(IpNet::V4(me)) = net
            .driver_state
            .node_addresses
            .get(node)
            .and_then(|a| a.parse::<IpNet>().ok())
        else {
            return;
        };
        let (host_if, table, host_ip, ns_ip) = tag(state);
        if self.linked.as_deref() != Some(cfg.ns.to_str().unwrap_or_default()) {
            let link = kernel::mesh_link(
                &cfg.ns,
                IpNet::V4(me),
                &host_if,
                IpNet::V4(Ipv4Net::new(host_ip, 30).unwrap_or_default()),
                IpNet::V4(Ipv4Net::new(ns_ip, 30).unwrap_or_default()),
            )
            .await;
            match link {
                Ok(()) => self.linked = Some(cfg.ns.to_string_lossy().into_owned()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot link the host to the ingress network");
                    return;
                }
            }
            self.ns_rules = None;
        }
        let ports = published(s, &ingress);
        let ns_text = ns_ruleset(me.addr(), &ports);
        if self.ns_rules.as_ref() != Some(&ns_text) {
            match kernel::nft_in(&cfg.ns, ns_text.clone()).await {
                Ok(()) => self.ns_rules = Some(ns_text),
                Err(e) => tracing::warn!(error = %e, "cannot program the ingress load balancer"),
            }
        }
        let host_text = host_ruleset(&table, &host_if, ns_ip, &ports);
        if self.host_rules.as_ref() != Some(&host_text) {
            match kernel::nft_host(host_text.clone()).await {
                Ok(()) => self.host_rules = Some(host_text),
                Err(e) => tracing::warn!(error = %e, "cannot program the routing mesh"),
            }
        }
    }

    /// No port published (or out of the swarm): the host's table and veth go; the ingress
    /// netns goes with the overlay agent's pass.
    pub async fn clear(&mut self, state: &AppState) {
        let (host_if, table, _, _) = tag(state);
        if self.host_rules.take().is_some() || self.linked.is_some() {
            let _ =
                kernel::nft_host(format!("table ip {table} {{}}\ndelete table ip {table}\n")).await;
            let _ = kernel::remove_link(&host_if).await;
        }
        self.linked = None;
        self.ns_rules = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_ingress_rules() {
        let b: Ipv4Addr = "10.0.0.5".parse().unwrap();
        let ports = vec![("tcp".to_string(), 30000, 80, vec![b])];
        let host = host_ruleset("t", "bmx", "169.254.1.2".parse().unwrap(), &ports);
        assert!(host.contains("fib daddr type local tcp dport 30000 dnat ip to 169.254.1.2"));
        let ns = ns_ruleset("10.0.0.2".parse().unwrap(), &ports);
        assert!(ns.contains(
            "iifname \"mesh0\" tcp dport 30000 dnat ip to numgen inc mod 1 map { 0 : 10.0.0.5 . 80 }"
        ));
        assert!(ns.contains("oifname \"br0\" snat ip to 10.0.0.2"));
    }
}
