//! The manager's side of the cluster transport: the CA endpoint, joins, and the dispatcher
//! that serves workers' sessions.
//!
//! A worker holds no Raft store. Every `Sync` call is its heartbeat: it carries the status
//! reports its agent produced and answers with its assignments, the projection of the state
//! its agent needs (its tasks, their services, the secrets and configs they use and nothing
//! else, its own node object; never the cluster object, which holds the CA key). A call waits
//! (up to a second) for the state to change past what the worker last saw, so new tasks reach
//! it at once without a stream. A node that has not called for three heartbeat periods
//! (swarmkit's grace multiplier) is marked down, and the orchestrator moves its tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::store::{Command, Op, State};
use crate::transport::{Answer, Handler, Peer, RemoteError, Request};
use crate::types::{Node, NodeStatus, Object};
use crate::{BoxFuture, ProposeError, Proposer};

/// swarmkit's `defaultGracePeriodMultiplier`: heartbeats a node may miss before it is down.
const GRACE_MULTIPLIER: u32 = 3;
/// The longest a `Sync` waits for a change before answering (the worker's agent also looks at
/// its containers between calls).
const LONG_POLL: Duration = Duration::from_secs(1);

/// A worker's call: who it is, where it is, and what its agent reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    pub node_id: String,
    /// The node's description (hostname, platform, resources, engine).
    pub description: Value,
    /// The node's address as the manager should show it.
    pub addr: String,
    /// Task status reports (`Op::Update` of this node's tasks).
    pub ops: Vec<Op>,
    /// The state index of the last assignments it received.
    pub seen_index: u64,
    /// Where it would listen as a manager (`host:port`), should it be promoted.
    #[serde(default)]
    pub manager_addr: String,
}

/// The answer: the node's assignments at `state.index`, and the managers to call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncResponse {
    pub state: State,
    pub managers: Vec<String>,
    /// The cluster's heartbeat period, in milliseconds.
    pub heartbeat_ms: u64,
    /// The node was promoted (`node promote`): its manager certificate and Raft ID.
    #[serde(default)]
    pub promotion: Option<crate::join::JoinResponse>,
    /// The root to trust and the key that signs certificates now (renewal, rotation).
    #[serde(default)]
    pub ca: Option<crate::rotation::CaState>,
}

/// The cluster's `Dispatcher.HeartbeatPeriod` (nanoseconds in the spec; 5 s by default).
pub fn heartbeat_period(state: &State) -> Duration {
    let ns = state
        .cluster()
        .and_then(|c| c.spec["Dispatcher"]["HeartbeatPeriod"].as_u64())
        .filter(|n| *n > 0)
        .unwrap_or(5_000_000_000);
    Duration::from_nanos(ns)
}

/// What the agent of `node_id` needs from the state, and nothing more.
pub fn projection(state: &State, node_id: &str) -> State {
    let mut out = State {
        index: state.index,
        ..Default::default()
    };
    for t in state.tasks.values().filter(|t| t.node_id == node_id) {
        out.tasks.insert(t.meta.id.clone(), t.clone());
        if let Some(s) = state.services.get(&t.service_id) {
            out.services.insert(s.meta.id.clone(), s.clone());
        }
        let cs = &t.spec["ContainerSpec"];
        for (key, id_key, from, to) in [
            ("Secrets", "SecretID", &state.secrets, &mut out.secrets),
            ("Configs", "ConfigID", &state.configs, &mut out.configs),
        ] {
            for r in cs[key].as_array().into_iter().flatten() {
                let id = r[id_key].as_str().unwrap_or_default();
                if let Some(s) = from.get(id) {
                    to.insert(id.to_string(), s.clone());
                }
            }
        }
    }
    if let Some(n) = state.nodes.get(node_id) {
        out.nodes.insert(n.meta.id.clone(), n.clone());
    }
    crate::allocator::project_networks(state, node_id, &mut out);
    out
}

/// The advertised addresses of the managers, as workers should call them.
pub fn manager_addrs(state: &State) -> Vec<String> {
    let mut v: Vec<(bool, String)> = state
        .nodes
        .values()
        .filter_map(|n| n.manager_status.as_ref())
        .map(|m| (!m.leader, m.addr.clone()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, a)| a).collect()
}

/// The transport's handler on a manager.
pub struct ManagerService {
    pub proposer: Arc<dyn Proposer>,
    pub raft: crate::raft::Raft,
    /// When each node last called (nodes not yet heard from count from the service's start).
    seen: Mutex<HashMap<String, Instant>>,
    /// This node's task logs, for other managers' `service logs` ([`Request::TaskLogs`]).
    logs: Option<Arc<dyn crate::logs::TaskLogSource>>,
}

