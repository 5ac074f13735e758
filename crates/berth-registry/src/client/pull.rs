//! A pull: resolve the reference to one image manifest (through indexes, for a platform),
//! then fetch the config and the layers into the image store through `berth_image::Ingest`.
//! Layers download in parallel; each is hashed, decompressed and unpacked while it streams,
//! and the image appears only when every blob verified. Progress goes out as Docker's pull
//! messages (`Pulling fs layer`, `Downloading`, ... `Pull complete`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_image::config::chain_ids;
use berth_image::{Digest, Image, ImageConfig, ImageStore, Reference};
use futures_util::TryStreamExt;
use tokio::runtime::Handle;

use super::inflight;
use super::manifest::{self, Parsed, Platform};
use super::partial::{self, Partial};
use super::resume::{Persistence, ResumingReader};
use super::{Descriptor, Manifest, RegistryError, Remote, Result};

/// Indexes nest (an index of indexes); more levels than this is a loop or an attack.
const MAX_INDEX_DEPTH: usize = 4;

/// The largest config blob fetched into memory (Docker's limit for configs is 8 MiB).
const MAX_CONFIG_SIZE: u64 = 8 << 20;

/// How a pull downloads.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Layers downloaded at once (`max-concurrent-downloads`).
    pub max_concurrent: usize,
    /// Retries, back-off and stall detection of each blob.
    pub persistence: Persistence,
    /// Where partial downloads are kept for a resume (after a failure or a restart); `None`
    /// keeps none.
    pub partial_dir: Option<PathBuf>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            max_concurrent: 3,
            persistence: Persistence::default(),
            partial_dir: None,
        }
    }
}

/// Removes the partial downloads under `dir` (for the store at `store_root`) that nobody
/// touched for [`partial::MAX_AGE`] and that no pull is downloading now.
pub fn sweep_partial_downloads(store_root: &std::path::Path, dir: &std::path::Path) -> usize {
    partial::sweep(dir, partial::MAX_AGE, &|hex| {
        inflight::is_running(store_root, hex)
    })
}

/// A reference resolved to one image manifest.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What was asked for, with a tag or digest.
    pub reference: Reference,
    /// The digest the reference points to (an index's, when it is one): what Docker records
    /// as the repository digest and prints as `Digest:`.
    pub repo_digest: Digest,
    /// The platform's image manifest.
    pub manifest: Manifest,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// One progress message of a pull, in Docker's terms: `id` is a layer's short digest or the
/// tag, `progress` is (current, total) bytes for a bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEvent {
    pub id: Option<String>,
    pub status: String,
    pub progress: Option<(u64, Option<u64>)>,
}

impl PullEvent {
    fn new(id: Option<&str>, status: impl Into<String>) -> PullEvent {
        PullEvent {
            id: id.map(str::to_string),
            status: status.into(),
            progress: None,
        }
    }
}

/// What a pull did.
#[derive(Debug)]
pub struct PullOutcome {
    pub image: Image,
    /// The reference pointed to this image already.
    pub up_to_date: bool,
}

/// Resolves the manifest `top` that `reference` (with a tag or digest) points to, to the
/// image manifest for `platform` (through nested indexes).
pub async fn resolve_image<R: Remote>(
    remote: &R,
    reference: &Reference,
    top: Manifest,
    platform: &Platform,
) -> Result<Resolved> {
    let named = reference.to_string();
    let repo_digest = top.digest.clone();
    let mut current = top;
    for _ in 0..MAX_INDEX_DEPTH {
        match manifest::parse(&current.bytes, &named)? {
            Parsed::Image {
                media_type,
                config,
                layers,
            } => {
                current.media_type = media_type;
                return Ok(Resolved {
                    reference: reference.clone(),
                    repo_digest,
                    manifest: current,
                    config,
                    layers,
                });
            }
            Parsed::Index(entries) => {
                let entry = manifest::select(&entries, platform)?;
                let by_digest = reference.repository().with_digest(entry.digest.clone());
                current = remote.fetch_manifest(&by_digest).await?;
            }
        }
    }
    Err(RegistryError::Invalid(format!(
        "manifest of {named} nests indexes more than {MAX_INDEX_DEPTH} deep"
    )))
}

