//! `docker load` and `docker save` archives.
//!
//! Load reads the tar sequentially (it arrives over HTTP) and spools every file into a private
//! directory under `tmp/`, hashing as it goes; only then is the format decided, because the
//! files that describe the archive (`manifest.json`, `index.json`) may come last. Two formats:
//!
//! * docker-archive: `manifest.json` lists config and layer files per image (Docker 25+ names
//!   them `blobs/sha256/<hex>` and adds an OCI layout beside; `manifest.json` wins then).
//! * OCI image layout: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`, digests verified.
//!
//! Save writes the combined layout Docker 25+ writes, which both docker's loaders and ours read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{ImageConfig, chain_ids};
use crate::digest::{Digest, HashingWriter};
use crate::error::{ImageError, IoContext, Result};
use crate::publish::{PublishConfig, PublishRequest};
use crate::reference::Reference;
use crate::store::{ImageRecord, ImageStore, LoadProgress, RecordLayer, random_name};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A spooled archive file.
struct SpoolFile {
    path: PathBuf,
    digest: Digest,
    size: u64,
}

/// The files of an archive, by cleaned path; removed from disk when dropped.
struct Spool {
    dir: PathBuf,
    files: HashMap<String, SpoolFile>,
    /// Symlinks (old docker-archives link duplicate layers), resolved to clean paths.
    links: HashMap<String, String>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn invalid(msg: impl Into<String>) -> ImageError {
    ImageError::InvalidArchive(msg.into())
}

/// A tar header that does not parse. The tar crate's message quotes the header's raw bytes
/// (binary garbage when the input is not a tar at all), which would reach the user's terminal:
/// only printable text is kept, and the message is dropped when that leaves little of it.
fn invalid_header(e: &io::Error) -> ImageError {
    let text = e.to_string();
    let printable = text.chars().all(|c| c == ' ' || c.is_ascii_graphic());
    if printable {
        invalid(format!("invalid tar header: {text}"))
    } else {
        invalid("invalid tar header: the input is not a tar archive")
    }
}

/// Lexically cleans an archive path (`./a/../b` → `b`); leading `/` and excess `..` are dropped,
/// since these names are only lookup keys, never filesystem paths.
fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

impl Spool {
    fn read(reader: &mut dyn Read, dir: PathBuf) -> Result<Spool> {
        fs::create_dir_all(&dir).ctx(|| format!("cannot create {}", dir.display()))?;
        let mut spool = Spool {
            dir,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| invalid_header(&e))?;
        for (n, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => invalid("unexpected EOF: the archive is truncated"),
                _ => invalid_header(&e),
            })?;
            let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let declared = entry.header().size().map_err(|e| invalid_header(&e))?;
                    let path = spool.dir.join(n.to_string());
                    let file =
                        File::create(&path).ctx(|| format!("cannot create {}", path.display()))?;
                    let mut w = HashingWriter::new(file);
                    let copied = io::copy(&mut entry, &mut w).map_err(|e| match e.kind() {
                        io::ErrorKind::UnexpectedEof => {
                            invalid("unexpected EOF: the archive is truncated")
                        }
                        _ => ImageError::io(format!("cannot read archive entry {name:?}"), e),
                    })?;
                    if copied != declared {
                        return Err(invalid(format!(
                            "unexpected EOF: the archive is truncated in {name:?}"
                        )));
                    }
                    let (file, hasher) = w.into_parts();
                    file.sync_all()
                        .ctx(|| format!("cannot sync {}", path.display()))?;
                    let size = hasher.len();
                    spool.files.insert(
                        name,
                        SpoolFile {
                            path,
                            digest: hasher.finish(),
                            size,
                        },
                    );
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let base = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        clean(&format!("{base}/{target}"))
                    } else {
                        clean(&target)
                    };
                    spool.links.insert(name, resolved);
                }
                _ => {}
            }
        }
        Ok(spool)
    }

    fn get(&self, path: &str) -> Option<&SpoolFile> {
        let mut p = clean(path);
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    fn file(&self, path: &str) -> Result<&SpoolFile> {
        self.get(path)
            .ok_or_else(|| invalid(format!("file {path:?} is missing from the archive")))
    }

    fn bytes(&self, path: &str) -> Result<Vec<u8>> {
        let f = self.file(path)?;
        fs::read(&f.path).ctx(|| format!("cannot read spooled {path:?}"))
    }

    /// A blob of an OCI layout, verified against its descriptor.
    fn blob(&self, desc: &Descriptor) -> Result<&SpoolFile> {
        let path = blob_path(&desc.digest);
        let f = self.file(&path)?;
        desc.digest.verify(&f.digest, &format!("blob {path}"))?;
        if desc.size != f.size {
            return Err(invalid(format!(
                "blob {path} has size {}, but its descriptor says {}",
                f.size, desc.size
            )));
        }
        Ok(f)
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

#[derive(Debug, Deserialize, Serialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Manifest {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// One image to import from the spool.
struct Planned {
    config_bytes: Vec<u8>,
    /// Spooled layer files, bottom first.
    layers: Vec<(String, Digest, u64)>,
    manifest: Option<(Vec<u8>, String)>,
    tags: Vec<Reference>,
}

/// Reads an archive and prepares its images (blobs stored, layers unpacked); the caller makes
/// them visible with [`ImageStore::publish`].
pub(crate) fn load(
    store: &ImageStore,
    reader: &mut dyn Read,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<Vec<PublishRequest>> {
    let spool = Spool::read(reader, store.tmp_dir().join(random_name("load")))?;
    let planned = if spool.get("manifest.json").is_some() {
        plan_docker_archive(&spool)?
    } else if spool.get("index.json").is_some() {
        plan_oci_layout(&spool)?
    } else if spool.files.is_empty() {
        return Err(invalid("unexpected EOF: the archive is empty"));
    } else {
        return Err(invalid(
            "the archive has neither manifest.json (docker-archive) nor index.json (OCI layout)",
        ));
    };
    let mut pending = Vec::new();
    for p in planned {
        pending.push(prepare(store, &spool, p, progress)?);
    }
    Ok(pending)
}

fn plan_docker_archive(spool: &Spool) -> Result<Vec<Planned>> {
    let entries: Vec<ManifestEntry> = serde_json::from_slice(&spool.bytes("manifest.json")?)
        .map_err(|e| invalid(format!("invalid manifest.json: {e}")))?;
    // Docker 25+ also writes an OCI index; reuse its manifests so that a save/load round trip
    // keeps the manifest digest.
    let oci_manifests: Vec<(Vec<u8>, String, Manifest)> = match spool.get("index.json") {
        Some(_) => {
            let index: Option<Index> = serde_json::from_slice(&spool.bytes("index.json")?).ok();
            index
                .map(|i| i.manifests)
                .unwrap_or_default()
                .iter()
                .filter_map(|d| {
                    let f = spool.blob(d).ok()?;
                    let bytes = fs::read(&f.path).ok()?;
                    let m: Manifest = serde_json::from_slice(&bytes).ok()?;
                    Some((bytes, d.media_type.clone(), m))
                })
                .collect()
        }
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for entry in entries {
        let config_bytes = spool.bytes(&entry.config)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let f = spool.file(l)?;
            layers.push((l.clone(), f.digest.clone(), f.size));
        }
        let mut tags = Vec::new();
        for t in entry.repo_tags.unwrap_or_default() {
            let r = Reference::parse_normalized(&t)
                .map_err(|e| invalid(format!("invalid tag {t:?} in manifest.json: {e}")))?;
            tags.extend(as_tag(r));
        }
        let config_digest = Digest::of_bytes(&config_bytes);
        let manifest = oci_manifests
            .iter()
            .find(|(_, _, m)| {
                m.config.digest == config_digest
                    && m.layers.len() == layers.len()
                    && m.layers
                        .iter()
                        .zip(&layers)
                        .all(|(d, (_, digest, _))| d.digest == *digest)
            })
            .map(|(bytes, media_type, m)| {
                let mt = m.media_type.clone().unwrap_or_else(|| media_type.clone());
                (
                    bytes.clone(),
                    if mt.is_empty() {
                        OCI_MANIFEST.to_string()
                    } else {
                        mt
                    },
                )
            });
        out.push(Planned {
            config_bytes,
            layers,
            manifest,
            tags,
        });
    }
    if out.is_empty() {
        return Err(invalid("manifest.json lists no images"));
    }
    Ok(out)
}

fn plan_oci_layout(spool: &Spool) -> Result<Vec<Planned>> {
    let index: Index = serde_json::from_slice(&spool.bytes("index.json")?)
        .map_err(|e| invalid(format!("invalid index.json: {e}")))?;
    let mut out = Vec::new();
    for desc in &index.manifests {
        let tags = oci_tags(&desc.annotations)?;
        let (manifest_desc, manifest_bytes) = resolve_manifest(spool, desc, 0)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| invalid(format!("invalid manifest {}: {e}", manifest_desc.digest)))?;
        let config_file = spool.blob(&manifest.config)?;
        let config_bytes = fs::read(&config_file.path)
            .ctx(|| format!("cannot read config {}", manifest.config.digest))?;
        let mut layers = Vec::new();
        for l in &manifest.layers {
            let f = spool.blob(l)?;
            layers.push((blob_path(&l.digest), f.digest.clone(), f.size));
        }
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| manifest_desc.media_type.clone());
        // The same image may be listed once per tag; merge them.
        let config_digest = Digest::of_bytes(&config_bytes);
        if let Some(existing) = out
            .iter_mut()
            .find(|p: &&mut Planned| Digest::of_bytes(&p.config_bytes) == config_digest)
        {
            existing.tags.extend(tags);
            continue;
        }
        out.push(Planned {
            config_bytes,
            layers,
            manifest: Some((manifest_bytes, media_type)),
            tags,
        });
    }
    if out.is_empty() {
        return Err(invalid("index.json lists no images"));
    }
    Ok(out)
}

/// The tag an OCI index entry carries: `io.containerd.image.name` (a full reference) or
/// `org.opencontainers.image.ref.name` when that is a full reference; a bare tag names no
/// repository, so such an image is loaded untagged.
fn oci_tags(annotations: &BTreeMap<String, String>) -> Result<Vec<Reference>> {
    let name = annotations.get(ANNOTATION_IMAGE_NAME).or_else(|| {
        annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|r| r.contains(['/', ':', '@']))
    });
    match name {
        Some(n) => {
            let r = Reference::parse_normalized(n)
                .map_err(|e| invalid(format!("invalid image name {n:?} in index.json: {e}")))?;
            Ok(as_tag(r).into_iter().collect())
        }
        None => Ok(Vec::new()),
    }
}

