//! Swarm mode: the cluster store ([`store`]) replicated by Raft ([`raft`]), the controllers
//! that turn services into tasks on nodes ([`controllers`]), and the agent that runs a node's
//! tasks through the engine ([`agent`]). [`manager`] wires them together for berthd.

pub mod agent;
pub mod allocator;
pub mod allocator6;
pub mod attach;
pub mod autolock;
pub mod ca;
pub mod certs;
pub mod controllers;
pub mod dispatcher;
pub mod join;
pub mod logs;
pub mod manager;
pub mod pki;
pub mod raft;
pub mod raft_network;
pub mod rotation;
pub mod store;
pub mod task_config;
pub mod task_privileges;
pub mod templated;
pub mod transport;
pub mod types;
pub mod worker;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use store::{Command, Conflict, Store};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a proposed change did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProposeError {
    /// Committed, but refused by the state machine (stale version, taken name...).
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// Not committed: no leader, or this manager is shutting down.
    #[error("{0}")]
    Unavailable(String),
}

/// Who changes the store: the Raft leader in a daemon, the store itself in tests.
pub trait Proposer: Send + Sync {
    fn store(&self) -> &Store;
    /// Commits a command and answers once it is applied here.
    fn propose(&self, cmd: Command) -> BoxFuture<'_, Result<(), ProposeError>>;
}

/// Applies commands straight to a store, numbering them: the controllers' and agent's tests.
#[derive(Default)]
pub struct MemoryProposer {
    pub store: Store,
    index: AtomicU64,
}

impl Proposer for MemoryProposer {
    fn store(&self) -> &Store {
        &self.store
    }
    fn propose(&self, cmd: Command) -> BoxFuture<'_, Result<(), ProposeError>> {
        let index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move { Ok(self.store.apply(index, &cmd)?) })
    }
}
