//! Builders for test images: layer tars, docker-archive and OCI-layout tars, all in memory.
//! Available to this crate's tests and, with the `testutil` feature, to end-to-end tests.

use std::io::{Read, Write};

use serde_json::json;

use crate::digest::Digest;

/// A plain tar holding regular files `(path, contents)`; a path ending in `/` is a directory.
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut h = tar::Header::new_gnu();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(contents.len() as u64);
        }
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *contents)
            .expect("in-memory tar");
    }
    b.into_inner().expect("in-memory tar")
}

/// gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("in-memory gzip");
    e.finish().expect("in-memory gzip")
}

/// zstd-compresses `data`.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 1).expect("in-memory zstd")
}

/// The DiffID of a (possibly compressed) layer blob.
pub fn diff_id(blob: &[u8]) -> Digest {
    let (_, mut r) = crate::unpack::decompress(blob).expect("decompress");
    let mut plain = Vec::new();
    r.read_to_end(&mut plain).expect("decompress");
    Digest::of_bytes(&plain)
}

/// One image of a test archive.
#[derive(Debug, Clone, Default)]
pub struct TestImage {
    /// Tags as they appear in the archive (`busybox:latest`).
    pub tags: Vec<String>,
    /// Layer blobs as stored in the archive (plain tar, gzip or zstd).
    pub layers: Vec<Vec<u8>>,
    /// Distinguishes images with equal layers (goes into the config's `comment`).
    pub comment: String,
}

impl TestImage {
    /// An image of plain-tar layers, each a list of `(path, contents)` files.
    pub fn new(tags: &[&str], layers: &[&[(&str, &[u8])]]) -> TestImage {
        TestImage {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            layers: layers.iter().map(|l| layer_tar(l)).collect(),
            comment: String::new(),
        }
    }

    /// The config JSON (its digest is the image id).
    pub fn config(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| diff_id(l).to_string()).collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "comment": self.comment,
            "config": { "Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin"], "Labels": { "test": "yes" } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": self.layers.iter().map(|_| json!({"created_by": "test"})).collect::<Vec<_>>(),
        });
        serde_json::to_vec(&config).expect("config json")
    }

    /// The image id this image will get.
    pub fn id(&self) -> Digest {
        Digest::of_bytes(&self.config())
    }
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).expect("in-memory tar");
}

/// A classic docker-archive (`docker save` before 25): `<n>/layer.tar`, `<id>.json`,
/// `manifest.json`, `repositories`.
pub fn docker_archive(images: &[TestImage]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut manifest = Vec::new();
    for img in images {
        let config = img.config();
        let id = Digest::of_bytes(&config);
        let mut layer_paths = Vec::new();
        for layer in &img.layers {
            let dir = Digest::of_bytes(layer).hex().to_string();
            let path = format!("{dir}/layer.tar");
            append(&mut b, &format!("{dir}/VERSION"), b"1.0");
            append(&mut b, &path, layer);
            layer_paths.push(path);
        }
        let config_path = format!("{}.json", id.hex());
        append(&mut b, &config_path, &config);
        manifest.push(json!({"Config": config_path, "RepoTags": img.tags, "Layers": layer_paths}));
    }
    append(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    append(&mut b, "repositories", b"{}");
    b.into_inner().expect("in-memory tar")
}

/// An OCI image layout; each image is tagged through `io.containerd.image.name` (one index
/// entry per tag, one untagged entry when it has none).
pub fn oci_layout(images: &[TestImage]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut index = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    let mut blob = |b: &mut tar::Builder<Vec<u8>>, data: &[u8]| -> (Digest, usize) {
        let d = Digest::of_bytes(data);
        if written.insert(d.clone()) {
            append(b, &format!("blobs/sha256/{}", d.hex()), data);
        }
        (d, data.len())
    };
    for img in images {
        let (config, config_size) = blob(&mut b, &img.config());
        let mut layers = Vec::new();
        for layer in &img.layers {
            let (d, size) = blob(&mut b, layer);
            let media_type = crate::unpack::Compression::detect(layer).oci_media_type();
            layers.push(json!({"mediaType": media_type, "digest": d.to_string(), "size": size}));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
            "layers": layers,
        }))
        .expect("json");
        let (m, m_size) = blob(&mut b, &manifest);
        let desc = |annotations: serde_json::Value| json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m.to_string(), "size": m_size, "annotations": annotations});
        if img.tags.is_empty() {
            index.push(desc(json!({})));
        }
        for t in &img.tags {
            let full = crate::Reference::parse_normalized(t)
                .expect("valid tag")
                .with_default_tag();
            index.push(desc(json!({
                "io.containerd.image.name": full.to_string(),
                "org.opencontainers.image.ref.name": full.tag().unwrap_or("latest"),
            })));
        }
    }
    append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index});
    append(
        &mut b,
        "index.json",
        &serde_json::to_vec(&index).expect("json"),
    );
    b.into_inner().expect("in-memory tar")
}

/// A one-image docker-archive of plain layers: the quickest way to get an image into a store.
pub fn simple_docker_archive(tags: &[&str], layers: &[&[(&str, &[u8])]]) -> Vec<u8> {
    docker_archive(&[TestImage::new(tags, layers)])
}
