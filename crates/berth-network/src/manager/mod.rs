//! [`Networks`]: the network service. It owns the network records and each container's
//! endpoints (see [`crate::store`]), decides addresses ([`crate::ipam`]), and drives the data
//! plane: bridges, a netns per running container with its veth endpoints, published ports
//! (proxy + firewall) and the embedded DNS server of user-defined networks.
//!
//! Mutations are serialised by one async lock (`op`); reads take the state mutex only. The
//! firewall is rewritten as a whole from the state after every change.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

use crate::control_error::{ControlError, Result};
use crate::dataplane::{DataPlane, Served};
use crate::ipam::DefaultPool;
use crate::store::{ContainerNet, NetworkRecord, Running, Store};
use crate::tasks::Tasks;

mod containers;
mod endpoints;
#[cfg(test)]
mod fake;
mod inspect;
mod lease;
mod networks;
mod ports;
mod resolver;
mod restore;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;

pub use berth_api::networking::NetworkRequest;
pub use ports::{parse_port_key, port_specs};
pub use resolver::ExternalNames;

/// How long [`Networks::shutdown`] waits for background work.
pub const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
    proxies: Vec<Served>,
    dns: Option<Served>,
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
    /// The kernel (or a fake in unit tests).
    dp: Arc<dyn DataPlane>,
    /// Where proxies, DNS servers and background veth deletions run.
    tasks: Tasks,
    events: Arc<dyn NetworkEvents>,
    op: tokio::sync::Mutex<()>,
    /// Names from outside the engine (swarm services), asked when no container matches.
    external_names: Mutex<Option<Arc<dyn ExternalNames>>>,
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

impl Networks {
    fn event(&self, action: &str, n: &NetworkRecord, extra: &[(&str, &str)]) {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), n.name.clone());
        attrs.insert("type".to_string(), n.driver.clone());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.to_string());
        }
        self.inner.events.network_event(action, &n.id, attrs);
    }

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

    fn netns_path(&self, id: &str) -> PathBuf {
        self.inner.opts.exec_root.join("netns").join(id)
    }

    fn apply_firewall(&self) {
        if let Err(e) = self.inner.dp.apply_firewall(&self.ruleset()) {
            tracing::warn!(error = %e, "cannot apply firewall rules");
        }
    }

    /// Daemon shutdown: running containers keep their networking (they outlive the daemon,
    /// and the next one serves their ports and DNS again), so this stops the proxies and DNS
    /// servers, then waits (at most [`SHUTDOWN_WAIT`]) for the background work still in
    /// flight, such as veth deletions of containers that just stopped.
    pub async fn shutdown(&self) {
        let live: Vec<Live> = lock(&self.inner.live).drain().map(|(_, l)| l).collect();
        drop(live);
        let tasks = &self.inner.tasks;
        if tokio::time::timeout(SHUTDOWN_WAIT, tasks.close())
            .await
            .is_err()
        {
            tracing::warn!(
                left = tasks.len(),
                "network tasks did not finish in time; exiting anyway"
            );
        }
    }

    /// Where the embedded DNS servers look up names no container on the asking container's
    /// networks has (swarm services and their tasks).
    pub fn set_external_names(&self, names: Arc<dyn ExternalNames>) {
        *lock(&self.inner.external_names) = Some(names);
    }

    /// Tasks of the service still tracked (served ports and DNS, background deletions).
    pub fn background_tasks(&self) -> usize {
        self.inner.tasks.len()
    }
}

/// Releases the addresses of a container's attachments.
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
