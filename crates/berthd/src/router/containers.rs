//! Container endpoints: typed parsing of Docker's query strings and bodies, then the
//! container service (`berth-container`).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::models::container::{ContainerPruneResponse, ContainerTopResponse};
use berth_api::models::{ContainerCreateRequest, ContainerCreateResponse, ContainerWaitResponse};
use berth_api::{ApiError, Filters};
use berth_container::{ContainerError, ListFilter, LogOptions, WaitCondition};
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Error, Query, Result, json_response, ok_json};
use crate::events::parse_timestamp;
use crate::state::AppState;

impl From<ContainerError> for Error {
    fn from(e: ContainerError) -> Self {
        Error(ApiError::new(e.kind(), e.to_string()))
    }
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn not_modified() -> Response {
    StatusCode::NOT_MODIFIED.into_response()
}

fn int_param(q: &Query, keys: &[&str]) -> Result<Option<i64>> {
    for k in keys {
        if let Some(v) = q.non_empty(k) {
            return v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Error(ApiError::invalid(format!("invalid value for {k}: {v:?}"))));
        }
    }
    Ok(None)
}

pub async fn create(State(state): State<AppState>, q: Query, body: Bytes) -> Result<Response> {
    let req: ContainerCreateRequest = if body.is_empty() {
        return Err(Error(ApiError::invalid(
            "config cannot be empty in order to create a container",
        )));
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error(ApiError::invalid(format!("invalid JSON: {e}"))))?
    };
    let name = q.non_empty("name").map(str::to_string);
    let (id, warnings) = state.ctrs.create(name, req).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &ContainerCreateResponse { id, warnings },
    ))
}

pub async fn list(State(state): State<AppState>, q: Query) -> Result<Response> {
    let filter = ListFilter::new(q.filters()?)?;
    let limit = int_param(&q, &["limit"])?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let all = q.bool("all", false);
    let size = q.bool("size", false);
    let ctrs = state.ctrs.clone();
    let rows = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut rows = ctrs.list(all, limit, filter)?;
        if size {
            for r in &mut rows {
                r.size_rw = Some(ctrs.size_rw(&r.id) as i64);
                r.size_root_fs = Some(0);
            }
        }
        Ok(rows)
    })
    .await
    .map_err(super::join_error)??;
    Ok(ok_json(&rows))
}

pub async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    let ctrs = state.ctrs.clone();
    let size = q.bool("size", false);
    let info = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut info = ctrs.inspect(&id)?;
        if size {
            info.size_rw = Some(ctrs.size_rw(&info.id) as i64);
            info.size_root_fs = Some(0);
        }
        Ok(info)
    })
    .await
    .map_err(super::join_error)??;
    Ok(ok_json(&info))
}

pub async fn post_action(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    q: Query,
    req: Request,
) -> Result<Response> {
    let c = &state.ctrs;
    match action.as_str() {
        "start" => Ok(if c.start(&id).await? {
            no_content()
        } else {
            not_modified()
        }),
        "stop" => {
            let t = int_param(&q, &["t", "timeout"])?;
            Ok(if c.stop(&id, t, q.non_empty("signal")).await? {
                no_content()
            } else {
                not_modified()
            })
        }
        "kill" => {
            c.kill(&id, q.non_empty("signal")).await?;
            Ok(no_content())
        }
        "restart" => {
            let t = int_param(&q, &["t", "timeout"])?;
            c.restart(&id, t, q.non_empty("signal")).await?;
            Ok(no_content())
        }
        "pause" => {
            c.pause(&id, true).await?;
            Ok(no_content())
        }
        "unpause" => {
            c.pause(&id, false).await?;
            Ok(no_content())
        }
        "rename" => {
            c.rename(&id, q.get("name").unwrap_or_default()).await?;
            Ok(no_content())
        }
        "wait" => wait(&state, &id, &q),
        "attach" => attach(&state, &id, &q, req).await,
        "resize" => {
            // Needs the shim's resize for tty containers; accepted for a known container.
            c.get(&id)?;
            Ok(StatusCode::OK.into_response())
        }
        _ => Err(Error(ApiError::not_found("page not found"))),
    }
}

fn wait(state: &AppState, id: &str, q: &Query) -> Result<Response> {
    let cond = WaitCondition::parse(q.get("condition").unwrap_or_default())?;
    let fut = state.ctrs.wait(id, cond)?;
    let shutdown = state.shutdown.clone();
    // Headers go out now (the docker CLI starts the container once it has them); the body
    // follows when the condition holds. A client that goes away drops the stream and the
    // waiter with it.
    let stream = futures_util::stream::once(async move {
        let code = tokio::select! {
            code = fut => Some(code),
            () = shutdown.cancelled() => None,
        };
        let body = match code {
            Some(code) => serde_json::to_vec(&ContainerWaitResponse {
                status_code: code,
                error: None,
            })
            .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok::<_, Infallible>(Bytes::from(body))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn stream_body(rx: mpsc::Receiver<Vec<u8>>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Bytes::from(chunk)), rx))
    });
    Body::from_stream(stream)
}

