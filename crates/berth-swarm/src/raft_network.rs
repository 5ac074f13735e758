//! Raft between managers over the cluster transport, writes forwarded from followers to the
//! leader, and the membership calls of managers joining and leaving.
//!
//! openraft's messages travel as they serialize (its `serde` feature); an answer that is a Raft
//! error travels as `kind = "raft"` with the serialized error, so the caller hands openraft the
//! same `RaftError` the remote produced. The network notes when it last reached each manager:
//! the leader shows that as the managers' reachability (`node ls` MANAGER STATUS).

#![allow(clippy::result_large_err)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, ChangeMembers};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::raft::{NodeId, Raft, TypeConfig};
use crate::store::Command;
use crate::transport::{Answer, CallError, Client, RemoteError, Request};

/// A Raft message from one manager to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RaftCall {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// A change of the managers, asked of the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipCall {
    /// A manager that just joined: add it as a learner, then as a voter once it caught up.
    Add { raft_id: NodeId, addr: String },
    /// A manager leaving (or removed): out of the voters and the membership.
    Remove { raft_id: NodeId },
}

/// What the managers share: the clients (set once the node has its certificate) and when each
/// peer last answered. Raft messages and control calls (forwarded writes, membership changes,
/// which may take seconds) use separate clients, so that one never queues behind the other on
/// a peer's connection.
#[derive(Default)]
pub struct Peers {
    clients: OnceLock<(Arc<Client>, Arc<Client>)>,
    last_ok: Mutex<HashMap<NodeId, Instant>>,
}

impl Peers {
    pub fn set_config(&self, config: Arc<rustls::ClientConfig>) {
        let _ = self.clients.set((
            Arc::new(Client::new(config.clone())),
            Arc::new(Client::new(config)),
        ));
    }
    pub fn has_config(&self) -> bool {
        self.clients.get().is_some()
    }
    /// The client for Raft messages.
    fn raft_client(&self) -> Option<Arc<Client>> {
        self.clients.get().map(|c| c.0.clone())
    }
    /// The client for forwarded writes and membership calls.
    pub fn client(&self) -> Option<Arc<Client>> {
        self.clients.get().map(|c| c.1.clone())
    }
    /// Drops kept connections (this node's certificate or root changed).
    pub fn reset(&self) {
        if let Some((raft, control)) = self.clients.get() {
            raft.reset();
            control.reset();
        }
    }
    /// Whether `id` answered within `within`.
    pub fn reachable(&self, id: NodeId, within: Duration) -> bool {
        self.last_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .is_some_and(|t| t.elapsed() < within)
    }
}

/// openraft's network factory over the transport.
#[derive(Clone)]
pub struct Network(pub Arc<Peers>);

pub struct PeerLink {
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;
    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerLink {
        PeerLink {
            target,
            addr: node.addr.clone(),
            peers: self.0.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LinkError(String);

impl PeerLink {
    async fn call<T: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        call: RaftCall,
        ttl: Duration,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let Some(client) = self.peers.raft_client() else {
            return Err(RPCError::Unreachable(Unreachable::new(&LinkError(
                "no certificate yet".into(),
            ))));
        };
        // openraft drops the call at its deadline (the heartbeat interval for appends); the
        // call runs in its own task, so a TLS handshake slower than that still completes and
        // leaves its connection for the next message instead of starting over every time.
        let addr = self.addr.clone();
        let task = tokio::spawn(async move {
            client
                .call(&addr, &Request::Raft(call), ttl.max(Duration::from_secs(3)))
                .await
        });
        let result = match tokio::time::timeout(ttl, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(CallError::Io {
                addr: self.addr.clone(),
                error: e.to_string(),
            }),
            Err(_) => Err(CallError::Io {
                addr: self.addr.clone(),
                error: "no answer in time".into(),
            }),
        };
        match result {
            Ok(v) => {
                self.peers
                    .last_ok
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(self.target, Instant::now());
                serde_json::from_value(v)
                    .map_err(|e| RPCError::Network(NetworkError::new(&LinkError(e.to_string()))))
            }
            Err(CallError::Remote(r)) if r.kind == "raft" => {
                match serde_json::from_str::<RaftError<NodeId, E>>(&r.message) {
                    Ok(e) => Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                        self.target,
                        e,
                    ))),
                    Err(e) => Err(RPCError::Network(NetworkError::new(&LinkError(
                        e.to_string(),
                    )))),
                }
            }
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&LinkError(
                e.to_string(),
            )))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RaftCall::Append(rpc), option.hard_ttl()).await
    }
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RaftCall::Snapshot(rpc), option.hard_ttl()).await
    }
    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RaftCall::Vote(rpc), option.hard_ttl()).await
    }
}

