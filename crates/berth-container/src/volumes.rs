//! Containers and volumes: resolving a new container's mounts (creating the volumes and `-v`
//! host directories they need), turning a record's mounts into runtime mounts at start
//! (mounting volumes' driver options, copying image content into new volumes), and what the
//! volume endpoints need to know about containers (which ones use a volume). The store and the
//! parsing are `berth-volume`'s.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_api::models::HostConfig;
use berth_runtime::config::{MountKind as RunMountKind, MountSpec};
use berth_volume::spec::{self, MountEntry, MountKind, Planned};
use berth_volume::{ANONYMOUS_LABEL, VolumeError, VolumeStore};

use crate::error::{ContainerError, Result, invalid};
use crate::record::Record;

impl From<VolumeError> for ContainerError {
    fn from(e: VolumeError) -> Self {
        match e.kind() {
            berth_api::ErrorKind::NotFound if matches!(e, VolumeError::Lookup(..)) => {
                ContainerError::NotFound(
                    e.to_string()
                        .trim_start_matches("No such container: ")
                        .to_string(),
                )
            }
            berth_api::ErrorKind::NotFound => ContainerError::PathNotFound(e.to_string()),
            berth_api::ErrorKind::InvalidArgument => ContainerError::Invalid(e.to_string()),
            berth_api::ErrorKind::Conflict => ContainerError::Conflict(e.to_string()),
            _ => ContainerError::Internal(e.to_string()),
        }
    }
}

/// A new container's mounts, resolved: volumes exist (created when missing, anonymous ones
/// with generated names) and `-v` host directories exist. Returns the entries and the names
/// of the volumes created here (for `create` events). On error nothing is left created.
pub(crate) fn resolve(
    store: &VolumeStore,
    host: &HostConfig,
    image_volumes: &[String],
    from: &mut dyn FnMut(&str) -> Result<Vec<MountEntry>, VolumeError>,
) -> Result<(Vec<MountEntry>, Vec<String>)> {
    let planned = spec::plan(host, image_volumes, from)?;
    // Check everything before changing anything.
    for p in &planned {
        let e = &p.entry;
        if e.kind == MountKind::Bind
            && !e.create_source
            && std::fs::symlink_metadata(&e.source).is_err()
        {
            return Err(invalid(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                e.source
            )));
        }
    }
    let mut created: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(planned.len());
    let result = (|| -> Result<()> {
        for Planned {
            mut entry,
            volume_labels,
            volume_options,
        } in planned
        {
            match entry.kind {
                MountKind::Bind
                    if entry.create_source && std::fs::symlink_metadata(&entry.source).is_err() =>
                {
                    std::fs::create_dir_all(&entry.source).map_err(|e| {
                        ContainerError::io("create bind source", Path::new(&entry.source), e)
                    })?;
                }
                MountKind::Volume if entry.source.is_empty() => {
                    let labels = if entry.anonymous {
                        let mut l = volume_labels.unwrap_or_default();
                        l.insert(ANONYMOUS_LABEL.into(), String::new());
                        Some(l)
                    } else {
                        volume_labels
                    };
                    let name = (!entry.anonymous).then_some(entry.name.as_str());
                    let (meta, new) = store.create(name, &entry.driver, volume_options, labels)?;
                    if new {
                        created.push(meta.name.clone());
                    }
                    entry.name = meta.name.clone();
                    entry.driver = meta.driver.clone();
                    entry.source = store.data_dir(&meta.name).display().to_string();
                }
                _ => {}
            }
            out.push(entry);
        }
        Ok(())
    })();
    if let Err(e) = result {
        for name in &created {
            let _ = store.remove(name);
        }
        return Err(e);
    }
    Ok((out, created))
}

/// The mounts of a record: what create resolved, or for records from before volumes existed,
/// their binds and tmpfs parsed again.
pub(crate) fn entries(r: &Record) -> Vec<MountEntry> {
    if !r.mounts.is_empty() {
        return r.mounts.clone();
    }
    let h = &r.host_config;
    if h.binds.is_none() && h.mounts.is_none() && h.tmpfs.is_none() {
        return Vec::new();
    }
    let legacy = HostConfig {
        binds: h.binds.clone(),
        mounts: h.mounts.clone(),
        tmpfs: h.tmpfs.clone(),
        ..Default::default()
    };
    spec::plan(&legacy, &[], &mut |_| Ok(Vec::new()))
        .map(|p| p.into_iter().map(|p| p.entry).collect())
        .unwrap_or_default()
}