fn stream_content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

fn log_options(q: &Query) -> Result<LogOptions> {
    let now = Utc::now();
    let time = |k: &str| -> Result<Option<chrono::DateTime<Utc>>> {
        match q.non_empty(k) {
            None | Some("0") => Ok(None),
            Some(v) => berth_container::logs::parse_time(v, now)
                .map(Some)
                .ok_or_else(|| Error(ApiError::invalid(format!("invalid value for {k}: {v:?}")))),
        }
    };
    let tail = match q.non_empty("tail") {
        None | Some("all") => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n as usize),
            _ => None,
        },
    };
    Ok(LogOptions {
        stdout: q.bool("stdout", false),
        stderr: q.bool("stderr", false),
        follow: q.bool("follow", false),
        since: time("since")?,
        until: time("until")?,
        timestamps: q.bool("timestamps", false),
        tail,
    })
}

pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    let o = log_options(&q)?;
    if !o.stdout && !o.stderr {
        return Err(Error(ApiError::invalid(
            "Bad parameters: you must choose at least one stream",
        )));
    }
    let (tty, _) = state.ctrs.log_source(&id)?;
    let (tx, rx) = mpsc::channel(16);
    let ctrs = state.ctrs.clone();
    tokio::spawn(async move {
        if let Err(e) = ctrs.stream_logs(&id, o, tx).await {
            tracing::debug!(error = %e, "log stream ended with an error");
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, stream_content_type(tty))],
        stream_body(rx),
    )
        .into_response())
}

/// `POST /containers/{id}/attach`: output only for now (from the json-file log); stdin is
/// read and discarded until the shim serves attach.
async fn attach(state: &AppState, id: &str, q: &Query, mut req: Request) -> Result<Response> {
    let (tty, _) = state.ctrs.log_source(id)?;
    let id = state.ctrs.get(id)?.id().to_string();
    let o = LogOptions {
        stdout: q.bool("stdout", false),
        stderr: q.bool("stderr", false),
        ..Default::default()
    };
    let logs_too = q.bool("logs", false);
    let stream = q.bool("stream", false);
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"tcp"));
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let ctrs = state.ctrs.clone();
    let id2 = id.clone();
    tokio::spawn(async move {
        let result = if stream {
            ctrs.attach_output(&id2, o, logs_too, tx).await
        } else if logs_too {
            ctrs.stream_logs(&id2, o, tx).await
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "attach stream ended with an error");
        }
    });
    let content_type = stream_content_type(tty);
    if !upgrade {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, content_type)],
            stream_body(rx),
        )
            .into_response());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "attach upgrade failed");
                return;
            }
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let (mut rd, mut wr) = tokio::io::split(io);
        // Drain stdin so the client's writes never block; nothing consumes it yet.
        let drain = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        while let Some(chunk) = rx.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
            let _ = wr.flush().await;
        }
        let _ = wr.shutdown().await;
        drain.abort();
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

pub async fn top(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    let (titles, processes) = state
        .ctrs
        .top(&id, q.get("ps_args").unwrap_or_default())
        .await?;
    Ok(ok_json(&ContainerTopResponse { titles, processes }))
}

pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    if q.bool("link", false) {
        return Err(Error(ApiError::not_implemented("links are not supported")));
    }
    state.ctrs.remove(&id, q.bool("force", false)).await?;
    Ok(no_content())
}

pub async fn prune(State(state): State<AppState>, q: Query) -> Result<Response> {
    let filters: Filters = q.filters()?;
    filters.validate(&["until", "label", "label!"])?;
    let until = match filters.get("until").first() {
        Some(v) => Some(parse_timestamp(v, Utc::now()).map_err(Error)?),
        None => None,
    };
    let keep = move |r: &berth_container::Record| {
        let labels = r.config.labels.clone().unwrap_or_default();
        filters.match_labels("label", &labels)
            && !filters
                .get("label!")
                .iter()
                .any(|w| match w.split_once('=') {
                    Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                    None => labels.contains_key(*w),
                })
            && until.is_none_or(|u| r.created.timestamp() < u.0)
    };
    let (deleted, space) = state.ctrs.prune(&keep).await?;
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("reclaimed".to_string(), space.to_string());
    state
        .events
        .publish(crate::events::new_event("container", "prune", "", attrs));
    Ok(ok_json(&ContainerPruneResponse {
        containers_deleted: Some(deleted),
        space_reclaimed: space as i64,
    }))
}
