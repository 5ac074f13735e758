//! A push, as dockerd does it: `The push refers to repository [...]`, then per tag the layers
//! (top first) `max-concurrent-uploads` at a time, the config, and the manifest, ending with
//! `TAG: digest: sha256:... size: N` and an aux `{Tag, Digest, Size}` message.
//!
//! A layer goes up as the blob the store has (a pulled image pushes its original compressed
//! blobs, so its digests stay the same) or, for a plain tar made locally, gzip-compressed while
//! it streams; the compressed digest is remembered with the diff id ([`meta`]), so the next push
//! asks the registry for that digest first and never compresses again when it is there.
//! Before uploading, a blob known to be in another repository of the same registry is mounted
//! from there. Uploads are monolithic for small blobs and chunked for big ones, resuming from
//! the registry's `Range` after a dropped connection ([`upload`]).

pub mod meta;
mod pgzip;
mod session;
mod upload;

use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_image::{Digest, ImageStore, PushSource, Reference};
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use tokio::runtime::Handle;

use crate::client::{Credentials, PullEvent, RegistryError, RemoteOptions, Result, media_types};
use meta::Compressed;
pub use meta::DistributionMeta;
use session::Session;
use upload::{Found, Uploader};

/// dockerd's `max-concurrent-uploads` default.
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 5;

/// At most this many other repositories are asked to mount a blob (as dockerd).
const MAX_MOUNT_CANDIDATES: usize = 3;

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One message of a push's progress stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// A status line (`Preparing`, `Pushing` with a bar, `Pushed`, ...).
    Status(PullEvent),
    /// The aux message after a tag's manifest: `{"Tag","Digest","Size"}`.
    Pushed {
        tag: String,
        digest: Digest,
        size: u64,
    },
}

/// How a push behaves.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub remote: RemoteOptions,
    pub max_concurrent_uploads: usize,
    /// The pause after the n-th failed attempt of a request is n times this.
    pub backoff: Duration,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            remote: RemoteOptions::default(),
            max_concurrent_uploads: DEFAULT_MAX_CONCURRENT_UPLOADS,
            backoff: Duration::from_secs(1),
        }
    }
}

fn status(id: Option<&str>, text: impl Into<String>) -> PushEvent {
    PushEvent::Status(PullEvent {
        id: id.map(str::to_string),
        status: text.into(),
        progress: None,
    })
}

/// The tags of `reference`'s repository to push: its own tag, or every tag of the repository
/// that the store has (what dockerd does for a push without a tag), with their image ids.
pub fn tags_to_push(store: &ImageStore, reference: &Reference) -> Result<Vec<(String, Digest)>> {
    let missing = || {
        RegistryError::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            reference.familiar_name()
        ))
    };
    if let Some(tag) = reference.tag() {
        let image = store.get(&reference.to_string()).map_err(|_| missing())?;
        return Ok(vec![(tag.to_string(), image.id)]);
    }
    let name = reference.familiar_name();
    let mut tags = Vec::new();
    for image in store.images() {
        for t in &image.repo_tags {
            if let Ok(r) = Reference::parse_normalized(t)
                && r.familiar_name() == name
                && let Some(tag) = r.tag()
            {
                tags.push((tag.to_string(), image.id.clone()));
            }
        }
    }
    if tags.is_empty() {
        return Err(missing());
    }
    tags.sort();
    Ok(tags)
}

/// Pushes `reference` (its tag, or all its repository's tags) from `store` to its registry.
/// Blocking: run it on a blocking thread; `handle` drives the requests. Errors after the first
/// line are the caller's to put in the stream (as dockerd does).
pub fn push(
    store: &ImageStore,
    handle: &Handle,
    reference: &Reference,
    credentials: Credentials,
    options: &PushOptions,
    events: &(dyn Fn(PushEvent) + Sync),
) -> Result<()> {
    let repository = reference.repository();
    events(status(
        None,
        format!("The push refers to repository [{}]", repository.name()),
    ));
    let tags = tags_to_push(store, reference)?;
    let session = handle.block_on(Session::open(
        repository.domain(),
        credentials,
        &options.remote,
        &[Session::push_scope(repository.path())],
    ))?;
    let meta = DistributionMeta::new(store.root());
    for (tag, id) in tags {
        let pusher = Pusher {
            store,
            handle,
            session: &session,
            meta: &meta,
            repository: &repository,
            options,
            events,
        };
        pusher.push_tag(&tag, &id)?;
    }
    Ok(())
}

