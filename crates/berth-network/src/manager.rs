//! [`Networks`]: the network service. It owns the network records and each container's
//! endpoints (see [`crate::store`]), decides addresses ([`crate::ipam`]), and drives the data
//! plane: bridges, a netns per running container with its veth endpoints, published ports
//! (proxy + firewall) and the embedded DNS server of user-defined networks.
//!
//! Mutations are serialised by one async lock (`op`); reads take the state mutex only. The
//! firewall is rewritten as a whole from the state after every change.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use berth_api::Filters;
use berth_api::models::container::{EndpointSettings, NetworkSettings, Port, PortBinding};
use berth_api::models::network::{
    ConfigReference, Ipam, IpamConfig, NetworkContainer, NetworkCreateRequest, NetworkResource,
};
use ipnet::IpNet;

use crate::control_error::{ControlError, Result};
use crate::dns::{self, DnsServer, Resolver};
use crate::firewall::{BridgeRules, Firewall, PortForward, Ruleset};
use crate::ipam::{self, DefaultPool, Pool};
use crate::proxy::{self, PortProxy};
use crate::store::{
    Attachment, ContainerNet, NetworkRecord, PortSpec, Published, Requested, Running, Store,
};
use crate::{Proto, link, netns};

/// The default bridge's Docker option naming its device.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// How the daemon configured networking.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    pub data_root: PathBuf,
    /// Netns files live in `<exec_root>/netns/<container-id>`.
    pub exec_root: PathBuf,
    /// The default bridge's device (`--bridge`); `none` means no default bridge network.
    pub bridge: String,
    /// `--bip`: the default bridge's gateway address and prefix.
    pub bip: Option<IpNet>,
    /// `--fixed-cidr`: where the default bridge's containers get addresses.
    pub fixed_cidr: Option<IpNet>,
    /// Where subnets of networks created without `--subnet` come from.
    pub default_pools: Vec<DefaultPool>,
    /// The nftables table; `None` disables firewall management (`--iptables=false`).
    pub firewall_table: Option<String>,
    /// `--mtu` of the default bridge.
    pub mtu: Option<u32>,
}

/// Where network events go.
pub trait NetworkEvents: Send + Sync {
    fn network_event(&self, action: &str, id: &str, attributes: BTreeMap<String, String>);
}

/// What a started container's networking gives the container manager.
#[derive(Debug, Clone, Default)]
pub struct StartInfo {
    /// The netns to join; `None` keeps the runtime's own choice (host, private).
    pub netns: Option<PathBuf>,
    /// The container's addresses on its networks (for `/etc/hosts`), primary first.
    pub addresses: Vec<IpAddr>,
    /// Whether `/etc/resolv.conf` must point at the embedded server (user networks).
    pub embedded_dns: bool,
    /// What `host-gateway` means in `--add-host`: the default bridge's gateway.
    pub host_gateway: Option<IpAddr>,
}

/// The running parts of a container that live only in the daemon.
#[derive(Default)]
struct Live {
    proxies: Vec<PortProxy>,
    dns: Option<DnsServer>,
}

#[derive(Default)]
struct State {
    networks: BTreeMap<String, NetworkRecord>,
    containers: BTreeMap<String, ContainerNet>,
}

struct Inner {
    opts: NetworkOptions,
    store: Store,
    state: Mutex<State>,
    live: Mutex<HashMap<String, Live>>,
    firewall: Option<Firewall>,
    events: Arc<dyn NetworkEvents>,
    op: tokio::sync::Mutex<()>,
}

/// The network service (cheap to clone).
#[derive(Clone)]
pub struct Networks {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// `80/tcp` → (80, tcp); Docker's message for anything else.
pub fn parse_port_key(key: &str) -> Result<(u16, u16, Proto)> {
    let (ports, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" | "" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => {
            return Err(ControlError::invalid(format!(
                "invalid port specification: sctp is not supported: {key:?}"
            )));
        }
        _ => {
            return Err(ControlError::invalid(format!("invalid proto: {proto}")));
        }
    };
    let (lo, hi) = parse_range(ports)
        .ok_or_else(|| ControlError::invalid(format!("invalid port specification: {key:?}")))?;
    Ok((lo, hi, proto))
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().ok()?;
    let b: u16 = b.parse().ok()?;
    (a <= b).then_some((a, b))
}

impl Networks {
    /// Loads the records, makes the predefined networks and their bridges exist, re-creates
    /// the proxies and DNS servers of containers recorded as running, removes netns files of
    /// containers that are not, and applies the firewall.
    pub async fn open(opts: NetworkOptions, events: Arc<dyn NetworkEvents>) -> Result<Networks> {
        let store = Store::open(&opts.data_root, &opts.exec_root)?;
        let netns_dir = opts.exec_root.join("netns");
        std::fs::create_dir_all(&netns_dir)
            .map_err(|e| ControlError::io("create", &netns_dir, e))?;
        let mut state = State::default();
        for n in store.networks() {
            state.networks.insert(n.id.clone(), n);
        }
        for c in store.containers() {
            state.containers.insert(c.id.clone(), c);
        }
        let me = Networks {
            inner: Arc::new(Inner {
                firewall: opts.firewall_table.as_deref().map(Firewall::new),
                opts,
                store,
                state: Mutex::new(state),
                live: Mutex::new(HashMap::new()),
                events,
                op: tokio::sync::Mutex::new(()),
            }),
        };
        me.ensure_predefined().await?;
        // Addresses in use come from the endpoints of running containers.
        {
            let mut guard = lock(&me.inner.state);
            let st = &mut *guard;
            for c in st.containers.values() {
                for a in c.running.iter().flat_map(|r| &r.attachments) {
                    if let Some(n) = st.networks.get_mut(&a.network_id) {
                        for ip in [a.ipv4, a.ipv6].into_iter().flatten() {
                            for p in &mut n.pools {
                                p.mark(ip.addr());
                            }
                        }
                    }
                }
            }
        }
        let bridges: Vec<NetworkRecord> = lock(&me.inner.state)
            .networks
            .values()
            .filter(|n| n.is_bridge() && !n.predefined)
            .cloned()
            .collect();
        for n in bridges {
            if let Err(e) = me.ensure_bridge(&n).await {
                tracing::warn!(network = %n.name, error = %e, "cannot set up the bridge of a network");
            }
        }
        // Running containers keep their addresses; their daemon-side parts are re-made.
        let running: Vec<ContainerNet> = lock(&me.inner.state)
            .containers
            .values()
            .filter(|c| c.running.is_some())
            .cloned()
            .collect();
        let mut known = std::collections::HashSet::new();
        for c in running {
            let r = c.running.as_ref().expect("filtered");
            known.insert(r.netns.clone());
            if !r.netns.exists() {
                me.forget_running(&c.id);
                continue;
            }
            match me.make_live(&c).await {
                Ok(live) => {
                    lock(&me.inner.live).insert(c.id.clone(), live);
                }
                Err(e) => {
                    tracing::warn!(container = %c.id, error = %e, "cannot re-create published ports or DNS")
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(&netns_dir) {
            for e in rd.flatten() {
                if !known.contains(&e.path()) {
                    let _ = netns::remove(&e.path());
                }
            }
        }
        me.apply_firewall();
        Ok(me)
    }

    /// The container manager calls this for running containers it found dead at start.
    fn forget_running(&self, id: &str) {
        let mut guard = lock(&self.inner.state);
        let st = &mut *guard;
        if let Some(c) = st.containers.get_mut(id)
            && let Some(r) = c.running.take()
        {
            release(&mut st.networks, &r);
            let _ = self.inner.store.save_container(c);
        }
    }

    async fn ensure_predefined(&self) -> Result<()> {
        let o = self.inner.opts.clone();
        let existing = |name: &str| -> Option<NetworkRecord> {
            lock(&self.inner.state)
                .networks
                .values()
                .find(|n| n.predefined && n.name == name)
                .cloned()
        };
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if existing(name).is_none() {
                let n = NetworkRecord {
                    id: random_hex(32),
                    name: name.into(),
                    driver: driver.into(),
                    created: now_text(),
                    enable_ipv4: true,
                    predefined: true,
                    ..Default::default()
                };
                self.inner.store.save_network(&n)?;
                lock(&self.inner.state).networks.insert(n.id.clone(), n);
            }
        }
        let old = existing("bridge");
        if o.bridge == "none" {
            if let Some(old) = old {
                self.inner.store.delete_network(&old.id)?;
                lock(&self.inner.state).networks.remove(&old.id);
            }
            return Ok(());
        }
        let pool = match (o.bip, self.bridge_ipv4(&o).await) {
            (Some(bip), _) => Pool::new(bip.trunc(), o.fixed_cidr, Some(bip.addr()), vec![])?,
            // dockerd without --bip adopts the address its bridge already has (left up by an
            // earlier daemon, or set by the operator) rather than adding another subnet.
            (None, Some(addr)) => {
                let gateway = (addr.addr() != addr.network()).then_some(addr.addr());
                Pool::new(addr.trunc(), o.fixed_cidr, gateway, vec![])?
            }
            (None, None) => match &old {
                Some(n) if n.device == o.bridge && !n.pools.is_empty() => {
                    let mut p = n.pools[0].clone();
                    p.range = o.fixed_cidr;
                    p
                }
                _ => {
                    let mut taken = self.host_taken().await;
                    taken.extend(
                        lock(&self.inner.state)
                            .networks
                            .values()
                            .filter(|n| !n.predefined)
                            .flat_map(|n| n.subnets()),
                    );
                    let subnet = ipam::choose_subnet(&o.default_pools, &taken, false)
                        .ok_or_else(|| {
                            ControlError::unavailable(
                                "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                            )
                        })?;
                    Pool::new(subnet, o.fixed_cidr, None, vec![])?
                }
            },
        };
        let mut n = old.unwrap_or_else(|| NetworkRecord {
            id: random_hex(32),
            name: "bridge".into(),
            driver: "bridge".into(),
            created: now_text(),
            enable_ipv4: true,
            predefined: true,
            ..Default::default()
        });
        if let Some(old_pool) = n.pools.first() {
            // Keep the cursor (and running containers' leases) when the subnet is unchanged.
            if old_pool.subnet == pool.subnet {
                let mut p = pool.clone();
                p.last = old_pool.last;
                n.pools = vec![p];
            } else {
                n.pools = vec![pool];
            }
        } else {
            n.pools = vec![pool];
        }
        n.device = o.bridge.clone();
        n.options = [
            ("com.docker.network.bridge.default_bridge", "true"),
            ("com.docker.network.bridge.enable_icc", "true"),
            ("com.docker.network.bridge.enable_ip_masquerade", "true"),
            ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
            (BRIDGE_NAME_OPTION, o.bridge.as_str()),
            (
                "com.docker.network.driver.mtu",
                &o.mtu.unwrap_or(1500).to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        self.ensure_bridge(&n).await?;
        self.inner.store.save_network(&n)?;
        lock(&self.inner.state).networks.insert(n.id.clone(), n);
        Ok(())
    }

    /// The IPv4 address the default bridge's device already has, if it exists with one: the
    /// first, or the first inside `--fixed-cidr` (dockerd's `initBridgeDriver`).
    async fn bridge_ipv4(&self, o: &NetworkOptions) -> Option<IpNet> {
        let have = match link::device_addresses(&o.bridge).await {
            Ok(Some(have)) => have,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(bridge = %o.bridge, error = %e, "cannot read the bridge's addresses");
                return None;
            }
        };
        let v4: Vec<IpNet> = have
            .into_iter()
            .filter(|a| matches!(a, IpNet::V4(_)))
            .collect();
        o.fixed_cidr
            .and_then(|f| v4.iter().find(|a| f.contains(&a.addr())).copied())
            .or_else(|| v4.first().copied())
    }

    /// Subnets a new network must not overlap: the host's routes and addresses.
    async fn host_taken(&self) -> Vec<IpNet> {
        let mut v = link::host_routes().await.unwrap_or_default();
        v.extend(link::host_addresses().await.unwrap_or_default());
        // The default route covers everything and says nothing about collisions.
        v.retain(|n| n.prefix_len() != 0);
        v
    }

    async fn ensure_bridge(&self, n: &NetworkRecord) -> Result<()> {
        let addresses = n
            .pools
            .iter()
            .filter_map(|p| p.gateway.map(|g| p.with_prefix(g)))
            .collect();
        link::ensure_bridge(&link::BridgeConfig {
            device: n.device.clone(),
            addresses,
            mtu: n.mtu(),
        })
        .await
        .map_err(ControlError::data(format!(
            "cannot set up bridge {} of network {}",
            n.device, n.name
        )))
    }

    fn event(&self, action: &str, n: &NetworkRecord, extra: &[(&str, &str)]) {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), n.name.clone());
        attrs.insert("type".to_string(), n.driver.clone());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.to_string());
        }
        self.inner.events.network_event(action, &n.id, attrs);
    }

