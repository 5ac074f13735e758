//! A node's swarm membership: nothing (not in a swarm) or an active manager with its Raft
//! node, controllers and agent. berthd holds one [`Swarm`]; its state directory
//! (`<data-root>/swarm`) holds `node.json` (who this node is) and `raft.redb` (the log and
//! state machine), so a restarted daemon rejoins its swarm as it left it.

mod cluster;
mod demoted;
mod lock;
mod remote;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::TaskExecutor;
use crate::raft::Raft;
use crate::store::{Command, Op, Store};
use crate::types::{
    Cluster, JoinTokens, ManagerStatus, Meta, Node, NodeSpec, NodeStatus, Object, new_id,
};
use crate::{BoxFuture, ProposeError, Proposer};

/// dockerd's answer to `swarm init` on a node already in a swarm.
pub const ALREADY_IN_SWARM: &str = "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.";
/// swarmkit's error when writes cannot reach a quorum.
pub const NO_LEADER: &str = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";
/// dockerd's refusal to let the last manager leave without `--force`.
pub const LEAVE_LAST_MANAGER: &str = "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.";

/// Who this node is in its swarm; written at init, read at every start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalNode {
    pub node_id: String,
    pub raft_id: u64,
    pub listen_addr: String,
    pub advertise_addr: String,
    /// `manager` or `worker` (swarms made before joins existed have managers only).
    #[serde(default = "manager_role")]
    pub role: String,
    /// A worker's managers, as it last heard of them.
    #[serde(default)]
    pub managers: Vec<String>,
}

fn manager_role() -> String {
    "manager".into()
}

/// What `swarm join` asks for.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub listen_addr: String,
    pub advertise_addr: String,
    pub remote_addrs: Vec<String>,
    pub join_token: String,
}

