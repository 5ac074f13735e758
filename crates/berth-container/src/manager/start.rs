//! `POST /containers/{id}/start` and every other start (restart policies, daemon start):
//! the shim, the network and the bundle.

use std::path::PathBuf;
use std::sync::Arc;

use berth_api::vocab::NamespaceMode;
use berth_runtime::shim::PendingShim;
use berth_runtime::spec::RealHost;
use berth_runtime::{Shim, ShimHandle, rootfs};
use chrono::Utc;

use super::etc_files::write_etc_files;
use super::{Container, Containers, PendingAttach, blocking, lock};
use crate::error::{ContainerError, Result, conflict};
use crate::network::NetworkStart;
use crate::record::{Paths, Record, Status};

impl Containers {
    /// `POST /containers/{id}/start`: `Ok(false)` when it already runs (304).
    pub async fn start(&self, key: &str) -> Result<bool> {
        let c = self.get(key)?;
        berth_runtime::cgroup_warmup::prewarm();
        let _op = c.op.lock().await;
        match c.record().state.status {
            Status::Running | Status::Paused => return Ok(false),
            Status::Removing => {
                return Err(conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    c.id
                )));
            }
            _ => {}
        }
        let _ = c.update(|r| r.state.manually_stopped = false);
        *lock(&c.backoff) = None;
        self.start_locked(&c).await.map(|()| true)
    }

    pub(super) async fn start_container(&self, c: &Arc<Container>) -> Result<()> {
        let _op = c.op.lock().await;
        if c.record().state.status.is_running() {
            return Ok(());
        }
        self.start_locked(c).await
    }

    /// Starts a container; the caller holds its operation lock.
    pub(super) async fn start_locked(&self, c: &Arc<Container>) -> Result<()> {
        // The shim starts first and waits for its bundle: its own start-up overlaps the
        // network's and the bundle's preparation.
        let shim = std::fs::create_dir_all(&c.paths.run)
            .map_err(|e| ContainerError::io("create", &c.paths.run, e))
            .and_then(|()| Ok(Shim::prepare(&c.paths.run, &self.inner.opts.shim_binary)?));
        let net = match (&self.inner.opts.network, shim) {
            (_, Err(e)) => Err(e),
            (Some(n), Ok(shim)) => {
                n.0.start(&c.id)
                    .await
                    .map_err(ContainerError::Network)
                    .and_then(|mut net| {
                        self.resolve_links(c, &mut net)?;
                        Ok((net, shim))
                    })
            }
            (None, Ok(shim)) => Ok((NetworkStart::default(), shim)),
        };
        let started = match net {
            Ok((net, shim)) => {
                let me = self.clone();
                let c2 = c.clone();
                blocking(move || me.start_blocking(&c2, &net, shim)).await?
            }
            Err(e) => Err(e),
        };
        if started.is_err() {
            self.network_stop(&c.id).await;
        }
        match started {
            Ok(h) => {
                let pid = h.pid();
                *lock(&c.shim) = Some(h.clone());
                c.update(|r| {
                    r.state.status = Status::Running;
                    r.state.pid = pid as i64;
                    r.state.exit_code = 0;
                    r.state.error.clear();
                    r.state.oom_killed = false;
                    r.state.started_at = Some(Utc::now());
                })?;
                c.publish(|s| s.running = true);
                // Clients that attached while the start was under way.
                let late: Vec<PendingAttach> = std::mem::take(&mut *lock(&c.pending));
                if !late.is_empty() {
                    let h2 = h.clone();
                    self.spawn_blocking(move || {
                        for p in late {
                            let _ = p.tx.send(h2.attach(p.stdin, p.stdout, p.stderr));
                        }
                    });
                }
                self.spawn_watcher(c.clone(), h);
                self.start_health(c);
                self.volumes_mounted(c);
                self.event(c, "start", &[]);
                Ok(())
            }
            Err(e) => {
                let code = match &e {
                    ContainerError::Runtime(r) => r.docker_exit_code().unwrap_or(128),
                    _ => 128,
                } as i64;
                let msg = e.to_string();
                lock(&c.pending).clear();
                self.release_volumes(c, false).await;
                let _ = c.update(|r| {
                    r.state.error = msg.clone();
                    r.state.exit_code = code;
                    if r.state.status == Status::Restarting {
                        r.state.status = Status::Exited;
                    }
                });
                // Waiters for the next exit and attached clients learn of the failure as
                // an exit; an AutoRemove container goes away, as with Docker.
                c.publish(|s| {
                    s.exit_code = code;
                    s.exits += 1;
                });
                if c.record().host_config.auto_remove {
                    let me = self.clone();
                    let c = c.clone();
                    self.spawn(async move {
                        let _ = me.remove_container(&c, true, true).await;
                    });
                }
                Err(e)
            }
        }
    }

    /// The lower layers of a container's root filesystem, bottom first: the image's, then its
    /// init layer (`rootfs::ensure_init_layer`, made at the first start of the image, kept
    /// beside its top layer and removed with it).
    pub(crate) fn rootfs_layers(&self, image: &berth_image::Digest) -> Result<Vec<PathBuf>> {
        let mut layers = self.inner.images.layer_dirs(image)?;
        let init = layers
            .last()
            .and_then(|top| top.parent())
            .map(|d| d.join("init"));
        if let Some(init) = init {
            match rootfs::ensure_init_layer(&layers, &init) {
                Ok(Some(dir)) => layers.push(dir),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "no init layer; mountpoints go to the writable layer")
                }
            }
        }
        Ok(layers)
    }

    pub(super) fn start_blocking(
        &self,
        c: &Container,
        net: &NetworkStart,
        shim: PendingShim,
    ) -> Result<ShimHandle> {
        // Also for starts that are not requests (restart policies, daemon start).
        berth_runtime::cgroup_warmup::prewarm();
        let r = c.record();
        let image = self.inner.images.get(&r.image_id)?;
        let layers = self.rootfs_layers(&image.id)?;
        // /etc/hosts and resolv.conf carry the addresses just allocated.
        write_etc_files(&c.paths, &r, Some(net))?;
        if let Some(map) = self.remap_of(&r) {
            // The container's root may edit them, as under dockerd's remapping.
            for f in [c.paths.hostname(), c.paths.hosts(), c.paths.resolv_conf()] {
                map.chown_to_root(&f)
                    .map_err(|e| ContainerError::io("chown to the remapped root", &f, e))?;
            }
        }
        let root = self.mount_rootfs(&r, &layers, &c.paths.dir)?;
        let result = crate::workdir::ensure(&root, &r.config.working_dir)
            .and_then(|()| self.prepare_ipc(&r, &c.paths))
            .and_then(|()| self.run_config(&r, &c.paths, &root, net))
            .and_then(|cfg| {
                let bundle = c.paths.bundle();
                let _ = std::fs::remove_file(bundle.exit_path());
                bundle.write(&cfg, &RealHost)?;
                let pending: Vec<PendingAttach> = std::mem::take(&mut *lock(&c.pending));
                if pending.is_empty() {
                    return Ok(self.with_pid_peers_frozen(&r, || shim.spawn())?);
                }
                // Clients attached before start see all the output: the shim gets their
                // streams with its release and registers them before it reads any.
                let flags: Vec<_> = pending
                    .iter()
                    .map(|p| (p.stdin, p.stdout, p.stderr))
                    .collect();
                let (h, streams) =
                    self.with_pid_peers_frozen(&r, || shim.spawn_attached(&flags))?;
                for (p, s) in pending.into_iter().zip(streams) {
                    let _ = p.tx.send(Ok(s));
                }
                Ok(h)
            });
        if result.is_err() {
            let _ = rootfs::unmount(&root);
            let _ = rootfs::unmount(&c.paths.shm());
        }
        result
    }

    /// `--ipc shareable` keeps `/dev/shm` on the host side so other containers can join it.
    pub(super) fn prepare_ipc(&self, r: &Record, paths: &Paths) -> Result<()> {
        if r.ipc_mode() == NamespaceMode::Shareable {
            let size = if r.host_config.shm_size > 0 {
                r.host_config.shm_size as u64
            } else {
                berth_runtime::spec::DEFAULT_SHM_SIZE
            };
            rootfs::mount_shm(&paths.shm(), size)?;
        }
        Ok(())
    }
}
