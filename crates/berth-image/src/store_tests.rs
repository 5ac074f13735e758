//! Store behaviour: load/save/import/delete/prune/gc, against real files in temp dirs.

use std::path::Path;

use super::*;
use crate::testutil::{
    TestImage, docker_archive, gzip, layer_tar, oci_layout, simple_docker_archive, zstd,
};

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    (dir, store)
}

fn load(store: &ImageStore, archive: &[u8]) -> Result<Vec<LoadedImage>> {
    store.load(&mut &archive[..], &mut |_| {})
}

fn no_use(_: &Digest) -> Option<String> {
    None
}

/// Names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn assert_empty_store(root: &Path) {
    assert_eq!(
        names(&root.join("blobs/sha256")),
        Vec::<String>::new(),
        "orphan blobs"
    );
    assert_eq!(
        names(&root.join("layers")),
        Vec::<String>::new(),
        "orphan layers"
    );
    assert_eq!(
        names(&root.join("tmp")),
        Vec::<String>::new(),
        "leftover spool"
    );
    assert_eq!(
        names(&root.join("metadata/images")),
        Vec::<String>::new(),
        "image records"
    );
}

fn busybox() -> TestImage {
    TestImage::new(
        &["busybox:latest"],
        &[
            &[("bin/", b""), ("bin/sh", b"#!shell")],
            &[("etc/motd", b"hi")],
        ],
    )
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ImageStore>();
}

#[test]
fn loads_a_docker_archive() {
    let (dir, store) = store();
    let img = busybox();
    let mut events = Vec::new();
    let loaded = store
        .load(
            &mut &docker_archive(std::slice::from_ref(&img))[..],
            &mut |p| events.push(p),
        )
        .unwrap();
    assert_eq!(
        loaded,
        vec![LoadedImage {
            id: img.id(),
            tags: vec!["busybox:latest".into()]
        }]
    );
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, LoadProgress::LayerDone { .. }))
            .count()
            == 2
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LoadProgress::Layer { total: Some(_), .. }))
    );

    let image = store.get("busybox").unwrap();
    assert_eq!(image.id, img.id());
    assert_eq!(image.repo_tags, vec!["busybox:latest"]);
    assert_eq!(image.layers.len(), 2);
    assert_eq!(image.size, 9);
    assert_eq!(
        image.config.labels().get("test").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        image.created.unwrap().to_rfc3339(),
        "2024-01-02T03:04:05+00:00"
    );
    assert!(image.manifest_digest.is_some(), "a manifest is synthesised");
    let dirs = store.layer_dirs(&image.id).unwrap();
    assert_eq!(fs::read(dirs[0].join("bin/sh")).unwrap(), b"#!shell");
    assert_eq!(fs::read(dirs[1].join("etc/motd")).unwrap(), b"hi");
    assert!(dirs[1].ends_with(format!("layers/{}/diff", image.layers[1].chain_id.hex())));
    assert!(
        dir.path()
            .join("blobs/sha256")
            .join(image.id.hex())
            .exists()
    );

    // Everything survives a reopen.
    drop(store);
    let store = ImageStore::open(dir.path()).unwrap();
    assert_eq!(store.get("busybox:latest").unwrap(), image);
}

#[test]
fn loads_compressed_layers() {
    let (_dir, store) = store();
    let l1 = layer_tar(&[("a", b"gz")]);
    let l2 = layer_tar(&[("b", b"zst")]);
    let img = TestImage {
        tags: vec!["c:1".into()],
        layers: vec![gzip(&l1), zstd(&l2)],
        comment: String::new(),
    };
    load(&store, &docker_archive(std::slice::from_ref(&img))).unwrap();
    let image = store.get("c:1").unwrap();
    assert_eq!(image.layers[0].diff_id, Digest::of_bytes(&l1));
    assert_eq!(image.layers[1].diff_id, Digest::of_bytes(&l2));
    let dirs = store.layer_dirs(&image.id).unwrap();
    assert_eq!(fs::read(dirs[1].join("b")).unwrap(), b"zst");
}

