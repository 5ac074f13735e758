//! [`Containers`]: the container service. It owns the records under `containers/<id>/`, the
//! name table, the state machine and one watcher per running container (a blocking thread
//! waiting on the shim, then an async task recording the exit and applying the restart
//! policy). Operations on one container are serialised by its operation lock; reads take
//! only the record's mutex.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_api::models::container::ExecProcessConfig;
use berth_api::models::container::{SummaryHostConfig, SummaryNetworkSettings};
use berth_api::models::{
    ContainerCreateRequest, ContainerInspect, ContainerState, ContainerSummary, DriverData,
    MountPoint, NetworkSettings,
};
use berth_api::models::{ExecConfig as ApiExecConfig, ExecInspect};
use berth_image::{ContainerUse, Digest, ImageStore};
use berth_runtime::cgroups::CgroupVersion;
use berth_runtime::config::LogConfig as RunLogConfig;
use berth_runtime::config::{
    ContainerRunConfig, DeviceSpec, MountKind, MountSpec, NamespaceMode, NamespaceModes, Resources,
    SeccompMode, Ulimit,
};
use berth_runtime::shim::{AttachStream, ExecConfig as ShimExecConfig, PendingShim};
use berth_runtime::spec::RealHost;
use berth_runtime::{Bundle, ExitRecord, RuntimeError, Shim, ShimHandle, rootfs};
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::error::{ContainerError, Result, conflict, invalid};
use crate::exit::Ended;
use crate::filters::ListFilter;
use crate::logs::{self, LogOptions};
use crate::network::{NetworkHandle, NetworkRequest, NetworkStart};
use crate::record::{Paths, Record, Status, go_time};
use crate::restart::{self, Policy};
use crate::status::{StatusView, command_text, status_text};
use crate::{cgroup, etc, merge, names, signal, user};

/// Where container events go (the daemon's event bus).
pub trait EventSink: Send + Sync {
    /// A container event; `attributes` already carry name, image and labels.
    fn container_event(&self, action: &str, id: &str, attributes: BTreeMap<String, String>);
    /// A volume event (`create`, `mount`, `unmount`, `destroy`, `prune`).
    fn volume_event(&self, action: &str, name: &str, attributes: BTreeMap<String, String>);
}

/// How the service runs containers.
#[derive(Debug, Clone)]
pub struct Options {
    /// The daemon's data root; containers live in `<data_root>/containers`.
    pub data_root: PathBuf,
    /// The `berth-shim` executable.
    pub shim_binary: PathBuf,
    /// cgroup parent for containers that do not name one (`/berth`).
    pub cgroup_parent: String,
    /// External OCI runtimes by name (`--add-runtime`, daemon.json `runtimes`).
    pub runtimes: BTreeMap<String, berth_runtime::config::OciRuntime>,
    /// The runtime of containers that name none; [`EMBEDDED_RUNTIME`] is libcontainer.
    pub default_runtime: String,
    /// The network service; without one, containers get a private netns with `lo` only.
    pub network: Option<NetworkHandle>,
    /// Where containers' bundles go (`<exec-root>/containers`; see [`Paths::run`]).
    pub run_root: PathBuf,
}

/// The name of the embedded runtime (libcontainer in the shim), always available.
pub const EMBEDDED_RUNTIME: &str = "berth";

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    /// Parses the `condition` query parameter (empty: `not-running`).
    pub fn parse(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(invalid(format!("invalid condition: {other:?}"))),
        }
    }
}

/// What wait-ers watch: changes with every start, exit and removal.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    running: bool,
    exits: u64,
    exit_code: i64,
    removed: bool,
}

/// One container in memory.
pub struct Container {
    id: String,
    paths: Paths,
    rec: Mutex<Record>,
    op: tokio::sync::Mutex<()>,
    notify: watch::Sender<Snapshot>,
    shim: Mutex<Option<ShimHandle>>,
    backoff: Mutex<Option<Duration>>,
    health: Mutex<Option<crate::health::Monitor>>,
    /// Clients attached before the container started: connected between create and start.
    pending: Mutex<Vec<PendingAttach>>,
}