/// What `GET /distribution/{name}/json` shows: the descriptor `reference` resolves to and the
/// platforms it serves (an index's entries, or an image's config).
pub async fn inspect_remote<R: Remote>(
    remote: &R,
    reference: &Reference,
) -> Result<(Descriptor, Vec<Platform>)> {
    let top = remote.fetch_manifest(reference).await?;
    let platforms = match manifest::parse(&top.bytes, &reference.to_string())? {
        Parsed::Index(entries) => entries.into_iter().filter_map(|(_, p)| p).collect(),
        Parsed::Image { config, .. } => {
            if config.size > MAX_CONFIG_SIZE {
                return Err(RegistryError::Invalid(format!(
                    "image config {} is too large ({} bytes)",
                    config.digest, config.size
                )));
            }
            let blob = remote
                .fetch_blob(&reference.repository(), &config, 0)
                .await?;
            let bytes: Vec<u8> = blob
                .stream
                .try_fold(Vec::new(), |mut all, chunk| async move {
                    all.extend_from_slice(&chunk);
                    Ok(all)
                })
                .await
                .map_err(|e| RegistryError::Transport(format!("cannot read config: {e}")))?;
            if Digest::of_bytes(&bytes) != config.digest {
                return Err(RegistryError::Transport(format!(
                    "config verification failed for digest {}",
                    config.digest
                )));
            }
            let image: ImageConfig = serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::Invalid(format!("invalid image config {}: {e}", config.digest))
            })?;
            vec![Platform {
                os: image.os,
                architecture: image.architecture,
                variant: image.variant,
            }]
        }
    };
    Ok((top.descriptor(), platforms))
}

/// Pulls the image whose top-level manifest (or index) `top` was fetched for `reference`
/// into `store`: `Pulling from`, platform selection (errors from here on are the stream's,
/// as in Docker), then the config and `options.max_concurrent` layers at a time, reporting
/// progress to `events`. Blocking: runs on a blocking thread, `handle` drives the requests.
#[allow(clippy::too_many_arguments)]
pub fn pull_image<R: Remote>(
    remote: &R,
    handle: &Handle,
    store: &ImageStore,
    reference: &Reference,
    top: Manifest,
    platform: &Platform,
    options: &PullOptions,
    events: &(dyn Fn(PullEvent) + Sync),
) -> Result<PullOutcome> {
    let tag_or_digest = match (reference.tag(), reference.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".to_string(),
    };
    events(PullEvent::new(
        Some(&tag_or_digest),
        format!("Pulling from {}", reference.path()),
    ));
    let resolved = handle.block_on(resolve_image(remote, reference, top, platform))?;
    let outcome = fetch_image(remote, handle, store, &resolved, options, events)?;
    events(status_event(
        &resolved.reference.familiar_string(),
        !outcome.up_to_date,
    ));
    Ok(outcome)
}

/// The last line of a pull: whether something new came for `named`.
fn status_event(named: &str, downloaded: bool) -> PullEvent {
    PullEvent::new(
        None,
        if downloaded {
            format!("Status: Downloaded newer image for {named}")
        } else {
            format!("Status: Image is up to date for {named}")
        },
    )
}

/// Pulls every tag of `repository` (a name without tag or digest) that `tags` lists (see
/// [`OciRemote::list_tags`](super::OciRemote::list_tags)), one after the other, as dockerd
/// does for `docker pull --all-tags`: each tag's progress, then one status line for the
/// repository. The first tag that fails ends the pull (the tags pulled before it stay).
#[allow(clippy::too_many_arguments)]
pub fn pull_all_tags<R: Remote>(
    remote: &R,
    handle: &Handle,
    store: &ImageStore,
    repository: &Reference,
    tags: &[String],
    platform: &Platform,
    options: &PullOptions,
    events: &(dyn Fn(PullEvent) + Sync),
) -> Result<Vec<PullOutcome>> {
    let mut outcomes = Vec::new();
    for tag in tags {
        let reference = repository.with_tag(tag);
        events(PullEvent::new(
            Some(tag),
            format!("Pulling from {}", reference.path()),
        ));
        let top = handle.block_on(remote.fetch_manifest(&reference))?;
        let resolved = handle.block_on(resolve_image(remote, &reference, top, platform))?;
        outcomes.push(fetch_image(
            remote, handle, store, &resolved, options, events,
        )?);
    }
    let downloaded = outcomes.iter().any(|o| !o.up_to_date);
    events(status_event(&repository.familiar_name(), downloaded));
    Ok(outcomes)
}

