//! A container's filesystem from the outside: `docker diff` (changes in the writable layer),
//! `docker export` (the merged tree as a tar), `docker cp` (stat, tar of a path, extraction
//! into a directory) and `docker commit` (the writable layer as a new image layer).
//!
//! A running container's tree is its mounted `rootfs/`. A stopped container's overlay is
//! mounted for the operation and detached at once (`MNT_DETACH`), so only the file descriptor
//! this module holds keeps it alive: nothing is left mounted, even if the daemon dies midway.
//! While a stopped container's tree is in use its operation lock is held, so it cannot start.
//!
//! `cp` sees the container's volumes, binds and tmpfs mounts, and the daemon's hostname, hosts
//! and resolv.conf, as the container does: a running container's tree is then its init's
//! `/proc/<pid>/root` (its own mount namespace); for a stopped one, a thread of its own
//! unshares its mount namespace, mounts the overlay and binds the mounts' sources (and those
//! files, when still there) into it, so everything disappears with that thread.
//!
//! Every path inside the container is resolved relative to a descriptor of its root, following
//! symlinks as the container would see them (an absolute link target starts again at the
//! container's root, `..` stops there): nothing here ever reaches the host's own files.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::models::ContainerConfig;
use berth_api::models::container::FilesystemChange;
use berth_image::pack::{self, PackOptions, Skip};
use berth_image::unpack::ExtractOptions;
use berth_image::{CommitRequest, HistoryEntry, Image, ImageConfig};
use berth_runtime::rootfs;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use crate::error::{ContainerError, Result, invalid};
use crate::manager::{Container, Containers, cgroup_of};
use crate::record::Record;
use crate::{cgroup, merge};

/// An empty regular file at one of the [`MOUNT_STUBS`] paths.
fn is_mount_stub(rel: &[u8], st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
        && st.st_size == 0
        && MOUNT_STUBS.contains(&rel)
}

/// `Kind` values of a filesystem change.
pub const CHANGE_MODIFIED: u8 = 0;
pub const CHANGE_ADDED: u8 = 1;
pub const CHANGE_DELETED: u8 = 2;

/// Files the daemon bind-mounts over the container's; the empty stubs created as mountpoints
/// in the writable layer are not changes (Docker keeps them in a separate init layer).
const MOUNT_STUBS: [&[u8]; 3] = [b"etc/hostname", b"etc/hosts", b"etc/resolv.conf"];

/// Docker's `X-Docker-Container-Path-Stat`: a path's stat, `mode` in Go's `os.FileMode` bits.
pub use berth_api::models::PathStat;

/// `POST /commit` parameters.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `repo` and `tag` query parameters.
    pub repo: String,
    pub tag: String,
    pub comment: String,
    pub author: String,
    /// Dockerfile instructions applied to the new config (`CMD ["sh"]`, `ENV A=b`).
    pub changes: Vec<String>,
    /// Freeze the container while its layer is read (Docker's default).
    pub pause: bool,
    /// The request body: config values that override the container's.
    pub config: Option<ContainerConfig>,
    /// Written as the image's `docker_version`.
    pub docker_version: String,
}

/// `PUT /containers/{id}/archive` parameters.
#[derive(Debug, Clone, Default)]
pub struct ExtractRequest {
    pub path: String,
    pub no_overwrite_dir_non_dir: bool,
    /// Keep the tar's uid/gid (`docker cp -a`); otherwise everything belongs to root.
    pub copy_uid_gid: bool,
}

impl Containers {
    /// `GET /containers/{id}/changes`: the container's writable layer against its image.
    pub async fn changes(&self, key: &str) -> Result<Vec<FilesystemChange>> {
        let c = self.get(key)?;
        let r = c.record();
        let image_id = berth_image::Digest::parse(&r.image_id)?;
        let layers = self.image_store().layer_dirs(&image_id)?;
        let upper = c.paths().upper();
        blocking(move || changes(&upper, &layers)).await?
    }

