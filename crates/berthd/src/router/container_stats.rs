//! `GET /containers/{id}/stats` and `POST /containers/{id}/update`.
//!
//! Stats follow Docker: `stream` (the default) sends one object a second, newline-delimited,
//! each with the previous sample as `precpu_stats`, until the client goes away or the
//! container stops (then a zeroed object ends the stream); `stream=false` answers one object
//! whose `precpu_stats` is a sample taken a second earlier; `one-shot=true` answers at once,
//! without `precpu_stats`. A container that is not running answers zeroed stats.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::ApiError;
use berth_api::models::container::ContainerUpdateResponse;
use berth_api::models::stats::{ContainerStats, ContainerUpdateRequest};
use berth_container::stats::with_previous;
use tokio::sync::mpsc;

use super::{Error, Query, Result, channel_body, ok_json};
use crate::state::AppState;

const INTERVAL: Duration = Duration::from_secs(1);

fn line(s: &ContainerStats) -> Bytes {
    let mut v = serde_json::to_vec(s).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

pub async fn stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    let stream = q.bool("stream", true);
    let one_shot = q.bool("one-shot", false);
    if stream && one_shot {
        return Err(Error(ApiError::invalid(
            "cannot have stream=true and one-shot=true",
        )));
    }
    let ctrs = state.ctrs.clone();
    let (first, running) = ctrs.stats_sample(&id).await?;
    if !stream {
        if !running || one_shot {
            return Ok(ok_json(&first));
        }
        tokio::time::sleep(INTERVAL).await;
        let (second, running) = ctrs.stats_sample(&id).await?;
        let out = if running {
            with_previous(second, &first)
        } else {
            second
        };
        return Ok(ok_json(&out));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let mut prev: Option<ContainerStats> = None;
        let mut sample = first;
        let mut was_running = running;
        loop {
            let out = match &prev {
                Some(p) if was_running => with_previous(sample.clone(), p),
                _ => sample.clone(),
            };
            if tx.send(line(&out)).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(INTERVAL) => {}
                () = tx.closed() => return,
                () = shutdown.cancelled() => return,
            }
            let Ok((next, running)) = ctrs.stats_sample(&id).await else {
                return; // removed
            };
            if was_running && !running {
                let _ = tx.send(line(&next)).await;
                return;
            }
            prev = was_running.then_some(sample);
            sample = next;
            was_running = running;
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        channel_body(rx),
    )
        .into_response())
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    super::body::Json(req): super::body::Json<ContainerUpdateRequest>,
) -> Result<Response> {
    let req = req.unwrap_or_default();
    let warnings = state.ctrs.update_resources(&id, req).await?;
    Ok(ok_json(&ContainerUpdateResponse { warnings }))
}
