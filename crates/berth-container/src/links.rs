//! Legacy container links (`--link target:alias`) on the default bridge, as dockerd's
//! (moby `daemon/links`): checked at create, then at each start the linking container gets
//! `/etc/hosts` entries for the alias, the target's hostname and name, and the environment
//! variables describing the target (`ALIAS_PORT_80_TCP=tcp://ip:80`, `ALIAS_NAME`,
//! `ALIAS_ENV_X`). On user-defined networks links are `EndpointSettings.Links`, answered by
//! the embedded DNS server (`berth-network`), and none of this applies.

use std::sync::Arc;

use berth_api::models::HostConfig;

use crate::error::{ContainerError, Result, invalid};
use crate::manager::{Container, Containers};
use crate::network::NetworkStart;

/// dockerd's message for links with host networking.
const HOST_AND_LINKS: &str = "conflicting options: host type networking can't be used with links. This would result in undefined behavior";

/// `name[:alias]` or the stored `/name:/parent/alias` → (name, alias), as dockerd's
/// `opts.ParseLink`.
pub fn parse_link(val: &str) -> Result<(String, String)> {
    if val.is_empty() {
        return Err(invalid("empty string specified for links"));
    }
    let parts: Vec<&str> = val.splitn(3, ':').collect();
    match parts[..] {
        [one] => Ok((one.to_string(), one.to_string())),
        [_, ""] | [_, _, _] => Err(invalid(format!("bad format for links: {val}"))),
        [name, alias] => match name.strip_prefix('/') {
            Some(name) => Ok((
                name.to_string(),
                alias.rsplit('/').next().unwrap_or(alias).to_string(),
            )),
            None => Ok((name.to_string(), alias.to_string())),
        },
        _ => unreachable!("splitn gives one to three parts"),
    }
}

/// The environment a link gives the linking container (moby `links.Link.ToEnv`).
pub fn link_env(child_ip: &str, name: &str, env: &[String], exposed: &[String]) -> Vec<String> {
    let alias = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .to_ascii_uppercase()
        .replace('-', "_");
    let mut ports: Vec<(u16, String)> = exposed
        .iter()
        .filter_map(|k| {
            let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            Some((p.parse().ok()?, proto.to_ascii_lowercase()))
        })
        .collect();
    // TCP first, then by protocol, then by number, so that ranges are contiguous.
    ports.sort_by(|a, b| {
        let tcp = |p: &str| if p == "tcp" { 0 } else { 1 };
        (tcp(&a.1), &a.1, a.0).cmp(&(tcp(&b.1), &b.1, b.0))
    });
    let mut out = Vec::new();
    let mut start = None::<(u16, String)>;
    let mut end = None::<(u16, String)>;
    for (i, (num, proto)) in ports.iter().enumerate() {
        if i == 0 {
            out.push(format!("{alias}_PORT={proto}://{child_ip}:{num}"));
            start = Some((*num, proto.clone()));
            end = start.clone();
        }
        let up = proto.to_ascii_uppercase();
        let prefix = format!("{alias}_PORT_{num}_{up}");
        out.push(format!("{prefix}={proto}://{child_ip}:{num}"));
        out.push(format!("{prefix}_ADDR={child_ip}"));
        out.push(format!("{prefix}_PORT={num}"));
        out.push(format!("{prefix}_PROTO={proto}"));
        let (Some(s), Some(e)) = (start.clone(), end.clone()) else {
            continue;
        };
        if u32::from(*num) == u32::from(e.0) + 1 && *proto == e.1 {
            end = Some((*num, proto.clone()));
            if i < ports.len() - 1 {
                continue;
            }
        }
        let e = end.clone().unwrap_or(e);
        if e != s {
            let p = format!("{alias}_PORT_{}_{}", s.0, s.1.to_ascii_uppercase());
            out.push(format!("{p}_START={}://{child_ip}:{}", s.1, s.0));
            out.push(format!("{p}_PORT_START={}", s.0));
            out.push(format!("{p}_END={}://{child_ip}:{}", e.1, e.0));
            out.push(format!("{p}_PORT_END={}", e.0));
        }
        start = Some((*num, proto.clone()));
        end = start.clone();
    }
    out.push(format!("{alias}_NAME={name}"));
    for v in env {
        let Some((k, val)) = v.split_once('=') else {
            continue;
        };
        if k == "HOME" || k == "PATH" {
            continue;
        }
        out.push(format!("{alias}_ENV_{k}={val}"));
    }
    out
}

impl Containers {
    /// Checks `HostConfig.Links` of a new container: the targets (their current names) and
    /// aliases, which the caller stores in dockerd's form, `/target:/name/alias` (what
    /// inspect shows). `None` leaves them as given: on user-defined networks dockerd
    /// registers no legacy link.
    pub(crate) fn check_links(&self, host: &HostConfig) -> Result<Option<Vec<(String, String)>>> {
        let Some(links) = host.links.as_ref().filter(|l| !l.is_empty()) else {
            return Ok(None);
        };
        if host.network_mode.is_host() {
            return Err(invalid(HOST_AND_LINKS));
        }
        // On a user-defined network links are DNS aliases.
        if host.network_mode.is_user_defined() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(links.len());
        for l in links {
            let (target, alias) = parse_link(l)?;
            let child = self
                .get(&target)
                .map_err(|e| invalid(format!("could not get container for {target}: {e}")))?;
            let child = child.record();
            if child.network_mode().is_host() {
                return Err(invalid(HOST_AND_LINKS));
            }
            out.push((child.name, alias));
        }
        Ok(Some(out))
    }

