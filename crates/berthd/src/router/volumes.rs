//! Volume endpoints (`/volumes`): typed parsing of Docker's queries and bodies, then the
//! container service's volume operations (which know the volumes' users).

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::models::{VolumeCreateOptions, VolumeListResponse, VolumePruneResponse};
use berth_container::volumes::VolumeFilter;

use super::{Query, RequestVersion, Result, join_error, json_response, ok_json};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, q: Query) -> Result<Response> {
    let filter = VolumeFilter::for_list(&q.filters()?)?;
    let ctrs = state.ctrs.clone();
    let volumes = tokio::task::spawn_blocking(move || ctrs.volume_list(&filter))
        .await
        .map_err(join_error)?;
    Ok(ok_json(&VolumeListResponse {
        volumes,
        warnings: None,
    }))
}

pub async fn create(
    State(state): State<AppState>,
    super::body::Json(req): super::body::Json<VolumeCreateOptions>,
) -> Result<Response> {
    let req = req.unwrap_or_default();
    let ctrs = state.ctrs.clone();
    let volume = tokio::task::spawn_blocking(move || ctrs.volume_create(req))
        .await
        .map_err(join_error)??;
    Ok(json_response(StatusCode::CREATED, &volume))
}

pub async fn inspect(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response> {
    let ctrs = state.ctrs.clone();
    let volume = tokio::task::spawn_blocking(move || ctrs.volume_inspect(&name))
        .await
        .map_err(join_error)??;
    Ok(ok_json(&volume))
}

pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> Result<Response> {
    let force = q.bool("force", false);
    let ctrs = state.ctrs.clone();
    tokio::task::spawn_blocking(move || ctrs.volume_remove(&name, force))
        .await
        .map_err(join_error)??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn prune(
    State(state): State<AppState>,
    Extension(RequestVersion(version)): Extension<RequestVersion>,
    q: Query,
) -> Result<Response> {
    let mut filter = VolumeFilter::for_prune(&q.filters()?)?;
    // Before API 1.42 prune removed every unused volume, named ones included.
    if !version.at_least(1, 42) {
        filter.all = true;
    }
    let ctrs = state.ctrs.clone();
    let (deleted, space) = tokio::task::spawn_blocking(move || ctrs.volume_prune(&filter))
        .await
        .map_err(join_error)??;
    Ok(ok_json(&VolumePruneResponse {
        volumes_deleted: Some(deleted),
        space_reclaimed: space,
    }))
}
