//! A running container's networking: start (netns, endpoints, published ports, DNS), stop,
//! and connect/disconnect of a network while it runs.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::models::container::EndpointSettings;
use berth_api::vocab::NetworkMode;

use super::resolver::NameResolver;
use super::{Networks, StartInfo, lock, release};
use crate::control_error::{ControlError, Result};
use crate::dataplane::Served;
use crate::link;
use crate::store::{Attachment, ContainerNet, Published, Requested, Running};

impl Networks {
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
        if matches!(c.mode, NetworkMode::Host | NetworkMode::Container(_)) {
            return Ok(StartInfo {
                host_gateway,
                ..Default::default()
            });
        }
        let path = self.netns_path(id);
        self.inner
            .dp
            .create_netns(&path)
            .await
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

    pub(super) async fn start_endpoints(&self, c: &ContainerNet, path: &Path) -> Result<StartInfo> {
        let mut info = StartInfo {
            netns: Some(path.to_path_buf()),
            ..Default::default()
        };
        for (i, req) in c.requested.iter().enumerate() {
            let a = self
                .attach_endpoint(&c.id, req, path, i == 0, &ifname(req, i))
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

    pub(super) fn uses_embedded_dns(&self, id: &str) -> bool {
        let st = lock(&self.inner.state);
        st.containers.get(id).is_some_and(|c| {
            c.requested.iter().any(|r| {
                st.networks
                    .get(&r.network_id)
                    .is_some_and(|n| !n.is_default_bridge())
            })
        })
    }

    pub(super) fn serve_dns(&self, id: &str, path: &Path) -> Result<Served> {
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
            self.inner.dp.host_resolvers()
        } else {
            configured
        };
        self.inner
            .dp
            .serve_dns(&self.inner.tasks, path, resolver, upstreams)
            .map_err(ControlError::data(format!(
                "cannot start the embedded DNS server of container {id}"
            )))
    }

    /// Allocates addresses on one network and creates the veth endpoint in the netns. If the
    /// data plane fails, the lease gives the addresses back and forgets the attachment.
    pub(super) async fn attach_endpoint(
        &self,
        id: &str,
        req: &Requested,
        path: &Path,
        primary: bool,
        container_if: &str,
    ) -> Result<Attachment> {
        let (n, lease) = self.lease(id, req, container_if)?;
        let att = lease.attachment();
        let gateways = if primary && !n.internal {
            [att.gateway_v4, att.gateway_v6]
                .into_iter()
                .flatten()
                .collect()
        } else {
            Vec::new()
        };
        let ep = link::EndpointConfig {
            bridge: n.device.clone(),
            host_if: att.host_if.clone(),
            netns: path.to_path_buf(),
            container_if: container_if.to_string(),
            mac: att.mac,
            addresses: [att.ipv4, att.ipv6].into_iter().flatten().collect(),
            gateways,
            mtu: n.mtu(),
        };
        self.inner
            .dp
            .attach(&ep)
            .await
            .map_err(ControlError::data(format!(
                "cannot attach container {} to network {}",
                &id[..12.min(id.len())],
                n.name
            )))?;
        Ok(lease.keep())
    }

    /// Binds the container's published ports (proxies) and records them.
    pub(super) async fn publish_ports(&self, id: &str) -> Result<()> {
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
                let bound = self
                    .inner
                    .dp
                    .publish(
                        &self.inner.tasks,
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
                host_port: proxy.host_port,
            };
            lock(&self.inner.live)
                .entry(id.to_string())
                .or_default()
                .proxies
                .push(proxy.served);
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

    /// netns, leases, firewall rules. Idempotent.
    pub async fn container_stop(&self, id: &str) {
        let _op = self.inner.op.lock().await;
        self.teardown_locked(id).await;
    }

    pub(super) async fn teardown_locked(&self, id: &str) {
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
            if let Err(e) = self.inner.dp.leave_bridge(&a.host_if).await {
                tracing::warn!(container = %id, veth = %a.host_if, error = %e, "cannot take veth off its bridge");
            }
            let (cid, veth, dp) = (id.to_string(), a.host_if.clone(), self.inner.dp.clone());
            self.inner.tasks.spawn(async move {
                if let Err(e) = dp.detach(&veth).await {
                    tracing::warn!(container = %cid, veth = %veth, error = %e, "cannot remove veth");
                }
            });
            if let Ok(n) = self.get(&a.network_id) {
                self.event("disconnect", &n, &[("container", id)]);
            }
        }
        if let Err(e) = self.inner.dp.remove_netns(&running.netns).await {
            tracing::warn!(container = %id, error = %e, "cannot remove network namespace");
        }
        if !running.published.is_empty() {
            self.apply_firewall();
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
        if c.mode.shares_netns() {
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
            let ifname = ifname(&req, r.attachments.len());
            let primary = r.attachments.is_empty();
            self.attach_endpoint(id, &req, &r.netns, primary, &ifname)
                .await?;
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
            if let Err(e) = self.inner.dp.detach(&a.host_if).await {
                tracing::warn!(container = %id, error = %e, "cannot remove veth");
            }
            self.apply_firewall();
        }
        self.event("disconnect", &n, &[("container", id)]);
        Ok(())
    }
}

/// Docker 28's endpoint option naming the interface in the container.
pub const IFNAME_OPT: &str = "com.docker.network.endpoint.ifname";

/// The container's interface name for an endpoint: [`IFNAME_OPT`] when given, else `eth<i>`.
fn ifname(req: &Requested, i: usize) -> String {
    req.settings
        .driver_opts
        .as_ref()
        .and_then(|o| o.get(IFNAME_OPT))
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("eth{i}"))
}
