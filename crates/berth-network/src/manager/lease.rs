//! An endpoint between its record and its link: [`Lease`] holds the addresses and the recorded
//! attachment while the data plane makes the veth, and undoes both if that fails.

use std::net::{IpAddr, Ipv4Addr};

use super::{Networks, lock, random_hex};
use crate::control_error::{ControlError, Result};
use crate::ipam::{self, Allocation};
use crate::store::{Attachment, NetworkRecord, Requested};

/// Addresses allocated on a network and the attachment recorded in a running container's
/// record. Dropped before [`Lease::keep`], it gives the addresses back and forgets the
/// attachment. The record is written before any link exists, so a crash in between is undone
/// by the teardown of the next start.
pub(super) struct Lease<'a> {
    net: &'a Networks,
    container: String,
    att: Attachment,
    kept: bool,
}

impl Lease<'_> {
    pub(super) fn attachment(&self) -> &Attachment {
        &self.att
    }

    /// The data plane made the endpoint: the lease stays.
    pub(super) fn keep(mut self) -> Attachment {
        self.kept = true;
        self.att.clone()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.net.undo_lease(&self.container, &self.att);
        }
    }
}

impl Networks {
    /// Allocates an endpoint's addresses on `req`'s network (`IPAMConfig` addresses when
    /// given) and records the attachment in the running container `id`.
    pub(super) fn lease(
        &self,
        id: &str,
        req: &Requested,
        container_if: &str,
    ) -> Result<(NetworkRecord, Lease<'_>)> {
        let (n, att, saved) = {
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
            let alloc = Allocation::endpoint(&mut n.pools, want4, want6)?;
            let a = alloc.addresses();
            let mac = match req.settings.mac_address.as_str() {
                "" => ipam::mac_for(
                    a.ipv4
                        .or(a.ipv6)
                        .map(|n| n.addr())
                        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                ),
                m => ipam::parse_mac(m)?,
            };
            let a = alloc.commit();
            let att = Attachment {
                network_id: n.id.clone(),
                endpoint_id: random_hex(32),
                ipv4: a.ipv4,
                ipv6: a.ipv6,
                mac,
                host_if: format!("veth{}", &random_hex(4)[..7]),
                container_if: container_if.to_string(),
                gateway_v4: a.gateway_v4,
                gateway_v6: a.gateway_v6,
            };
            let _ = self.inner.store.save_network_allocations(n);
            let n = n.clone();
            let mut saved = Ok(());
            if let Some(c) = st.containers.get_mut(id)
                && let Some(r) = c.running.as_mut()
            {
                r.attachments.push(att.clone());
                saved = self.inner.store.save_container(c);
            }
            (n, att, saved)
        };
        // Made after the state lock is released: its drop takes that lock.
        let lease = Lease {
            net: self,
            container: id.to_string(),
            att,
            kept: false,
        };
        saved?;
        Ok((n, lease))
    }

    fn undo_lease(&self, id: &str, att: &Attachment) {
        let mut guard = lock(&self.inner.state);
        let st = &mut *guard;
        if let Some(c) = st.containers.get_mut(id)
            && let Some(r) = c.running.as_mut()
            && let Some(pos) = r
                .attachments
                .iter()
                .position(|a| a.endpoint_id == att.endpoint_id)
        {
            r.attachments.remove(pos);
            if let Err(e) = self.inner.store.save_container(c) {
                tracing::warn!(container = %id, error = %e, "cannot record an undone endpoint");
            }
        }
        if let Some(n) = st.networks.get_mut(&att.network_id) {
            for ip in [att.ipv4, att.ipv6].into_iter().flatten() {
                for p in &mut n.pools {
                    p.release(ip.addr());
                }
            }
            let _ = self.inner.store.save_network_allocations(n);
        }
    }
}
