//! `POST /containers/create`: the request checked and merged with its image (nothing is
//! created before every check passed), the name reserved, then the record, its volumes,
//! its network endpoint and its directory made, all undone on failure.

use std::sync::Arc;
use std::time::Duration;

use berth_api::models::{ContainerConfig, ContainerCreateRequest, HostConfig, NetworkingConfig};
use berth_api::vocab::NetworkMode;
use berth_runtime::cgroups::CgroupVersion;
use berth_volume::VolumeError;
use berth_volume::spec::MountEntry;
use chrono::Utc;

use super::etc_files::write_etc_files;
use super::{Container, Containers, blocking, lock};
use crate::error::{ContainerError, Result, conflict, invalid};
use crate::network::NetworkRequest;
use crate::record::{Record, Status};
use crate::{merge, names};

/// How long an auto-removed container may stay created (not started) before its records are
/// made durable: `run --rm` starts it within milliseconds; `create --rm` then `start` later
/// must not lose it to a machine crash.
const PERSIST_CREATED_AFTER: Duration = Duration::from_secs(1);

/// A create request once checked and merged with its image.
struct Checked {
    config: ContainerConfig,
    host: HostConfig,
    image_id: String,
    path: String,
    args: Vec<String>,
    /// The image's `Volumes` (anonymous volumes unless a mount covers them).
    image_volumes: Vec<String>,
    warnings: Vec<String>,
}

impl Containers {
    /// `POST /containers/create`: returns the new id and warnings.
    pub async fn create(
        &self,
        name: Option<String>,
        req: ContainerCreateRequest,
    ) -> Result<(String, Vec<String>)> {
        // A start usually follows (`run`): let the kernel's cgroup grace period pass meanwhile.
        berth_runtime::cgroup_warmup::prewarm();
        let me = self.clone();
        let (c, volumes, warnings) = blocking(move || me.create_blocking(name, req)).await??;
        for v in volumes {
            self.volume_event("create", &v, [("driver".into(), "local".into())].into());
        }
        self.event(&c, "create", &[]);
        Ok((c.id.clone(), warnings))
    }

