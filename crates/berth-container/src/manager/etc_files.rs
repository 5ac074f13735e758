//! The files a container's `/etc` gets from the daemon: hostname, hosts, resolv.conf.

use std::path::PathBuf;

use super::Containers;
use crate::error::{ContainerError, Result};
use crate::etc;
use crate::network::NetworkStart;
use crate::record::{Paths, Record};

impl Containers {
    /// Rewrites a running container's `/etc/hosts` for its current addresses (after a
    /// `network connect`/`disconnect`). The file is bind-mounted into the container, so it is
    /// rewritten in place: a new file renamed over it would not be seen inside.
    pub fn update_hosts(
        &self,
        key: &str,
        addresses: &[std::net::IpAddr],
        host_gateway: Option<std::net::IpAddr>,
    ) -> Result<()> {
        let c = self.get(key)?;
        let r = c.record();
        if r.network_mode().is_host() || !r.state.status.is_running() {
            return Ok(());
        }
        // Links' entries stay, up to a target that no longer runs.
        let mut links = NetworkStart::default();
        let _ = self.resolve_links(&c, &mut links);
        let mut extra = r.host_config.extra_hosts.clone().unwrap_or_default();
        extra.extend(
            links
                .link_hosts
                .iter()
                .map(|(names, ip)| format!("{names}:{ip}")),
        );
        let text = etc::hosts(&r.config.hostname, &extra, addresses, host_gateway);
        let path = c.paths.hosts();
        std::fs::write(&path, text).map_err(|e| ContainerError::io("write", &path, e))
    }
}

pub(super) fn write_etc_files(p: &Paths, r: &Record, net: Option<&NetworkStart>) -> Result<()> {
    let h = &r.host_config;
    let host_net = r.network_mode().is_host();
    // After a reboot the exec root is empty again.
    std::fs::create_dir_all(&p.run).map_err(|e| ContainerError::io("create", &p.run, e))?;
    let write = |path: PathBuf, text: String| -> Result<()> {
        // Regenerated from the record at every start: atomic, but not worth an fsync; and
        // left alone when it already says the same (a new file is a new inode on the disk).
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            return Ok(());
        }
        berth_runtime::bundle::replace_file(&path, text.as_bytes())?;
        Ok(())
    };
    write(p.hostname(), format!("{}\n", r.config.hostname))?;
    let hosts = if host_net {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        // Links' entries follow `--add-host`'s, as in dockerd's file.
        let mut extra = h.extra_hosts.clone().unwrap_or_default();
        extra.extend(
            net.iter()
                .flat_map(|n| &n.link_hosts)
                .map(|(names, ip)| format!("{names}:{ip}")),
        );
        etc::hosts(
            &r.config.hostname,
            &extra,
            net.map(|n| n.addresses.as_slice()).unwrap_or_default(),
            net.and_then(|n| n.host_gateway),
        )
    };
    write(p.hosts(), hosts)?;
    let empty = Vec::new();
    let resolv = etc::resolv_conf(
        &etc::host_resolv_conf(),
        host_net,
        net.is_some_and(|n| n.embedded_dns),
        &etc::DnsOverrides {
            servers: h.dns.as_ref().unwrap_or(&empty),
            search: h.dns_search.as_ref().unwrap_or(&empty),
            options: h.dns_options.as_ref().unwrap_or(&empty),
        },
    );
    write(p.resolv_conf(), resolv)
}