    /// `GET /containers/{id}/export`: the container's whole filesystem as a tar stream into
    /// `out` (`/proc` and `/sys` as empty directories).
    pub async fn export(&self, key: &str, mut out: Box<dyn Write + Send>) -> Result<()> {
        let c = self.get(key)?;
        self.with_root(&c, move |root, _| {
            let skip = |p: &[u8], _: &rustix::fs::Stat| match p {
                b"proc" | b"sys" => Skip::Contents,
                _ => Skip::No,
            };
            let opts = PackOptions {
                skip: Some(&skip),
                overlay_diff: false,
            };
            pack::pack_dir_contents(root, &opts, &mut out)
                .map_err(|e| ContainerError::Internal(format!("cannot export container: {e}")))
        })
        .await
    }

    /// `HEAD /containers/{id}/archive`: the stat of `path` in the container.
    pub async fn stat_path(&self, key: &str, path: &str) -> Result<PathStat> {
        let c = self.get(key)?;
        let (path, key) = (path.to_string(), key.to_string());
        self.with_root_mounts(&c, move |root, _| stat_in_root(root, &path, &key))
            .await
    }

    /// `GET /containers/{id}/archive`: `path` as a tar (a file as one entry named by its
    /// basename, a directory with its contents under its basename) into `out`. The stat is
    /// returned first through `stat` so that it can be sent as a header.
    pub async fn archive_path(
        &self,
        key: &str,
        path: &str,
        stat: tokio::sync::oneshot::Sender<Result<PathStat>>,
        mut out: Box<dyn Write + Send>,
    ) -> Result<()> {
        let c = self.get(key)?;
        let (path, key) = (path.to_string(), key.to_string());
        self.with_root_mounts(&c, move |root, _| {
            let st = match stat_in_root(root, &path, &key) {
                Ok(st) => st,
                Err(e) => {
                    let text = e.to_string();
                    let _ = stat.send(Err(e));
                    return Err(ContainerError::Internal(text));
                }
            };
            let _ = stat.send(Ok(st));
            let (comps, follow) = split_container_path(&path);
            let resolved = resolve(root, &comps, follow).map_err(|e| path_error(e, &path, &key))?;
            let tar_name = tar_base_name(&path);
            let result = match resolved.split_last() {
                None => pack::pack_entry(
                    root,
                    OsStr::new("."),
                    &tar_name,
                    &PackOptions::default(),
                    &mut out,
                ),
                Some((name, parent)) => {
                    let parent =
                        open_in_root(root, parent).map_err(|e| path_error(e, &path, &key))?;
                    pack::pack_entry(
                        &parent,
                        OsStr::from_bytes(name),
                        &tar_name,
                        &PackOptions::default(),
                        &mut out,
                    )
                }
            };
            result.map_err(|e| ContainerError::Internal(format!("cannot archive {path}: {e}")))
        })
        .await
    }

    /// `PUT /containers/{id}/archive`: extracts the tar `body` into the directory `req.path`
    /// of the container.
    pub async fn extract_to_dir(
        &self,
        key: &str,
        req: ExtractRequest,
        body: Box<dyn Read + Send>,
    ) -> Result<()> {
        let body = Arc::new(std::sync::Mutex::new(body));
        let result = self.extract_locked(key, req, body.clone()).await;
        if result.is_err() {
            // Read the rest so the client sees the error, not a reset connection.
            let _ = blocking(move || {
                let mut body = body.lock().unwrap_or_else(|e| e.into_inner());
                io::copy(&mut *body, &mut io::sink())
            })
            .await;
        }
        result
    }

