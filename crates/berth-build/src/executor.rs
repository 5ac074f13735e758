//! The seam between the build engine and the daemon: the engine decides *what* each step is
//! (its config, its cache key, which files it copies where); a [`StepExecutor`] makes it real
//! over the image store and the container runtime. berthd implements it (`berthd/src/build/`);
//! the engine's unit tests use a fake. This keeps berth-build free of berth-container and
//! berth-image, as `NetworkAttacher` keeps berth-container free of berth-network.
//!
//! The methods are async (`impl Future + Send`) rather than blocking: a RUN step waits on a
//! container for as long as its command runs, and independent stages run concurrently, so
//! blocking a thread per waiting step would pin the small blocking pool. Dropping a returned
//! future cancels the step: the implementation must then leave no container, mount or partial
//! layer behind (berthd runs each step in a task that cleans up when its caller goes away).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use berth_api::models::ContainerConfig;

use crate::instructions::RunNetwork;

/// Where a step writes the text the legacy stream shows (`Running in`, a RUN's output).
pub type Output = Arc<dyn Fn(&str) + Send + Sync>;

/// An error of the executor, already worded for the user (`The command '/bin/sh -c exit 7'
/// returned a non-zero code: 7`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExecError {
    pub message: String,
    /// The build was cancelled (client gone, `/build/cancel`, daemon shutdown).
    pub cancelled: bool,
    /// A RUN's exit code: the docker CLI exits with it.
    pub code: Option<i64>,
}

impl ExecError {
    pub fn new(message: impl Into<String>) -> Self {
        ExecError {
            message: message.into(),
            cancelled: false,
            code: None,
        }
    }
}

/// An image the build starts from or produced, as the engine needs to know it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageInfo {
    /// `sha256:<hex>`.
    pub id: String,
    pub config: ContainerConfig,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// What a step adds to the image history, and the image's config after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commit {
    /// The runtime config of the new image.
    pub config: ContainerConfig,
    /// The history entry's `created_by` (`/bin/sh -c #(nop)  ENV A=b`).
    pub created_by: String,
    /// The image's author (`MAINTAINER`), carried from step to step.
    pub author: Option<String>,
    /// Platform of the base (kept in the new image's config).
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// An image a step committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// `sha256:<hex>`.
    pub id: String,
    /// Bytes of the layer the step added (0: none), for the cache's budget.
    pub layer_size: u64,
}

/// One entry of an image's history, as `--cache-from` compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    pub created_by: String,
    pub empty_layer: bool,
}

/// A `RUN` step: run `argv` in a container of `parent` and commit its changes.
#[derive(Debug, Clone)]
pub struct RunStep {
    /// The image to run in (`None`: `FROM scratch`, which has nothing to run).
    pub parent: Option<String>,
    /// The container's config: `cmd` is the argv, `env` the image's plus the build args used.
    pub run_config: ContainerConfig,
    pub network: Option<RunNetwork>,
    /// `RUN --mount`s, resolved to what the container gets.
    pub mounts: Vec<StepMount>,
    /// `networkmode` of the build (`default`, `host`, `none`, a network name).
    pub network_mode: Option<String>,
    pub commit: Commit,
}