#[test]
fn loads_an_oci_layout() {
    let (_dir, store) = store();
    let tagged = TestImage::new(
        &["registry.example.com:5000/team/app:v2"],
        &[&[("app", b"x")]],
    );
    let mut untagged = TestImage::new(&[], &[&[("other", b"y")]]);
    untagged.comment = "untagged".into();
    let loaded = load(&store, &oci_layout(&[tagged.clone(), untagged.clone()])).unwrap();
    assert_eq!(
        loaded[0].tags,
        vec!["registry.example.com:5000/team/app:v2"]
    );
    assert_eq!(
        loaded[1],
        LoadedImage {
            id: untagged.id(),
            tags: vec![]
        }
    );
    let image = store.get("registry.example.com:5000/team/app:v2").unwrap();
    assert_eq!(image.id, tagged.id());
    assert_eq!(
        store.get(&untagged.id().to_string()).unwrap().repo_tags,
        Vec::<String>::new()
    );
}

#[test]
fn oci_ref_name_annotation_and_nested_index() {
    let (_dir, store) = store();
    let img = TestImage::new(&[], &[&[("f", b"1")]]);
    // Build a layout whose index points at a nested index with two platforms.
    let layer = &img.layers[0];
    let config = img.config();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST_T,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of_bytes(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::of_bytes(layer).to_string(), "size": layer.len()}],
    })).unwrap();
    let bogus = b"{\"not\":\"used\"}".to_vec();
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST_T, "digest": Digest::of_bytes(&bogus).to_string(), "size": bogus.len(), "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": OCI_MANIFEST_T, "digest": Digest::of_bytes(&manifest).to_string(), "size": manifest.len(), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    })).unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": Digest::of_bytes(&nested).to_string(), "size": nested.len(),
            "annotations": {"org.opencontainers.image.ref.name": "example.com/nested:1.0"}}],
    })).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for data in [layer.as_slice(), &config, &manifest, &bogus, &nested] {
        append(
            &mut b,
            &format!("blobs/sha256/{}", Digest::of_bytes(data).hex()),
            data,
        );
    }
    append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    append(&mut b, "index.json", &index);
    let loaded = load(&store, &b.into_inner().unwrap()).unwrap();
    assert_eq!(
        loaded,
        vec![LoadedImage {
            id: img.id(),
            tags: vec!["example.com/nested:1.0".into()]
        }]
    );
    assert_eq!(
        store.get("example.com/nested:1.0").unwrap().manifest_digest,
        Some(Digest::of_bytes(&manifest))
    );
}

const OCI_MANIFEST_T: &str = "application/vnd.oci.image.manifest.v1+json";

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, path, data).unwrap();
}

/// Entries of a tar, by path.
fn tar_entries(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut a = tar::Archive::new(data);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut v).unwrap();
        out.push((p, v));
    }
    out
}

