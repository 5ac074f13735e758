//! Container endpoints: typed parsing of Docker's query strings and bodies, then the
//! container service (`berth-container`).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::models::container::{ContainerPruneResponse, ContainerTopResponse};
use berth_api::models::{ContainerCreateRequest, ContainerCreateResponse, ContainerWaitResponse};
use berth_api::{ApiError, Filters};
use berth_container::{ContainerError, ListFilter, LogOptions, WaitCondition};
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::body::Json;
use super::hijack::{Reframe, proxy, switching, to_tokio, wants_upgrade};
use super::{Error, Query, RequestVersion, Result, json_response, ok_json};
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

pub async fn create(
    State(state): State<AppState>,
    Extension(RequestVersion(version)): Extension<RequestVersion>,
    q: Query,
    Json(req): Json<ContainerCreateRequest>,
) -> Result<Response> {
    let mut req = req.ok_or_else(|| {
        Error(ApiError::invalid(
            "config cannot be empty in order to create a container",
        ))
    })?;
    let mac_warning = req.migrate_mac_address(version)?;
    if version.at_least(1, 42)
        && let Some(h) = req.host_config.as_mut()
    {
        // As dockerd: KernelMemory was removed in API 1.42, and is ignored from then on.
        h.resources.kernel_memory = 0;
    }
    let name = q.non_empty("name").map(str::to_string);
    let overlay = crate::overlay::attachable::prepare(&state, &mut req)
        .await
        .map_err(Error)?;
    let (id, mut warnings) = state.ctrs.create(name, req).await?;
    // The address comes at each start (`overlay::plain`).
    if let Some(network) = overlay
        && let Err(e) = state.plain.want(&id, &network)
    {
        let _ = state.ctrs.remove(&id, true).await;
        return Err(Error(e));
    }
    warnings.extend(mac_warning);
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
                r.size_root_fs = Some(ctrs.size_root_fs(&r.id) as i64);
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
            info.size_root_fs = Some(ctrs.size_root_fs(&info.id) as i64);
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
            let (h, w) = size_params(&q)?;
            c.resize(&id, h, w).await?;
            Ok(StatusCode::OK.into_response())
        }
        "exec" => {
            let (parts, body) = req.into_parts();
            let body = super::body::read_limited(body, super::body::MAX_JSON_BODY).await?;
            let cfg = super::body::parse(&parts.headers, &body)?;
            exec_create(State(state.clone()), Path(id), Json(cfg)).await
        }
        _ => Err(Error(ApiError::not_found("page not found"))),
    }
}

fn wait(state: &AppState, id: &str, q: &Query) -> Result<Response> {
    let cond =
        WaitCondition::parse(q.get("condition").unwrap_or_default()).map_err(ApiError::from)?;
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

pub(super) fn stream_body(rx: mpsc::Receiver<Vec<u8>>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Bytes::from(chunk)), rx))
    });
    Body::from_stream(stream)
}

pub(super) fn stream_content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

