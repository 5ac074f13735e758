//! The leader's network allocator (swarmkit's `allocator`): subnets and VXLAN ids of swarm
//! networks (when they are created), a virtual IP per service per network, published ports
//! (30000–32767 when not given, Docker's range) and each task's addresses
//! (`NetworksAttachments`). [`allocate`] is a pure pass over a snapshot, run by the
//! controllers after the scheduler so that a task is assigned and addressed in one command
//! (the agent never starts a task before its addresses exist).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::{Op, State};
use crate::types::{Cluster, Meta, Network, Object, Service, Task, TaskState, new_id};

/// The first VXLAN id handed out (Docker's ingress gets 4096, the next networks 4097...).
pub const FIRST_VXLAN_ID: u32 = 4096;
/// Docker's range for published ports the user did not choose.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;
/// The driver option that asks for IPsec between nodes.
pub const OPT_ENCRYPTED: &str = "encrypted";
/// Docker's option key showing a network's VXLAN id.
pub const OPT_VXLAN_ID: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// What the allocator chose for a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAlloc {
    #[serde(rename = "VXLANID")]
    pub vxlan_id: u32,
    /// `10.0.1.0/24`
    pub subnet: String,
    /// `10.0.1.1`
    pub gateway: String,
    /// The ingress network only: each node's own address on it (its routing mesh's source
    /// address, as Docker's `ingress-sbox`), by node id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_addresses: BTreeMap<String, String>,
    /// Plain containers on an attachable network (`docker run --network`): container id ->
    /// (node id, address with prefix).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attachments: BTreeMap<String, (String, String)>,
    /// The names of those containers (container id -> name), for every node's embedded DNS.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attachment_names: BTreeMap<String, String>,
    /// A network with IPv6 (`--ipv6`): its IPv6 subnet and gateway (`crate::allocator6`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet6: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway6: String,
    /// The plain containers' IPv6 addresses (container id -> address with prefix).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attachments6: BTreeMap<String, String>,
}

impl NetworkAlloc {
    pub fn subnet(&self) -> Option<Ipv4Net> {
        self.subnet.parse().ok()
    }
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.gateway.parse().ok()
    }
    pub fn subnet6(&self) -> Option<ipnet::Ipv6Net> {
        self.subnet6.parse().ok()
    }
}