#[test]
fn save_then_load_round_trips() {
    let (_a, src) = store();
    let one = busybox();
    let mut two = TestImage::new(
        &["app:1", "other/app:2"],
        &[&[("bin/", b""), ("bin/sh", b"#!shell")], &[("app", b"app")]],
    );
    two.comment = "two".into();
    two.layers[1] = gzip(&two.layers[1]);
    load(&src, &docker_archive(&[one.clone(), two.clone()])).unwrap();

    let mut out = Vec::new();
    src.save(&["busybox".into(), "app:1".into()], &mut out)
        .unwrap();
    let mut again = Vec::new();
    src.save(&["busybox".into(), "app:1".into()], &mut again)
        .unwrap();
    assert_eq!(out, again, "save is deterministic");

    let entries = tar_entries(&out);
    let paths: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    for p in ["oci-layout", "index.json", "manifest.json"] {
        assert!(paths.contains(&p), "{p} missing: {paths:?}");
    }
    // The shared bottom layer is written once: 3 layer blobs + 2 configs + 2 manifests.
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.starts_with("blobs/sha256/") && p.len() > 14)
            .count(),
        7
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &entries
            .iter()
            .find(|(p, _)| p == "manifest.json")
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest"])
    );
    assert_eq!(manifest[1]["RepoTags"], serde_json::json!(["app:1"]));
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", one.id().hex())
    );
    let index: serde_json::Value =
        serde_json::from_slice(&entries.iter().find(|(p, _)| p == "index.json").unwrap().1)
            .unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );

    let (_b, dst) = store();
    let loaded = load(&dst, &out).unwrap();
    assert_eq!(loaded.len(), 2);
    for name in ["busybox:latest", "app:1"] {
        let a = src.get(name).unwrap();
        let b = dst.get(name).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(
            a.manifest_digest, b.manifest_digest,
            "manifest kept across the round trip"
        );
        assert_eq!(a.layers, b.layers);
    }
    assert!(
        dst.get("other/app:2").is_err(),
        "only the requested tag was saved"
    );

    // The OCI half alone (as containerd-based loaders read it) also loads.
    let (_c, oci) = store();
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in entries
        .iter()
        .filter(|(p, _)| p != "manifest.json" && !p.ends_with('/'))
    {
        append(&mut b, p, data);
    }
    let loaded = load(&oci, &b.into_inner().unwrap()).unwrap();
    assert_eq!(loaded[0].tags, vec!["busybox:latest"]);
    assert_eq!(oci.get("app:1").unwrap().id, two.id());
}

#[test]
fn save_by_id_has_no_tags() {
    let (_a, src) = store();
    let img = busybox();
    load(&src, &docker_archive(std::slice::from_ref(&img))).unwrap();
    let mut out = Vec::new();
    src.save(&[img.id().short().to_string()], &mut out).unwrap();
    let (_b, dst) = store();
    let loaded = load(&dst, &out).unwrap();
    assert_eq!(
        loaded,
        vec![LoadedImage {
            id: img.id(),
            tags: vec![]
        }]
    );
    assert!(src.save(&["nope".into()], &mut Vec::new()).is_err());
}

fn assert_failed_load_leaves_nothing(archive: &[u8], expect: &str) {
    let (dir, store) = store();
    let keep = TestImage::new(&["keep:1"], &[&[("k", b"k")]]);
    load(&store, &docker_archive(&[keep])).unwrap();
    let before = store.images();
    let blobs_before = names(&dir.path().join("blobs/sha256"));
    let layers_before = names(&dir.path().join("layers"));
    let err = load(&store, archive).unwrap_err();
    assert!(
        err.to_string().starts_with("failed to load image: "),
        "{err}"
    );
    assert!(
        err.to_string().contains(expect),
        "{err} should mention {expect}"
    );
    assert_eq!(store.images(), before);
    assert_eq!(names(&dir.path().join("blobs/sha256")), blobs_before);
    assert_eq!(names(&dir.path().join("layers")), layers_before);
    drop(store);
    let store = ImageStore::open(dir.path()).unwrap();
    assert_eq!(store.images(), before);
    assert_eq!(names(&dir.path().join("blobs/sha256")), blobs_before);
    assert_eq!(names(&dir.path().join("tmp")), Vec::<String>::new());
}

#[test]
fn oci_blob_digest_mismatch_fails_cleanly() {
    let img = TestImage::new(&["bad:1"], &[&[("a", b"aaaa")], &[("b", b"bbbb")]]);
    let mut archive = oci_layout(&[img]);
    // Flip a byte of the second layer's content inside the tar.
    let pos = archive.windows(4).position(|w| w == b"bbbb").unwrap();
    archive[pos] = b'X';
    assert_failed_load_leaves_nothing(&archive, "digest mismatch: expected sha256:");
}

#[test]
fn diff_id_mismatch_fails_cleanly() {
    // The config promises one layer, the archive carries another.
    let promised = layer_tar(&[("b", b"bbbb")]);
    let carried = gzip(&layer_tar(&[("b", b"other")]));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of_bytes(&promised).to_string()]},
    }))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, "l/layer.tar", &carried);
    append(&mut b, "config.json", &config);
    append(
        &mut b,
        "manifest.json",
        br#"[{"Config":"config.json","RepoTags":["bad:1"],"Layers":["l/layer.tar"]}]"#,
    );
    let expected = format!(
        "layer {} digest mismatch: expected {}, got {}",
        Digest::of_bytes(&carried),
        Digest::of_bytes(&promised),
        crate::testutil::diff_id(&carried)
    );
    assert_failed_load_leaves_nothing(&b.into_inner().unwrap(), &expected);
}

