//! A container's network records: create (mode, endpoints, ports), rename, DNS servers,
//! durability of auto-removed ones, remove.

use std::collections::BTreeMap;

use berth_api::models::container::EndpointSettings;
use berth_api::networking::NetworkRequest;
use berth_api::vocab::NetworkMode;

use super::ports::port_specs;
use super::{Networks, State, lock};
use crate::control_error::{ControlError, Result};
use crate::ipam;
use crate::store::{ContainerNet, NetworkRecord, Requested};

impl Networks {
    /// Checks and records a new container's networking. Nothing runs yet. Returns the
    /// normalised network mode (`default` becomes `bridge`, or `none` without a default bridge).
    pub fn container_create(&self, req: &NetworkRequest) -> Result<String> {
        if req.ephemeral {
            self.inner.store.set_ephemeral(&req.id);
        }
        let mut c = self.container_record(req)?;
        for s in &req.dns {
            ipam::parse_ip(s)?;
        }
        c.dns = req.dns.clone();
        self.inner.store.save_container(&c)?;
        let mode = c.mode.to_string();
        lock(&self.inner.state).containers.insert(c.id.clone(), c);
        Ok(mode)
    }

    /// A new container's record, its mode and endpoints checked against the networks.
    fn container_record(&self, req: &NetworkRequest) -> Result<ContainerNet> {
        let mut endpoints = primary_named(&req.endpoints, &req.mode);
        let st = lock(&self.inner.state);
        let mode = match &req.mode {
            // `--bridge=none`: containers that ask for the default get no network (only
            // loopback, as dockerd's), and the endpoint a client sent for the default
            // network (the docker CLI always sends one) names nothing to join.
            NetworkMode::Unset | NetworkMode::Default | NetworkMode::Bridge => {
                if st.networks.values().any(|n| n.is_default_bridge()) {
                    NetworkMode::Bridge
                } else {
                    endpoints.retain(|k, _| k != "bridge" && k != "default");
                    NetworkMode::None
                }
            }
            m => m.clone(),
        };
        let endpoints = &endpoints;
        let name = mode.to_string();
        if mode.shares_netns() {
            for key in endpoints.keys().filter(|k| **k != name) {
                let other = Self::find(&st, key)?;
                if other.name != name {
                    return Err(ControlError::invalid(
                        "container sharing network namespace with another container or host cannot be connected to any other network",
                    ));
                }
            }
            return shared_record(req, mode);
        }
        let n = Self::find(&st, &name)?;
        if n.driver == "host" || n.driver == "null" {
            return shared_record(req, NetworkMode::parse(&n.name));
        }
        let requested = Self::requested(&st, &n, &name, endpoints)?;
        drop(st);
        let (ports, exposed_left) = port_specs(&req.port_bindings, req.publish_all, &req.exposed)?;
        Ok(ContainerNet {
            id: req.id.clone(),
            name: req.name.clone(),
            mode,
            requested,
            port_bindings: req.port_bindings.clone(),
            ports,
            exposed: exposed_left,
            dns: Vec::new(),
            running: None,
        })
    }

    /// The endpoints a container on network `n` (its mode, as `mode`) asks for: `n`'s first,
    /// then the other bridge networks of `endpoints`, each checked.
    fn requested(
        st: &State,
        n: &NetworkRecord,
        mode: &str,
        endpoints: &BTreeMap<String, EndpointSettings>,
    ) -> Result<Vec<Requested>> {
        let s = endpoints
            .get(mode)
            .or_else(|| endpoints.get(&n.name))
            .or_else(|| endpoints.get(&n.id))
            .cloned()
            .unwrap_or_default();
        Self::check_endpoint(n, &s)?;
        let mut requested = vec![Requested {
            network_id: n.id.clone(),
            settings: s,
        }];
        for (key, s) in endpoints {
            let other = Self::find(st, key)?;
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
        Ok(requested)
    }

    pub(super) fn check_endpoint(n: &NetworkRecord, s: &EndpointSettings) -> Result<()> {
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

    /// Makes an auto-removed container's records durable (it stays created, not started).
    pub fn container_persist(&self, id: &str) {
        let st = lock(&self.inner.state);
        if let Some(c) = st.containers.get(id)
            && let Err(e) = self.inner.store.persist_container(c)
        {
            tracing::warn!(container = %id, error = %e, "cannot write network record");
        }
    }

    /// Renames a container in its network records (DNS answers follow).
    pub fn container_rename(&self, id: &str, name: &str) {
        let mut st = lock(&self.inner.state);
        if let Some(c) = st.containers.get_mut(id) {
            c.name = name.to_string();
            let _ = self.inner.store.save_container(c);
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
}

/// The docker CLI names the primary network as the mode it was given (`default`).
fn primary_named(
    endpoints: &BTreeMap<String, EndpointSettings>,
    mode: &NetworkMode,
) -> BTreeMap<String, EndpointSettings> {
    endpoints
        .iter()
        .map(|(k, v)| {
            let k = if k == "default" {
                match mode {
                    m if m.is_default() => "bridge".to_string(),
                    m => m.to_string(),
                }
            } else {
                k.clone()
            };
            (k, v.clone())
        })
        .collect()
}

/// The record of a container on the host's network, on none, or in another's netns: no
/// endpoints of its own.
fn shared_record(req: &NetworkRequest, mode: NetworkMode) -> Result<ContainerNet> {
    if mode.container().is_some() && !req.port_bindings.is_empty() {
        return Err(ControlError::invalid(
            "conflicting options: port publishing and the container type network mode",
        ));
    }
    Ok(ContainerNet {
        id: req.id.clone(),
        name: req.name.clone(),
        mode,
        ..Default::default()
    })
}