    async fn extract_locked(
        &self,
        key: &str,
        req: ExtractRequest,
        body: Arc<std::sync::Mutex<Box<dyn Read + Send>>>,
    ) -> Result<()> {
        let c = self.get(key)?;
        let key = key.to_string();
        self.with_root_mounts(&c, move |root, r| {
            let (comps, _) = split_container_path(&req.path);
            let resolved =
                resolve(root, &comps, true).map_err(|e| path_error(e, &req.path, &key))?;
            let dir = open_in_root(root, &resolved);
            match dir {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                    return Err(invalid("extraction point is not a directory"));
                }
                Err(e) => return Err(path_error(e, &req.path, &key)),
            }
            let dest = format!("/{}", String::from_utf8_lossy(&resolved.join(&b'/')));
            // Docker's rules: a read-only volume refuses, a volume of a read-only root accepts.
            let mounts = crate::volumes::entries(r);
            let in_mount = mounts
                .iter()
                .filter(|m| {
                    dest == m.destination
                        || dest.starts_with(&format!("{}/", m.destination.trim_end_matches('/')))
                })
                .max_by_key(|m| m.destination.len());
            match in_mount {
                Some(m) if !m.rw => return Err(invalid("mounted volume is marked read-only")),
                None if r.host_config.readonly_rootfs => {
                    return Err(ContainerError::Internal(
                        "container rootfs is marked read-only".into(),
                    ));
                }
                _ => {}
            }
            let opts = ExtractOptions {
                owner: (!req.copy_uid_gid).then_some((0, 0)),
                no_overwrite_dir_non_dir: req.no_overwrite_dir_non_dir,
            };
            let root_path = PathBuf::from(format!("/proc/self/fd/{}", root.as_raw_fd()));
            let mut body = body.lock().unwrap_or_else(|e| e.into_inner());
            berth_image::unpack::extract_into_root(&mut *body, &root_path, &dest, &opts)?;
            Ok(())
        })
        .await
    }

    /// `POST /commit`: a new image from the container's image and its writable layer.
    pub async fn commit(&self, key: &str, opts: CommitOptions) -> Result<Image> {
        let c = self.get(key)?;
        let _op = c.lock_ops().await;
        let r = c.record();
        if r.state.status == crate::record::Status::Removing {
            return Err(crate::error::conflict(format!(
                "cannot commit container {}: container is marked for removal",
                c.id()
            )));
        }
        let reference = match (opts.repo.as_str(), opts.tag.as_str()) {
            ("", _) => None,
            (repo, "") => Some(repo.to_string()),
            (repo, tag) => Some(format!("{repo}:{tag}")),
        };
        let mut config = opts.config.clone().unwrap_or_default();
        berth_image::changes::apply(&mut config, &opts.changes)?;
        merge::merge_image_config(&mut config, &r.config);
        let image_id = berth_image::Digest::parse(&r.image_id)?;
        let base = self.image_store().get(&r.image_id)?;
        let request = CommitRequest {
            config: new_image_config(&base.config, &r, config, &opts),
            history: HistoryEntry {
                created_by: Some(r.config.cmd.clone().unwrap_or_default().join(" ")),
                author: Some(opts.author.clone()).filter(|a| !a.is_empty()),
                comment: Some(opts.comment.clone()).filter(|a| !a.is_empty()),
                ..Default::default()
            },
            reference,
        };
        let paths = c.paths().clone();
        let freeze = opts.pause && r.state.status == crate::record::Status::Running;
        let cg = cgroup_of(&r, &paths);
        let store = self.image_store().clone();
        let image = blocking(move || -> Result<Image> {
            let frozen = freeze
                && match cgroup::freeze(&cg, true) {
                    Ok(()) => true,
                    // The container exited since its record was read and its cgroup went
                    // with it: nothing is left running to pause.
                    Err(e)
                        if e.kind() == io::ErrorKind::NotFound
                            || e.raw_os_error()
                                == Some(rustix::io::Errno::NODEV.raw_os_error()) =>
                    {
                        false
                    }
                    Err(e) => {
                        return Err(ContainerError::Internal(format!(
                            "cannot pause container to commit it: {e}"
                        )));
                    }
                };
            let layers = store.layer_dirs(&image_id)?;
            let result = commit_blocking(&store, &image_id, &paths.upper(), &layers, request);
            if frozen && let Err(e) = cgroup::freeze(&cg, false) {
                tracing::warn!(cgroup = %cg, error = %e, "cannot unpause container after commit");
            }
            result
        })
        .await??;
        let image_ref = match (opts.repo.as_str(), opts.tag.as_str()) {
            ("", _) => String::new(),
            (repo, "") => format!("{repo}:latest"),
            (repo, tag) => format!("{repo}:{tag}"),
        };
        self.event(
            &c,
            "commit",
            &[
                ("comment", opts.comment.clone()),
                ("imageID", image.id.to_string()),
                ("imageRef", image_ref),
            ],
        );
        Ok(image)
    }

    /// A build step's commit: the container's writable layer on top of its image, with the
    /// config and history entry exactly as the builder computed them (no merge with the
    /// container's config, whose `Cmd` is the step's command), and no event. The container
    /// must have stopped. Returns the new image and its layer's size (0: no layer).
    pub async fn commit_build_step(
        &self,
        key: &str,
        request: CommitRequest,
    ) -> Result<(Image, u64)> {
        let c = self.get(key)?;
        let _op = c.lock_ops().await;
        let r = c.record();
        let image_id = berth_image::Digest::parse(&r.image_id)?;
        let upper = c.paths().upper();
        let store = self.image_store().clone();
        blocking(move || -> Result<(Image, u64)> {
            let layers = store.layer_dirs(&image_id)?;
            let before = layers.len();
            let image = commit_blocking(&store, &image_id, &upper, &layers, request)?;
            let size = if image.layers.len() > before {
                image.layers.last().map_or(0, |l| l.size)
            } else {
                0
            };
            Ok((image, size))
        })
        .await?
    }

    /// Like [`Self::with_root`], with the container's mounts in place (see the module docs).
    async fn with_root_mounts<T: Send + 'static>(
        &self,
        c: &Arc<Container>,
        f: impl FnOnce(&OwnedFd, &Record) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let op = c.lock_ops().await;
        let r = c.record();
        if r.state.status.is_running() && r.state.pid > 0 {
            // What the container sees: its volumes, binds and tmpfs mounts, and the
            // hostname, hosts and resolv.conf the daemon binds over the image's.
            match open_dir(Path::new(&format!("/proc/{}/root", r.state.pid))) {
                Ok(root) => {
                    drop(op);
                    return blocking(move || f(&root, &r)).await?;
                }
                // It exited meanwhile: its tree as a stopped container's.
                Err(e) => tracing::debug!(id = %c.id(), error = %e, "no /proc root"),
            }
        }
        let mut entries = crate::volumes::entries(&r);
        entries.extend(etc_entries(&r, c.paths(), &entries));
        if entries.is_empty() {
            drop(op);
            return self.with_root(c, f).await;
        }
        let image_id = berth_image::Digest::parse(&r.image_id)?;
        let layers = self.rootfs_layers(&image_id)?;
        let dir = c.dir().to_path_buf();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("cp-mounts".into())
            .spawn(move || {
                let _ = tx.send(in_private_mounts(&layers, &dir, &entries, |root| {
                    f(root, &r)
                }));
            })
            .map_err(|e| ContainerError::Internal(format!("cannot start a thread: {e}")))?;
        let result = rx
            .await
            .map_err(|_| ContainerError::Internal("the copy thread ended early".into()))?;
        drop(op);
        result
    }

    /// Runs `f` on a descriptor of the container's root filesystem (see the module docs).
    async fn with_root<T: Send + 'static>(
        &self,
        c: &Arc<Container>,
        f: impl FnOnce(&OwnedFd, &Record) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let op = c.lock_ops().await;
        let r = c.record();
        let dir = c.dir().to_path_buf();
        let mountpoint = c.paths().rootfs();
        if r.state.status.is_running() && rootfs::is_mounted(&mountpoint) {
            let root = open_dir(&mountpoint)?;
            drop(op);
            return blocking(move || f(&root, &r)).await?;
        }
        let image_id = berth_image::Digest::parse(&r.image_id)?;
        let layers = self.rootfs_layers(&image_id)?;
        let result = blocking(move || {
            let mounted = rootfs::mount_overlay(&layers, &dir)?;
            let root = open_dir(&mounted);
            // Detached at once: our descriptor keeps it alive until `f` is done.
            if let Err(e) = rootfs::unmount(&mounted) {
                tracing::warn!(path = %mounted.display(), error = %e, "cannot detach a temporary rootfs mount");
            }
            f(&root?, &r)
        })
        .await?;
        drop(op);
        result
    }
}

