//! The daemon's side of `docker build`: [`DaemonExecutor`] implements the engine's
//! [`StepExecutor`] over the image store and the container service.
//!
//! - FROM resolves a local image, or pulls it through the registry client (missing, or
//!   `pull=1`).
//! - RUN creates a build container of the parent image through the same manager, runtime and
//!   shim as `docker run`, streams its output, and commits the container's overlay upper
//!   directory (`Containers::commit_build_step`: no walk of the whole root filesystem).
//! - COPY/ADD and WORKDIR write their layer tar straight from the context ([`layer`]).
//! - Metadata steps commit an image with an empty layer, which the store records as an
//!   `empty_layer` history entry.
//!
//! Every step's result is an (untagged) image, as with the legacy builder, so a cache record
//! is only a key → image id pair and a cached step is reused by id.
//!
//! Cancellation: each RUN runs in its own task with a child of the build's token; when the
//! engine drops the step's future (client gone, `/build/cancel`, another stage failed) or the
//! daemon shuts down, the task kills and removes its container before it ends. Build
//! containers carry [`BUILD_LABEL`], so those a daemon crash left are removed at the next start.

pub mod fetch;
pub mod layer;
pub mod secrets;
mod service;
pub mod session;
pub mod tar_end;

pub use service::Builds;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::models::container::LogConfig;
use berth_api::models::{ContainerCreateRequest, HostConfig};
use berth_api::vocab::{NetworkMode, WaitCondition};
use berth_build::executor::{
    Commit, Committed, CopyStep, ExecError, HistoryItem, ImageInfo, MountedRoot, Output, RunStep,
    StepExecutor,
};
use berth_build::instructions::RunNetwork;
use berth_image::{CommitRequest, Digest, HistoryEntry, ImageConfig};
use berth_registry::client::{Credentials, OciRemote, Platform, Remote, pull_image};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use layer::{Effective, LayerWriter, ParentView};

/// Label on build containers (so that a restart can find those a crash left behind).
pub const BUILD_LABEL: &str = "com.berth.build-container";

/// Host settings of a build's RUN containers (the `/build` query).
#[derive(Debug, Clone, Default)]
pub struct RunHost {
    pub network_mode: Option<String>,
    pub extra_hosts: Vec<String>,
    pub shm_size: i64,
    pub memory: i64,
    pub memory_swap: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// `rm` (dockerd's default: true): remove a RUN step's container once the step succeeded.
    pub remove: bool,
    /// `forcerm`: remove it even when the step failed (by default a failed step's container
    /// is kept, so the user can inspect it, as dockerd does).
    pub force_remove: bool,
    /// `session=`: the build session (`POST /session`) that provides secrets and ssh agents.
    pub session: Option<String>,
}

pub struct DaemonExecutor {
    pub state: AppState,
    /// Cancelled when the build is (client gone, `/build/cancel`, shutdown).
    pub cancel: CancellationToken,
    pub host: RunHost,
    /// `X-Registry-Config`: credentials per registry host, for FROM pulls.
    pub credentials: std::collections::HashMap<String, Credentials>,
}

fn err(e: impl std::fmt::Display) -> ExecError {
    ExecError::new(e.to_string())
}

fn cancelled() -> ExecError {
    ExecError {
        message: "Build cancelled".into(),
        cancelled: true,
        code: None,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ExecError> + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExecError::new(format!("internal error: {e}")))?
}

fn short(id: &str) -> &str {
    berth_build::engine::short_id(id)
}

/// The image config a step's commit records.
fn image_config(c: &Commit) -> ImageConfig {
    ImageConfig {
        architecture: c.architecture.clone(),
        os: c.os.clone(),
        variant: c.variant.clone(),
        author: c.author.clone(),
        config: Some(c.config.clone()),
        ..Default::default()
    }
}

fn commit_request(c: &Commit) -> CommitRequest {
    CommitRequest {
        config: image_config(c),
        history: HistoryEntry {
            created_by: Some(c.created_by.clone()),
            author: c.author.clone(),
            ..Default::default()
        },
        reference: None,
    }
}

fn digest(id: &str) -> Result<Digest, ExecError> {
    Digest::parse(id).map_err(err)
}

impl DaemonExecutor {
    fn info(image: berth_image::Image) -> ImageInfo {
        ImageInfo {
            id: image.id.to_string(),
            config: image.config.config.clone().unwrap_or_default(),
            os: if image.config.os.is_empty() {
                "linux".into()
            } else {
                image.config.os.clone()
            },
            architecture: image.config.architecture.clone(),
            variant: image.config.variant.clone(),
        }
    }

