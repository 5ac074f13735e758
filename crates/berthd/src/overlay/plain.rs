//! When a plain container holds its address on an attachable swarm network: while it runs,
//! as dockerd's (`connectToNetwork` at start asks the managers, `releaseNetwork` at every
//! stop, exit or restart gives it back). What a container asked for (`run --network`,
//! `network connect`) is kept here, on disk, as dockerd keeps it in the container's
//! `NetworkSettings.Networks`; the network's `DriverState.Attachments` in the cluster state
//! holds the addresses of running containers only.
//!
//! The container manager's network hooks (`state::Attacher`) call [`Plain::on_start`] after
//! the container's netns exists and [`Plain::on_stop`] after it went, so an attachment exists
//! exactly while the container has a netns. The overlay agent's pass gives back what a
//! container without a netns still holds ([`Plain::release_stopped`]): exits a killed daemon
//! did not see, and releases the managers missed. A lock per container keeps the pass from
//! releasing what a start is attaching.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use berth_api::models::container::{EndpointSettings, NetworkSettings};
use berth_api::{ApiError, ErrorKind};
use berth_swarm::attach::NetworkRef;

use crate::state::{AppState, Daemon};

/// Container id -> swarm network id -> network name.
type Wanted = BTreeMap<String, BTreeMap<String, String>>;

/// How long a start waits for the overlay agent to add the container's interfaces, so that
/// its process finds them (dockerd's are in place before it starts).
const READY_WAIT: Duration = Duration::from_secs(5);

pub struct Plain {
    path: PathBuf,
    wanted: Mutex<Wanted>,
    locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    daemon: OnceLock<Weak<Daemon>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Plain {
    /// Reads the record kept under the data root (none yet: empty).
    pub fn open(data_root: &Path) -> Plain {
        let path = data_root.join("overlay-attachments.json");
        let wanted = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable attachable-network record; starting empty");
                Wanted::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Wanted::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the attachable-network record");
                Wanted::new()
            }
        };
        Plain {
            path,
            wanted: Mutex::new(wanted),
            locks: Mutex::new(BTreeMap::new()),
            daemon: OnceLock::new(),
        }
    }

    /// Gives the hooks the daemon (made after the container service that calls them).
    pub fn bind(&self, state: &AppState) {
        let _ = self.daemon.set(Arc::downgrade(state));
    }

    fn state(&self) -> Option<AppState> {
        self.daemon.get()?.upgrade()
    }

    fn save(&self, wanted: &Wanted) -> Result<(), ApiError> {
        let err = |e: std::io::Error| {
            ApiError::new(
                ErrorKind::Internal,
                format!("cannot write {}: {e}", self.path.display()),
            )
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        // Plain maps of strings always serialize.
        let text = serde_json::to_vec(wanted).unwrap_or_default();
        berth_network::store::write_atomic(&self.path, &text).map_err(ApiError::from)
    }

    fn change(&self, f: impl FnOnce(&mut Wanted) -> bool) -> Result<bool, ApiError> {
        let mut wanted = lock(&self.wanted);
        let mut next = wanted.clone();
        if !f(&mut next) {
            return Ok(false);
        }
        self.save(&next)?;
        *wanted = next;
        Ok(true)
    }

    /// Records that `container` is on `net` (`run --network`, `network connect`).
    pub fn want(&self, container: &str, net: &NetworkRef) -> Result<(), ApiError> {
        self.change(|w| {
            let nets = w.entry(container.to_string()).or_default();
            nets.insert(net.id.clone(), net.name.clone()) != Some(net.name.clone())
        })
        .map(drop)
    }

    /// Forgets `container`'s network `key` (id or name); whether it was recorded.
    pub fn unwant(&self, container: &str, key: &str) -> Result<bool, ApiError> {
        self.change(|w| {
            let Some(nets) = w.get_mut(container) else {
                return false;
            };
            let before = nets.len();
            nets.retain(|id, name| id != key && name != key);
            nets.len() != before
        })
    }

    /// Whether `container` is recorded on the network `id`.
    pub fn wants(&self, container: &str, id: &str) -> bool {
        lock(&self.wanted)
            .get(container)
            .is_some_and(|n| n.contains_key(id))
    }

    fn wanted_of(&self, container: &str) -> Option<BTreeMap<String, String>> {
        lock(&self.wanted).get(container).cloned()
    }

    /// Forgets a removed container.
    pub fn forget(&self, container: &str) {
        if let Err(e) = self.change(|w| w.remove(container).is_some()) {
            tracing::warn!(%container, error = %e, "cannot forget a removed container's swarm networks");
        }
        lock(&self.locks).remove(container);
    }

    fn lock_of(&self, container: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks)
            .entry(container.to_string())
            .or_default()
            .clone()
    }

    /// The networks a stopped container is on, in its `NetworkSettings` with no address (as
    /// dockerd's `cleanOperationalData` leaves them); a running one's come from the agent.
    pub fn extend(&self, container: &str, settings: &mut NetworkSettings) {
        for (id, name) in self.wanted_of(container).unwrap_or_default() {
            settings
                .networks
                .entry(name)
                .or_insert_with(|| EndpointSettings {
                    network_id: id,
                    ..Default::default()
                });
        }
    }

    /// The container's start: an address on each of its swarm networks (a manager from its
    /// store, a worker from its managers); a refusal fails the start, as dockerd's.
    pub async fn on_start(&self, container: &str) -> Result<(), ApiError> {
        let Some(nets) = self.wanted_of(container).filter(|n| !n.is_empty()) else {
            return Ok(());
        };
        let Some(state) = self.state() else {
            return Ok(());
        };
        let _op = self.lock_of(container).lock_owned().await;
        let mut ids = Vec::new();
        for (id, name) in nets {
            // By name, as dockerd's start asks swarmkit (`getNetworkID` of a network given
            // by name): a network recreated under it is the one joined.
            let attached = super::attachable::attach(&state, &name, container).await?;
            if attached.network.id != id {
                let _ = self.unwant(container, &id);
                self.want(container, &attached.network)?;
            }
            ids.push(attached.network.id);
        }
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        while !state.overlay_ready.has(container, &ids) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(%container, "starting before the overlay interfaces are in place");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// `network connect`: recorded; a running container joins now (a refusal forgets it).
    pub async fn connect(
        &self,
        state: &AppState,
        net: &NetworkRef,
        container: &str,
    ) -> Result<(), ApiError> {
        let _op = self.lock_of(container).lock_owned().await;
        self.want(container, net)?;
        if state.networks.netns_of(container).is_none() {
            return Ok(());
        }
        match super::attachable::attach(state, &net.id, container).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.unwant(container, &net.id);
                Err(e)
            }
        }
    }

    /// The container's stop or exit (its netns is gone): its addresses go back.
    pub async fn on_stop(&self, container: &str) {
        // Only containers that asked for a swarm network: every exit comes through here, and
        // asking the swarm for its view waits for its lock, which `swarm leave` holds while it
        // removes the task containers whose exits these are. The overlay pass releases what
        // containers with no record (attached at create by an earlier berthd) hold.
        if self.wanted_of(container).is_none_or(|n| n.is_empty()) {
            return;
        }
        let Some(state) = self.state() else {
            return;
        };
        let _op = self.lock_of(container).lock_owned().await;
        release(&state, self, container).await;
    }

    /// The pass's release of the addresses of this node's containers that have no netns (not
    /// running): stops the daemon did not see (killed meanwhile) and releases that failed.
    /// Records of containers gone are dropped too.
    pub async fn release_stopped(
        &self,
        state: &AppState,
        s: &berth_swarm::store::State,
        node: &str,
    ) {
        let gone: Vec<String> = lock(&self.wanted)
            .keys()
            .filter(|c| state.ctrs.get(c).is_err())
            .cloned()
            .collect();
        for c in gone {
            self.forget(&c);
        }
        let mut stopped: Vec<String> = s
            .networks
            .values()
            .flat_map(|n| n.driver_state.attachments.iter())
            .filter(|(c, (on, _))| {
                on == node && state.ctrs.get(c).is_ok() && state.networks.netns_of(c).is_none()
            })
            .map(|(c, _)| c.clone())
            .collect();
        stopped.sort();
        stopped.dedup();
        for c in stopped {
            // A start or stop under way finishes first (and does this itself).
            let Ok(_op) = self.lock_of(&c).try_lock_owned() else {
                continue;
            };
            if state.networks.netns_of(&c).is_none() {
                release(state, self, &c).await;
            }
        }
    }
}

