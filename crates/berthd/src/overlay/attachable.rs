//! `docker run --network NAME` with an attachable swarm network: the container is created
//! on `docker_gwbridge` (its way out and its embedded DNS), the manager's allocator gives it
//! an address on the overlay when it starts (kept in the network's `DriverState.Attachments`
//! while it runs: `overlay::plain`), and the overlay agent adds the interface. A manager allocates from its own store; a
//! worker asks its managers (`berth_swarm::attach`, swarmkit's `AttachNetwork`), and releases
//! the addresses of its removed containers the same way (also those removed while it was
//! down or cut off: every pass compares the managers' record with its containers).

use berth_api::models::container::ContainerCreateRequest;
use berth_api::vocab::NetworkMode;
use berth_api::{ApiError, ErrorKind};
use berth_swarm::attach::{self, Attached, NetworkRef};
use berth_swarm::transport::CallError;
use berth_swarm::types::Kind;

use crate::state::AppState;

fn call_error(network: &str, e: CallError) -> ApiError {
    let kind = match &e {
        CallError::Remote(r) if r.kind == "permission_denied" => ErrorKind::Forbidden,
        CallError::Remote(r) if r.kind == "not_found" => ErrorKind::NotFound,
        CallError::Remote(r) if r.kind == "invalid" => ErrorKind::InvalidArgument,
        _ => ErrorKind::Unavailable,
    };
    ApiError::new(kind, format!("Could not attach to network {network}: {e}"))
}

/// The swarm network `key` names, from this node's store or (a worker) its managers.
async fn lookup(state: &AppState, key: &str) -> Result<Option<NetworkRef>, ApiError> {
    if let Some(h) = state.swarm.handle().await {
        return Ok(attach::lookup(h.proposer().as_ref(), key));
    }
    let Some(node) = state.swarm.worker_node_id().await else {
        return Ok(None);
    };
    state
        .swarm
        .remote_lookup_network(&node, key)
        .await
        .map_err(|e| call_error(key, e))
}

/// If the request names a swarm network, rewrites it onto `docker_gwbridge` and answers the
/// network (recorded once the container exists; joined at its start).
pub async fn prepare(
    state: &AppState,
    req: &mut ContainerCreateRequest,
) -> Result<Option<NetworkRef>, ApiError> {
    let Some(host) = req.host_config.as_mut() else {
        return Ok(None);
    };
    let NetworkMode::Named(name) = &host.network_mode else {
        return Ok(None);
    };
    if state.networks.get(name).is_ok() {
        return Ok(None);
    }
    let Some(net) = lookup(state, name).await? else {
        return Ok(None);
    };
    if !net.attachable {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "Could not attach to network {}: {}",
                net.name,
                attach::not_attachable(&net.name)
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
    Ok(Some(net))
}

/// Gives a starting container its address on the overlay (through the leader, or a worker's
/// managers).
pub async fn attach(
    state: &AppState,
    network: &str,
    container: &str,
) -> Result<Attached, ApiError> {
    let name = state
        .ctrs
        .get(container)
        .map(|c| c.record().name)
        .unwrap_or_default();
    if let Some(h) = state.swarm.handle().await {
        let node = h.node_id().to_string();
        return attach::attach(h.proposer().as_ref(), &node, network, container, &name)
            .await
            .map_err(|e| call_error(network, CallError::Remote(e)));
    }
    let Some(node) = state.swarm.worker_node_id().await else {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "this node left the swarm",
        ));
    };
    state
        .swarm
        .remote_attach(&node, network, container, &name)
        .await
        .map_err(|e| call_error(network, e))
}

/// Whether this node's `container` has an address on the swarm network `id`, as the
/// cluster state this node sees records it.
async fn is_attached(state: &AppState, id: &str, container: &str) -> bool {
    let Some((node, s)) = state.swarm.node_view().await else {
        return false;
    };
    s.networks.get(id).is_some_and(|n| {
        n.driver_state
            .attachments
            .get(container)
            .is_some_and(|(on, _)| *on == node)
    })
}

/// `network connect` with a swarm network (`None` when `key` names none): an attachable
/// one is recorded, and a running container gets its address at once (a stopped one at its
/// start); the overlay agent adds its interface.
pub async fn connect(state: &AppState, key: &str, container: &str) -> Option<Result<(), ApiError>> {
    let net = match lookup(state, key).await {
        Ok(net) => net?,
        Err(e) => return Some(Err(e)),
    };
    if !net.attachable {
        return Some(Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "Could not attach to network {}: {}",
                net.name,
                attach::not_attachable(&net.name)
            ),
        )));
    }
    if state.plain.wants(container, &net.id) || is_attached(state, &net.id, container).await {
        let name = state
            .ctrs
            .get(container)
            .map(|c| c.record().name)
            .unwrap_or_default();
        return Some(Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "endpoint with name {name} already exists in network {}",
                net.name
            ),
        )));
    }
    Some(state.plain.connect(state, &net, container).await)
}

