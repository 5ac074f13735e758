//! Plain containers on attachable swarm networks (`docker run --network NAME`), from any
//! node: swarmkit's `ResourceAllocator.AttachNetwork`/`DetachNetwork`. A manager's daemon
//! calls these functions on its own store; a worker, which holds no store, asks a manager
//! over the cluster transport ([`Request::Attachment`](crate::transport::Request)), and the
//! manager answers with the same functions. The record is the network's
//! `DriverState.Attachments` (container -> node, address), so the node's overlay agent, the
//! other nodes' peers (FDB/neighbour) and every node's embedded DNS follow it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Command, Op};
use crate::transport::{Answer, Peer, RemoteError};
use crate::types::Object;
use crate::{ProposeError, Proposer};

/// A worker's call about its plain containers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AttachmentCall {
    /// Which swarm network `network` (name, id or id prefix) is, if any.
    Lookup { node_id: String, network: String },
    /// An address on `network` for `container` (called `name`) of `node_id`.
    Attach {
        node_id: String,
        network: String,
        container: String,
        name: String,
    },
    /// Releases `container`'s address on `network` (`network disconnect`), or on every
    /// network when `None` (it was removed).
    Detach {
        node_id: String,
        container: String,
        #[serde(default)]
        network: Option<String>,
    },
}

/// A swarm network as a plain container's daemon needs it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkRef {
    pub id: String,
    pub name: String,
    pub attachable: bool,
}

/// An attachment made: the network and the container's address on it (with prefix).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attached {
    pub network: NetworkRef,
    pub address: String,
}

/// swarmkit's refusal of a network that is not `--attachable`; the daemon prefixes it with
/// `Could not attach to network NAME: ` as dockerd does.
pub fn not_attachable(name: &str) -> String {
    format!("rpc error: code = PermissionDenied desc = network {name} not manually attachable")
}

/// The swarm network `key` names, if any.
pub fn lookup(p: &dyn Proposer, key: &str) -> Option<NetworkRef> {
    p.store().view(|s| {
        s.find_network(key).map(|n| NetworkRef {
            id: n.meta.id.clone(),
            name: n.name().to_string(),
            attachable: n.spec["Attachable"] == true,
        })
    })
}

/// Gives `container` of `node` an address on the attachable network `key` (kept when it has
/// one already: a retried call allocates nothing new).
pub async fn attach(
    p: &dyn Proposer,
    node: &str,
    key: &str,
    container: &str,
    name: &str,
) -> Result<Attached, RemoteError> {
    let Some(network) = lookup(p, key) else {
        // swarmkit's words, which dockerd passes on (a start's network removed meanwhile).
        return Err(RemoteError::new(
            "not_found",
            format!("rpc error: code = NotFound desc = network {key} not found"),
        ));
    };
    if !network.attachable {
        return Err(RemoteError::new(
            "permission_denied",
            not_attachable(&network.name),
        ));
    }
    for _ in 0..5 {
        let n = p.store().view(|s| {
            let n = s.networks.get(&network.id)?;
            if let Some((on, addr)) = n.driver_state.attachments.get(container)
                && on == node
            {
                return Some(Ok((None, addr.clone())));
            }
            Some(
                crate::allocator::attach_container(s, &network.id, container, node).map(|mut n| {
                    if !name.is_empty() {
                        n.driver_state
                            .attachment_names
                            .insert(container.to_string(), name.to_string());
                    }
                    let addr = n.driver_state.attachments[container].1.clone();
                    (Some(n), addr)
                }),
            )
        });
        let (n, address) = match n {
            None => {
                return Err(RemoteError::new(
                    "not_found",
                    format!("network {key} not found"),
                ));
            }
            Some(Err(e)) => return Err(RemoteError::new("invalid", e)),
            Some(Ok(v)) => v,
        };
        let Some(n) = n else {
            return Ok(Attached { network, address });
        };
        let op = Op::Update {
            expect: Some(n.meta.version.index),
            object: Object::Network(n),
        };
        match p.propose(Command::one(op)).await {
            Ok(()) => return Ok(Attached { network, address }),
            Err(ProposeError::Conflict(_)) => continue,
            Err(ProposeError::Unavailable(m)) => return Err(RemoteError::new("unavailable", m)),
        }
    }
    Err(RemoteError::new(
        "unavailable",
        "the network changed too often to attach the container",
    ))
}

/// Releases the addresses `container` of `node` holds on `network` (id or name), or on every
/// attachable network.
pub async fn detach(
    p: &dyn Proposer,
    node: &str,
    container: &str,
    network: Option<&str>,
) -> Result<(), RemoteError> {
    for _ in 0..5 {
        let ops: Vec<Op> = p.store().view(|s| {
            let only = network.map(|k| s.find_network(k).map(|n| n.meta.id.clone()));
            s.networks
                .values()
                .filter(|n| only.as_ref().is_none_or(|o| o.as_ref() == Some(&n.meta.id)))
                .filter(|n| {
                    n.driver_state
                        .attachments
                        .get(container)
                        .is_some_and(|(on, _)| on == node)
                })
                .map(|n| {
                    let mut n = crate::types::Network::clone(n);
                    n.driver_state.attachments.remove(container);
                    n.driver_state.attachment_names.remove(container);
                    n.driver_state.attachments6.remove(container);
                    Op::Update {
                        expect: Some(n.meta.version.index),
                        object: Object::Network(n),
                    }
                })
                .collect()
        });
        if ops.is_empty() {
            return Ok(());
        }
        match p.propose(Command { ops }).await {
            Ok(()) => return Ok(()),
            Err(ProposeError::Conflict(_)) => continue,
            Err(ProposeError::Unavailable(m)) => return Err(RemoteError::new("unavailable", m)),
        }
    }
    Err(RemoteError::new(
        "unavailable",
        "the network changed too often to detach the container",
    ))
}

/// A manager's answer to a node's [`AttachmentCall`]: a node acts for its own containers only.
pub async fn serve(p: &dyn Proposer, peer: &Peer, call: AttachmentCall) -> Answer {
    match call {
        AttachmentCall::Lookup { node_id, network } => {
            peer.authorize(&node_id, None)?;
            Ok(json(&lookup(p, &network)))
        }
        AttachmentCall::Attach {
            node_id,
            network,
            container,
            name,
        } => {
            peer.authorize(&node_id, None)?;
            let a = attach(p, &node_id, &network, &container, &name).await?;
            Ok(json(&a))
        }
        AttachmentCall::Detach {
            node_id,
            container,
            network,
        } => {
            peer.authorize(&node_id, None)?;
            detach(p, &node_id, &container, network.as_deref()).await?;
            Ok(Value::Null)
        }
    }
}

fn json(v: &impl Serialize) -> Value {
    // These plain types always serialize.
    serde_json::to_value(v).unwrap_or_default()
}
