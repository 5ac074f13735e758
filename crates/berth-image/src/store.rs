//! The image store: content-addressed blobs, unpacked layers, image records and references
//! under one data root.
//!
//! ```text
//! blobs/sha256/<hex>              configs, manifests, layer blobs as they arrived (verified)
//! blobs/.ingest/                  blobs being written
//! layers/<chain-hex>/diff/        unpacked layer tree (overlayfs format)
//! layers/<chain-hex>/layer.json   diff id, parent chain id, unpacked size
//! layers/.tmp-<random>/           a layer being unpacked
//! metadata/images/<hex>.json      one record per image (its id is the config digest)
//! metadata/repositories.json      references (tags and digests) → image id
//! tmp/                            spooled archives
//! ```
//!
//! Nothing is reference counted on disk: whether a blob or layer is needed is derived from the
//! image records, so a crash can at worst leave unreferenced files, which [`ImageStore::open`]
//! removes. Every write is temp file + fsync + rename; an image becomes visible when its record
//! is written, after all its blobs and layers are in place.
//!
//! All methods block; an async daemon calls them from `spawn_blocking` and shares the store
//! through an `Arc`. Operations that change the store are serialised by `write_lock` so that
//! garbage collection never races a load or a save; reads only take the short `state` lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{ImageError, IoContext, Result};
use crate::publish::{PublishConfig, PublishRequest, Step, tags_of};
use crate::reference::Reference;

/// An image as listed and inspected.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// The config digest.
    pub id: Digest,
    /// Familiar tags, e.g. `busybox:latest`, sorted.
    pub repo_tags: Vec<String>,
    /// Familiar digest references, e.g. `busybox@sha256:...`, sorted.
    pub repo_digests: Vec<String>,
    pub config: ImageConfig,
    pub created: Option<DateTime<Utc>>,
    /// Sum of the unpacked sizes of the layers.
    pub size: u64,
    /// Bottom layer first.
    pub layers: Vec<LayerInfo>,
    pub manifest_digest: Option<Digest>,
    pub manifest_size: u64,
    pub config_size: u64,
    /// When this store received the image.
    pub loaded_at: DateTime<Utc>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// The blob the layer arrived as (possibly compressed), kept for `save`.
    pub blob_digest: Digest,
    /// Unpacked bytes.
    pub size: u64,
}

/// One line of `docker rmi` / prune output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteItem {
    /// A reference removed (familiar form).
    Untagged(String),
    /// An image id or layer chain id removed (`sha256:...`).
    Deleted(String),
}

/// `docker rmi` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub force: bool,
    /// Keep untagged parents. Images here have no parent chain, so this changes nothing.
    pub noprune: bool,
}

/// How a container uses an image; what the daemon's usage predicate reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerUse {
    Running(String),
    Stopped(String),
}

/// One image a load brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: Digest,
    /// Familiar tags (`busybox:latest`); empty for an untagged image.
    pub tags: Vec<String>,
}

/// Progress of a load, per layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadProgress {
    Layer {
        digest: Digest,
        current: u64,
        total: Option<u64>,
    },
    LayerDone {
        digest: Digest,
    },
}

/// `docker import` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// `repo[:tag]` to tag the new image with.
    pub reference: Option<String>,
    /// Dockerfile instructions applied to the config (`CMD ["sh"]`, `ENV A=b`, ...).
    pub changes: Vec<String>,
    /// Commit message, recorded as the history comment.
    pub message: Option<String>,
    /// Defaults to `linux`.
    pub os: Option<String>,
    /// Defaults to `amd64`.
    pub architecture: Option<String>,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<DeleteItem>,
    /// Bytes of unpacked layers actually removed.
    pub space_reclaimed: u64,
}

const REPOSITORIES_FILE: &str = "repositories.json";

/// The persistent record of one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub id: Digest,
    pub config_size: u64,
    pub manifest_digest: Option<Digest>,
    #[serde(default)]
    pub manifest_size: u64,
    #[serde(default)]
    pub manifest_media_type: Option<String>,
    pub layers: Vec<RecordLayer>,
    pub loaded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RecordLayer {
    pub diff_id: Digest,
    pub chain_id: Digest,
    pub blob_digest: Digest,
    pub blob_size: u64,
    pub media_type: String,
    pub size: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct RepositoriesFile {
    /// Full reference string → image id.
    references: BTreeMap<String, Digest>,
}

pub(crate) struct StoredImage {
    pub(crate) record: ImageRecord,
    pub(crate) config: ImageConfig,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) images: BTreeMap<Digest, StoredImage>,
    pub(crate) refs: BTreeMap<Reference, Digest>,
    /// Blobs an unfinished [`crate::Ingest`] relies on (with a count per ingest).
    pub(crate) pinned: HashMap<Digest, usize>,
}