    async fn pull(&self, name: &str, out: &Output) -> Result<ImageInfo, ExecError> {
        let reference = crate::imagestore::Reference::parse_normalized(name).map_err(err)?;
        let reference = if reference.digest().is_some() {
            reference
        } else {
            reference.with_default_tag()
        };
        let remote = Arc::new(
            OciRemote::new(self.state.config.registry.remote_options()).with_credentials(
                self.credentials
                    .get(reference.domain())
                    .cloned()
                    .unwrap_or(Credentials::Anonymous),
            ),
        );
        let top = remote.fetch_manifest(&reference).await.map_err(|e| {
            let m = crate::router::registry_error_message(&e);
            ExecError::new(m)
        })?;
        let state = self.state.clone();
        let handle = tokio::runtime::Handle::current();
        let out = out.clone();
        let options = state.config.registry.pull_options(&state.config.data_root);
        blocking(move || {
            let events = |e: berth_registry::client::PullEvent| {
                if e.progress.is_none() {
                    match &e.id {
                        Some(id) => out(&format!("{id}: {}\n", e.status)),
                        None => out(&format!("{}\n", e.status)),
                    }
                }
            };
            let outcome = pull_image(
                remote.as_ref(),
                &handle,
                &state.images,
                &reference,
                top,
                &Platform::host(),
                &options,
                &events,
            )
            .map_err(|e| ExecError::new(crate::router::registry_error_message(&e)))?;
            Ok(Self::info(outcome.image))
        })
        .await
    }
}

impl DaemonExecutor {
    /// Runs a committing step on the blocking pool in a task of its own. A step cancelled
    /// meanwhile (its future dropped, or the build cancelled) cannot be stopped half-way
    /// through the store's publish, so its image, once made, is deleted again: a cancelled
    /// build leaves no image the cache does not know.
    async fn guarded(
        &self,
        f: impl FnOnce() -> Result<Committed, ExecError> + Send + 'static,
    ) -> Result<Committed, ExecError> {
        let token = self.cancel.child_token();
        let guard = token.clone().drop_guard();
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            let result = blocking(f).await;
            if token.is_cancelled() {
                if let Ok(c) = &result {
                    discard_image(&state, &c.id).await;
                }
                return Err(cancelled());
            }
            result
        });
        let result = task
            .await
            .map_err(|e| ExecError::new(format!("internal error: {e}")))?;
        guard.disarm();
        result
    }
}

/// Deletes an image a cancelled step made (untagged, used by nothing).
async fn discard_image(state: &AppState, id: &str) {
    let images = state.images.clone();
    let id = id.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = images.delete(&id, berth_image::DeleteOptions::default(), &|_| None) {
            tracing::debug!(image = %id, error = %e, "cannot remove a cancelled step's image");
        }
    })
    .await;
}

impl StepExecutor for DaemonExecutor {
    async fn resolve_image(
        &self,
        name: &str,
        pull: bool,
        out: Output,
    ) -> Result<ImageInfo, ExecError> {
        let images = self.state.images.clone();
        let n = name.to_string();
        let local = blocking(move || Ok(images.get(&n).ok())).await?;
        match local {
            Some(image) if !pull => Ok(Self::info(image)),
            local => match (self.pull(name, &out).await, local) {
                (Ok(info), _) => Ok(info),
                // `--pull` with a local image and an unreachable registry: build with what is
                // here, and say so.
                (Err(e), Some(image)) => {
                    out(&format!(
                        "could not pull {name} ({}); using the local image\n",
                        e.message
                    ));
                    Ok(Self::info(image))
                }
                (Err(e), None) => Err(e),
            },
        }
    }

    async fn image_exists(&self, id: &str) -> bool {
        let images = self.state.images.clone();
        let id = id.to_string();
        blocking(move || Ok(images.get(&id).is_ok()))
            .await
            .unwrap_or(false)
    }

    async fn run(&self, step: RunStep, out: Output) -> Result<Committed, ExecError> {
        let token = self.cancel.child_token();
        // Dropping this future (the engine cancelled the step) cancels the task, which then
        // removes its container.
        let guard = token.clone().drop_guard();
        let state = self.state.clone();
        let host = self.host.clone();
        let task = tokio::spawn(run_step(state, host, step, out, token));
        let result = task
            .await
            .map_err(|e| ExecError::new(format!("internal error: {e}")))?;
        guard.disarm();
        result
    }

