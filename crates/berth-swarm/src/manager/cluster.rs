//! The parts of [`Swarm`] that reach other nodes: the manager's listener (CA, joins, the
//! dispatcher) and a worker's join, session and leave.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Active, JoinRequest, LocalNode, RaftProposer, Swarm, SwarmError, WorkerRun};
use crate::Proposer;
use crate::pki::Identity;
use crate::worker::{SessionInfo, Worker};

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
                let id = crate::pki::issue(
                    &cluster.root_ca,
                    &cluster.meta.id,
                    &local.node_id,
                    "manager",
                )?;
                id.save(&self.dir)?;
                id
            }
        };
        let proposer: Arc<dyn Proposer> = Arc::new(RaftProposer {
            raft: active.raft.clone(),
            store: active.store.clone(),
        });
        let service = Arc::new(crate::dispatcher::ManagerService::new(proposer));
        active
            .tasks
            .spawn(service.clone().monitor(active.stop.clone()));
        let tls = crate::transport::server_config(
            &identity.ca_pem,
            &identity.cert_pem,
            &identity.key_pem,
        )?;
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
        let worker = Arc::new(Worker {
            identity,
            addr: local.advertise_addr.clone(),
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
        if guard.is_some() || self.worker.lock().await.is_some() {
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
        let local = LocalNode {
            node_id: resp.identity.node_id.clone(),
            raft_id: 0,
            listen_addr: req.listen_addr,
            advertise_addr: addr,
            role: "worker".into(),
            managers,
        };
        let bytes = serde_json::to_vec_pretty(&local).map_err(anyhow::Error::from)?;
        super::write_durably(&self.dir.join("node.json"), &bytes).map_err(anyhow::Error::from)?;
        self.start_worker(local).await?;
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
