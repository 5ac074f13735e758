//! Opening the service at daemon start: records loaded, running shims adopted, containers
//! that ended while no daemon ran recorded, and restart policies applied.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_image::ImageStore;
use berth_runtime::{Bundle, RuntimeError, ShimHandle, rootfs};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::remove::{REMOVING_PREFIX, delete_removed_dir};
use super::{Container, Containers, EventSink, Inner, Options, Table, cgroup_of, lock};
use crate::cgroup;
use crate::error::{ContainerError, Result};
use crate::exit::Ended;
use crate::record::{Record, Status};
use crate::restart;

/// What opening found to do once every record is loaded.
#[derive(Default)]
struct Restored {
    /// Restart policies that apply at daemon start.
    to_restart: Vec<Arc<Container>>,
    /// Auto-removed containers that are not running.
    to_remove: Vec<Arc<Container>>,
    /// Containers that ran when the last daemon stopped and no longer do.
    exited_while_down: Vec<Arc<Container>>,
}

impl Containers {
    /// Loads every container record under `<data_root>/containers`, adopts the shims of the
    /// running ones (or records how they ended), and restarts containers whose policy says
    /// so. Must be called inside a tokio runtime: the service's tasks run on it.
    pub fn open(
        opts: Options,
        images: Arc<ImageStore>,
        events: Arc<dyn EventSink>,
    ) -> Result<Containers> {
        let me = Self::empty(opts, images, events)?;
        let root = &me.inner.root;
        let mut found = Restored::default();
        for entry in std::fs::read_dir(root).map_err(|e| ContainerError::io("read", root, e))? {
            let Ok(entry) = entry else { continue };
            let dir = entry.path();
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(REMOVING_PREFIX)
            {
                // A removal the last daemon had taken out of sight but not finished deleting.
                if let Err(e) = delete_removed_dir(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot delete a removed container's files");
                }
                continue;
            }
            me.restore(&dir, &mut found);
        }
        me.remove_stale_bundles();
        me.spawn_exec_gc();
        // Before any restart, so that a volume is not unmounted under a container starting.
        me.release_volumes_after_adoption(&found.exited_while_down);
        if !found.to_remove.is_empty() {
            let me2 = me.clone();
            me.spawn(async move {
                for c in found.to_remove {
                    if let Err(e) = me2.remove_container(&c, true, true).await {
                        tracing::warn!(id = %c.id, error = %e, "auto-remove failed");
                    }
                }
            });
        }
        if !found.to_restart.is_empty() {
            let me2 = me.clone();
            me.spawn(async move {
                for c in found.to_restart {
                    if let Err(e) = me2.start_container(&c).await {
                        tracing::warn!(id = %c.id, error = %e, "cannot restart container on daemon start");
                    }
                }
            });
        }
        Ok(me)
    }

    /// The service with no container loaded yet.
    fn empty(
        opts: Options,
        images: Arc<ImageStore>,
        events: Arc<dyn EventSink>,
    ) -> Result<Containers> {
        let root = opts.data_root.join("containers");
        std::fs::create_dir_all(&root).map_err(|e| ContainerError::io("create", &root, e))?;
        std::fs::create_dir_all(&opts.run_root)
            .map_err(|e| ContainerError::io("create", &opts.run_root, e))?;
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        let init = opts.data_root.join("bin/docker-init");
        let init_path = match berth_runtime::init::install(&init) {
            Ok(()) => Some(init),
            Err(e) => {
                tracing::warn!(error = %e, "cannot install docker-init; --init is unavailable");
                None
            }
        };
        let volumes = Arc::new(berth_volume::VolumeStore::open(&opts.data_root)?);
        let rt = tokio::runtime::Handle::try_current().map_err(|e| {
            ContainerError::Internal(format!("the container service needs a tokio runtime: {e}"))
        })?;
        let remap_ns = match &opts.remap {
            Some(map) => Some(berth_runtime::idmap::user_namespace(map).map_err(|e| {
                ContainerError::Internal(format!(
                    "cannot make a user namespace for the remapped root: {e}"
                ))
            })?),
            None => None,
        };
        Ok(Containers {
            inner: Arc::new(Inner {
                remap_ns,
                root,
                opts,
                images,
                events,
                table: Mutex::new(Table::default()),
                execs: Mutex::new(HashMap::new()),
                ncpu,
                init_path,
                volumes,
                rt,
                tasks: TaskTracker::new(),
                stopping: CancellationToken::new(),
            }),
        })
    }

