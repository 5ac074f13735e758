//! `rm` and `rename`, and the deletion of a removed container's files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::rootfs;

use super::{Container, Containers, blocking, lock};
use crate::error::{ContainerError, Result, conflict, invalid};
use crate::record::{Paths, Status};
use crate::{cgroup, names};

impl Containers {
    /// `DELETE /containers/{id}`.
    pub async fn remove(&self, key: &str, force: bool) -> Result<()> {
        let c = self.get(key)?;
        self.remove_named(&c, key, force, false).await
    }

    /// `DELETE /containers/{id}?v=1`: also removes the container's anonymous volumes.
    pub async fn remove_with_volumes(&self, key: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.get(key)?;
        self.remove_named(&c, key, force, volumes).await
    }

    pub(super) async fn remove_container(
        &self,
        c: &Arc<Container>,
        force: bool,
        remove_volumes: bool,
    ) -> Result<()> {
        self.remove_named(c, &c.record().slash_name(), force, remove_volumes)
            .await
    }

    /// Removes `c`; `key` is how the request named it (dockerd's messages repeat it).
    pub(super) async fn remove_named(
        &self,
        c: &Arc<Container>,
        key: &str,
        force: bool,
        remove_volumes: bool,
    ) -> Result<()> {
        let _op = c.op.lock().await;
        if !lock(&self.inner.table).by_id.contains_key(&c.id) {
            return Err(ContainerError::NotFound(c.id.clone()));
        }
        let r = c.record();
        match r.state.status {
            Status::Paused if !force => {
                return Err(conflict(format!(
                    "cannot remove container \"{key}\": container is paused and must be unpaused first"
                )));
            }
            Status::Running | Status::Restarting if !force => {
                return Err(conflict(format!(
                    "cannot remove container \"{key}\": container is {}: stop the container before removing or force remove",
                    r.state.status.as_str()
                )));
            }
            // Its pending restart finds it no longer restarting, and gives up.
            Status::Restarting => {
                c.update(|r| {
                    r.state.manually_stopped = true;
                    r.state.status = Status::Exited;
                })?;
            }
            Status::Running | Status::Paused => {
                c.mark_manually_stopped(|_| {});
                let _ = self.signal(c, 9).await;
                if !Self::wait_stopped(c, Some(Duration::from_secs(30))).await {
                    return Err(ContainerError::Internal(format!(
                        "cannot remove container \"{}\": could not kill it",
                        r.slash_name()
                    )));
                }
            }
            Status::Removing => {
                return Err(conflict(format!(
                    "removal of container {key} is already in progress"
                )));
            }
            _ => {}
        }
        c.mark_removing();
        lock(&c.pending).clear();
        let paths = c.paths.clone();
        let cg = self.cgroup_path(&r);
        blocking(move || {
            // The rootfs (and an --ipc shareable /dev/shm) is unmounted with the directory's
            // deletion, in the background (see remove_container_dir).
            cgroup::remove(&cg);
            // The bundle is on a tmpfs: removed at once, before the name is free again.
            if let Err(e) = std::fs::remove_dir_all(&paths.run)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %paths.run.display(), error = %e, "cannot remove a container's bundle");
            }
            remove_container_dir(&paths.dir)
        })
        .await??;
        if let Some(n) = &self.inner.opts.network {
            n.0.remove(&c.id).await;
        }
        // Their records went with the container's directory.
        lock(&self.inner.execs).retain(|_, e| e.container_id != c.id);
        {
            let mut t = lock(&self.inner.table);
            t.by_id.remove(&c.id);
            let name = c.record().name;
            if t.names.get(&name) == Some(&c.id) {
                t.names.remove(&name);
            }
        }
        self.event(c, "destroy", &[]);
        if remove_volumes {
            self.remove_anonymous_volumes(&r).await;
        }
        c.publish(|s| s.removed = true);
        Ok(())
    }

    /// `POST /containers/{id}/rename`.
    pub async fn rename(&self, key: &str, new_name: &str) -> Result<()> {
        let c = self.get(key)?;
        if new_name.is_empty() {
            return Err(invalid("Neither old nor new names may be empty"));
        }
        let new = names::validate(new_name)?;
        let _op = c.op.lock().await;
        let old = c.record().name;
        if old == new {
            return Err(invalid(
                "Renaming a container with the same name as its current name",
            ));
        }
        {
            let mut t = lock(&self.inner.table);
            if let Some(other) = t.names.get(&new) {
                return Err(conflict(format!(
                    "Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            t.names.remove(&old);
            t.names.insert(new.clone(), c.id.clone());
        }
        c.update(|r| r.name = new.clone())?;
        if let Some(n) = &self.inner.opts.network {
            n.0.rename(&c.id, &new);
        }
        self.event(&c, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }
}

/// Deletes a removed container's directory (usually renamed out of sight), unmounting first
/// what the daemon mounted in it; never deletes through a mount that is still there.
pub(super) fn delete_removed_dir(hidden: &Path) -> Result<()> {
    let paths = Paths {
        dir: hidden.to_path_buf(),
        run: PathBuf::new(),
    };
    for m in [paths.rootfs(), paths.shm()] {
        let _ = rootfs::unmount(&m);
        if rootfs::is_mounted(&m) {
            return Err(ContainerError::Internal(format!(
                "{} is still mounted; its directory is kept",
                m.display()
            )));
        }
    }
    std::fs::remove_dir_all(hidden).map_err(|e| ContainerError::io("remove", hidden, e))
}

/// Name prefix of a removed container's directory whose contents are still being deleted.
pub(super) const REMOVING_PREFIX: &str = ".removing-";

/// Remove a container's directory. It is first renamed out of sight (one atomic rename, so
/// the container is gone from disk at once and a restarted daemon never loads it again);
/// its files, the writable layer among them (often thousands of entries), are deleted on
/// a thread of their own, so `rm` and `run --rm` need not wait for them. Leftovers of a
/// crash are deleted when the daemon next opens the containers directory.
pub(super) fn remove_container_dir(dir: &Path) -> Result<()> {
    let Some(name) = dir.file_name() else {
        return delete_removed_dir(dir);
    };
    let hidden = dir.with_file_name(format!("{REMOVING_PREFIX}{}", name.to_string_lossy()));
    match std::fs::rename(dir, &hidden) {
        Ok(()) => {
            let spawned = std::thread::Builder::new()
                .name("remove-container".into())
                .spawn({
                    let hidden = hidden.clone();
                    move || {
                        if let Err(e) = delete_removed_dir(&hidden) {
                            tracing::warn!(dir = %hidden.display(), error = %e, "cannot delete a removed container's files");
                        }
                    }
                });
            if spawned.is_err() {
                delete_removed_dir(&hidden)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => delete_removed_dir(dir),
    }
}