pub(super) fn log_options(q: &Query) -> Result<LogOptions> {
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

/// Docker's `detachKeys` (`ctrl-p,ctrl-q`, `a`, `ctrl-@`) as bytes.
pub fn parse_detach_keys(text: &str) -> Result<Vec<u8>> {
    let bad = || {
        Error(ApiError::invalid(format!(
            "Invalid detach keys ({text}) provided"
        )))
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        let p = part.trim();
        if let Some(k) = p.strip_prefix("ctrl-") {
            let c = k.bytes().next().filter(|_| k.len() == 1).ok_or_else(bad)?;
            out.push(match c {
                b'a'..=b'z' => c - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(bad()),
            });
        } else if p.len() == 1 {
            out.push(p.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

/// `POST /containers/{id}/attach`: hijacks the connection (101 when the client asked for
/// `Upgrade: tcp`) and proxies it to the shim's attach stream. A container that is not
/// running yet is attached when it starts, so `run` sees all the output.
async fn attach(state: &AppState, id: &str, q: &Query, mut req: Request) -> Result<Response> {
    let c = state.ctrs.get(id)?;
    let r = c.record();
    let tty = r.config.tty;
    let mut detach = parse_detach_keys(q.non_empty("detachKeys").unwrap_or("ctrl-p,ctrl-q"))?;
    if !tty {
        detach.clear();
    }
    let (stdin, stdout, stderr) = (
        q.bool("stdin", false),
        q.bool("stdout", false),
        q.bool("stderr", false),
    );
    let logs_too = q.bool("logs", false);
    let stream = q.bool("stream", false);
    let content_type = stream_content_type(tty);
    let ctrs = state.ctrs.clone();
    let cid = c.id().to_string();
    // Past output first (`logs=1`), from the json-file log.
    let replay = |tx: mpsc::Sender<Vec<u8>>| {
        let ctrs = ctrs.clone();
        let cid = cid.clone();
        let o = LogOptions {
            stdout,
            stderr,
            ..Default::default()
        };
        async move {
            if logs_too && r.log_driver().readable() {
                let _ = ctrs.stream_logs(&cid, o, tx).await;
            }
        }
    };
    if !wants_upgrade(&req) {
        let (tx, rx) = mpsc::channel(16);
        let ctrs2 = ctrs.clone();
        let cid2 = cid.clone();
        let replay_tx = tx.clone();
        let replay_fut = replay(replay_tx);
        tokio::spawn(async move {
            replay_fut.await;
            if !stream {
                return;
            }
            let Ok(pending) = ctrs2.attach(&cid2, false, stdout, stderr) else {
                return;
            };
            if let Ok(a) = pending.await
                && let Ok(mut s) = to_tokio(a.stream)
            {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, content_type)],
            stream_body(rx),
        )
            .into_response());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Registered now, before the client gets its answer and starts the container.
    let pending = if stream {
        Some(ctrs.attach(&cid, stdin, stdout, stderr)?)
    } else {
        None
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let replay_fut = replay(tx);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        replay_fut.await;
        while let Ok(chunk) = rx.try_recv() {
            if io.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let Some(pending) = pending else {
            let _ = io.shutdown().await;
            return;
        };
        // Input the client sends before the container starts waits in the socket buffer.
        let attached = pending.await;
        match attached
            .map_err(|e| e.to_string())
            .and_then(|a| to_tokio(a.stream).map_err(|e| e.to_string()))
        {
            Ok(shim) => proxy(io, shim, stdin, detach, Reframe::Keep).await,
            Err(e) => tracing::debug!(error = %e, "attach failed"),
        }
    });
    Ok(switching(content_type))
}

pub(super) fn size_params(q: &Query) -> Result<(u16, u16)> {
    let p = |k: &str| -> Result<u16> {
        q.non_empty(k)
            .unwrap_or("0")
            .parse::<u16>()
            .map_err(|_| Error(ApiError::invalid(format!("invalid value for {k}"))))
    };
    Ok((p("h")?, p("w")?))
}

pub async fn exec_create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(cfg): Json<berth_api::models::ExecConfig>,
) -> Result<Response> {
    let cfg = cfg.unwrap_or_default();
    if !cfg.detach_keys.is_empty() {
        parse_detach_keys(&cfg.detach_keys)?;
    }
    let exec_id = state.ctrs.exec_create(&id, cfg)?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": exec_id }),
    ))
}

pub async fn exec_inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok_json(&state.ctrs.exec_inspect(&id).await?))
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
        state.ctrs.remove_link(&id)?;
        return Ok(no_content());
    }
    state
        .ctrs
        .remove_with_volumes(&id, q.bool("force", false), q.bool("v", false))
        .await?;
    Ok(no_content())
}