    async fn copy(&self, step: CopyStep) -> Result<Committed, ExecError> {
        let state = self.state.clone();
        self.guarded(move || copy_step(&state, step)).await
    }

    async fn commit_empty(
        &self,
        parent: Option<String>,
        commit: Commit,
    ) -> Result<Committed, ExecError> {
        let images = self.state.images.clone();
        self.guarded(move || {
            let base = parent.as_deref().map(digest).transpose()?;
            let image = images
                .commit_image_on(base.as_ref(), None, commit_request(&commit))
                .map_err(err)?;
            Ok(Committed {
                id: image.id.to_string(),
                layer_size: 0,
            })
        })
        .await
    }

    async fn download(&self, url: &str, dir: &Path, name: &str) -> Result<PathBuf, ExecError> {
        let path = dir.join(name);
        tokio::select! {
            r = fetch::get_to_file(url, &path, Some(&self.state.config.registry.certs_dir))
                => r.map_err(ExecError::new)?,
            _ = self.cancel.cancelled() => return Err(cancelled()),
        }
        Ok(path)
    }

    async fn history(&self, id: &str) -> Result<Vec<HistoryItem>, ExecError> {
        let images = self.state.images.clone();
        let id = id.to_string();
        blocking(move || {
            let image = images.get(&id).map_err(err)?;
            Ok(image
                .config
                .history
                .iter()
                .map(|h| HistoryItem {
                    created_by: h.created_by.clone().unwrap_or_default(),
                    empty_layer: h.empty_layer,
                })
                .collect())
        })
        .await
    }

    async fn derive(
        &self,
        source: &str,
        entries: usize,
        commit: Commit,
    ) -> Result<Committed, ExecError> {
        let images = self.state.images.clone();
        let source = source.to_string();
        self.guarded(move || {
            let src = images.get(&source).map_err(err)?;
            let history = src.config.history[..entries].to_vec();
            let layers = history.iter().filter(|h| !h.empty_layer).count();
            let mut config = image_config(&commit);
            config.created =
                Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
            config.rootfs.diff_ids = src.config.rootfs.diff_ids[..layers].to_vec();
            config.history = history;
            let last_empty = config.history.last().is_some_and(|h| h.empty_layer);
            let image = images.derive_image(&src.id, layers, config).map_err(err)?;
            Ok(Committed {
                id: image.id.to_string(),
                layer_size: if last_empty {
                    0
                } else {
                    image.layers.last().map_or(0, |l| l.size)
                },
            })
        })
        .await
    }

    async fn mount(&self, image: &str) -> Result<Box<dyn MountedRoot>, ExecError> {
        let images = self.state.images.clone();
        let tmp = self.state.config.data_root.join("tmp");
        let id = image.to_string();
        blocking(move || {
            let layers = images.layer_dirs(&digest(&id)?).map_err(err)?;
            ImageView::mount(&tmp, &layers).map(|v| Box::new(v) as Box<dyn MountedRoot>)
        })
        .await
    }
}

/// An image's root filesystem, read-only: the layer itself for a one-layer image, else an
/// overlay of its layers; unmounted and removed on drop.
struct ImageView {
    path: PathBuf,
    mounted: bool,
    /// A directory this view created (the mountpoint or an empty root).
    created: Option<PathBuf>,
}