fn answer<T: Serialize, E: Serialize>(r: Result<T, E>) -> Answer {
    match r {
        Ok(v) => serde_json::to_value(v).map_err(|e| RemoteError::new("internal", e.to_string())),
        Err(e) => Err(RemoteError::new(
            "raft",
            serde_json::to_string(&e).unwrap_or_default(),
        )),
    }
}

/// A Raft message arriving at this manager.
pub async fn handle_raft(raft: &Raft, call: RaftCall) -> Answer {
    match call {
        RaftCall::Append(r) => answer(raft.append_entries(r).await),
        RaftCall::Vote(r) => answer(raft.vote(r).await),
        RaftCall::Snapshot(r) => answer(raft.install_snapshot(r).await),
    }
}

/// The leader's address, if this manager knows of one other than itself.
pub fn leader_addr(raft: &Raft) -> Option<String> {
    let m = raft.metrics().borrow().clone();
    let leader = m.current_leader?;
    if leader == m.id {
        return None;
    }
    m.membership_config
        .nodes()
        .find(|(id, _)| **id == leader)
        .map(|(_, n)| n.addr.clone())
}

pub fn is_leader(raft: &Raft) -> bool {
    let m = raft.metrics().borrow().clone();
    m.current_leader == Some(m.id)
}

/// The refusal a follower answers calls that only the leader takes; `message` carries the
/// leader's address (empty: none known).
pub fn not_leader(raft: &Raft) -> RemoteError {
    RemoteError::new("not_leader", leader_addr(raft).unwrap_or_default())
}

/// How long a write may wait for a quorum before it is refused.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader's answer to a forwarded write: what applying it answered, and its log index
/// (the follower answers its caller once it applied that far).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    pub outcome: crate::raft::Outcome,
    pub index: u64,
}

/// A write forwarded by a follower.
pub async fn handle_forward(raft: &Raft, cmd: Command) -> Answer {
    if !is_leader(raft) {
        return Err(not_leader(raft));
    }
    match tokio::time::timeout(WRITE_TIMEOUT, raft.client_write(cmd)).await {
        Ok(Ok(resp)) => answer::<_, ()>(Ok(Forwarded {
            outcome: resp.data,
            index: resp.log_id.index,
        })),
        Ok(Err(e)) => Err(RemoteError::new("unavailable", e.to_string())),
        Err(_) => Err(RemoteError::new("unavailable", "no quorum")),
    }
}

/// A membership change, on the leader.
pub async fn handle_membership(raft: &Raft, call: MembershipCall) -> Answer {
    if !is_leader(raft) {
        return Err(not_leader(raft));
    }
    // One membership change at a time: another one in progress (two managers joining at
    // once) is waited out rather than failed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = match &call {
            MembershipCall::Add { raft_id, addr } => {
                match raft
                    .add_learner(*raft_id, BasicNode::new(addr.clone()), true)
                    .await
                {
                    Ok(_) => raft
                        .change_membership(
                            ChangeMembers::AddVoterIds(BTreeSet::from([*raft_id])),
                            false,
                        )
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                }
            }
            MembershipCall::Remove { raft_id } => raft
                .change_membership(
                    ChangeMembers::RemoveVoters(BTreeSet::from([*raft_id])),
                    false,
                )
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline && is_leader(raft) => {
                tracing::debug!(error = %e, "membership change; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(RemoteError::new("unavailable", e.to_string())),
        }
    }
    Ok(Value::Null)
}

/// Calls the leader among `addrs` (following `not_leader` answers), for calls only it takes.
pub async fn call_leader(
    client: &Client,
    addrs: &[String],
    req: &Request,
    timeout: Duration,
) -> Result<Value, CallError> {
    let mut last = None;
    let mut queue: Vec<String> = addrs.to_vec();
    let mut tried = 0;
    while let Some(addr) = queue.first().cloned() {
        queue.remove(0);
        tried += 1;
        if tried > addrs.len() + 3 {
            break;
        }
        match client.call(&addr, req, timeout).await {
            Err(CallError::Remote(r)) if r.kind == "not_leader" => {
                if !r.message.is_empty() {
                    queue.insert(0, r.message.clone());
                }
                last = Some(CallError::Remote(r));
            }
            Err(e @ CallError::Io { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or(CallError::Io {
        addr: String::new(),
        error: "no manager to call".into(),
    }))
}
