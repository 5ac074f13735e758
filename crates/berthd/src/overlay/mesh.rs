//! The routing mesh on one node: a port a service publishes in `ingress` mode answers on
//! every node. The host DNATs connections to its published ports (nftables, prerouting and
//! output, any local address) to the ingress netns through a veth pair, keeping the
//! client's address (only loopback sources are masqueraded); there the connection is DNATed
//! again to one of the service's running tasks on the ingress network, on any node
//! (`numgen inc`, over VXLAN). A task on another node gets it SNATed to this node's ingress
//! address so that the reply comes back through this node (as Docker's `ingress-sbox`); a
//! task on this node gets it unchanged, with the client's address, and its replies come
//! back through this netns by its policy route ([`kernel::reply_route`]). A service
//! labelled [`CLIENT_ADDRESS_LABEL`]`=preserve` sends the connections entering a node that
//! runs one of its tasks to those local tasks only, so all of them keep the client's
//! address. See docs/architecture.md ("Client addresses through the mesh").

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use berth_network::overlay::kernel::{self, OverlayConfig};
use berth_swarm::store::State;
use ipnet::{IpNet, Ipv4Net};

use super::rules;
use crate::state::AppState;

/// The mesh's table in the ingress netns.
const NS_TABLE: &str = "berth_mesh";

/// The service label that keeps the client's address for every connection entering a node
/// that runs a task of the service (`--label com.berth.mesh.client-address=preserve`).
pub const CLIENT_ADDRESS_LABEL: &str = "com.berth.mesh.client-address";

/// One published port through the mesh.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Published {
    proto: String,
    published: u32,
    target: u32,
    /// The service's running tasks on the ingress network, on every node.
    backends: Vec<Ipv4Addr>,
    /// Those on this node that take connections without SNAT; a service with the label
    /// goes to them only when there are any.
    local: Vec<Ipv4Addr>,
    preserve: bool,
}

impl Published {
    /// Where a connection entering this node goes.
    fn targets(&self) -> &[Ipv4Addr] {
        if self.preserve && !self.local.is_empty() {
            &self.local
        } else {
            &self.backends
        }
    }
}

/// Whether the service asks for the client's address ([`CLIENT_ADDRESS_LABEL`]).
fn preserves(spec: &serde_json::Value) -> bool {
    spec["Labels"][CLIENT_ADDRESS_LABEL] == "preserve"
}