impl ImageView {
    fn mount(tmp: &Path, layers: &[PathBuf]) -> Result<ImageView, ExecError> {
        if layers.len() == 1 {
            return Ok(ImageView {
                path: layers[0].clone(),
                mounted: false,
                created: None,
            });
        }
        std::fs::create_dir_all(tmp).map_err(err)?;
        let dir = tmp.join(format!("build-view-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&dir).map_err(err)?;
        if layers.is_empty() {
            return Ok(ImageView {
                path: dir.clone(),
                mounted: false,
                created: Some(dir),
            });
        }
        let lowers: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let data = std::ffi::CString::new(format!("lowerdir={}", lowers.join(":")))
            .map_err(|e| ExecError::new(format!("invalid layer path: {e}")))?;
        if let Err(e) = rustix::mount::mount(
            "overlay",
            &dir,
            "overlay",
            rustix::mount::MountFlags::RDONLY,
            data.as_c_str(),
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(ExecError::new(format!("cannot mount an image view: {e}")));
        }
        Ok(ImageView {
            path: dir.clone(),
            mounted: true,
            created: Some(dir),
        })
    }
}

impl MountedRoot for ImageView {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ImageView {
    fn drop(&mut self) {
        if self.mounted
            && let Err(e) = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot unmount image view");
        }
        if let Some(d) = &self.created {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn copy_step(state: &AppState, step: CopyStep) -> Result<Committed, ExecError> {
    let images = &state.images;
    let base = step.parent.as_deref().map(digest).transpose()?;
    let mut layers = match &base {
        Some(b) => images.layer_dirs(b).map_err(err)?,
        None => Vec::new(),
    };
    layers.reverse();
    let parent = ParentView { layers };
    let owner = match &step.chown {
        None => (0, 0),
        Some(spec) => chown_ids(spec, &parent)?,
    };
    let eff = Effective {
        owner,
        chmod: step.chmod,
        exclude: step.exclude.clone(),
    };
    let (mut reader, writer) = std::io::pipe().map_err(err)?;
    let items = step.items.clone();
    let mkdirs = step.mkdirs.clone();
    let image = std::thread::scope(|s| {
        let packer = s.spawn(move || -> std::io::Result<usize> {
            let mut w = LayerWriter::new(writer, &parent);
            for d in &mkdirs {
                w.mkdir(d)?;
            }
            for item in &items {
                w.item(item, &eff)?;
            }
            let n = w.entries;
            w.finish()?;
            Ok(n)
        });
        let committed = images.commit_image_on(
            base.as_ref(),
            Some(&mut reader),
            commit_request(&step.commit),
        );
        // Whatever the store did not read, so the packer cannot block on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        drop(reader);
        let packed = packer
            .join()
            .map_err(|_| ExecError::new("layer writer panicked"))?;
        match (committed, packed) {
            (_, Err(e)) => Err(ExecError::new(format!("cannot write the layer: {e}"))),
            (Err(e), _) => Err(err(e)),
            (Ok(image), Ok(_)) => Ok(image),
        }
    })?;
    let before = base
        .as_ref()
        .and_then(|b| images.get(&b.to_string()).ok())
        .map_or(0, |i| i.layers.len());
    let layer_size = if image.layers.len() > before {
        image.layers.last().map_or(0, |l| l.size)
    } else {
        0
    };
    Ok(Committed {
        id: image.id.to_string(),
        layer_size,
    })
}

/// `--chown=user[:group]` against the parent image's /etc/passwd and /etc/group. A user given
/// alone also names the group (Docker's documented rule: the same numeric id as the uid).
fn chown_ids(spec: &str, parent: &ParentView) -> Result<(u32, u32), ExecError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str, what: &str| -> Result<u32, ExecError> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        let text = parent.read(file);
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[0] == name).then(|| f[2].parse::<u32>().ok())?
            })
            .next()
            .ok_or_else(|| {
                ExecError::new(format!(
                    "unable to convert uid/gid chown string to host mapping: can't find {what} \
                     for {what_name} {name}: no such {what_name}: {name}",
                    what_name = if what == "uid" { "user" } else { "group" }
                ))
            })
    };
    let uid = lookup("etc/passwd", user, "uid")?;
    let gid = match group {
        Some(g) if !g.is_empty() => lookup("etc/group", g, "gid")?,
        _ => uid,
    };
    Ok((uid, gid))
}

/// `RUN --mount`s as container mounts; cache directories are made on first use under
/// `<data-root>/builder/cache-mounts/` (kept across builds, emptied by `builder prune --all`).
fn step_mounts(
    state: &AppState,
    mounts: &[berth_build::executor::StepMount],
) -> Result<Vec<berth_api::models::container::Mount>, ExecError> {
    use berth_api::models::container::Mount;
    use berth_build::executor::StepMount;
    let mut out = Vec::new();
    for m in mounts {
        out.push(match m {
            StepMount::Bind {
                source,
                target,
                read_only,
            } => Mount {
                kind: "bind".into(),
                source: source.to_string_lossy().into_owned(),
                target: target.clone(),
                read_only: *read_only,
                ..Default::default()
            },
            StepMount::Cache {
                id,
                target,
                uid,
                gid,
                mode,
            } => {
                let name = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()));
                let dir = cache_mounts_dir(state).join(name);
                if !dir.exists() {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::create_dir_all(&dir).map_err(err)?;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode))
                        .map_err(err)?;
                    std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid)).map_err(err)?;
                }
                Mount {
                    kind: "bind".into(),
                    source: dir.to_string_lossy().into_owned(),
                    target: target.clone(),
                    ..Default::default()
                }
            }
            StepMount::Tmpfs { target, size } => Mount {
                kind: "tmpfs".into(),
                target: target.clone(),
                tmpfs_options: (*size > 0).then(|| berth_api::models::container::TmpfsOptions {
                    size_bytes: *size as i64,
                    ..Default::default()
                }),
                ..Default::default()
            },
            // Made by `secrets::prepare`.
            StepMount::Secret { .. } | StepMount::Ssh { .. } => continue,
        });
    }
    Ok(out)
}

