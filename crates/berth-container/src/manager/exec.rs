//! Exec instances: create, start, inspect, resize; their records on disk and the sweep
//! that forgets ended ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_api::models::container::ExecProcessConfig;
use berth_api::models::{ExecConfig as ApiExecConfig, ExecInspect};
use berth_runtime::RuntimeError;
use berth_runtime::shim::ExecConfig as ShimExecConfig;
use chrono::{DateTime, Utc};

use super::{Container, Containers, blocking, lock};
use crate::error::{ContainerError, Result, conflict, invalid};
use crate::record::Status;
use crate::{names, user};

/// An exec instance (`POST /containers/{id}/exec`). Docker keeps these only in memory;
/// Berth also writes each to `<container>/execs/<exec id>.json` (atomically, at every change)
/// so that a restarted daemon can still inspect them and, since the exec's process belongs to
/// the shim, still learn how one that was running ends.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecEntry {
    pub id: String,
    pub container_id: String,
    pub config: ApiExecConfig,
    pub started: bool,
    pub running: bool,
    pub pid: i64,
    pub exit_code: Option<i64>,
    /// When it ended (or failed to start): how long a finished exec is kept counts from here.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl ExecEntry {
    /// Started and ended: no longer one of the container's `ExecIDs`, still inspectable.
    fn ended(&self) -> bool {
        self.started && !self.running
    }

    /// Whether the sweep at `now` forgets it: ended at least one period ago.
    fn expired(&self, now: DateTime<Utc>) -> bool {
        let keep = chrono::Duration::from_std(EXEC_GC_PERIOD).unwrap_or_default();
        self.ended()
            && self
                .finished_at
                .is_none_or(|t| now.signed_duration_since(t) >= keep)
    }
}

/// Where a container's exec records live, inside its directory.
const EXECS_DIR: &str = "execs";

/// Docker forgets an ended exec at the second pass of a five-minute sweep after it ended
/// (`execCommandGC`), so 5 to 10 minutes later; Berth sweeps on the same period.
const EXEC_GC_PERIOD: Duration = Duration::from_secs(300);

/// What [`Containers::exec_start`] gives the HTTP edge.
pub struct ExecStarted {
    /// Raw bytes (pty) instead of multiplexed frames.
    pub tty: bool,
    /// The exec's stdio (`None` when detached or when it failed to start).
    pub stream: Option<std::os::unix::net::UnixStream>,
    /// Docker's message when the command could not be run (the exit code is recorded).
    pub failure: Option<String>,
}

impl Containers {
    pub(super) fn exec_event(
        &self,
        c: &Container,
        action: &str,
        cfg: &ApiExecConfig,
        extra: &[(&str, String)],
    ) {
        let cmd = cfg.cmd.clone().unwrap_or_default().join(" ");
        self.event(c, &format!("{action}: {cmd}"), extra);
    }

