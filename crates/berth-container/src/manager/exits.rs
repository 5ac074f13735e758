//! One watcher per running container: a thread waiting on the shim, then the exit
//! recorded and the restart policy or auto-removal applied.

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ExitRecord, RuntimeError, ShimHandle, rootfs};
use chrono::{DateTime, Utc};

use super::{Container, Containers, blocking, lock};
use crate::cgroup;
use crate::error::ContainerError;
use crate::exit::Ended;
use crate::record::{Record, Status};
use crate::restart;

impl Containers {
    /// Waits for the container's exit on the daemon's runtime. A task, not a thread: with
    /// hundreds of containers a parked thread each cost more memory than the rest of their
    /// supervision. Not tracked by shutdown, since a running container outlives the daemon
    /// (live restore); what follows its exit is.
    pub(super) fn spawn_watcher(&self, c: Arc<Container>, h: ShimHandle) {
        let me = self.clone();
        self.inner.rt.spawn(async move {
            let result = wait_for_exit(&h).await;
            if matches!(result, Err(RuntimeError::ShimGone { .. })) {
                // The shim died without recording an exit (SIGKILLed, crashed): its
                // container would run on unsupervised, so end it and its cgroup here.
                let cg = c.cgroup_path();
                tracing::warn!(id = %c.id, shim_pid = h.shim_pid(), "shim exited unexpectedly; killing the container");
                let _ = blocking(move || {
                    if cgroup::kill_all(&cg, Duration::from_secs(10)) {
                        cgroup::remove(&cg);
                    }
                })
                .await;
            }
            let me2 = me.clone();
            me.spawn(async move { me2.on_exit(c, result).await });
        });
    }

    pub(super) async fn on_exit(
        &self,
        c: Arc<Container>,
        result: std::result::Result<ExitRecord, RuntimeError>,
    ) {
        let Ended {
            code,
            finished,
            oom,
            error: err,
        } = Ended::from_shim(result);
        // An auto-removed container's mounts go with its directory, after `rm` has answered
        // (an overlay's unmount syncs its upper filesystem: milliseconds).
        if !c.record().host_config.auto_remove {
            let paths = c.paths.clone();
            let _ = blocking(move || {
                let _ = rootfs::unmount(&paths.rootfs());
                let _ = rootfs::unmount(&paths.shm());
            })
            .await;
        }
        self.network_stop(&c.id).await;
        *lock(&c.shim) = None;
        self.stop_health(&c);
        self.volumes_unmounted(&c).await;
        let exited = |r: &mut Record| {
            r.state.status = Status::Exited;
            r.state.pid = 0;
            r.state.exit_code = code;
            r.state.finished_at = Some(finished);
            r.state.oom_killed = oom;
            r.state.error = err.clone();
        };
        let r = if c.record().host_config.auto_remove {
            // Removed next: a daemon killed before that finds its exit in exit.json at start
            // and removes it then.
            c.update_in_memory(exited)
        } else {
            match c.update(exited) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(id = %c.id, error = %e, "cannot record container exit");
                    c.record()
                }
            }
        };
        if oom {
            self.event(&c, "oom", &[]);
        }
        self.event(&c, "die", &[("exitCode", code.to_string())]);
        // As Docker's cleanup of a stopped container: execs never started are forgotten.
        // Running ones end with the container; their watchers record how, and like ended
        // ones they stay inspectable until the sweep or `rm`.
        self.forget_execs(|e| e.container_id == c.id && !e.started);
        c.publish(|s| {
            s.running = false;
            s.exits += 1;
            s.exit_code = code;
        });
        self.after_exit(c, &r, code, finished);
    }

    /// Applies the restart policy to an exited container, or removes an auto-removed one.
    fn after_exit(&self, c: Arc<Container>, r: &Record, code: i64, finished: DateTime<Utc>) {
        if restart::should_restart(
            r.restart_policy(),
            code,
            r.state.manually_stopped,
            r.restart_count,
        ) {
            let ran = r
                .state
                .started_at
                .map(|s| (finished - s).to_std().unwrap_or_default())
                .unwrap_or_default();
            let delay = {
                let mut b = lock(&c.backoff);
                let d = restart::next_backoff(*b, ran);
                *b = Some(d);
                d
            };
            let _ = c.update(|r| r.state.status = Status::Restarting);
            let me = self.clone();
            // A restart the shutdown cuts short is the next daemon's (see `open`).
            self.spawn(async move {
                if !me.sleep_unless_stopping(delay).await {
                    return;
                }
                let _op = c.op.lock().await;
                let r = c.record();
                if r.state.status != Status::Restarting || r.state.manually_stopped {
                    return;
                }
                let _ = c.update(|r| r.restart_count += 1);
                if let Err(e) = me.start_locked(&c).await {
                    tracing::warn!(id = %c.id, error = %e, "restart failed");
                    let _ = c.update(|r| r.state.status = Status::Exited);
                }
            });
        } else if r.host_config.auto_remove {
            let me = self.clone();
            self.spawn(async move {
                if let Err(e) = me.remove_container(&c, true, true).await
                    && !matches!(e, ContainerError::NotFound(_))
                {
                    tracing::warn!(id = %c.id, error = %e, "auto-remove failed");
                }
            });
        }
    }
}

/// [`ShimHandle::wait`] without a thread: the shim answers the `Wait` request with one line
/// when the container exited, or closes the connection if it dies first.
async fn wait_for_exit(h: &ShimHandle) -> std::result::Result<ExitRecord, RuntimeError> {
    use tokio::io::AsyncBufReadExt;
    let Some(stream) = h.wait_request()? else {
        return h.wait_answer_line(None);
    };
    let read_error = |source| RuntimeError::Io {
        op: "read from",
        path: h.bundle().socket_path(),
        source,
    };
    stream.set_nonblocking(true).map_err(read_error)?;
    let stream = tokio::net::UnixStream::from_std(stream).map_err(read_error)?;
    let mut line = String::new();
    match tokio::io::BufReader::new(stream).read_line(&mut line).await {
        Ok(_) => h.wait_answer_line(Some(&line)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => h.wait_answer_line(None),
        Err(e) => Err(read_error(e)),
    }
}