/// What a layer went up as.
#[derive(Debug, Clone)]
struct Pushed {
    digest: Digest,
    size: u64,
    /// gzip or zstd (for the media type in a new manifest).
    zstd: bool,
}

struct Pusher<'a> {
    store: &'a ImageStore,
    handle: &'a Handle,
    session: &'a Session,
    meta: &'a DistributionMeta,
    repository: &'a Reference,
    options: &'a PushOptions,
    events: &'a (dyn Fn(PushEvent) + Sync),
}

impl Pusher<'_> {
    fn uploader(&self) -> Uploader<'_> {
        Uploader {
            session: self.session,
            handle: self.handle,
            path: self.repository.path(),
            backoff: self.options.backoff,
        }
    }

    /// `registry/path` of the target, as the metadata names repositories.
    fn target(&self) -> String {
        self.repository.name()
    }

    /// Other repositories of the same registry that may have `blob`: those earlier pushes
    /// and pulls recorded, then the ones the image itself came from.
    fn mount_candidates(&self, blob: &Digest, image_repos: &[String]) -> Vec<String> {
        let prefix = format!("{}/", self.repository.domain());
        let target = self.target();
        let mut out: Vec<String> = Vec::new();
        for r in self
            .meta
            .repositories(blob)
            .into_iter()
            .chain(image_repos.iter().cloned())
        {
            if r != target
                && let Some(path) = r.strip_prefix(&prefix)
                && !out.iter().any(|o| o == path)
            {
                out.push(path.to_string());
            }
        }
        out.truncate(MAX_MOUNT_CANDIDATES);
        out
    }

    /// Checks, mounts or uploads one layer.
    fn push_layer(
        &self,
        layer: &berth_image::StoredLayer,
        image_repos: &[String],
    ) -> Result<Pushed> {
        let id = layer.diff_id.short();
        let events = self.events;
        let plain = !layer.media_type.contains("gzip") && !layer.media_type.contains("zstd");
        let zstd = layer.media_type.contains("zstd");
        let uploader = self.uploader();
        // The digest the layer has (or had, the last time it was compressed) in registries.
        let known: Option<(Digest, u64)> = if plain {
            self.meta
                .compressed(&layer.diff_id)
                .map(|c| (c.digest, c.size))
        } else {
            Some((layer.blob_digest.clone(), layer.blob_size))
        };
        let mut location = None;
        if let Some((digest, size)) = &known {
            if let Found::Exists(_) = uploader.exists(digest)? {
                events(status(Some(id), "Layer already exists"));
                return Ok(Pushed {
                    digest: digest.clone(),
                    size: *size,
                    zstd,
                });
            }
            for from in self.mount_candidates(digest, image_repos) {
                match uploader.start(Some((digest, &from)))? {
                    None => {
                        events(status(Some(id), format!("Mounted from {from}")));
                        return Ok(Pushed {
                            digest: digest.clone(),
                            size: *size,
                            zstd,
                        });
                    }
                    // Not mounted: the registry opened an upload session instead.
                    Some(l) => location = Some(l),
                }
            }
        }
        let last = Mutex::new(Instant::now() - Duration::from_secs(1));
        let total = (!plain).then_some(layer.blob_size);
        let progress = |current: u64| {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_millis(100) || Some(current) == total {
                *last = Instant::now();
                events(PushEvent::Status(PullEvent {
                    id: Some(id.to_string()),
                    status: "Pushing".into(),
                    progress: Some((current, total)),
                }));
            }
        };
        let store = self.store;
        let blob = layer.blob_digest.clone();
        let open = move || -> std::io::Result<Box<dyn Read + Send>> {
            let file = store.open_blob(&blob).map_err(std::io::Error::other)?;
            let file = std::io::BufReader::with_capacity(1 << 20, file);
            Ok(if plain {
                // Deterministic (no name, no time, fixed blocks): the same tar always
                // compresses to the same digest.
                Box::new(pgzip::ParallelGzip::new(
                    file,
                    flate2::Compression::default(),
                ))
            } else {
                Box::new(file)
            })
        };
        let expected = (!plain).then_some(&layer.blob_digest);
        let (digest, size) = uploader.upload(location, &open, expected, &progress)?;
        if plain {
            self.meta.set_compressed(
                &layer.diff_id,
                Compressed {
                    digest: digest.clone(),
                    size,
                    media_type: OCI_LAYER_GZIP.into(),
                },
            );
        }
        events(status(Some(id), "Pushed"));
        Ok(Pushed { digest, size, zstd })
    }

    fn push_tag(&self, tag: &str, id: &Digest) -> Result<()> {
        let source = self.store.push_source(id)?;
        let image = self.store.get(&id.to_string())?;
        let image_repos: Vec<String> = image
            .repo_digests
            .iter()
            .chain(image.repo_tags.iter())
            .filter_map(|r| Reference::parse_normalized(r).ok())
            .map(|r| r.name())
            .collect();
        let layers = &source.layers;
        let events = self.events;
        // Top layer first, as dockerd lists them.
        let order: Vec<usize> = (0..layers.len()).rev().collect();
        for &i in &order {
            events(status(Some(layers[i].diff_id.short()), "Preparing"));
        }
        let workers = self.options.max_concurrent_uploads.max(1).min(order.len());
        for &i in order.iter().skip(workers) {
            events(status(Some(layers[i].diff_id.short()), "Waiting"));
        }
        let results: Mutex<Vec<Option<Pushed>>> = Mutex::new(vec![None; layers.len()]);
        crate::pool::run_until_error(order, workers, |i| -> Result<()> {
            let p = self.push_layer(&layers[i], &image_repos)?;
            results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(p);
            Ok(())
        })?;
        let pushed: Vec<Pushed> = results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|p| p.expect("every layer pushed"))
            .collect();

        // The config.
        let uploader = self.uploader();
        if uploader.exists(id)? == Found::Missing {
            let config = Bytes::from(source.config.clone());
            let open = move || -> std::io::Result<Box<dyn Read + Send>> {
                Ok(Box::new(std::io::Cursor::new(config.clone())))
            };
            uploader.upload(None, &open, Some(id), &|_| {})?;
        }

        let (manifest, media_type) = manifest_for(&source, &pushed)?;
        let digest = Digest::of_bytes(&manifest);
        let size = manifest.len() as u64;
        self.put_manifest(tag, &manifest, &media_type, &digest)?;
        events(status(
            None,
            format!("{tag}: digest: {digest} size: {size}"),
        ));
        events(PushEvent::Pushed {
            tag: tag.to_string(),
            digest: digest.clone(),
            size,
        });
        self.store
            .add_repo_digest(&self.repository.with_digest(digest), id)?;
        let mut blobs: Vec<Digest> = pushed.iter().map(|p| p.digest.clone()).collect();
        blobs.push(id.clone());
        self.meta.add_repository(&blobs, &self.target());
        Ok(())
    }

    fn put_manifest(
        &self,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
        digest: &Digest,
    ) -> Result<()> {
        let url = format!(
            "{}/v2/{}/manifests/{tag}",
            self.session.base,
            self.repository.path()
        );
        let scopes = [Session::push_scope(self.repository.path())];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self.handle.block_on(self.session.send(
                Method::PUT,
                &url,
                &[("content-type", media_type.to_string())],
                Some(Bytes::copy_from_slice(bytes)),
                &scopes,
            ));
            match answer {
                Ok(a) if a.status.is_success() => {
                    if let Some(theirs) = a.header("docker-content-digest")
                        && theirs != digest.to_string()
                    {
                        return Err(RegistryError::Transport(format!(
                            "registry stored manifest as {theirs}, expected {digest}"
                        )));
                    }
                    return Ok(());
                }
                Ok(a) if a.status.is_server_error() && attempt < 3 => {
                    std::thread::sleep(self.options.backoff * attempt)
                }
                Ok(a)
                    if a.status == StatusCode::UNAUTHORIZED
                        || a.status == StatusCode::FORBIDDEN =>
                {
                    return Err(self.session.refusal(&a));
                }
                Ok(a) => return Err(self.session.unexpected("pushing the manifest", &a)),
                Err(RegistryError::Transport(m)) if attempt < 3 => {
                    tracing::info!(error = %m, "manifest push failed, retrying");
                    std::thread::sleep(self.options.backoff * attempt);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The manifest to push: the one the image arrived with when it describes exactly the blobs
/// pushed (a pulled image keeps its digest), otherwise a new Docker schema 2 manifest (OCI
/// when the image came as OCI or has zstd layers), formatted as dockerd formats it.
fn manifest_for(source: &PushSource, pushed: &[Pushed]) -> Result<(Vec<u8>, String)> {
    #[derive(serde::Deserialize)]
    struct Desc {
        digest: Digest,
    }
    #[derive(serde::Deserialize)]
    struct Original {
        config: Desc,
        layers: Vec<Desc>,
    }
    let original_type = source.manifest.as_ref().map(|(_, t)| t.as_str());
    if let Some((bytes, media_type)) = &source.manifest
        && let Ok(original) = serde_json::from_slice::<Original>(bytes)
        && original.config.digest == source.id
        && original.layers.len() == pushed.len()
        && original
            .layers
            .iter()
            .zip(pushed)
            .all(|(o, p)| o.digest == p.digest)
        && !media_type.is_empty()
    {
        return Ok((bytes.clone(), media_type.clone()));
    }
    // An OCI manifest over plain tars is what a load of a local archive records, not how the
    // image came from a registry: dockerd pushes those as Docker schema 2.
    let came_as_oci = original_type == Some(media_types::OCI_MANIFEST)
        && source
            .layers
            .iter()
            .all(|l| l.media_type.contains("gzip") || l.media_type.contains("zstd"));
    let oci = came_as_oci || pushed.iter().any(|p| p.zstd);
    let (media_type, config_type) = if oci {
        (media_types::OCI_MANIFEST, OCI_CONFIG)
    } else {
        (media_types::DOCKER_MANIFEST, DOCKER_CONFIG)
    };
    // Fields in dockerd's order (serde_json's maps would sort them).
    #[derive(serde::Serialize)]
    struct Desc2<'a> {
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        size: u64,
        digest: String,
    }
    #[derive(serde::Serialize)]
    struct Manifest<'a> {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        config: Desc2<'a>,
        layers: Vec<Desc2<'a>>,
    }
    let layers = pushed
        .iter()
        .map(|p| Desc2 {
            media_type: match (oci, p.zstd) {
                (_, true) => "application/vnd.oci.image.layer.v1.tar+zstd",
                (true, false) => OCI_LAYER_GZIP,
                (false, false) => DOCKER_LAYER_GZIP,
            },
            size: p.size,
            digest: p.digest.to_string(),
        })
        .collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type,
        config: Desc2 {
            media_type: config_type,
            size: source.config.len() as u64,
            digest: source.id.to_string(),
        },
        layers,
    };
    // dockerd indents with three spaces.
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(&manifest, &mut ser)
        .map_err(|e| RegistryError::Invalid(format!("cannot encode manifest: {e}")))?;
    Ok((out, media_type.to_string()))
}