    /// `POST /containers/{id}/exec`: registers an exec; returns its id.
    pub fn exec_create(&self, key: &str, cfg: ApiExecConfig) -> Result<String> {
        let c = self.get(key)?;
        let r = c.record();
        match r.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(conflict(format!(
                    "container {} is paused, unpause the container before exec",
                    c.id
                )));
            }
            Status::Restarting => {
                return Err(conflict(format!(
                    "container {} is restarting, wait until the container is running",
                    c.id
                )));
            }
            _ => return Err(conflict(format!("container {} is not running", c.id))),
        }
        if cfg.cmd.as_ref().is_none_or(Vec::is_empty) {
            return Err(invalid("No exec command specified"));
        }
        let id = names::new_id();
        self.exec_event(&c, "exec_create", &cfg, &[("execID", id.clone())]);
        let e = ExecEntry {
            id: id.clone(),
            container_id: c.id.clone(),
            config: cfg,
            started: false,
            running: false,
            pid: 0,
            exit_code: None,
            finished_at: None,
        };
        let mut execs = lock(&self.inner.execs);
        // dockerd keeps execs in memory only: one whose record cannot be written (a full
        // disk) still runs, it just does not outlive a daemon restart.
        if let Err(err) = self.save_exec(&e) {
            tracing::warn!(exec = %id, error = %err, "cannot record exec; it is kept in memory only");
        }
        execs.insert(id.clone(), e);
        Ok(id)
    }

    pub(super) fn exec_entry(&self, id: &str) -> Result<ExecEntry> {
        lock(&self.inner.execs)
            .get(id)
            .cloned()
            .ok_or_else(|| ContainerError::PathNotFound(format!("No such exec instance: {id}")))
    }

    /// `POST /exec/{id}/start`: runs the exec's process. Without `detach` the stream carries
    /// its stdio; call [`Containers::exec_finished`] once it ends.
    pub async fn exec_start(&self, exec_id: &str, detach: bool) -> Result<ExecStarted> {
        // The exec's process joins the container's cgroup too.
        berth_runtime::cgroup_warmup::prewarm();
        let e = {
            let mut execs = lock(&self.inner.execs);
            let e = execs.get_mut(exec_id).ok_or_else(|| {
                ContainerError::PathNotFound(format!("No such exec instance: {exec_id}"))
            })?;
            if e.started {
                return Err(conflict(format!(
                    "Error: Exec command {exec_id} is already running"
                )));
            }
            e.started = true;
            e.running = true;
            e.clone()
        };
        let c = self.get(&e.container_id)?;
        let Some(h) = c
            .shim()
            .filter(|_| c.record().state.status == Status::Running)
        else {
            return Err(conflict(format!("container {} is not running", c.id)));
        };
        let r = c.record();
        let cfg = &e.config;
        let mut env = cfg.env.clone().unwrap_or_default();
        let user = if cfg.user.is_empty() {
            None
        } else {
            let root = c.paths.rootfs();
            let passwd = user::read_in_root(&root, "/etc/passwd");
            let group = user::read_in_root(&root, "/etc/group");
            let u = user::resolve(&cfg.user, &[], &passwd, &group)?;
            // The container's HOME is its user's; another user's exec gets its own, unless
            // the container's or the exec's configuration sets HOME.
            let has_home = |env: &[String]| env.iter().any(|e| e.starts_with("HOME="));
            if !has_home(&env) && !has_home(r.config.env.as_deref().unwrap_or_default()) {
                env.push(format!("HOME={}", user::home(u.uid, &passwd)));
            }
            Some(u)
        };
        let shim_cfg = ShimExecConfig {
            exec_id: e.id.clone(),
            args: cfg.cmd.clone().unwrap_or_default(),
            env,
            cwd: cfg.working_dir.clone(),
            user,
            tty: cfg.tty,
            stdin: cfg.attach_stdin,
            stdout: cfg.attach_stdout,
            stderr: cfg.attach_stderr,
            privileged: cfg.privileged,
            cap_add: Vec::new(),
            detach,
        };
        let _ = r;
        let started = blocking(move || h.exec_start(&shim_cfg)).await?;
        match started {
            Ok(p) => {
                self.update_exec(exec_id, |x| x.pid = p.pid as i64);
                self.exec_event(&c, "exec_start", cfg, &[("execID", e.id.clone())]);
                if detach {
                    let me = self.clone();
                    let id = exec_id.to_string();
                    self.spawn_until_shutdown(async move { me.exec_finished(&id).await });
                }
                Ok(ExecStarted {
                    tty: p.tty,
                    stream: p.stream,
                    failure: None,
                })
            }
            Err(err) => {
                let code = err.docker_exit_code();
                let message = err.oci_exec_message();
                self.update_exec(exec_id, |x| {
                    x.running = false;
                    x.exit_code = Some(code.unwrap_or(126) as i64);
                    x.finished_at = Some(Utc::now());
                });
                match message {
                    Some(m) => Ok(ExecStarted {
                        tty: cfg.tty,
                        stream: None,
                        failure: Some(m),
                    }),
                    None if matches!(err, RuntimeError::ShimGone { .. }) => {
                        Err(conflict(format!("container {} is not running", c.id)))
                    }
                    None => Err(err.into()),
                }
            }
        }
    }

    /// Records an exec's exit once its process ended (waits for it).
    pub async fn exec_finished(&self, exec_id: &str) {
        let Ok(e) = self.exec_entry(exec_id) else {
            return;
        };
        let Ok(c) = self.get(&e.container_id) else {
            return;
        };
        let code = match c.shim() {
            Some(h) => {
                let id = exec_id.to_string();
                match blocking(move || h.exec_wait(&id)).await {
                    Ok(Ok(s)) => s.exit_code.map(i64::from),
                    _ => None,
                }
            }
            None => None,
        };
        // No answer: the shim finished, the container with it. An exec that ended first
        // (often the one that made init exit) has its code in the exit record; one that
        // had not was killed with the container.
        let code = match code {
            Some(code) => code,
            None => recorded_exit(&c, exec_id).await.unwrap_or(137),
        };
        self.update_exec(exec_id, |x| {
            x.running = false;
            x.exit_code = Some(code);
            x.finished_at.get_or_insert_with(Utc::now);
        });
        self.exec_event(
            &c,
            "exec_die",
            &e.config,
            &[("execID", e.id.clone()), ("exitCode", code.to_string())],
        );
    }

    /// `GET /exec/{id}/json`.
    pub async fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspect> {
        let mut e = self.exec_entry(exec_id)?;
        if e.running
            && let Ok(c) = self.get(&e.container_id)
        {
            let answer = match c.shim() {
                Some(h) => {
                    let id = exec_id.to_string();
                    blocking(move || h.exec_state(&id)).await.ok()
                }
                None => None,
            };
            let ended = match answer {
                Some(Ok(s)) => (!s.running).then(|| s.exit_code.map(i64::from)),
                // The shim finished (see `exec_finished`), before the exec's end was recorded.
                _ => recorded_exit(&c, exec_id).await.map(Some),
            };
            if let Some(code) = ended {
                e.running = false;
                e.exit_code = code;
                self.update_exec(exec_id, |x| {
                    x.running = false;
                    x.exit_code = code;
                    x.finished_at.get_or_insert_with(Utc::now);
                });
            }
        }
        let cmd = e.config.cmd.clone().unwrap_or_default();
        Ok(ExecInspect {
            can_remove: false,
            detach_keys: e.config.detach_keys.clone(),
            id: e.id.clone(),
            running: e.running,
            exit_code: e.exit_code,
            process_config: ExecProcessConfig {
                privileged: e.config.privileged,
                user: e.config.user.clone(),
                tty: e.config.tty,
                entrypoint: cmd.first().cloned().unwrap_or_default(),
                arguments: cmd.iter().skip(1).cloned().collect(),
            },
            open_stdin: e.config.attach_stdin,
            open_stderr: e.config.attach_stderr,
            open_stdout: e.config.attach_stdout,
            container_id: e.container_id.clone(),
            pid: e.pid,
        })
    }

    /// `POST /exec/{id}/resize`.
    pub async fn exec_resize(&self, exec_id: &str, height: u16, width: u16) -> Result<()> {
        let e = self.exec_entry(exec_id)?;
        let c = self.get(&e.container_id)?;
        let Some(h) = c.shim() else {
            return Err(conflict(format!("container {} is not running", c.id)));
        };
        let id = exec_id.to_string();
        blocking(move || h.exec_resize(&id, height, width)).await??;
        Ok(())
    }

    /// The ids of a container's execs that have not ended (Docker drops an exec from its
    /// container's list when it exits, keeping it only for `GET /exec/{id}/json`).
    pub(super) fn exec_ids(&self, container_id: &str) -> Vec<String> {
        lock(&self.inner.execs)
            .values()
            .filter(|e| e.container_id == container_id && !e.ended())
            .map(|e| e.id.clone())
            .collect()
    }

    pub(super) fn exec_record_path(&self, e: &ExecEntry) -> PathBuf {
        self.inner
            .root
            .join(&e.container_id)
            .join(EXECS_DIR)
            .join(format!("{}.json", e.id))
    }

    /// Writes an exec's record atomically (temp file, fsync, rename).
    pub(super) fn save_exec(&self, e: &ExecEntry) -> Result<()> {
        let path = self.exec_record_path(e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| ContainerError::io("create", dir, err))?;
        }
        let bytes = serde_json::to_vec(e)
            .map_err(|err| ContainerError::io("encode", &path, std::io::Error::other(err)))?;
        berth_runtime::bundle::write_atomic(&path, &bytes)?;
        Ok(())
    }

    /// Changes an exec in memory and on disk. The record is written under the table's lock
    /// so that two changes cannot reach the disk in the opposite order.
    pub(super) fn update_exec(&self, exec_id: &str, f: impl FnOnce(&mut ExecEntry)) {
        let mut execs = lock(&self.inner.execs);
        if let Some(x) = execs.get_mut(exec_id) {
            f(x);
            if let Err(err) = self.save_exec(x) {
                tracing::warn!(exec = %exec_id, error = %err, "cannot record exec state");
            }
        }
    }

    /// Forgets the execs `which` selects, records included.
    pub(super) fn forget_execs(&self, which: impl Fn(&ExecEntry) -> bool) {
        let mut execs = lock(&self.inner.execs);
        let gone: Vec<ExecEntry> = execs.values().filter(|e| which(e)).cloned().collect();
        for e in gone {
            execs.remove(&e.id);
            let path = self.exec_record_path(&e);
            if let Err(err) = std::fs::remove_file(&path)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %err, "cannot remove exec record");
            }
        }
    }

    /// Reads the exec records of the container in `dir`; drops temp files a crash left.
    pub(super) fn load_execs(&self, dir: &Path) {
        let execs_dir = dir.join(EXECS_DIR);
        let Ok(rd) = std::fs::read_dir(&execs_dir) else {
            return;
        };
        for entry in rd.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<ExecEntry>(&b).map_err(|e| e.to_string()))
            {
                Ok(e) => {
                    lock(&self.inner.execs).insert(e.id.clone(), e);
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "skipping unreadable exec record");
                }
            }
        }
    }

    /// After adoption: a running container's execs that were running are watched again
    /// (their processes belong to the shim, which keeps their exit codes). A container that
    /// ended while the daemon was down loses the execs that had not ended: with its shim
    /// gone nobody knows how a running one ended, and none is made up.
    pub(super) fn resume_execs(&self, c: &Arc<Container>) {
        if !c.record().state.status.is_running() {
            // Unless its shim recorded how it ended (then it ended before the container).
            // Read only for such execs: start-up goes over every stopped container.
            let unended = lock(&self.inner.execs)
                .values()
                .any(|e| e.container_id == c.id && e.started && !e.ended());
            let recorded = unended
                .then(|| c.paths.bundle().read_exit().ok().flatten())
                .flatten()
                .map(|r| r.execs)
                .unwrap_or_default();
            let mut execs = lock(&self.inner.execs);
            for e in execs.values_mut() {
                if e.container_id == c.id
                    && !e.ended()
                    && let Some(&code) = recorded.get(&e.id)
                {
                    e.running = false;
                    e.exit_code = Some(i64::from(code));
                    e.finished_at.get_or_insert_with(Utc::now);
                    if let Err(err) = self.save_exec(e) {
                        tracing::warn!(exec = %e.id, error = %err, "cannot record exec state");
                    }
                }
            }
            drop(execs);
            self.forget_execs(|e| e.container_id == c.id && !e.ended());
            return;
        }
        let running: Vec<String> = lock(&self.inner.execs)
            .values()
            .filter(|e| e.container_id == c.id && e.started && e.running)
            .map(|e| e.id.clone())
            .collect();
        if running.is_empty() {
            return;
        }
        for id in running {
            let me = self.clone();
            self.spawn_until_shutdown(async move { me.exec_finished(&id).await });
        }
    }

    /// Forgets ended execs on Docker's schedule (see [`EXEC_GC_PERIOD`]).
    pub(super) fn spawn_exec_gc(&self) {
        let weak = Arc::downgrade(&self.inner);
        self.spawn_until_shutdown(async move {
            let mut tick = tokio::time::interval(EXEC_GC_PERIOD);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let me = Containers { inner };
                let now = Utc::now();
                me.forget_execs(|e| e.expired(now));
            }
        });
    }
}