/// Runtime mounts for a container about to start on the root filesystem mounted at `root`:
/// volumes with driver options are mounted, and new volumes over image content are filled
/// with it (unless `nocopy`).
pub(crate) fn runtime_mounts(
    store: &VolumeStore,
    r: &Record,
    root: &Path,
    remap: Option<berth_runtime::idmap::IdMapping>,
) -> Result<Vec<MountSpec>> {
    let mut specs = Vec::new();
    for e in entries(r) {
        let mut options = Vec::new();
        let kind = match e.kind {
            MountKind::Bind => {
                if std::fs::symlink_metadata(&e.source).is_err() {
                    if !e.create_source {
                        return Err(invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            e.source
                        )));
                    }
                    std::fs::create_dir_all(&e.source).map_err(|err| {
                        ContainerError::io("create bind source", Path::new(&e.source), err)
                    })?;
                }
                if e.non_recursive {
                    options.push("bind".into());
                }
                if e.propagation != "rprivate" && !e.propagation.is_empty() {
                    options.push(e.propagation.clone());
                }
                RunMountKind::Bind {
                    source: PathBuf::from(&e.source),
                }
            }
            MountKind::Volume => {
                let data = store.mount(&e.name)?;
                if e.copy_data
                    && let Some(image_dir) = berth_volume::copy::dir_in_root(root, &e.destination)
                {
                    // From the remapped root's view: owners are already shifted.
                    berth_volume::copy::copy_up(&image_dir, &data)?;
                }
                // A new volume belongs to the remapped root, as dockerd's local driver
                // creates it under remapping; one already given away is left alone.
                if let Some(map) = remap {
                    use std::os::unix::fs::MetadataExt;
                    if std::fs::metadata(&data).is_ok_and(|m| m.uid() == 0 && m.gid() == 0) {
                        map.chown_to_root(&data).map_err(|err| {
                            ContainerError::io("chown to the remapped root", &data, err)
                        })?;
                    }
                }
                let source = if e.subpath.is_empty() {
                    data
                } else {
                    subpath_in_volume(&data, &e.subpath, &e.name)?
                };
                RunMountKind::Bind { source }
            }
            MountKind::Tmpfs => {
                options = e.tmpfs_options.clone();
                RunMountKind::Tmpfs
            }
        };
        specs.push(MountSpec {
            destination: e.destination.clone(),
            kind,
            readonly: !e.rw,
            options,
        });
    }
    Ok(specs)
}

/// Volume event attributes for a container's mount.
pub(crate) fn mount_event_attrs(id: &str, e: &MountEntry) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("container".to_string(), id.to_string()),
        ("destination".to_string(), e.destination.clone()),
        ("driver".to_string(), e.driver.clone()),
        ("propagation".to_string(), e.propagation.clone()),
        ("read/write".to_string(), e.rw.to_string()),
    ])
}

/// Names of the volumes a record mounts.
pub(crate) fn volume_names(r: &Record) -> impl Iterator<Item = String> {
    entries(r)
        .into_iter()
        .filter(|e| e.kind == MountKind::Volume)
        .map(|e| e.name)
}

/// Docker's `Mounts` of a record (without `--tmpfs` entries, which Docker does not list).
pub(crate) fn mount_points(r: &Record) -> Vec<berth_api::models::MountPoint> {
    entries(r)
        .iter()
        .filter(|e| !e.hidden)
        .map(MountEntry::mount_point)
        .collect()
}

/// Which volumes `GET /volumes`, `volume prune` and `system df` select.
#[derive(Debug, Default)]
pub struct VolumeFilter {
    pub dangling: Option<bool>,
    pub names: Vec<String>,
    pub labels: Vec<String>,
    pub not_labels: Vec<String>,
    pub drivers: Vec<String>,
    /// Prune: named volumes too (`all=true`).
    pub all: bool,
}

impl VolumeFilter {
    /// The `filters` of `GET /volumes`.
    pub fn for_list(f: &berth_api::Filters) -> std::result::Result<Self, berth_api::ApiError> {
        f.validate(&["dangling", "name", "label", "driver"])?;
        Ok(VolumeFilter {
            dangling: f.get_bool("dangling")?,
            names: f.get("name").into_iter().map(str::to_string).collect(),
            labels: f.get("label").into_iter().map(str::to_string).collect(),
            drivers: f.get("driver").into_iter().map(str::to_string).collect(),
            ..Default::default()
        })
    }

    /// The `filters` of `POST /volumes/prune`.
    pub fn for_prune(f: &berth_api::Filters) -> std::result::Result<Self, berth_api::ApiError> {
        f.validate(&["label", "label!", "all"])?;
        Ok(VolumeFilter {
            labels: f.get("label").into_iter().map(str::to_string).collect(),
            not_labels: f.get("label!").into_iter().map(str::to_string).collect(),
            all: f.get_bool("all")?.unwrap_or(false),
            ..Default::default()
        })
    }

