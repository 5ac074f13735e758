//! Where the logs of a task come from. The API's `service logs`/`task logs` handler asks a
//! [`TaskLogSource`] per task: this node's engine for its own tasks; a source that reaches
//! other nodes can serve the rest without changing the handler.
//!
//! Other nodes' tasks ([`RemoteTaskLogs`]): the manager asks the node running the task with a
//! streaming [`crate::transport::Request::TaskLogs`] call over the cluster's mutual TLS; that
//! node (manager or worker: workers listen too, for this call only, and take it from managers
//! only) reads its container's log with its own source and streams the lines back, following
//! included, until the caller hangs up.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::BoxFuture;
use crate::transport::{Answer, Peer, RemoteError};
use crate::types::Task;

/// Which lines to send.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogRequest {
    pub stdout: bool,
    pub stderr: bool,
    /// Only lines at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only the last N lines of each task (`None`: all).
    pub tail: Option<usize>,
    /// After the past lines, new ones as they are written, until the receiver goes.
    pub follow: bool,
}

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub stderr: bool,
    pub time: DateTime<Utc>,
    /// With its newline, as written.
    pub data: Vec<u8>,
}

pub trait TaskLogSource: Send + Sync {
    /// Whether this source can read `task`'s logs (its container is on a node it reaches).
    fn serves(&self, task: &Task) -> bool;
    /// Sends the task's lines to `tx`; returns at the end of the log (or, following, when
    /// the receiver is dropped).
    fn logs<'a>(
        &'a self,
        task: &'a Task,
        request: &'a LogRequest,
        tx: tokio::sync::mpsc::Sender<LogLine>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// A manager's call for a task's log lines, to the node running it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsCall {
    pub task: Task,
    pub request: LogRequest,
}

/// Lines per answer frame at most (past lines go in batches, followed ones as they come).
const BATCH: usize = 256;

/// The serving node's side of [`LogsCall`]: managers only; the lines of `call.task` from
/// `source` (this node's), in batches (`[LogLine]` per answer), until the log ends or, when
/// following, until `tx` closes.
pub async fn serve_call(
    source: Option<&dyn TaskLogSource>,
    peer: &Peer,
    call: Box<LogsCall>,
    tx: tokio::sync::mpsc::Sender<Answer>,
) {
    let refuse = |e: RemoteError| async { tx.send(Err(e)).await.ok() };
    if !peer.is_manager() {
        refuse(RemoteError::new(
            "permission_denied",
            "Permission denied: unauthorized peer role: only managers take this call",
        ))
        .await;
        return;
    }
    let Some(source) = source.filter(|s| s.serves(&call.task)) else {
        refuse(RemoteError::new(
            "not_found",
            format!("task {} has no container on this node", call.task.meta.id),
        ))
        .await;
        return;
    };
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<LogLine>(BATCH);
    let forward = async {
        while let Some(first) = line_rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match line_rx.try_recv() {
                    Ok(l) => batch.push(l),
                    Err(_) => break,
                }
            }
            let answer = serde_json::to_value(&batch)
                .map_err(|e| RemoteError::new("internal", e.to_string()));
            if tx.send(answer).await.is_err() {
                return;
            }
        }
    };
    // `forward` ending (the caller went) drops the receiver, which ends the read.
    let read = async {
        let r = source.logs(&call.task, &call.request, line_tx).await;
        if let Err(e) = r {
            let _ = tx.send(Err(RemoteError::new("internal", e))).await;
        }
    };
    tokio::join!(read, forward);
}

/// Where a node takes [`LogsCall`]s: its address and the name its certificate carries.
#[derive(Debug, Clone)]
pub struct NodeAddr {
    pub addr: String,
    pub server_name: String,
}

/// The logs of tasks on other nodes, asked of those nodes.
pub struct RemoteTaskLogs {
    pub config: Arc<rustls::ClientConfig>,
    /// This node (its tasks are the local source's).
    pub node_id: String,
    /// Node ID → where to ask.
    pub nodes: std::collections::HashMap<String, NodeAddr>,
}

impl RemoteTaskLogs {
    /// The nodes of `state` that take log calls: managers at their Raft address, workers at
    /// the address their session reported.
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        node_id: &str,
        state: &crate::store::State,
    ) -> RemoteTaskLogs {
        let nodes = state
            .nodes
            .values()
            .filter(|n| n.meta.id != node_id)
            .filter_map(|n| {
                let addr = match &n.manager_status {
                    Some(m) => m.addr.clone(),
                    None => n.status.logs_addr.clone(),
                };
                let server_name = match &n.manager_status {
                    Some(_) => crate::transport::MANAGER_ROLE.to_string(),
                    None => n.meta.id.clone(),
                };
                (!addr.is_empty()).then(|| (n.meta.id.clone(), NodeAddr { addr, server_name }))
            })
            .collect();
        RemoteTaskLogs {
            config,
            node_id: node_id.to_string(),
            nodes,
        }
    }
}

fn has_container(task: &Task) -> bool {
    task.status
        .container_status
        .as_ref()
        .is_some_and(|c| !c.container_id.is_empty())
}

impl TaskLogSource for RemoteTaskLogs {
    fn serves(&self, task: &Task) -> bool {
        task.node_id != self.node_id
            && self.nodes.contains_key(&task.node_id)
            && has_container(task)
    }

    fn logs<'a>(
        &'a self,
        task: &'a Task,
        request: &'a LogRequest,
        tx: tokio::sync::mpsc::Sender<LogLine>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(node) = self.nodes.get(&task.node_id) else {
                return Ok(());
            };
            let call = crate::transport::Request::TaskLogs(Box::new(LogsCall {
                task: task.clone(),
                request: request.clone(),
            }));
            let mut rx = crate::transport::open_stream(
                self.config.clone(),
                &node.addr,
                &node.server_name,
                &call,
            )
            .await
            .map_err(|e| e.to_string())?;
            loop {
                let answer = tokio::select! {
                    _ = tx.closed() => return Ok(()),
                    a = rx.recv() => a,
                };
                let Some(answer) = answer else {
                    return Ok(());
                };
                let lines: Vec<LogLine> = serde_json::from_value(answer.map_err(|e| e.message)?)
                    .map_err(|e| format!("bad log lines from {}: {e}", node.addr))?;
                for line in lines {
                    if tx.send(line).await.is_err() {
                        return Ok(());
                    }
                }
            }
        })
    }
}

/// The first of several sources that serves a task.
pub struct Sources(pub Vec<Arc<dyn TaskLogSource>>);

impl TaskLogSource for Sources {
    fn serves(&self, task: &Task) -> bool {
        self.0.iter().any(|s| s.serves(task))
    }

    fn logs<'a>(
        &'a self,
        task: &'a Task,
        request: &'a LogRequest,
        tx: tokio::sync::mpsc::Sender<LogLine>,
    ) -> BoxFuture<'a, Result<(), String>> {
        match self.0.iter().find(|s| s.serves(task)) {
            Some(s) => s.logs(task, request, tx),
            None => Box::pin(async { Ok(()) }),
        }
    }
}