/// Gives back `container`'s addresses (its lock held). A container from before this record
/// existed (attached at create, no record) has its networks recorded first, so its next
/// start joins them again.
async fn release(state: &AppState, plain: &Plain, container: &str) {
    super::endpoints::forget(container);
    let Some((node, s)) = state.swarm.node_view().await else {
        return;
    };
    let held: Vec<NetworkRef> = s
        .networks
        .values()
        .filter(|n| {
            n.driver_state
                .attachments
                .get(container)
                .is_some_and(|(on, _)| *on == node)
        })
        .map(|n| NetworkRef {
            id: n.meta.id.clone(),
            name: n.name().to_string(),
            attachable: true,
        })
        .collect();
    if held.is_empty() {
        return;
    }
    if plain.wanted_of(container).is_none() {
        for net in &held {
            if let Err(e) = plain.want(container, net) {
                tracing::warn!(%container, error = %e, "cannot record a container's swarm network");
            }
        }
    }
    let done = match state.swarm.handle().await {
        Some(h) => berth_swarm::attach::detach(h.proposer().as_ref(), &node, container, None)
            .await
            .map_err(|e| e.to_string()),
        None => state
            .swarm
            .remote_detach(&node, container, None)
            .await
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = done {
        tracing::debug!(%container, error = %e, "releasing a stopped container's addresses (retried by the overlay pass)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, name: &str) -> NetworkRef {
        NetworkRef {
            id: id.into(),
            name: name.into(),
            attachable: true,
        }
    }

    #[test]
    fn the_record_survives_a_reopen_and_shows_stopped_containers_networks() {
        let dir = tempfile::tempdir().unwrap();
        let p = Plain::open(dir.path());
        p.want("c1", &net("n1", "backend")).unwrap();
        p.want("c1", &net("n2", "front")).unwrap();
        assert!(p.unwant("c1", "front").unwrap());
        assert!(!p.unwant("c1", "front").unwrap());
        let p = Plain::open(dir.path());
        assert!(p.wants("c1", "n1"));
        assert!(!p.wants("c1", "n2"));
        let mut settings = NetworkSettings::default();
        p.extend("c1", &mut settings);
        let ep = &settings.networks["backend"];
        assert_eq!(ep.network_id, "n1");
        assert_eq!(ep.ip_address, "");
        p.forget("c1");
        assert!(!Plain::open(dir.path()).wants("c1", "n1"));
    }
}
