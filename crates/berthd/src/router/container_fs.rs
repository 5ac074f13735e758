//! A container's filesystem over the API: `changes` (docker diff), `export`, `archive`
//! (docker cp: HEAD stat, GET tar, PUT extract) and `/commit`. The work is done by
//! `berth_container::fs`; this module parses the requests and streams the tars.

use std::io::{self, Write};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::ApiError;
use berth_api::models::ContainerConfig;
use berth_container::fs::{CommitOptions, ExtractRequest, PathStat};
use futures_util::TryStreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Error, Query, Result, json_response, ok_json};
use crate::state::AppState;

const PATH_STAT_HEADER: &str = "x-docker-container-path-stat";

/// `GET /containers/{id}/changes`.
pub async fn changes(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok_json(&state.ctrs.changes(&id).await?))
}

/// `GET /containers/{id}/export`.
pub async fn export(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    state.ctrs.get(&id)?;
    let (tx, body) = tar_body();
    let ctrs = state.ctrs.clone();
    tokio::spawn(async move {
        let writer = ChannelWriter::new(tx.clone());
        if let Err(e) = ctrs.export(&id, Box::new(writer)).await {
            tracing::warn!(container = %id, error = %e, "export failed");
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
        }
    });
    Ok(tar_response(body, None))
}

fn path_param(q: &Query) -> Result<String> {
    q.non_empty("path")
        .map(str::to_string)
        .ok_or_else(|| Error(ApiError::invalid("path cannot be empty")))
}

fn stat_header(st: &PathStat) -> Option<HeaderValue> {
    HeaderValue::from_str(&st.header_value()).ok()
}

/// `HEAD /containers/{id}/archive?path=`.
pub async fn archive_head(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    let path = path_param(&q)?;
    let st = state.ctrs.stat_path(&id, &path).await?;
    let mut response = StatusCode::OK.into_response();
    if let Some(v) = stat_header(&st) {
        response.headers_mut().insert(PATH_STAT_HEADER, v);
    }
    Ok(response)
}

/// `GET /containers/{id}/archive?path=`.
pub async fn archive_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    let path = path_param(&q)?;
    state.ctrs.get(&id)?;
    let (tx, body) = tar_body();
    let (stat_tx, stat_rx) = oneshot::channel();
    let ctrs = state.ctrs.clone();
    tokio::spawn(async move {
        let writer = ChannelWriter::new(tx.clone());
        if let Err(e) = ctrs
            .archive_path(&id, &path, stat_tx, Box::new(writer))
            .await
        {
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
        }
    });
    let st = match stat_rx.await {
        Ok(st) => st?,
        Err(_) => {
            return Err(Error(ApiError::new(
                berth_api::ErrorKind::Internal,
                "cannot archive the path: the copy ended early",
            )));
        }
    };
    Ok(tar_response(body, stat_header(&st)))
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`.
pub async fn archive_put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    body: Body,
) -> Result<Response> {
    let req = ExtractRequest {
        path: path_param(&q)?,
        no_overwrite_dir_non_dir: q.bool("noOverwriteDirNonDir", false),
        copy_uid_gid: q.bool("copyUIDGID", false),
    };
    let stream = body
        .into_data_stream()
        .map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e));
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    state
        .ctrs
        .extract_to_dir(&id, req, Box::new(reader))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`.
pub async fn commit(
    State(state): State<AppState>,
    q: Query,
    super::body::Json(config): super::body::Json<ContainerConfig>,
) -> Result<Response> {
    let container = q
        .non_empty("container")
        .ok_or_else(|| Error(ApiError::invalid("No container specified")))?
        .to_string();
    let opts = CommitOptions {
        repo: q.get("repo").unwrap_or_default().to_string(),
        tag: q.get("tag").unwrap_or_default().to_string(),
        comment: q.get("comment").unwrap_or_default().to_string(),
        author: q.get("author").unwrap_or_default().to_string(),
        changes: q.all("changes").iter().map(|c| c.to_string()).collect(),
        pause: q.bool("pause", true),
        config,
        docker_version: crate::VERSION.to_string(),
    };
    let image = state.ctrs.commit(&container, opts).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": image.id.to_string() }),
    ))
}

type Chunk = std::result::Result<Bytes, io::Error>;

fn tar_body() -> (mpsc::Sender<Chunk>, Body) {
    let (tx, rx) = mpsc::channel::<Chunk>(8);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (tx, Body::from_stream(stream))
}

fn tar_response(body: Body, stat: Option<HeaderValue>) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-tar")],
        body,
    )
        .into_response();
    if let Some(v) = stat {
        response.headers_mut().insert(PATH_STAT_HEADER, v);
    }
    response
}

/// A blocking writer feeding a streamed response in 64 KiB chunks. A client that went away
/// makes writes fail, which stops the producer.
struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 64 * 1024;

    fn new(tx: mpsc::Sender<Chunk>) -> Self {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
