//! The cluster's objects, serialized in the Engine API's shape (`/services`, `/tasks`, ...) so
//! that the API serves them as stored. Specs the clients send are kept as JSON values: the
//! docker CLI sends many fields Berth does not act on yet, and they must read back unchanged.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An object's version: the Raft log index of the entry that last changed it. Updates name
/// the version they were based on, and are refused when it moved on (Docker's
/// "update out of sequence").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    #[serde(rename = "Index")]
    pub index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Meta {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: Version,
    pub created_at: String,
    pub updated_at: String,
}

impl Meta {
    pub fn new(id: String) -> Meta {
        let now = now();
        Meta {
            id,
            version: Version::default(),
            created_at: now.clone(),
            updated_at: now,
        }
    }
}

/// RFC 3339 with nanoseconds, as Docker prints object times.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A swarm object id: 25 lowercase base-36 characters, as swarmkit's `identity.NewID`.
pub fn new_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..25)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

/// The cluster's root of trust. The key never leaves the managers' store; the API shows only
/// the certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootCa {
    pub cert_pem: String,
    pub key_pem: String,
    /// `sha256:<hex>` of the certificate's DER, the digest join tokens carry.
    pub digest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cluster {
    #[serde(flatten)]
    pub meta: Meta,
    pub spec: Value,
    pub join_tokens: JoinTokens,
    #[serde(rename = "BerthRootCA")]
    pub root_ca: RootCa,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub data_path_port: u32,
    /// The autolock unlock key (`SWMKEY-1-…`), empty when none; never shown by `GET /swarm`.
    #[serde(default, rename = "BerthUnlockKey")]
    pub unlock_key: String,
    /// A root CA rotation in progress (`swarm ca --rotate`; see `crate::rotation`).
    #[serde(
        default,
        rename = "BerthRootRotation",
        skip_serializing_if = "Option::is_none"
    )]
    pub root_rotation: Option<RootRotation>,
    /// The `CAConfig.ForceRotate` value the current root (or rotation) answers.
    #[serde(default, rename = "BerthLastForcedRotation")]
    pub last_forced_rotation: u64,
}

/// The root a rotation moves to, and its certificate cross-signed by the current root (sent
/// with every node certificate the new root issues, so nodes that still trust only the
/// current root accept them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootRotation {
    pub ca: RootCa,
    pub cross_signed_pem: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeSpec {
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub availability: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeStatus {
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub addr: String,
    /// Where a worker takes managers' task log calls (`host:port`; not shown by Docker,
    /// Berth's own bookkeeping as `BerthRaftID`).
    #[serde(
        rename = "BerthLogsAddr",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub logs_addr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagerStatus {
    pub leader: bool,
    pub reachability: String,
    pub addr: String,
    /// The node's id in the Raft group (not shown by Docker; Berth's own bookkeeping).
    #[serde(rename = "BerthRaftID", default)]
    pub raft_id: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(flatten)]
    pub meta: Meta,
    pub spec: NodeSpec,
    /// Hostname, platform, resources and engine, as the node reported them.
    pub description: Value,
    pub status: NodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<ManagerStatus>,
}

impl Node {
    pub fn hostname(&self) -> &str {
        self.description["Hostname"].as_str().unwrap_or_default()
    }
    /// Ready and active: the scheduler may put new tasks here.
    pub fn schedulable(&self) -> bool {
        self.status.state == "ready" && self.spec.availability == "active"
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(flatten)]
    pub meta: Meta,
    pub spec: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<Value>,
    #[serde(default)]
    pub endpoint: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<Value>,
    /// Jobs only: `JobIteration` (bumped by every update, which reruns the job) and
    /// `LastExecution`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status: Option<Value>,
    /// The `X-Registry-Auth` of the last create or update that sent one (`--with-registry-auth`),
    /// kept for the nodes to pull the image with, as dockerd keeps it in the spec's
    /// `PullOptions`. The API never shows it ([`Service::public`]).
    #[serde(
        rename = "BerthRegistryAuth",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub registry_auth: Option<String>,
}

/// How a service runs its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replicated(u64),
    Global,
    /// Runs tasks to completion: at most `max_concurrent` at once until `total` completed.
    ReplicatedJob {
        max_concurrent: u64,
        total: u64,
    },
    /// One task to completion on every eligible node.
    GlobalJob,
}

impl Mode {
    pub fn is_job(self) -> bool {
        matches!(self, Mode::ReplicatedJob { .. } | Mode::GlobalJob)
    }
    /// The name the API's `mode` filter uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Replicated(_) => "replicated",
            Mode::Global => "global",
            Mode::ReplicatedJob { .. } => "replicated-job",
            Mode::GlobalJob => "global-job",
        }
    }
}