/// How a name resolved.
enum Resolved {
    /// Through a stored reference (tag or digest).
    ByRef(Reference, Digest),
    /// Through the image id or a prefix of it.
    ById(Digest),
}

impl Resolved {
    fn id(&self) -> &Digest {
        match self {
            Resolved::ByRef(_, id) | Resolved::ById(id) => id,
        }
    }
}

/// The image store. See the module documentation for the layout on disk.
pub struct ImageStore {
    pub(crate) root: PathBuf,
    /// Held exclusively by operations that change the store (and may collect garbage), shared
    /// by `save`, which streams blobs that must not be collected meanwhile.
    pub(crate) write_lock: RwLock<()>,
    pub(crate) state: Mutex<State>,
}

pub(crate) fn exclusive(l: &RwLock<()>) -> RwLockWriteGuard<'_, ()> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn shared(l: &RwLock<()>) -> RwLockReadGuard<'_, ()> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the in-memory state half-updated in a way
    // that matters: the files on disk are the truth and are written before the state changes.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ImageStore {
    /// Opens (creating) the store under `data_root`, removes what a crash left behind and
    /// collects unreferenced blobs and layers.
    pub fn open(data_root: &Path) -> Result<ImageStore> {
        let store = ImageStore {
            root: data_root.to_path_buf(),
            write_lock: RwLock::new(()),
            state: Mutex::new(State::default()),
        };
        for dir in [
            store.blobs_dir(),
            store.ingest_dir(),
            store.layers_dir(),
            store.images_dir(),
            store.tmp_dir(),
        ] {
            fs::create_dir_all(&dir).ctx(|| format!("cannot create {}", dir.display()))?;
        }
        store.recover()?;
        Ok(store)
    }

    /// All images.
    pub fn images(&self) -> Vec<Image> {
        let state = lock(&self.state);
        state
            .images
            .keys()
            .map(|id| self.image_view(&state, id))
            .collect()
    }

    /// Resolves a name, reference, id or unique id prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Image> {
        let state = lock(&self.state);
        let resolved = resolve(&state, name_or_id)?;
        Ok(self.image_view(&state, resolved.id()))
    }

    /// Tags the image `source` (name or id) as `target` (`repo[:tag]`, default tag `latest`).
    pub fn tag(&self, source: &str, target: &str) -> Result<Reference> {
        let target = Reference::parse_tag_target(target)?;
        let _w = exclusive(&self.write_lock);
        let mut state = lock(&self.state);
        let id = resolve(&state, source)?.id().clone();
        self.add_reference(&mut state, target.clone(), id)?;
        Ok(target)
    }

    /// `docker rmi`, where `in_use` names a container using the image. Having no way to tell
    /// running from stopped containers, it treats every use as a running container (the
    /// conservative choice); [`ImageStore::delete_with_usage`] makes the distinction.
    pub fn delete(
        &self,
        name_or_id: &str,
        opts: DeleteOptions,
        in_use: &dyn Fn(&Digest) -> Option<String>,
    ) -> Result<Vec<DeleteItem>> {
        self.delete_with_usage(name_or_id, opts, &|id| {
            in_use(id).map(ContainerUse::Running)
        })
    }

    /// `docker rmi` with Docker's semantics: deleting by reference untags, and deletes the image
    /// when that was its last reference; deleting by id removes all its references (needs
    /// `force` when they span several repositories). An image used by a running container is
    /// never deleted; one used by a stopped container only with `force` (it is then only
    /// untagged, because the container still needs its layers).
    pub fn delete_with_usage(
        &self,
        name_or_id: &str,
        opts: DeleteOptions,
        usage: &dyn Fn(&Digest) -> Option<ContainerUse>,
    ) -> Result<Vec<DeleteItem>> {
        let _w = exclusive(&self.write_lock);
        let mut state = lock(&self.state);
        let resolved = resolve(&state, name_or_id)?;
        let id = resolved.id().clone();
        let mut items = Vec::new();
        // An untag that cannot be recorded (no space left) is undone in memory too.
        let refs_before = state.refs.clone();
        let save_or_undo = |state: &mut State| {
            self.save_refs(state).inspect_err(|_| {
                state.refs = refs_before.clone();
            })
        };
        let image_refs: Vec<Reference> = refs_of(&state, &id);
        let used = usage(&id);

        match resolved {
            Resolved::ByRef(reference, _) => {
                // The references left once this one goes (including the digest references
                // the cleanup below would take with it).
                let others: Vec<&Reference> =
                    image_refs.iter().filter(|r| **r != reference).collect();
                let only_digests_of_repo = reference.tag().is_some()
                    && others
                        .iter()
                        .all(|r| r.tag().is_none() && r.name() == reference.name());
                let last = others.is_empty() || only_digests_of_repo;
                if last
                    && !opts.force
                    && let Some(ContainerUse::Running(c) | ContainerUse::Stopped(c)) = &used
                {
                    return Err(ImageError::Conflict(format!(
                        "unable to remove repository reference \"{name_or_id}\" (must force) - container {} is using its referenced image {}",
                        short_id(c),
                        id.short()
                    )));
                }
                untag(&mut state, &reference, &id, &mut items);
                if !refs_of(&state, &id).is_empty() || used.is_some() {
                    save_or_undo(&mut state)?;
                    return Ok(items);
                }
            }
            Resolved::ById(_) => {
                check_delete_by_id(&id, &image_refs, used.as_ref(), opts.force)?;
                for r in image_refs {
                    state.refs.remove(&r);
                    items.push(DeleteItem::Untagged(r.familiar_string()));
                }
                if used.is_some() {
                    save_or_undo(&mut state)?;
                    return Ok(items);
                }
            }
        }
        // The image goes first, then its layers and blobs, and only then are the references
        // rewritten: on a full disk the deletion frees the space that write needs. A crash
        // in between leaves references to a missing image, which `open` drops.
        self.remove_image_record(&mut state, &id)?;
        items.push(DeleteItem::Deleted(id.to_string()));
        drop(state);
        let removed = self.gc()?;
        if let Err(e) = self.save_refs(&lock(&self.state)) {
            // The old file names only images that are gone for those references: `open`
            // drops them, so the deletion stands.
            tracing::warn!(error = %e, "cannot rewrite the references after deleting an image");
        }
        items.extend(
            removed
                .iter()
                .map(|(chain, _)| DeleteItem::Deleted(chain.to_string())),
        );
        Ok(items)
    }

    /// `docker load`: reads a docker-archive or OCI-layout tar and stores its images. Either
    /// every image of the archive is stored or, on error, none is, and whatever was written for
    /// them is collected before returning.
    pub fn load(
        &self,
        reader: &mut dyn Read,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Vec<LoadedImage>> {
        let _w = exclusive(&self.write_lock);
        let result = crate::archive::load(self, reader, progress)
            .and_then(|requests| self.publish(requests));
        self.collect_on_error("load", result).map_err(|e| match e {
            e @ ImageError::Load(_) => e,
            e => ImageError::Load(Box::new(e)),
        })
    }

    /// `docker save`: writes the named images as one tar in the combined layout Docker 25+
    /// writes (OCI layout plus `manifest.json`).
    pub fn save(&self, names: &[String], writer: &mut dyn Write) -> Result<()> {
        // Shared: concurrent saves are fine, but no garbage collection while blobs stream out.
        let _r = shared(&self.write_lock);
        let mut selections: Vec<(Digest, Vec<Reference>)> = Vec::new();
        let images = {
            let state = lock(&self.state);
            for name in names {
                let resolved = resolve(&state, name)?;
                let id = resolved.id().clone();
                let tags: Vec<Reference> = match &resolved {
                    Resolved::ById(_) => Vec::new(),
                    Resolved::ByRef(r, _) => {
                        let parsed = Reference::parse_normalized(name).ok();
                        match parsed {
                            // A bare repository name saves every tag of it that points here.
                            Some(p) if p.tag().is_none() && p.digest().is_none() => {
                                refs_of(&state, &id)
                                    .into_iter()
                                    .filter(|t| t.tag().is_some() && t.name() == p.name())
                                    .collect()
                            }
                            _ if r.tag().is_some() => vec![r.clone()],
                            _ => Vec::new(),
                        }
                    }
                };
                match selections.iter_mut().find(|(i, _)| *i == id) {
                    Some((_, existing)) => {
                        for t in tags {
                            if !existing.contains(&t) {
                                existing.push(t);
                            }
                        }
                    }
                    None => selections.push((id, tags)),
                }
            }
            selections
                .iter()
                .map(|(id, tags)| {
                    let stored = &state.images[id];
                    (stored.record.clone(), tags.clone())
                })
                .collect::<Vec<_>>()
        };
        crate::archive::save(self, &images, writer)
    }

    /// `docker import`: a root filesystem tar (plain, gzip or zstd) becomes a one-layer image.
    pub fn import(&self, reader: &mut dyn Read, opts: ImportOptions) -> Result<Image> {
        let tags = tags_of(opts.reference.as_deref())?;
        let mut container_config = berth_api::models::ContainerConfig::default();
        crate::changes::apply(&mut container_config, &opts.changes)?;
        let _w = exclusive(&self.write_lock);
        let result = (|| -> Result<Image> {
            let layer = self.store_layer(reader, None)?;
            let comment = opts.message.filter(|m| !m.is_empty());
            let config = ImageConfig {
                architecture: opts
                    .architecture
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| "amd64".into()),
                os: opts
                    .os
                    .filter(|o| !o.is_empty())
                    .unwrap_or_else(|| "linux".into()),
                comment: comment.clone(),
                config: Some(container_config),
                rootfs: crate::config::RootFs {
                    kind: "layers".into(),
                    diff_ids: Vec::new(),
                },
                ..Default::default()
            };
            let history = crate::config::HistoryEntry {
                created_by: Some("import from -".into()),
                comment: Some(comment.unwrap_or_else(|| "Imported from -".into())),
                ..Default::default()
            };
            self.publish_one(PublishRequest {
                config: PublishConfig::Built {
                    config,
                    // Unlike a commit, an import keeps even an empty layer.
                    step: Step {
                        history,
                        layer: Some(layer),
                    },
                },
                layers: Vec::new(),
                manifest: None,
                tags,
                repo_digest: None,
            })
        })();
        self.collect_on_error("import", result)
    }

    /// Deletes dangling images (no tags), or with `all` every image no container uses, among
    /// those `filter` accepts.
    pub fn prune(
        &self,
        all: bool,
        filter: &dyn Fn(&Image) -> bool,
        in_use: &dyn Fn(&Digest) -> Option<String>,
    ) -> Result<PruneReport> {
        let _w = exclusive(&self.write_lock);
        let mut report = PruneReport::default();
        {
            let mut state = lock(&self.state);
            let candidates: Vec<Digest> = state
                .images
                .keys()
                .filter(|id| {
                    let view = self.image_view(&state, id);
                    (all || view.repo_tags.is_empty()) && filter(&view) && in_use(id).is_none()
                })
                .cloned()
                .collect();
            for id in candidates {
                for r in refs_of(&state, &id) {
                    state.refs.remove(&r);
                    report
                        .deleted
                        .push(DeleteItem::Untagged(r.familiar_string()));
                }
                self.save_refs(&state)?;
                self.remove_image_record(&mut state, &id)?;
                report.deleted.push(DeleteItem::Deleted(id.to_string()));
            }
        }
        for (chain, size) in self.gc()? {
            report.deleted.push(DeleteItem::Deleted(chain.to_string()));
            report.space_reclaimed += size;
        }
        Ok(report)
    }

    /// The unpacked layer directories of an image, bottom layer first (overlay lowerdirs are
    /// given top first, so callers reverse this).
    pub fn layer_dirs(&self, id: &Digest) -> Result<Vec<PathBuf>> {
        let state = lock(&self.state);
        let stored = state
            .images
            .get(id)
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        Ok(stored
            .record
            .layers
            .iter()
            .map(|l| self.layer_dir(&l.chain_id).join("diff"))
            .collect())
    }

    /// The stored record and config of image `id` (for commit, which builds on them).
    pub(crate) fn record_and_config(&self, id: &Digest) -> Result<(ImageRecord, ImageConfig)> {
        let state = lock(&self.state);
        let stored = state
            .images
            .get(id)
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        Ok((stored.record.clone(), stored.config.clone()))
    }

    /// Per image: the bytes of its layers that at least one other image uses too.
    pub fn shared_sizes(&self) -> HashMap<Digest, u64> {
        let state = lock(&self.state);
        let mut users: HashMap<&Digest, usize> = HashMap::new();
        for stored in state.images.values() {
            let chains: BTreeSet<&Digest> =
                stored.record.layers.iter().map(|l| &l.chain_id).collect();
            for c in chains {
                *users.entry(c).or_default() += 1;
            }
        }
        state
            .images
            .iter()
            .map(|(id, stored)| {
                let shared = stored
                    .record
                    .layers
                    .iter()
                    .filter(|l| users.get(&l.chain_id).copied().unwrap_or(0) > 1)
                    .map(|l| l.size)
                    .sum();
                (id.clone(), shared)
            })
            .collect()
    }

    /// Total unpacked bytes of all stored layers (each counted once).
    pub fn layers_size(&self) -> u64 {
        let state = lock(&self.state);
        let mut seen = BTreeMap::new();
        for stored in state.images.values() {
            for l in &stored.record.layers {
                seen.insert(l.chain_id.clone(), l.size);
            }
        }
        seen.values().sum()
    }

    /// The data root this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    // ---- paths ----

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.root.join("blobs").join(".ingest")
    }
    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub(crate) fn images_dir(&self) -> PathBuf {
        self.root.join("metadata").join("images")
    }
    fn repositories_file(&self) -> PathBuf {
        self.root.join("metadata").join(REPOSITORIES_FILE)
    }
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }
    pub(crate) fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.layers_dir().join(chain.hex())
    }

    pub(crate) fn remove_image_record(&self, state: &mut State, id: &Digest) -> Result<()> {
        let path = self.images_dir().join(format!("{}.json", id.hex()));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ImageError::io(
                    format!("cannot remove {}", path.display()),
                    e,
                ));
            }
        }
        sync_dir(&self.images_dir())?;
        state.images.remove(id);
        state.refs.retain(|_, v| v != id);
        Ok(())
    }

    pub(crate) fn save_refs(&self, state: &State) -> Result<()> {
        let file = RepositoriesFile {
            references: state
                .refs
                .iter()
                .map(|(r, id)| (r.to_string(), id.clone()))
                .collect(),
        };
        write_json_atomic(&self.repositories_file(), &file)
    }

    pub(crate) fn image_view(&self, state: &State, id: &Digest) -> Image {
        let stored = &state.images[id];
        let mut repo_tags = Vec::new();
        let mut repo_digests = Vec::new();
        for (r, target) in &state.refs {
            if target != id {
                continue;
            }
            if r.digest().is_some() {
                repo_digests.push(r.familiar_string());
            } else {
                repo_tags.push(r.familiar_string());
            }
        }
        repo_tags.sort();
        repo_digests.sort();
        let layers: Vec<LayerInfo> = stored
            .record
            .layers
            .iter()
            .map(|l| LayerInfo {
                diff_id: l.diff_id.clone(),
                chain_id: l.chain_id.clone(),
                blob_digest: l.blob_digest.clone(),
                size: l.size,
            })
            .collect();
        Image {
            id: id.clone(),
            repo_tags,
            repo_digests,
            created: stored.config.created_time(),
            size: layers.iter().map(|l| l.size).sum(),
            layers,
            config: stored.config.clone(),
            manifest_digest: stored.record.manifest_digest.clone(),
            manifest_size: stored.record.manifest_size,
            config_size: stored.record.config_size,
            loaded_at: stored.record.loaded_at,
        }
    }

    // ---- recovery and garbage collection ----

    fn recover(&self) -> Result<()> {
        for dir in [self.tmp_dir(), self.ingest_dir()] {
            for entry in read_dir(&dir)? {
                remove_any(&entry)?;
            }
        }
        for entry in read_dir(&self.images_dir())? {
            if file_name(&entry).starts_with('.') {
                remove_any(&entry)?;
            }
        }
        // `metadata/` is shared with other components: only our own temp files go.
        let ours = format!(".{REPOSITORIES_FILE}.tmp-");
        for entry in read_dir(&self.root.join("metadata"))? {
            if file_name(&entry).starts_with(&ours) {
                remove_any(&entry)?;
            }
        }
        let mut state = lock(&self.state);
        for path in read_dir(&self.images_dir())? {
            let name = file_name(&path);
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            match self.read_image(&path) {
                Ok(stored) if stored.record.id.hex() == hex => {
                    state.images.insert(stored.record.id.clone(), stored);
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "image record under the wrong name; ignored")
                }
                Err(e) => {
                    // An image whose config is gone cannot be used or repaired; forget it so the
                    // rest of the store stays usable.
                    tracing::warn!(error = %e, "dropping unreadable image record");
                    remove_any(&path)?;
                }
            }
        }
        match fs::read(self.repositories_file()) {
            Ok(bytes) => {
                let file: RepositoriesFile = serde_json::from_slice(&bytes).map_err(|source| {
                    ImageError::CorruptMetadata {
                        path: self.repositories_file().display().to_string(),
                        source,
                    }
                })?;
                for (r, id) in file.references {
                    match Reference::parse_normalized(&r) {
                        Ok(reference) if state.images.contains_key(&id) => {
                            state.refs.insert(reference, id);
                        }
                        _ => {
                            tracing::warn!(reference = %r, "dropping reference to a missing image")
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io("cannot read repositories.json", e)),
        }
        drop(state);
        self.gc()?;
        Ok(())
    }

    fn read_image(&self, path: &Path) -> Result<StoredImage> {
        let bytes = fs::read(path).ctx(|| format!("cannot read {}", path.display()))?;
        let record: ImageRecord =
            serde_json::from_slice(&bytes).map_err(|source| ImageError::CorruptMetadata {
                path: path.display().to_string(),
                source,
            })?;
        let config_path = self.blob_path(&record.id);
        let config_bytes =
            fs::read(&config_path).ctx(|| format!("cannot read config of image {}", record.id))?;
        let config = serde_json::from_slice(&config_bytes).map_err(|source| {
            ImageError::CorruptMetadata {
                path: config_path.display().to_string(),
                source,
            }
        })?;
        Ok(StoredImage { record, config })
    }

    /// Removes blobs and layers no image record references, and any in-progress leftovers.
    /// Callers hold `write_lock` (or are `open`), so nothing is being written concurrently.
    /// Returns the removed layers with their unpacked sizes.
    pub(crate) fn gc(&self) -> Result<Vec<(Digest, u64)>> {
        // Blobs are removed under the state lock, so an ingest that pins a blob (under the same
        // lock) either sees it gone or keeps it. Layers are only created under `write_lock`.
        let layers = {
            let state = lock(&self.state);
            let mut blobs = BTreeSet::new();
            let mut layers = BTreeSet::new();
            for stored in state.images.values() {
                blobs.insert(stored.record.id.hex().to_string());
                if let Some(m) = &stored.record.manifest_digest {
                    blobs.insert(m.hex().to_string());
                }
                for l in &stored.record.layers {
                    blobs.insert(l.blob_digest.hex().to_string());
                    layers.insert(l.chain_id.hex().to_string());
                }
            }
            for d in state.pinned.keys() {
                blobs.insert(d.hex().to_string());
            }
            for path in read_dir(&self.blobs_dir())? {
                if !blobs.contains(&file_name(&path)) {
                    remove_any(&path)?;
                }
            }
            layers
        };
        let mut removed = Vec::new();
        for path in read_dir(&self.layers_dir())? {
            let name = file_name(&path);
            if layers.contains(&name) {
                continue;
            }
            if let Ok(chain) = Digest::from_hex(&name) {
                let size = self
                    .read_layer_record(&chain)
                    .ok()
                    .flatten()
                    .map(|r| r.size)
                    .unwrap_or(0);
                removed.push((chain, size));
            }
            remove_any(&path)?;
        }
        Ok(removed)
    }
}

fn refs_of(state: &State, id: &Digest) -> Vec<Reference> {
    state
        .refs
        .iter()
        .filter(|(_, target)| *target == id)
        .map(|(r, _)| r.clone())
        .collect()
}

/// Whether deleting image `id` by its id may go ahead: a reference in several repositories
/// or a stopped container using it needs `force`; a running container forbids it.
fn check_delete_by_id(
    id: &Digest,
    image_refs: &[Reference],
    used: Option<&ContainerUse>,
    force: bool,
) -> Result<()> {
    let repos: BTreeSet<String> = image_refs.iter().map(|r| r.name()).collect();
    if repos.len() > 1 && !force {
        return Err(ImageError::Conflict(format!(
            "unable to delete {} (must be forced) - image is referenced in multiple repositories",
            id.short()
        )));
    }
    match used {
        Some(ContainerUse::Running(c)) => Err(ImageError::Conflict(format!(
            "unable to delete {} (cannot be forced) - image is being used by running container {}",
            id.short(),
            short_id(c)
        ))),
        Some(ContainerUse::Stopped(c)) if !force => Err(ImageError::Conflict(format!(
            "unable to delete {} (must be forced) - image is being used by stopped container {}",
            id.short(),
            short_id(c)
        ))),
        _ => Ok(()),
    }
}

/// Removes `reference` (pointing at `id`) and, like Docker, when that was the last tag of its
/// repository, the digest references to the same repository with it.
fn untag(state: &mut State, reference: &Reference, id: &Digest, items: &mut Vec<DeleteItem>) {
    state.refs.remove(reference);
    items.push(DeleteItem::Untagged(reference.familiar_string()));
    let remaining = refs_of(state, id);
    if reference.tag().is_some()
        && remaining
            .iter()
            .all(|r| r.tag().is_none() && r.name() == reference.name())
    {
        for r in remaining {
            state.refs.remove(&r);
            items.push(DeleteItem::Untagged(r.familiar_string()));
        }
    }
}

/// Resolves a name as Docker does: a reference that exists wins, then the id or a unique prefix
/// of it.
fn resolve(state: &State, input: &str) -> Result<Resolved> {
    let not_found = || ImageError::NotFound(input.to_string());
    if let Some(hex) = input.strip_prefix("sha256:") {
        return find_by_id_prefix(state, hex)
            .ok_or_else(not_found)
            .map(Resolved::ById);
    }
    if let Ok(reference) = Reference::parse_normalized(input) {
        if let Some(digest) = reference.digest() {
            let key = reference.repository().with_digest(digest.clone());
            if let Some(id) = state.refs.get(&key) {
                return Ok(Resolved::ByRef(key, id.clone()));
            }
            // An image known under this repository whose manifest has that digest.
            for (id, stored) in &state.images {
                if stored.record.manifest_digest.as_ref() == Some(digest)
                    && refs_of(state, id)
                        .iter()
                        .any(|r| r.name() == reference.name())
                {
                    return Ok(Resolved::ById(id.clone()));
                }
            }
        } else {
            let tagged = reference.with_default_tag();
            if let Some(id) = state.refs.get(&tagged) {
                return Ok(Resolved::ByRef(tagged, id.clone()));
            }
        }
    }
    find_by_id_prefix(state, input)
        .ok_or_else(not_found)
        .map(Resolved::ById)
}

fn find_by_id_prefix(state: &State, hex: &str) -> Option<Digest> {
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    let mut matches = state.images.keys().filter(|id| id.hex().starts_with(&hex));
    let first = matches.next()?;
    // An ambiguous prefix names no image.
    match matches.next() {
        Some(_) => None,
        None => Some(first.clone()),
    }
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    if id.len() > 12 && id.is_char_boundary(12) {
        &id[..12]
    } else {
        id
    }
}

pub(crate) fn random_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Writes `value` as JSON to `path` atomically: temp file, fsync, rename, fsync directory.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| {
        ImageError::io(
            format!("cannot encode {}", path.display()),
            io::Error::other(e),
        )
    })?;
    write_atomic(path, &bytes)
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{}", random_name(&format!("{name}.tmp"))));
    let result = (|| -> Result<()> {
        let mut file = File::create(&tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(bytes)
            .ctx(|| format!("cannot write {}", tmp.display()))?;
        file.sync_all()
            .ctx(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, path).ctx(|| format!("cannot write {}", path.display()))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("cannot sync {}", dir.display()))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImageError::io(format!("cannot list {}", dir.display()), e)),
    };
    entries
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()
        .ctx(|| format!("cannot list {}", dir.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn remove_any(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(ImageError::io(
                format!("cannot inspect {}", path.display()),
                e,
            ));
        }
    };
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.ctx(|| format!("cannot remove {}", path.display()))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
