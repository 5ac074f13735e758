//! What this node sees of the cluster, manager or worker: the overlay agent's input.

use std::sync::Arc;

use super::Swarm;
use crate::store::State;

impl Swarm {
    /// This node's id and its view of the cluster: a manager's whole store, or the state a
    /// worker's managers last sent it (its tasks, and the networks, tasks, services and nodes
    /// its overlays need). `None` outside a swarm.
    pub async fn node_view(&self) -> Option<(String, Arc<State>)> {
        if let Some(h) = self.handle().await {
            return Some((h.node_id().to_string(), h.store().snapshot()));
        }
        let guard = self.worker.lock().await;
        let w = &guard.as_ref()?.worker;
        let view = w
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .view
            .clone()
            .unwrap_or_default();
        Some((w.identity.node_id.clone(), view))
    }

    /// On a worker: what is notified when its managers send a new view (see
    /// [`crate::worker::SessionInfo::view_changed`]). `None` on a manager (its store's watch
    /// tells) and outside a swarm.
    pub async fn worker_view_changed(&self) -> Option<Arc<tokio::sync::Notify>> {
        let guard = self.worker.lock().await;
        let w = &guard.as_ref()?.worker;
        Some(
            w.info
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .view_changed
                .clone(),
        )
    }
}