/// On this thread only: a private mount namespace with the container's overlay at its
/// `rootfs/` and its bind and volume mounts inside (tmpfs mounts hold nothing while it is
/// stopped); runs `f` on the root. The namespace, and every mount, ends with the thread.
fn in_private_mounts<T>(
    layers: &[PathBuf],
    dir: &Path,
    entries: &[berth_volume::MountEntry],
    f: impl FnOnce(&OwnedFd) -> Result<T>,
) -> Result<T> {
    use nix::mount::{MsFlags, mount};
    let sys = |what: &str, e: nix::Error| {
        ContainerError::Internal(format!(
            "cannot {what} for a stopped container's mounts: {e}"
        ))
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| sys("unshare the mount namespace", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| sys("make mounts private", e))?;
    let root = rootfs::mount_overlay(layers, dir)?;
    for e in entries {
        if e.kind == berth_volume::MountKind::Tmpfs || e.source.is_empty() {
            continue;
        }
        let source = Path::new(&e.source);
        let Some(target) = mountpoint_in_root(&root, &e.destination, source.is_dir()) else {
            continue;
        };
        mount(
            Some(source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|err| sys(&format!("bind {} to {}", e.source, e.destination), err))?;
        if !e.rw {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|err| sys(&format!("make {} read-only", e.destination), err))?;
        }
    }
    f(&open_dir(&root)?)
}

/// The daemon's `/etc/hostname`, `hosts` and `resolv.conf` of a stopped container, as binds
/// over the image's files (as its last run saw them), for those still there and not
/// replaced by one of the container's own mounts (`entries`).
fn etc_entries(
    r: &Record,
    paths: &crate::record::Paths,
    entries: &[berth_volume::MountEntry],
) -> Vec<berth_volume::MountEntry> {
    [
        (paths.hostname(), "/etc/hostname"),
        (paths.hosts(), "/etc/hosts"),
        (paths.resolv_conf(), "/etc/resolv.conf"),
    ]
    .into_iter()
    .filter(|(file, dest)| file.is_file() && !entries.iter().any(|e| e.destination == *dest))
    .map(|(file, dest)| berth_volume::MountEntry {
        kind: berth_volume::MountKind::Bind,
        source: file.display().to_string(),
        destination: dest.into(),
        rw: !r.host_config.readonly_rootfs,
        ..Default::default()
    })
    .collect()
}

/// `dest` inside `root`, created (a directory, or an empty file for a file source) when
/// missing; `None` when a component is a symlink, which could lead out of the root.
fn mountpoint_in_root(root: &Path, dest: &str, dir: bool) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    let comps: Vec<&str> = dest.split('/').filter(|c| !c.is_empty()).collect();
    for (i, c) in comps.iter().enumerate() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return None,
            Ok(_) => {}
            Err(_) if i + 1 == comps.len() && !dir => {
                std::fs::File::create(&p).ok()?;
            }
            Err(_) => std::fs::create_dir(&p).ok()?,
        }
    }
    Some(p)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ContainerError::Internal(format!("internal error: {e}")))
}

