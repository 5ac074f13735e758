//! The seam to the network service: the container manager tells it when a container is
//! created, started, stopped, renamed and removed, and asks it for the netns to run in and
//! for the `NetworkSettings` and `Ports` views. berthd implements it over `berth-network`, so
//! this crate needs no netlink or nftables.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;

use berth_api::ApiError;
use berth_api::models::container::{EndpointSettings, NetworkSettings, Port, PortBinding};
use berth_api::models::{HostConfig, NetworkingConfig};
use std::collections::BTreeMap;

/// A boxed future (the trait is used as `dyn`).
pub type NetFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a new container asks of the network service, in one piece: the one call at create.
/// Fields keep Docker's API shapes (the network service records them as given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkRequest {
    /// The container's full id.
    pub id: String,
    pub name: String,
    /// `HostConfig.NetworkMode` as given (`default`, `bridge`, `host`, `none`,
    /// `container:<id>`, a network's name or id).
    pub mode: String,
    /// `NetworkingConfig.EndpointsConfig`, by network: aliases, static addresses
    /// (`IPAMConfig`), MAC address, links, driver options.
    pub endpoints: BTreeMap<String, EndpointSettings>,
    /// `HostConfig.PortBindings`.
    pub port_bindings: BTreeMap<String, Option<Vec<PortBinding>>>,
    /// `HostConfig.PublishAllPorts` (`-P`).
    pub publish_all: bool,
    /// `Config.ExposedPorts` keys (`80/tcp`), for `-P` and inspect's `Ports`.
    pub exposed: Vec<String>,
    /// `HostConfig.Dns`: where the embedded DNS server forwards.
    pub dns: Vec<String>,
    /// `HostConfig.AutoRemove`: the records need not wait for the disk until
    /// [`NetworkAttacher::persist`].
    pub ephemeral: bool,
}

impl NetworkRequest {
    /// The networking part of a create request.
    pub fn new(
        id: &str,
        name: &str,
        host: &HostConfig,
        networking: Option<&NetworkingConfig>,
        exposed: &[String],
    ) -> NetworkRequest {
        NetworkRequest {
            id: id.to_string(),
            name: name.to_string(),
            mode: host.network_mode.clone(),
            endpoints: networking
                .map(|n| n.endpoints_config.clone())
                .unwrap_or_default(),
            port_bindings: host.port_bindings.clone().unwrap_or_default(),
            publish_all: host.publish_all_ports,
            exposed: exposed.to_vec(),
            dns: host.dns.clone().unwrap_or_default(),
            ephemeral: host.auto_remove,
        }
    }
}

/// What the network service set up for a starting container.
#[derive(Debug, Clone, Default)]
pub struct NetworkStart {
    /// The netns the container joins; `None`: host networking or the runtime's private one.
    pub netns: Option<PathBuf>,
    /// The container's addresses (for `/etc/hosts`), primary first.
    pub addresses: Vec<IpAddr>,
    /// `/etc/resolv.conf` points at the embedded DNS server (127.0.0.11).
    pub embedded_dns: bool,
    /// The address `host-gateway` stands for in `--add-host`.
    pub host_gateway: Option<IpAddr>,
    /// Legacy links' `/etc/hosts` entries: (names separated by spaces, address). Filled by
    /// the container manager.
    pub link_hosts: Vec<(String, String)>,
    /// Legacy links' environment variables. Filled by the container manager.
    pub link_env: Vec<String>,
}

/// The network service as the container manager sees it.
pub trait NetworkAttacher: Send + Sync {
    /// Validates and records everything the container asks (mode, endpoints, published
    /// ports, DNS servers) in one call; returns the normalised network mode (`default`
    /// becomes `bridge`).
    fn create(&self, req: NetworkRequest) -> Result<String, ApiError>;
    /// Sets up the container's networking just before it starts.
    fn start<'a>(&'a self, id: &'a str) -> NetFuture<'a, Result<NetworkStart, ApiError>>;
    /// Tears it down after the container's process ended (idempotent).
    fn stop<'a>(&'a self, id: &'a str) -> NetFuture<'a, ()>;
    /// Forgets a removed container.
    fn remove<'a>(&'a self, id: &'a str) -> NetFuture<'a, ()>;
    fn rename(&self, id: &str, name: &str);
    /// Makes the records of an auto-removed container durable (see `Containers::create`).
    fn persist(&self, _id: &str) {}
    /// The netns of a running container (for `--network container:<id>`).
    fn netns_of(&self, id: &str) -> Option<PathBuf>;
    fn settings(&self, id: &str) -> NetworkSettings;
    fn ports(&self, id: &str) -> Vec<Port>;
    fn networks(&self, id: &str) -> BTreeMap<String, EndpointSettings> {
        self.settings(id).networks
    }
}

/// The network service handed to the container manager (`Options::network`).
#[derive(Clone)]
pub struct NetworkHandle(pub std::sync::Arc<dyn NetworkAttacher>);

impl std::fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetworkHandle")
    }
}