struct PendingAttach {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tx: tokio::sync::oneshot::Sender<std::result::Result<AttachStream, RuntimeError>>,
}

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Container {
    fn new(rec: Record, paths: Paths) -> Arc<Container> {
        let snap = Snapshot {
            running: rec.state.status.is_running(),
            exit_code: rec.state.exit_code,
            ..Default::default()
        };
        Arc::new(Container {
            id: rec.id.clone(),
            paths,
            rec: Mutex::new(rec),
            op: tokio::sync::Mutex::new(()),
            notify: watch::channel(snap).0,
            shim: Mutex::new(None),
            backoff: Mutex::new(None),
            health: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// A copy of the record.
    pub fn record(&self) -> Record {
        lock(&self.rec).clone()
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's directory (`<data-root>/containers/<id>`: `upper/`, `work/`, `rootfs/`).
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    /// Where the container's files are.
    pub(crate) fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Waits for the operation lock that start, stop and remove take: while it is held the
    /// container's state and its rootfs mount stay as they are.
    pub async fn lock_ops(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.op.lock().await
    }

    /// Changes the record and writes it.
    pub(crate) fn update(&self, f: impl FnOnce(&mut Record)) -> Result<Record> {
        let mut r = lock(&self.rec);
        let before = r.clone();
        f(&mut r);
        if *r == before {
            return Ok(r.clone());
        }
        // A start or an exit changes only the process state: no need to wait for the disk.
        r.save_as(&self.paths.dir, r.differs_beyond_process_state(&before))?;
        Ok(r.clone())
    }

    /// Changes the record in memory only, for states the disk need not know: the directory
    /// is about to go, and a daemon that dies before it does finds the container as it was
    /// and ends the same way (see [`Containers::open`]).
    fn update_in_memory(&self, f: impl FnOnce(&mut Record)) -> Record {
        let mut r = lock(&self.rec);
        f(&mut r);
        r.clone()
    }

    /// Records that the user stopped the container (restart policies honour it). On a full
    /// disk the change stays in memory (the old record stays whole): stop, kill and `rm -f`
    /// are how space is freed and must not fail for it.
    fn mark_manually_stopped(&self, also: impl FnOnce(&mut Record)) {
        if let Err(e) = self.update(|r| {
            r.state.manually_stopped = true;
            also(r);
        }) {
            tracing::warn!(id = %self.id, error = %e, "cannot record the stop; kept in memory");
        }
    }

    /// Marks the container as being removed (in memory: `open` turns `Removing` into
    /// `Exited` anyway).
    fn mark_removing(&self) {
        self.update_in_memory(|r| r.state.status = Status::Removing);
    }

    fn shim(&self) -> Option<ShimHandle> {
        lock(&self.shim).clone()
    }

    fn publish(&self, f: impl FnOnce(&mut Snapshot)) {
        self.notify.send_modify(f);
    }
}

// Accessors for the stats, update and health modules.
impl Container {
    /// The cgroup path the runtime used (`/berth/<id>`), from the bundle's spec.
    pub fn cgroup_path(&self) -> String {
        cgroup_of(&self.record(), &self.paths)
    }

    /// The shim while the container runs.
    pub(crate) fn shim_handle(&self) -> Option<ShimHandle> {
        self.shim()
    }

    /// Changes the record and writes it.
    pub(crate) fn modify(&self, f: impl FnOnce(&mut Record)) -> Result<Record> {
        self.update(f)
    }

    /// Replaces the health monitor (dropping the old one stops it); true if there was one.
    pub(crate) fn set_health_monitor(&self, m: Option<crate::health::Monitor>) -> bool {
        std::mem::replace(&mut *lock(&self.health), m).is_some()
    }
}

impl Containers {
    /// The host's CPU count.
    pub(crate) fn ncpu(&self) -> usize {
        self.inner.ncpu
    }
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<Container>>,
    names: HashMap<String, String>,
}

struct Inner {
    root: PathBuf,
    opts: Options,
    images: Arc<ImageStore>,
    events: Arc<dyn EventSink>,
    table: Mutex<Table>,
    execs: Mutex<HashMap<String, ExecEntry>>,
    ncpu: usize,
    init_path: Option<PathBuf>,
    volumes: Arc<berth_volume::VolumeStore>,
}

/// The container service (cheap to clone).
#[derive(Clone)]
pub struct Containers {
    inner: Arc<Inner>,
}

impl Containers {
    /// The network service, when networking is managed.
    pub(crate) fn network(&self) -> Option<&NetworkHandle> {
        self.inner.opts.network.as_ref()
    }
}

/// An attach in progress, from [`Containers::attach`].
pub type AttachFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<AttachStream>> + Send>>;

/// A waiter returned by [`Containers::wait`]: resolves to the exit code.
pub type WaitFuture = std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ContainerError::Internal(format!("internal error: {e}")))
}

impl Containers {
    /// Loads every container record under `<data_root>/containers`, adopts the shims of the
    /// running ones (or records how they ended), and restarts containers whose policy says
    /// so. Must be called inside a tokio runtime.
    pub fn open(
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
        let me = Containers {
            inner: Arc::new(Inner {
                root: root.clone(),
                opts,
                images,
                events,
                table: Mutex::new(Table::default()),
                execs: Mutex::new(HashMap::new()),
                ncpu,
                init_path,
                volumes,
            }),
        };
        let mut to_restart = Vec::new();
        let mut to_remove = Vec::new();
        let mut exited_while_down = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(|e| ContainerError::io("read", &root, e))? {
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
            let rec = match Record::load(&dir) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable container record");
                    continue;
                }
            };
            let c = Container::new(rec.clone(), me.paths_of(&rec.id));
            {
                let mut t = lock(&me.inner.table);
                t.names.insert(rec.name.clone(), rec.id.clone());
                t.by_id.insert(rec.id.clone(), c.clone());
            }
            me.load_execs(&dir);
            match rec.state.status {
                Status::Running | Status::Paused => {
                    me.adopt(&c);
                    if !c.record().state.status.is_running() {
                        exited_while_down.push(c.clone());
                    }
                }
                Status::Restarting | Status::Removing => {
                    let _ = c.update(|r| r.state.status = Status::Exited);
                }
                _ => {}
            }
            if !c.record().state.status.is_running() {
                me.end_unrecorded_start(&c);
            }
            me.resume_execs(&c);
            let r = c.record();
            if r.host_config.auto_remove && !r.state.status.is_running() {
                // Its run ended while no daemon was there to remove it, or it was never
                // started (its client died after the create): removed, as Docker's restore.
                to_remove.push(c.clone());
                continue;
            }
            let policy = Policy::parse(&r.host_config.restart_policy).unwrap_or(Policy::No);
            if !r.state.status.is_running()
                && r.state.started_at.is_some()
                && policy.restart_on_daemon_start(
                    r.state.exit_code,
                    r.state.manually_stopped,
                    r.restart_count,
                )
            {
                to_restart.push(c.clone());
            }
        }
        // Bundles of containers that are gone (removed while a crash interrupted, say).
        let run_root = &me.inner.opts.run_root;
        for e in std::fs::read_dir(run_root).into_iter().flatten().flatten() {
            let known = lock(&me.inner.table)
                .by_id
                .contains_key(&*e.file_name().to_string_lossy());
            if !known {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        me.spawn_exec_gc();
        // Before any restart, so that a volume is not unmounted under a container starting.
        me.release_volumes_after_adoption(&exited_while_down);
        if !to_remove.is_empty()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let me2 = me.clone();
            handle.spawn(async move {
                for c in to_remove {
                    if let Err(e) = me2.remove_container(&c, true, true).await {
                        tracing::warn!(id = %c.id, error = %e, "auto-remove failed");
                    }
                }
            });
        }
        if !to_restart.is_empty()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let me2 = me.clone();
            handle.spawn(async move {
                for c in to_restart {
                    if let Err(e) = me2.start_container(&c).await {
                        tracing::warn!(id = %c.id, error = %e, "cannot restart container on daemon start");
                    }
                }
            });
        }
        Ok(me)
    }

    /// Ends what runs for a container its record does not call running: the last daemon was
    /// killed while starting it (after the shim was released, before the record said
    /// running), so no client was told it started and nobody supervises it. Left alone, its
    /// processes and shim would outlive the container's removal.
    fn end_unrecorded_start(&self, c: &Arc<Container>) {
        let cg = c.cgroup_path();
        if cgroup::pids(&cg).is_empty() {
            return;
        }
        tracing::warn!(id = %c.id, "ending a container whose start the last daemon did not record");
        self.release_leftovers(c, true);
    }

    /// Frees what an unsupervised container left behind: its processes (when asked: a shim
    /// that died without recording an exit, or a start nobody recorded), its mounts and its
    /// network endpoint.
    fn release_leftovers(&self, c: &Arc<Container>, kill_processes: bool) {
        if kill_processes {
            let cg = c.cgroup_path();
            if cgroup::kill_all(&cg, Duration::from_secs(10)) {
                cgroup::remove(&cg);
            }
        }
        let _ = rootfs::unmount(&c.paths.rootfs());
        let _ = rootfs::unmount(&c.paths.shm());
        if let (Some(net), Ok(rt)) = (
            self.inner.opts.network.clone(),
            tokio::runtime::Handle::try_current(),
        ) {
            let id = c.id.clone();
            rt.spawn(async move { net.0.stop(&id).await });
        }
    }

    /// Reattaches to a running container's shim, or records how it ended.
    fn adopt(&self, c: &Arc<Container>) {
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

    /// The image store containers are created from.
    pub fn image_store(&self) -> &Arc<ImageStore> {
        &self.inner.images
    }

    // ---- lookup ----

    /// Finds a container by full id, name (with or without `/`) or unique id prefix.
    pub fn get(&self, key: &str) -> Result<Arc<Container>> {
        let t = lock(&self.inner.table);
        if let Some(c) = t.by_id.get(key) {
            return Ok(c.clone());
        }
        let bare = key.strip_prefix('/').unwrap_or(key);
        if let Some(id) = t.names.get(bare)
            && let Some(c) = t.by_id.get(id)
        {
            return Ok(c.clone());
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits = t.by_id.iter().filter(|(id, _)| id.starts_with(key));
            if let Some((_, c)) = hits.next() {
                if hits.next().is_some() {
                    return Err(invalid(format!(
                        "multiple IDs found with provided prefix: {key}"
                    )));
                }
                return Ok(c.clone());
            }
        }
        Err(ContainerError::NotFound(key.to_string()))
    }

    /// The volume store (`<data_root>/volumes`).
    pub fn volume_store(&self) -> &Arc<berth_volume::VolumeStore> {
        &self.inner.volumes
    }

    pub(crate) fn volume_event(&self, action: &str, name: &str, attrs: BTreeMap<String, String>) {
        self.inner.events.volume_event(action, name, attrs);
    }

    pub(crate) fn all(&self) -> Vec<Arc<Container>> {
        lock(&self.inner.table).by_id.values().cloned().collect()
    }

    pub(crate) fn event(&self, c: &Container, action: &str, extra: &[(&str, String)]) {
        let r = lock(&c.rec);
        let mut attrs: BTreeMap<String, String> = r.config.labels.clone().unwrap_or_default();
        attrs.insert("name".into(), r.name.clone());
        attrs.insert("image".into(), r.image.clone());
        drop(r);
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        self.inner.events.container_event(action, &c.id, attrs);
    }

    // ---- create ----

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

    fn create_blocking(
        &self,
        name: Option<String>,
        req: ContainerCreateRequest,
    ) -> Result<(Arc<Container>, Vec<String>, Vec<String>)> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => Some(names::validate(&n)?),
            None => None,
        };
        let mut config = req.config;
        if config.image.is_empty() {
            return Err(invalid(
                "config cannot be empty in order to create a container",
            ));
        }
        // As dockerd: the settings are checked before the image is looked up.
        config.working_dir = crate::workdir::translate(&config.working_dir)?;
        let mut host = req.host_config.unwrap_or_default();
        host.runtime = self.runtime_name(&host.runtime)?;
        merge::validate_host_config(&host, self.inner.ncpu)?;
        // The host's cpusets are read only for a container that asks for some (not on the
        // run path of every other container).
        let res = &host.resources;
        let host_cpusets = (!res.cpuset_cpus.is_empty() || !res.cpuset_mems.is_empty())
            .then(crate::validate::HostCpusets::read)
            .flatten();
        crate::validate::host_config(&host, host_cpusets.as_ref())?;
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
        let mut from = |key: &str| {
            self.get(key)
                .map(|c| crate::volumes::entries(&c.record()))
                .map_err(|e| berth_volume::VolumeError::Lookup(e.kind(), e.to_string()))
        };
        // Parse and check every mount before anything is created.
        berth_volume::spec::plan(&host, &image_volumes, &mut from)?;
        let id = names::new_id();
        if config.hostname.is_empty() {
            config.hostname = if host.network_mode == "host" {
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned()
            } else {
                id[..12].to_string()
            };
        }
        let dir = self.inner.root.join(&id);
        let links = self.check_links(&host)?;
        let mut rec = {
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
            if let Some(links) = &links {
                host.links = Some(
                    links
                        .iter()
                        .map(|(target, alias)| format!("/{target}:/{name}/{alias}"))
                        .collect(),
                );
            }
            t.names.insert(name.clone(), id.clone());
            Record {
                id: id.clone(),
                name,
                created: Utc::now(),
                image: config.image.clone(),
                image_id: image.id.to_string(),
                path,
                args,
                config,
                host_config: host,
                ..Default::default()
            }
        };
        let mut created_volumes = Vec::new();
        // Until the record is in the table, no volume it uses may be judged unused.
        let _volume_users = self.inner.volumes.users_lock();
        let result = (|| -> Result<()> {
            let (mounts, created) = crate::volumes::resolve(
                &self.inner.volumes,
                &rec.host_config,
                &image_volumes,
                &mut from,
            )?;
            rec.mounts = mounts;
            created_volumes = created;
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
                        req.networking_config.as_ref(),
                        &exposed,
                    ))
                    .map_err(ContainerError::Network)?;
                rec.host_config.network_mode = mode;
            }
            std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io("create", &dir, e))?;
            write_etc_files(&self.paths_of(&rec.id), &rec, None)?;
            // An auto-removed container's record lives as long as its run, which a machine
            // crash ends (the daemon then removes it): no wait for the disk. One left created
            // and not started is made durable a moment later (below).
            rec.save_as(&dir, !rec.host_config.auto_remove)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(self.paths_of(&rec.id).run);
            for v in &created_volumes {
                let _ = self.inner.volumes.remove(v);
            }
            lock(&self.inner.table).names.remove(&rec.name);
            if let (Some(net), Ok(rt)) = (
                self.inner.opts.network.clone(),
                tokio::runtime::Handle::try_current(),
            ) {
                let id = rec.id.clone();
                rt.spawn(async move { net.0.remove(&id).await });
            }
            return Err(e);
        }
        let auto_remove = rec.host_config.auto_remove;
        let c = Container::new(rec, self.paths_of(&id));
        lock(&self.inner.table).by_id.insert(id, c.clone());
        if auto_remove && let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = self.clone();
            let c = c.clone();
            rt.spawn(async move {
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
        Ok((c, created_volumes, warnings))
    }

    // ---- start ----

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

    async fn start_container(&self, c: &Arc<Container>) -> Result<()> {
        let _op = c.op.lock().await;
        if c.record().state.status.is_running() {
            return Ok(());
        }
        self.start_locked(c).await
    }

    /// Starts a container; the caller holds its operation lock.
    async fn start_locked(&self, c: &Arc<Container>) -> Result<()> {
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
                    tokio::task::spawn_blocking(move || {
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
                    tokio::spawn(async move {
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

    /// Where the files of container `id` go.
    fn paths_of(&self, id: &str) -> Paths {
        Paths {
            dir: self.inner.root.join(id),
            run: self.inner.opts.run_root.join(id),
        }
    }

    fn cgroup_path(&self, r: &Record) -> String {
        let parent = if r.host_config.resources.cgroup_parent.is_empty() {
            self.inner.opts.cgroup_parent.clone()
        } else {
            r.host_config.resources.cgroup_parent.clone()
        };
        // `..` in a user's parent never leads out of the hierarchy.
        berth_runtime::spec::clean_cgroups_path(&format!("{parent}/{}", r.id))
    }

    /// `HostConfig.Runtime` at create: empty means the default; others must be known.
    fn runtime_name(&self, name: &str) -> Result<String> {
        let opts = &self.inner.opts;
        let name = if name.is_empty() {
            opts.default_runtime.as_str()
        } else {
            name
        };
        if name == EMBEDDED_RUNTIME || opts.runtimes.contains_key(name) {
            Ok(name.to_string())
        } else {
            Err(invalid(format!("unknown or invalid runtime name: {name}")))
        }
    }

    /// The external runtime a record runs with; `None` is the embedded one (also for records
    /// from before runtimes were configurable, which stored Docker's `runc`).
    fn oci_runtime(&self, name: &str) -> Result<Option<berth_runtime::config::OciRuntime>> {
        if let Some(rt) = self.inner.opts.runtimes.get(name) {
            return Ok(Some(rt.clone()));
        }
        if name.is_empty() || name == EMBEDDED_RUNTIME || name == "runc" {
            return Ok(None);
        }
        Err(invalid(format!("unknown or invalid runtime name: {name}")))
    }

    /// Tears down a container's networking (after an exit or a failed start).
    async fn network_stop(&self, id: &str) {
        if let Some(n) = &self.inner.opts.network {
            n.0.stop(id).await;
        }
    }

    fn start_blocking(
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
        let root = rootfs::mount_overlay(&layers, &c.paths.dir)?;
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
    fn prepare_ipc(&self, r: &Record, paths: &Paths) -> Result<()> {
        if r.host_config.ipc_mode == "shareable" {
            let size = if r.host_config.shm_size > 0 {
                r.host_config.shm_size as u64
            } else {
                berth_runtime::spec::DEFAULT_SHM_SIZE
            };
            rootfs::mount_shm(&paths.shm(), size)?;
        }
        Ok(())
    }

    /// The `/dev/shm` a container gets for its IPC mode: `None` keeps the runtime's own.
    fn ipc_shm(&self, r: &Record, paths: &Paths) -> Result<Option<PathBuf>> {
        let mode = r.host_config.ipc_mode.as_str();
        if mode == "shareable" {
            return Ok(Some(paths.shm()));
        }
        let Some(target) = mode.strip_prefix("container:") else {
            return Ok(None);
        };
        let donor = self.get(target)?;
        match donor.record().host_config.ipc_mode.as_str() {
            "shareable" => Ok(Some(donor.paths.shm())),
            "host" => Ok(Some(PathBuf::from("/dev/shm"))),
            _ => Err(invalid(
                "non-shareable IPC (hint: use IpcMode:shareable for the donor container)",
            )),
        }
    }

    fn namespace(&self, mode: &str, kind: &str) -> Result<NamespaceMode> {
        if mode == "host" {
            return Ok(NamespaceMode::Host);
        }
        if let Some(target) = mode.strip_prefix("container:") {
            let other = self.get(target)?;
            let r = other.record();
            if !r.state.status.is_running() || r.state.pid == 0 {
                return Err(conflict(format!(
                    "cannot join {kind} namespace of a non running container: container {} is {}",
                    other.id,
                    r.state.status.as_str()
                )));
            }
            return Ok(NamespaceMode::Path(PathBuf::from(format!(
                "/proc/{}/ns/{kind}",
                r.state.pid
            ))));
        }
        Ok(NamespaceMode::Private)
    }

    fn run_config(
        &self,
        r: &Record,
        paths: &Paths,
        root: &Path,
        net: &NetworkStart,
    ) -> Result<ContainerRunConfig> {
        let h = &r.host_config;
        let passwd = user::read_in_root(root, "/etc/passwd");
        let group = user::read_in_root(root, "/etc/group");
        let group_add = h.group_add.clone().unwrap_or_default();
        let process_user = user::resolve(&r.config.user, &group_add, &passwd, &group)?;
        let link_env = &net.link_env;
        let net = match (h.network_mode.as_str(), &net.netns) {
            ("host", _) => NamespaceMode::Host,
            (m, _) if m.starts_with("container:") => {
                let other = self.get(&m["container:".len()..])?;
                match self
                    .inner
                    .opts
                    .network
                    .as_ref()
                    .and_then(|n| n.0.netns_of(&other.id))
                {
                    Some(p) if other.record().state.status.is_running() => NamespaceMode::Path(p),
                    _ => self.namespace(m, "net")?,
                }
            }
            (_, Some(p)) => NamespaceMode::Path(p.clone()),
            _ => NamespaceMode::Private,
        };
        let namespaces = NamespaceModes {
            pid: self.namespace(&h.pid_mode, "pid")?,
            ipc: self.namespace(&h.ipc_mode, "ipc")?,
            uts: self.namespace(&h.uts_mode, "uts")?,
            net,
            cgroup: match h.cgroupns_mode.as_str() {
                "private" => NamespaceMode::Private,
                "host" => NamespaceMode::Host,
                // Records always carry a mode (filled at create); Docker's default otherwise.
                _ if CgroupVersion::host().is_v2() => NamespaceMode::Private,
                _ => NamespaceMode::Host,
            },
        };
        let mut mounts = crate::volumes::runtime_mounts(&self.inner.volumes, r, root)?;
        if let Some(shm) = self.ipc_shm(r, paths)?
            && !mounts.iter().any(|m| m.destination == "/dev/shm")
        {
            mounts.push(MountSpec {
                destination: "/dev/shm".into(),
                kind: MountKind::Bind { source: shm },
                readonly: false,
                options: vec!["rprivate".into()],
            });
        }
        // `--network container:X` takes X's network identity, as Docker does: its hostname,
        // /etc/hosts and /etc/resolv.conf.
        let (etc, hostname, domainname) = match h.network_mode.strip_prefix("container:") {
            Some(target) => {
                let donor = self.get(target)?;
                let dr = donor.record();
                (
                    donor.paths.clone(),
                    dr.config.hostname,
                    dr.config.domainname,
                )
            }
            None => (
                paths.clone(),
                r.config.hostname.clone(),
                r.config.domainname.clone(),
            ),
        };
        for (file, dest) in [
            (etc.hostname(), "/etc/hostname"),
            (etc.hosts(), "/etc/hosts"),
            (etc.resolv_conf(), "/etc/resolv.conf"),
        ] {
            if !mounts.iter().any(|m| m.destination == dest) {
                mounts.push(MountSpec {
                    destination: dest.into(),
                    kind: MountKind::Bind { source: file },
                    readonly: h.readonly_rootfs,
                    options: Vec::new(),
                });
            }
        }
        let mut seccomp = SeccompMode::Default;
        let mut no_new_privileges = false;
        for opt in h.security_opt.iter().flatten() {
            let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
            match k {
                "seccomp" if v == "unconfined" => seccomp = SeccompMode::Unconfined,
                "seccomp" => seccomp = SeccompMode::Custom(v.to_string()),
                "no-new-privileges" => no_new_privileges = v.is_empty() || berth_api::parse_bool(v),
                "apparmor" | "label" | "systempaths" => {}
                _ => return Err(invalid(format!("invalid --security-opt: {opt:?}"))),
            }
        }
        let res = &h.resources;
        let resources = Resources {
            memory: res.memory,
            memory_swap: res.memory_swap,
            memory_reservation: res.memory_reservation,
            oom_kill_disable: res.oom_kill_disable.unwrap_or(false),
            cpu_shares: res.cpu_shares.max(0) as u64,
            cpu_quota: res.cpu_quota,
            cpu_period: res.cpu_period.max(0) as u64,
            nano_cpus: res.nano_cpus,
            cpuset_cpus: res.cpuset_cpus.clone(),
            cpuset_mems: res.cpuset_mems.clone(),
            pids_limit: res.pids_limit.unwrap_or(0),
            blkio_weight: res.blkio_weight,
        };
        let devices = res
            .devices
            .iter()
            .flatten()
            .map(|d| DeviceSpec {
                path_on_host: PathBuf::from(&d.path_on_host),
                path_in_container: d.path_in_container.clone(),
                permissions: d.cgroup_permissions.clone(),
            })
            .collect();
        let ulimits = res
            .ulimits
            .iter()
            .flatten()
            .map(|u| Ulimit {
                name: u.name.clone(),
                soft: u.soft.max(0) as u64,
                hard: u.hard.max(0) as u64,
            })
            .collect();
        Ok(ContainerRunConfig {
            id: r.id.clone(),
            rootfs: root.to_path_buf(),
            args: std::iter::once(r.path.clone())
                .chain(r.args.iter().cloned())
                .collect(),
            env: {
                let mut env = r.config.env.clone().unwrap_or_default();
                // Links' variables, unless the container's own environment sets them.
                for v in link_env {
                    let key = v.split('=').next().unwrap_or_default();
                    if !env.iter().any(|e| e.split('=').next() == Some(key)) {
                        env.push(v.clone());
                    }
                }
                if !env.iter().any(|e| e.starts_with("HOME=")) {
                    env.push(format!("HOME={}", user::home(process_user.uid, &passwd)));
                }
                env
            },
            working_dir: r.config.working_dir.clone(),
            user: process_user,
            hostname,
            domainname,
            tty: r.config.tty,
            console_size: h
                .console_size
                .filter(|[rows, cols]| *rows > 0 && *cols > 0)
                .map(|[rows, cols]| {
                    (
                        rows.min(u16::MAX as u64) as u16,
                        cols.min(u16::MAX as u64) as u16,
                    )
                }),
            open_stdin: r.config.open_stdin,
            readonly_rootfs: h.readonly_rootfs,
            privileged: h.privileged,
            cap_add: h.cap_add.clone().unwrap_or_default(),
            cap_drop: h.cap_drop.clone().unwrap_or_default(),
            no_new_privileges,
            seccomp,
            namespaces,
            resources,
            shm_size: (h.shm_size > 0).then_some(h.shm_size as u64),
            no_dev_shm: h.ipc_mode == "none",
            mounts,
            devices,
            device_cgroup_rules: h.resources.device_cgroup_rules.clone().unwrap_or_default(),
            ulimits,
            masked_paths: h.masked_paths.clone(),
            readonly_paths: h.readonly_paths.clone(),
            sysctls: h.sysctls.clone().unwrap_or_default(),
            cgroup_path: Some(self.cgroup_path(r)),
            runtime: self.oci_runtime(&h.runtime)?,
            init: h.resources.init.unwrap_or(false) && self.inner.init_path.is_some(),
            init_path: self.inner.init_path.clone(),
            stdin_once: r.config.stdin_once,
            log: RunLogConfig {
                driver: h.log_config.kind.clone(),
                opts: h.log_config.config.clone(),
            },
            ..Default::default()
        })
    }

    // ---- exits ----

    fn spawn_watcher(&self, c: Arc<Container>, h: ShimHandle) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("wait-{}", &c.id[..12]))
            .stack_size(128 << 10)
            .spawn(move || {
                let result = h.wait();
                if matches!(result, Err(RuntimeError::ShimGone { .. })) {
                    // The shim died without recording an exit (SIGKILLed, crashed): its
                    // container would run on unsupervised, so end it and its cgroup here.
                    let cg = c.cgroup_path();
                    tracing::warn!(id = %c.id, shim_pid = h.shim_pid(), "shim exited unexpectedly; killing the container");
                    if cgroup::kill_all(&cg, Duration::from_secs(10)) {
                        cgroup::remove(&cg);
                    }
                }
                rt.spawn(async move { me.on_exit(c, result).await });
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a container watcher thread");
        }
    }

    async fn on_exit(
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
        let policy = Policy::parse(&r.host_config.restart_policy).unwrap_or(Policy::No);
        if policy.should_restart(code, r.state.manually_stopped, r.restart_count) {
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
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
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
            tokio::spawn(async move {
                if let Err(e) = me.remove_container(&c, true, true).await
                    && !matches!(e, ContainerError::NotFound(_))
                {
                    tracing::warn!(id = %c.id, error = %e, "auto-remove failed");
                }
            });
        }
    }

    /// Waits until the container's process is gone (or `timeout` passes); true if it is.
    async fn wait_stopped(c: &Container, timeout: Option<Duration>) -> bool {
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

    fn signal_blocking(c: &Container, sig: i32) -> Result<()> {
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

    async fn signal(&self, c: &Arc<Container>, sig: i32) -> Result<()> {
        let c2 = c.clone();
        blocking(move || Self::signal_blocking(&c2, sig)).await??;
        self.event(c, "kill", &[("signal", sig.to_string())]);
        Ok(())
    }

    // ---- stop, kill, restart ----

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

    async fn stop_locked(
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

    // ---- remove, rename ----

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

    async fn remove_container(
        &self,
        c: &Arc<Container>,
        force: bool,
        remove_volumes: bool,
    ) -> Result<()> {
        self.remove_named(c, &c.record().slash_name(), force, remove_volumes)
            .await
    }

    /// Removes `c`; `key` is how the request named it (dockerd's messages repeat it).
    async fn remove_named(
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

    // ---- pause, top ----

    /// `POST /containers/{id}/pause` (`true`) and `/unpause` (`false`).
    pub async fn pause(&self, key: &str, pause: bool) -> Result<()> {
        let c = self.get(key)?;
        let _op = c.op.lock().await;
        let r = c.record();
        match (r.state.status, pause) {
            (Status::Running, true) | (Status::Paused, false) => {}
            (Status::Paused, true) => {
                return Err(conflict(format!("container {} is already paused", c.id)));
            }
            (Status::Running, false) => {
                return Err(conflict(format!("container {} is not paused", c.id)));
            }
            _ => return Err(conflict(format!("container {} is not running", c.id))),
        }
        let cg = cgroup_of(&r, &c.paths);
        blocking(move || cgroup::freeze(&cg, pause))
            .await?
            .map_err(|e| {
                ContainerError::Internal(format!(
                    "cannot {} container: {e}",
                    if pause { "pause" } else { "unpause" }
                ))
            })?;
        c.update(|r| {
            r.state.status = if pause {
                Status::Paused
            } else {
                Status::Running
            }
        })?;
        if pause {
            self.stop_health(&c);
        } else {
            self.resume_health(&c);
        }
        self.event(&c, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// `GET /containers/{id}/top`: `(titles, rows)` of the host's `ps` for the container's pids.
    pub async fn top(&self, key: &str, ps_args: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let c = self.get(key)?;
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(conflict(format!("container {} is not running", c.id)));
        }
        let cg = cgroup_of(&r, &c.paths);
        let args: Vec<String> = if ps_args.trim().is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.split_whitespace().map(str::to_string).collect()
        };
        blocking(move || {
            let pids = cgroup::pids(&cg);
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(|e| ContainerError::Internal(format!("error running ps: {e}")))?;
            if !out.status.success() {
                return Err(ContainerError::Internal(format!(
                    "ps: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
        })
        .await?
    }

    // ---- logs ----

    /// Whether a container's output is raw (TTY) rather than multiplexed; and its log path.
    pub fn log_source(&self, key: &str) -> Result<(bool, PathBuf)> {
        let c = self.get(key)?;
        let r = c.record();
        if r.host_config.log_config.kind == "none" {
            return Err(invalid(
                "configured logging driver does not support reading",
            ));
        }
        let format = logs::LogFormat::for_driver(&r.host_config.log_config.kind)
            .unwrap_or(logs::LogFormat::JsonFile);
        Ok((r.config.tty, format.path(&c.paths.dir, &c.id)))
    }

    /// Streams the log as the client reads it into `tx`, following while the container runs
    /// when asked. Ends when the receiver is dropped.
    pub async fn stream_logs(
        &self,
        key: &str,
        o: LogOptions,
        tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<()> {
        let c = self.get(key)?;
        let (tty, path) = self.log_source(key)?;
        let mut rx = c.notify.subscribe();
        let mut reader = logs::LogReader::new(&path);
        let (r, back) = blocking(move || (reader.read(), reader)).await?;
        reader = back;
        let entries = r.map_err(|e| ContainerError::io("read", &path, e))?;
        let mut out = Vec::new();
        for e in logs::select(entries, &o) {
            e.encode(&o, !tty, &mut out);
        }
        if !out.is_empty() && tx.send(out).await.is_err() {
            return Ok(());
        }
        if !o.follow {
            return Ok(());
        }
        loop {
            let running = rx.borrow_and_update().running;
            let (r, back) = blocking(move || (reader.read(), reader)).await?;
            reader = back;
            let entries = r.map_err(|e| ContainerError::io("read", &path, e))?;
            let mut out = Vec::new();
            for e in entries {
                if o.until.is_some_and(|u| e.time >= u) {
                    let _ = tx.send(out).await;
                    return Ok(());
                }
                if e.selected(&o) {
                    e.encode(&o, !tty, &mut out);
                }
            }
            if !out.is_empty() && tx.send(out).await.is_err() {
                return Ok(());
            }
            if !running {
                return Ok(());
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }

    /// Output for an attached client, read from the json-file log (the shim does not serve
    /// attach yet): everything logged from now on (and the past log with `logs`) until the
    /// container's current or next run ends. No stdin. Ends when the receiver is dropped.
    pub async fn attach_output(
        &self,
        key: &str,
        o: LogOptions,
        logs_too: bool,
        tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<()> {
        let c = self.get(key)?;
        let (tty, path) = self.log_source(key)?;
        let mut rx = c.notify.subscribe();
        let (was_running, start_exits) = {
            let s = rx.borrow_and_update();
            (s.running, s.exits)
        };
        let mut reader = if logs_too {
            logs::LogReader::new(&path)
        } else {
            logs::LogReader::at_end(&path)
        };
        loop {
            let (done, removed) = {
                let s = rx.borrow_and_update();
                let done = if was_running {
                    !s.running
                } else {
                    s.exits > start_exits
                };
                (done, s.removed)
            };
            let (r, back) = blocking(move || (reader.read(), reader)).await?;
            reader = back;
            let entries = r.map_err(|e| ContainerError::io("read", &path, e))?;
            let mut out = Vec::new();
            for e in entries.iter().filter(|e| e.selected(&o)) {
                e.encode(&o, !tty, &mut out);
            }
            if !out.is_empty() && tx.send(out).await.is_err() {
                return Ok(());
            }
            if done || removed {
                return Ok(());
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }

    // ---- attach, resize, exec ----

    /// Attaches to a container's stdio through its shim. Registration is immediate (before
    /// this returns), so a client can answer its caller and then start the container: one that
    /// is not running gets the client connected when it starts (Docker's `run`: attach, then
    /// start), so no output is missed. The future fails if the container never starts.
    pub fn attach(
        &self,
        key: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<AttachFuture> {
        let c = self.get(key)?;
        let running = c.record().state.status.is_running();
        if let (true, Some(h)) = (running, c.shim()) {
            return Ok(Box::pin(async move {
                blocking(move || h.attach(stdin, stdout, stderr))
                    .await?
                    .map_err(Into::into)
            }));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&c.pending).push(PendingAttach {
            stdin,
            stdout,
            stderr,
            tx,
        });
        Ok(Box::pin(async move {
            match rx.await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(conflict(format!("container {} did not start", c.id))),
            }
        }))
    }

    /// `POST /containers/{id}/resize`.
    pub async fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        let c = self.get(key)?;
        let Some(h) = c.shim() else {
            return Err(conflict(format!("container {} is not running", c.id)));
        };
        if !c.record().config.tty {
            return Ok(());
        }
        blocking(move || h.resize(height, width)).await??;
        Ok(())
    }

    fn exec_event(
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

    fn exec_entry(&self, id: &str) -> Result<ExecEntry> {
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
                    tokio::spawn(async move { me.exec_finished(&id).await });
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
        let code = code.unwrap_or(137);
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
            && let Some(h) = c.shim()
        {
            let id = exec_id.to_string();
            if let Ok(Ok(s)) = blocking(move || h.exec_state(&id)).await
                && !s.running
            {
                e.running = false;
                e.exit_code = s.exit_code.map(i64::from);
                self.update_exec(exec_id, |x| {
                    x.running = false;
                    x.exit_code = e.exit_code;
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
    fn exec_ids(&self, container_id: &str) -> Vec<String> {
        lock(&self.inner.execs)
            .values()
            .filter(|e| e.container_id == container_id && !e.ended())
            .map(|e| e.id.clone())
            .collect()
    }

    fn exec_record_path(&self, e: &ExecEntry) -> PathBuf {
        self.inner
            .root
            .join(&e.container_id)
            .join(EXECS_DIR)
            .join(format!("{}.json", e.id))
    }

    /// Writes an exec's record atomically (temp file, fsync, rename).
    fn save_exec(&self, e: &ExecEntry) -> Result<()> {
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
    fn update_exec(&self, exec_id: &str, f: impl FnOnce(&mut ExecEntry)) {
        let mut execs = lock(&self.inner.execs);
        if let Some(x) = execs.get_mut(exec_id) {
            f(x);
            if let Err(err) = self.save_exec(x) {
                tracing::warn!(exec = %exec_id, error = %err, "cannot record exec state");
            }
        }
    }

    /// Forgets the execs `which` selects, records included.
    fn forget_execs(&self, which: impl Fn(&ExecEntry) -> bool) {
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
    fn load_execs(&self, dir: &Path) {
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
    fn resume_execs(&self, c: &Arc<Container>) {
        if !c.record().state.status.is_running() {
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
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for id in running {
            let me = self.clone();
            rt.spawn(async move { me.exec_finished(&id).await });
        }
    }

    /// Forgets ended execs on Docker's schedule (see [`EXEC_GC_PERIOD`]).
    fn spawn_exec_gc(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        rt.spawn(async move {
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

    // ---- list, inspect ----

    /// `GET /containers/json`.
    pub fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        mut filter: ListFilter,
    ) -> Result<Vec<ContainerSummary>> {
        let resolve_created =
            |key: &str| -> Result<DateTime<Utc>> { Ok(self.get(key)?.record().created) };
        if let Some(b) = filter.filters.get("before").first() {
            filter.before = Some(resolve_created(b)?);
        }
        if let Some(s) = filter.filters.get("since").first() {
            filter.since = Some(resolve_created(s)?);
        }
        if filter.filters.contains("ancestor") {
            let ids = filter
                .filters
                .get("ancestor")
                .iter()
                .filter_map(|a| self.inner.images.get(a).ok().map(|i| i.id.to_string()))
                .collect();
            filter.ancestors = Some(ids);
        }
        let all = all
            || limit.is_some()
            || filter.wants_stopped()
            || filter.before.is_some()
            || filter.since.is_some();
        let mut recs: Vec<Record> = self.all().iter().map(|c| c.record()).collect();
        recs.sort_by_key(|r| std::cmp::Reverse(r.created));
        let now = Utc::now();
        let mut out = Vec::new();
        for r in recs {
            if !all && !r.state.status.is_running() && r.state.status != Status::Restarting {
                continue;
            }
            if !filter.matches(&r) {
                continue;
            }
            let mut row = summary(&r, now);
            if let Some(n) = &self.inner.opts.network {
                row.ports = n.0.ports(&r.id);
                row.network_settings.networks = n.0.networks(&r.id);
            }
            out.push(row);
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect(&self, key: &str) -> Result<ContainerInspect> {
        let c = self.get(key)?;
        let r = c.record();
        let lowers = self
            .inner
            .images
            .get(&r.image_id)
            .and_then(|i| self.inner.images.layer_dirs(&i.id))
            .map(|l| {
                l.iter()
                    .rev()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default();
        let p = &c.paths;
        let data: BTreeMap<String, String> = [
            ("LowerDir", lowers),
            ("UpperDir", p.upper().display().to_string()),
            ("WorkDir", p.work().display().to_string()),
            ("MergedDir", p.rootfs().display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mounts = crate::volumes::mount_points(&r);
        let s = &r.state;
        Ok(ContainerInspect {
            id: r.id.clone(),
            created: go_time(Some(r.created)),
            path: r.path.clone(),
            args: r.args.clone(),
            state: ContainerState {
                status: s.status.as_str().into(),
                running: s.status.is_running() || s.status == Status::Restarting,
                paused: s.status == Status::Paused,
                restarting: s.status == Status::Restarting,
                oom_killed: s.oom_killed,
                dead: s.status == Status::Dead,
                pid: s.pid,
                exit_code: s.exit_code,
                error: s.error.clone(),
                started_at: go_time(s.started_at),
                finished_at: go_time(s.finished_at),
                health: s.health.clone(),
            },
            image: r.image_id.clone(),
            resolv_conf_path: p.resolv_conf().display().to_string(),
            hostname_path: p.hostname().display().to_string(),
            hosts_path: p.hosts().display().to_string(),
            log_path: match logs::LogFormat::for_driver(&r.host_config.log_config.kind) {
                None => String::new(),
                Some(f) => f.path(&p.dir, &r.id).display().to_string(),
            },
            name: r.slash_name(),
            restart_count: r.restart_count,
            driver: "overlayfs".into(),
            platform: "linux".into(),
            exec_ids: Some(self.exec_ids(&r.id)).filter(|v| !v.is_empty()),
            host_config: r.host_config.clone(),
            graph_driver: DriverData {
                name: "overlayfs".into(),
                data,
            },
            mounts,
            config: r.config.clone(),
            network_settings: match &self.inner.opts.network {
                Some(n) => n.0.settings(&r.id),
                None => NetworkSettings::default(),
            },
            ..Default::default()
        })
    }

    /// `POST /containers/prune`: removes stopped containers passing `keep`; returns the ids
    /// removed and the bytes reclaimed.
    pub async fn prune(
        &self,
        keep: &(dyn Fn(&Record) -> bool + Sync),
    ) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut space = 0;
        for c in self.all() {
            let r = c.record();
            if r.state.status.is_running() || r.state.status == Status::Restarting || !keep(&r) {
                continue;
            }
            let upper = c.paths.upper();
            let size = blocking(move || dir_size(&upper)).await.unwrap_or(0);
            if self.remove_container(&c, false, false).await.is_ok() {
                removed.push(r.id.clone());
                space += size;
            }
        }
        Ok((removed, space))
    }

    // ---- usage (image deletes, /info) ----

    /// How containers use an image: a running one first.
    pub fn image_use(&self, image: &Digest) -> Option<ContainerUse> {
        let id = image.to_string();
        let mut stopped = None;
        for c in self.all() {
            let r = c.record();
            if r.image_id == id {
                if r.state.status.is_running() {
                    return Some(ContainerUse::Running(r.id));
                }
                stopped.get_or_insert(r.id);
            }
        }
        stopped.map(ContainerUse::Stopped)
    }

    /// How many containers use an image.
    pub fn count_using(&self, image: &Digest) -> i64 {
        let id = image.to_string();
        self.all()
            .iter()
            .filter(|c| lock(&c.rec).image_id == id)
            .count() as i64
    }

    /// `(total, running, paused, stopped)`.
    pub fn counts(&self) -> (i64, i64, i64, i64) {
        let (mut total, mut running, mut paused, mut stopped) = (0, 0, 0, 0);
        for c in self.all() {
            total += 1;
            match lock(&c.rec).state.status {
                Status::Running | Status::Restarting => running += 1,
                Status::Paused => paused += 1,
                _ => stopped += 1,
            }
        }
        (total, running, paused, stopped)
    }

    /// Bytes of the container's image plus its writable layer (`SizeRootFs`).
    pub fn size_root_fs(&self, id: &str) -> u64 {
        let Ok(c) = self.get(id) else { return 0 };
        let image = self
            .inner
            .images
            .get(&c.record().image_id)
            .map_or(0, |i| i.size);
        image + dir_size(&c.paths.upper())
    }

    /// Bytes in a container's writable layer.
    pub fn size_rw(&self, id: &str) -> u64 {
        self.get(id)
            .map(|c| dir_size(&c.paths.upper()))
            .unwrap_or(0)
    }
}

pub(crate) fn cgroup_of(r: &Record, paths: &Paths) -> String {
    // The path actually used is in the bundle's spec; fall back to the default layout.
    let spec = std::fs::read(paths.bundle().config_path()).ok();
    spec.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("/berth/{}", r.id))
}

impl Containers {
    /// Rewrites a running container's `/etc/hosts` for its current addresses (after a
    /// `network connect`/`disconnect`). The file is bind-mounted into the container, so it is
    /// rewritten in place: a new file renamed over it would not be seen inside.
    pub fn update_hosts(
        &self,
        key: &str,
        addresses: &[std::net::IpAddr],
        host_gateway: Option<std::net::IpAddr>,
    ) -> Result<()> {
        let c = self.get(key)?;
        let r = c.record();
        if r.host_config.network_mode == "host" || !r.state.status.is_running() {
            return Ok(());
        }
        // Links' entries stay, up to a target that no longer runs.
        let mut links = NetworkStart::default();
        let _ = self.resolve_links(&c, &mut links);
        let mut extra = r.host_config.extra_hosts.clone().unwrap_or_default();
        extra.extend(
            links
                .link_hosts
                .iter()
                .map(|(names, ip)| format!("{names}:{ip}")),
        );
        let text = etc::hosts(&r.config.hostname, &extra, addresses, host_gateway);
        let path = c.paths.hosts();
        std::fs::write(&path, text).map_err(|e| ContainerError::io("write", &path, e))
    }
}

/// Deletes a removed container's directory (usually renamed out of sight), unmounting first
/// what the daemon mounted in it; never deletes through a mount that is still there.
fn delete_removed_dir(hidden: &Path) -> Result<()> {
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

/// How long an auto-removed container may stay created (not started) before its records are
/// made durable: `run --rm` starts it within milliseconds; `create --rm` then `start` later
/// must not lose it to a machine crash.
const PERSIST_CREATED_AFTER: Duration = Duration::from_secs(1);

/// Name prefix of a removed container's directory whose contents are still being deleted.
const REMOVING_PREFIX: &str = ".removing-";

/// Remove a container's directory. It is first renamed out of sight (one atomic rename, so
/// the container is gone from disk at once and a restarted daemon never loads it again);
/// its files, the writable layer among them (often thousands of entries), are deleted on
/// a thread of their own, so `rm` and `run --rm` need not wait for them. Leftovers of a
/// crash are deleted when the daemon next opens the containers directory.
fn remove_container_dir(dir: &Path) -> Result<()> {
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

fn write_etc_files(p: &Paths, r: &Record, net: Option<&NetworkStart>) -> Result<()> {
    let h = &r.host_config;
    let host_net = h.network_mode == "host";
    // After a reboot the exec root is empty again.
    std::fs::create_dir_all(&p.run).map_err(|e| ContainerError::io("create", &p.run, e))?;
    let write = |path: PathBuf, text: String| -> Result<()> {
        // Regenerated from the record at every start: atomic, but not worth an fsync; and
        // left alone when it already says the same (a new file is a new inode on the disk).
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            return Ok(());
        }
        berth_runtime::bundle::replace_file(&path, text.as_bytes())?;
        Ok(())
    };
    write(p.hostname(), format!("{}\n", r.config.hostname))?;
    let hosts = if host_net {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        // Links' entries follow `--add-host`'s, as in dockerd's file.
        let mut extra = h.extra_hosts.clone().unwrap_or_default();
        extra.extend(
            net.iter()
                .flat_map(|n| &n.link_hosts)
                .map(|(names, ip)| format!("{names}:{ip}")),
        );
        etc::hosts(
            &r.config.hostname,
            &extra,
            net.map(|n| n.addresses.as_slice()).unwrap_or_default(),
            net.and_then(|n| n.host_gateway),
        )
    };
    write(p.hosts(), hosts)?;
    let empty = Vec::new();
    let resolv = etc::resolv_conf(
        &etc::host_resolv_conf(),
        host_net,
        net.is_some_and(|n| n.embedded_dns),
        &etc::DnsOverrides {
            servers: h.dns.as_ref().unwrap_or(&empty),
            search: h.dns_search.as_ref().unwrap_or(&empty),
            options: h.dns_options.as_ref().unwrap_or(&empty),
        },
    );
    write(p.resolv_conf(), resolv)
}

fn summary(r: &Record, now: DateTime<Utc>) -> ContainerSummary {
    let s = &r.state;
    let since = |t: Option<DateTime<Utc>>| t.map(|t| (now - t).to_std().unwrap_or_default());
    let status = status_text(&StatusView {
        running: s.status.is_running() || s.status == Status::Restarting,
        paused: s.status == Status::Paused,
        restarting: s.status == Status::Restarting,
        removing: s.status == Status::Removing,
        dead: s.status == Status::Dead,
        exit_code: s.exit_code,
        since_start: since(s.started_at),
        since_finish: since(s.finished_at),
        health: s.health.as_ref().map(|h| h.status.as_str()),
    });
    let mounts: Vec<MountPoint> = crate::volumes::mount_points(r);
    let image = if r.image.is_empty() {
        r.image_id.clone()
    } else {
        r.image.clone()
    };
    ContainerSummary {
        id: r.id.clone(),
        names: vec![r.slash_name()],
        image,
        image_id: r.image_id.clone(),
        command: command_text(&r.path, &r.args),
        created: r.created.timestamp(),
        ports: Vec::new(),
        labels: r.config.labels.clone().unwrap_or_default(),
        state: s.status.as_str().into(),
        status,
        host_config: SummaryHostConfig {
            network_mode: r.host_config.network_mode.clone(),
            annotations: None,
        },
        network_settings: SummaryNetworkSettings::default(),
        mounts,
        ..Default::default()
    }
}

/// Filters `ps` output to the given pids (Docker's `top`).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| ContainerError::Internal("Couldn't find PID field in ps output".into()))?;
    let mut rows = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) may contain spaces.
        let mut row: Vec<String> = fields[..titles.len().saturating_sub(1).min(fields.len())]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if fields.len() >= titles.len() {
            row.push(fields[titles.len() - 1..].join(" "));
        }
        rows.push(row);
    }
    Ok((titles, rows))
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total += md.len();
            }
        }
    }
    total
}

mod pid_peers;

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

    #[test]
    fn ps_output_is_filtered_to_the_containers_pids() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\nroot 42 1 0 10:00 ? 00:00:00 sleep 100\n";
        let (titles, rows) = parse_ps(out, &[42]).unwrap();
        assert_eq!(titles.len(), 8);
        assert_eq!(
            rows,
            vec![vec![
                "root",
                "42",
                "1",
                "0",
                "10:00",
                "?",
                "00:00:00",
                "sleep 100"
            ]]
        );
        assert!(parse_ps("A B\n", &[]).is_err());
    }

    #[test]
    fn wait_conditions_parse() {
        assert_eq!(WaitCondition::parse("").unwrap(), WaitCondition::NotRunning);
        assert_eq!(
            WaitCondition::parse("removed").unwrap(),
            WaitCondition::Removed
        );
        assert!(WaitCondition::parse("soon").is_err());
    }
}