fn open_dir(p: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ContainerError::io("open", p, e.into()))
}

fn commit_blocking(
    store: &berth_image::ImageStore,
    base: &berth_image::Digest,
    upper: &Path,
    layers: &[PathBuf],
    request: CommitRequest,
) -> Result<Image> {
    if changes(upper, layers)?.is_empty() {
        // Only mountpoint stubs (and the directories holding them): an empty layer, which
        // the store does not add, as Docker's commit of an unchanged container.
        return Ok(store.commit_image(base, &mut &[0u8; 1024][..], request)?);
    }
    let upper_fd = open_dir(upper)?;
    let (mut reader, mut writer) = io::pipe().map_err(|e| ContainerError::io("pipe", upper, e))?;
    let packer = std::thread::Builder::new()
        .name("commit-pack".into())
        .spawn(move || {
            let skip = |p: &[u8], st: &rustix::fs::Stat| {
                if is_mount_stub(p, st) {
                    Skip::Entry
                } else {
                    Skip::No
                }
            };
            let opts = PackOptions {
                skip: Some(&skip),
                overlay_diff: true,
            };
            pack::pack_dir_contents(&upper_fd, &opts, &mut writer)
        })
        .map_err(|e| ContainerError::Internal(format!("cannot start a thread: {e}")))?;
    let result = store.commit_image(base, &mut reader, request);
    drop(reader);
    let packed = packer
        .join()
        .map_err(|_| ContainerError::Internal("commit packer panicked".into()))?;
    match (result, packed) {
        (Ok(image), Ok(())) => Ok(image),
        (_, Err(e)) => Err(ContainerError::Internal(format!(
            "cannot read the container's changes: {e}"
        ))),
        (Err(e), _) => Err(e.into()),
    }
}

