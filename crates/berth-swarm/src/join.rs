//! Joining a swarm: the manager's side (a join token buys a node object and a certificate)
//! and the joining node's (fetch the CA, check it against the token, ask for a certificate).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Proposer;
use crate::pki::Identity;
use crate::store::{Command, Op};
use crate::transport::{Answer, CallError, Client, RemoteError, Request};
use crate::types::{Meta, Node, NodeSpec, NodeStatus, Object, new_id};

/// swarmkit's refusal of a token that is neither the worker's nor the manager's.
pub const BAD_TOKEN: &str =
    "rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    /// The joining node's address as others should reach it.
    pub addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub identity: Identity,
    pub managers: Vec<String>,
    /// A manager's Raft ID (0 for workers).
    #[serde(default)]
    pub raft_id: u64,
}

/// On a manager: checks the token, creates the node (role from the token) and issues its
/// certificate.
pub async fn handle(proposer: &dyn Proposer, req: JoinRequest) -> Answer {
    let Some(cluster) = proposer.store().view(|s| s.cluster().cloned()) else {
        return Err(RemoteError::new("unavailable", "no cluster yet"));
    };
    // Compared without an early exit, as swarmkit's `subtle.ConstantTimeCompare`.
    let same = |a: &str, b: &str| {
        a.len() == b.len()
            && a.bytes()
                .zip(b.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    };
    let role = if same(&req.token, &cluster.join_tokens.manager) {
        "manager"
    } else if same(&req.token, &cluster.join_tokens.worker) {
        "worker"
    } else {
        return Err(RemoteError::new("invalid", BAD_TOKEN));
    };
    let node_id = new_id();
    // Random, so that two managers joining at once through different managers cannot clash.
    let raft_id = if role == "manager" {
        rand::random::<u64>() >> 1 | 1
    } else {
        0
    };
    let identity = crate::pki::issue_for(&cluster, &node_id, role)
        .map_err(|e| RemoteError::new("internal", format!("issuing a certificate: {e:#}")))?;
    let node = Node {
        meta: Meta::new(node_id.clone()),
        spec: NodeSpec {
            role: role.into(),
            availability: "active".into(),
            ..Default::default()
        },
        status: NodeStatus {
            state: "unknown".into(),
            message: String::new(),
            addr: crate::manager::host_of(&req.addr),
            ..Default::default()
        },
        manager_status: (role == "manager").then(|| crate::types::ManagerStatus {
            leader: false,
            reachability: "unknown".into(),
            addr: req.addr.clone(),
            raft_id,
        }),
        ..Default::default()
    };
    proposer
        .propose(Command::one(Op::Create(Object::Node(node))))
        .await
        .map_err(|e| RemoteError::new("unavailable", e.to_string()))?;
    let managers = proposer.store().view(crate::dispatcher::manager_addrs);
    serde_json::to_value(JoinResponse {
        identity,
        managers,
        raft_id,
    })
    .map_err(|e| RemoteError::new("internal", e.to_string()))
}

/// Why a join failed, as dockerd would say it.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token, the CA or the manager refused (dockerd's 400s and its texts).
    #[error("{0}")]
    Invalid(String),
    /// The manager could not be reached or answered otherwise.
    #[error("{0}")]
    Unavailable(String),
}

impl From<CallError> for JoinError {
    fn from(e: CallError) -> JoinError {
        match e {
            CallError::Remote(r) if r.kind == "invalid" => JoinError::Invalid(r.message),
            CallError::Remote(r) => JoinError::Unavailable(r.message),
            CallError::Io { addr, error } => {
                JoinError::Unavailable(format!("could not reach the manager at {addr}: {error}"))
            }
        }
    }
}

const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// On the joining node: fetches the CA from `remote`, checks it against the token, and asks
/// for a certificate (over TLS verified with that CA).
pub async fn join(remote: &str, token: &str, addr: &str) -> Result<JoinResponse, JoinError> {
    let parsed = crate::pki::parse_token(token).map_err(JoinError::Invalid)?;
    let insecure = Client::new(
        crate::transport::insecure_client_config()
            .map_err(|e| JoinError::Unavailable(e.to_string()))?,
    );
    let ca: String =
        crate::transport::call_as(&insecure, remote, &Request::GetCa, JOIN_TIMEOUT).await?;
    crate::pki::check_ca(&parsed, &ca).map_err(JoinError::Invalid)?;
    let client = Client::new(
        crate::transport::client_config(&ca, None)
            .map_err(|e| JoinError::Unavailable(e.to_string()))?,
    );
    let req = Request::Join(JoinRequest {
        token: token.to_string(),
        addr: addr.to_string(),
    });
    let resp: JoinResponse = crate::transport::call_as(&client, remote, &req, JOIN_TIMEOUT).await?;
    if resp.identity.ca_pem != ca {
        return Err(JoinError::Invalid(
            "the manager answered with another CA than it presented".into(),
        ));
    }
    Ok(resp)
}

/// The local address this host uses to reach `remote` (a worker's address when none was
/// given, as dockerd picks the interface of the route to the manager).
pub fn local_addr_towards(remote: &str) -> Option<String> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect(remote).ok()?;
    Some(sock.local_addr().ok()?.ip().to_string())
}
