//! A worker's side of the dispatcher: a session with a manager that carries its agent's
//! reports and brings back its assignments. The agent's [`crate::agent::pass`] runs on those
//! assignments exactly as on a manager's full store.
//!
//! While no manager answers, the worker keeps its containers as they are (no pass runs: an
//! empty or stale view must not stop tasks) and tries the managers it knows in turn; when one
//! answers again, the next pass reconciles.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::agent::TaskExecutor;
use crate::dispatcher::{SyncRequest, SyncResponse};
use crate::pki::Identity;
use crate::store::{Op, State};
use crate::transport::{CallError, Client, Request};

/// What the API shows of a worker's session.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub managers: Vec<String>,
    /// The last error talking to the managers (empty while connected).
    pub error: String,
    /// The manager removed this node (`node rm`).
    pub removed: bool,
    /// The last state the managers sent (the overlay agent reads it).
    pub view: Option<Arc<State>>,
    /// The node was promoted: what it needs to become a manager (the session has ended).
    pub promotion: Option<crate::join::JoinResponse>,
    /// Notified when `view` changes (one waiter: the overlay agent, which reprograms the
    /// VIP and routing-mesh rotations at once rather than at its next poll).
    pub view_changed: Arc<tokio::sync::Notify>,
}

pub struct Worker {
    /// The identity it joined with (its node ID); the one in use is `tls`'s.
    pub identity: Identity,
    /// The certificate and root handshakes use now (renewed, rotated).
    pub tls: Arc<crate::certs::LiveTls>,
    /// The swarm state directory (the identity file).
    pub dir: std::path::PathBuf,
    pub addr: String,
    /// Where it would listen as a manager (`host:port`).
    pub manager_addr: String,
    pub info: Arc<Mutex<SessionInfo>>,
}

/// Runs the session until `stop`, and meanwhile serves managers' task log calls on the
/// port it would listen on as a manager (it is free: this node is no manager while it is a
/// worker, and the listener is gone before this returns, e.g. for a promotion).
pub async fn run(
    worker: Arc<Worker>,
    description: Value,
    executor: Arc<dyn TaskExecutor>,
    stop: CancellationToken,
) {
    let listen = stop.child_token();
    let listener = start_listener(&worker, executor.task_logs(), listen.clone()).await;
    session(worker, description, executor, stop).await;
    listen.cancel();
    if let Some(l) = listener {
        let _ = l.await;
    }
}

/// A worker's handler: task log calls from managers, nothing else.
struct WorkerService {
    logs: Option<Arc<dyn crate::logs::TaskLogSource>>,
}

impl crate::transport::Handler for WorkerService {
    fn handle(
        &self,
        _peer: crate::transport::Peer,
        _req: Request,
    ) -> crate::BoxFuture<'_, crate::transport::Answer> {
        Box::pin(async {
            Err(crate::transport::RemoteError::new(
                "unsupported",
                "This node is not a swarm manager.",
            ))
        })
    }

    fn stream(
        &self,
        peer: crate::transport::Peer,
        req: Request,
        tx: tokio::sync::mpsc::Sender<crate::transport::Answer>,
    ) -> crate::BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Request::TaskLogs(call) = req {
                crate::logs::serve_call(self.logs.as_deref(), &peer, call, tx).await;
            }
        })
    }
}

async fn start_listener(
    worker: &Worker,
    logs: Option<Arc<dyn crate::logs::TaskLogSource>>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let port = worker.manager_addr.rsplit_once(':')?.1;
    let tls = match worker.tls.server_config() {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "worker TLS server configuration");
            return None;
        }
    };
    let addr = format!("0.0.0.0:{port}");
    match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => Some(tokio::spawn(crate::transport::serve(
            l,
            tls,
            Arc::new(WorkerService { logs }),
            stop,
        ))),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot listen for task log calls; managers will not show this node's task logs");
            None
        }
    }
}