impl ManagerService {
    pub fn new(proposer: Arc<dyn Proposer>, raft: crate::raft::Raft) -> ManagerService {
        ManagerService {
            proposer,
            raft,
            seen: Mutex::default(),
            logs: None,
        }
    }

    /// Serves this node's task logs to other managers.
    pub fn with_logs(mut self, logs: Option<Arc<dyn crate::logs::TaskLogSource>>) -> Self {
        self.logs = logs;
        self
    }

    async fn sync(&self, peer: Peer, req: SyncRequest) -> Answer {
        peer.authorize(&req.node_id, None)?;
        // Sessions are the leader's: it alone sees every heartbeat and marks nodes down.
        if !crate::raft_network::is_leader(&self.raft) {
            return Err(crate::raft_network::not_leader(&self.raft));
        }
        let store = self.proposer.store();
        let Some(node) = store.view(|s| s.nodes.get(&req.node_id).map(|n| Node::clone(n))) else {
            // Removed (`node rm`): the node must leave; swarmkit's text.
            return Err(RemoteError::new(
                "removed",
                "node is no longer part of the swarm (it was removed)",
            ));
        };
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.node_id.clone(), Instant::now());
        // A node syncing is a worker: if its spec says manager, it is owed a promotion, also
        // when one was committed before (its answer lost in transit, or the node restarted
        // before acting on it): promotions are idempotent ([`Dispatcher::promote`]).
        let promotion = if node.spec.role == "manager" {
            Some(self.promote(&node, &req.manager_addr).await?)
        } else {
            None
        };
        let node = store
            .view(|s| s.nodes.get(&req.node_id).map(|n| Node::clone(n)))
            .unwrap_or(node);
        let host = crate::manager::host_of(&req.addr);
        if node.status.state != "ready"
            || node.status.addr != host
            || node.description != req.description
            || node.status.logs_addr != req.manager_addr
        {
            let mut node = Node::clone(&node);
            node.status = NodeStatus {
                state: "ready".into(),
                message: String::new(),
                addr: host,
                // A worker takes task log calls where it would listen as a manager.
                logs_addr: req.manager_addr.clone(),
            };
            node.description = req.description.clone();
            node.meta.updated_at = crate::types::now();
            let expect = Some(node.meta.version.index);
            self.commit(Op::Update {
                object: Object::Node(node),
                expect,
            })
            .await?;
        }
        for op in req.ops {
            // A node reports on its own tasks only.
            let own = match &op {
                Op::Update {
                    object: Object::Task(t),
                    ..
                } => {
                    store.view(|s| s.tasks.get(&t.meta.id).map(|st| st.node_id == req.node_id))
                        == Some(true)
                        && t.node_id == req.node_id
                }
                _ => false,
            };
            if own {
                self.commit(op).await?;
            }
        }
        let mut watch = store.watch();
        if *watch.borrow() == req.seen_index {
            let _ = tokio::time::timeout(LONG_POLL, watch.changed()).await;
        }
        let (state, managers, hb, ca) = store.view(|s| {
            (
                projection(s, &req.node_id),
                manager_addrs(s),
                heartbeat_period(s),
                s.cluster().map(crate::rotation::CaState::of),
            )
        });
        to_answer(&SyncResponse {
            state,
            managers,
            heartbeat_ms: hb.as_millis() as u64,
            promotion,
            ca,
        })
    }

    /// A worker whose spec says manager: a manager certificate and a Raft ID, recorded in its
    /// node object before it hears of them (it then joins the Raft membership as a joining
    /// manager does).
    async fn promote(
        &self,
        node: &crate::types::Node,
        addr: &str,
    ) -> Result<crate::join::JoinResponse, RemoteError> {
        let store = self.proposer.store();
        let Some(cluster) = store.view(|s| s.cluster().cloned()) else {
            return Err(RemoteError::new("unavailable", "no cluster"));
        };
        // Promoted before: the same Raft ID again (the leader may have added it as a learner
        // already), a fresh certificate (the first one's key went with the lost answer).
        let previous = node.manager_status.as_ref();
        let raft_id = previous.map_or_else(|| rand::random::<u64>() >> 1 | 1, |m| m.raft_id);
        let identity = crate::pki::issue_for(&cluster, &node.meta.id, "manager")
            .map_err(|e| RemoteError::new("internal", format!("{e:#}")))?;
        if previous.is_none_or(|m| m.addr != addr) {
            let mut updated = node.clone();
            updated.manager_status = Some(crate::types::ManagerStatus {
                leader: false,
                reachability: "unknown".into(),
                addr: addr.to_string(),
                raft_id,
            });
            let expect = Some(node.meta.version.index);
            match self
                .proposer
                .propose(Command::one(Op::Update {
                    object: Object::Node(updated),
                    expect,
                }))
                .await
            {
                Ok(()) => {}
                Err(ProposeError::Conflict(c)) => {
                    return Err(RemoteError::new("unavailable", c.to_string()));
                }
                Err(ProposeError::Unavailable(m)) => {
                    return Err(RemoteError::new("unavailable", m));
                }
            }
        }
        Ok(crate::join::JoinResponse {
            identity,
            managers: store.view(manager_addrs),
            raft_id,
        })
    }

    /// Counts a heartbeat now (a node that just became a worker).
    pub fn touch(&self, node_id: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node_id.to_string(), Instant::now());
    }

    async fn commit(&self, op: Op) -> Result<(), RemoteError> {
        match self.proposer.propose(Command::one(op)).await {
            Ok(()) | Err(ProposeError::Conflict(_)) => Ok(()),
            Err(ProposeError::Unavailable(m)) => Err(RemoteError::new("unavailable", m)),
        }
    }

    /// Marks down the nodes (other than managers) that missed their heartbeats, until `stop`
    /// (the leader runs it while it leads; nodes not heard from count from its start).
    pub async fn monitor(self: Arc<Self>, stop: CancellationToken) {
        let since = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let store = self.proposer.store();
            let grace = store.view(heartbeat_period) * GRACE_MULTIPLIER;
            let late: Vec<_> = {
                let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                store.view(|s| {
                    s.nodes
                        .values()
                        .filter(|n| n.manager_status.is_none() && n.status.state == "ready")
                        .filter(|n| {
                            seen.get(&n.meta.id)
                                .copied()
                                .unwrap_or(since)
                                .max(since)
                                .elapsed()
                                > grace
                        })
                        .map(|n| Node::clone(n))
                        .collect()
                })
            };
            for mut node in late {
                tracing::info!(node = %node.meta.id, "node missed its heartbeats: down");
                node.status.state = "down".into();
                node.status.message = "heartbeat failure".into();
                node.meta.updated_at = crate::types::now();
                let expect = Some(node.meta.version.index);
                let _ = self
                    .commit(Op::Update {
                        object: Object::Node(node),
                        expect,
                    })
                    .await;
            }
        }
    }
}