/// How the exec `exec_id` ended, from the exit record the container's shim left: `None`
/// without one; 137 when the exec had not ended before the container (killed with it).
async fn recorded_exit(c: &Container, exec_id: &str) -> Option<i64> {
    let bundle = c.paths.bundle();
    let record = blocking(move || bundle.read_exit()).await.ok()?.ok()??;
    Some(
        record
            .execs
            .get(exec_id)
            .map_or(137, |&code| i64::from(code)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_execs_ended_a_sweep_period_ago_expire() {
        let now = Utc::now();
        let period = chrono::Duration::from_std(EXEC_GC_PERIOD).unwrap();
        let e = |started, running, ago: Option<chrono::Duration>| ExecEntry {
            id: "e".into(),
            container_id: "c".into(),
            config: ApiExecConfig::default(),
            started,
            running,
            pid: 1,
            exit_code: (!running).then_some(0),
            finished_at: ago.map(|d| now - d),
        };
        assert!(
            !e(false, false, None).expired(now),
            "created, never started"
        );
        assert!(!e(true, true, None).expired(now), "running");
        let recent = e(true, false, Some(period - chrono::Duration::seconds(1)));
        assert!(!recent.expired(now));
        assert!(e(true, false, Some(period)).expired(now));
        // Sweeps come every period, so an exec is kept between one and two periods.
        assert!(!recent.expired(now - period) && recent.expired(now + period));
        // The record round-trips, and records without `finished_at` still load.
        let json = serde_json::to_value(e(true, false, Some(period))).unwrap();
        let back: ExecEntry = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.finished_at, e(true, false, Some(period)).finished_at);
        let mut old = json;
        old.as_object_mut().unwrap().remove("finished_at");
        let back: ExecEntry = serde_json::from_value(old).unwrap();
        assert_eq!(back.finished_at, None);
    }
}