/// Chooses a new network's subnet (the user's, or the next free one of the cluster's
/// pools) and VXLAN id. Errors carry swarmkit's texts.
pub fn allocate_network(state: &State, spec: &Value) -> Result<NetworkAlloc, String> {
    let taken: Vec<Ipv4Net> = state
        .networks
        .values()
        .filter_map(|n| n.driver_state.subnet())
        .collect();
    let cfg = &crate::allocator6::v4_config(spec);
    let v6 = crate::allocator6::allocate_subnet6(state, spec)?;
    let given = cfg["Subnet"].as_str().filter(|s| !s.is_empty());
    let subnet = match given {
        Some(s) => {
            let net: Ipv4Net = s
                .parse()
                .map_err(|_| format!("invalid subnet {s}: only IPv4 subnets are supported"))?;
            if net.trunc() != net {
                return Err(format!("invalid subnet {s}: it has host bits set"));
            }
            if taken.iter().any(|t| overlaps(t, &net)) {
                return Err(format!(
                    "invalid pool request: Pool overlaps with other one on this address space ({s})"
                ));
            }
            net
        }
        None => {
            let cluster = state.cluster().ok_or("no cluster")?;
            next_subnet(cluster, &taken).ok_or_else(|| {
                "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".to_string()
            })?
        }
    };
    let gateway = match cfg["Gateway"].as_str().filter(|s| !s.is_empty()) {
        Some(g) => {
            let ip: Ipv4Addr = g
                .parse()
                .map_err(|_| format!("invalid gateway address {g}"))?;
            if !subnet.contains(&ip) {
                return Err(format!(
                    "invalid pool request: gateway {g} is not in subnet {subnet}"
                ));
            }
            ip
        }
        None => first_host(&subnet),
    };
    let used: BTreeSet<u32> = state
        .networks
        .values()
        .map(|n| n.driver_state.vxlan_id)
        .collect();
    let vxlan_id = (FIRST_VXLAN_ID..).find(|i| !used.contains(i)).unwrap_or(0);
    Ok(NetworkAlloc {
        vxlan_id,
        subnet: subnet.to_string(),
        gateway: gateway.to_string(),
        node_addresses: BTreeMap::new(),
        attachments: BTreeMap::new(),
        attachment_names: BTreeMap::new(),
        subnet6: v6.map(|v| v.0.to_string()).unwrap_or_default(),
        gateway6: v6.map(|v| v.1.to_string()).unwrap_or_default(),
        attachments6: BTreeMap::new(),
    })
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

fn next_subnet(cluster: &Cluster, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let size = if cluster.subnet_size == 0 {
        24
    } else {
        cluster.subnet_size as u8
    };
    for pool in &cluster.default_addr_pool {
        let Ok(pool) = pool.parse::<Ipv4Net>() else {
            continue;
        };
        let Ok(mut subnets) = pool.subnets(size.max(pool.prefix_len())) else {
            continue;
        };
        if let Some(free) = subnets.find(|s| !taken.iter().any(|t| overlaps(t, s))) {
            return Some(free);
        }
    }
    None
}

/// The `ingress` network `swarm init` makes: the pool's first subnet (10.0.0.0/24 by
/// default), as Docker.
pub fn ingress_network(state: &State) -> Result<Network, String> {
    let spec = json!({
        "Name": "ingress",
        "Labels": {},
        "DriverConfiguration": {"Name": "overlay"},
        "Ingress": true,
        "IPAMOptions": {"Driver": {"Name": "default"}, "Configs": []},
        "Scope": "swarm",
    });
    let alloc = allocate_network(state, &spec)?;
    let mut spec = spec;
    spec["IPAMOptions"]["Configs"] = json!([{"Subnet": alloc.subnet, "Gateway": alloc.gateway}]);
    Ok(Network {
        meta: Meta::new(new_id()),
        spec,
        driver_state: alloc,
    })
}

/// A network as the API shows it inside tasks (`NetworksAttachments[].Network`).
pub fn network_json(n: &Network) -> Value {
    let mut configs =
        vec![json!({"Subnet": n.driver_state.subnet, "Gateway": n.driver_state.gateway})];
    if !n.driver_state.subnet6.is_empty() {
        configs.push(json!({"Subnet": n.driver_state.subnet6, "Gateway": n.driver_state.gateway6}));
    }
    json!({
        "ID": n.meta.id,
        "Version": n.meta.version,
        "CreatedAt": n.meta.created_at,
        "UpdatedAt": n.meta.updated_at,
        "Spec": n.spec,
        "DriverState": {
            "Name": "overlay",
            "Options": {OPT_VXLAN_ID: n.driver_state.vxlan_id.to_string()},
        },
        "IPAMOptions": {
            "Driver": {"Name": "default"},
            "Configs": configs,
        },
    })
}

/// The networks a service's tasks join, by id: ingress first when it publishes ports in
/// ingress mode, then the task template's networks in order. Names resolve too.
pub fn service_networks(state: &State, service: &Service) -> Vec<String> {
    let mut out = Vec::new();
    if publishes_ingress(&service.spec)
        && let Some(ingress) = state.networks.values().find(|n| n.ingress())
    {
        out.push(ingress.meta.id.clone());
    }
    let template = &service.spec["TaskTemplate"]["Networks"];
    let legacy = &service.spec["Networks"];
    for a in template
        .as_array()
        .into_iter()
        .flatten()
        .chain(legacy.as_array().into_iter().flatten())
    {
        let target = a["Target"].as_str().unwrap_or_default();
        if let Some(n) = state.find_network(target)
            && !out.contains(&n.meta.id)
        {
            out.push(n.meta.id.clone());
        }
    }
    out
}

/// The aliases a service's tasks have on a network (`--network name=N,alias=A`).
pub fn service_aliases(service: &Service, network: &Network) -> Vec<String> {
    let template = &service.spec["TaskTemplate"]["Networks"];
    template
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            let t = a["Target"].as_str().unwrap_or_default();
            t == network.meta.id || t == network.name()
        })
        .flat_map(|a| a["Aliases"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn publishes_ingress(spec: &Value) -> bool {
    spec["EndpointSpec"]["Ports"]
        .as_array()
        .is_some_and(|ports| ports.iter().any(|p| publish_mode(p) == "ingress"))
}

fn publish_mode(p: &Value) -> &str {
    p["PublishMode"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or("ingress")
}

/// `vip` (the default) or `dnsrr`.
pub fn endpoint_mode(service: &Service) -> &str {
    service.spec["EndpointSpec"]["Mode"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or("vip")
}

/// A task's addresses on its networks: (network id, address with prefix).
pub fn task_addresses(task: &Task) -> Vec<(String, IpNet)> {
    task.networks_attachments
        .iter()
        .filter_map(|a| {
            let id = a["Network"]["ID"].as_str()?.to_string();
            let addr = a["Addresses"][0].as_str()?.parse().ok()?;
            Some((id, addr))
        })
        .collect()
}

/// A service's virtual IPs: (network id, address with prefix).
pub fn service_vips(service: &Service) -> Vec<(String, IpNet)> {
    service.endpoint["VirtualIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let id = v["NetworkID"].as_str()?.to_string();
            let addr = v["Addr"].as_str()?.parse().ok()?;
            Some((id, addr))
        })
        .collect()
}

/// The addresses in use per network: gateways, VIPs, and the addresses of tasks that still
/// hold them (not past running), and containers attached to attachable networks.
fn used_addresses(state: &State) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    let mut used: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for n in state.networks.values() {
        let set = used.entry(n.meta.id.clone()).or_default();
        if let Some(gw) = n.driver_state.gateway() {
            set.insert(gw);
        }
        for (_, a) in n.driver_state.attachments.values() {
            if let Ok(IpNet::V4(a)) = a.parse::<IpNet>() {
                set.insert(a.addr());
            }
        }
        for a in n.driver_state.node_addresses.values() {
            if let Ok(IpNet::V4(a)) = a.parse::<IpNet>() {
                set.insert(a.addr());
            }
        }
    }
    for s in state.services.values() {
        for (net, addr) in service_vips(s) {
            if let IpAddr::V4(ip) = addr.addr() {
                used.entry(net).or_default().insert(ip);
            }
        }
    }
    for t in state.tasks.values().filter(|t| holds_addresses(t)) {
        for (net, addr) in task_addresses(t) {
            if let IpAddr::V4(ip) = addr.addr() {
                used.entry(net).or_default().insert(ip);
            }
        }
    }
    used
}

/// A task keeps its addresses until it is past running (its container is gone or exited).
pub fn holds_addresses(t: &Task) -> bool {
    !t.status.state.is_terminal()
}

fn next_address(net: &Network, used: &mut BTreeSet<Ipv4Addr>) -> Option<IpNet> {
    let subnet = net.driver_state.subnet()?;
    let ip = subnet
        .hosts()
        .find(|ip| !used.contains(ip) && *ip != subnet.broadcast())?;
    used.insert(ip);
    Some(IpNet::V4(Ipv4Net::new(ip, subnet.prefix_len()).ok()?))
}

/// One pass: services' endpoints (VIPs and ports) and new tasks' addresses.
pub fn allocate(state: &State) -> Vec<Op> {
    let mut used = used_addresses(state);
    let mut used6 = crate::allocator6::used6(state);
    let mut ops = Vec::new();
    let mut ports_used: BTreeSet<(String, u32)> = BTreeSet::new();
    for s in state.services.values() {
        for p in s.endpoint["Ports"].as_array().into_iter().flatten() {
            if let Some(port) = p["PublishedPort"].as_u64().filter(|p| *p > 0) {
                let proto = p["Protocol"].as_str().unwrap_or("tcp").to_string();
                ports_used.insert((proto, port as u32));
            }
        }
    }
    // Every node gets an address on the ingress network (its mesh's source address).
    for n in state.networks.values().filter(|n| n.ingress()) {
        let missing: Vec<&String> = state
            .nodes
            .keys()
            .filter(|id| !n.driver_state.node_addresses.contains_key(*id))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let mut n2 = Network::clone(n);
        let set = used.entry(n.meta.id.clone()).or_default();
        for id in missing {
            if let Some(addr) = next_address(n, set) {
                n2.driver_state
                    .node_addresses
                    .insert(id.clone(), addr.to_string());
            }
        }
        ops.push(Op::Update {
            expect: Some(n.meta.version.index),
            object: Object::Network(n2),
        });
    }
    for s in state.services.values() {
        let endpoint = service_endpoint(state, s, &mut used, &mut ports_used);
        if endpoint != s.endpoint {
            let mut s = Service::clone(s);
            s.endpoint = endpoint;
            ops.push(Op::Update {
                expect: Some(s.meta.version.index),
                object: Object::Service(s),
            });
        }
    }
    for t in state.tasks.values() {
        if !t.networks_attachments.is_empty()
            || t.desired_state > TaskState::Running
            || t.status.state.is_terminal()
        {
            continue;
        }
        let Some(service) = state.services.get(&t.service_id) else {
            continue;
        };
        let mut attachments = Vec::new();
        for id in service_networks(state, service) {
            let Some(net) = state.networks.get(&id) else {
                continue;
            };
            let set = used.entry(id.clone()).or_default();
            let Some(addr) = next_address(net, set) else {
                tracing::warn!(network = %net.name(), "no address left for a task");
                continue;
            };
            let mut addresses = vec![addr.to_string()];
            if let Some(a6) = crate::allocator6::next6(net, used6.entry(id.clone()).or_default()) {
                addresses.push(a6.to_string());
            }
            attachments.push(json!({
                "Network": network_json(net),
                "Addresses": addresses,
            }));
        }
        if attachments.is_empty() {
            continue;
        }
        let mut t = Task::clone(t);
        t.networks_attachments = attachments;
        ops.push(Op::Update {
            expect: Some(t.meta.version.index),
            object: Object::Task(t),
        });
    }
    ops
}

/// The endpoint a service should have: its spec, its ports (published ports chosen), and a
/// VIP on each of its networks in `vip` mode (kept when it already has one).
fn service_endpoint(
    state: &State,
    s: &Service,
    used: &mut BTreeMap<String, BTreeSet<Ipv4Addr>>,
    ports_used: &mut BTreeSet<(String, u32)>,
) -> Value {
    let spec = s.spec.get("EndpointSpec").cloned().unwrap_or(json!({}));
    let old_ports: Vec<Value> = s.endpoint["Ports"].as_array().cloned().unwrap_or_default();
    let mut ports = Vec::new();
    // Ports the spec names: an earlier automatic choice must not be one of them.
    let mut claimed: BTreeSet<(String, u64)> = spec["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = p["PublishedPort"].as_u64().filter(|p| *p > 0)?;
            Some((p["Protocol"].as_str().unwrap_or("tcp").to_string(), port))
        })
        .collect();
    for p in spec["Ports"].as_array().into_iter().flatten() {
        let proto = p["Protocol"].as_str().unwrap_or("tcp").to_string();
        let target = p["TargetPort"].as_u64().unwrap_or(0);
        let mode = publish_mode(p).to_string();
        let mut published = p["PublishedPort"].as_u64().unwrap_or(0) as u32;
        if published == 0 && mode == "ingress" {
            // Keep the port chosen before, else the lowest free one.
            published = old_ports
                .iter()
                .filter(|o| o["TargetPort"] == target && o["Protocol"] == proto.as_str())
                .filter_map(|o| o["PublishedPort"].as_u64())
                .find(|p| {
                    DYNAMIC_PORTS.contains(&(*p as u32)) && !claimed.contains(&(proto.clone(), *p))
                })
                .map(|p| p as u32)
                .or_else(|| {
                    DYNAMIC_PORTS
                        .clone()
                        .find(|port| !ports_used.contains(&(proto.clone(), *port)))
                })
                .unwrap_or(0);
            ports_used.insert((proto.clone(), published));
            claimed.insert((proto.clone(), published as u64));
        }
        let mut port = json!({
            "Protocol": proto,
            "TargetPort": target,
            "PublishedPort": published,
            "PublishMode": mode,
        });
        if let Some(name) = p["Name"].as_str().filter(|n| !n.is_empty()) {
            port["Name"] = json!(name);
        }
        ports.push(port);
    }
    let mut endpoint = json!({"Spec": spec});
    if !ports.is_empty() {
        endpoint["Ports"] = json!(ports);
    }
    let networks = service_networks(state, s);
    let vip_mode = endpoint_mode(s) == "vip";
    let old = service_vips(s);
    let mut vips = Vec::new();
    for id in networks {
        let ingress = state.networks.get(&id).is_some_and(|n| n.ingress());
        if !vip_mode && !ingress {
            continue;
        }
        let addr = match old.iter().find(|(n, _)| *n == id) {
            Some((_, a)) => Some(*a),
            None => state
                .networks
                .get(&id)
                .and_then(|net| next_address(net, used.entry(id.clone()).or_default())),
        };
        if let Some(addr) = addr {
            vips.push(json!({"NetworkID": id, "Addr": addr.to_string()}));
        }
    }
    if !vips.is_empty() {
        endpoint["VirtualIPs"] = json!(vips);
    }
    endpoint
}

/// The local networking of a task's container: on overlays, it joins `docker_gwbridge`
/// (its way out and its embedded DNS), whose interface is named after the overlays' as in
/// Docker: `eth0` the first attachment (ingress when the service publishes through the
/// mesh), then the others, `docker_gwbridge` last; the overlay agent adds the overlay
/// interfaces. Ports published in `host` mode are `task_config`'s.
pub fn task_networking(task: &Task, config: &mut Value) {
    if !task.networks_attachments.is_empty() {
        config["HostConfig"]["NetworkMode"] = json!("docker_gwbridge");
        let ifname = format!("eth{}", task.networks_attachments.len());
        let gwbridge = &mut config["NetworkingConfig"]["EndpointsConfig"]["docker_gwbridge"];
        gwbridge["DriverOpts"]["com.docker.network.endpoint.ifname"] = json!(ifname);
    }
}

/// Whether any service (or task not yet finished) still uses the network: Docker refuses to
/// remove it then.
pub fn network_in_use(state: &State, id: &str) -> Option<String> {
    state
        .services
        .values()
        .find(|s| service_networks(state, s).iter().any(|n| n == id))
        .map(|s| s.name().to_string())
}

/// The network with an address for a plain container of `node` (an attachable network's
/// `docker run --network`), or why not.
pub fn attach_container(
    state: &State,
    network: &str,
    container: &str,
    node: &str,
) -> Result<Network, String> {
    let n = state
        .networks
        .get(network)
        .ok_or_else(|| format!("network {network} not found"))?;
    let mut used = used_addresses(state).remove(network).unwrap_or_default();
    let addr = next_address(n, &mut used)
        .ok_or_else(|| format!("no address left on network {}", n.name()))?;
    let mut used6 = crate::allocator6::used6(state)
        .remove(network)
        .unwrap_or_default();
    let addr6 = crate::allocator6::next6(n, &mut used6);
    let mut n = Network::clone(n);
    n.driver_state
        .attachments
        .insert(container.to_string(), (node.to_string(), addr.to_string()));
    if let Some(a6) = addr6 {
        n.driver_state
            .attachments6
            .insert(container.to_string(), a6.to_string());
    }
    Ok(n)
}

/// Adds to a worker's projection what its overlay agent needs: the networks of its tasks
/// (and ingress when a port is published), every task holding an address on them with its
/// service and node (peers, VIP backends, names), and the VXLAN port. The cluster object goes
/// without its keys and tokens.
pub fn project_networks(state: &State, node_id: &str, out: &mut State) {
    let mut nets: BTreeSet<String> = out
        .tasks
        .values()
        .flat_map(|t| task_addresses(t))
        .map(|(n, _)| n)
        .collect();
    let published = state.services.values().any(|s| {
        s.endpoint["Ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["PublishMode"] == "ingress"))
    });
    // Ingress is every node's (its routing mesh; `network ls` on a worker shows it, as
    // dockerd's), and so are the attachable networks its plain containers are on.
    if let Some(ingress) = state.networks.values().find(|n| n.ingress()) {
        nets.insert(ingress.meta.id.clone());
    }
    for n in state.networks.values() {
        if n.driver_state
            .attachments
            .values()
            .any(|(on, _)| on == node_id)
        {
            nets.insert(n.meta.id.clone());
        }
    }
    for id in &nets {
        if let Some(n) = state.networks.get(id) {
            out.networks.insert(id.clone(), n.clone());
        }
    }
    for t in state.tasks.values() {
        if !holds_addresses(t) || !task_addresses(t).iter().any(|(n, _)| nets.contains(n)) {
            continue;
        }
        out.tasks
            .entry(t.meta.id.clone())
            .or_insert_with(|| t.clone());
        if let Some(s) = state.services.get(&t.service_id) {
            out.services
                .entry(s.meta.id.clone())
                .or_insert_with(|| s.clone());
        }
        if let Some(n) = state.nodes.get(&t.node_id) {
            out.nodes
                .entry(n.meta.id.clone())
                .or_insert_with(|| n.clone());
        }
    }
    // Services published through the mesh, even with no task on this node.
    if published {
        for s in state.services.values() {
            out.services
                .entry(s.meta.id.clone())
                .or_insert_with(|| s.clone());
        }
    }
    for n in state.nodes.values() {
        out.nodes
            .entry(n.meta.id.clone())
            .or_insert_with(|| n.clone());
    }
    if let Some(c) = state.cluster() {
        let lean = Cluster {
            meta: c.meta.clone(),
            data_path_port: c.data_path_port,
            default_addr_pool: c.default_addr_pool.clone(),
            subnet_size: c.subnet_size,
            spec: c.spec.clone(),
            ..Default::default()
        };
        out.clusters
            .insert(lean.meta.id.clone(), std::sync::Arc::new(lean));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TaskStatus;

    fn state() -> State {
        let mut s = State::default();
        s.put_object(crate::types::Object::Cluster(Cluster {
            meta: Meta::new("c".into()),
            default_addr_pool: vec!["10.0.0.0/8".into()],
            subnet_size: 24,
            ..Default::default()
        }));
        let ingress = ingress_network(&s).unwrap();
        s.put_object(crate::types::Object::Network(ingress));
        s
    }

    fn add_network(s: &mut State, name: &str) -> String {
        let spec = json!({"Name": name, "DriverConfiguration": {"Name": "overlay"}});
        let alloc = allocate_network(s, &spec).unwrap();
        let n = Network {
            meta: Meta::new(new_id()),
            spec,
            driver_state: alloc,
        };
        let id = n.meta.id.clone();
        s.put_object(crate::types::Object::Network(n));
        id
    }

    #[test]
    fn subnets_and_vxlan_ids_come_in_order() {
        let mut s = state();
        let ingress = s.networks.values().next().unwrap().clone();
        assert_eq!(ingress.driver_state.subnet, "10.0.0.0/24");
        assert_eq!(ingress.driver_state.vxlan_id, 4096);
        let id = add_network(&mut s, "backend");
        assert_eq!(s.networks[&id].driver_state.subnet, "10.0.1.0/24");
        assert_eq!(s.networks[&id].driver_state.gateway, "10.0.1.1");
        assert_eq!(s.networks[&id].driver_state.vxlan_id, 4097);
        let clash = json!({"Name": "x", "IPAMOptions": {"Configs": [{"Subnet": "10.0.1.128/25"}]}});
        assert!(
            allocate_network(&s, &clash)
                .unwrap_err()
                .contains("overlaps")
        );
    }

    #[test]
    fn services_get_vips_ports_and_tasks_addresses() {
        let mut s = state();
        let backend = add_network(&mut s, "backend");
        let svc = Service {
            meta: Meta::new("svc".into()),
            spec: json!({
                "Name": "web",
                "TaskTemplate": {"Networks": [{"Target": "backend"}]},
                "EndpointSpec": {"Ports": [{"TargetPort": 80}]},
            }),
            ..Default::default()
        };
        s.put_object(crate::types::Object::Service(svc));
        s.put_object(crate::types::Object::Task(Task {
            meta: Meta::new("t1".into()),
            service_id: "svc".into(),
            status: TaskStatus::new(TaskState::Assigned, "assigned"),
            desired_state: TaskState::Running,
            ..Default::default()
        }));
        let ops = allocate(&s);
        let mut next = s.clone();
        next.apply(1, &crate::store::Command { ops }).unwrap();
        let svc = &next.services["svc"];
        assert_eq!(svc.endpoint["Ports"][0]["PublishedPort"], 30000);
        let vips = service_vips(svc);
        assert_eq!(vips.len(), 2);
        assert_eq!(vips[1].0, backend);
        assert_eq!(vips[1].1.to_string(), "10.0.1.2/24");
        let addrs = task_addresses(&next.tasks["t1"]);
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[1].1.to_string(), "10.0.1.3/24");
        // A second pass changes nothing.
        assert!(allocate(&next).is_empty());
    }
}
