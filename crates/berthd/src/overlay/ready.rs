//! Which task containers have their overlay interfaces. A task's interfaces are added by the
//! overlay pass after its container started (the pass sees the task `starting` in the
//! store), so the agent reports a task on an overlay `running`, which puts it in every node's
//! VIP and routing-mesh rotation, only once they are in place: otherwise the other nodes
//! send it connections before it is reachable (seen as failed connections through the mesh
//! for about a second after each new task). The overlay pass publishes what it attached;
//! the executor answers the agent from it and wakes the agent when something was added.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Ready {
    /// (container id, network id) pairs with their interface in place.
    attached: Mutex<BTreeSet<(String, String)>>,
    added: Notify,
}

impl Ready {
    /// What the overlay pass has attached now; wakes one waiter when something was added.
    pub fn set(&self, now: &BTreeSet<(String, String)>) {
        let mut attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        if *attached == *now {
            return;
        }
        let added = now.difference(&attached).next().is_some();
        *attached = now.clone();
        drop(attached);
        if added {
            // A permit is kept if the agent is in a pass: its next wait returns at once.
            self.added.notify_one();
        }
    }

    /// Whether `container` has its interface on every one of `networks`.
    pub fn has(&self, container: &str, networks: &[String]) -> bool {
        let attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        networks
            .iter()
            .all(|n| attached.contains(&(container.to_string(), n.clone())))
    }

    /// Resolves when an interface was added.
    pub async fn added(&self) {
        self.added.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_is_ready_once_every_network_is_attached() {
        let r = Ready::default();
        let nets = ["n1".to_string(), "n2".to_string()];
        assert!(r.has("c", &[]));
        assert!(!r.has("c", &nets));
        r.set(&BTreeSet::from([("c".to_string(), "n1".to_string())]));
        assert!(!r.has("c", &nets));
        r.set(&BTreeSet::from([
            ("c".to_string(), "n1".to_string()),
            ("c".to_string(), "n2".to_string()),
        ]));
        assert!(r.has("c", &nets));
        // The permit of the additions is kept for the next wait.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), r.added())
                .await
                .expect("an addition wakes the waiter");
        });
    }
}