async fn session(
    worker: Arc<Worker>,
    description: Value,
    executor: Arc<dyn TaskExecutor>,
    stop: CancellationToken,
) {
    let id = &worker.identity;
    let client = match worker.tls.client_config() {
        Ok(c) => Client::new(c),
        Err(e) => {
            tracing::error!(error = %e, "worker TLS configuration");
            return;
        }
    };
    let mut renew_at = None;
    let mut pending: Vec<Op> = Vec::new();
    let mut state: Option<State> = None;
    let mut next = 0usize;
    let mut interrupted = false;
    // Subscribed across the loop's rounds: an event while a pass runs still counts.
    let mut changed = crate::agent::armed(executor.as_ref());
    loop {
        let managers = worker
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .managers
            .clone();
        if managers.is_empty() {
            return;
        }
        let addr = managers[next % managers.len()].clone();
        let req = Request::Sync(SyncRequest {
            node_id: id.node_id.clone(),
            description: with_tls_info(&description, &worker.tls),
            addr: worker.addr.clone(),
            ops: pending.clone(),
            seen_index: state.as_ref().map(|s| s.index).unwrap_or(0),
            manager_addr: worker.manager_addr.clone(),
        });
        let call = crate::transport::call_as::<SyncResponse>(
            &client,
            &addr,
            &req,
            Duration::from_secs(10),
        );
        // A task's container turned unhealthy or died while the manager holds the call (up
        // to a second): the call is dropped, the pass reports at once, and the next call
        // carries the report. Only one call in two may be cut short, so the heartbeats go
        // on whatever the containers do.
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            a = call => a,
            _ = &mut changed, if !interrupted => {
                interrupted = true;
                changed = crate::agent::armed(executor.as_ref());
                if let Some(s) = &state {
                    let more = crate::agent::pass(s, &id.node_id, executor.as_ref()).await;
                    merge_reports(&mut pending, more);
                }
                continue;
            }
        };
        interrupted = false;
        match answer {
            Ok(resp) => {
                pending.clear();
                {
                    let mut info = worker.info.lock().unwrap_or_else(|e| e.into_inner());
                    if resp.promotion.is_some() {
                        info.promotion = resp.promotion;
                        return;
                    }
                    info.error.clear();
                    if !resp.managers.is_empty() {
                        info.managers = resp.managers;
                        next = 0;
                    }
                    let changed = info.view.as_ref().map(|v| v.index) != Some(resp.state.index);
                    info.view = Some(Arc::new(resp.state.clone()));
                    if changed {
                        info.view_changed.notify_one();
                    }
                }
                if let Some(ca) = &resp.ca
                    && crate::rotation::worker_follow(
                        &worker.dir,
                        &worker.tls,
                        &client,
                        &addr,
                        ca,
                        &mut renew_at,
                    )
                    .await
                {
                    // Kept connections still present the old certificate.
                    client.reset();
                }
                state = Some(resp.state);
            }
            Err(CallError::Remote(r)) if r.kind == "not_leader" && !r.message.is_empty() => {
                // Follow the leader: sessions are its.
                let mut info = worker.info.lock().unwrap_or_else(|e| e.into_inner());
                info.managers.retain(|m| *m != r.message);
                info.managers.insert(0, r.message);
                next = 0;
                continue;
            }
            Err(e) => {
                let removed = matches!(&e, CallError::Remote(r) if r.kind == "removed");
                tracing::debug!(manager = %addr, error = %e, "worker session");
                {
                    let mut info = worker.info.lock().unwrap_or_else(|e| e.into_inner());
                    info.error = e.to_string();
                    info.removed = removed;
                }
                if removed {
                    return;
                }
                next += 1;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
        }
        if let Some(s) = &state {
            pending = crate::agent::pass(s, &id.node_id, executor.as_ref()).await;
        }
    }
}

/// The node's description with the `TLSInfo` of the certificate it presents now.
fn with_tls_info(description: &Value, tls: &crate::certs::LiveTls) -> Value {
    let mut d = description.clone();
    if let (Some(id), Some(_)) = (tls.identity(), d.as_object()) {
        d["TLSInfo"] = crate::certs::node_tls_info(&id);
    }
    d
}

fn task_of(op: &Op) -> Option<&str> {
    match op {
        Op::Update {
            object: crate::types::Object::Task(t),
            ..
        } => Some(&t.meta.id),
        _ => None,
    }
}

/// Adds a newer pass's reports to those not yet acknowledged: a task's newer report replaces
/// its older one (both are against the same version, so only one could be committed).
fn merge_reports(pending: &mut Vec<Op>, newer: Vec<Op>) {
    pending
        .retain(|old| task_of(old).is_none_or(|id| !newer.iter().any(|n| task_of(n) == Some(id))));
    pending.extend(newer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Meta, Object, Task, TaskState, TaskStatus};

    fn report(id: &str, state: TaskState) -> Op {
        Op::Update {
            object: Object::Task(Task {
                meta: Meta::new(id.into()),
                status: TaskStatus::new(state, "x"),
                ..Default::default()
            }),
            expect: Some(1),
        }
    }

    fn states(ops: &[Op]) -> Vec<(String, TaskState)> {
        ops.iter()
            .map(|op| match op {
                Op::Update {
                    object: Object::Task(t),
                    ..
                } => (t.meta.id.clone(), t.status.state),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_newer_report_replaces_the_unacknowledged_one_of_its_task() {
        let mut pending = vec![
            report("a", TaskState::Running),
            report("b", TaskState::Running),
        ];
        merge_reports(&mut pending, vec![report("a", TaskState::Failed)]);
        assert_eq!(
            states(&pending),
            [
                ("b".to_string(), TaskState::Running),
                ("a".to_string(), TaskState::Failed)
            ]
        );
    }
}