    // ---- networks ----

    /// Finds a network by full id, exact name, or unique id prefix (Docker's order).
    fn find(st: &State, key: &str) -> Result<NetworkRecord> {
        if let Some(n) = st.networks.get(key) {
            return Ok(n.clone());
        }
        if let Some(n) = st.networks.values().find(|n| n.name == key) {
            return Ok(n.clone());
        }
        let hits: Vec<&NetworkRecord> = st
            .networks
            .values()
            .filter(|n| !key.is_empty() && n.id.starts_with(key))
            .collect();
        match hits.len() {
            1 => Ok(hits[0].clone()),
            0 => Err(ControlError::not_found(format!("network {key} not found"))),
            _ => Err(ControlError::invalid(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                hits.len()
            ))),
        }
    }

    pub fn get(&self, key: &str) -> Result<NetworkRecord> {
        Self::find(&lock(&self.inner.state), key)
    }

    /// `POST /networks/create`.
    pub async fn create(&self, req: NetworkCreateRequest) -> Result<String> {
        let _op = self.inner.op.lock().await;
        check_network_name(&req.name)?;
        if lock(&self.inner.state)
            .networks
            .values()
            .any(|n| n.name == req.name)
        {
            return Err(ControlError::conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let driver = if req.driver.is_empty() {
            "bridge"
        } else {
            req.driver.as_str()
        };
        match driver {
            "bridge" => {}
            "host" | "null" => {
                return Err(ControlError::Forbidden(format!(
                    "only one instance of \"{driver}\" network is allowed"
                )));
            }
            other => {
                return Err(ControlError::not_found(format!(
                    "plugin \"{other}\" not found"
                )));
            }
        }
        if !req.scope.is_empty() && req.scope != "local" {
            return Err(ControlError::invalid(format!(
                "invalid scope {:?}: only \"local\" networks are supported",
                req.scope
            )));
        }
        if req.ingress
            || req.config_only
            || req
                .config_from
                .as_ref()
                .is_some_and(|c| !c.network.is_empty())
        {
            return Err(ControlError::invalid(
                "ingress and config-only networks need swarm mode",
            ));
        }
        let ipam = req.ipam.clone().unwrap_or_default();
        if !ipam.driver.is_empty() && ipam.driver != "default" {
            return Err(ControlError::not_found(format!(
                "plugin \"{}\" not found",
                ipam.driver
            )));
        }
        let enable_v6 = req.enable_ipv6.unwrap_or(false);
        let enable_v4 = req.enable_ipv4.unwrap_or(true);
        let mut taken_nets: Vec<IpNet> = lock(&self.inner.state)
            .networks
            .values()
            .flat_map(|n| n.subnets())
            .collect();
        let mut pools = Vec::new();
        let configs = ipam.config.clone().unwrap_or_default();
        for cfg in &configs {
            if cfg.subnet.is_empty() {
                return Err(ControlError::invalid(
                    "invalid pool request: a gateway or ip-range needs a subnet",
                ));
            }
            let subnet = ipam::parse_net(&cfg.subnet)?;
            let range = (!cfg.ip_range.is_empty())
                .then(|| ipam::parse_net(&cfg.ip_range))
                .transpose()?;
            let gateway = (!cfg.gateway.is_empty())
                .then(|| ipam::parse_ip(&cfg.gateway))
                .transpose()?;
            let aux = cfg
                .auxiliary_addresses
                .iter()
                .flatten()
                .map(|(k, v)| Ok((k.clone(), ipam::parse_ip(v)?)))
                .collect::<Result<Vec<_>>>()?;
            if matches!(subnet, IpNet::V6(_)) && !enable_v6 {
                return Err(ControlError::invalid(format!(
                    "subnet {subnet} is IPv6 but IPv6 is not enabled on the network (--ipv6)"
                )));
            }
            let subnet = subnet.trunc();
            if taken_nets.iter().any(|t| ipam::overlaps(t, &subnet)) {
                return Err(ControlError::Forbidden(
                    "invalid pool request: Pool overlaps with other one on this address space"
                        .to_string(),
                ));
            }
            taken_nets.push(subnet);
            pools.push(Pool::new(subnet, range, gateway, aux)?);
        }
        let user_subnets = !pools.is_empty();
        if enable_v4 && !pools.iter().any(|p| !p.is_v6()) {
            let mut taken = self.host_taken().await;
            taken.extend(taken_nets.iter().copied());
            let subnet = ipam::choose_subnet(&self.inner.opts.default_pools, &taken, false)
                .ok_or_else(|| {
                    ControlError::unavailable(
                        "all predefined address pools have been fully subnetted",
                    )
                })?;
            pools.insert(0, Pool::new(subnet, None, None, vec![])?);
        }
        if enable_v6 && !pools.iter().any(|p| p.is_v6()) {
            return Err(ControlError::invalid(
                "an IPv6 subnet is needed with --ipv6 (no default IPv6 pools are configured)",
            ));
        }
        let id = random_hex(32);
        let options = req.options.clone().unwrap_or_default();
        let device = options
            .get(BRIDGE_NAME_OPTION)
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if device.len() > 15 {
            return Err(ControlError::invalid(format!(
                "bridge name {device:?} is longer than 15 characters"
            )));
        }
        if lock(&self.inner.state)
            .networks
            .values()
            .any(|n| n.device == device)
        {
            return Err(ControlError::conflict(format!(
                "bridge name {device} is already used by another network"
            )));
        }
        let n = NetworkRecord {
            id: id.clone(),
            name: req.name.clone(),
            driver: "bridge".into(),
            created: now_text(),
            internal: req.internal,
            attachable: req.attachable,
            enable_ipv4: enable_v4,
            enable_ipv6: enable_v6,
            options,
            labels: req.labels.clone().unwrap_or_default(),
            ipam_options: ipam.options.clone(),
            pools,
            user_subnets,
            device,
            predefined: false,
        };
        self.ensure_bridge(&n).await?;
        if let Err(e) = self.inner.store.save_network(&n) {
            let _ = link::remove_bridge(&n.device).await;
            return Err(e);
        }
        lock(&self.inner.state)
            .networks
            .insert(id.clone(), n.clone());
        self.apply_firewall();
        self.event("create", &n, &[]);
        Ok(id)
    }

    fn resource(&self, st: &State, n: &NetworkRecord, with_containers: bool) -> NetworkResource {
        let mut containers = BTreeMap::new();
        if with_containers {
            for c in st.containers.values() {
                for a in c.running.iter().flat_map(|r| &r.attachments) {
                    if a.network_id == n.id {
                        containers.insert(
                            c.id.clone(),
                            NetworkContainer {
                                name: c.name.clone(),
                                endpoint_id: a.endpoint_id.clone(),
                                mac_address: ipam::format_mac(&a.mac),
                                ipv4_address: a.ipv4.map(|i| i.to_string()).unwrap_or_default(),
                                ipv6_address: a.ipv6.map(|i| i.to_string()).unwrap_or_default(),
                            },
                        );
                    }
                }
            }
        }
        let config: Vec<IpamConfig> = n
            .pools
            .iter()
            .map(|p| IpamConfig {
                subnet: p.subnet.to_string(),
                ip_range: p.range.map(|r| r.to_string()).unwrap_or_default(),
                gateway: p.gateway.map(|g| g.to_string()).unwrap_or_default(),
                auxiliary_addresses: (!p.aux.is_empty()).then(|| {
                    p.aux
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string()))
                        .collect()
                }),
            })
            .collect();
        NetworkResource {
            name: n.name.clone(),
            id: n.id.clone(),
            created: n.created.clone(),
            scope: "local".into(),
            driver: n.driver.clone(),
            enable_ipv4: n.enable_ipv4,
            enable_ipv6: n.enable_ipv6,
            ipam: Ipam {
                driver: "default".into(),
                options: n.ipam_options.clone(),
                config: Some(config),
            },
            internal: n.internal,
            attachable: n.attachable,
            ingress: false,
            config_from: ConfigReference::default(),
            config_only: false,
            containers,
            options: n.options.clone(),
            labels: n.labels.clone(),
        }
    }

    /// `GET /networks/{id}`.
    pub fn inspect(&self, key: &str) -> Result<NetworkResource> {
        let st = lock(&self.inner.state);
        let n = Self::find(&st, key)?;
        Ok(self.resource(&st, &n, true))
    }

    fn in_use(st: &State, id: &str) -> bool {
        st.containers.values().any(|c| {
            c.running
                .iter()
                .flat_map(|r| &r.attachments)
                .any(|a| a.network_id == id)
        })
    }

    fn matches(&self, st: &State, n: &NetworkRecord, f: &Filters) -> Result<bool> {
        f.validate(&["driver", "id", "name", "scope", "type", "label", "dangling"])
            .map_err(|e| ControlError::invalid(e.message))?;
        for key in ["driver", "id", "name", "scope", "type", "label", "dangling"] {
            if !f.contains(key) {
                continue;
            }
            let vals = f.get(key);
            let ok = match key {
                "driver" => vals.iter().any(|v| *v == n.driver),
                "id" => vals.iter().any(|v| n.id.starts_with(v)),
                "name" => vals.iter().any(|v| n.name.contains(v)),
                "scope" => vals.contains(&"local"),
                "type" => {
                    for v in &vals {
                        if *v != "custom" && *v != "builtin" {
                            return Err(ControlError::invalid(format!(
                                "invalid filter: 'type'='{v}'"
                            )));
                        }
                    }
                    vals.iter().any(|v| (*v == "builtin") == n.predefined)
                }
                "label" => vals.iter().all(|v| match v.split_once('=') {
                    Some((k, val)) => n.labels.get(k).is_some_and(|x| x == val),
                    None => n.labels.contains_key(*v),
                }),
                _ => {
                    let want = f
                        .get_bool("dangling")
                        .map_err(|e| ControlError::invalid(e.message))?
                        .unwrap_or(true);
                    let dangling = !n.predefined && !Self::in_use(st, &n.id);
                    dangling == want
                }
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `GET /networks`.
    pub fn list(&self, f: &Filters) -> Result<Vec<NetworkResource>> {
        let st = lock(&self.inner.state);
        let mut out = Vec::new();
        for n in st.networks.values() {
            if self.matches(&st, n, f)? {
                out.push(self.resource(&st, n, false));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove(&self, key: &str) -> Result<()> {
        let _op = self.inner.op.lock().await;
        self.remove_locked(key).await
    }

    async fn remove_locked(&self, key: &str) -> Result<()> {
        let n = self.get(key)?;
        if n.predefined {
            return Err(ControlError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        {
            let st = lock(&self.inner.state);
            let users: Vec<&ContainerNet> = st
                .containers
                .values()
                .filter(|c| {
                    c.running
                        .iter()
                        .flat_map(|r| &r.attachments)
                        .any(|a| a.network_id == n.id)
                })
                .collect();
            if !users.is_empty() {
                let list: Vec<String> = users
                    .iter()
                    .map(|c| format!("name:{:?} id:{:?}", c.name, c.short_id()))
                    .collect();
                return Err(ControlError::conflict(format!(
                    "error while removing network: network {} has active endpoints ({})",
                    n.name,
                    list.join(", ")
                )));
            }
        }
        self.inner.store.delete_network(&n.id)?;
        {
            let mut st = lock(&self.inner.state);
            st.networks.remove(&n.id);
            // Stopped containers that named it forget it (Docker keeps a dangling reference;
            // starting such a container would fail anyway).
            let mut changed = Vec::new();
            for c in st.containers.values_mut() {
                let before = c.requested.len();
                c.requested.retain(|r| r.network_id != n.id);
                if c.requested.len() != before {
                    changed.push(c.clone());
                }
            }
            for c in changed {
                let _ = self.inner.store.save_container(&c);
            }
        }
        self.apply_firewall();
        if let Err(e) = link::remove_bridge(&n.device).await {
            tracing::warn!(network = %n.name, error = %e, "cannot remove bridge device");
        }
        self.event("destroy", &n, &[]);
        Ok(())
    }

    /// `POST /networks/prune`: removes unused user networks `keep` accepts (the router
    /// turns `until`/`label` filters into it); returns their names.
    pub async fn prune(
        &self,
        keep: &(dyn Fn(&NetworkRecord) -> bool + Sync),
    ) -> Result<Vec<String>> {
        let _op = self.inner.op.lock().await;
        let candidates: Vec<NetworkRecord> = {
            let st = lock(&self.inner.state);
            st.networks
                .values()
                .filter(|n| !n.predefined && !Self::in_use(&st, &n.id) && keep(n))
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        for n in candidates {
            if self.remove_locked(&n.id).await.is_ok() {
                out.push(n.name);
            }
        }
        Ok(out)
    }

    // ---- containers ----

    /// Checks and records a new container's networking (`NetworkMode`, `EndpointsConfig`,
    /// `PortBindings`, `PublishAllPorts` with the exposed ports). Nothing runs yet.
    #[allow(clippy::too_many_arguments)]
    pub fn container_create(
        &self,
        id: &str,
        name: &str,
        mode: &str,
        endpoints: &BTreeMap<String, EndpointSettings>,
        port_bindings: &BTreeMap<String, Option<Vec<PortBinding>>>,
        publish_all: bool,
        exposed: &[String],
    ) -> Result<String> {
        let st = lock(&self.inner.state);
        // The docker CLI names the primary network as the mode it was given (`default`).
        let endpoints: BTreeMap<String, EndpointSettings> = endpoints
            .iter()
            .map(|(k, v)| {
                let k = if k == "default" {
                    match mode {
                        "" | "default" => "bridge".to_string(),
                        m => m.to_string(),
                    }
                } else {
                    k.clone()
                };
                (k, v.clone())
            })
            .collect();
        let endpoints = &endpoints;
        let mode = match mode {
            // `--bridge=none`: containers that ask for the default get no network.
            "" | "default" | "bridge" => {
                if st.networks.values().any(|n| n.is_default_bridge()) {
                    "bridge".to_string()
                } else {
                    "none".to_string()
                }
            }
            m => m.to_string(),
        };
        let mut requested = Vec::new();
        let shared = mode == "host" || mode == "none" || mode.starts_with("container:");
        if !shared {
            let n = Self::find(&st, &mode)?;
            if n.driver == "host" || n.driver == "null" {
                return self.container_create_shared(id, name, &n.name, endpoints, port_bindings);
            }
            let s = endpoints
                .get(&mode)
                .or_else(|| endpoints.get(&n.name))
                .or_else(|| endpoints.get(&n.id))
                .cloned()
                .unwrap_or_default();
            Self::check_endpoint(&n, &s)?;
            requested.push(Requested {
                network_id: n.id.clone(),
                settings: s,
            });
            for (key, s) in endpoints {
                let other = Self::find(&st, key)?;
                if other.id == n.id {
                    continue;
                }
                if !other.is_bridge() {
                    return Err(ControlError::invalid(format!(
                        "container cannot be connected to network {} and {}",
                        n.name, other.name
                    )));
                }
                Self::check_endpoint(&other, s)?;
                requested.push(Requested {
                    network_id: other.id.clone(),
                    settings: s.clone(),
                });
            }
        } else {
            for key in endpoints.keys().filter(|k| **k != mode) {
                let other = Self::find(&st, key)?;
                if other.name != mode {
                    return Err(ControlError::invalid(
                        "container sharing network namespace with another container or host cannot be connected to any other network",
                    ));
                }
            }
        }
        drop(st);
        if shared {
            return self.container_create_shared(id, name, &mode, endpoints, port_bindings);
        }
        let (ports, exposed_left) = port_specs(port_bindings, publish_all, exposed)?;
        let c = ContainerNet {
            id: id.to_string(),
            name: name.to_string(),
            mode: mode.clone(),
            requested,
            port_bindings: port_bindings.clone(),
            ports,
            exposed: exposed_left,
            dns: Vec::new(),
            running: None,
        };
        self.inner.store.save_container(&c)?;
        lock(&self.inner.state).containers.insert(c.id.clone(), c);
        Ok(mode)
    }

    fn container_create_shared(
        &self,
        id: &str,
        name: &str,
        mode: &str,
        _endpoints: &BTreeMap<String, EndpointSettings>,
        port_bindings: &BTreeMap<String, Option<Vec<PortBinding>>>,
    ) -> Result<String> {
        if mode.starts_with("container:") && !port_bindings.is_empty() {
            return Err(ControlError::invalid(
                "conflicting options: port publishing and the container type network mode",
            ));
        }
        let c = ContainerNet {
            id: id.to_string(),
            name: name.to_string(),
            mode: mode.to_string(),
            ..Default::default()
        };
        self.inner.store.save_container(&c)?;
        lock(&self.inner.state).containers.insert(c.id.clone(), c);
        Ok(mode.to_string())
    }

    fn check_endpoint(n: &NetworkRecord, s: &EndpointSettings) -> Result<()> {
        let Some(ipc) = &s.ipam_config else {
            if !s.aliases.as_ref().is_none_or(|a| a.is_empty()) && n.is_default_bridge() {
                return Err(ControlError::invalid(
                    "network-scoped alias is supported only for containers in user defined networks",
                ));
            }
            return Ok(());
        };
        for want in [&ipc.ipv4_address, &ipc.ipv6_address] {
            if want.is_empty() {
                continue;
            }
            let ip = ipam::parse_ip(want)?;
            if n.is_default_bridge() {
                return Err(ControlError::invalid(
                    "user specified IP address is supported on user defined networks only",
                ));
            }
            if !n.user_subnets {
                return Err(ControlError::invalid(
                    "user specified IP address is supported only when connecting to networks with user configured subnets",
                ));
            }
            if !n.pools.iter().any(|p| p.subnet.contains(&ip)) {
                return Err(ControlError::invalid(format!(
                    "no configured subnet or ip-range contain the IP address {ip}"
                )));
            }
        }
        if !s.aliases.as_ref().is_none_or(|a| a.is_empty()) && n.is_default_bridge() {
            return Err(ControlError::invalid(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        Ok(())
    }

    /// Forgets (and tears down) the records of containers `exists` does not know: what a
    /// crash in the middle of a container removal leaves.
    pub async fn forget_unknown_containers(&self, exists: impl Fn(&str) -> bool) {
        let unknown: Vec<String> = lock(&self.inner.state)
            .containers
            .keys()
            .filter(|id| !exists(id))
            .cloned()
            .collect();
        for id in unknown {
            tracing::info!(container = %id, "removing the network record of a container that is gone");
            self.container_remove(&id).await;
        }
    }

    /// Marks a container about to be created as auto-removed: its records are written without
    /// waiting for the disk until [`Networks::container_persist`] (see `Store::set_ephemeral`).
    pub fn container_ephemeral(&self, id: &str) {
        self.inner.store.set_ephemeral(id);
    }

    /// Makes an auto-removed container's records durable (it stays created, not started).
    pub fn container_persist(&self, id: &str) {
        let st = lock(&self.inner.state);
        if let Some(c) = st.containers.get(id)
            && let Err(e) = self.inner.store.persist_container(c)
        {
            tracing::warn!(container = %id, error = %e, "cannot write network record");
        }
    }

    /// Records `--dns` servers: the embedded DNS server forwards to them instead of the host's.
    pub fn container_dns(&self, id: &str, servers: &[String]) -> Result<()> {
        let mut st = lock(&self.inner.state);
        if let Some(c) = st.containers.get_mut(id) {
            for s in servers {
                ipam::parse_ip(s)?;
            }
            c.dns = servers.to_vec();
            self.inner.store.save_container(c)?;
        }
        Ok(())
    }

    /// Renames a container in its network records (DNS answers follow).
    pub fn container_rename(&self, id: &str, name: &str) {
        let mut st = lock(&self.inner.state);
        if let Some(c) = st.containers.get_mut(id) {
            c.name = name.to_string();
            let _ = self.inner.store.save_container(c);
        }
    }

    /// The netns of a running container (for `container:<id>` network modes).
    pub fn netns_of(&self, id: &str) -> Option<PathBuf> {
        lock(&self.inner.state)
            .containers
            .get(id)
            .and_then(|c| c.running.as_ref().map(|r| r.netns.clone()))
    }

    fn netns_path(&self, id: &str) -> PathBuf {
        self.inner.opts.exec_root.join("netns").join(id)
    }

    /// Sets up a container's networking before its process starts: netns, endpoints with
    /// addresses, published ports, firewall, DNS. On failure nothing is left.
    pub async fn container_start(&self, id: &str) -> Result<StartInfo> {
        let _op = self.inner.op.lock().await;
        let host_gateway = self.default_gateway();
        let Some(c) = lock(&self.inner.state).containers.get(id).cloned() else {
            // A container created before Berth had networking: it keeps the private netns
            // with only `lo` that the runtime makes.
            tracing::info!(container = %id, "no network record; starting without networking");
            return Ok(StartInfo {
                host_gateway,
                ..Default::default()
            });
        };
        if c.running.is_some() {
            // A start after a crash that left it recorded as running: tear that down first.
            self.teardown_locked(id).await;
        }
        match c.mode.as_str() {
            "host" => {
                return Ok(StartInfo {
                    host_gateway,
                    ..Default::default()
                });
            }
            m if m.starts_with("container:") => {
                return Ok(StartInfo {
                    host_gateway,
                    ..Default::default()
                });
            }
            _ => {}
        }
        let path = self.netns_path(id);
        let p2 = path.clone();
        tokio::task::spawn_blocking(move || netns::create(&p2))
            .await
            .map_err(|e| ControlError::unavailable(format!("netns task failed: {e}")))?
            .map_err(ControlError::data(format!(
                "cannot create network namespace {}",
                path.display()
            )))?;
        let running = Running {
            netns: path.clone(),
            attachments: Vec::new(),
            published: Vec::new(),
        };
        {
            let mut st = lock(&self.inner.state);
            if let Some(c) = st.containers.get_mut(id) {
                c.running = Some(running);
                self.inner.store.save_container(c)?;
            }
        }
        match self.start_endpoints(&c, &path).await {
            Ok(info) => {
                // Docker reports each network a starting container joins.
                for req in &c.requested {
                    if let Ok(n) = self.get(&req.network_id) {
                        self.event("connect", &n, &[("container", id)]);
                    }
                }
                Ok(StartInfo {
                    host_gateway,
                    ..info
                })
            }
            Err(e) => {
                self.teardown_locked(id).await;
                Err(e)
            }
        }
    }

    /// A running container's addresses on its networks, primary first (for `/etc/hosts`).
    pub fn addresses_of(&self, id: &str) -> Vec<IpAddr> {
        lock(&self.inner.state)
            .containers
            .get(id)
            .and_then(|c| c.running.as_ref())
            .map(|r| {
                r.attachments
                    .iter()
                    .flat_map(|a| [a.ipv4, a.ipv6])
                    .flatten()
                    .map(|n| n.addr())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The default bridge's gateway: what `host-gateway` means in `--add-host`.
    pub fn default_gateway(&self) -> Option<IpAddr> {
        lock(&self.inner.state)
            .networks
            .values()
            .find(|n| n.is_default_bridge())
            .and_then(|n| n.pools.first().and_then(|p| p.gateway))
    }

    async fn start_endpoints(&self, c: &ContainerNet, path: &Path) -> Result<StartInfo> {
        let mut info = StartInfo {
            netns: Some(path.to_path_buf()),
            ..Default::default()
        };
        for (i, req) in c.requested.iter().enumerate() {
            let a = self
                .attach_endpoint(&c.id, req, path, i == 0, &format!("eth{i}"))
                .await?;
            if let Some(ip) = a.ipv4 {
                info.addresses.push(ip.addr());
            }
            if let Some(ip) = a.ipv6 {
                info.addresses.push(ip.addr());
            }
        }
        info.embedded_dns = self.uses_embedded_dns(&c.id);
        self.publish_ports(&c.id).await?;
        // Only published ports make the ruleset depend on containers.
        if !c.ports.is_empty() {
            self.apply_firewall();
        }
        if info.embedded_dns {
            let dns = self.serve_dns(&c.id, path)?;
            lock(&self.inner.live).entry(c.id.clone()).or_default().dns = Some(dns);
        }
        Ok(info)
    }

    fn uses_embedded_dns(&self, id: &str) -> bool {
        let st = lock(&self.inner.state);
        st.containers.get(id).is_some_and(|c| {
            c.requested.iter().any(|r| {
                st.networks
                    .get(&r.network_id)
                    .is_some_and(|n| !n.is_default_bridge())
            })
        })
    }

    fn serve_dns(&self, id: &str, path: &Path) -> Result<DnsServer> {
        let resolver = Arc::new(NameResolver {
            inner: Arc::downgrade(&self.inner),
            container: id.to_string(),
        });
        let configured: Vec<SocketAddr> = lock(&self.inner.state)
            .containers
            .get(id)
            .map(|c| {
                c.dns
                    .iter()
                    .filter_map(|s| s.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, 53))
                    .collect()
            })
            .unwrap_or_default();
        let upstreams = if configured.is_empty() {
            host_upstreams()
        } else {
            configured
        };
        dns::serve(path, resolver, upstreams).map_err(ControlError::data(format!(
            "cannot start the embedded DNS server of container {id}"
        )))
    }

    /// Allocates addresses on one network and creates the veth endpoint in the netns.
    async fn attach_endpoint(
        &self,
        id: &str,
        req: &Requested,
        path: &Path,
        primary: bool,
        container_if: &str,
    ) -> Result<Attachment> {
        let (n, att) = {
            let mut guard = lock(&self.inner.state);
            let st = &mut *guard;
            let n = st.networks.get_mut(&req.network_id).ok_or_else(|| {
                ControlError::not_found(format!("network {} not found", req.network_id))
            })?;
            let ipc = req.settings.ipam_config.clone().unwrap_or_default();
            let want4 = (!ipc.ipv4_address.is_empty())
                .then(|| ipam::parse_ip(&ipc.ipv4_address))
                .transpose()?;
            let want6 = (!ipc.ipv6_address.is_empty())
                .then(|| ipam::parse_ip(&ipc.ipv6_address))
                .transpose()?;
            let mut ipv4 = None;
            let mut ipv6 = None;
            let mut gw4 = None;
            let mut gw6 = None;
            let mut undo: Vec<(usize, IpAddr)> = Vec::new();
            let res = (|| -> Result<()> {
                for (i, p) in n.pools.iter_mut().enumerate() {
                    if p.is_v6() && ipv6.is_none() {
                        let w = want6.filter(|w| p.subnet.contains(w));
                        let ip = p.allocate(w)?;
                        undo.push((i, ip));
                        ipv6 = Some(p.with_prefix(ip));
                        gw6 = p.gateway;
                    } else if !p.is_v6() && ipv4.is_none() {
                        let w = want4.filter(|w| p.subnet.contains(w));
                        if want4.is_some() && w.is_none() {
                            continue;
                        }
                        let ip = p.allocate(w)?;
                        undo.push((i, ip));
                        ipv4 = Some(p.with_prefix(ip));
                        gw4 = p.gateway;
                    }
                }
                if want4.is_some() && ipv4.is_none() {
                    return Err(ControlError::invalid(format!(
                        "no configured subnet or ip-range contain the IP address {}",
                        ipc.ipv4_address
                    )));
                }
                Ok(())
            })();
            if let Err(e) = res {
                for (i, ip) in undo {
                    n.pools[i].release(ip);
                }
                return Err(e);
            }
            let mac = match req.settings.mac_address.as_str() {
                "" => ipam::mac_for(
                    ipv4.or(ipv6)
                        .map(|n| n.addr())
                        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                ),
                m => ipam::parse_mac(m)?,
            };
            let att = Attachment {
                network_id: n.id.clone(),
                endpoint_id: random_hex(32),
                ipv4,
                ipv6,
                mac,
                host_if: format!("veth{}", &random_hex(4)[..7]),
                container_if: container_if.to_string(),
                gateway_v4: gw4,
                gateway_v6: gw6,
            };
            let _ = self.inner.store.save_network_allocations(n);
            // Recorded before the link exists, so a failure or crash below is undone by teardown.
            if let Some(c) = st.containers.get_mut(id)
                && let Some(r) = c.running.as_mut()
            {
                r.attachments.push(att.clone());
                self.inner.store.save_container(c)?;
            }
            (n.clone(), att)
        };
        let gateways = if primary && !n.internal {
            [att.gateway_v4, att.gateway_v6]
                .into_iter()
                .flatten()
                .collect()
        } else {
            Vec::new()
        };
        link::attach(&link::EndpointConfig {
            bridge: n.device.clone(),
            host_if: att.host_if.clone(),
            netns: path.to_path_buf(),
            container_if: container_if.to_string(),
            mac: att.mac,
            addresses: [att.ipv4, att.ipv6].into_iter().flatten().collect(),
            gateways,
            mtu: n.mtu(),
        })
        .await
        .map_err(ControlError::data(format!(
            "cannot attach container {} to network {}",
            &id[..12.min(id.len())],
            n.name
        )))?;
        Ok(att)
    }

    /// Binds the container's published ports (proxies) and records them.
    async fn publish_ports(&self, id: &str) -> Result<()> {
        let (specs, target) = {
            let st = lock(&self.inner.state);
            let Some(c) = st.containers.get(id) else {
                return Ok(());
            };
            let target = c
                .running
                .as_ref()
                .and_then(|r| r.attachments.first())
                .and_then(|a| a.ipv4.map(|i| i.addr()).or(a.ipv6.map(|i| i.addr())));
            (c.ports.clone(), target)
        };
        let Some(target) = target else {
            return Ok(());
        };
        for spec in specs {
            // A host port range (`8000-8010:80`): the first free port in it, as Docker.
            let last = spec.host_port_last.max(spec.host_port);
            let mut port = spec.host_port;
            let proxy = loop {
                let bound = proxy::publish(
                    spec.host_ip,
                    port,
                    spec.proto,
                    SocketAddr::new(target, spec.container_port),
                )
                .await;
                match bound {
                    Err(crate::Error::PortAllocated { .. }) if port < last => port += 1,
                    other => {
                        break other.map_err(ControlError::data(format!(
                            "cannot publish port {}/{}",
                            spec.container_port, spec.proto
                        )))?;
                    }
                }
            };
            let published = Published {
                proto: spec.proto,
                container_port: spec.container_port,
                host_ip: spec.host_ip,
                host_port: proxy.host_port(),
            };
            lock(&self.inner.live)
                .entry(id.to_string())
                .or_default()
                .proxies
                .push(proxy);
            let mut st = lock(&self.inner.state);
            if let Some(c) = st.containers.get_mut(id)
                && let Some(r) = c.running.as_mut()
            {
                r.published.push(published);
                self.inner.store.save_container(c)?;
            }
        }
        Ok(())
    }

    /// Re-creates the daemon-side parts of a running container after a daemon restart.
    async fn make_live(&self, c: &ContainerNet) -> Result<Live> {
        let mut live = Live::default();
        let r = c.running.as_ref().expect("running");
        let target = r
            .attachments
            .first()
            .and_then(|a| a.ipv4.map(|i| i.addr()).or(a.ipv6.map(|i| i.addr())));
        if let Some(target) = target {
            for p in &r.published {
                live.proxies.push(
                    proxy::publish(
                        p.host_ip,
                        p.host_port,
                        p.proto,
                        SocketAddr::new(target, p.container_port),
                    )
                    .await
                    .map_err(ControlError::data(format!(
                        "cannot publish port {}/{} again",
                        p.container_port, p.proto
                    )))?,
                );
            }
        }
        if self.uses_embedded_dns(&c.id) {
            live.dns = Some(self.serve_dns(&c.id, &r.netns)?);
        }
        Ok(live)
    }

    /// Tears down a container's networking after its process ended: proxies, DNS, endpoints,
    /// netns, leases, firewall rules. Idempotent.
    pub async fn container_stop(&self, id: &str) {
        let _op = self.inner.op.lock().await;
        self.teardown_locked(id).await;
    }

    async fn teardown_locked(&self, id: &str) {
        let live = lock(&self.inner.live).remove(id);
        drop(live);
        let running = {
            let mut guard = lock(&self.inner.state);
            let st = &mut *guard;
            let Some(c) = st.containers.get_mut(id) else {
                return;
            };
            let Some(r) = c.running.take() else {
                return;
            };
            if let Err(e) = self.inner.store.save_container(c) {
                tracing::warn!(container = %id, error = %e, "cannot record network teardown");
            }
            release(&mut st.networks, &r);
            for a in &r.attachments {
                if let Some(n) = st.networks.get(&a.network_id) {
                    let _ = self.inner.store.save_network_allocations(n);
                }
            }
            r
        };
        for a in &running.attachments {
            // Off the bridge at once; the pair itself is deleted in the background (the
            // kernel's grace period for a link delete is most of a bridged `run --rm`'s
            // teardown). The netns removal below would delete it too, once its last user goes.
            if let Err(e) = link::leave_bridge(&a.host_if).await {
                tracing::warn!(container = %id, veth = %a.host_if, error = %e, "cannot take veth off its bridge");
            }
            let (cid, veth) = (id.to_string(), a.host_if.clone());
            tokio::spawn(async move {
                if let Err(e) = link::detach(&veth).await {
                    tracing::warn!(container = %cid, veth = %veth, error = %e, "cannot remove veth");
                }
            });
            if let Ok(n) = self.get(&a.network_id) {
                self.event("disconnect", &n, &[("container", id)]);
            }
        }
        let path = running.netns.clone();
        let removed = tokio::task::spawn_blocking(move || netns::remove(&path)).await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(container = %id, error = %e, "cannot remove network namespace");
        }
        if !running.published.is_empty() {
            self.apply_firewall();
        }
    }

    /// Forgets a removed container.
    pub async fn container_remove(&self, id: &str) {
        let _op = self.inner.op.lock().await;
        self.teardown_locked(id).await;
        lock(&self.inner.state).containers.remove(id);
        if let Err(e) = self.inner.store.delete_container(id) {
            tracing::warn!(container = %id, error = %e, "cannot remove network record");
        }
    }

    /// `POST /networks/{id}/connect`: adds the network to a container; a running container
    /// gets the endpoint at once.
    pub async fn connect(&self, key: &str, id: &str, settings: EndpointSettings) -> Result<()> {
        let _op = self.inner.op.lock().await;
        let n = self.get(key)?;
        let c = lock(&self.inner.state)
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| ControlError::not_found(format!("No such container: {id}")))?;
        if n.driver == "host" || n.driver == "null" {
            return Err(ControlError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if c.mode == "host" || c.mode == "none" || c.mode.starts_with("container:") {
            return Err(ControlError::Forbidden(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            ));
        }
        if c.requested.iter().any(|r| r.network_id == n.id) {
            return Err(ControlError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.name, n.name
            )));
        }
        Self::check_endpoint(&n, &settings)?;
        let req = Requested {
            network_id: n.id.clone(),
            settings,
        };
        let running = c.running.clone();
        if let Some(r) = &running {
            let ifname = format!("eth{}", r.attachments.len());
            let primary = r.attachments.is_empty();
            self.attach_endpoint(id, &req, &r.netns, primary, &ifname)
                .await
                .inspect_err(|_| {
                    // attach_endpoint recorded the attachment before the link: undo it.
                    let mut guard = lock(&self.inner.state);
                    let st = &mut *guard;
                    if let Some(c) = st.containers.get_mut(id)
                        && let Some(r) = c.running.as_mut()
                        && let Some(pos) = r.attachments.iter().position(|a| a.network_id == n.id)
                    {
                        let a = r.attachments.remove(pos);
                        let partial = Running {
                            netns: r.netns.clone(),
                            attachments: vec![a],
                            published: Vec::new(),
                        };
                        let _ = self.inner.store.save_container(c);
                        release(&mut st.networks, &partial);
                    }
                })?;
        }
        {
            let mut st = lock(&self.inner.state);
            if let Some(c) = st.containers.get_mut(id) {
                c.requested.push(req);
                self.inner.store.save_container(c)?;
            }
        }
        if let Some(r) = &running {
            if !r.published.is_empty() {
                self.apply_firewall();
            }
            let has_dns = lock(&self.inner.live)
                .get(id)
                .is_some_and(|l| l.dns.is_some());
            if !has_dns && self.uses_embedded_dns(id) {
                let dns = self.serve_dns(id, &r.netns)?;
                lock(&self.inner.live)
                    .entry(id.to_string())
                    .or_default()
                    .dns = Some(dns);
            }
        }
        self.event("connect", &n, &[("container", id)]);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect(&self, key: &str, id: &str, force: bool) -> Result<()> {
        let _op = self.inner.op.lock().await;
        let n = match self.get(key) {
            Ok(n) => n,
            Err(e) if force => {
                tracing::debug!(error = %e, "forced disconnect from an unknown network");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if n.driver == "host" || n.driver == "null" {
            return Err(ControlError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        let removed = {
            let mut guard = lock(&self.inner.state);
            let st = &mut *guard;
            let c = st
                .containers
                .get_mut(id)
                .ok_or_else(|| ControlError::not_found(format!("No such container: {id}")))?;
            let before = c.requested.len();
            c.requested.retain(|r| r.network_id != n.id);
            if c.requested.len() == before {
                return Err(ControlError::Forbidden(format!(
                    "container {} is not connected to network {}",
                    c.short_id(),
                    n.name
                )));
            }
            let att = c.running.as_mut().and_then(|r| {
                let pos = r.attachments.iter().position(|a| a.network_id == n.id)?;
                Some(r.attachments.remove(pos))
            });
            self.inner.store.save_container(c)?;
            if let Some(a) = &att {
                let partial = Running {
                    netns: PathBuf::new(),
                    attachments: vec![a.clone()],
                    published: Vec::new(),
                };
                release(&mut st.networks, &partial);
                if let Some(n) = st.networks.get(&n.id) {
                    let _ = self.inner.store.save_network_allocations(n);
                }
            }
            att
        };
        if let Some(a) = removed {
            if let Err(e) = link::detach(&a.host_if).await {
                tracing::warn!(container = %id, error = %e, "cannot remove veth");
            }
            self.apply_firewall();
        }
        self.event("disconnect", &n, &[("container", id)]);
        Ok(())
    }

    // ---- views for the container manager ----

    /// `NetworkSettings` of `GET /containers/{id}/json`.
    pub fn settings(&self, id: &str) -> NetworkSettings {
        let st = lock(&self.inner.state);
        let mut out = NetworkSettings::default();
        let Some(c) = st.containers.get(id) else {
            return out;
        };
        let running = c.running.as_ref();
        if let Some(r) = running {
            out.sandbox_key = r.netns.display().to_string();
            out.sandbox_id = c.id.clone();
        }
        // While it runs: exposed but unpublished ports as null, published ones with their
        // bindings (Docker shows none for a container that does not run).
        if let Some(r) = running {
            for e in &c.exposed {
                out.ports.insert(e.clone(), None);
            }
            for p in &r.published {
                let key = format!("{}/{}", p.container_port, p.proto);
                let binding = PortBinding {
                    host_ip: p.host_ip.map(|i| i.to_string()).unwrap_or("0.0.0.0".into()),
                    host_port: p.host_port.to_string(),
                };
                let entry = out.ports.entry(key).or_insert(None);
                entry.get_or_insert_with(Vec::new).push(binding.clone());
                if p.host_ip.is_none() {
                    entry.get_or_insert_with(Vec::new).push(PortBinding {
                        host_ip: "::".into(),
                        host_port: binding.host_port,
                    });
                }
            }
        }
        if c.mode == "host" || c.mode == "none" {
            if let Some(n) = st
                .networks
                .values()
                .find(|n| n.predefined && n.name == c.mode)
            {
                out.networks.insert(
                    n.name.clone(),
                    EndpointSettings {
                        network_id: n.id.clone(),
                        ..Default::default()
                    },
                );
            }
            return out;
        }
        for req in &c.requested {
            let Some(n) = st.networks.get(&req.network_id) else {
                continue;
            };
            let mut e = req.settings.clone();
            e.network_id = n.id.clone();
            if !n.is_default_bridge() {
                let mut names = vec![c.name.clone(), c.short_id().to_string()];
                names.extend(e.aliases.iter().flatten().cloned());
                e.dns_names = Some(names);
            }
            if let Some(a) =
                running.and_then(|r| r.attachments.iter().find(|a| a.network_id == n.id))
            {
                e.endpoint_id = a.endpoint_id.clone();
                e.mac_address = ipam::format_mac(&a.mac);
                if let Some(ip) = a.ipv4 {
                    e.ip_address = ip.addr().to_string();
                    e.ip_prefix_len = ip.prefix_len() as i64;
                    e.gateway = a.gateway_v4.map(|g| g.to_string()).unwrap_or_default();
                }
                if let Some(ip) = a.ipv6 {
                    e.global_ipv6_address = ip.addr().to_string();
                    e.global_ipv6_prefix_len = ip.prefix_len() as i64;
                    e.ipv6_gateway = a.gateway_v6.map(|g| g.to_string()).unwrap_or_default();
                }
                if n.is_default_bridge() {
                    out.bridge = String::new();
                    out.endpoint_id = e.endpoint_id.clone();
                    out.ip_address = e.ip_address.clone();
                    out.ip_prefix_len = e.ip_prefix_len;
                    out.gateway = e.gateway.clone();
                    out.mac_address = e.mac_address.clone();
                    out.global_ipv6_address = e.global_ipv6_address.clone();
                    out.global_ipv6_prefix_len = e.global_ipv6_prefix_len;
                    out.ipv6_gateway = e.ipv6_gateway.clone();
                }
            }
            out.networks.insert(n.name.clone(), e);
        }
        out
    }

    /// `Ports` of a `GET /containers/json` row.
    pub fn ports(&self, id: &str) -> Vec<Port> {
        let st = lock(&self.inner.state);
        let Some(c) = st.containers.get(id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(r) = &c.running {
            for p in &r.published {
                let ips: Vec<String> = match p.host_ip {
                    Some(ip) => vec![ip.to_string()],
                    None => vec!["0.0.0.0".into(), "::".into()],
                };
                for ip in ips {
                    out.push(Port {
                        ip: Some(ip),
                        private_port: p.container_port,
                        public_port: Some(p.host_port),
                        kind: p.proto.as_str().into(),
                    });
                }
            }
        }
        for e in c.exposed.iter().filter(|_| c.running.is_some()) {
            if let Ok((lo, _, proto)) = parse_port_key(e) {
                out.push(Port {
                    ip: None,
                    private_port: lo,
                    public_port: None,
                    kind: proto.as_str().into(),
                });
            }
        }
        out
    }

    /// The networks a container is on, by name, as list rows show them.
    pub fn summary_networks(&self, id: &str) -> BTreeMap<String, EndpointSettings> {
        self.settings(id).networks
    }

    /// The running containers' networks, by network id (for the `network` filter of ps).
    pub fn network_ids_of(&self, id: &str) -> Vec<String> {
        lock(&self.inner.state)
            .containers
            .get(id)
            .map(|c| c.requested.iter().map(|r| r.network_id.clone()).collect())
            .unwrap_or_default()
    }

    // ---- firewall ----

    fn ruleset(&self) -> Ruleset {
        let st = lock(&self.inner.state);
        let mut rs = Ruleset::default();
        for n in st.networks.values().filter(|n| n.is_bridge()) {
            rs.bridges.push(BridgeRules {
                device: n.device.clone(),
                subnets: n.subnets(),
                internal: n.internal,
                masquerade: n.masquerade(),
                icc: n.icc(),
            });
        }
        for c in st.containers.values() {
            let Some(r) = &c.running else { continue };
            let Some(a) = r.attachments.first() else {
                continue;
            };
            let Some(n) = st.networks.get(&a.network_id) else {
                continue;
            };
            let Some(ip) = a.ipv4.map(|i| i.addr()).or(a.ipv6.map(|i| i.addr())) else {
                continue;
            };
            for p in &r.published {
                rs.ports.push(PortForward {
                    proto: p.proto,
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    container_ip: ip,
                    container_port: p.container_port,
                    bridge: n.device.clone(),
                });
            }
        }
        rs
    }

    fn apply_firewall(&self) {
        let Some(fw) = &self.inner.firewall else {
            return;
        };
        if let Err(e) = fw.apply(&self.ruleset()) {
            tracing::warn!(table = %fw.table(), error = %e, "cannot apply firewall rules");
        }
    }

    /// Daemon shutdown: running containers keep their networking (they outlive the daemon);
    /// nothing to do but stop serving proxies and DNS, which dropping does.
    pub fn shutdown(&self) {
        lock(&self.inner.live).clear();
    }
}

/// Releases the addresses of a container's attachments.
/// dockerd's rules for a new network's name: any text but blank (libnetwork's
/// `ErrInvalidName`) or a predefined network's (`runconfig.IsPreDefinedNetwork`). Unlike
/// container names, spaces and other characters are fine: devices and records are named
/// after the id.
fn check_network_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(ControlError::invalid(format!("invalid name: {name}")));
    }
    if matches!(name, "bridge" | "host" | "none" | "default") {
        return Err(ControlError::Forbidden(format!(
            "operation is not permitted on predefined {name} network "
        )));
    }
    Ok(())
}

fn release(networks: &mut BTreeMap<String, NetworkRecord>, r: &Running) {
    for a in &r.attachments {
        if let Some(n) = networks.get_mut(&a.network_id) {
            for ip in [a.ipv4, a.ipv6].into_iter().flatten() {
                for p in &mut n.pools {
                    p.release(ip.addr());
                }
            }
        }
    }
}

/// The ports to publish from `PortBindings` (and with `-P` the exposed ports, on random host
/// ports); returns them and the exposed ports left unpublished.
pub fn port_specs(
    bindings: &BTreeMap<String, Option<Vec<PortBinding>>>,
    publish_all: bool,
    exposed: &[String],
) -> Result<(Vec<PortSpec>, Vec<String>)> {
    let mut specs = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for (key, list) in bindings {
        let (lo, hi, proto) = parse_port_key(key)?;
        keys.push(format!("{lo}/{proto}"));
        if lo != hi {
            return Err(ControlError::invalid(format!(
                "invalid port specification: {key:?}"
            )));
        }
        let list = list.clone().unwrap_or_default();
        let list = if list.is_empty() {
            vec![PortBinding::default()]
        } else {
            list
        };
        for b in list {
            let host_ip = match b.host_ip.trim_start_matches('[').trim_end_matches(']') {
                "" => None,
                ip => Some(ip.parse::<IpAddr>().map_err(|_| {
                    ControlError::invalid(format!("invalid host IP address: {}", b.host_ip))
                })?),
            };
            let (host_port, host_port_last) = if b.host_port.is_empty() {
                (0, 0)
            } else {
                parse_range(&b.host_port).ok_or_else(|| {
                    ControlError::invalid(format!("invalid port specification: {:?}", b.host_port))
                })?
            };
            specs.push(PortSpec {
                proto,
                container_port: lo,
                host_ip,
                host_port,
                host_port_last,
            });
        }
    }
    let mut left = Vec::new();
    for e in exposed {
        let (lo, hi, proto) = parse_port_key(e)?;
        for port in lo..=hi {
            let key = format!("{port}/{proto}");
            if keys.contains(&key) {
                continue;
            }
            if publish_all {
                specs.push(PortSpec {
                    proto,
                    container_port: port,
                    host_ip: None,
                    host_port: 0,
                    host_port_last: 0,
                });
            } else {
                left.push(key);
            }
        }
    }
    Ok((specs, left))
}

/// The host's resolvers, where the embedded DNS server forwards unknown names (read from the
/// host netns, so 127.0.0.53-style local resolvers work).
fn host_upstreams() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut v: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if v.is_empty() {
        v = vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 53),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)), 53),
        ];
    }
    v
}

/// Answers a container's DNS queries from the containers on its user-defined networks:
/// names, aliases and short ids.
struct NameResolver {
    inner: Weak<Inner>,
    container: String,
}

impl Resolver for NameResolver {
    fn lookup(&self, name: &str) -> Vec<IpAddr> {
        let Some(inner) = self.inner.upgrade() else {
            return Vec::new();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let st = lock(&inner.state);
        let Some(me) = st.containers.get(&self.container) else {
            return Vec::new();
        };
        let mine: Vec<&str> = me
            .running
            .iter()
            .flat_map(|r| &r.attachments)
            .filter(|a| {
                st.networks
                    .get(&a.network_id)
                    .is_some_and(|n| !n.is_default_bridge())
            })
            .map(|a| a.network_id.as_str())
            .collect();
        let mut out = Vec::new();
        for net in mine {
            let net_name = st.networks.get(net).map(|n| n.name.as_str()).unwrap_or("");
            // `name.network` also resolves, as with Docker.
            let bare = name
                .strip_suffix(&format!(".{}", net_name.to_ascii_lowercase()))
                .unwrap_or(&name);
            // This container's links on the network (`EndpointSettings.Links`,
            // `target:alias`) make the alias a name of the target, for it alone.
            let linked = me
                .requested
                .iter()
                .find(|q| q.network_id == net)
                .and_then(|q| q.settings.links.as_ref())
                .and_then(|links| {
                    links.iter().find_map(|l| {
                        let (target, alias) = l.split_once(':').unwrap_or((l, l));
                        let alias = alias.rsplit('/').next().unwrap_or(alias);
                        (alias.to_ascii_lowercase() == bare)
                            .then(|| target.trim_start_matches('/').to_ascii_lowercase())
                    })
                });
            let bare = linked.as_deref().unwrap_or(bare);
            for c in st.containers.values() {
                let Some(r) = &c.running else { continue };
                let Some(a) = r.attachments.iter().find(|a| a.network_id == net) else {
                    continue;
                };
                let aliases = c
                    .requested
                    .iter()
                    .find(|q| q.network_id == net)
                    .and_then(|q| q.settings.aliases.clone())
                    .unwrap_or_default();
                let hit = c.name.to_ascii_lowercase() == bare
                    || c.short_id() == bare
                    || aliases.iter().any(|x| x.to_ascii_lowercase() == bare);
                if hit {
                    for ip in [a.ipv4, a.ipv6].into_iter().flatten() {
                        if !out.contains(&ip.addr()) {
                            out.push(ip.addr());
                        }
                    }
                }
            }
        }
        out
    }

    fn reverse(&self, ip: IpAddr) -> Option<String> {
        let inner = self.inner.upgrade()?;
        let st = lock(&inner.state);
        for c in st.containers.values() {
            for a in c.running.iter().flat_map(|r| &r.attachments) {
                if a.ipv4.map(|i| i.addr()) == Some(ip) || a.ipv6.map(|i| i.addr()) == Some(ip) {
                    let net = st.networks.get(&a.network_id)?;
                    if net.is_default_bridge() {
                        return None;
                    }
                    return Some(format!("{}.{}", c.name, net.name));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEvents;
    impl NetworkEvents for NoEvents {
        fn network_event(&self, _: &str, _: &str, _: BTreeMap<String, String>) {}
    }

    /// A service without a default bridge or firewall: nothing touches the kernel.
    async fn service(dir: &Path) -> Networks {
        Networks::open(
            NetworkOptions {
                data_root: dir.join("data"),
                exec_root: dir.join("exec"),
                bridge: "none".into(),
                bip: None,
                fixed_cidr: None,
                default_pools: ipam::docker_default_pools(),
                firewall_table: None,
                mtu: None,
            },
            Arc::new(NoEvents),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn predefined_networks_and_list_filters() {
        let dir = tempfile::tempdir().unwrap();
        let n = service(dir.path()).await;
        let names = |f: &str| -> Vec<String> {
            let f = Filters::parse(f).unwrap();
            n.list(&f).unwrap().into_iter().map(|r| r.name).collect()
        };
        assert_eq!(names(""), ["host", "none"]);
        assert_eq!(names(r#"{"driver":{"null":true}}"#), ["none"]);
        assert_eq!(names(r#"{"type":{"custom":true}}"#), Vec::<String>::new());
        assert!(
            n.list(&Filters::parse(r#"{"type":{"x":true}}"#).unwrap())
                .is_err()
        );
        assert!(
            n.list(&Filters::parse(r#"{"bogus":{"x":true}}"#).unwrap())
                .is_err()
        );
        let host = n.inspect("host").unwrap();
        assert_eq!(
            (host.driver.as_str(), host.scope.as_str()),
            ("host", "local")
        );
        assert_eq!(n.inspect(&host.id[..6]).unwrap().name, "host");
        let e = n.inspect("nope").unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (
                berth_api::ErrorKind::NotFound,
                "network nope not found".into()
            )
        );
        let e = n.remove("none").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "none is a pre-defined network and cannot be removed"
        );
        // Records survive a restart of the service.
        let again = service(dir.path()).await;
        assert_eq!(again.inspect("host").unwrap().id, host.id);
    }

    #[tokio::test]
    async fn create_refuses_what_docker_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let n = service(dir.path()).await;
        let req = |name: &str, driver: &str| NetworkCreateRequest {
            name: name.into(),
            driver: driver.into(),
            ..Default::default()
        };
        let e = n.create(req("x", "overlay")).await.unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (
                berth_api::ErrorKind::NotFound,
                "plugin \"overlay\" not found".into()
            )
        );
        let e = n.create(req("x", "host")).await.unwrap_err();
        assert_eq!(e.kind(), berth_api::ErrorKind::Forbidden);
        let e = n.create(req("host", "bridge")).await.unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (
                berth_api::ErrorKind::Forbidden,
                "operation is not permitted on predefined host network ".into()
            )
        );
        let e = n.create(req("  ", "bridge")).await.unwrap_err();
        assert_eq!(e.kind(), berth_api::ErrorKind::InvalidArgument);
    }

    #[tokio::test]
    async fn container_modes_and_endpoint_checks() {
        let dir = tempfile::tempdir().unwrap();
        let n = service(dir.path()).await;
        let none: BTreeMap<String, EndpointSettings> = BTreeMap::new();
        let no_ports: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
        // Without a default bridge, the default network is none.
        let mode = n
            .container_create(
                "a".repeat(64).as_str(),
                "a",
                "default",
                &none,
                &no_ports,
                false,
                &[],
            )
            .unwrap();
        assert_eq!(mode, "none");
        let e = n
            .container_create(&"b".repeat(64), "b", "nope", &none, &no_ports, false, &[])
            .unwrap_err();
        assert_eq!(e.to_string(), "network nope not found");
        let mut eps = BTreeMap::new();
        eps.insert("none".to_string(), EndpointSettings::default());
        eps.insert("other".to_string(), EndpointSettings::default());
        let e = n
            .container_create(&"c".repeat(64), "c", "host", &eps, &no_ports, false, &[])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "container sharing network namespace with another container or host cannot be connected to any other network"
        );
        let s = n.settings(&"a".repeat(64));
        assert!(s.networks.contains_key("none"));
        assert!(s.ports.is_empty());
    }

    #[test]
    fn port_keys() {
        assert_eq!(parse_port_key("80/tcp").unwrap(), (80, 80, Proto::Tcp));
        assert_eq!(parse_port_key("53/udp").unwrap(), (53, 53, Proto::Udp));
        assert_eq!(
            parse_port_key("8000-8002").unwrap(),
            (8000, 8002, Proto::Tcp)
        );
        assert!(parse_port_key("http/tcp").is_err());
        assert!(parse_port_key("80/xyz").is_err());
    }

    #[test]
    fn publish_all_adds_the_exposed_ports() {
        let mut b = BTreeMap::new();
        b.insert(
            "80/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: "8080".into(),
            }]),
        );
        let exposed = vec!["80/tcp".to_string(), "443/tcp".to_string()];
        let (specs, left) = port_specs(&b, false, &exposed).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].host_port, 8080);
        assert_eq!(specs[0].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(left, vec!["443/tcp".to_string()]);
        let (specs, left) = port_specs(&b, true, &exposed).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].host_port, 0);
        assert!(left.is_empty());
        let mut bad = BTreeMap::new();
        bad.insert(
            "80/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: "not-an-ip".into(),
                host_port: "1".into(),
            }]),
        );
        assert!(port_specs(&bad, false, &[]).is_err());
    }
}