/// The new image's config: the base's platform, the merged container config, and Docker's
/// `container`, `container_config` and `docker_version` fields.
fn new_image_config(
    base: &ImageConfig,
    r: &Record,
    config: ContainerConfig,
    opts: &CommitOptions,
) -> ImageConfig {
    let mut extra = serde_json::Map::new();
    extra.insert("container".into(), r.id.clone().into());
    extra.insert(
        "container_config".into(),
        serde_json::to_value(&r.config).unwrap_or_default(),
    );
    for key in ["os.version", "os.features"] {
        if let Some(v) = base.extra.get(key) {
            extra.insert(key.into(), v.clone());
        }
    }
    ImageConfig {
        architecture: if base.architecture.is_empty() {
            "amd64".into()
        } else {
            base.architecture.clone()
        },
        os: if base.os.is_empty() {
            "linux".into()
        } else {
            base.os.clone()
        },
        variant: base.variant.clone(),
        author: Some(opts.author.clone()).filter(|a| !a.is_empty()),
        comment: Some(opts.comment.clone()).filter(|a| !a.is_empty()),
        docker_version: Some(opts.docker_version.clone()).filter(|v| !v.is_empty()),
        config: Some(config),
        extra,
        ..Default::default()
    }
}

// ---- changes ----

/// Compares the overlay upper directory `upper` with the image's layer directories `layers`
/// (bottom first): whiteouts are deletions, paths present in the image are modifications,
/// others additions; every directory above a change is reported as modified. Walk order
/// (sorted names, parents first), paths absolute.
pub fn changes(upper: &Path, layers: &[PathBuf]) -> Result<Vec<FilesystemChange>> {
    let mut found: BTreeMap<Vec<Vec<u8>>, u8> = BTreeMap::new();
    let root = open_dir(upper)?;
    walk_upper(&root, &mut Vec::new(), layers, &mut found)
        .map_err(|e| ContainerError::io("read changes in", upper, e))?;
    Ok(found
        .into_iter()
        .map(|(comps, kind)| FilesystemChange {
            path: format!(
                "/{}",
                comps
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            ),
            kind,
        })
        .collect())
}