    /// Loads the container in `dir`: adopts its shim or records how it ended, and notes in
    /// `found` what is to be done with it once all are loaded.
    fn restore(&self, dir: &Path, found: &mut Restored) {
        let rec = match Record::load(dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable container record");
                return;
            }
        };
        let c = Container::new(rec.clone(), self.paths_of(&rec.id));
        {
            let mut t = lock(&self.inner.table);
            t.names.insert(rec.name.clone(), rec.id.clone());
            t.by_id.insert(rec.id.clone(), c.clone());
        }
        self.load_execs(dir);
        match rec.state.status {
            Status::Running | Status::Paused => {
                self.adopt(&c);
                if !c.record().state.status.is_running() {
                    found.exited_while_down.push(c.clone());
                }
            }
            Status::Restarting | Status::Removing => {
                let _ = c.update(|r| r.state.status = Status::Exited);
            }
            _ => {}
        }
        if !c.record().state.status.is_running() {
            self.end_unrecorded_start(&c);
        }
        self.resume_execs(&c);
        let r = c.record();
        if r.host_config.auto_remove && !r.state.status.is_running() {
            // Its run ended while no daemon was there to remove it, or it was never
            // started (its client died after the create): removed, as Docker's restore.
            found.to_remove.push(c);
            return;
        }
        if !r.state.status.is_running()
            && r.state.started_at.is_some()
            && restart::restart_on_daemon_start(
                r.restart_policy(),
                r.state.exit_code,
                r.state.manually_stopped,
                r.restart_count,
            )
        {
            found.to_restart.push(c);
        }
    }

    /// Removes the bundles of containers that are gone (removed while a crash interrupted,
    /// say).
    fn remove_stale_bundles(&self) {
        let run_root = &self.inner.opts.run_root;
        for e in std::fs::read_dir(run_root).into_iter().flatten().flatten() {
            let known = lock(&self.inner.table)
                .by_id
                .contains_key(&*e.file_name().to_string_lossy());
            if !known {
                super::orphans::end_unsupervised_shim(&e.path());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Ends what runs for a container its record does not call running: the last daemon was
    /// killed while starting it (after the shim was released, before the record said
    /// running), so no client was told it started and nobody supervises it. Left alone, its
    /// processes and shim would outlive the container's removal.
    pub(super) fn end_unrecorded_start(&self, c: &Arc<Container>) {
        let shim = super::orphans::end_unsupervised_shim(&c.paths.run);
        let cg = c.cgroup_path();
        if !shim && cgroup::pids(&cg).is_empty() {
            return;
        }
        tracing::warn!(id = %c.id, "ending a container whose start the last daemon did not record");
        self.release_leftovers(c, true);
    }

    /// Frees what an unsupervised container left behind: its processes (when asked: a shim
    /// that died without recording an exit, or a start nobody recorded), its mounts and its
    /// network endpoint.
    pub(super) fn release_leftovers(&self, c: &Arc<Container>, kill_processes: bool) {
        if kill_processes {
            let cg = c.cgroup_path();
            if cgroup::kill_all(&cg, Duration::from_secs(10)) {
                cgroup::remove(&cg);
            }
        }
        let _ = rootfs::unmount(&c.paths.rootfs());
        let _ = rootfs::unmount(&c.paths.shm());
        if let Some(net) = self.inner.opts.network.clone() {
            let id = c.id.clone();
            self.spawn(async move { net.0.stop(&id).await });
        }
    }

    /// Reattaches to a running container's shim, or records how it ended.
    pub(super) fn adopt(&self, c: &Arc<Container>) {
        // Bundles of daemons before the exec-root split were in the container's directory.
        let dir = if !c.paths.run.exists() && c.paths.dir.join("shim.pid").exists() {
            c.paths.dir.clone()
        } else {
            c.paths.run.clone()
        };
        match ShimHandle::connect(&dir) {
            Ok(h) if matches!(h.state(), Ok(s) if s.status == berth_runtime::shim::ContainerStatus::Running) =>
            {
                let pid = h.pid();
                if let Err(e) = Bundle::new(&dir).ensure_seccomp_program() {
                    tracing::warn!(id = %c.id, error = %e, "no seccomp program for execs into this container");
                }
                let _ = c.update(|r| r.state.pid = pid as i64);
                *lock(&c.shim) = Some(h.clone());
                tracing::info!(id = %c.id, pid, "adopted running container");
                // A daemon that died while another container joined this one's PID
                // namespace left it frozen (see `pid_peers`); a user's pause is recorded.
                let r = c.record();
                if r.state.status == Status::Running {
                    let _ = cgroup::freeze(&cgroup_of(&r, &c.paths), false);
                }
                self.spawn_watcher(c.clone(), h);
                self.start_health(c);
            }
            _ => {
                let exit = Bundle::new(&dir).read_exit().ok().flatten();
                tracing::info!(id = %c.id, ?exit, "container exited while the daemon was down");
                // A shim that died without recording an exit: end what it left running.
                self.release_leftovers(c, exit.is_none());
                let Ended {
                    code,
                    finished,
                    oom,
                    error,
                } = Ended::from_shim(exit.ok_or(RuntimeError::ShimGone { bundle: dir }));
                let _ = c.update(|r| {
                    r.state.status = Status::Exited;
                    r.state.pid = 0;
                    r.state.exit_code = code;
                    r.state.finished_at = Some(finished);
                    r.state.oom_killed = oom;
                    r.state.error = error;
                });
                c.publish(|s| {
                    s.running = false;
                    s.exit_code = code;
                });
            }
        }
    }
}