/// `DELETE /containers/{parent}/{alias}?link=true`: a legacy link's name has a slash.
pub async fn remove_link(
    State(state): State<AppState>,
    Path((parent, alias)): Path<(String, String)>,
    q: Query,
) -> Result<Response> {
    let name = format!("{parent}/{alias}");
    if !q.bool("link", false) {
        return Err(Error(ApiError::not_found(format!(
            "No such container: {name}"
        ))));
    }
    state.ctrs.remove_link(&name)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::{Method, Request as HttpRequest};
    use berth_image::testutil::{TestImage, docker_archive};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::state::Daemon;

    async fn call(
        state: &AppState,
        method: Method,
        uri: &str,
        body: &str,
    ) -> (StatusCode, Vec<u8>) {
        let req = HttpRequest::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = crate::router::app(state.clone())
            .oneshot(req)
            .await
            .unwrap();
        let status = resp.status();
        (
            status,
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
    }

    fn message(body: &[u8]) -> String {
        serde_json::from_slice::<serde_json::Value>(body).unwrap()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn create_inspect_list_rename_remove_without_running() {
        let dir = tempfile::tempdir().unwrap();
        let state: AppState = Arc::new(Daemon::open(Config::for_root(dir.path())).await.unwrap());
        let image = TestImage::new(&["img:1"], &[&[("etc/passwd", b"root:x:0:0::/:/bin/sh\n")]]);
        state
            .images
            .load(
                &mut std::io::Cursor::new(docker_archive(&[image])),
                &mut |_| {},
            )
            .unwrap();
        let (s, b) = call(
            &state,
            Method::POST,
            "/containers/create?name=web",
            r#"{"Image":"nope","Cmd":["true"]}"#,
        )
        .await;
        assert_eq!(
            (s, message(&b)),
            (StatusCode::NOT_FOUND, "No such image: nope".to_string())
        );
        let (s, b) = call(
            &state,
            Method::POST,
            "/containers/create?name=web",
            r#"{"Image":"img:1","Entrypoint":[""]}"#,
        )
        .await;
        assert_eq!(
            (s, message(&b)),
            (StatusCode::BAD_REQUEST, "no command specified".to_string())
        );
        let (s, b) = call(
            &state,
            Method::POST,
            "/v1.41/containers/create?name=web",
            r#"{"Image":"img:1","Cmd":["true"],"Labels":{"a":"b"}}"#,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
        let id = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_string();
        let (s, b) = call(
            &state,
            Method::GET,
            &format!("/containers/{}/json", &id[..6]),
            "",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["Name"], "/web");
        assert_eq!(v["State"]["Status"], "created");
        assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "no");
        assert_eq!(v["HostConfig"]["ShmSize"], 67108864);
        assert_eq!(
            (
                state.containers.counts().0,
                state
                    .containers
                    .count_using(&state.images.get("img:1").unwrap().id)
            ),
            (1, 1)
        );
        let (s, b) = call(&state, Method::GET, "/containers/json", "").await;
        assert_eq!((s, b.as_slice()), (StatusCode::OK, &b"[]"[..]));
        let (s, b) = call(&state, Method::GET, "/containers/json?all=1", "").await;
        assert_eq!(s, StatusCode::OK);
        let rows: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(rows[0]["Status"], "Created");
        assert_eq!(rows[0]["Labels"]["a"], "b");
        let (s, _) = call(&state, Method::POST, "/containers/web/rename?name=db", "").await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, b) = call(&state, Method::POST, "/containers/db/kill", "").await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(
            message(&b),
            format!("Cannot kill container: db: container {id} is not running")
        );
        let (s, _) = call(&state, Method::POST, "/containers/db/stop", "").await;
        assert_eq!(s, StatusCode::NOT_MODIFIED);
        let (s, b) = call(&state, Method::POST, "/containers/db/wait", "").await;
        assert_eq!(
            (s, String::from_utf8_lossy(&b).into_owned()),
            (StatusCode::OK, r#"{"StatusCode":0}"#.to_string())
        );
        let (s, b) = call(&state, Method::POST, "/containers/nope/wait", "").await;
        assert_eq!(
            (s, message(&b)),
            (StatusCode::NOT_FOUND, "No such container: nope".to_string())
        );
        let (s, _) = call(&state, Method::DELETE, "/images/img:1", "").await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, _) = call(&state, Method::DELETE, "/containers/db", "").await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert!(!dir.path().join("data/containers").join(&id).exists());
        let (s, _) = call(&state, Method::GET, "/containers/db/json", "").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert!(parse_detach_keys("ctrl-").is_err());
    }
}
