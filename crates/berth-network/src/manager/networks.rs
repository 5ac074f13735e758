//! Networks themselves: the predefined ones, create, remove and prune.

use std::collections::BTreeMap;

use berth_api::models::network::{Ipam, IpamConfig, NetworkCreateRequest};
use ipnet::IpNet;

use super::{BRIDGE_NAME_OPTION, NetworkOptions, Networks, lock, now_text, random_hex};
use crate::control_error::{ControlError, Result};
use crate::ipam::{self, Pool};
use crate::link;
use crate::store::{ContainerNet, NetworkRecord};

impl Networks {
    pub(super) async fn ensure_predefined(&self) -> Result<()> {
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
        let pool = self.default_bridge_pool(&o, old.as_ref()).await?;
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

    /// The default bridge's pool: `--bip`, else the address its device already has, else the
    /// subnet it had, else a free default subnet.
    async fn default_bridge_pool(
        &self,
        o: &NetworkOptions,
        old: Option<&NetworkRecord>,
    ) -> Result<Pool> {
        Ok(match (o.bip, self.bridge_ipv4(o).await) {
            (Some(bip), _) => Pool::new(bip.trunc(), o.fixed_cidr, Some(bip.addr()), vec![])?,
            // dockerd without --bip adopts the address its bridge already has (left up by an
            // earlier daemon, or set by the operator) rather than adding another subnet.
            (None, Some(addr)) => {
                let gateway = (addr.addr() != addr.network()).then_some(addr.addr());
                Pool::new(addr.trunc(), o.fixed_cidr, gateway, vec![])?
            }
            (None, None) => match old {
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
        })
    }

    /// The IPv4 address the default bridge's device already has, if it exists with one: the
    /// first, or the first inside `--fixed-cidr` (dockerd's `initBridgeDriver`).
    pub(super) async fn bridge_ipv4(&self, o: &NetworkOptions) -> Option<IpNet> {
        let have = match self.inner.dp.device_addresses(&o.bridge).await {
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
    pub(super) async fn host_taken(&self) -> Vec<IpNet> {
        let mut v = self.inner.dp.host_networks().await;
        // The default route covers everything and says nothing about collisions.
        v.retain(|n| n.prefix_len() != 0);
        v
    }

    pub(super) async fn ensure_bridge(&self, n: &NetworkRecord) -> Result<()> {
        let addresses = n
            .pools
            .iter()
            .filter_map(|p| p.gateway.map(|g| p.with_prefix(g)))
            .collect();
        let cfg = link::BridgeConfig {
            device: n.device.clone(),
            addresses,
            mtu: n.mtu(),
        };
        self.inner
            .dp
            .ensure_bridge(&cfg)
            .await
            .map_err(ControlError::data(format!(
                "cannot set up bridge {} of network {}",
                n.device, n.name
            )))
    }

    /// `POST /networks/create`.
    pub async fn create(&self, req: NetworkCreateRequest) -> Result<String> {
        let _op = self.inner.op.lock().await;
        self.check_create(&req)?;
        let ipam = req.ipam.clone().unwrap_or_default();
        let enable_v6 = req.enable_ipv6.unwrap_or(false);
        let enable_v4 = req.enable_ipv4.unwrap_or(true);
        let (pools, user_subnets) = self.pools_for(&ipam, enable_v4, enable_v6).await?;
        let id = random_hex(32);
        let options = req.options.clone().unwrap_or_default();
        let device = self.bridge_device(&options, &id)?;
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
            let _ = self.inner.dp.remove_bridge(&n.device).await;
            return Err(e);
        }
        lock(&self.inner.state)
            .networks
            .insert(id.clone(), n.clone());
        self.apply_firewall();
        self.event("create", &n, &[]);
        Ok(id)
    }

    /// What `create` refuses before looking at addresses: names, drivers, scopes and swarm-only
    /// kinds, in dockerd's order.
    fn check_create(&self, req: &NetworkCreateRequest) -> Result<()> {
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
        let ipam_driver = req.ipam.as_ref().map(|i| i.driver.as_str()).unwrap_or("");
        if !ipam_driver.is_empty() && ipam_driver != "default" {
            return Err(ControlError::not_found(format!(
                "plugin \"{ipam_driver}\" not found"
            )));
        }
        Ok(())
    }

    /// A new network's pools: the ones the user gave (none may overlap another network's),
    /// then a default IPv4 subnet when IPv4 is on and none was given. Returns whether the user
    /// gave any (only then may endpoints ask for `--ip`).
    async fn pools_for(
        &self,
        ipam: &Ipam,
        enable_v4: bool,
        enable_v6: bool,
    ) -> Result<(Vec<Pool>, bool)> {
        let mut taken_nets: Vec<IpNet> = lock(&self.inner.state)
            .networks
            .values()
            .flat_map(|n| n.subnets())
            .collect();
        let mut pools = Vec::new();
        for cfg in ipam.config.iter().flatten() {
            let pool = user_pool(cfg, enable_v6, &taken_nets)?;
            taken_nets.push(pool.subnet);
            pools.push(pool);
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
        Ok((pools, user_subnets))
    }

    /// The bridge device of a new network: `com.docker.network.bridge.name` or `br-<id>`,
    /// unused by other networks.
    fn bridge_device(&self, options: &BTreeMap<String, String>, id: &str) -> Result<String> {
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
        Ok(device)
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove(&self, key: &str) -> Result<()> {
        let _op = self.inner.op.lock().await;
        self.remove_locked(key).await
    }

    pub(super) async fn remove_locked(&self, key: &str) -> Result<()> {
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
        if let Err(e) = self.inner.dp.remove_bridge(&n.device).await {
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
}

/// Releases the addresses of a container's attachments.
/// dockerd's rules for a new network's name: any text but blank (libnetwork's
/// `ErrInvalidName`) or a predefined network's (`runconfig.IsPreDefinedNetwork`). Unlike
/// container names, spaces and other characters are fine: devices and records are named
/// after the id.
pub(super) fn check_network_name(name: &str) -> Result<()> {
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

/// One `IPAM.Config` entry of a create request as a pool (subnet truncated to its network),
/// refused when it overlaps a subnet in `taken`.
fn user_pool(cfg: &IpamConfig, enable_v6: bool, taken: &[IpNet]) -> Result<Pool> {
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
    if taken.iter().any(|t| ipam::overlaps(t, &subnet)) {
        return Err(ControlError::Forbidden(
            "invalid pool request: Pool overlaps with other one on this address space".to_string(),
        ));
    }
    Pool::new(subnet, range, gateway, aux)
}