/// A `RUN --mount` as the container gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMount {
    /// A context path or a stage's/image's path (kept mounted by the engine for the step).
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A directory that persists between builds, by `id` (the target when none is given).
    Cache {
        id: String,
        target: String,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    Tmpfs {
        target: String,
        /// Bytes; 0: the default.
        size: u64,
    },
    /// A secret the build session provides (`berth build --secret id=...`), as a read-only
    /// file at `target` and/or the value of the variable `env`.
    Secret {
        id: String,
        target: Option<String>,
        env: Option<String>,
        /// A secret the session does not have fails the step (else the step runs without).
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// An ssh-agent socket at `target`, forwarded to the session's agent `id`.
    Ssh {
        id: String,
        target: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// One file tree to put into a COPY/ADD layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyItem {
    /// The source on the daemon's filesystem (inside the context or a mounted image).
    pub src: PathBuf,
    /// Absolute path in the image it becomes (for a directory: its contents go below it).
    pub dest: String,
    /// ADD of a local tar archive: extract it into `dest` instead of copying it.
    pub extract: bool,
    /// A file copied to a destination without a trailing `/`: when that path is an existing
    /// directory in the parent image, the file goes below it under its own name (Docker's
    /// rule, decided by the executor, which sees the image).
    pub into_existing_dir: bool,
}

/// A `COPY`/`ADD` (or the directory `WORKDIR` creates): a layer written straight from
/// `items`, without a container.
#[derive(Debug, Clone)]
pub struct CopyStep {
    pub parent: Option<String>,
    pub items: Vec<CopyItem>,
    /// Directories to create (empty ones, e.g. `WORKDIR`), absolute.
    pub mkdirs: Vec<String>,
    /// `--chown` as written (`user[:group]`, names resolved in `parent`'s /etc/passwd and
    /// /etc/group); `None`: 0:0 as Docker.
    pub chown: Option<String>,
    /// `--chmod` already parsed (octal).
    pub chmod: Option<u32>,
    /// `--exclude` patterns, matched against paths below a copied directory.
    pub exclude: Vec<String>,
    pub commit: Commit,
}

/// A root filesystem the engine can read (an image's, for `COPY --from`), mounted until this
/// is dropped.
pub trait MountedRoot: Send + Sync {
    fn path(&self) -> &std::path::Path;
}

/// How the engine reaches the daemon. See the module documentation.
pub trait StepExecutor: Send + Sync {
    /// A base image by name (`busybox`, `sha256:...`): the local one, or pulled when `pull` is
    /// set or it is missing and the daemon can pull. A missing image is Docker's error.
    fn resolve_image(
        &self,
        name: &str,
        pull: bool,
        out: Output,
    ) -> impl Future<Output = Result<ImageInfo, ExecError>> + Send;

    /// Whether an image (a cached step's result) still exists.
    fn image_exists(&self, id: &str) -> impl Future<Output = bool> + Send;

    /// Runs a RUN step and commits it; returns the new image. Writes ` ---> Running in
    /// <id>`, the command's output and `Removing intermediate container <id>` to `out`.
    fn run(
        &self,
        step: RunStep,
        out: Output,
    ) -> impl Future<Output = Result<Committed, ExecError>> + Send;

    /// Writes a COPY/ADD layer and commits it.
    fn copy(&self, step: CopyStep) -> impl Future<Output = Result<Committed, ExecError>> + Send;

    /// Commits a step that adds no layer (ENV, CMD, ...).
    fn commit_empty(
        &self,
        parent: Option<String>,
        commit: Commit,
    ) -> impl Future<Output = Result<Committed, ExecError>> + Send;

    /// Downloads `url` (ADD's remote source) into the directory `dir` as `name`; returns the
    /// file's path.
    fn download(
        &self,
        url: &str,
        dir: &std::path::Path,
        name: &str,
    ) -> impl Future<Output = Result<PathBuf, ExecError>> + Send;

    /// An image's history (`--cache-from` matching), by id or name; an error when it is not
    /// a local image.
    fn history(&self, id: &str)
    -> impl Future<Output = Result<Vec<HistoryItem>, ExecError>> + Send;

    /// A `--cache-from` hit: a new image made of the first `entries` history entries of
    /// `source` (and the layers they added), with `commit`'s config.
    fn derive(
        &self,
        source: &str,
        entries: usize,
        commit: Commit,
    ) -> impl Future<Output = Result<Committed, ExecError>> + Send;

    /// Mounts an image's root filesystem read-only for COPY --from.
    fn mount(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Box<dyn MountedRoot>, ExecError>> + Send;
}
