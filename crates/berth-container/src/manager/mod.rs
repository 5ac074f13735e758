//! [`Containers`]: the container service. It owns the records under `containers/<id>/`, the
//! name table, the state machine and one watcher per running container (a blocking thread
//! waiting on the shim, then an async task recording the exit and applying the restart
//! policy). Operations on one container are serialised by its operation lock; reads take
//! only the record's mutex.

mod attach;
mod create;
mod etc_files;
mod exec;
mod exits;
mod inspect;
mod orphans;
mod pause_top;
mod pid_peers;
mod remove;
mod restore;
mod run_config;
mod start;
mod stop_kill;

pub use berth_api::vocab::WaitCondition;
pub use exec::{ExecEntry, ExecStarted};
pub use pause_top::parse_ps;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_image::ImageStore;
use berth_runtime::shim::AttachStream;
use berth_runtime::{RuntimeError, ShimHandle};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ContainerError, Result, invalid};
use crate::network::NetworkHandle;
use crate::record::{Paths, Record, Status};

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
    /// `--userns-remap`: containers (except `--userns host` ones) run in a user namespace
    /// mapped to these ranges.
    pub remap: Option<berth_runtime::idmap::IdMapping>,
}

/// The name of the embedded runtime (libcontainer in the shim), always available.
pub const EMBEDDED_RUNTIME: &str = "berth";

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
    /// A user namespace holding `opts.remap`, made once: the idmapped mounts of remapped
    /// containers' image layers refer to it.
    remap_ns: Option<std::os::fd::OwnedFd>,
    /// The runtime the service's tasks run on, captured at open: watcher threads and
    /// blocking code hand their work to it.
    rt: tokio::runtime::Handle,
    /// Every background task, so that shutdown can wait for them.
    tasks: TaskTracker,
    /// Cancelled at shutdown: ends the tasks that the next daemon redoes from the records.
    stopping: CancellationToken,
}

/// The container service (cheap to clone).
#[derive(Clone)]
pub struct Containers {
    inner: Arc<Inner>,
}

impl Containers {
    /// The id mapping a container runs under: the daemon's `--userns-remap`, unless the
    /// container opted out with `--userns host`.
    pub(crate) fn remap_of(&self, r: &Record) -> Option<berth_runtime::idmap::IdMapping> {
        self.inner
            .opts
            .remap
            .filter(|_| r.host_config.userns_mode != "host")
    }

    /// Mounts the container's root filesystem, with idmapped image layers when it is
    /// remapped.
    pub(crate) fn mount_rootfs(
        &self,
        r: &Record,
        layers: &[PathBuf],
        dir: &Path,
    ) -> Result<PathBuf> {
        let remap = self.remap_of(r);
        let ns = self.inner.remap_ns.as_ref();
        Ok(berth_runtime::rootfs::mount_overlay_remapped(
            layers,
            dir,
            remap.as_ref().zip(ns),
        )?)
    }

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
    /// The image store containers are created from.
    pub fn image_store(&self) -> &Arc<ImageStore> {
        &self.inner.images
    }

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

    /// Runs a background task that shutdown waits for (within its grace period): an exit
    /// being recorded, an auto-removal, a network endpoint being released.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.inner.tasks.spawn_on(task, &self.inner.rt);
    }

    /// Runs blocking work in the background; shutdown waits for it as for [`Self::spawn`].
    pub(crate) fn spawn_blocking(&self, work: impl FnOnce() + Send + 'static) {
        self.inner.tasks.spawn_blocking_on(work, &self.inner.rt);
    }

    /// Runs a background task that shutdown ends instead: long-lived loops and delayed work
    /// that the next daemon redoes from the records (health monitors, the exec sweep, the
    /// wait for a detached exec).
    pub(crate) fn spawn_until_shutdown(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stopping = self.inner.stopping.clone();
        self.spawn(async move {
            tokio::select! {
                () = stopping.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Sleeps for `d`; false if the service began shutting down meanwhile.
    pub(crate) async fn sleep_unless_stopping(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.inner.stopping.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    /// Ends the service's background work at daemon shutdown: tasks that the next daemon
    /// redoes are cancelled, the others get up to `grace` to finish. Running containers are
    /// left running (their shims keep them; the next daemon adopts them). Returns whether
    /// every task ended in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.stopping.cancel();
        self.inner.tasks.close();
        let ended = tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_ok();
        if !ended {
            tracing::warn!(
                tasks = self.inner.tasks.len(),
                "container tasks did not finish within the shutdown grace period"
            );
        }
        ended
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
}

pub(crate) fn cgroup_of(r: &Record, paths: &Paths) -> String {
    // The path actually used is in the bundle's spec; fall back to the default layout.
    let spec = std::fs::read(paths.bundle().config_path()).ok();
    spec.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("/berth/{}", r.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEvents;
    impl EventSink for NoEvents {
        fn container_event(&self, _: &str, _: &str, _: BTreeMap<String, String>) {}
        fn volume_event(&self, _: &str, _: &str, _: BTreeMap<String, String>) {}
    }

    fn service(root: &Path) -> Containers {
        let images = Arc::new(ImageStore::open(root).unwrap());
        let opts = Options {
            data_root: root.to_path_buf(),
            shim_binary: PathBuf::from("/nonexistent/berth-shim"),
            cgroup_parent: "/berth-test".into(),
            runtimes: BTreeMap::new(),
            default_runtime: EMBEDDED_RUNTIME.into(),
            network: None,
            run_root: root.join("run"),
            remap: None,
        };
        Containers::open(opts, images, Arc::new(NoEvents)).unwrap()
    }

    #[tokio::test]
    async fn shutdown_cancels_long_lived_tasks_and_waits_for_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let c = service(dir.path());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // A monitor-like loop: ended by the shutdown, never finishing on its own.
        c.spawn_until_shutdown(std::future::pending());
        // Work the shutdown waits for: it finishes once let go.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        c.spawn(async move {
            let _ = rx.await;
            d.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let stopping = tokio::spawn({
            let c = c.clone();
            async move { c.shutdown(Duration::from_secs(60)).await }
        });
        tx.send(()).unwrap();
        assert!(stopping.await.unwrap(), "every task ended");
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        // A delayed restart after the shutdown began gives up instead of starting.
        assert!(!c.sleep_unless_stopping(Duration::from_secs(3600)).await);
    }

    #[tokio::test]
    async fn shutdown_gives_up_on_a_task_after_its_grace() {
        let dir = tempfile::tempdir().unwrap();
        let c = service(dir.path());
        c.spawn(std::future::pending());
        assert!(!c.shutdown(Duration::from_millis(10)).await);
    }

    #[test]
    fn opening_needs_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let images = Arc::new(ImageStore::open(dir.path()).unwrap());
        let opts = Options {
            data_root: dir.path().to_path_buf(),
            shim_binary: PathBuf::new(),
            cgroup_parent: String::new(),
            runtimes: BTreeMap::new(),
            default_runtime: EMBEDDED_RUNTIME.into(),
            network: None,
            run_root: dir.path().join("run"),
            remap: None,
        };
        assert!(Containers::open(opts, images, Arc::new(NoEvents)).is_err());
    }
}