fn to_answer(v: &impl Serialize) -> Answer {
    serde_json::to_value(v).map_err(|e| RemoteError::new("internal", e.to_string()))
}

impl Handler for ManagerService {
    fn stream(
        &self,
        peer: Peer,
        req: Request,
        tx: tokio::sync::mpsc::Sender<Answer>,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Request::TaskLogs(call) = req {
                crate::logs::serve_call(self.logs.as_deref(), &peer, call, tx).await;
            }
        })
    }

    fn handle(&self, peer: Peer, req: Request) -> BoxFuture<'_, Answer> {
        Box::pin(async move {
            match req {
                Request::GetCa => {
                    let ca = self
                        .proposer
                        .store()
                        .view(|s| s.cluster().map(|c| c.root_ca.cert_pem.clone()));
                    match ca {
                        Some(pem) => Ok(json!(pem)),
                        None => Err(RemoteError::new("unavailable", "no cluster yet")),
                    }
                }
                Request::Join(j) => crate::join::handle(self.proposer.as_ref(), j).await,
                Request::Renew(r) => {
                    crate::rotation::handle_renew(self.proposer.store(), &peer, &r)
                }
                Request::Sync(s) => self.sync(peer, s).await,
                Request::Attachment(call) => {
                    crate::attach::serve(self.proposer.as_ref(), &peer, call).await
                }
                Request::Raft(call) if peer.is_manager() => {
                    crate::raft_network::handle_raft(&self.raft, call).await
                }
                Request::Forward(cmd) if peer.is_manager() => {
                    crate::raft_network::handle_forward(&self.raft, cmd).await
                }
                Request::Membership(call) if peer.is_manager() => {
                    crate::raft_network::handle_membership(&self.raft, call).await
                }
                Request::OwnNode(id) if peer.is_manager() => {
                    peer.authorize(&id, None)?;
                    if !crate::raft_network::is_leader(&self.raft) {
                        return Err(crate::raft_network::not_leader(&self.raft));
                    }
                    to_answer(&self.proposer.store().view(|s| s.nodes.get(&id).cloned()))
                }
                Request::TaskLogs(_) => Err(RemoteError::new(
                    "unsupported",
                    "task logs are a streaming call",
                )),
                Request::Raft(_)
                | Request::Forward(_)
                | Request::Membership(_)
                | Request::OwnNode(_) => Err(RemoteError::new(
                    "permission_denied",
                    "Permission denied: unauthorized peer role: only managers take this call",
                )),
            }
        })
    }
}