#[test]
fn truncated_and_corrupt_archives_fail_cleanly() {
    let archive = docker_archive(&[TestImage::new(&["t:1"], &[&[("big", &[1u8; 20_000][..])]])]);
    assert_failed_load_leaves_nothing(&archive[..archive.len() / 2], "");
    assert_failed_load_leaves_nothing(&archive[..10_000], "truncated");
    assert_failed_load_leaves_nothing(&[0x42; 2048], "invalid tar header");
    assert_failed_load_leaves_nothing(b"", "unexpected EOF");
    // A manifest pointing at a missing layer.
    let mut b = tar::Builder::new(Vec::new());
    append(
        &mut b,
        "cfg.json",
        br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    append(
        &mut b,
        "manifest.json",
        br#"[{"Config":"cfg.json","RepoTags":["x:1"],"Layers":["nope/layer.tar"]}]"#,
    );
    assert_failed_load_leaves_nothing(&b.into_inner().unwrap(), "\"nope/layer.tar\" is missing");
}

#[test]
fn escaping_layer_fails_cleanly() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"../etc/passwd");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let img = TestImage {
        tags: vec!["evil:1".into()],
        layers: vec![b.into_inner().unwrap()],
        comment: String::new(),
    };
    assert_failed_load_leaves_nothing(
        &docker_archive(&[img]),
        "entry \"../etc/passwd\" escapes the layer root",
    );
}

#[test]
fn archive_tags_replace_existing_tags() {
    let (_d, store) = store();
    let old = TestImage::new(&["app:latest"], &[&[("v", b"1")]]);
    let new = TestImage::new(&["app:latest"], &[&[("v", b"2")]]);
    load(&store, &docker_archive(std::slice::from_ref(&old))).unwrap();
    load(&store, &docker_archive(std::slice::from_ref(&new))).unwrap();
    assert_eq!(store.get("app").unwrap().id, new.id());
    assert_eq!(
        store.get(old.id().hex()).unwrap().repo_tags,
        Vec::<String>::new(),
        "old image is dangling"
    );
}

#[test]
fn resolves_names_ids_and_prefixes() {
    let (_d, store) = store();
    let img = busybox();
    load(&store, &docker_archive(std::slice::from_ref(&img))).unwrap();
    let id = img.id();
    for name in [
        "busybox".to_string(),
        "busybox:latest".into(),
        "docker.io/library/busybox".into(),
        "library/busybox:latest".into(),
        id.to_string(),
        id.hex().into(),
        id.short().into(),
        id.hex()[..3].into(),
        format!("sha256:{}", &id.hex()[..5]),
    ] {
        assert_eq!(store.get(&name).unwrap().id, id, "{name}");
    }
    let manifest = store.get("busybox").unwrap().manifest_digest.unwrap();
    assert_eq!(store.get(&format!("busybox@{manifest}")).unwrap().id, id);
    let err = store.get("busybox:nope").unwrap_err();
    assert_eq!(err.to_string(), "No such image: busybox:nope");
    assert_eq!(err.kind(), berth_api::ErrorKind::NotFound);
    assert!(store.get("zzz").is_err());
}

#[test]
fn a_tag_that_looks_like_an_id_prefix_wins() {
    let (_d, store) = store();
    let img = busybox();
    load(&store, &docker_archive(std::slice::from_ref(&img))).unwrap();
    let mut other = TestImage::new(&[], &[&[("o", b"o")]]);
    other.comment = "other".into();
    load(&store, &docker_archive(std::slice::from_ref(&other))).unwrap();
    let other_id = other.id();
    let prefix = &other_id.hex()[..4];
    store.tag("busybox", prefix).unwrap();
    assert_eq!(store.get(prefix).unwrap().id, img.id());
}