/// Where `RUN --mount=type=cache` directories live.
pub fn cache_mounts_dir(state: &AppState) -> PathBuf {
    state.config.data_root.join("builder").join("cache-mounts")
}

/// Runs one RUN step in a build container and commits it; the container is removed whatever
/// happens, including a cancellation while the command runs.
async fn run_step(
    state: AppState,
    host: RunHost,
    step: RunStep,
    out: Output,
    token: CancellationToken,
) -> Result<Committed, ExecError> {
    let Some(parent) = step.parent.clone() else {
        return Err(ExecError::new(
            "The command cannot run: the image has no files (FROM scratch)",
        ));
    };
    let argv = step.run_config.cmd.clone().unwrap_or_default();
    let mut config = step.run_config.clone();
    config.image = parent.clone();
    config
        .labels
        .get_or_insert_with(Default::default)
        .insert(BUILD_LABEL.into(), "1".into());
    let network = match (step.network, host.network_mode.as_deref()) {
        (Some(RunNetwork::None), _) => "none".to_string(),
        (Some(RunNetwork::Host), _) => "host".to_string(),
        (_, Some(m)) if !m.is_empty() && m != "default" => m.to_string(),
        _ => "default".to_string(),
    };
    let mut hc = HostConfig {
        network_mode: NetworkMode::parse(&network),
        // The output is read back from the log: the build needs it whatever the daemon's
        // default log driver is.
        log_config: LogConfig {
            kind: "json-file".into(),
            config: Default::default(),
        },
        shm_size: host.shm_size,
        extra_hosts: (!host.extra_hosts.is_empty()).then(|| host.extra_hosts.clone()),
        ..Default::default()
    };
    let parent_view = {
        let mut layers = state.images.layer_dirs(&digest(&parent)?).map_err(err)?;
        layers.reverse();
        ParentView { layers }
    };
    let step_secrets = secrets::prepare(
        &state.config.exec_root,
        host.session.as_deref(),
        &step.mounts,
        &parent_view,
    )
    .await?;
    config.cmd = Some(step_secrets.wrap(argv.clone()));
    let mut mounts = step_mounts(&state, &step.mounts)?;
    mounts.extend(step_secrets.mounts.iter().cloned());
    hc.mounts = Some(mounts);
    hc.resources.memory = host.memory;
    hc.resources.memory_swap = host.memory_swap;
    hc.resources.cpu_shares = host.cpu_shares;
    hc.resources.cpu_period = host.cpu_period;
    hc.resources.cpu_quota = host.cpu_quota;
    hc.resources.cpuset_cpus = host.cpuset_cpus.clone();
    hc.resources.cpuset_mems = host.cpuset_mems.clone();
    let req = ContainerCreateRequest {
        config,
        host_config: Some(hc),
        networking_config: None,
    };
    let ctrs = state.ctrs.clone();
    let (id, _) = ctrs.create(None, req).await.map_err(err)?;
    out(&format!(" ---> Running in {}\n", short(&id)));
    let result = run_and_commit(
        &state,
        &id,
        &argv,
        &step.commit,
        &out,
        &token,
        &step_secrets,
    )
    .await;
    drop(step_secrets);
    // dockerd's rules: a cancelled build removes its container silently; otherwise `forcerm`
    // removes it always, `rm` only after a success, and a kept one stays for inspection.
    let cancelled = matches!(&result, Err(e) if e.cancelled);
    let remove = cancelled || host.force_remove || (host.remove && result.is_ok());
    if !remove {
        if let Err(e) = mark_kept(&state.config.data_root, &id) {
            tracing::warn!(container = %id, error = %e, "cannot mark a kept build container");
        }
        return result;
    }
    match ctrs.remove_with_volumes(&id, true, true).await {
        Ok(()) if !cancelled => {
            out(&format!("Removing intermediate container {}\n", short(&id)));
        }
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "cannot remove a build container");
        }
    }
    result
}

