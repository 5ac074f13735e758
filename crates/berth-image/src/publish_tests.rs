use super::*;
use crate::testutil::layer_tar;

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    (dir, store)
}

fn built(step: Step, tags: &[&str]) -> PublishRequest {
    PublishRequest {
        config: PublishConfig::Built {
            config: ImageConfig {
                architecture: "amd64".into(),
                os: "linux".into(),
                ..Default::default()
            },
            step,
        },
        layers: Vec::new(),
        manifest: None,
        tags: tags
            .iter()
            .map(|t| Reference::parse_tag_target(t).unwrap())
            .collect(),
        repo_digest: None,
    }
}

/// A step adding no layer (as a commit of no changes).
fn empty_step() -> Step {
    Step {
        history: HistoryEntry::default(),
        layer: None,
    }
}

#[test]
fn a_built_image_gets_its_step_a_synthesised_manifest_and_its_tag() {
    let (dir, store) = store();
    let _w = crate::store::exclusive(&store.write_lock);
    let layer = store
        .store_layer(&mut &layer_tar(&[("etc/hello", b"hi")])[..], None)
        .unwrap();
    let diff_id = layer.diff_id.clone();
    let step = Step {
        history: HistoryEntry {
            created_by: Some("made here".into()),
            ..Default::default()
        },
        layer: Some(layer),
    };
    let img = store.publish_one(built(step, &["made:1"])).unwrap();
    assert_eq!(img.repo_tags, vec!["made:1".to_string()]);
    assert_eq!(img.config.rootfs.diff_ids, vec![diff_id]);
    assert_eq!(img.layers.len(), 1);
    let entry = img.config.history.last().unwrap();
    assert_eq!(entry.created_by.as_deref(), Some("made here"));
    assert!(!entry.empty_layer);
    assert_eq!(entry.created, img.config.created);
    assert!(img.config.created.is_some());
    // The id names the stored config; the synthesised manifest is stored too.
    let config_bytes = std::fs::read(store.blob_path(&img.id)).unwrap();
    assert_eq!(Digest::of_bytes(&config_bytes), img.id);
    assert!(
        store
            .blob_path(img.manifest_digest.as_ref().unwrap())
            .exists()
    );
    drop(_w);
    let reopened = ImageStore::open(dir.path()).unwrap();
    assert_eq!(reopened.get("made:1").unwrap().id, img.id);
}

#[test]
fn an_empty_step_is_history_only() {
    let (_dir, store) = store();
    let img = store.publish_one(built(empty_step(), &[])).unwrap();
    assert!(img.layers.is_empty());
    assert!(img.config.rootfs.diff_ids.is_empty());
    assert!(img.config.history[0].empty_layer);
    assert!(img.repo_tags.is_empty());
}

#[test]
fn a_received_config_and_manifest_are_kept_verbatim_with_the_repo_digest() {
    let (_dir, store) = store();
    let bytes = br#"{ "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []} }"#;
    let config: ImageConfig = serde_json::from_slice(bytes).unwrap();
    let manifest = br#"{"schemaVersion": 2}"#.to_vec();
    let repo = Reference::parse_normalized("example.com/app:v1").unwrap();
    let request = |repo_digest| PublishRequest {
        config: PublishConfig::Received {
            bytes: bytes.to_vec(),
            config: config.clone(),
        },
        layers: Vec::new(),
        manifest: Some((
            manifest.clone(),
            "application/vnd.oci.image.manifest.v1+json".into(),
        )),
        tags: vec![repo.clone()],
        repo_digest: Some((repo.clone(), repo_digest)),
    };
    let img = store.publish_one(request(None)).unwrap();
    assert_eq!(img.id, Digest::of_bytes(bytes));
    assert_eq!(img.config.created, None, "a received config is not changed");
    let manifest_digest = Digest::of_bytes(&manifest);
    assert_eq!(img.manifest_digest.as_ref(), Some(&manifest_digest));
    assert_eq!(img.repo_tags, vec!["example.com/app:v1".to_string()]);
    assert_eq!(
        img.repo_digests,
        vec![format!("example.com/app@{manifest_digest}")]
    );
    // A given digest (a manifest list's) wins over the manifest's own.
    let list = Digest::of_bytes(b"list");
    let img = store.publish_one(request(Some(list.clone()))).unwrap();
    assert!(
        img.repo_digests
            .contains(&format!("example.com/app@{list}"))
    );
}

#[test]
fn several_images_are_published_together_and_a_tag_moves() {
    let (_dir, store) = store();
    let first = store.publish_one(built(empty_step(), &["app:1"])).unwrap();
    let loaded = store
        .publish(vec![
            built(empty_step(), &["app:1", "app:2"]),
            built(empty_step(), &["other:1"]),
        ])
        .unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(
        loaded[0].tags,
        vec!["app:1".to_string(), "app:2".to_string()]
    );
    assert_ne!(loaded[0].id, first.id, "created differs, so the id does");
    assert_eq!(store.get("app:1").unwrap().id, loaded[0].id);
    assert!(
        store
            .get(&first.id.to_string())
            .unwrap()
            .repo_tags
            .is_empty()
    );
    assert_eq!(store.get("other:1").unwrap().id, loaded[1].id);
}

#[test]
fn add_reference_points_a_tag_or_repo_digest_at_an_existing_image() {
    let (dir, store) = store();
    let a = store.publish_one(built(empty_step(), &["app:1"])).unwrap();
    let b = store.publish_one(built(empty_step(), &[])).unwrap();
    let tag = Reference::parse_tag_target("app:1").unwrap();
    let pushed = tag.repository().with_digest(Digest::of_bytes(b"pushed"));
    {
        let mut state = lock(&store.state);
        store.add_reference(&mut state, tag, b.id.clone()).unwrap();
        store
            .add_reference(&mut state, pushed, b.id.clone())
            .unwrap();
    }
    assert!(store.get(&a.id.to_string()).unwrap().repo_tags.is_empty());
    let reopened = ImageStore::open(dir.path()).unwrap();
    let b = reopened.get("app:1").unwrap();
    assert_eq!(b.repo_digests.len(), 1);
    assert!(b.repo_digests[0].starts_with("app@sha256:"));
}