#[test]
fn tag_validates_and_defaults_to_latest() {
    let (_d, store) = store();
    load(&store, &docker_archive(&[busybox()])).unwrap();
    let r = store.tag("busybox", "myreg:5000/a/b").unwrap();
    assert_eq!(r.familiar_string(), "myreg:5000/a/b:latest");
    assert_eq!(
        store.get("myreg:5000/a/b:latest").unwrap().repo_tags,
        vec!["busybox:latest", "myreg:5000/a/b:latest"]
    );
    let err = store.tag("busybox", "Bad Name").unwrap_err();
    assert!(
        err.to_string().starts_with("invalid reference format"),
        "{err}"
    );
    let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(
        store
            .tag("busybox", &format!("a@sha256:{hex}"))
            .unwrap_err()
            .to_string(),
        "invalid reference format"
    );
    assert_eq!(
        store.tag("nope", "a").unwrap_err().to_string(),
        "No such image: nope"
    );
}

#[test]
fn delete_by_tag_untags_until_the_last_reference() {
    let (dir, store) = store();
    load(&store, &docker_archive(&[busybox()])).unwrap();
    store.tag("busybox", "busybox:other").unwrap();
    let id = store.get("busybox").unwrap().id;
    let items = store
        .delete("busybox:other", DeleteOptions::default(), &no_use)
        .unwrap();
    assert_eq!(items, vec![DeleteItem::Untagged("busybox:other".into())]);
    let items = store
        .delete("busybox", DeleteOptions::default(), &no_use)
        .unwrap();
    assert_eq!(items[0], DeleteItem::Untagged("busybox:latest".into()));
    assert_eq!(items[1], DeleteItem::Deleted(id.to_string()));
    assert_eq!(items.len(), 4, "image and its two layers: {items:?}");
    assert!(store.images().is_empty());
    assert_empty_store(dir.path());
    let err = store
        .delete("busybox", DeleteOptions::default(), &no_use)
        .unwrap_err();
    assert_eq!(err.to_string(), "No such image: busybox");
}

#[test]
fn delete_by_id_across_repositories_needs_force() {
    let (_d, store) = store();
    load(&store, &docker_archive(&[busybox()])).unwrap();
    let id = store.get("busybox").unwrap().id;
    store.tag("busybox", "busybox:1").unwrap();
    store.tag("busybox", "mirror/busybox:1").unwrap();
    let err = store
        .delete(id.short(), DeleteOptions::default(), &no_use)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            id.short()
        )
    );
    assert_eq!(err.kind(), berth_api::ErrorKind::Conflict);
    let items = store
        .delete(
            id.short(),
            DeleteOptions {
                force: true,
                noprune: false,
            },
            &no_use,
        )
        .unwrap();
    let untagged: Vec<_> = items
        .iter()
        .filter(|i| matches!(i, DeleteItem::Untagged(_)))
        .collect();
    assert_eq!(untagged.len(), 3);
    assert!(items.contains(&DeleteItem::Deleted(id.to_string())));

    // Several tags of one repository: deleting by id needs no force.
    load(&store, &docker_archive(&[busybox()])).unwrap();
    store.tag("busybox", "busybox:1").unwrap();
    let items = store
        .delete(&id.to_string(), DeleteOptions::default(), &no_use)
        .unwrap();
    assert!(items.contains(&DeleteItem::Deleted(id.to_string())));
}

