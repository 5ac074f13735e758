//! `POST /exec/{id}/start` and `/resize`.
//!
//! As dockerd does: the exec must exist (404 otherwise), then a non-detached start answers
//! `101` (or `200` to a client that did not ask to upgrade) *before* the process starts, and
//! on a UNIX socket the process starts only once the client has read that head, so its
//! output can never arrive in the same read as the answer's head; whatever stops the
//! process from starting is then written into the stream, in the runtime's words, and the
//! exec's exit code (126, 127, ...) is what `GET /exec/{id}/json` reports. The stream's
//! format follows the start request's `Tty`; the process's terminal, the create request's.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::ApiError;
use berth_api::stream::{StreamKind, encode_frame};
use berth_container::Containers;
use tokio::io::AsyncWriteExt;

use super::containers::{parse_detach_keys, size_params, stream_content_type};
use super::hijack::{Reframe, proxy, switching, to_tokio, wants_upgrade};
use super::{Error, Query, Result};
use crate::state::AppState;

/// What a non-detached start streams, decided from the exec and the start request.
struct Session {
    ctrs: Containers,
    id: String,
    /// The client's stream is raw (start `Tty`), not multiplexed.
    raw: bool,
    /// The process has a terminal (create `Tty`).
    process_tty: bool,
    stdin: bool,
    detach_keys: Vec<u8>,
}

impl Session {
    /// Starts the process and proxies `client` to it until its output ends; a start failure
    /// is written to the client instead (as stdout, like dockerd).
    async fn run<C>(self, mut client: C)
    where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let started = self.ctrs.exec_start(&self.id, false).await;
        let (stream, failure) = match started {
            Ok(s) => (s.stream, s.failure),
            Err(e) => (None, Some(Error::from(e).0.message)),
        };
        let stream = match stream.map(to_tokio).transpose() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, exec = %self.id, "exec stream");
                None
            }
        };
        let Some(shim) = stream.filter(|_| failure.is_none()) else {
            let text = format!("{}\r\n", failure.unwrap_or_default());
            let mut out = Vec::new();
            if self.raw {
                out.extend_from_slice(text.as_bytes());
            } else {
                encode_frame(StreamKind::Stdout, text.as_bytes(), &mut out);
            }
            let _ = client.write_all(&out).await;
            let _ = client.shutdown().await;
            return;
        };
        let reframe = match (self.process_tty, self.raw) {
            (true, false) => Reframe::FrameAsStdout,
            (false, true) => Reframe::StdoutOnly,
            _ => Reframe::Keep,
        };
        proxy(client, shim, self.stdin, self.detach_keys, reframe).await;
        self.ctrs.exec_finished(&self.id).await;
    }
}

pub async fn exec_post(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    q: Query,
    mut req: Request,
) -> Result<Response> {
    match action.as_str() {
        "resize" => {
            let (h, w) = size_params(&q)?;
            state.ctrs.exec_resize(&id, h, w).await?;
            return Ok(StatusCode::OK.into_response());
        }
        "start" => {}
        _ => return Err(Error(ApiError::not_found("page not found"))),
    }
    let upgrade = wants_upgrade(&req);
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let headers = req.headers().clone();
    let body = super::body::read_limited(req.into_body(), super::body::MAX_JSON_BODY).await?;
    let start: berth_api::models::ExecStartConfig =
        super::body::parse(&headers, &body)?.unwrap_or_default();
    let entry = state.ctrs.exec_inspect(&id).await?;
    if start.detach {
        let started = state.ctrs.exec_start(&id, true).await?;
        if let Some(m) = started.failure {
            return Err(Error(ApiError::invalid(m)));
        }
        return Ok(StatusCode::OK.into_response());
    }
    let process_tty = entry.process_config.tty;
    // Docker scans for the detach sequence only in a terminal's input (`copyEscapable`).
    let detach_keys = if process_tty {
        parse_detach_keys(if entry.detach_keys.is_empty() {
            "ctrl-p,ctrl-q"
        } else {
            &entry.detach_keys
        })?
    } else {
        Vec::new()
    };
    let session = Session {
        ctrs: state.ctrs.clone(),
        id,
        raw: start.tty,
        process_tty,
        stdin: entry.open_stdin,
        detach_keys,
    };
    let content_type = stream_content_type(start.tty);
    match on_upgrade {
        Some(on_upgrade) => {
            tokio::spawn(async move {
                // Resolves once hyper has written and flushed the 101; the process starts
                // once the client has read it (see `client_after_head`).
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                session
                    .run(super::hijack::client_after_head(upgraded).await)
                    .await;
            });
            Ok(switching(content_type))
        }
        None => {
            // A plain response: the body is read from one end of an in-memory pipe, the
            // session writes into the other (and reads no input: the request body is over).
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            tokio::spawn(session.run(ours));
            let body = Body::from_stream(tokio_util::io::ReaderStream::new(theirs));
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response())
        }
    }
}
