//! Names the embedded DNS server answers: containers, aliases and links on the asking
//! container's user-defined networks.

use std::net::IpAddr;
use std::sync::Weak;

use super::{Inner, lock};
use crate::dns::Resolver;

/// Answers a container's DNS queries from the containers on its user-defined networks:
/// names, aliases and short ids.
pub(super) struct NameResolver {
    pub(super) inner: Weak<Inner>,
    pub(super) container: String,
}

/// Names the engine's own records do not know, answered for one container (berthd's swarm
/// services: VIPs, `tasks.NAME`, aliases).
pub trait ExternalNames: Send + Sync {
    fn lookup(&self, container: &str, name: &str) -> Vec<IpAddr>;
}

impl Resolver for NameResolver {
    fn lookup(&self, name: &str) -> Vec<IpAddr> {
        let found = self.local_lookup(name);
        if !found.is_empty() {
            return found;
        }
        let Some(inner) = self.inner.upgrade() else {
            return found;
        };
        let external = lock(&inner.external_names).clone();
        match external {
            Some(names) => names.lookup(
                &self.container,
                &name.trim_end_matches('.').to_ascii_lowercase(),
            ),
            None => found,
        }
    }

    fn reverse(&self, ip: IpAddr) -> Option<String> {
        self.local_reverse(ip)
    }
}

impl NameResolver {
    fn local_lookup(&self, name: &str) -> Vec<IpAddr> {
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

    fn local_reverse(&self, ip: IpAddr) -> Option<String> {
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
