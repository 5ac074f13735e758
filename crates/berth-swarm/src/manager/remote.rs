//! A worker's calls to its managers outside its session (attachable networks), and the
//! manager's own way to the same functions.

use std::sync::Arc;
use std::time::Duration;

use super::{Handle, Swarm};
use crate::Proposer;
use crate::attach::{Attached, AttachmentCall, NetworkRef};
use crate::transport::{CallError, Client, RemoteError, Request};

impl Handle {
    /// Writes through Raft as the API's other writes do, for functions taking a proposer.
    pub fn proposer(&self) -> Arc<dyn Proposer> {
        Arc::new(self.active.proposer())
    }
}

impl Swarm {
    /// This node's id when it is a worker (in a swarm, not a manager).
    pub async fn worker_node_id(&self) -> Option<String> {
        if self.handle().await.is_some() {
            return None;
        }
        let guard = self.worker.lock().await;
        Some(guard.as_ref()?.worker.identity.node_id.clone())
    }

    /// A worker's call to its managers: the first that answers (a remote error is the answer;
    /// an unreachable manager passes the call to the next).
    async fn call_managers(&self, call: AttachmentCall) -> Result<serde_json::Value, CallError> {
        let (identity, managers) = {
            let guard = self.worker.lock().await;
            let Some(run) = guard.as_ref() else {
                return Err(CallError::Remote(RemoteError::new(
                    "unavailable",
                    "This node is not part of a swarm",
                )));
            };
            let managers = run
                .worker
                .info
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .managers
                .clone();
            (run.worker.identity.clone(), managers)
        };
        let config = crate::transport::client_config(
            &identity.ca_pem,
            Some((&identity.cert_pem, &identity.key_pem)),
        )
        .map_err(|e| CallError::Io {
            addr: String::new(),
            error: format!("{e:#}"),
        })?;
        let client = Client::new(config);
        let req = Request::Attachment(call);
        let mut last = CallError::Remote(RemoteError::new("unavailable", "no manager known"));
        for addr in managers {
            match client.call(&addr, &req, Duration::from_secs(10)).await {
                Ok(v) => return Ok(v),
                Err(CallError::Remote(r)) if r.kind != "unavailable" => {
                    return Err(CallError::Remote(r));
                }
                Err(e) => {
                    tracing::debug!(manager = %addr, error = %e, "attachment call");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// A worker asks its managers which swarm network `key` is.
    pub async fn remote_lookup_network(
        &self,
        node_id: &str,
        key: &str,
    ) -> Result<Option<NetworkRef>, CallError> {
        let v = self
            .call_managers(AttachmentCall::Lookup {
                node_id: node_id.into(),
                network: key.into(),
            })
            .await?;
        serde_json::from_value(v).map_err(bad_answer)
    }

    /// A worker asks its managers for an address for `container` on `network`.
    pub async fn remote_attach(
        &self,
        node_id: &str,
        network: &str,
        container: &str,
        name: &str,
    ) -> Result<Attached, CallError> {
        let v = self
            .call_managers(AttachmentCall::Attach {
                node_id: node_id.into(),
                network: network.into(),
                container: container.into(),
                name: name.into(),
            })
            .await?;
        serde_json::from_value(v).map_err(bad_answer)
    }

    /// A worker asks its managers to release `container`'s address on `network` (on all of
    /// its networks when `None`).
    pub async fn remote_detach(
        &self,
        node_id: &str,
        container: &str,
        network: Option<&str>,
    ) -> Result<(), CallError> {
        self.call_managers(AttachmentCall::Detach {
            node_id: node_id.into(),
            container: container.into(),
            network: network.map(str::to_string),
        })
        .await
        .map(drop)
    }
}

fn bad_answer(e: serde_json::Error) -> CallError {
    CallError::Io {
        addr: String::new(),
        error: format!("bad answer: {e}"),
    }
}
