//! The parts of [`Swarm`] that reach other nodes: the manager's listener (CA, joins, the
//! dispatcher) and a worker's join, session and leave.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::time::{Duration, Instant};

use super::{Active, JoinRequest, LocalNode, NO_LEADER, Swarm, SwarmError, WorkerRun};
use crate::pki::Identity;
use crate::raft::Raft;
use crate::raft_network::{Forwarded, MembershipCall, Peers, WRITE_TIMEOUT};
use crate::store::{Command, Op, Store};
use crate::transport::{CallError, Request};
use crate::types::Object;
use crate::worker::{SessionInfo, Worker};
use crate::{ProposeError, Proposer};

/// What `/info` shows of a worker.
pub struct WorkerInfo {
    pub node_id: String,
    pub addr: String,
    pub session: SessionInfo,
}

impl Swarm {
    /// A manager's identity (issued from the cluster's CA the first time), its listener on
    /// `ListenAddr` and the heartbeat monitor.
    pub(super) async fn start_listener(&self, active: &Arc<Active>) -> anyhow::Result<()> {
        let local = &active.local;
        let identity = match Identity::load(&self.dir) {
            Some(id) => id,
            None => {
                let Some(cluster) = active.store.view(|s| s.cluster().cloned()) else {
                    anyhow::bail!("the swarm has no cluster object");
                };
                let id = crate::pki::issue_for(&cluster, &local.node_id, "manager")?;
                id.save(&self.dir)?;
                id
            }
        };
        let live = crate::certs::for_dir(&self.dir, &identity)?;
        if !active.peers.has_config() {
            active.peers.set_config(live.client_config()?);
        }
        let proposer: Arc<dyn Proposer> = Arc::new(active.proposer());
        let service = Arc::new(
            crate::dispatcher::ManagerService::new(proposer.clone(), active.raft.clone())
                .with_logs(self.executor.task_logs()),
        );
        active.tasks.spawn(lead(
            active.clone(),
            proposer,
            service.clone(),
            active.stop.clone(),
        ));
        // Renewal, the cluster's root, and this manager's TLSInfo (`crate::rotation`).
        active.tasks.spawn(crate::rotation::follow(
            self.dir.clone(),
            local.node_id.clone(),
            Arc::new(active.proposer()),
            active.peers.clone(),
            active.stop.clone(),
        ));
        let tls = live.server_config()?;
        // A listen address another daemon on this host holds (tests run several one-manager
        // swarms side by side) leaves the swarm without remote nodes, not without a manager.
        match tokio::net::TcpListener::bind(&local.listen_addr).await {
            Ok(listener) => {
                tracing::info!(addr = %local.listen_addr, "swarm listener");
                active.tasks.spawn(crate::transport::serve(
                    listener,
                    tls,
                    service,
                    active.stop.clone(),
                ));
            }
            Err(e) => tracing::warn!(
                addr = %local.listen_addr,
                error = %e,
                "cannot listen for other swarm nodes; this swarm cannot be joined"
            ),
        }
        Ok(())
    }

    pub(super) async fn start_worker(&self, local: LocalNode) -> anyhow::Result<()> {
        let Some(identity) = Identity::load(&self.dir) else {
            anyhow::bail!(
                "the worker's certificate is missing from {}",
                self.dir.display()
            );
        };
        let tls = crate::certs::for_dir(&self.dir, &identity)?;
        let worker = Arc::new(Worker {
            identity,
            tls,
            dir: self.dir.clone(),
            addr: local.advertise_addr.clone(),
            manager_addr: format!(
                "{}:{}",
                crate::manager::host_of(&local.advertise_addr),
                listen_port(&local.listen_addr)
            ),
            info: Arc::new(Mutex::new(SessionInfo {
                managers: local.managers.clone(),
                ..Default::default()
            })),
        });
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(crate::worker::run(
            worker.clone(),
            self.description.clone(),
            self.executor.clone(),
            stop.clone(),
        ));
        *self.worker.lock().await = Some(WorkerRun {
            worker,
            stop,
            tasks,
        });
        Ok(())
    }