/// The tag a name from an archive gives: `name:tag@digest` keeps its tag, a digest-only name
/// gives none (a tag never pins a digest), a bare name gets `latest`.
fn as_tag(r: Reference) -> Option<Reference> {
    match (r.tag(), r.digest()) {
        (Some(t), Some(_)) => Some(r.with_tag(t)),
        (None, Some(_)) => None,
        _ => Some(r.with_default_tag()),
    }
}

/// Follows nested indexes down to one image manifest (linux/amd64, or the only one).
fn resolve_manifest(
    spool: &Spool,
    desc: &Descriptor,
    depth: usize,
) -> Result<(Descriptor, Vec<u8>)> {
    if depth > 4 {
        return Err(invalid("image indexes are nested too deeply"));
    }
    let f = spool.blob(desc)?;
    let bytes = fs::read(&f.path).ctx(|| format!("cannot read blob {}", desc.digest))?;
    let is_index = match desc.media_type.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        // Unknown or missing media type: an index has `manifests`, a manifest has `config`.
        _ => serde_json::from_slice::<serde_json::Value>(&bytes)
            .map(|v| v.get("manifests").is_some())
            .unwrap_or(false),
    };
    if !is_index {
        return Ok((desc.clone(), bytes));
    }
    let index: Index = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("invalid image index {}: {e}", desc.digest)))?;
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        // Attestation manifests (buildkit) are not images.
        .filter(|d| d.platform.as_ref().is_none_or(|p| p.os != "unknown"))
        .collect();
    let chosen = if candidates.len() == 1 {
        candidates[0]
    } else {
        candidates
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
            })
            .copied()
            .ok_or_else(|| {
                invalid(format!(
                    "image index {} has no linux/amd64 manifest",
                    desc.digest
                ))
            })?
    };
    resolve_manifest(spool, chosen, depth + 1)
}

