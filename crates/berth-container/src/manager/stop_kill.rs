//! Signals: stop, kill, restart; and `wait`.

use std::sync::Arc;
use std::time::Duration;

use super::{Container, Containers, WaitCondition, WaitFuture, blocking, cgroup_of};
use crate::error::{ContainerError, Result, conflict};
use crate::record::Status;
use crate::{cgroup, signal};

impl Containers {
    /// Waits until the container's process is gone (or `timeout` passes); true if it is.
    pub(super) async fn wait_stopped(c: &Container, timeout: Option<Duration>) -> bool {
        let mut rx = c.notify.subscribe();
        let fut = async {
            loop {
                if !rx.borrow_and_update().running {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.is_ok(),
            None => {
                fut.await;
                true
            }
        }
    }

    pub(super) fn signal_blocking(c: &Container, sig: i32) -> Result<()> {
        let Some(h) = c.shim() else {
            return Ok(());
        };
        let paused = c.record().state.status == Status::Paused;
        h.kill(sig)?;
        if paused {
            let r = c.record();
            let _ = cgroup::freeze(&cgroup_of(&r, &c.paths), false);
        }
        Ok(())
    }

    pub(super) async fn signal(&self, c: &Arc<Container>, sig: i32) -> Result<()> {
        let c2 = c.clone();
        blocking(move || Self::signal_blocking(&c2, sig)).await??;
        self.event(c, "kill", &[("signal", sig.to_string())]);
        Ok(())
    }

    /// `POST /containers/{id}/stop`: `Ok(false)` when it was not running (304).
    pub async fn stop(&self, key: &str, timeout: Option<i64>, sig: Option<&str>) -> Result<bool> {
        let c = self.get(key)?;
        let sig = sig
            .filter(|s| !s.is_empty())
            .map(signal::parse)
            .transpose()?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, timeout, sig).await
    }

    pub(super) async fn stop_locked(
        &self,
        c: &Arc<Container>,
        timeout: Option<i64>,
        sig: Option<i32>,
    ) -> Result<bool> {
        let r = c.record();
        if r.state.status == Status::Restarting {
            c.mark_manually_stopped(|r| r.state.status = Status::Exited);
            return Ok(true);
        }
        if !r.state.status.is_running() {
            return Ok(false);
        }
        c.mark_manually_stopped(|_| {});
        let sig = match sig {
            Some(s) => s,
            None => match r.config.stop_signal.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => signal::parse(s).unwrap_or(15),
                None => 15,
            },
        };
        let t = timeout.or(r.config.stop_timeout).unwrap_or(10);
        let limit = (t >= 0).then(|| Duration::from_secs(t as u64));
        if let Err(e) = self.signal(c, sig).await {
            tracing::debug!(id = %c.id, error = %e, "stop signal failed");
        }
        if !Self::wait_stopped(c, limit).await {
            let _ = self.signal(c, 9).await;
            if !Self::wait_stopped(c, Some(Duration::from_secs(30))).await {
                return Err(ContainerError::Internal(format!(
                    "cannot stop container: {}: tried to kill container, but did not receive an exit event",
                    c.id
                )));
            }
        }
        self.event(c, "stop", &[]);
        Ok(true)
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(&self, key: &str, sig: Option<&str>) -> Result<()> {
        let c = self.get(key)?;
        let sig = match sig.filter(|s| !s.is_empty()) {
            Some(s) => signal::parse(s)?,
            None => 9,
        };
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(conflict(format!(
                "Cannot kill container: {key}: container {} is not running",
                c.id
            )));
        }
        if sig == 9 || sig == 15 {
            c.mark_manually_stopped(|_| {});
        }
        self.signal(&c, sig).await?;
        if sig == 9 {
            // As dockerd: a SIGKILL is answered once the container is dead, so that an
            // inspect right after shows it exited. Should its exit not come, every process
            // of its cgroup is killed directly, then the exit is given two more seconds.
            if !Self::wait_stopped(&c, Some(Duration::from_secs(10))).await {
                tracing::warn!(id = %c.id, "container did not exit within 10s of SIGKILL; killing its cgroup");
                let cg = c.cgroup_path();
                blocking(move || cgroup::kill_all(&cg, Duration::from_secs(2))).await?;
                if !Self::wait_stopped(&c, Some(Duration::from_secs(2))).await {
                    return Err(ContainerError::Internal(format!(
                        "Cannot kill container: {key}: tried to kill container, but did not receive an exit event"
                    )));
                }
            }
        }
        Ok(())
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(&self, key: &str, timeout: Option<i64>, sig: Option<&str>) -> Result<()> {
        let c = self.get(key)?;
        let sig = sig
            .filter(|s| !s.is_empty())
            .map(signal::parse)
            .transpose()?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, timeout, sig).await?;
        let _ = c.update(|r| r.state.manually_stopped = false);
        self.start_locked(&c).await?;
        self.event(&c, "restart", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/wait`: resolves the container now (so a 404 comes first) and
    /// returns a future that resolves once the condition holds. Dropping it leaks nothing.
    pub fn wait(&self, key: &str, cond: WaitCondition) -> Result<WaitFuture> {
        let c = self.get(key)?;
        let mut rx = c.notify.subscribe();
        let start_exits = rx.borrow().exits;
        Ok(Box::pin(async move {
            loop {
                let s = rx.borrow_and_update().clone();
                let done = match cond {
                    WaitCondition::NotRunning => !s.running,
                    WaitCondition::NextExit => s.exits > start_exits,
                    WaitCondition::Removed => s.removed,
                };
                if done {
                    return s.exit_code;
                }
                if rx.changed().await.is_err() {
                    return s.exit_code;
                }
            }
        }))
    }
}
