//! The networking part of a container's create request, as one value: what the container
//! service hands the network service at create. It lives here, beside the API types it is
//! made of, because both sides of that seam (berth-container, berth-network) depend on this
//! crate and neither may depend on the other.

use std::collections::BTreeMap;

use crate::models::container::{EndpointSettings, PortBinding};
use crate::models::{HostConfig, NetworkingConfig};
use crate::vocab::NetworkMode;

/// What a new container asks of the network service, in one piece: the one call at create.
/// Fields keep Docker's API shapes (the network service records them as given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkRequest {
    /// The container's full id.
    pub id: String,
    pub name: String,
    /// `HostConfig.NetworkMode` as given (`default`, `bridge`, `host`, `none`,
    /// `container:<id>`, a network's name or id).
    pub mode: NetworkMode,
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
    /// `HostConfig.AutoRemove`: the network service's records need not wait for the disk
    /// until the container is known to outlive a crash.
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