/// `network disconnect` with a swarm network (`None` when `key` names none; a stopped
/// container's network removed meanwhile is still forgotten, as dockerd's).
pub async fn disconnect(
    state: &AppState,
    key: &str,
    container: &str,
) -> Option<Result<(), ApiError>> {
    let net = match lookup(state, key).await {
        Ok(Some(net)) => net,
        Ok(None) => {
            return match state.plain.unwant(container, key) {
                Ok(true) => Some(Ok(())),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            };
        }
        Err(e) => return Some(Err(e)),
    };
    let attached = is_attached(state, &net.id, container).await;
    let wanted = match state.plain.unwant(container, &net.id) {
        Ok(w) => w,
        Err(e) => return Some(Err(e)),
    };
    if !attached {
        if wanted {
            return Some(Ok(()));
        }
        // dockerd's words: a stopped container's ("the network") differ from a running one's.
        let the = if state.networks.netns_of(container).is_some() {
            ""
        } else {
            "the "
        };
        return Some(Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "container {container} is not connected to {the}network {}",
                net.name
            ),
        )));
    }
    let done = match state.swarm.handle().await {
        Some(h) => {
            let node = h.node_id().to_string();
            attach::detach(h.proposer().as_ref(), &node, container, Some(&net.id))
                .await
                .map_err(CallError::Remote)
        }
        None => match state.swarm.worker_node_id().await {
            Some(node) => {
                state
                    .swarm
                    .remote_detach(&node, container, Some(&net.id))
                    .await
            }
            None => {
                return Some(Err(ApiError::new(
                    ErrorKind::Unavailable,
                    "this node left the swarm",
                )));
            }
        },
    };
    Some(done.map_err(|e| {
        ApiError::new(
            ErrorKind::Unavailable,
            format!("Could not detach from network {}: {e}", net.name),
        )
    }))
}

/// Releases the addresses of containers this node no longer has (removed), as the cluster
/// state `s` (a manager's store, a worker's view) records them.
pub async fn release_gone(state: &AppState, s: &berth_swarm::store::State, node: &str) {
    // And those of containers that are not running (`overlay::plain`).
    state.plain.release_stopped(state, s, node).await;
    let mut gone: Vec<String> = s
        .networks
        .values()
        .flat_map(|n| n.driver_state.attachments.iter())
        .filter(|(c, (on, _))| on == node && state.ctrs.get(c).is_err())
        .map(|(c, _)| c.clone())
        .collect();
    gone.sort();
    gone.dedup();
    let handle = state.swarm.handle().await;
    // A manager also releases what nodes removed from the swarm (`node rm`) left: no one
    // else will.
    if let Some(h) = &handle {
        let orphans: Vec<(String, String)> = s
            .networks
            .values()
            .flat_map(|n| n.driver_state.attachments.iter())
            .filter(|(_, (on, _))| !s.nodes.contains_key(on))
            .map(|(c, (on, _))| (on.clone(), c.clone()))
            .collect();
        for (on, container) in orphans {
            if let Err(e) = attach::detach(h.proposer().as_ref(), &on, &container, None).await {
                tracing::debug!(%container, error = %e, "releasing a removed node's attachment");
            }
        }
    }
    if gone.is_empty() {
        return;
    }
    for container in gone {
        let done = match &handle {
            Some(h) => attach::detach(h.proposer().as_ref(), node, &container, None)
                .await
                .map_err(|e| e.to_string()),
            None => state
                .swarm
                .remote_detach(node, &container, None)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = done {
            tracing::debug!(%container, error = %e, "releasing an attachment (retried next pass)");
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

/// The first `ethN` a container's netns does not have: a plain container's interface on an
/// attachable overlay (`eth1` after `docker run`, whose `eth0` is docker_gwbridge; the next
/// free one after `network connect`).
pub async fn free_ifname(netns: &std::path::Path) -> Option<String> {
    let out = berth_network::netns::run_in_async(netns, || {
        std::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
    })
    .await
    .ok()?
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // `2: eth0@if7: <...` -> `eth0`
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !names.contains(&n.as_str()))
}