    /// What a starting container's links give it on the default bridge: `/etc/hosts` lines
    /// (`ip\talias hostname name`) and environment variables; a link to a container that is
    /// not running fails the start with dockerd's message.
    pub(crate) fn resolve_links(&self, c: &Container, net: &mut NetworkStart) -> Result<()> {
        let r = c.record();
        let Some(links) = r.host_config.links.as_ref().filter(|l| !l.is_empty()) else {
            return Ok(());
        };
        if r.network_mode().is_user_defined() {
            return Ok(());
        }
        let Some(network) = self.network() else {
            return Ok(());
        };
        // Links need the linking container on the default bridge, as with dockerd.
        if !network.0.networks(&r.id).contains_key("bridge") {
            return Ok(());
        }
        for l in links {
            let (target, alias) = parse_link(l)?;
            // A target removed since is no link any more (dockerd drops it from its index).
            let Ok(child): std::result::Result<Arc<Container>, _> = self.get(&target) else {
                continue;
            };
            let child = child.record();
            let link_name = format!("/{}/{alias}", r.name);
            if !child.state.status.is_running() {
                return Err(ContainerError::Internal(format!(
                    "Cannot link to a non running container: /{} AS {link_name}",
                    child.name
                )));
            }
            let Some(ep) = network.0.networks(&child.id).remove("bridge") else {
                return Err(ContainerError::Internal(format!(
                    "container {} not attached to default bridge network",
                    child.id
                )));
            };
            let mut names = format!("{alias} {}", child.config.hostname);
            if alias != child.name {
                names.push(' ');
                names.push_str(&child.name);
            }
            for ip in [&ep.ip_address, &ep.global_ipv6_address] {
                if !ip.is_empty() {
                    net.link_hosts.push((names.clone(), ip.clone()));
                }
            }
            let exposed: Vec<String> = child
                .config
                .exposed_ports
                .iter()
                .flat_map(|m| m.keys().cloned())
                .collect();
            net.link_env.extend(link_env(
                &ep.ip_address,
                &link_name,
                child.config.env.as_deref().unwrap_or_default(),
                &exposed,
            ));
        }
        Ok(())
    }
}

impl Containers {
    /// `DELETE /containers/{parent}/{alias}?link=true` (`rm --link`): removes a legacy link
    /// from its parent, which keeps running; the next start (or hosts rewrite) drops it.
    pub fn remove_link(&self, name: &str) -> Result<()> {
        let full = format!("/{}", name.trim_start_matches('/'));
        let no_such = || ContainerError::NotFound(format!("No such container: {full}"));
        let Some((parent, alias)) = full.rsplit_once('/') else {
            return Err(no_such());
        };
        if parent.is_empty() {
            return Err(ContainerError::Internal(
                "Conflict, cannot remove the default link name of the container".into(),
            ));
        }
        let parent = self.get(parent).map_err(|_| no_such())?;
        let links = parent.record().host_config.links.unwrap_or_default();
        let mut kept = Vec::with_capacity(links.len());
        let mut found = false;
        for l in links {
            match parse_link(&l) {
                Ok((_, a)) if a == alias => found = true,
                _ => kept.push(l),
            }
        }
        if !found {
            return Err(no_such());
        }
        parent.update(|r| r.host_config.links = (!kept.is_empty()).then_some(kept))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_as_dockerd_parses_them() {
        assert_eq!(parse_link("db").unwrap(), ("db".into(), "db".into()));
        assert_eq!(parse_link("db:x").unwrap(), ("db".into(), "x".into()));
        assert_eq!(parse_link("/db:/web/x").unwrap(), ("db".into(), "x".into()));
        assert!(parse_link("db:").is_err());
        assert!(parse_link("a:b:c").is_err());
        assert!(parse_link("").is_err());
    }

    #[test]
    fn environment_of_a_link() {
        let env = link_env(
            "172.17.0.2",
            "/web/db-1",
            &[
                "PATH=/bin".into(),
                "PASSWORD=x=y".into(),
                "HOME=/root".into(),
            ],
            &["80/tcp".into(), "53/udp".into(), "81/tcp".into()],
        );
        assert_eq!(
            env,
            [
                "DB_1_PORT=tcp://172.17.0.2:80",
                "DB_1_PORT_80_TCP=tcp://172.17.0.2:80",
                "DB_1_PORT_80_TCP_ADDR=172.17.0.2",
                "DB_1_PORT_80_TCP_PORT=80",
                "DB_1_PORT_80_TCP_PROTO=tcp",
                "DB_1_PORT_81_TCP=tcp://172.17.0.2:81",
                "DB_1_PORT_81_TCP_ADDR=172.17.0.2",
                "DB_1_PORT_81_TCP_PORT=81",
                "DB_1_PORT_81_TCP_PROTO=tcp",
                "DB_1_PORT_53_UDP=udp://172.17.0.2:53",
                "DB_1_PORT_53_UDP_ADDR=172.17.0.2",
                "DB_1_PORT_53_UDP_PORT=53",
                "DB_1_PORT_53_UDP_PROTO=udp",
                "DB_1_PORT_80_TCP_START=tcp://172.17.0.2:80",
                "DB_1_PORT_80_TCP_PORT_START=80",
                "DB_1_PORT_80_TCP_END=tcp://172.17.0.2:81",
                "DB_1_PORT_80_TCP_PORT_END=81",
                "DB_1_NAME=/web/db-1",
                "DB_1_ENV_PASSWORD=x=y",
            ]
        );
    }
}