fn walk_upper(
    dir: &OwnedFd,
    prefix: &mut Vec<Vec<u8>>,
    layers: &[PathBuf],
    found: &mut BTreeMap<Vec<Vec<u8>>, u8>,
) -> io::Result<()> {
    let mut names = Vec::new();
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    while let Some(ent) = reader.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    for name in names {
        let st = match rustix::fs::statat(dir, OsStr::from_bytes(&name), AtFlags::SYMLINK_NOFOLLOW)
        {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        prefix.push(name.clone());
        let kind = FileType::from_raw_mode(st.st_mode);
        let rel = prefix.join(&b'/');
        if is_mount_stub(&rel, &st) {
            prefix.pop();
            continue;
        }
        let whiteout = kind == FileType::CharacterDevice && st.st_rdev == 0;
        if whiteout {
            record(found, prefix, CHANGE_DELETED);
        } else {
            match lower_metadata(layers, prefix) {
                None => record(found, prefix, CHANGE_ADDED),
                // A directory copied up only because something below it changed is listed
                // through that change (the parent rule); by itself only when its mode or
                // owner changed. Its mtime always changes when entries are created in it.
                Some(md)
                    if kind == FileType::Directory
                        && !is_opaque(dir, &name)
                        && md.mode() == st.st_mode
                        && md.uid() == st.st_uid
                        && md.gid() == st.st_gid => {}
                Some(_) => record(found, prefix, CHANGE_MODIFIED),
            }
        }
        if kind == FileType::Directory {
            let sub = rustix::fs::openat(
                dir,
                OsStr::from_bytes(&name),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            walk_upper(&sub, prefix, layers, found)?;
        }
        prefix.pop();
    }
    Ok(())
}

/// Whether the directory `name` in `dir` is an overlay opaque directory (its lower contents
/// were deleted): a change of its own, even when nothing below it changed.
fn is_opaque(dir: &OwnedFd, name: &[u8]) -> bool {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(OsStr::from_bytes(name));
    let mut v = [0u8; 2];
    rustix::fs::lgetxattr(&path, "trusted.overlay.opaque", &mut v).is_ok_and(|n| n == 1)
        && v[0] == b'y'
}

/// Records a change and marks its parent directories modified (unless already recorded).
fn record(found: &mut BTreeMap<Vec<Vec<u8>>, u8>, comps: &[Vec<u8>], kind: u8) {
    found.insert(comps.to_vec(), kind);
    for i in 1..comps.len() {
        found.entry(comps[..i].to_vec()).or_insert(CHANGE_MODIFIED);
    }
}

#[cfg(test)]
fn in_lower(layers: &[PathBuf], comps: &[Vec<u8>]) -> bool {
    lower_metadata(layers, comps).is_some()
}

/// The metadata of `comps` in the merged view of `layers` (bottom first), `None` when the
/// image does not have it: the topmost layer that has the path or hides it (a whiteout, an
/// opaque parent) decides. Symlinks inside a layer are never followed.
pub(crate) fn lower_metadata(layers: &[PathBuf], comps: &[Vec<u8>]) -> Option<std::fs::Metadata> {
    for layer in layers.iter().rev() {
        let mut p = layer.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(OsStr::from_bytes(c));
            let md = match std::fs::symlink_metadata(&p) {
                Ok(md) => md,
                Err(_) => break,
            };
            let is_last = i + 1 == comps.len();
            if md.file_type().is_char_device() && md.rdev() == 0 {
                return None;
            }
            if is_last {
                return Some(md);
            }
            if !md.is_dir() {
                break;
            }
            let mut v = [0u8; 2];
            if rustix::fs::lgetxattr(&p, "trusted.overlay.opaque", &mut v).is_ok_and(|n| n == 1)
                && v[0] == b'y'
            {
                // Below an opaque directory nothing of the lower layers shows through.
                let rest = &comps[i + 1..];
                let mut q = p.clone();
                for c in rest {
                    q.push(OsStr::from_bytes(c));
                }
                return std::fs::symlink_metadata(&q).ok();
            }
        }
    }
    None
}

// ---- paths inside the container ----

/// Splits a container path into components and whether its last component is to be followed
/// (`/dir/` and `/dir/.` name the directory a symlink points to, as Docker's).
pub fn split_container_path(path: &str) -> (Vec<Vec<u8>>, bool) {
    let follow = path.ends_with('/') || path.ends_with("/.") || path == ".";
    let comps = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(|c| c.as_bytes().to_vec())
        .collect();
    (comps, follow)
}

/// The tar name of a copied path: its base name as given (`/etc/` → `etc`, `/etc/.` → `.`).
pub fn tar_base_name(path: &str) -> Vec<u8> {
    if path.ends_with("/.") || path == "." {
        return b".".to_vec();
    }
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some("") | None => b"/".to_vec(),
        Some(b) => b.as_bytes().to_vec(),
    }
}