    /// Returns the container, the volumes created for it and the warnings.
    fn create_blocking(
        &self,
        name: Option<String>,
        req: ContainerCreateRequest,
    ) -> Result<(Arc<Container>, Vec<String>, Vec<String>)> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => Some(names::validate(&n)?),
            None => None,
        };
        let mut checked = self.check_create(req.config, req.host_config.unwrap_or_default())?;
        let id = names::new_id();
        if checked.config.hostname.is_empty() {
            checked.config.hostname = if checked.host.network_mode.is_host() {
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned()
            } else {
                id[..12].to_string()
            };
        }
        let links = self.check_links(&checked.host)?;
        let image_volumes = std::mem::take(&mut checked.image_volumes);
        let warnings = std::mem::take(&mut checked.warnings);
        let mut rec = self.reserve_name(&id, name, links.as_deref(), checked)?;
        // Until the record is in the table, no volume it uses may be judged unused.
        let _volume_users = self.inner.volumes.users_lock();
        let mut created_volumes = Vec::new();
        let made = self.make_container(
            &mut rec,
            &image_volumes,
            req.networking_config.as_ref(),
            &mut created_volumes,
        );
        if let Err(e) = made {
            self.undo_create(&rec, &created_volumes);
            return Err(e);
        }
        let auto_remove = rec.host_config.auto_remove;
        let c = Container::new(rec, self.paths_of(&id));
        lock(&self.inner.table).by_id.insert(id, c.clone());
        if auto_remove {
            self.persist_created_later(&c);
        }
        Ok((c, created_volumes, warnings))
    }

    /// dockerd's rules for a remapped container (`--userns host` opts out of all of them).
    fn check_userns(&self, host: &HostConfig) -> Result<()> {
        match host.userns_mode.as_str() {
            "" | "host" => {}
            other => return Err(invalid(format!("invalid USER mode: {other}"))),
        }
        if self.inner.opts.remap.is_none() || host.userns_mode == "host" {
            return Ok(());
        }
        if host.privileged {
            return Err(invalid(
                "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode",
            ));
        }
        if host.network_mode == NetworkMode::Host {
            return Err(invalid(
                "cannot share the host's network namespace when user namespaces are enabled",
            ));
        }
        if host.pid_mode == "host" {
            return Err(invalid(
                "cannot share the host PID namespace when user namespaces are enabled",
            ));
        }
        Ok(())
    }

    /// Checks a request's settings (before the image is looked up, as dockerd) and merges
    /// it with its image; parses and checks every mount. Creates nothing.
    fn check_create(&self, mut config: ContainerConfig, mut host: HostConfig) -> Result<Checked> {
        if config.image.is_empty() {
            return Err(invalid(
                "config cannot be empty in order to create a container",
            ));
        }
        config.working_dir = crate::workdir::translate(&config.working_dir)?;
        host.runtime = self.runtime_name(&host.runtime)?;
        merge::validate_host_config(&host, self.inner.ncpu)?;
        // The host's cpusets are read only for a container that asks for some (not on the
        // run path of every other container).
        let res = &host.resources;
        let host_cpusets = (!res.cpuset_cpus.is_empty() || !res.cpuset_mems.is_empty())
            .then(crate::validate::HostCpusets::read)
            .flatten();
        crate::validate::host_config(&host, host_cpusets.as_ref())?;
        self.check_userns(&host)?;
        let image = self.inner.images.get(&config.image)?;
        let cgroup_v1 = CgroupVersion::host().is_v1();
        let mut warnings = merge::discard_unsupported(&mut host, cgroup_v1);
        warnings.extend(crate::validate::discard_unsupported(&mut host));
        merge::fill_host_defaults(&mut host, cgroup_v1);
        if let Some(img) = &image.config.config {
            merge::merge_image_config(&mut config, img);
        }
        let (path, args) = merge::path_and_args(&config)?;
        if !config.working_dir.is_empty() {
            crate::workdir::check_image(
                &self.inner.images.layer_dirs(&image.id)?,
                &config.working_dir,
            )?;
        }
        let image_volumes: Vec<String> = config
            .volumes
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        berth_volume::spec::plan(&host, &image_volumes, &mut |key| self.mounts_of(key))?;
        Ok(Checked {
            config,
            host,
            image_id: image.id.to_string(),
            path,
            args,
            image_volumes,
            warnings,
        })
    }

    /// The mounts of container `key`, for `--volumes-from`.
    fn mounts_of(&self, key: &str) -> std::result::Result<Vec<MountEntry>, VolumeError> {
        self.get(key)
            .map(|c| crate::volumes::entries(&c.record()))
            .map_err(|e| VolumeError::Lookup(e.kind(), e.to_string()))
    }

    /// Takes the name (or generates one) in the table and makes the record.
    fn reserve_name(
        &self,
        id: &str,
        name: Option<String>,
        links: Option<&[(String, String)]>,
        checked: Checked,
    ) -> Result<Record> {
        let Checked {
            config,
            mut host,
            image_id,
            path,
            args,
            ..
        } = checked;
        let mut t = lock(&self.inner.table);
        let name = match name {
            Some(n) => {
                if let Some(other) = t.names.get(&n) {
                    return Err(conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                    )));
                }
                n
            }
            None => names::generate(&|n| t.names.contains_key(n)),
        };
        // Legacy links, in dockerd's stored form (`/target:/name/alias`).
        if let Some(links) = links {
            host.links = Some(
                links
                    .iter()
                    .map(|(target, alias)| format!("/{target}:/{name}/{alias}"))
                    .collect(),
            );
        }
        t.names.insert(name.clone(), id.to_string());
        // Checked with the rest of the host configuration already: parsed here once for all
        // the container's starts.
        let log = crate::merge::log_driver_config(&host).ok();
        Ok(Record {
            id: id.to_string(),
            name,
            created: Utc::now(),
            image: config.image.clone(),
            image_id,
            path,
            args,
            config,
            host_config: host,
            log,
            ..Default::default()
        })
    }

    /// Makes what the container owns: volumes (named in `created` as they are made), its
    /// network endpoint, its directory and record.
    fn make_container(
        &self,
        rec: &mut Record,
        image_volumes: &[String],
        networking: Option<&NetworkingConfig>,
        created: &mut Vec<String>,
    ) -> Result<()> {
        let (mounts, made) = crate::volumes::resolve(
            &self.inner.volumes,
            &rec.host_config,
            image_volumes,
            &mut |key| self.mounts_of(key),
        )?;
        rec.mounts = mounts;
        *created = made;
        if let Some(net) = &self.inner.opts.network {
            let exposed: Vec<String> = rec
                .config
                .exposed_ports
                .iter()
                .flat_map(|m| m.keys().cloned())
                .collect();
            let mode = net
                .0
                .create(NetworkRequest::new(
                    &rec.id,
                    &rec.name,
                    &rec.host_config,
                    networking,
                    &exposed,
                ))
                .map_err(ContainerError::Network)?;
            rec.host_config.network_mode = NetworkMode::parse(&mode);
        }
        let paths = self.paths_of(&rec.id);
        std::fs::create_dir_all(&paths.dir)
            .map_err(|e| ContainerError::io("create", &paths.dir, e))?;
        write_etc_files(&paths, rec, None)?;
        // An auto-removed container's record lives as long as its run, which a machine
        // crash ends (the daemon then removes it): no wait for the disk. One left created
        // and not started is made durable a moment later (`persist_created_later`).
        rec.save_as(&paths.dir, !rec.host_config.auto_remove)
    }

    /// Undoes a failed [`Containers::make_container`] and frees the name.
    fn undo_create(&self, rec: &Record, created_volumes: &[String]) {
        let paths = self.paths_of(&rec.id);
        let _ = std::fs::remove_dir_all(&paths.dir);
        let _ = std::fs::remove_dir_all(&paths.run);
        for v in created_volumes {
            let _ = self.inner.volumes.remove(v);
        }
        lock(&self.inner.table).names.remove(&rec.name);
        if let Some(net) = self.inner.opts.network.clone() {
            let id = rec.id.clone();
            self.spawn(async move { net.0.remove(&id).await });
        }
    }

    /// Makes an auto-removed container's records durable if it is still created (not
    /// started) after [`PERSIST_CREATED_AFTER`].
    fn persist_created_later(&self, c: &Arc<Container>) {
        let me = self.clone();
        let c = c.clone();
        self.spawn(async move {
            tokio::time::sleep(PERSIST_CREATED_AFTER).await;
            let _op = c.op.lock().await;
            let exists = lock(&me.inner.table).by_id.contains_key(&c.id);
            if exists && c.record().state.status == Status::Created {
                if let Err(e) = c.record().save(&c.paths.dir) {
                    tracing::warn!(id = %c.id, error = %e, "cannot write container record");
                }
                if let Some(n) = &me.inner.opts.network {
                    n.0.persist(&c.id);
                }
            }
        });
    }
}
