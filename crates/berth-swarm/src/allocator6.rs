//! IPv6 on overlay networks (`network create -d overlay --ipv6`): a network's IPv6 subnet
//! (the user's, or the next /64 of a ULA /48 derived from the cluster's id), and an IPv6
//! address beside the IPv4 one for each task (`NetworksAttachments[].Addresses[1]`) and each
//! plain container. Services keep IPv4 virtual IPs only (see docs/architecture.md).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use serde_json::Value;

use crate::store::State;
use crate::types::{Network, Task};

/// Whether a network spec asks for IPv6 (the API's `EnableIPv6`).
pub fn enabled(spec: &Value) -> bool {
    spec["EnableIPv6"] == true
}

fn is_v6(cfg: &Value) -> bool {
    cfg["Subnet"].as_str().is_some_and(|s| s.contains(':'))
}

/// The IPAM config of a spec that is not IPv6 (the IPv4 one), if any.
pub fn v4_config(spec: &Value) -> Value {
    spec["IPAMOptions"]["Configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| !is_v6(c))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A new network's IPv6 subnet and gateway, when it asks for IPv6. Errors carry dockerd's or
/// swarmkit's texts.
pub fn allocate_subnet6(
    state: &State,
    spec: &Value,
) -> Result<Option<(Ipv6Net, Ipv6Addr)>, String> {
    let cfg = spec["IPAMOptions"]["Configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| is_v6(c))
        .cloned();
    if !enabled(spec) {
        // The local networks' text (berth-network) for the same mistake.
        return match cfg.as_ref().and_then(|c| c["Subnet"].as_str()) {
            Some(s) => Err(format!(
                "subnet {s} is IPv6 but IPv6 is not enabled on the network (--ipv6)"
            )),
            None => Ok(None),
        };
    }
    let taken: Vec<Ipv6Net> = state
        .networks
        .values()
        .filter_map(|n| n.driver_state.subnet6())
        .collect();
    let subnet = match cfg.as_ref().and_then(|c| c["Subnet"].as_str()) {
        Some(s) => {
            let net: Ipv6Net = s.parse().map_err(|_| format!("invalid subnet {s}"))?;
            if net.trunc() != net {
                return Err(format!("invalid subnet {s}: it has host bits set"));
            }
            if net.prefix_len() > 126 {
                return Err(format!(
                    "invalid subnet {s}: too small for an overlay network"
                ));
            }
            if taken
                .iter()
                .any(|t| t.contains(&net.network()) || net.contains(&t.network()))
            {
                return Err(format!(
                    "invalid pool request: Pool overlaps with other one on this address space ({s})"
                ));
            }
            net
        }
        None => {
            let pool = ula_pool(state);
            pool.subnets(64)
                .map_err(|e| e.to_string())?
                .find(|s| {
                    !taken
                        .iter()
                        .any(|t| t.contains(&s.network()) || s.contains(&t.network()))
                })
                .ok_or("could not find an available IPv6 address pool for the network")?
        }
    };
    let gateway = match cfg
        .as_ref()
        .and_then(|c| c["Gateway"].as_str())
        .filter(|g| !g.is_empty())
    {
        Some(g) => {
            let ip: Ipv6Addr = g
                .parse()
                .map_err(|_| format!("invalid gateway address {g}"))?;
            if !subnet.contains(&ip) {
                return Err(format!(
                    "invalid pool request: gateway {g} is not in subnet {subnet}"
                ));
            }
            ip
        }
        None => Ipv6Addr::from(u128::from(subnet.network()) + 1),
    };
    Ok(Some((subnet, gateway)))
}

/// The cluster's ULA /48 (`fdXX:XXXX:XXXX::/48`, RFC 4193's global id from its id).
fn ula_pool(state: &State) -> Ipv6Net {
    use sha2::Digest;
    let id = state
        .cluster()
        .map(|c| c.meta.id.clone())
        .unwrap_or_default();
    let d = sha2::Sha256::digest(id.as_bytes());
    let mut o = [0u8; 16];
    o[0] = 0xfd;
    o[1..6].copy_from_slice(&d[..5]);
    Ipv6Net::new(Ipv6Addr::from(o), 48).expect("a /48")
}

/// A task's IPv6 addresses on its networks: (network id, address with prefix).
pub fn task_addresses6(task: &Task) -> Vec<(String, IpNet)> {
    task.networks_attachments
        .iter()
        .filter_map(|a| {
            let id = a["Network"]["ID"].as_str()?.to_string();
            let addr = a["Addresses"]
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str()?.parse::<IpNet>().ok())
                .find(|a| matches!(a, IpNet::V6(_)))?;
            Some((id, addr))
        })
        .collect()
}

/// The IPv6 addresses in use per network: gateways, plain containers', and tasks' that hold
/// theirs.
pub fn used6(state: &State) -> BTreeMap<String, BTreeSet<Ipv6Addr>> {
    let mut used: BTreeMap<String, BTreeSet<Ipv6Addr>> = BTreeMap::new();
    for n in state.networks.values() {
        let set = used.entry(n.meta.id.clone()).or_default();
        if let Ok(gw) = n.driver_state.gateway6.parse() {
            set.insert(gw);
        }
        for a in n.driver_state.attachments6.values() {
            if let Ok(IpNet::V6(a)) = a.parse::<IpNet>() {
                set.insert(a.addr());
            }
        }
    }
    for t in state
        .tasks
        .values()
        .filter(|t| crate::allocator::holds_addresses(t))
    {
        for (net, addr) in task_addresses6(t) {
            if let IpAddr::V6(ip) = addr.addr() {
                used.entry(net).or_default().insert(ip);
            }
        }
    }
    used
}

/// The next free IPv6 address of a network with IPv6 (`None` without).
pub fn next6(net: &Network, used: &mut BTreeSet<Ipv6Addr>) -> Option<IpNet> {
    let subnet = net.driver_state.subnet6()?;
    let ip = subnet.hosts().skip(1).find(|ip| !used.contains(ip))?;
    used.insert(ip);
    Some(IpNet::V6(Ipv6Net::new(ip, subnet.prefix_len()).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Cluster, Meta};
    use serde_json::json;

    fn state() -> State {
        let mut s = State::default();
        s.put_object(crate::types::Object::Cluster(Cluster {
            meta: Meta::new("c".into()),
            default_addr_pool: vec!["10.0.0.0/8".into()],
            subnet_size: 24,
            ..Default::default()
        }));
        s
    }

    fn spec(subnet: Option<&str>, ipv6: bool) -> Value {
        let configs: Vec<Value> = subnet.map(|s| json!({"Subnet": s})).into_iter().collect();
        json!({"Name": "n", "EnableIPv6": ipv6, "IPAMOptions": {"Configs": configs}})
    }

    #[test]
    fn ipv6_subnets_are_the_users_or_the_clusters_ula() {
        let s = state();
        assert_eq!(allocate_subnet6(&s, &spec(None, false)).unwrap(), None);
        let err = allocate_subnet6(&s, &spec(Some("fd00:1::/64"), false)).unwrap_err();
        assert!(err.contains("IPv6 is not enabled"), "{err}");
        let err = allocate_subnet6(&s, &spec(Some("fd00:1::1/64"), true)).unwrap_err();
        assert!(err.contains("host bits"), "{err}");
        let (net, gw) = allocate_subnet6(&s, &spec(Some("fd00:1::/64"), true))
            .unwrap()
            .unwrap();
        assert_eq!(net.to_string(), "fd00:1::/64");
        assert_eq!(gw.to_string(), "fd00:1::1");
        let (ula, _) = allocate_subnet6(&s, &spec(None, true)).unwrap().unwrap();
        assert_eq!(ula.prefix_len(), 64);
        assert_eq!(ula.addr().octets()[0], 0xfd);
        // The IPv4 config is the one without a colon, wherever it is.
        let both = json!({"IPAMOptions": {"Configs": [{"Subnet": "fd00::/64"}, {"Subnet": "10.9.0.0/24"}]}});
        assert_eq!(v4_config(&both)["Subnet"], "10.9.0.0/24");
    }
}