/// A worker's running session.
struct WorkerRun {
    worker: Arc<crate::worker::Worker>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// What `swarm init` asks for.
#[derive(Debug, Clone, Default)]
pub struct InitRequest {
    pub listen_addr: String,
    pub advertise_addr: String,
    pub spec: Value,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub data_path_port: u32,
}

/// Docker's `/swarm/init` and `/swarm/leave` refusals.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("{ALREADY_IN_SWARM}")]
    AlreadyInSwarm,
    #[error("This node is not part of a swarm")]
    NotInSwarm,
    #[error("{LEAVE_LAST_MANAGER}")]
    LastManager,
    #[error("{0}")]
    Unavailable(String),
    /// A bad token, another CA: the request's fault (dockerd answers 400).
    #[error("{0}")]
    Invalid(String),
    /// A well-formed unlock key that does not open this manager (dockerd answers 401).
    #[error("{0}")]
    WrongKey(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

struct Active {
    local: LocalNode,
    raft: Raft,
    /// The Raft database (redb refuses a second open of the same file in one process).
    db: Arc<crate::raft::Db>,
    peers: Arc<crate::raft_network::Peers>,
    store: Store,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// The daemon's swarm membership.
pub struct Swarm {
    dir: PathBuf,
    executor: Arc<dyn TaskExecutor>,
    /// The node's description (hostname, platform, resources, engine) as the API shows it.
    description: Value,
    active: Mutex<Option<Arc<Active>>>,
    worker: Mutex<Option<WorkerRun>>,
    /// A manager restarted with autolock on, waiting for `swarm unlock` (see `lock.rs`).
    locked: Mutex<Option<LocalNode>>,
    /// Set at daemon shutdown: no more role changes.
    closed: std::sync::atomic::AtomicBool,
}

/// Commits through Raft (on a follower: through the leader) and waits until the entry is
/// applied here.
struct RaftProposer {
    raft: Raft,
    store: Store,
    peers: Arc<crate::raft_network::Peers>,
}

impl Proposer for RaftProposer {
    fn store(&self) -> &Store {
        &self.store
    }
    fn propose(&self, cmd: Command) -> BoxFuture<'_, Result<(), ProposeError>> {
        Box::pin(crate::manager::cluster::propose(
            &self.raft,
            &self.store,
            &self.peers,
            cmd,
        ))
    }
}

/// A handle on an active swarm for the API: reads from the store, writes through Raft.
#[derive(Clone)]
pub struct Handle {
    active: Arc<Active>,
}

impl Handle {
    pub fn store(&self) -> &Store {
        &self.active.store
    }
    pub fn node_id(&self) -> &str {
        &self.active.local.node_id
    }
    pub fn local(&self) -> &LocalNode {
        &self.active.local
    }
    /// The logs of tasks on other nodes, asked of those nodes (none before this manager has
    /// its certificate).
    pub fn remote_logs(&self) -> Option<crate::logs::RemoteTaskLogs> {
        let config = self.active.peers.client()?.config();
        Some(
            self.active
                .store
                .view(|s| crate::logs::RemoteTaskLogs::new(config, &self.active.local.node_id, s)),
        )
    }
    /// Whether a manager (by Raft ID) is in the Raft membership (voter or learner).
    pub fn is_raft_member(&self, raft_id: u64) -> bool {
        let m = self
            .active
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        m.membership().get_node(&raft_id).is_some()
    }

    pub async fn propose(&self, cmd: Command) -> Result<(), ProposeError> {
        self.active.proposer().propose(cmd).await
    }
}

impl Swarm {
    /// Opens the swarm state in `dir`, rejoining the swarm if this node was in one.
    pub async fn open(
        dir: &Path,
        executor: Arc<dyn TaskExecutor>,
        description: Value,
    ) -> anyhow::Result<Swarm> {
        let swarm = Swarm {
            dir: dir.to_path_buf(),
            executor,
            description,
            active: Mutex::new(None),
            worker: Mutex::new(None),
            locked: Mutex::new(None),
            closed: Default::default(),
        };
        let node_file = dir.join("node.json");
        if node_file.exists() {
            let local: LocalNode = serde_json::from_slice(&std::fs::read(&node_file)?)?;
            if local.role == "worker" {
                swarm.start_worker(local).await?;
                return Ok(swarm);
            }
            if crate::pki::Identity::load(dir).is_some_and(|id| id.is_sealed()) {
                *swarm.locked.lock().await = Some(local);
                return Ok(swarm);
            }
            let active = swarm.start(local, false).await?;
            swarm.start_listener(&active).await?;
            // Back up: this node reports itself ready again (it was down while stopped), as
            // soon as the managers have a leader (with several, it may take a while).
            swarm.register_in_background(&active);
            *swarm.active.lock().await = Some(active);
        }
        Ok(swarm)
    }

    pub async fn handle(&self) -> Option<Handle> {
        self.active
            .lock()
            .await
            .clone()
            .map(|active| Handle { active })
    }

    async fn start(&self, local: LocalNode, bootstrap: bool) -> anyhow::Result<Arc<Active>> {
        let key = crate::autolock::manager_data_key(&self.dir)?;
        let db = crate::raft::open_db_with(&self.dir.join("raft.redb"), key)?;
        self.start_on(local, bootstrap, db).await
    }

    async fn start_on(
        &self,
        local: LocalNode,
        bootstrap: bool,
        db: Arc<crate::raft::Db>,
    ) -> anyhow::Result<Arc<Active>> {
        let store = Store::default();
        let peers = Arc::new(crate::raft_network::Peers::default());
        if let Some(id) = crate::pki::Identity::load(&self.dir) {
            peers.set_config(crate::certs::for_dir(&self.dir, &id)?.client_config()?);
        }
        let raft = crate::raft::start_with(
            db.clone(),
            store.clone(),
            local.raft_id,
            &local.advertise_addr,
            bootstrap,
            crate::raft_network::Network(peers.clone()),
        )
        .await?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let proposer: Arc<dyn Proposer> = Arc::new(RaftProposer {
            raft: raft.clone(),
            store: store.clone(),
            peers: peers.clone(),
        });
        // The controllers run on the leader only (see `cluster::lead`).
        tasks.spawn(crate::agent::run(
            local.node_id.clone(),
            proposer,
            self.executor.clone(),
            stop.clone(),
        ));
        tasks.spawn(crate::autolock::follow(
            self.dir.clone(),
            store.clone(),
            stop.clone(),
        ));
        Ok(Arc::new(Active {
            local,
            raft,
            db,
            peers,
            store,
            stop,
            tasks,
        }))
    }

    /// Writes this node's object: ready, and leader of its one-manager cluster.
    async fn register_self(&self, active: &Arc<Active>) -> anyhow::Result<()> {
        register_node(active, &self.description).await
    }

    fn register_in_background(&self, active: &Arc<Active>) {
        let (a, description) = (active.clone(), self.description.clone());
        active.tasks.spawn(async move {
            while let Err(e) = register_node(&a, &description).await {
                tracing::debug!(error = %e, "registering this manager; retrying");
                tokio::select! {
                    _ = a.stop.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                }
            }
        });
    }
}

impl Active {
    fn proposer(&self) -> RaftProposer {
        RaftProposer {
            raft: self.raft.clone(),
            store: self.store.clone(),
            peers: self.peers.clone(),
        }
    }
}

/// Writes a manager's node object: ready, reachable, leader or not.
async fn register_node(active: &Arc<Active>, description: &Value) -> anyhow::Result<()> {
    {
        let local = &active.local;
        let existing = active
            .store
            .view(|s| s.nodes.get(&local.node_id).map(|n| Node::clone(n)));
        let mut node = existing.clone().unwrap_or_else(|| Node {
            meta: Meta::new(local.node_id.clone()),
            spec: NodeSpec {
                role: "manager".into(),
                availability: "active".into(),
                ..Default::default()
            },
            ..Default::default()
        });
        node.description = description.clone();
        node.status = NodeStatus {
            state: "ready".into(),
            message: String::new(),
            addr: host_of(&local.advertise_addr),
            ..Default::default()
        };
        node.manager_status = Some(ManagerStatus {
            leader: crate::raft_network::is_leader(&active.raft),
            reachability: "reachable".into(),
            addr: local.advertise_addr.clone(),
            raft_id: local.raft_id,
        });
        node.meta.updated_at = crate::types::now();
        let op = match existing {
            Some(_) => Op::Update {
                object: Object::Node(node),
                expect: None,
            },
            None => Op::Create(Object::Node(node)),
        };
        Handle {
            active: active.clone(),
        }
        .propose(Command::one(op))
        .await
        .map_err(|e| anyhow::anyhow!("registering this node: {e}"))
    }
}

impl Swarm {
    /// `swarm init`: a new cluster with this node as its only manager. Answers the node id.
    pub async fn init(&self, req: InitRequest) -> Result<String, SwarmError> {
        let mut guard = self.active.lock().await;
        if guard.is_some()
            || self.worker.lock().await.is_some()
            || self.locked.lock().await.is_some()
        {
            return Err(SwarmError::AlreadyInSwarm);
        }
        crate::autolock::remember(&self.dir, None);
        // Leftovers of a failed init or leave must not be taken for this cluster's state.
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).map_err(anyhow::Error::from)?;
        let local = LocalNode {
            node_id: new_id(),
            raft_id: 1,
            listen_addr: req.listen_addr.clone(),
            advertise_addr: req.advertise_addr.clone(),
            role: manager_role(),
            managers: Vec::new(),
        };
        let ca = crate::ca::new_root_ca()?;
        let cluster_id = new_id();
        // `--autolock`: the node's key is sealed from its first write on.
        let mut unlock_key = String::new();
        if req.spec["EncryptionConfig"]["AutoLockManagers"] == true {
            unlock_key = crate::autolock::new_key();
            let bytes = crate::autolock::parse_key(&unlock_key).map_err(anyhow::Error::msg)?;
            crate::autolock::remember(&self.dir, Some(bytes));
        }
        crate::pki::issue_with_expiry(
            &ca,
            &cluster_id,
            &local.node_id,
            "manager",
            crate::pki::cert_expiry(&req.spec),
        )?
        .save(&self.dir)?;
        let active = self.start(local.clone(), true).await?;
        let cluster = Cluster {
            meta: Meta::new(cluster_id),
            spec: req.spec,
            join_tokens: JoinTokens {
                worker: crate::ca::join_token(&ca),
                manager: crate::ca::join_token(&ca),
            },
            root_ca: ca,
            default_addr_pool: req.default_addr_pool,
            subnet_size: req.subnet_size,
            data_path_port: req.data_path_port,
            unlock_key,
            ..Default::default()
        };
        let handle = Handle {
            active: active.clone(),
        };
        let mut ops = vec![Op::Create(Object::Cluster(cluster.clone()))];
        // The routing mesh's network, as `swarm init` makes it (`crate::allocator`).
        let mut scratch = crate::store::State::default();
        scratch.put_object(Object::Cluster(cluster));
        match crate::allocator::ingress_network(&scratch) {
            Ok(ingress) => ops.push(Op::Create(Object::Network(ingress))),
            Err(e) => tracing::warn!(error = %e, "no ingress network"),
        }
        let created = handle.propose(Command { ops }).await;
        let registered = match created {
            Ok(()) => self.register_self(&active).await.map_err(SwarmError::Other),
            Err(e) => Err(SwarmError::Unavailable(e.to_string())),
        };
        let registered = match registered {
            Ok(()) => self
                .start_listener(&active)
                .await
                .map_err(SwarmError::Other),
            Err(e) => Err(e),
        };
        if let Err(e) = registered {
            stop(&active).await;
            let _ = std::fs::remove_dir_all(&self.dir);
            return Err(e);
        }
        // Written last: a node.json means the swarm's state is complete.
        let bytes = serde_json::to_vec_pretty(&local).map_err(anyhow::Error::from)?;
        write_durably(&self.dir.join("node.json"), &bytes).map_err(anyhow::Error::from)?;
        *guard = Some(active);
        Ok(local.node_id)
    }

    /// `swarm leave`: a manager leaves only with `force` (it is the last one); its tasks'
    /// containers and the swarm's state go.
    pub async fn leave(&self, force: bool) -> Result<(), SwarmError> {
        let mut guard = self.active.lock().await;
        let Some(active) = guard.clone() else {
            if self.locked.lock().await.is_some() {
                return self.leave_locked(force).await;
            }
            return self.leave_worker().await;
        };
        if !force {
            return Err(self.manager_leave_refusal(&active));
        }
        self.leave_raft(&active).await;
        stop(&active).await;
        crate::agent::remove_all(self.executor.as_ref()).await;
        *guard = None;
        crate::autolock::remember(&self.dir, None);
        std::fs::remove_dir_all(&self.dir).map_err(anyhow::Error::from)?;
        Ok(())
    }

    /// Daemon shutdown: loops end, Raft stops; containers and state stay.
    pub async fn shutdown(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(active) = self.active.lock().await.take() {
            stop(&active).await;
        }
        if let Some(w) = self.worker.lock().await.take() {
            w.stop.cancel();
            w.tasks.close();
            w.tasks.wait().await;
        }
    }
}

async fn stop(active: &Active) {
    active.stop.cancel();
    active.tasks.close();
    active.tasks.wait().await;
    if let Err(e) = active.raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
}

pub fn host_of(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            host.trim_matches(['[', ']']).to_string()
        }
        _ => addr.to_string(),
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The cluster spec dockerd fills in at init when the request leaves fields out.
pub fn default_cluster_spec(given: &Value) -> Value {
    let mut spec = json!({
        "Name": "default",
        "Labels": {},
        "Orchestration": {"TaskHistoryRetentionLimit": 5},
        "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500, "ElectionTick": 10, "HeartbeatTick": 1},
        "Dispatcher": {"HeartbeatPeriod": 5_000_000_000u64},
        "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000u64},
        "TaskDefaults": {},
        "EncryptionConfig": {"AutoLockManagers": false},
    });
    if let (Some(out), Some(given)) = (spec.as_object_mut(), given.as_object()) {
        for (k, v) in given {
            let empty = v.is_null()
                || v.as_object().is_some_and(|o| o.is_empty())
                || (k == "Name" && v == "");
            if !empty {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    spec
}
