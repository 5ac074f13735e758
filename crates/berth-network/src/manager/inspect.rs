//! Read-only views: network inspect and list, a container's `NetworkSettings` and `Ports`,
//! and the firewall ruleset the state describes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use berth_api::Filters;
use berth_api::models::container::{EndpointSettings, NetworkSettings, Port, PortBinding};
use berth_api::models::network::{
    ConfigReference, Ipam, IpamConfig, NetworkContainer, NetworkResource,
};
use berth_api::vocab::NetworkMode;

use super::ports::parse_port_key;
use super::{Networks, State, lock};
use crate::control_error::{ControlError, Result};
use crate::firewall::{BridgeRules, PortForward, Ruleset};
use crate::ipam::{self};
use crate::store::NetworkRecord;

impl Networks {
    pub(super) fn resource(
        &self,
        st: &State,
        n: &NetworkRecord,
        with_containers: bool,
    ) -> NetworkResource {
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

    pub(super) fn in_use(st: &State, id: &str) -> bool {
        st.containers.values().any(|c| {
            c.running
                .iter()
                .flat_map(|r| &r.attachments)
                .any(|a| a.network_id == id)
        })
    }

    pub(super) fn matches(&self, st: &State, n: &NetworkRecord, f: &Filters) -> Result<bool> {
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

    /// The netns of a running container (for `container:<id>` network modes).
    pub fn netns_of(&self, id: &str) -> Option<PathBuf> {
        lock(&self.inner.state)
            .containers
            .get(id)
            .and_then(|c| c.running.as_ref().map(|r| r.netns.clone()))
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
        if matches!(c.mode, NetworkMode::Host | NetworkMode::None) {
            let mode = c.mode.to_string();
            if let Some(n) = st
                .networks
                .values()
                .find(|n| n.predefined && n.name == mode)
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

    pub(super) fn ruleset(&self) -> Ruleset {
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
}