    fn label_hit(labels: &BTreeMap<String, String>, want: &str) -> bool {
        match want.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
            None => labels.contains_key(want),
        }
    }

    fn matches(&self, v: &berth_volume::VolumeMeta, users: usize) -> bool {
        if let Some(d) = self.dangling
            && d != (users == 0)
        {
            return false;
        }
        if !self.names.is_empty()
            && !self.names.iter().any(|n| match regex::Regex::new(n) {
                Ok(re) => re.is_match(&v.name),
                Err(_) => v.name.contains(n.as_str()),
            })
        {
            return false;
        }
        if !self.drivers.is_empty() && !self.drivers.contains(&v.driver) {
            return false;
        }
        let labels = v.labels.clone().unwrap_or_default();
        if !self.labels.iter().all(|l| Self::label_hit(&labels, l)) {
            return false;
        }
        if self.not_labels.iter().any(|l| Self::label_hit(&labels, l)) {
            return false;
        }
        true
    }
}

impl crate::Containers {
    /// Ids of the containers whose records mount the volume (any state).
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .all()
            .into_iter()
            .map(|c| c.record())
            .filter(|r| volume_names(r).any(|n| n == name))
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    }

    fn users_by_volume(&self) -> BTreeMap<String, usize> {
        let mut users = BTreeMap::new();
        for c in self.all() {
            for n in volume_names(&c.record()) {
                *users.entry(n).or_insert(0) += 1;
            }
        }
        users
    }

    /// `GET /volumes`.
    pub fn volume_list(&self, filter: &VolumeFilter) -> Vec<berth_api::models::Volume> {
        let store = self.volume_store();
        let users = self.users_by_volume();
        store
            .list()
            .into_iter()
            .filter(|v| filter.matches(v, users.get(&v.name).copied().unwrap_or(0)))
            .map(|v| store.to_api(&v))
            .collect()
    }

    /// Every volume with its size and number of users (`/system/df`).
    pub fn volume_usage(&self) -> Vec<berth_api::models::Volume> {
        let store = self.volume_store();
        let users = self.users_by_volume();
        store
            .list()
            .into_iter()
            .map(|v| {
                let mut api = store.to_api(&v);
                api.usage_data = Some(berth_api::models::VolumeUsageData {
                    size: store.size(&v.name) as i64,
                    ref_count: users.get(&v.name).copied().unwrap_or(0) as i64,
                });
                api
            })
            .collect()
    }

    /// `POST /volumes/create`.
    pub fn volume_create(
        &self,
        req: berth_api::models::VolumeCreateOptions,
    ) -> Result<berth_api::models::Volume> {
        let store = self.volume_store();
        // A volume created without a name is anonymous, as dockerd's volume service makes it:
        // `volume prune` (API >= 1.42) removes it without `all=true`.
        let mut labels = req.labels;
        if req.name.is_empty() {
            labels
                .get_or_insert_with(Default::default)
                .insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let (meta, created) = store.create(
            Some(req.name.as_str()),
            &req.driver,
            req.driver_opts,
            labels,
        )?;
        if created {
            self.volume_event(
                "create",
                &meta.name,
                [("driver".into(), meta.driver.clone())].into(),
            );
        }
        Ok(store.to_api(&meta))
    }

    /// `GET /volumes/{name}`.
    pub fn volume_inspect(&self, name: &str) -> Result<berth_api::models::Volume> {
        let store = self.volume_store();
        Ok(store.to_api(&store.get(name)?))
    }

    /// `DELETE /volumes/{name}`: refused (409) while any container uses it; `force` makes a
    /// missing volume no error.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let store = self.volume_store();
        let meta = match store.get(name) {
            Ok(m) => m,
            Err(VolumeError::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let _users_lock = store.users_lock();
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(ContainerError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        store.remove(name)?;
        self.volume_event(
            "destroy",
            name,
            [("driver".into(), meta.driver.clone())].into(),
        );
        Ok(())
    }

    /// `POST /volumes/prune`: unused volumes passing the filter (anonymous ones unless
    /// `all`); returns the names removed and the bytes reclaimed.
    pub fn volume_prune(&self, filter: &VolumeFilter) -> Result<(Vec<String>, u64)> {
        let store = self.volume_store();
        let users = self.users_by_volume();
        let mut removed = Vec::new();
        let mut space = 0;
        for v in store.list() {
            if users.contains_key(&v.name)
                || (!filter.all && !v.is_anonymous())
                || !filter.matches(&v, 0)
            {
                continue;
            }
            let size = store.size(&v.name);
            if self.volume_remove(&v.name, false).is_ok() {
                removed.push(v.name.clone());
                space += size;
            }
        }
        self.volume_event(
            "prune",
            "",
            [("reclaimed".into(), space.to_string())].into(),
        );
        Ok((removed, space))
    }

    /// Volume `mount` events for a container that started.
    pub(crate) fn volumes_mounted(&self, c: &crate::Container) {
        let r = c.record();
        for e in entries(&r).iter().filter(|e| e.kind == MountKind::Volume) {
            self.volume_event("mount", &e.name, mount_event_attrs(&r.id, e));
        }
    }

    /// After a container stopped: `unmount` events, and volumes with driver options that no
    /// running container uses any more are unmounted.
    pub(crate) async fn volumes_unmounted(&self, c: &crate::Container) {
        self.release_volumes(c, true).await;
    }

    /// Volumes with driver options that no running container uses any more are unmounted;
    /// `events` sends the `unmount` events of a container that ran.
    pub(crate) async fn release_volumes(&self, c: &crate::Container, events: bool) {
        let r = c.record();
        let names: Vec<String> = volume_names(&r).collect();
        if names.is_empty() {
            return;
        }
        let running: Vec<Record> = self
            .all()
            .into_iter()
            .map(|o| o.record())
            .filter(|o| o.id != r.id && o.state.status.is_running())
            .collect();
        for name in names {
            if events {
                self.volume_event(
                    "unmount",
                    &name,
                    [
                        ("container".into(), r.id.clone()),
                        ("driver".into(), "local".into()),
                    ]
                    .into(),
                );
            }
            if !running.iter().any(|o| volume_names(o).any(|n| n == name)) {
                let store = self.volume_store().clone();
                let n = name.clone();
                let res = tokio::task::spawn_blocking(move || store.unmount(&n)).await;
                if let Ok(Err(e)) = res {
                    tracing::warn!(volume = %name, error = %e, "cannot unmount volume");
                }
            }
        }
    }

    /// At daemon start, for containers that stopped while the daemon was away: their volumes'
    /// driver-option mounts that no running container uses are unmounted.
    pub(crate) fn release_volumes_after_adoption(
        &self,
        exited: &[std::sync::Arc<crate::Container>],
    ) {
        if exited.is_empty() {
            return;
        }
        let running: Vec<Record> = self
            .all()
            .into_iter()
            .map(|o| o.record())
            .filter(|o| o.state.status.is_running())
            .collect();
        for c in exited {
            for name in volume_names(&c.record()) {
                if running.iter().any(|o| volume_names(o).any(|n| n == name)) {
                    continue;
                }
                if let Err(e) = self.volume_store().unmount(&name) {
                    tracing::warn!(volume = %name, error = %e, "cannot unmount volume");
                }
            }
        }
    }

    /// `rm -v`: the removed container's anonymous volumes that no other container uses.
    pub(crate) async fn remove_anonymous_volumes(&self, r: &Record) {
        for e in entries(r) {
            if e.kind != MountKind::Volume || !e.anonymous {
                continue;
            }
            let me = self.clone();
            let name = e.name.clone();
            let res = tokio::task::spawn_blocking(move || me.volume_remove(&name, true)).await;
            if let Ok(Err(err)) = res {
                tracing::info!(volume = %e.name, error = %err, "anonymous volume kept");
            }
        }
    }
}

/// The host path of `subpath` inside the volume at `data`, with its symlinks resolved inside
/// the volume (as moby's `safepath.Join` does): a link a container planted in the volume
/// (`ln -s / /vol/x`) must not make the bind mount's source a host path.
fn subpath_in_volume(data: &Path, subpath: &str, volume: &str) -> Result<PathBuf> {
    let missing = |detail: String| {
        invalid(format!(
            "cannot access path {}: subpath does not exist in volume {volume}{detail}",
            data.join(subpath).display()
        ))
    };
    let root = rustix::fs::open(
        data,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| ContainerError::io("open volume", data, e.into()))?;
    let (comps, _) = crate::fs::split_container_path(subpath);
    let resolved =
        crate::fs::resolve(&root, &comps, true).map_err(|e| missing(format!(" ({e})")))?;
    let mut source = data.to_path_buf();
    for c in &resolved {
        source.push(std::ffi::OsStr::from_bytes(c));
    }
    // Still a symlink here only if the volume changed meanwhile: refuse rather than follow.
    match std::fs::symlink_metadata(&source) {
        Ok(m) if !m.file_type().is_symlink() => Ok(source),
        _ => Err(missing(String::new())),
    }
}
