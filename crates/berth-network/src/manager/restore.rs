//! Opening the service: records loaded, predefined networks ensured, and the daemon-side parts
//! (proxies, DNS servers) of containers recorded as running re-made after a daemon restart.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Inner, Live, NetworkEvents, NetworkOptions, Networks, State, lock, release};
use crate::control_error::{ControlError, Result};
use crate::dataplane::{DataPlane, HostDataPlane};
use crate::store::{ContainerNet, NetworkRecord, Store};
use crate::tasks::Tasks;

impl Networks {
    /// Loads the records, makes the predefined networks and their bridges exist, re-creates
    /// the proxies and DNS servers of containers recorded as running, removes netns files of
    /// containers that are not, and applies the firewall.
    pub async fn open(opts: NetworkOptions, events: Arc<dyn NetworkEvents>) -> Result<Networks> {
        let dp = Arc::new(HostDataPlane::new(opts.firewall_table.as_deref()));
        Networks::open_with(opts, events, dp).await
    }

    /// [`Networks::open`] over another data plane (a fake in unit tests). Background work
    /// runs on the runtime of the caller, captured here.
    pub async fn open_with(
        opts: NetworkOptions,
        events: Arc<dyn NetworkEvents>,
        dp: Arc<dyn DataPlane>,
    ) -> Result<Networks> {
        let store = Store::open(&opts.data_root, &opts.exec_root)?;
        let netns_dir = opts.exec_root.join("netns");
        std::fs::create_dir_all(&netns_dir)
            .map_err(|e| ControlError::io("create", &netns_dir, e))?;
        let mut state = State::default();
        for n in store.networks() {
            state.networks.insert(n.id.clone(), n);
        }
        for c in store.containers() {
            state.containers.insert(c.id.clone(), c);
        }
        let me = Networks {
            inner: Arc::new(Inner {
                dp,
                tasks: Tasks::new(tokio::runtime::Handle::current()),
                opts,
                store,
                state: Mutex::new(state),
                live: Mutex::new(HashMap::new()),
                events,
                op: tokio::sync::Mutex::new(()),
                external_names: Mutex::new(None),
            }),
        };
        me.ensure_predefined().await?;
        me.mark_leases();
        me.ensure_user_bridges().await;
        let known = me.restore_running().await;
        me.sweep_netns(&netns_dir, &known).await;
        me.apply_firewall();
        Ok(me)
    }

    /// Addresses in use come from the endpoints of running containers.
    fn mark_leases(&self) {
        let mut guard = lock(&self.inner.state);
        let st = &mut *guard;
        for c in st.containers.values() {
            for a in c.running.iter().flat_map(|r| &r.attachments) {
                if let Some(n) = st.networks.get_mut(&a.network_id) {
                    for ip in [a.ipv4, a.ipv6].into_iter().flatten() {
                        for p in &mut n.pools {
                            p.mark(ip.addr());
                        }
                    }
                }
            }
        }
    }

    async fn ensure_user_bridges(&self) {
        let bridges: Vec<NetworkRecord> = lock(&self.inner.state)
            .networks
            .values()
            .filter(|n| n.is_bridge() && !n.predefined)
            .cloned()
            .collect();
        for n in bridges {
            if let Err(e) = self.ensure_bridge(&n).await {
                tracing::warn!(network = %n.name, error = %e, "cannot set up the bridge of a network");
            }
        }
    }

    /// Running containers keep their addresses; their daemon-side parts are re-made. Those
    /// whose netns is gone (a reboot) are forgotten. Returns the netns files in use.
    async fn restore_running(&self) -> HashSet<PathBuf> {
        let running: Vec<ContainerNet> = lock(&self.inner.state)
            .containers
            .values()
            .filter(|c| c.running.is_some())
            .cloned()
            .collect();
        let mut known = HashSet::new();
        for c in running {
            let r = c.running.as_ref().expect("filtered");
            known.insert(r.netns.clone());
            if !r.netns.exists() {
                self.forget_running(&c.id);
                continue;
            }
            match self.make_live(&c).await {
                Ok(live) => {
                    lock(&self.inner.live).insert(c.id.clone(), live);
                }
                Err(e) => {
                    tracing::warn!(container = %c.id, error = %e, "cannot re-create published ports or DNS")
                }
            }
        }
        known
    }

    /// Removes netns files no running container uses (left by a crash mid-start or -stop).
    async fn sweep_netns(&self, dir: &Path, known: &HashSet<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !known.contains(&e.path()) {
                let _ = self.inner.dp.remove_netns(&e.path()).await;
            }
        }
    }

    /// The container manager calls this for running containers it found dead at start.
    pub(super) fn forget_running(&self, id: &str) {
        let mut guard = lock(&self.inner.state);
        let st = &mut *guard;
        if let Some(c) = st.containers.get_mut(id)
            && let Some(r) = c.running.take()
        {
            release(&mut st.networks, &r);
            let _ = self.inner.store.save_container(c);
        }
    }

    /// Re-creates the daemon-side parts of a running container after a daemon restart.
    pub(super) async fn make_live(&self, c: &ContainerNet) -> Result<Live> {
        let mut live = Live::default();
        let r = c.running.as_ref().expect("running");
        let target = r
            .attachments
            .first()
            .and_then(|a| a.ipv4.map(|i| i.addr()).or(a.ipv6.map(|i| i.addr())));
        if let Some(target) = target {
            for p in &r.published {
                live.proxies.push(
                    self.inner
                        .dp
                        .publish(
                            &self.inner.tasks,
                            p.host_ip,
                            p.host_port,
                            p.proto,
                            SocketAddr::new(target, p.container_port),
                        )
                        .await
                        .map_err(ControlError::data(format!(
                            "cannot publish port {}/{} again",
                            p.container_port, p.proto
                        )))?
                        .served,
                );
            }
        }
        if self.uses_embedded_dns(&c.id) {
            live.dns = Some(self.serve_dns(&c.id, &r.netns)?);
        }
        Ok(live)
    }
}
