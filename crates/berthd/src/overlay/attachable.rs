//! `docker run --network NAME` with an attachable swarm network: the container is created
//! on `docker_gwbridge` (its way out and its embedded DNS), the manager's allocator gives it
//! an address on the overlay (kept in the network's `DriverState.Attachments`), and the
//! overlay agent adds the interface when it runs. Managers only: a worker has no store to
//! allocate from.

use berth_api::models::container::ContainerCreateRequest;
use berth_api::vocab::NetworkMode;
use berth_api::{ApiError, ErrorKind};
use berth_swarm::store::{Command, Op};
use berth_swarm::types::{Kind, Object};

use crate::state::AppState;

/// If the request names a swarm network, rewrites it onto `docker_gwbridge` and answers the
/// network's id (to [`attach`] once the container exists).
pub async fn prepare(
    state: &AppState,
    req: &mut ContainerCreateRequest,
) -> Result<Option<String>, ApiError> {
    let Some(host) = req.host_config.as_mut() else {
        return Ok(None);
    };
    let NetworkMode::Named(name) = &host.network_mode else {
        return Ok(None);
    };
    if state.networks.get(name).is_ok() {
        return Ok(None);
    }
    let Some(h) = state.swarm.handle().await else {
        return Ok(None);
    };
    let Some((id, attachable, display)) = h.store().view(|s| {
        s.find_network(name).map(|n| {
            (
                n.meta.id.clone(),
                n.spec["Attachable"] == true,
                n.name().to_string(),
            )
        })
    }) else {
        return Ok(None);
    };
    if !attachable {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "Could not attach to network {display}: rpc error: code = PermissionDenied desc = network {display} not manually attachable"
            ),
        ));
    }
    super::ensure_gwbridge(&state.networks)
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e))?;
    let original = name.clone();
    host.network_mode = NetworkMode::Named(super::GWBRIDGE.into());
    if let Some(nc) = req.networking_config.as_mut() {
        let settings = nc.endpoints_config.remove(&original);
        if let Some(settings) = settings {
            nc.endpoints_config.insert(super::GWBRIDGE.into(), settings);
        }
    }
    Ok(Some(id))
}

/// Gives the new container its address on the overlay (through the leader).
pub async fn attach(state: &AppState, network: &str, container: &str) -> Result<(), ApiError> {
    let Some(h) = state.swarm.handle().await else {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "this node left the swarm",
        ));
    };
    let node = h.node_id().to_string();
    for _ in 0..5 {
        let n = h
            .store()
            .view(|s| berth_swarm::allocator::attach_container(s, network, container, &node));
        let n = n.map_err(ApiError::invalid)?;
        let op = Op::Update {
            expect: Some(n.meta.version.index),
            object: Object::Network(n),
        };
        match h.propose(Command::one(op)).await {
            Ok(()) => return Ok(()),
            Err(berth_swarm::ProposeError::Conflict(_)) => continue,
            Err(e) => return Err(ApiError::new(ErrorKind::Unavailable, e.to_string())),
        }
    }
    Err(ApiError::new(
        ErrorKind::Unavailable,
        "the network changed too often to attach the container",
    ))
}

/// Releases the addresses of containers this node no longer has (removed).
pub async fn release_gone(state: &AppState) {
    let Some(h) = state.swarm.handle().await else {
        return;
    };
    let node = h.node_id().to_string();
    let gone: Vec<(String, String)> = h.store().view(|s| {
        s.networks
            .values()
            .flat_map(|n| {
                n.driver_state
                    .attachments
                    .iter()
                    .filter(|(c, (on, _))| *on == node && state.ctrs.get(c).is_err())
                    .map(|(c, _)| (n.meta.id.clone(), c.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    });
    for (net, container) in gone {
        let Some(mut n) = h.store().view(|s| s.networks.get(&net).cloned()) else {
            continue;
        };
        n.driver_state.attachments.remove(&container);
        let op = Op::Update {
            expect: Some(n.meta.version.index),
            object: Object::Network(n),
        };
        if let Err(e) = h.propose(Command::one(op)).await {
            tracing::debug!(error = %e, "releasing an attachment (retried next pass)");
        }
    }
}

/// Whether a network still has plain containers attached (`network rm` refuses then).
pub fn attached(s: &berth_swarm::store::State, network: &str) -> usize {
    let _ = Kind::Network;
    s.networks
        .get(network)
        .map(|n| n.driver_state.attachments.len())
        .unwrap_or(0)
}
