//! The seam to the network service: the container manager tells it when a container is
//! created, started, stopped, renamed and removed, and asks it for the netns to run in and
//! for the `NetworkSettings` and `Ports` views. berthd implements it over `berth-network`, so
//! this crate needs no netlink or nftables.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;

use berth_api::ApiError;
use berth_api::models::container::{EndpointSettings, NetworkSettings, Port};
use std::collections::BTreeMap;

/// A boxed future (the trait is used as `dyn`).
pub type NetFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a new container asks of the network service, in one piece: the one call at create.
pub use berth_api::networking::NetworkRequest;

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