#[derive(Default)]
pub struct Mesh {
    linked: Option<String>,
    /// The ingress netns's default route to the host is there.
    routed: bool,
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

fn published(s: &State, ingress: &str, direct: &BTreeSet<Ipv4Addr>) -> Vec<Published> {
    let mut out = Vec::new();
    for svc in s.services.values() {
        let backends = rules::backends(s, &svc.meta.id, ingress);
        let local: Vec<Ipv4Addr> = backends
            .iter()
            .filter(|b| direct.contains(b))
            .copied()
            .collect();
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
            out.push(Published {
                proto,
                published: published as u32,
                target: target as u32,
                backends: backends.clone(),
                local: local.clone(),
                preserve: preserves(&svc.spec),
            });
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
        for p in ports {
            t.push_str(&format!(
                "    fib daddr type local {} dport {} dnat ip to {to}\n",
                p.proto, p.published
            ));
        }
        t.push_str("  }\n");
    }
    // Only what the ingress netns cannot route back (127.0.0.1 through route_localnet) is
    // masqueraded: the client's address reaches the ingress netns.
    t.push_str(&format!(
        "  chain post {{\n    type nat hook postrouting priority 100; policy accept;\n    oifname \"{host_if}\" ip saddr 127.0.0.0/8 masquerade\n  }}\n"
    ));
    t.push_str(&format!(
        "  chain through {{\n    type filter hook forward priority -1; policy accept;\n    oifname \"{host_if}\" accept\n    iifname \"{host_if}\" accept\n  }}\n}}\n"
    ));
    t
}

/// The ingress netns's rules. `masked`: sources that must be SNATed even to a local task:
/// the host's end of the mesh veth (loopback clients, masqueraded by the host) and the
/// `docker_gwbridge` subnet (a task reaching its own published port through its node would
/// get its own address back, which its kernel drops as a martian).
fn ns_ruleset(
    me: Ipv4Addr,
    ports: &[Published],
    masked: &[IpNet],
    direct: &BTreeSet<Ipv4Addr>,
) -> String {
    let mut t = format!(
        "table ip {NS_TABLE} {{}}\ndelete table ip {NS_TABLE}\ntable ip {NS_TABLE} {{\n  chain pre {{\n    type nat hook prerouting priority -100; policy accept;\n"
    );
    for p in ports {
        let targets = p.targets();
        if targets.is_empty() {
            continue;
        }
        let map: Vec<String> = targets
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{i} : {b} . {}", p.target))
            .collect();
        t.push_str(&format!(
            "    iifname \"mesh0\" {} dport {} dnat ip to numgen inc mod {} map {{ {} }}\n",
            p.proto,
            p.published,
            targets.len(),
            map.join(", ")
        ));
    }
    let br = kernel::BRIDGE;
    t.push_str("  }\n  chain post {\n    type nat hook postrouting priority 100; policy accept;\n");
    if !masked.is_empty() {
        let set: Vec<String> = masked.iter().map(|n| n.to_string()).collect();
        t.push_str(&format!(
            "    oifname \"{br}\" ip saddr {{ {} }} snat ip to {me}\n",
            set.join(", ")
        ));
    }
    if !direct.is_empty() {
        let set: Vec<String> = direct.iter().map(|a| a.to_string()).collect();
        t.push_str(&format!(
            "    oifname \"{br}\" ip daddr {{ {} }} accept\n",
            set.join(", ")
        ));
    }
    t.push_str(&format!("    oifname \"{br}\" snat ip to {me}\n  }}\n}}\n"));
    t
}

impl Mesh {
    pub async fn pass(
        &mut self,
        state: &AppState,
        s: &State,
        node: &str,
        networks: &BTreeMap<String, OverlayConfig>,
        direct: &BTreeSet<Ipv4Addr>,
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
            self.routed = false;
        }
        if !self.routed {
            match kernel::mesh_default_route(&cfg.ns, host_ip).await {
                Ok(()) => self.routed = true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot route the ingress netns back to the host");
                    return;
                }
            }
        }
        let ports = published(s, &ingress, direct);
        let mut masked = vec![IpNet::V4(Ipv4Net::new(host_ip, 32).unwrap_or_default())];
        if let Ok(gw) = state.networks.get(super::GWBRIDGE) {
            masked.extend(
                gw.pools
                    .iter()
                    .map(|p| p.subnet)
                    .filter(|n| matches!(n, IpNet::V4(_))),
            );
        }
        let ns_text = ns_ruleset(me.addr(), &ports, &masked, direct);
        if self.ns_rules.as_ref() != Some(&ns_text) {
            match kernel::nft_in(&cfg.ns, ns_text.clone()).await {
                Ok(()) => {
                    tracing::debug!(ports = ports.len(), "routing mesh rotation programmed");
                    self.ns_rules = Some(ns_text)
                }
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
        self.routed = false;
        self.ns_rules = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(backends: &[&str], local: &[&str], preserve: bool) -> Published {
        let ips = |v: &[&str]| v.iter().map(|a| a.parse().unwrap()).collect();
        Published {
            proto: "tcp".into(),
            published: 30000,
            target: 80,
            backends: ips(backends),
            local: ips(local),
            preserve,
        }
    }

    #[test]
    fn host_and_ingress_rules() {
        let ports = vec![port(&["10.0.0.5"], &[], false)];
        let host = host_ruleset("t", "bmx", "169.254.1.2".parse().unwrap(), &ports);
        assert!(host.contains("fib daddr type local tcp dport 30000 dnat ip to 169.254.1.2"));
        assert!(host.contains("oifname \"bmx\" ip saddr 127.0.0.0/8 masquerade"));
        let masked = vec!["169.254.1.1/32".parse().unwrap()];
        let ns = ns_ruleset(
            "10.0.0.2".parse().unwrap(),
            &ports,
            &masked,
            &BTreeSet::new(),
        );
        assert!(ns.contains(
            "iifname \"mesh0\" tcp dport 30000 dnat ip to numgen inc mod 1 map { 0 : 10.0.0.5 . 80 }"
        ));
        assert!(ns.contains("oifname \"br0\" ip saddr { 169.254.1.1/32 } snat ip to 10.0.0.2"));
        assert!(ns.contains("oifname \"br0\" snat ip to 10.0.0.2"));
        assert!(!ns.contains("accept\n"));
    }

    #[test]
    fn local_tasks_skip_the_snat_and_preserve_prefers_them() {
        let direct: BTreeSet<Ipv4Addr> = ["10.0.0.6".parse().unwrap()].into();
        let spread = port(&["10.0.0.5", "10.0.0.6"], &["10.0.0.6"], false);
        let ns = ns_ruleset("10.0.0.2".parse().unwrap(), &[spread], &[], &direct);
        assert!(ns.contains("numgen inc mod 2 map { 0 : 10.0.0.5 . 80, 1 : 10.0.0.6 . 80 }"));
        assert!(ns.contains("oifname \"br0\" ip daddr { 10.0.0.6 } accept"));
        let preserve = port(&["10.0.0.5", "10.0.0.6"], &["10.0.0.6"], true);
        let ns = ns_ruleset("10.0.0.2".parse().unwrap(), &[preserve], &[], &direct);
        assert!(ns.contains("numgen inc mod 1 map { 0 : 10.0.0.6 . 80 }"));
        // No local task: through the mesh to the others, as without the label.
        let remote = port(&["10.0.0.5"], &[], true);
        let ns = ns_ruleset(
            "10.0.0.2".parse().unwrap(),
            &[remote],
            &[],
            &BTreeSet::new(),
        );
        assert!(ns.contains("numgen inc mod 1 map { 0 : 10.0.0.5 . 80 }"));
        assert!(preserves(
            &serde_json::json!({"Labels": {CLIENT_ADDRESS_LABEL: "preserve"}})
        ));
        assert!(!preserves(&serde_json::json!({"Labels": {}})));
    }
}
