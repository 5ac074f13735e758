use super::*;
use std::os::unix::fs::{MetadataExt, symlink};

fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_uid(1234);
        h.set_gid(99);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn symlinks_resolve_inside_the_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("dst")).unwrap();
    symlink("/etc", root.join("dst/link")).unwrap();
    symlink("/etc", root.join("to-etc")).unwrap();
    let tar = tar_of(&[
        ("link/x", tar::EntryType::Regular, b"via link", ""),
        (".wh.y", tar::EntryType::Regular, b"", ""),
    ]);
    extract_into_root(&mut &tar[..], &root, "/dst", &ExtractOptions::default()).unwrap();
    assert_eq!(std::fs::read(root.join("etc/x")).unwrap(), b"via link");
    assert!(
        root.join("dst/.wh.y").is_file(),
        "whiteouts stay plain files"
    );
    // The destination itself is a symlink to the container's /etc.
    let tar = tar_of(&[("z", tar::EntryType::Regular, b"z", "")]);
    extract_into_root(&mut &tar[..], &root, "/to-etc", &ExtractOptions::default()).unwrap();
    assert_eq!(std::fs::read(root.join("etc/z")).unwrap(), b"z");
    assert!(!Path::new("/etc/z").exists() || std::fs::read("/etc/z").unwrap() != b"z");
}

#[test]
fn escapes_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("dst")).unwrap();
    for entries in [
        vec![("../x", tar::EntryType::Regular, b"".as_slice(), "")],
        vec![("/abs", tar::EntryType::Regular, b"".as_slice(), "")],
        vec![(
            "h",
            tar::EntryType::Link,
            b"".as_slice(),
            "../../etc/passwd",
        )],
    ] {
        let tar = tar_of(&entries);
        let err = extract_into_root(&mut &tar[..], &root, "/dst", &ExtractOptions::default())
            .unwrap_err();
        assert!(err.to_string().contains("escapes"), "{err}");
    }
    assert!(!t.path().join("x").exists());
}

#[test]
fn owner_override_and_no_overwrite() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("dst/sub")).unwrap();
    let tar = tar_of(&[("f", tar::EntryType::Regular, b"1", "")]);
    let opts = ExtractOptions {
        owner: Some((0, 0)),
        no_overwrite_dir_non_dir: true,
        to_host: None,
    };
    extract_into_root(&mut &tar[..], &root, "/dst", &opts).unwrap();
    if rustix::process::geteuid().is_root() {
        assert_eq!(std::fs::metadata(root.join("dst/f")).unwrap().uid(), 0);
        let keep = ExtractOptions::default();
        extract_into_root(&mut &tar[..], &root, "/dst", &keep).unwrap();
        assert_eq!(std::fs::metadata(root.join("dst/f")).unwrap().uid(), 1234);
    }
    let tar = tar_of(&[("sub", tar::EntryType::Regular, b"1", "")]);
    let err = extract_into_root(&mut &tar[..], &root, "/dst", &opts).unwrap_err();
    assert!(
        err.to_string().contains("cannot overwrite directory"),
        "{err}"
    );
}