    /// `swarm join`: joins as the token says (workers only so far).
    pub async fn join(&self, req: JoinRequest) -> Result<(), SwarmError> {
        let guard = self.active.lock().await;
        if guard.is_some()
            || self.worker.lock().await.is_some()
            || self.locked.lock().await.is_some()
        {
            return Err(SwarmError::AlreadyInSwarm);
        }
        let Some(remote) = req.remote_addrs.first().cloned() else {
            return Err(SwarmError::Invalid(
                "at least 1 RemoteAddr is required to join".into(),
            ));
        };
        let addr = if req.advertise_addr.is_empty() {
            crate::join::local_addr_towards(&remote).unwrap_or_default()
        } else {
            req.advertise_addr.clone()
        };
        let listen_port = listen_port(&req.listen_addr);
        // A manager is reached at its listen port; `addr` without one gets it.
        let addr = if addr.contains(':') {
            addr
        } else {
            format!("{addr}:{listen_port}")
        };
        let resp = crate::join::join(&remote, &req.join_token, &addr)
            .await
            .map_err(|e| match e {
                crate::join::JoinError::Invalid(m) => SwarmError::Invalid(m),
                crate::join::JoinError::Unavailable(m) => SwarmError::Unavailable(m),
            })?;
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).map_err(anyhow::Error::from)?;
        resp.identity.save(&self.dir)?;
        let mut managers = resp.managers;
        if managers.is_empty() {
            managers.push(remote);
        }
        let role = resp.identity.role.clone();
        let local = LocalNode {
            node_id: resp.identity.node_id.clone(),
            raft_id: resp.raft_id,
            listen_addr: req.listen_addr,
            advertise_addr: addr.clone(),
            role: role.clone(),
            managers: managers.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&local).map_err(anyhow::Error::from)?;
        super::write_durably(&self.dir.join("node.json"), &bytes).map_err(anyhow::Error::from)?;
        if role != "manager" {
            self.start_worker(local).await?;
            return Ok(());
        }
        drop(guard);
        self.join_as_manager(local, managers).await
    }

    /// A new manager: its Raft node (empty) and listener first, then the leader adds it as a
    /// learner, replicates the state to it and makes it a voter.
    async fn join_as_manager(
        &self,
        local: LocalNode,
        managers: Vec<String>,
    ) -> Result<(), SwarmError> {
        let mut guard = self.active.lock().await;
        let active = self.start(local.clone(), false).await?;
        if let Err(e) = self.start_listener(&active).await {
            super::stop(&active).await;
            return Err(SwarmError::Other(e));
        }
        let Some(client) = active.peers.client() else {
            super::stop(&active).await;
            return Err(SwarmError::Other(anyhow::anyhow!("no client certificate")));
        };
        let add = Request::Membership(MembershipCall::Add {
            raft_id: local.raft_id,
            addr: local.advertise_addr.clone(),
        });
        if let Err(e) =
            crate::raft_network::call_leader(&client, &managers, &add, Duration::from_secs(60))
                .await
        {
            super::stop(&active).await;
            let _ = std::fs::remove_dir_all(&self.dir);
            return Err(SwarmError::Unavailable(format!(
                "could not join the managers: {e}"
            )));
        }
        // The state arrives by replication; the node is a manager once it has the cluster.
        let deadline = Instant::now() + Duration::from_secs(30);
        while active.store.view(|s| s.cluster().is_none()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.register_in_background(&active);
        *guard = Some(active);
        Ok(())
    }

    /// `swarm leave` on a worker: its session ends, its task containers and state go.
    pub(super) async fn leave_worker(&self) -> Result<(), SwarmError> {
        let Some(w) = self.worker.lock().await.take() else {
            return Err(SwarmError::NotInSwarm);
        };
        w.stop.cancel();
        w.tasks.close();
        w.tasks.wait().await;
        crate::agent::remove_all(self.executor.as_ref()).await;
        std::fs::remove_dir_all(&self.dir).map_err(anyhow::Error::from)?;
        Ok(())
    }

    /// Docker's refusal to let a manager leave without `--force`, by what it would cost.
    pub(super) fn manager_leave_refusal(&self, active: &Arc<Active>) -> SwarmError {
        let managers: Vec<_> = active.store.view(|s| {
            s.nodes
                .values()
                .filter_map(|n| n.manager_status.clone())
                .collect()
        });
        let total = managers.len();
        let reachable = managers
            .iter()
            .filter(|m| m.reachability == "reachable")
            .count();
        let unreachable = total - reachable;
        if total <= 1 {
            return SwarmError::LastManager;
        }
        let mut msg = String::from(
            "You are attempting to leave the swarm on a node that is participating as a manager. ",
        );
        if reachable < 2 + unreachable {
            msg += &format!(
                "Removing this node leaves {} managers out of {}. Without a Raft quorum your swarm will be inaccessible. ",
                reachable.saturating_sub(1),
                total
            );
        }
        msg += "The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.";
        SwarmError::Unavailable(msg)
    }

    /// A manager leaving with `--force`: out of the Raft membership first (best effort: with
    /// the others unreachable there is no one to tell).
    pub(super) async fn leave_raft(&self, active: &Arc<Active>) {
        let Some(client) = active.peers.client() else {
            return;
        };
        let others: Vec<String> = active.store.view(|s| {
            s.nodes
                .values()
                .filter_map(|n| n.manager_status.as_ref())
                .filter(|m| m.raft_id != active.local.raft_id)
                .map(|m| m.addr.clone())
                .collect()
        });
        if others.is_empty() {
            return;
        }
        let call = MembershipCall::Remove {
            raft_id: active.local.raft_id,
        };
        let result = if crate::raft_network::is_leader(&active.raft) {
            // Without a quorum the change cannot commit: the node leaves anyway.
            tokio::time::timeout(
                Duration::from_secs(10),
                crate::raft_network::handle_membership(&active.raft, call),
            )
            .await
            .map_err(|_| "no quorum to commit the change".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        } else {
            crate::raft_network::call_leader(
                &client,
                &others,
                &Request::Membership(call),
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| e.to_string())
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "leaving the Raft membership");
        }
    }

    /// `swarm init --force-new-cluster` on a manager: Raft restarts with this manager as its
    /// only member and the state it had; the other managers' nodes stay listed, unreachable.
    pub async fn force_new_cluster(&self) -> Result<String, SwarmError> {
        let mut guard = self.active.lock().await;
        let Some(active) = guard.take() else {
            return Err(SwarmError::NotInSwarm);
        };
        let local = active.local.clone();
        let db = active.db.clone();
        super::stop(&active).await;
        drop(active);
        crate::raft::force_new_cluster(&db, local.raft_id, &local.advertise_addr)?;
        let active = self.start_on(local.clone(), false, db).await?;
        self.start_listener(&active).await?;
        self.register_in_background(&active);
        *guard = Some(active);
        Ok(local.node_id)
    }

    /// A worker's state for `/info` (none on managers and outside a swarm).
    pub async fn worker_info(&self) -> Option<WorkerInfo> {
        let guard = self.worker.lock().await;
        let w = &guard.as_ref()?.worker;
        Some(WorkerInfo {
            node_id: w.identity.node_id.clone(),
            addr: crate::manager::host_of(&w.addr),
            session: w.info.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }
}

/// Commits `cmd`: through Raft here when this manager leads, else forwarded to the leader;
/// answers once the entry is applied here. Without a leader for [`WRITE_TIMEOUT`], swarmkit's
/// "no leader" text, naming the managers this one cannot reach (moby#26491).
pub(super) async fn propose(
    raft: &Raft,
    store: &Store,
    peers: &Peers,
    cmd: Command,
) -> Result<(), ProposeError> {
    use openraft::error::{ClientWriteError, RaftError};
    let deadline = Instant::now() + WRITE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let leader_addr = match tokio::time::timeout(left, raft.client_write(cmd.clone())).await {
            Ok(Ok(resp)) => return Ok(resp.data.0?),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                f.leader_node.map(|n| n.addr)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "raft write failed");
                None
            }
            Err(_) => None,
        };
        if let (Some(addr), Some(client)) = (leader_addr, peers.client()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match crate::transport::call_as::<Forwarded>(
                &client,
                &addr,
                &Request::Forward(cmd.clone()),
                left.max(Duration::from_millis(100)),
            )
            .await
            {
                Ok(f) => {
                    // Answer once this manager applied it too (reads are local).
                    let mut watch = store.watch();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        watch.wait_for(|i| *i >= f.index),
                    )
                    .await;
                    return Ok(f.outcome.0?);
                }
                Err(CallError::Remote(r)) if r.kind != "not_leader" && r.kind != "unavailable" => {
                    return Err(ProposeError::Unavailable(r.message));
                }
                Err(e) => tracing::debug!(error = %e, "forwarding a write"),
            }
        }
        if Instant::now() >= deadline {
            return Err(ProposeError::Unavailable(no_leader_text(
                raft, store, peers,
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// swarmkit's text, and which managers this one is waiting for.
fn no_leader_text(raft: &Raft, store: &Store, peers: &Peers) -> String {
    let me = raft.metrics().borrow().id;
    let waiting: Vec<String> = store.view(|s| {
        s.nodes
            .values()
            .filter_map(|n| n.manager_status.as_ref())
            .filter(|m| m.raft_id != me && !peers.reachable(m.raft_id, Duration::from_secs(3)))
            .map(|m| m.addr.clone())
            .collect()
    });
    if waiting.is_empty() {
        NO_LEADER.to_string()
    } else {
        format!("{NO_LEADER} Unreachable managers: {}.", waiting.join(", "))
    }
}

/// While this manager leads: the controllers, the heartbeat monitor, and the managers'
/// status (leader, reachability) in their node objects. Followers run none of them.
async fn lead(
    active: Arc<Active>,
    proposer: Arc<dyn Proposer>,
    service: Arc<crate::dispatcher::ManagerService>,
    stop: CancellationToken,
) {
    let mut metrics = active.raft.metrics();
    let mut leading: Option<CancellationToken> = None;
    loop {
        let leader = crate::raft_network::is_leader(&active.raft);
        match (&leading, leader) {
            (None, true) => {
                tracing::info!(node = %active.local.node_id, "this manager leads the swarm");
                let token = stop.child_token();
                active
                    .tasks
                    .spawn(crate::controllers::run(proposer.clone(), token.clone()));
                active.tasks.spawn(service.clone().monitor(token.clone()));
                leading = Some(token);
            }
            (Some(token), false) => {
                token.cancel();
                leading = None;
            }
            _ => {}
        }
        if leader {
            crate::rotation::finish_if_converged(&active.store, proposer.as_ref()).await;
            reconcile_roles(&active, proposer.as_ref(), &service).await;
            update_manager_status(&active, proposer.as_ref()).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The leader writes each manager's reachability (answered Raft calls in the last 2 s) and
/// leadership; an unreachable manager's node is down, so its tasks move.
async fn update_manager_status(active: &Active, proposer: &dyn Proposer) {
    let me = active.local.raft_id;
    let membership = active.raft.metrics().borrow().membership_config.clone();
    let voters: Vec<u64> = membership.membership().voter_ids().collect();
    let members: Vec<u64> = membership.membership().nodes().map(|(id, _)| *id).collect();
    let nodes: Vec<crate::types::Node> = active.store.view(|s| {
        s.nodes
            .values()
            .filter(|n| n.manager_status.is_some())
            .map(|n| crate::types::Node::clone(n))
            .collect()
    });
    for mut node in nodes {
        let Some(ms) = node.manager_status.clone() else {
            continue;
        };
        // A learner still catching up, or a manager not yet added (joining, promoted), is
        // left alone; a manager out of the membership (it left) is unreachable for good.
        if (members.contains(&ms.raft_id) && !voters.contains(&ms.raft_id))
            || (ms.reachability == "unknown" && !members.contains(&ms.raft_id))
            || ms.reachability == DEMOTING
        {
            continue;
        }
        let reachable = voters.contains(&ms.raft_id)
            && (ms.raft_id == me || active.peers.reachable(ms.raft_id, Duration::from_secs(2)));
        let reachability = if reachable {
            "reachable"
        } else {
            "unreachable"
        };
        let state = if reachable { "ready" } else { "down" };
        let leader = ms.raft_id == me;
        if ms.reachability == reachability && ms.leader == leader && node.status.state == state {
            continue;
        }
        if let Some(m) = node.manager_status.as_mut() {
            m.reachability = reachability.into();
            m.leader = leader;
        }
        node.status.state = state.into();
        node.meta.updated_at = crate::types::now();
        let expect = Some(node.meta.version.index);
        let _ = proposer
            .propose(Command::one(Op::Update {
                object: Object::Node(node),
                expect,
            }))
            .await;
    }
}

fn listen_port(listen_addr: &str) -> String {
    listen_addr
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| "2377".into())
}

/// A manager's reachability while it is being demoted: its node learns it from its own
/// store (replicated before it leaves the membership), the leader then takes it out.
pub(super) const DEMOTING: &str = "demoting";

/// On the leader, node roles follow their specs: a manager whose spec says worker is marked
/// demoting, then taken out of the Raft membership, then loses its manager status.
async fn reconcile_roles(
    active: &Active,
    proposer: &dyn Proposer,
    service: &crate::dispatcher::ManagerService,
) {
    let members: Vec<u64> = active
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect();
    let demoted: Vec<crate::types::Node> = active.store.view(|s| {
        s.nodes
            .values()
            .filter(|n| n.spec.role == "worker" && n.manager_status.is_some())
            .map(|n| crate::types::Node::clone(n))
            .collect()
    });
    for mut node in demoted {
        let Some(ms) = node.manager_status.clone() else {
            continue;
        };
        let expect = Some(node.meta.version.index);
        if ms.reachability != DEMOTING {
            if let Some(m) = node.manager_status.as_mut() {
                m.reachability = DEMOTING.into();
                m.leader = false;
            }
        } else if members.contains(&ms.raft_id) {
            // Give the node a moment to see it is demoting, then out of the membership.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let call = MembershipCall::Remove {
                raft_id: ms.raft_id,
            };
            if let Err(e) = crate::raft_network::handle_membership(&active.raft, call).await {
                tracing::warn!(node = %node.meta.id, error = %e, "demoting a manager");
            }
            continue;
        } else {
            node.manager_status = None;
            service.touch(&node.meta.id);
        }
        node.meta.updated_at = crate::types::now();
        let _ = proposer
            .propose(Command::one(Op::Update {
                object: Object::Node(node),
                expect,
            }))
            .await;
    }
}

impl Swarm {
    /// Follows this node's role as the cluster decides it (`node promote`, `node demote`):
    /// a demoted manager becomes a worker, a promoted worker a manager. Runs until the daemon
    /// shuts down.
    pub fn watch_role(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            // Since when this manager has had no leader (see `demoted.rs`).
            let mut leaderless = None;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(swarm) = weak.upgrade() else {
                    return;
                };
                if swarm.closed.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = swarm.follow_role(&mut leaderless).await {
                    tracing::warn!(error = %e, "changing this node's swarm role");
                }
            }
        });
    }

    async fn follow_role(&self, leaderless: &mut Option<Instant>) -> anyhow::Result<()> {
        let active = self.active.lock().await.clone();
        if let Some(a) = active {
            let me = a.store.view(|s| s.nodes.get(&a.local.node_id).cloned());
            let demoting = me.as_ref().is_some_and(|n| {
                n.spec.role == "worker"
                    && n.manager_status
                        .as_ref()
                        .is_none_or(|m| m.reachability == DEMOTING)
            });
            if demoting {
                return self.become_worker(&a).await;
            }
            if super::demoted::missed(&a, leaderless).await {
                tracing::info!(node = %a.local.node_id, "demoted while out of reach");
                return self.become_worker(&a).await;
            }
            return Ok(());
        }
        let promotion = {
            let guard = self.worker.lock().await;
            let Some(w) = guard.as_ref() else {
                return Ok(());
            };
            w.worker
                .info
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .promotion
                .take()
        };
        if let Some(p) = promotion {
            self.become_manager(p).await?;
        }
        Ok(())
    }

    /// A demoted manager: a worker certificate from the CA it holds, Raft stopped and its
    /// data removed, a worker session started. Its task containers stay (still its tasks).
    async fn become_worker(&self, a: &Arc<Active>) -> anyhow::Result<()> {
        let Some(cluster) = a.store.view(|s| s.cluster().cloned()) else {
            anyhow::bail!("no cluster object");
        };
        let me = a.local.raft_id;
        let managers: Vec<String> = a.store.view(|s| {
            s.nodes
                .values()
                .filter_map(|n| n.manager_status.as_ref())
                .filter(|m| m.raft_id != me && m.reachability != DEMOTING)
                .map(|m| m.addr.clone())
                .collect()
        });
        let identity = crate::pki::issue_for(&cluster, &a.local.node_id, "worker")?;
        let mut guard = self.active.lock().await;
        tracing::info!(node = %a.local.node_id, "demoted: this node is now a worker");
        super::stop(a).await;
        *guard = None;
        drop(guard);
        let _ = std::fs::remove_file(self.dir.join("raft.redb"));
        // Workers are never locked: their key is stored plain.
        crate::autolock::remember(&self.dir, None);
        crate::certs::install(&self.dir, &identity)?;
        let local = LocalNode {
            role: "worker".into(),
            raft_id: 0,
            managers,
            ..a.local.clone()
        };
        let bytes = serde_json::to_vec_pretty(&local)?;
        super::write_durably(&self.dir.join("node.json"), &bytes)?;
        self.start_worker(local).await
    }

    /// A promoted worker: its session ended with a manager certificate and a Raft ID; it
    /// joins the managers as a joining manager does.
    async fn become_manager(&self, p: crate::join::JoinResponse) -> anyhow::Result<()> {
        let run = self.worker.lock().await.take();
        let Some(run) = run else {
            return Ok(());
        };
        run.stop.cancel();
        run.tasks.close();
        run.tasks.wait().await;
        tracing::info!(node = %p.identity.node_id, "promoted: this node is now a manager");
        let _ = std::fs::remove_file(self.dir.join("raft.redb"));
        crate::certs::install(&self.dir, &p.identity)?;
        let local = LocalNode {
            node_id: p.identity.node_id.clone(),
            raft_id: p.raft_id,
            listen_addr: format!("0.0.0.0:{}", listen_port(&run.worker.manager_addr)),
            advertise_addr: run.worker.manager_addr.clone(),
            role: "manager".into(),
            managers: p.managers.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&local)?;
        super::write_durably(&self.dir.join("node.json"), &bytes)?;
        self.join_as_manager(local, p.managers)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}
