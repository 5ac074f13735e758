//! A data plane for unit tests: records every call, makes netns "files" as plain files (so the
//! restore logic finds them), hands out host ports, keeps the DNS resolvers it was given, and
//! fails the operations it is told to.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use ipnet::IpNet;

use super::lock;
use crate::dataplane::{DataPlane, PublishedPort, Served};
use crate::dns::Resolver;
use crate::firewall::Ruleset;
use crate::link::{BridgeConfig, EndpointConfig};
use crate::tasks::Tasks;
use crate::{Error, Proto, Result};

#[derive(Default)]
pub(super) struct FakeDataPlane {
    calls: Mutex<Vec<String>>,
    failing: Mutex<HashSet<&'static str>>,
    /// What `host_networks` answers.
    pub(super) host: Mutex<Vec<IpNet>>,
    /// The resolver of each DNS server started, by netns.
    pub(super) resolvers: Mutex<Vec<(PathBuf, Arc<dyn Resolver>)>>,
    /// The last ruleset applied.
    pub(super) ruleset: Mutex<Option<Ruleset>>,
    next_port: AtomicU16,
}

impl FakeDataPlane {
    pub(super) fn new() -> Arc<FakeDataPlane> {
        Arc::new(FakeDataPlane {
            next_port: AtomicU16::new(40000),
            ..Default::default()
        })
    }

    /// Calls so far, as `op argument` lines.
    pub(super) fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    /// Calls of one operation.
    pub(super) fn calls_of(&self, op: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.split(' ').next() == Some(op))
            .collect()
    }

    pub(super) fn clear(&self) {
        lock(&self.calls).clear();
    }

    /// Makes `op` fail from now on (until [`FakeDataPlane::heal`]).
    pub(super) fn fail(&self, op: &'static str) {
        lock(&self.failing).insert(op);
    }

    pub(super) fn heal(&self) {
        lock(&self.failing).clear();
    }

    /// The resolver of the DNS server in `netns`.
    pub(super) fn resolver(&self, netns: &Path) -> Arc<dyn Resolver> {
        lock(&self.resolvers)
            .iter()
            .rev()
            .find(|(p, _)| p == netns)
            .map(|(_, r)| r.clone())
            .expect("a DNS server in that netns")
    }

    fn record(&self, op: &'static str, arg: String) -> Result<()> {
        lock(&self.calls).push(format!("{op} {arg}"));
        if lock(&self.failing).contains(op) {
            return Err(Error::io(
                format!("{op} failed (fake)"),
                std::io::Error::other("fake"),
            ));
        }
        Ok(())
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl DataPlane for FakeDataPlane {
    fn ensure_bridge<'a>(&'a self, cfg: &'a BridgeConfig) -> BoxFuture<'a, Result<()>> {
        ready(self.record(
            "ensure_bridge",
            format!("{} {:?}", cfg.device, cfg.addresses),
        ))
    }
    fn remove_bridge<'a>(&'a self, device: &'a str) -> BoxFuture<'a, Result<()>> {
        ready(self.record("remove_bridge", device.to_string()))
    }
    fn device_addresses<'a>(
        &'a self,
        device: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<IpNet>>>> {
        ready(
            self.record("device_addresses", device.to_string())
                .map(|()| None),
        )
    }
    fn host_networks(&self) -> BoxFuture<'_, Vec<IpNet>> {
        let _ = self.record("host_networks", String::new());
        ready(lock(&self.host).clone())
    }
    fn create_netns<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<()>> {
        let r = self.record("create_netns", path.display().to_string());
        ready(r.and_then(|()| {
            std::fs::create_dir_all(path.parent().unwrap())
                .and_then(|()| std::fs::write(path, b""))
                .map_err(|e| Error::io("fake netns", e))
        }))
    }
    fn remove_netns<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<()>> {
        let r = self.record("remove_netns", path.display().to_string());
        let _ = std::fs::remove_file(path);
        ready(r)
    }
    fn attach<'a>(&'a self, ep: &'a EndpointConfig) -> BoxFuture<'a, Result<()>> {
        ready(self.record(
            "attach",
            format!(
                "{} {} {:?} gw={:?}",
                ep.bridge, ep.container_if, ep.addresses, ep.gateways
            ),
        ))
    }
    fn leave_bridge<'a>(&'a self, host_if: &'a str) -> BoxFuture<'a, Result<()>> {
        ready(self.record("leave_bridge", host_if.to_string()))
    }
    fn detach<'a>(&'a self, host_if: &'a str) -> BoxFuture<'a, Result<()>> {
        ready(self.record("detach", host_if.to_string()))
    }
    fn publish<'a>(
        &'a self,
        _tasks: &'a Tasks,
        host_ip: Option<IpAddr>,
        host_port: u16,
        proto: Proto,
        target: SocketAddr,
    ) -> BoxFuture<'a, Result<PublishedPort>> {
        let r = self.record(
            "publish",
            format!("{host_ip:?}:{host_port}/{proto} -> {target}"),
        );
        let host_port = match host_port {
            0 => self.next_port.fetch_add(1, Ordering::Relaxed),
            p => p,
        };
        ready(r.map(|()| PublishedPort {
            host_port,
            served: Served::new(()),
        }))
    }
    fn serve_dns(
        &self,
        _tasks: &Tasks,
        netns: &Path,
        resolver: Arc<dyn Resolver>,
        upstreams: Vec<SocketAddr>,
    ) -> Result<Served> {
        self.record("serve_dns", format!("{} {upstreams:?}", netns.display()))?;
        lock(&self.resolvers).push((netns.to_path_buf(), resolver));
        Ok(Served::new(()))
    }
    fn host_resolvers(&self) -> Vec<SocketAddr> {
        vec!["192.0.2.53:53".parse().unwrap()]
    }
    fn apply_firewall(&self, rs: &Ruleset) -> Result<()> {
        self.record("apply_firewall", format!("{} ports", rs.ports.len()))?;
        *lock(&self.ruleset) = Some(rs.clone());
        Ok(())
    }
}