impl Service {
    pub fn name(&self) -> &str {
        self.spec["Name"].as_str().unwrap_or_default()
    }
    pub fn mode(&self) -> Mode {
        let mode = &self.spec["Mode"];
        if mode.get("Global").is_some() {
            Mode::Global
        } else if mode.get("GlobalJob").is_some() {
            Mode::GlobalJob
        } else if let Some(job) = mode.get("ReplicatedJob") {
            Mode::ReplicatedJob {
                max_concurrent: job["MaxConcurrent"].as_u64().unwrap_or(1),
                total: job["TotalCompletions"].as_u64().unwrap_or(1),
            }
        } else {
            Mode::Replicated(mode["Replicated"]["Replicas"].as_u64().unwrap_or(1))
        }
    }
    pub fn task_template(&self) -> &Value {
        &self.spec["TaskTemplate"]
    }
    /// The service as the API shows it: without the registry credentials.
    pub fn public(&self) -> Service {
        Service {
            registry_auth: None,
            ..self.clone()
        }
    }
    /// The job's current iteration (0 for services that are not jobs).
    pub fn job_iteration(&self) -> u64 {
        self.job_status
            .as_ref()
            .and_then(|j| j["JobIteration"]["Index"].as_u64())
            .unwrap_or(0)
    }
}

/// A task's life, in swarmkit's order: a task only moves forward.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    /// Past running: the task's container is gone or exited for good.
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerStatus {
    #[serde(rename = "ContainerID", default)]
    pub container_id: String,
    #[serde(rename = "PID", default)]
    pub pid: i64,
    #[serde(default)]
    pub exit_code: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    pub timestamp: String,
    pub state: TaskState,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub err: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    /// `{"Ports": [...]}`: the host-mode ports the task's container published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_status: Option<Value>,
}

impl TaskStatus {
    pub fn new(state: TaskState, message: &str) -> TaskStatus {
        TaskStatus {
            timestamp: now(),
            state,
            message: message.to_string(),
            err: String::new(),
            container_status: None,
            port_status: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The service's task template when the task was made: a task whose spec differs from
    /// its service's is outdated and is replaced by a rolling update. Shared: the store gives
    /// every task made from its service's current template the same tree (see
    /// `store::State::put_object`), not one copy per task.
    pub spec: std::sync::Arc<Value>,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// 1-based for replicated services; 0 for global ones (which are keyed by node).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slot: u64,
    #[serde(rename = "NodeID", default, skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    pub status: TaskStatus,
    pub desired_state: TaskState,
    /// Jobs only: the service's `JobIteration` the task runs for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_iteration: Option<Version>,
    /// The task's addresses on its networks (`crate::allocator`), in the API's shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks_attachments: Vec<Value>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Secret {
    #[serde(flatten)]
    pub meta: Meta,
    /// `Name`, `Labels`, `Data` (base64, as the API carries it), `Driver`, `Templating`.
    pub spec: Value,
}

impl Secret {
    pub fn name(&self) -> &str {
        self.spec["Name"].as_str().unwrap_or_default()
    }
}

/// A swarm-scoped network (`network create -d overlay` on a manager, and `ingress`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    #[serde(flatten)]
    pub meta: Meta,
    /// swarmkit's NetworkSpec: `Name`, `Labels`, `DriverConfiguration`, `Internal`,
    /// `Attachable`, `Ingress`, `IPAMOptions`, `Encrypted` (from `--opt encrypted`).
    pub spec: Value,
    /// What the allocator chose: the VXLAN id, subnets and gateways (see `crate::allocator`).
    #[serde(default)]
    pub driver_state: crate::allocator::NetworkAlloc,
}

impl Network {
    pub fn name(&self) -> &str {
        self.spec["Name"].as_str().unwrap_or_default()
    }
    pub fn ingress(&self) -> bool {
        self.spec["Ingress"] == true
    }
}

/// The kinds of objects in the store; `Secret` and `Config` share a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
pub enum Kind {
    Cluster,
    Node,
    Service,
    Task,
    Secret,
    Config,
    Network,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Secret => "secret",
            Kind::Config => "config",
            Kind::Network => "network",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Object {
    Cluster(Cluster),
    Node(Node),
    Service(Service),
    Task(Task),
    Secret(Secret),
    Config(Secret),
    Network(Network),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Cluster(_) => Kind::Cluster,
            Object::Node(_) => Kind::Node,
            Object::Service(_) => Kind::Service,
            Object::Task(_) => Kind::Task,
            Object::Secret(_) => Kind::Secret,
            Object::Config(_) => Kind::Config,
            Object::Network(_) => Kind::Network,
        }
    }
    pub fn meta(&self) -> &Meta {
        match self {
            Object::Cluster(o) => &o.meta,
            Object::Node(o) => &o.meta,
            Object::Service(o) => &o.meta,
            Object::Task(o) => &o.meta,
            Object::Secret(o) | Object::Config(o) => &o.meta,
            Object::Network(o) => &o.meta,
        }
    }
    pub fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Object::Cluster(o) => &mut o.meta,
            Object::Node(o) => &mut o.meta,
            Object::Service(o) => &mut o.meta,
            Object::Task(o) => &mut o.meta,
            Object::Secret(o) | Object::Config(o) => &mut o.meta,
            Object::Network(o) => &mut o.meta,
        }
    }
    /// The unique name of named kinds (services, secrets, configs).
    pub fn unique_name(&self) -> Option<&str> {
        match self {
            Object::Service(s) => Some(s.name()),
            Object::Secret(s) | Object::Config(s) => Some(s.name()),
            Object::Network(n) => Some(n.name()),
            _ => None,
        }
    }
}
