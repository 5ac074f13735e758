//! `GET /services/{id}/logs` and `GET /tasks/{id}/logs`: the tasks' container logs, each line
//! prefixed with its context as dockerd sends it with `details=1`
//! (`com.docker.swarm.node.id=…,com.docker.swarm.service.id=…,com.docker.swarm.task.id=…`),
//! which the docker CLI turns into `web.1.xyz@node | line`. Lines come from a
//! [`TaskLogSource`] per task; this node's serves the tasks whose containers are here, the
//! others are asked of the node running them (`berth_swarm::logs::RemoteTaskLogs`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::ApiError;
use berth_api::stream::{StreamKind, encode_frame};
use berth_swarm::logs::{LogLine, LogRequest, TaskLogSource};
use berth_swarm::types::Task;
use tokio::sync::mpsc;

use super::super::containers::{log_options, stream_body, stream_content_type};
use super::logs_follow::Sources;
use super::{Error, Query, Result, manager};
use crate::state::AppState;

/// How each line is shown.
struct Shape {
    details: bool,
    timestamps: bool,
    tty: bool,
}

fn context(task: &Task) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={}",
        enc(&task.node_id),
        enc(&task.service_id),
        enc(&task.meta.id)
    )
}

fn encode(shape: &Shape, ctx: &str, line: &LogLine, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(line.data.len() + ctx.len() + 40);
    if shape.timestamps {
        let ts = line
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        payload.extend_from_slice(ts.as_bytes());
        payload.push(b' ');
    }
    if shape.details {
        payload.extend_from_slice(ctx.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(&line.data);
    if shape.tty {
        out.extend_from_slice(&payload);
    } else {
        let kind = if line.stderr {
            StreamKind::Stderr
        } else {
            StreamKind::Stdout
        };
        encode_frame(kind, &payload, out);
    }
}

pub async fn service_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    let h = manager(&state).await?;
    let (service, tasks) = h.store().view(|s| {
        let service = s.find_service(&id).cloned();
        let tasks: Vec<Task> = service
            .as_ref()
            .map(|svc| {
                s.tasks
                    .values()
                    .filter(|t| t.service_id == svc.meta.id)
                    .map(|t| Task::clone(t))
                    .collect()
            })
            .unwrap_or_default();
        (service, tasks)
    });
    let service =
        service.ok_or_else(|| Error(ApiError::not_found(format!("service {id} not found"))))?;
    let tty = service.task_template()["ContainerSpec"]["TTY"] == true;
    respond(&state, &h, tasks, Some(service.meta.id.clone()), tty, &q)
}

pub async fn task_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    let h = manager(&state).await?;
    let task = h
        .store()
        .view(|s| s.find_task(&id).cloned())
        .ok_or_else(|| Error(ApiError::not_found(format!("task {id} not found"))))?;
    let tty = task.spec["ContainerSpec"]["TTY"] == true;
    respond(&state, &h, vec![task], None, tty, &q)
}

/// Streams one task's lines, tagged with its context, into `line_tx`.
fn spawn_task(
    sources: &Sources,
    source: Arc<dyn TaskLogSource>,
    task: Task,
    request: LogRequest,
    line_tx: mpsc::Sender<(Arc<str>, LogLine)>,
) {
    let ctx: Arc<str> = context(&task).into();
    super::logs_follow::spawn_task(sources.clone(), source, task, request, ctx, line_tx);
}

/// Following a service: the tasks that start later are followed too (from their first line),
/// as swarmkit's log broker does, until the client goes.
fn follow_new_tasks(
    sources: Sources,
    service_id: String,
    mut seen: std::collections::HashSet<String>,
    request: LogRequest,
    line_tx: mpsc::Sender<(Arc<str>, LogLine)>,
) {
    tokio::spawn(async move {
        let request = LogRequest {
            tail: None,
            ..request
        };
        let h = sources.h.clone();
        let mut watch = h.store().watch();
        while !line_tx.is_closed() {
            tokio::select! {
                _ = watch.changed() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = line_tx.closed() => return,
            }
            let fresh: Vec<Task> = h.store().view(|s| {
                s.tasks
                    .values()
                    .filter(|t| t.service_id == service_id && !seen.contains(&t.meta.id))
                    .map(|t| Task::clone(t))
                    .collect()
            });
            // The nodes as the store knows them now (one may have joined, or moved).
            let source = sources.now();
            for task in fresh.into_iter().filter(|t| source.serves(t)) {
                seen.insert(task.meta.id.clone());
                spawn_task(
                    &sources,
                    source.clone(),
                    task,
                    request.clone(),
                    line_tx.clone(),
                );
            }
        }
    });
}

fn respond(
    state: &AppState,
    h: &berth_swarm::manager::Handle,
    mut tasks: Vec<Task>,
    service_id: Option<String>,
    tty: bool,
    q: &Query,
) -> Result<Response> {
    let o = log_options(q)?;
    if !o.stdout && !o.stderr {
        return Err(Error(ApiError::invalid(
            "Bad parameters: you must choose at least one stream",
        )));
    }
    let request = LogRequest {
        stdout: o.stdout,
        stderr: o.stderr,
        since: o.since,
        tail: o.tail,
        follow: o.follow,
    };
    let shape = Arc::new(Shape {
        details: q.bool("details", false),
        timestamps: o.timestamps,
        tty,
    });
    let sources = Sources {
        h: h.clone(),
        ctrs: state.ctrs.clone(),
    };
    let source = sources.now();
    // Tasks whose containers no source reaches (removed, or on nodes without an address) have
    // no lines.
    tasks.retain(|t| source.serves(t));
    tasks.sort_by(|a, b| (a.slot, &a.meta.created_at).cmp(&(b.slot, &b.meta.created_at)));
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(16);
    let (line_tx, mut line_rx) = mpsc::channel::<(Arc<str>, LogLine)>(256);
    let seen = tasks.iter().map(|t| t.meta.id.clone()).collect();
    for task in tasks {
        spawn_task(
            &sources,
            source.clone(),
            task,
            request.clone(),
            line_tx.clone(),
        );
    }
    if let Some(service_id) = service_id.filter(|_| request.follow) {
        follow_new_tasks(
            sources.clone(),
            service_id,
            seen,
            request.clone(),
            line_tx.clone(),
        );
    }
    drop(line_tx);
    let follow = request.follow;
    tokio::spawn(async move {
        if !follow {
            // The whole log at once: the tasks' lines in time order.
            let mut all = Vec::new();
            while let Some(item) = line_rx.recv().await {
                all.push(item);
            }
            all.sort_by_key(|(_, l)| l.time);
            let mut out = Vec::new();
            for (ctx, line) in &all {
                encode(&shape, ctx, line, &mut out);
                if out.len() >= 64 * 1024 && out_tx.send(std::mem::take(&mut out)).await.is_err() {
                    return;
                }
            }
            if !out.is_empty() {
                let _ = out_tx.send(out).await;
            }
            return;
        }
        while let Some((ctx, line)) = line_rx.recv().await {
            let mut out = Vec::new();
            encode(&shape, &ctx, &line, &mut out);
            if out_tx.send(out).await.is_err() {
                return;
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, stream_content_type(tty))],
        stream_body(out_rx),
    )
        .into_response())
}