#[test]
fn delete_refuses_images_in_use() {
    let (_d, store) = store();
    load(&store, &docker_archive(&[busybox()])).unwrap();
    let id = store.get("busybox").unwrap().id;
    let running = |_: &Digest| Some("0123456789abcdef0123".to_string());
    let err = store
        .delete(
            id.hex(),
            DeleteOptions {
                force: true,
                noprune: false,
            },
            &running,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to delete {} (cannot be forced) - image is being used by running container 0123456789ab",
            id.short()
        )
    );
    let stopped = |_: &Digest| Some(ContainerUse::Stopped("abcdef0123456789".into()));
    let err = store
        .delete_with_usage(id.hex(), DeleteOptions::default(), &stopped)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to delete {} (must be forced) - image is being used by stopped container abcdef012345",
            id.short()
        )
    );
    let err = store
        .delete("busybox", DeleteOptions::default(), &running)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("(must force) - container 0123456789ab is using its referenced image"),
        "{err}"
    );
    // Forced: untagged, but the image stays for its container.
    let items = store
        .delete_with_usage(
            id.hex(),
            DeleteOptions {
                force: true,
                noprune: false,
            },
            &stopped,
        )
        .unwrap();
    assert_eq!(items, vec![DeleteItem::Untagged("busybox:latest".into())]);
    assert!(store.get(id.hex()).is_ok());
}

#[test]
fn shared_layers_survive_while_another_image_needs_them() {
    let (dir, store) = store();
    let base: &[(&str, &[u8])] = &[("bin/", b""), ("bin/sh", b"#!shell")];
    let a = TestImage::new(&["a:1"], &[base]);
    let b = TestImage::new(&["b:1"], &[base, &[("app", b"app")]]);
    load(&store, &docker_archive(std::slice::from_ref(&a))).unwrap();
    load(&store, &docker_archive(std::slice::from_ref(&b))).unwrap();
    assert_eq!(
        names(&dir.path().join("layers")).len(),
        2,
        "the base layer is stored once"
    );
    let shared = store.shared_sizes();
    assert_eq!(shared[&a.id()], 7);
    assert_eq!(shared[&b.id()], 7);

    store
        .delete("a:1", DeleteOptions::default(), &no_use)
        .unwrap();
    let dirs = store.layer_dirs(&b.id()).unwrap();
    assert_eq!(fs::read(dirs[0].join("bin/sh")).unwrap(), b"#!shell");
    assert_eq!(fs::read(dirs[1].join("app")).unwrap(), b"app");
    assert_eq!(store.shared_sizes()[&b.id()], 0);
    store
        .delete("b:1", DeleteOptions::default(), &no_use)
        .unwrap();
    assert_empty_store(dir.path());
}