/// Fetches a resolved image into `store` (see [`pull_image`]); the caller says the status.
pub fn fetch_image<R: Remote>(
    remote: &R,
    handle: &Handle,
    store: &ImageStore,
    resolved: &Resolved,
    options: &PullOptions,
    events: &(dyn Fn(PullEvent) + Sync),
) -> Result<PullOutcome> {
    let reference = &resolved.reference;
    let persistence = options.persistence;
    if let Some(dir) = &options.partial_dir {
        sweep_partial_downloads(store.root(), dir);
    }
    let repository = reference.repository();
    let named = reference.familiar_string();
    let previous = store.get(&named).ok().map(|i| i.id);

    let mut ingest = store.ingest();
    ingest.set_repo_digest(resolved.repo_digest.clone());
    let config = &resolved.config;
    if config.size > MAX_CONFIG_SIZE {
        return Err(RegistryError::Invalid(format!(
            "image config {} is too large ({} bytes)",
            config.digest, config.size
        )));
    }
    // Claimed like a layer: two pulls of one image fetch its config once.
    let claim = loop {
        if let Some(c) = inflight::claim(store.root(), &config.digest, &mut || {}) {
            break c;
        }
    };
    if !ingest.has_blob(&config.digest) {
        let mut reader = ResumingReader::new(
            remote,
            handle,
            &repository,
            config,
            persistence,
            None,
            Box::new(|_| {}),
        );
        reader.open()?;
        ingest.write_blob(&mut reader, &config.digest)?;
    }
    drop(claim);
    let config_bytes = ingest.read_blob(&config.digest)?;
    let image_config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
        RegistryError::Invalid(format!("invalid image config {}: {e}", config.digest))
    })?;
    let diff_ids = &image_config.rootfs.diff_ids;
    let layers = &resolved.layers;
    if diff_ids.len() != layers.len() {
        return Err(RegistryError::Invalid(format!(
            "image {} has {} layers, but its config lists {} diff ids",
            config.digest,
            layers.len(),
            diff_ids.len()
        )));
    }
    let chains = chain_ids(diff_ids);
    let parent = |i: usize| (i > 0).then(|| &chains[i - 1]);

    let mut todo = VecDeque::new();
    for (i, layer) in layers.iter().enumerate() {
        let id = layer.digest.short();
        if ingest.has_layer(&layer.digest, &diff_ids[i], parent(i)) {
            events(PullEvent::new(Some(id), "Already exists"));
        } else {
            events(PullEvent::new(Some(id), "Pulling fs layer"));
            todo.push_back(i);
        }
    }
    let workers = options.max_concurrent.max(1).min(todo.len());
    for &i in todo.iter().skip(workers) {
        events(PullEvent::new(Some(layers[i].digest.short()), "Waiting"));
    }

    let download = |i: usize| -> Result<()> {
        let desc = &layers[i];
        let id = desc.digest.short();
        let retry_message = |pause: Duration| {
            let secs = pause.as_secs().max(1);
            let unit = if secs == 1 { "second" } else { "seconds" };
            events(PullEvent::new(
                Some(id),
                format!("Retrying in {secs} {unit}"),
            ));
        };
        // One download of a blob at a time in this daemon: a pull that needs a blob another
        // pull is fetching waits for it, then finds it stored.
        let _claim = loop {
            if let Some(c) = inflight::claim(store.root(), &desc.digest, &mut || {
                events(PullEvent::new(Some(id), "Waiting"))
            }) {
                break c;
            }
        };
        if ingest.has_layer(&desc.digest, &diff_ids[i], parent(i)) || ingest.has_blob(&desc.digest)
        {
            // Fetched by another pull meanwhile (commit unpacks a stored blob if need be).
            events(PullEvent::new(Some(id), "Download complete"));
            events(PullEvent::new(Some(id), "Pull complete"));
            return Ok(());
        }
        let size = desc.size;
        let mut last = Instant::now() - Duration::from_secs(1);
        let mut progress = |current: u64| {
            // Docker sends a bar update about every 100 ms per layer.
            if last.elapsed() >= Duration::from_millis(100) || current == size {
                last = Instant::now();
                events(PullEvent {
                    id: Some(id.to_string()),
                    status: "Downloading".into(),
                    progress: Some((current, Some(size))),
                });
            }
        };
        let mut from_scratch = false;
        loop {
            let saved = match &options.partial_dir {
                Some(dir) if !from_scratch => Partial::open(dir, &desc.digest, size)
                    .map_err(|e| {
                        tracing::warn!(blob = %desc.digest, error = %e, "cannot keep a partial download");
                    })
                    .ok(),
                _ => None,
            };
            let mut reader = ResumingReader::new(
                remote,
                handle,
                &repository,
                desc,
                persistence,
                saved,
                Box::new(&retry_message),
            );
            if reader.resumed_from() > 0 {
                tracing::info!(blob = %desc.digest, from = reader.resumed_from(), "resuming a partial download");
            }
            // The first request's failure (unknown blob, refused connection) is the pull's error.
            reader.open()?;
            // Saved as it is read into the partial download, which becomes the stored blob.
            let written = match reader.spool() {
                Some((spool, saved)) => ingest.write_layer_resumable(
                    &mut reader,
                    &spool,
                    saved,
                    &desc.digest,
                    &diff_ids[i],
                    parent(i),
                    &mut progress,
                ),
                None => ingest.write_layer(
                    &mut reader,
                    &desc.digest,
                    &diff_ids[i],
                    parent(i),
                    &mut progress,
                ),
            };
            match written {
                Ok(_) => {
                    reader.discard_partial();
                    break;
                }
                Err(e) => {
                    // Kept only when the network failed: the bytes saved are good for a resume.
                    if !reader.network_failed {
                        reader.discard_partial();
                    }
                    let resumed = reader.resumed_from() > 0;
                    drop(reader);
                    if resumed && !from_scratch && e.to_string().contains("verification failed") {
                        // The saved bytes were bad (a crash mid-write): once more from byte 0.
                        tracing::warn!(blob = %desc.digest, "a resumed download did not verify; starting over");
                        from_scratch = true;
                        continue;
                    }
                    return Err(layer_error(e, &desc.digest));
                }
            }
        }
        events(PullEvent::new(Some(id), "Verifying Checksum"));
        events(PullEvent::new(Some(id), "Download complete"));
        events(PullEvent {
            id: Some(id.to_string()),
            status: "Extracting".into(),
            progress: Some((size, Some(size))),
        });
        events(PullEvent::new(Some(id), "Pull complete"));
        Ok(())
    };
    // Layers that finished stay stored (unreferenced until the next gc) for a retry.
    crate::pool::run_until_error(todo, workers, download)?;
    let image = ingest.commit(
        &resolved.manifest.bytes,
        &resolved.manifest.media_type,
        Some(reference),
        &mut |_| {},
    )?;
    events(PullEvent::new(
        None,
        format!("Digest: {}", resolved.repo_digest),
    ));
    let up_to_date = previous.as_ref() == Some(&image.id);
    Ok(PullOutcome { image, up_to_date })
}

/// A layer that failed: a digest mismatch (the registry's stream or the store noticed) keeps
/// Docker's wording; anything else says which layer.
fn layer_error(e: berth_image::ImageError, digest: &Digest) -> RegistryError {
    let text = e.to_string();
    if text.contains("verification failed") {
        return RegistryError::Store(e);
    }
    RegistryError::Transport(format!("failed to pull layer {digest}: {text}"))
}