/// Where the ids of build containers kept on purpose (`rm=0`, a failed step without
/// `forcerm`) are recorded, so that the removal of a crash's leftovers at start spares them.
fn kept_dir(data_root: &Path) -> PathBuf {
    data_root.join("builder").join("kept-containers")
}

fn mark_kept(data_root: &Path, id: &str) -> std::io::Result<()> {
    let dir = kept_dir(data_root);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(id), b"")
}

async fn run_and_commit(
    state: &AppState,
    id: &str,
    argv: &[String],
    commit: &Commit,
    out: &Output,
    token: &CancellationToken,
    step_secrets: &secrets::StepSecrets,
) -> Result<Committed, ExecError> {
    let ctrs = &state.ctrs;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let opts = berth_container::LogOptions {
        stdout: true,
        stderr: true,
        follow: true,
        since: None,
        until: None,
        timestamps: false,
        tail: None,
    };
    let attach = {
        let ctrs = ctrs.clone();
        let id = id.to_string();
        tokio::spawn(async move { ctrs.attach_output(&id, opts, true, tx).await })
    };
    let wait = ctrs.wait(id, WaitCondition::NextExit).map_err(err)?;
    let forward = {
        let out = out.clone();
        async move {
            while let Some(chunk) = rx.recv().await {
                out(&String::from_utf8_lossy(&demux(&chunk)));
            }
        }
    };
    let run = async {
        ctrs.start(id).await.map_err(err)?;
        let (code, ()) = tokio::join!(wait, forward);
        Ok::<i64, ExecError>(code)
    };
    let code = tokio::select! {
        r = run => r,
        _ = token.cancelled() => {
            let _ = ctrs.kill(id, Some("KILL")).await;
            attach.abort();
            return Err(cancelled());
        }
    };
    attach.abort();
    let code = match code {
        Ok(c) => c,
        Err(e) => {
            return Err(ExecError::new(format!(
                "The command '{}' could not start: {e}",
                argv.join(" ")
            )));
        }
    };
    if code != 0 {
        return Err(ExecError {
            code: Some(code),
            ..ExecError::new(format!(
                "The command '{}' returned a non-zero code: {code}",
                argv.join(" ")
            ))
        });
    }
    if let Ok(c) = ctrs.get(id) {
        step_secrets.remove_stubs(&c.dir().join("upper"));
    }
    let (image, size) = ctrs
        .commit_build_step(id, commit_request(commit))
        .await
        .map_err(err)?;
    if token.is_cancelled() {
        discard_image(state, &image.id.to_string()).await;
        return Err(cancelled());
    }
    Ok(Committed {
        id: image.id.to_string(),
        layer_size: size,
    })
}

/// The payload of the attach stream's frames (8-byte header: stream, 0, 0, 0, length), which
/// `attach_output` writes for a container without a TTY; the build shows stdout and stderr
/// alike.
fn demux(chunk: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut rest = chunk;
    while rest.len() >= 8 {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + len).min(rest.len());
        out.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    out
}

/// Removes build containers a crash left behind (called at daemon start).
pub async fn remove_leftover_containers(ctrs: &berth_container::Containers, data_root: &Path) {
    let Ok(list) = ctrs.list(true, None, Default::default()) else {
        return;
    };
    let kept = kept_dir(data_root);
    for c in list {
        if c.labels.contains_key(BUILD_LABEL)
            && !kept.join(&c.id).exists()
            && let Err(e) = ctrs.remove_with_volumes(&c.id, true, true).await
        {
            tracing::warn!(container = %c.id, error = %e, "cannot remove a leftover build container");
        }
    }
}

/// Unmounts the image views (`COPY --from`) a crash left under `<data-root>/tmp`, so that the
/// image store can empty it at start.
pub fn unmount_leftover_views(data_root: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = data_root.join("tmp").join("build-view-");
    let prefix = prefix.to_string_lossy();
    for m in berth_runtime::rootfs::mountpoints(&info) {
        if m.starts_with(prefix.as_ref())
            && let Err(e) = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH)
        {
            tracing::warn!(path = %m, error = %e, "cannot unmount a leftover build view");
        }
    }
}

/// Reads a whole small file (a Dockerfile) from the context, `None` when missing.
pub fn read_small(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s)?;
            Ok(Some(s))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