/// Stores one planned image's layers; returns what publishes it.
fn prepare(
    store: &ImageStore,
    spool: &Spool,
    planned: Planned,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<PublishRequest> {
    let id = Digest::of_bytes(&planned.config_bytes);
    let config: ImageConfig = serde_json::from_slice(&planned.config_bytes)
        .map_err(|e| invalid(format!("invalid image config {id}: {e}")))?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != planned.layers.len() {
        return Err(invalid(format!(
            "image {id} has {} layers, but its config lists {} diff ids",
            planned.layers.len(),
            diff_ids.len()
        )));
    }
    let chains = chain_ids(diff_ids);
    let mut layers = Vec::new();
    for (i, (path, blob, blob_size)) in planned.layers.iter().enumerate() {
        let f = spool.file(path)?;
        // Keep the spool file for other images sharing it: link, not rename.
        let staged = spool.dir.join(random_name("stage"));
        fs::hard_link(&f.path, &staged).ctx(|| format!("cannot stage layer {blob}"))?;
        let installed = store.install_blob(&staged, blob);
        let _ = fs::remove_file(&staged);
        installed?;
        let parent = if i == 0 { None } else { Some(&chains[i - 1]) };
        layers.push(store.layer_record(blob, *blob_size, parent, &diff_ids[i], None, progress)?);
    }
    Ok(PublishRequest {
        config: PublishConfig::Received {
            bytes: planned.config_bytes,
            config,
        },
        layers,
        manifest: planned.manifest,
        tags: planned.tags,
        repo_digest: None,
    })
}

/// An OCI manifest for an image that arrived without one. Deterministic, so the same image
/// always gets the same manifest digest.
pub(crate) fn synthesize_manifest(
    config: &Digest,
    config_size: u64,
    layers: &[RecordLayer],
) -> Vec<u8> {
    let value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config.to_string(), "size": config_size },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.blob_digest.to_string(),
            "size": l.blob_size,
        })).collect::<Vec<_>>(),
    });
    // serde_json's map keeps keys sorted (no preserve_order feature), so this is stable.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Writes the combined docker-archive + OCI layout for `images` (record, tags to include).