#[test]
fn import_builds_a_one_layer_image() {
    let (_d, store) = store();
    let rootfs = gzip(&layer_tar(&[("etc/", b""), ("etc/os-release", b"ID=test")]));
    let image = store
        .import(
            &mut &rootfs[..],
            ImportOptions {
                reference: Some("imported:v1".into()),
                changes: vec![
                    "CMD [\"/bin/sh\"]".into(),
                    "ENV A=b".into(),
                    "EXPOSE 8080".into(),
                    "WORKDIR /srv".into(),
                ],
                message: Some("hello".into()),
                os: None,
                architecture: Some("arm64".into()),
            },
        )
        .unwrap();
    assert_eq!(image.repo_tags, vec!["imported:v1"]);
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.config.architecture, "arm64");
    assert_eq!(image.config.os, "linux");
    let c = image.config.config.as_ref().unwrap();
    assert_eq!(c.cmd, Some(vec!["/bin/sh".to_string()]));
    assert_eq!(c.env, Some(vec!["A=b".to_string()]));
    assert_eq!(c.working_dir, "/srv");
    assert_eq!(image.config.history.len(), 1);
    assert_eq!(image.config.history[0].comment.as_deref(), Some("hello"));
    assert!(image.created.is_some());
    let dirs = store.layer_dirs(&image.id).unwrap();
    assert_eq!(
        fs::read(dirs[0].join("etc/os-release")).unwrap(),
        b"ID=test"
    );
    // It saves and loads like any image.
    let mut out = Vec::new();
    store.save(&["imported:v1".into()], &mut out).unwrap();
    let (_e, other) = self::store();
    assert_eq!(load(&other, &out).unwrap()[0].id, image.id);

    let untagged = store
        .import(
            &mut &layer_tar(&[("x", b"x")])[..],
            ImportOptions::default(),
        )
        .unwrap();
    assert!(untagged.repo_tags.is_empty());
    let err = store
        .import(
            &mut &layer_tar(&[])[..],
            ImportOptions {
                changes: vec!["FOO bar".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "FOO is not a valid change command");
    assert_eq!(err.kind(), berth_api::ErrorKind::InvalidArgument);
    let err = store
        .import(
            &mut &layer_tar(&[])[..],
            ImportOptions {
                reference: Some("a@b".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid reference format");
}

#[test]
fn prune_removes_dangling_or_all_unused() {
    let (dir, store) = store();
    let mut dangling = TestImage::new(&[], &[&[("d", b"dangling")]]);
    dangling.comment = "d".into();
    let tagged = TestImage::new(&["t:1"], &[&[("t", b"tagged")]]);
    let used = TestImage::new(&["u:1"], &[&[("u", b"used")]]);
    load(
        &store,
        &docker_archive(&[dangling.clone(), tagged.clone(), used.clone()]),
    )
    .unwrap();
    let in_use = |id: &Digest| (*id == used.id()).then(|| "c1".to_string());

    let report = store.prune(false, &|_| true, &in_use).unwrap();
    assert!(
        report
            .deleted
            .contains(&DeleteItem::Deleted(dangling.id().to_string()))
    );
    assert_eq!(report.space_reclaimed, 8);
    assert_eq!(store.images().len(), 2);

    let report = store
        .prune(true, &|img| img.repo_tags != vec!["nothing"], &in_use)
        .unwrap();
    assert_eq!(report.deleted[0], DeleteItem::Untagged("t:1".into()));
    assert!(
        report
            .deleted
            .contains(&DeleteItem::Deleted(tagged.id().to_string()))
    );
    assert_eq!(report.space_reclaimed, 6);
    let left: Vec<Digest> = store.images().into_iter().map(|i| i.id).collect();
    assert_eq!(left, vec![used.id()]);
    assert_eq!(names(&dir.path().join("layers")).len(), 1);

    let report = store.prune(true, &|_| false, &no_use).unwrap();
    assert_eq!(
        report,
        PruneReport::default(),
        "the filter keeps everything"
    );
}

#[test]
fn open_recovers_from_a_crash() {
    let (dir, store) = store();
    load(&store, &docker_archive(&[busybox()])).unwrap();
    let image = store.get("busybox").unwrap();
    drop(store);
    let root = dir.path();
    // What a SIGKILL in the middle of a load can leave behind.
    fs::create_dir_all(root.join("layers/.tmp-layer-123/diff/usr")).unwrap();
    let orphan = Digest::of_bytes(b"orphan");
    fs::write(root.join("blobs/sha256").join(orphan.hex()), b"orphan").unwrap();
    let orphan_layer = Digest::of_bytes(b"layer");
    fs::create_dir_all(root.join("layers").join(orphan_layer.hex()).join("diff")).unwrap();
    fs::write(root.join("blobs/.ingest/blob-1"), b"partial").unwrap();
    fs::create_dir_all(root.join("tmp/load-1")).unwrap();
    fs::write(root.join("tmp/load-1/0"), b"spooled").unwrap();
    fs::write(root.join("metadata/images/.tmp-1"), b"{").unwrap();
    fs::write(root.join("metadata/.repositories.json.tmp-1"), b"{").unwrap();
    fs::write(root.join("metadata/.someone-elses.tmp"), b"{").unwrap();

    let store = ImageStore::open(root).unwrap();
    assert_eq!(store.get("busybox").unwrap(), image);
    assert!(!root.join("layers/.tmp-layer-123").exists());
    assert!(!root.join("blobs/sha256").join(orphan.hex()).exists());
    assert!(!root.join("layers").join(orphan_layer.hex()).exists());
    assert_eq!(names(&root.join("blobs/.ingest")), Vec::<String>::new());
    assert_eq!(names(&root.join("tmp")), Vec::<String>::new());
    assert!(!root.join("metadata/.repositories.json.tmp-1").exists());
    assert!(
        root.join("metadata/.someone-elses.tmp").exists(),
        "not ours to remove"
    );
    assert_eq!(
        names(&root.join("metadata/images")),
        vec![format!("{}.json", image.id.hex())]
    );
    for l in &image.layers {
        assert!(
            root.join("layers")
                .join(l.chain_id.hex())
                .join("diff")
                .is_dir()
        );
    }
}

#[test]
fn simple_archive_helper_loads() {
    let (_d, store) = store();
    let loaded = load(
        &store,
        &simple_docker_archive(&["hello:world"], &[&[("hello", b"world")]]),
    )
    .unwrap();
    assert_eq!(loaded[0].tags, vec!["hello:world"]);
}

/// Where the crash child should stop: `spool` blocks the archive stream half-way, `unpack`
/// blocks inside the second layer's unpack (the first is then already complete).
const CRASH_ROOT: &str = "BERTH_IMAGE_CRASH_ROOT";
const CRASH_PHASE: &str = "BERTH_IMAGE_CRASH_PHASE";

fn crash_archive() -> Vec<u8> {
    // Incompressible-enough content so each layer produces several progress reports.
    let big: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let img = TestImage::new(
        &["crash:1"],
        &[&[("one", &big[..750_000])], &[("two", &big[750_000..])]],
    );
    docker_archive(&[img])
}

/// Runs only as a child of `sigkill_during_load_leaves_nothing`.
#[test]
#[ignore = "run by sigkill_during_load_leaves_nothing in a child process"]
fn crash_child() {
    let (Ok(root), Ok(phase)) = (std::env::var(CRASH_ROOT), std::env::var(CRASH_PHASE)) else {
        return;
    };
    let root = Path::new(&root);
    let store = ImageStore::open(root).unwrap();
    let archive = crash_archive();
    let ready = root.join("child-ready");
    let block = || -> ! {
        fs::write(&ready, b"").unwrap();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    };
    if phase == "spool" {
        struct Blocking<'a>(&'a [u8], usize, &'a dyn Fn() -> Option<()>);
        impl Read for Blocking<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 >= self.0.len() / 2 {
                    (self.2)();
                }
                let n = buf.len().min(4096).min(self.0.len() - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let blocker = || -> Option<()> { block() };
        let _ = store.load(&mut Blocking(&archive, 0, &blocker), &mut |_| {});
    } else {
        let mut done = 0;
        let _ = store.load(&mut &archive[..], &mut |p| match p {
            LoadProgress::LayerDone { .. } => done += 1,
            LoadProgress::Layer { .. } if done == 1 => block(),
            _ => {}
        });
    }
    panic!("the load finished before the child could be killed");
}

#[test]
fn sigkill_during_load_leaves_nothing() {
    for phase in ["spool", "unpack"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        {
            let store = ImageStore::open(root).unwrap();
            load(
                &store,
                &simple_docker_archive(&["keep:1"], &[&[("k", b"k")]]),
            )
            .unwrap();
        }
        let before = ImageStore::open(root).unwrap().images();
        let blobs_before = names(&root.join("blobs/sha256"));
        let layers_before = names(&root.join("layers"));

        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "store::tests::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_ROOT, root)
            .env(CRASH_PHASE, phase)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !root.join("child-ready").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the crash child never got ready ({phase})"
            );
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the crash child exited early ({phase}): {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Something half-done must be on disk, or this test proves nothing.
        let partial = match phase {
            "spool" => !names(&root.join("tmp")).is_empty(),
            _ => names(&root.join("layers"))
                .iter()
                .any(|n| n.starts_with(".tmp-")),
        };
        assert!(partial, "no partial state found for {phase}");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        fs::remove_file(root.join("child-ready")).unwrap();

        let store = ImageStore::open(root).unwrap();
        assert_eq!(store.images(), before, "{phase}");
        assert!(store.get("crash:1").is_err());
        assert_eq!(names(&root.join("blobs/sha256")), blobs_before, "{phase}");
        assert_eq!(names(&root.join("layers")), layers_before, "{phase}");
        assert_eq!(names(&root.join("tmp")), Vec::<String>::new(), "{phase}");
        // And the same archive loads fine afterwards.
        load(&store, &crash_archive()).unwrap();
    }
}
