//! Where the network service's background work runs: the daemon's runtime, captured once, and
//! a [`TaskTracker`] so that shutdown can wait for what is still in flight (veth deletions)
//! and nothing is spawned on whichever runtime happens to be current.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// A runtime handle and the tracker of the tasks spawned on it (cheap to clone).
#[derive(Debug, Clone)]
pub struct Tasks {
    runtime: Handle,
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new(runtime: Handle) -> Tasks {
        Tasks {
            runtime,
            tracker: TaskTracker::new(),
        }
    }

    /// The runtime of the calling task. Fails outside a tokio runtime.
    pub fn current() -> crate::Result<Tasks> {
        Handle::try_current()
            .map(Tasks::new)
            .map_err(|_| crate::Error::Invalid("the network service needs a tokio runtime".into()))
    }

    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// Spawns a tracked task on the captured runtime.
    pub fn spawn<F>(&self, f: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn_on(f, &self.runtime)
    }

    /// Runs blocking work (namespace switches, forks) on the runtime's blocking pool, tracked.
    pub fn spawn_blocking<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.tracker.spawn_blocking_on(f, &self.runtime)
    }

    /// Takes no new tasks and waits for the tracked ones to end.
    pub async fn close(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Tasks still tracked (running or not yet reaped).
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}
