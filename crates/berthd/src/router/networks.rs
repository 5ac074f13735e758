//! Network endpoints (`/networks/*`): typed bodies and filters, then the network service
//! (`berth-network`). Containers named in connect/disconnect are resolved by the container
//! service first, so names, ids and id prefixes work as everywhere else.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::ApiError;
use berth_api::models::network::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest,
    NetworkPruneResponse,
};
use berth_network::ControlError;
use chrono::Utc;

use super::body::Json;
use super::{Error, Query, Result, json_response, ok_json};
use crate::events::parse_timestamp;
use crate::state::AppState;

impl From<ControlError> for Error {
    fn from(e: ControlError) -> Self {
        Error(ApiError::from(e))
    }
}

pub async fn list(State(state): State<AppState>, q: Query) -> Result<Response> {
    let filters = q.filters()?;
    let mut all = state.networks.list(&filters)?;
    all.extend(super::swarm_networks::list(&state, &filters).await);
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ok_json(&all))
}

pub async fn inspect(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    match state.networks.inspect(&id) {
        Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {
            match super::swarm_networks::inspect(&state, &id).await {
                Some(n) => Ok(ok_json(&n)),
                None => Err(e.into()),
            }
        }
        other => Ok(ok_json(&other?)),
    }
}

pub async fn create(
    State(state): State<AppState>,
    Json(req): Json<NetworkCreateRequest>,
) -> Result<Response> {
    let req = req.unwrap_or_default();
    let id = if super::swarm_networks::is_swarm_driver(&req.driver) {
        super::swarm_networks::create(&state, req).await?
    } else {
        state.networks.create(req).await?
    };
    Ok(json_response(
        StatusCode::CREATED,
        &NetworkCreateResponse {
            id,
            warning: String::new(),
        },
    ))
}

pub async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    match state.networks.remove(&id).await {
        Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {
            match super::swarm_networks::remove(&state, &id).await {
                Some(done) => done?,
                None => return Err(e.into()),
            }
        }
        other => other?,
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<NetworkConnectRequest>,
) -> Result<Response> {
    let req = req.unwrap_or_default();
    let c = state.ctrs.get(&req.container)?;
    match state
        .networks
        .connect(&id, c.id(), req.endpoint_config.unwrap_or_default())
        .await
    {
        // An attachable swarm network (see `overlay::attachable`).
        Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {
            match crate::overlay::attachable::connect(&state, &id, c.id()).await {
                Some(done) => done.map_err(Error)?,
                None => return Err(e.into()),
            }
        }
        other => other?,
    }
    refresh_hosts(&state, c.id());
    Ok(StatusCode::OK.into_response())
}

pub async fn disconnect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<NetworkDisconnectRequest>,
) -> Result<Response> {
    let req = req.unwrap_or_default();
    let c = state.ctrs.get(&req.container)?;
    match state.networks.disconnect(&id, c.id(), req.force).await {
        Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {
            match crate::overlay::attachable::disconnect(&state, &id, c.id()).await {
                Some(done) => done.map_err(Error)?,
                None => return Err(e.into()),
            }
        }
        other => other?,
    }
    refresh_hosts(&state, c.id());
    Ok(StatusCode::OK.into_response())
}

/// A running container's `/etc/hosts` follows its addresses, as Docker's does.
fn refresh_hosts(state: &AppState, id: &str) {
    let addresses = state.networks.addresses_of(id);
    let gateway = state.networks.default_gateway();
    if let Err(e) = state.ctrs.update_hosts(id, &addresses, gateway) {
        tracing::warn!(container = %id, error = %e, "cannot update /etc/hosts");
    }
}

pub async fn prune(State(state): State<AppState>, q: Query) -> Result<Response> {
    let filters = q.filters()?;
    filters.validate(&["until", "label", "label!"])?;
    let until = match filters.get("until").first() {
        Some(v) => Some(parse_timestamp(v, Utc::now()).map_err(Error)?),
        None => None,
    };
    let keep = move |n: &berth_network::store::NetworkRecord| {
        filters.match_labels("label", &n.labels)
            && !filters
                .get("label!")
                .iter()
                .any(|w| match w.split_once('=') {
                    Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
                    None => n.labels.contains_key(*w),
                })
            && until.is_none_or(|u| {
                chrono::DateTime::parse_from_rfc3339(&n.created).is_ok_and(|c| c.timestamp() < u.0)
            })
    };
    let deleted = state.networks.prune(&keep).await?;
    Ok(ok_json(&NetworkPruneResponse {
        networks_deleted: Some(deleted),
    }))
}