pub(crate) fn save(
    store: &ImageStore,
    images: &[(ImageRecord, Vec<Reference>)],
    writer: &mut dyn Write,
) -> Result<()> {
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut index_entries = Vec::new();
    let mut manifest_entries = Vec::new();
    for (record, tags) in images {
        blobs.insert(record.id.clone());
        for l in &record.layers {
            blobs.insert(l.blob_digest.clone());
        }
        let manifest_digest = record.manifest_digest.clone().ok_or_else(|| {
            ImageError::io(
                format!("image {} has no manifest", record.id),
                io::Error::other("missing manifest"),
            )
        })?;
        blobs.insert(manifest_digest.clone());
        let media_type = record
            .manifest_media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        let descriptor = |annotations: BTreeMap<String, String>| Descriptor {
            media_type: media_type.clone(),
            digest: manifest_digest.clone(),
            size: record.manifest_size,
            annotations,
            platform: None,
        };
        if tags.is_empty() {
            index_entries.push(descriptor(BTreeMap::new()));
        }
        for t in tags {
            let mut a = BTreeMap::new();
            a.insert(ANNOTATION_IMAGE_NAME.to_string(), t.to_string());
            a.insert(
                ANNOTATION_REF_NAME.to_string(),
                t.tag().unwrap_or("latest").to_string(),
            );
            index_entries.push(descriptor(a));
        }
        manifest_entries.push(ManifestEntry {
            config: blob_path(&record.id),
            repo_tags: Some(tags.iter().map(Reference::familiar_string).collect()),
            layers: record
                .layers
                .iter()
                .map(|l| blob_path(&l.blob_digest))
                .collect(),
        });
    }

    let mut builder = tar::Builder::new(writer);
    let write_err = |e: io::Error| ImageError::io("cannot write the archive", e);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(0, 0o755, tar::EntryType::Directory);
        builder
            .append_data(&mut h, dir, io::empty())
            .map_err(write_err)?;
    }
    for digest in &blobs {
        let path = store.blob_path(digest);
        let file = File::open(&path).ctx(|| format!("cannot open blob {digest}"))?;
        let size = file
            .metadata()
            .ctx(|| format!("cannot stat blob {digest}"))?
            .len();
        let mut h = header(size, 0o644, tar::EntryType::Regular);
        builder
            .append_data(&mut h, blob_path(digest), file)
            .map_err(write_err)?;
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index_entries,
    });
    let files: [(&str, Vec<u8>); 3] = [
        ("index.json", to_json(&index)?),
        ("manifest.json", to_json(&manifest_entries)?),
        (
            "oci-layout",
            to_json(&json!({"imageLayoutVersion": "1.0.0"}))?,
        ),
    ];
    for (name, bytes) in files {
        let mut h = header(bytes.len() as u64, 0o644, tar::EntryType::Regular);
        builder
            .append_data(&mut h, name, &bytes[..])
            .map_err(write_err)?;
    }
    builder
        .into_inner()
        .map_err(write_err)?
        .flush()
        .map_err(write_err)?;
    Ok(())
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| ImageError::io("cannot encode archive metadata", io::Error::other(e)))
}

/// A header with fixed ownership and time, so the same images always give the same bytes.
fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}