/// Resolves `comps` inside the tree `root` like the container would: symlinks are followed
/// (the last one only when `follow_last`), absolute targets restart at `root`, `..` never
/// climbs above it. Returns the symlink-free components (the last may be a symlink when not
/// followed, or missing).
pub fn resolve(root: &OwnedFd, comps: &[Vec<u8>], follow_last: bool) -> io::Result<Vec<Vec<u8>>> {
    let mut todo: VecDeque<Vec<u8>> = comps.iter().cloned().collect();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_slice() {
            b"" | b"." => continue,
            b".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        if todo.is_empty() && !follow_last {
            out.push(c);
            break;
        }
        out.push(c);
        let target = match readlink_in_root(root, &out) {
            Ok(Some(t)) => t,
            // Not a symlink, or missing: the caller finds out when it opens the path.
            Ok(None) | Err(_) => continue,
        };
        links += 1;
        if links > 40 {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::LOOP.raw_os_error(),
            ));
        }
        out.pop();
        if target.starts_with(b"/") {
            out.clear();
        }
        for (i, t) in target
            .split(|b| *b == b'/')
            .filter(|t| !t.is_empty())
            .enumerate()
        {
            todo.insert(i, t.to_vec());
        }
    }
    Ok(out)
}

fn joined(comps: &[Vec<u8>]) -> Vec<u8> {
    if comps.is_empty() {
        return b".".to_vec();
    }
    comps.join(&b'/')
}

/// The target of `comps` when it is a symlink. The components are already symlink-free, so
/// `RESOLVE_NO_SYMLINKS` only guards against the tree changing meanwhile.
fn readlink_in_root(root: &OwnedFd, comps: &[Vec<u8>]) -> io::Result<Option<Vec<u8>>> {
    let fd = rustix::fs::openat2(
        root,
        OsStr::from_bytes(&joined(comps)),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
        return Ok(None);
    }
    Ok(Some(
        rustix::fs::readlinkat(&fd, "", Vec::new())?.into_bytes(),
    ))
}

/// Opens the directory `comps` (symlinks resolved in `root`).
pub fn open_in_root(root: &OwnedFd, comps: &[Vec<u8>]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat2(
        root,
        OsStr::from_bytes(&joined(comps)),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?)
}

fn path_error(e: io::Error, path: &str, container: &str) -> ContainerError {
    if e.kind() == io::ErrorKind::NotFound {
        ContainerError::PathNotFound(format!(
            "Could not find the file {path} in container {container}"
        ))
    } else {
        ContainerError::io("resolve", Path::new(path), e)
    }
}

fn stat_in_root(root: &OwnedFd, path: &str, container: &str) -> Result<PathStat> {
    let (comps, follow) = split_container_path(path);
    let resolved = resolve(root, &comps, follow).map_err(|e| path_error(e, path, container))?;
    let fd = rustix::fs::openat2(
        root,
        OsStr::from_bytes(&joined(&resolved)),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| path_error(e.into(), path, container))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| path_error(e.into(), path, container))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    let link_target = if kind == FileType::Symlink {
        let full = resolve(root, &comps, true).map_err(|e| path_error(e, path, container))?;
        format!("/{}", String::from_utf8_lossy(&full.join(&b'/')))
    } else {
        String::new()
    };
    let mtime = chrono::DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    Ok(PathStat {
        name: String::from_utf8_lossy(&tar_base_name(path)).into_owned(),
        size: st.st_size,
        mode: go_file_mode(st.st_mode),
        mtime,
        link_target,
    })
}

/// A Unix `st_mode` as Go's `os.FileMode` (what Docker's path stat carries).
pub fn go_file_mode(st_mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut m = st_mode & 0o777;
    m |= match FileType::from_raw_mode(st_mode) {
        FileType::Directory => DIR,
        FileType::Symlink => SYMLINK,
        FileType::BlockDevice => DEVICE,
        FileType::CharacterDevice => DEVICE | CHAR_DEVICE,
        FileType::Fifo => NAMED_PIPE,
        FileType::Socket => SOCKET,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        m |= SETUID;
    }
    if st_mode & 0o2000 != 0 {
        m |= SETGID;
    }
    if st_mode & 0o1000 != 0 {
        m |= STICKY;
    }
    m
}

#[cfg(test)]
mod tests;
