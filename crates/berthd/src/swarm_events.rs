//! Swarm object changes as Engine API events (`type=service|node|secret|config`), with the
//! `name` attribute dockerd gives them.

use std::collections::BTreeMap;

use berth_swarm::types::Kind;

use crate::state::AppState;

/// Forwards the active swarm's changes onto the daemon's event bus until the swarm's store
/// goes (leave or shutdown).
pub async fn forward(state: &AppState) {
    let Some(h) = state.swarm.handle().await else {
        return;
    };
    let mut feed = h.store().subscribe();
    drop(h);
    let events = state.events.clone();
    tokio::spawn(async move {
        loop {
            match feed.recv().await {
                Ok(change) => {
                    let kind = match change.kind {
                        Kind::Service
                        | Kind::Node
                        | Kind::Secret
                        | Kind::Config
                        | Kind::Network => change.kind.as_str(),
                        _ => continue,
                    };
                    let mut attrs = BTreeMap::new();
                    if !change.name.is_empty() {
                        attrs.insert("name".to_string(), change.name.clone());
                    }
                    events.publish(crate::events::new_event(
                        kind,
                        change.action,
                        &change.id,
                        attrs,
                    ));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}
