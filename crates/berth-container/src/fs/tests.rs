use super::*;

fn mkdirs(root: &Path, dirs: &[&str]) {
    for d in dirs {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
}

fn whiteout(p: &Path) -> bool {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .is_ok()
}

fn as_pairs(v: Vec<FilesystemChange>) -> Vec<(String, u8)> {
    v.into_iter().map(|c| (c.path, c.kind)).collect()
}

#[test]
fn changes_are_classified_against_the_lower_layers() {
    let t = tempfile::tempdir().unwrap();
    let (l1, l2, upper) = (
        t.path().join("l1"),
        t.path().join("l2"),
        t.path().join("upper"),
    );
    mkdirs(&l1, &["etc", "usr/lib", "var"]);
    std::fs::write(l1.join("etc/passwd"), b"root").unwrap();
    std::fs::write(l1.join("etc/old"), b"x").unwrap();
    std::fs::create_dir_all(&l2).unwrap();
    std::fs::write(l2.join("top"), b"t").unwrap();
    mkdirs(&upper, &["etc", "new/deep", "usr/lib"]);
    std::fs::write(upper.join("etc/passwd"), b"root2").unwrap();
    std::fs::write(upper.join("etc/hostname"), b"").unwrap(); // a mountpoint stub
    std::fs::write(upper.join("new/deep/f"), b"f").unwrap();
    std::fs::write(upper.join("top"), b"t2").unwrap();
    std::fs::write(upper.join("usr/lib/added"), b"a").unwrap();
    let can_whiteout = whiteout(&upper.join("etc/old"));
    let got = as_pairs(changes(&upper, &[l1.clone(), l2.clone()]).unwrap());
    let mut want = vec![
        ("/etc".to_string(), CHANGE_MODIFIED),
        ("/etc/passwd".to_string(), CHANGE_MODIFIED),
        ("/new".to_string(), CHANGE_ADDED),
        ("/new/deep".to_string(), CHANGE_ADDED),
        ("/new/deep/f".to_string(), CHANGE_ADDED),
        ("/top".to_string(), CHANGE_MODIFIED),
        ("/usr".to_string(), CHANGE_MODIFIED),
        ("/usr/lib".to_string(), CHANGE_MODIFIED),
        ("/usr/lib/added".to_string(), CHANGE_ADDED),
    ];
    if can_whiteout {
        want.insert(1, ("/etc/old".to_string(), CHANGE_DELETED));
    }
    assert_eq!(got, want);
}

#[test]
fn lower_whiteouts_and_opaque_dirs_hide_paths() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for whiteouts and trusted xattrs");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (l1, l2) = (t.path().join("l1"), t.path().join("l2"));
    mkdirs(&l1, &["d"]);
    std::fs::write(l1.join("gone"), b"x").unwrap();
    std::fs::write(l1.join("d/inner"), b"x").unwrap();
    mkdirs(&l2, &["d"]);
    assert!(whiteout(&l2.join("gone")));
    rustix::fs::setxattr(
        l2.join("d"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let layers = [l1, l2];
    let c = |p: &[&str]| p.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    assert!(!in_lower(&layers, &c(&["gone"])));
    assert!(in_lower(&layers, &c(&["d"])));
    assert!(!in_lower(&layers, &c(&["d", "inner"])));

    // An opaque directory in the upper layer (rm -rf d; mkdir d) is a change by itself.
    let upper = t.path().join("upper");
    mkdirs(&upper, &["d"]);
    let md = std::fs::metadata(layers[1].join("d")).unwrap();
    std::fs::set_permissions(upper.join("d"), md.permissions()).unwrap();
    rustix::fs::setxattr(
        upper.join("d"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let got = as_pairs(changes(&upper, &layers).unwrap());
    assert_eq!(got, vec![("/d".to_string(), CHANGE_MODIFIED)]);
}

#[test]
fn container_paths_split_and_name_like_docker() {
    let c = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(
        split_container_path("/etc/passwd"),
        (c(&["etc", "passwd"]), false)
    );
    assert_eq!(split_container_path("/etc/"), (c(&["etc"]), true));
    assert_eq!(split_container_path("/etc/."), (c(&["etc"]), true));
    assert_eq!(split_container_path("/"), (c(&[]), true));
    assert_eq!(tar_base_name("/etc/passwd"), b"passwd");
    assert_eq!(tar_base_name("/etc/"), b"etc");
    assert_eq!(tar_base_name("/etc/."), b".");
    assert_eq!(tar_base_name("/"), b"/");
}

#[test]
fn resolution_stays_inside_the_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    mkdirs(&root, &["etc", "a/b"]);
    std::os::unix::fs::symlink("/etc", root.join("a/b/abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../..", root.join("a/up")).unwrap();
    std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    let fd = open_dir(&root).unwrap();
    let c = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(
        resolve(&fd, &c(&["a", "b", "abs", "x"]), false).unwrap(),
        c(&["etc", "x"])
    );
    assert_eq!(
        resolve(&fd, &c(&["a", "b", "abs"]), false).unwrap(),
        c(&["a", "b", "abs"])
    );
    assert_eq!(
        resolve(&fd, &c(&["a", "up", "etc"]), true).unwrap(),
        c(&["etc"])
    );
    assert_eq!(
        resolve(&fd, &c(&["..", "..", "etc"]), true).unwrap(),
        c(&["etc"])
    );
    assert!(resolve(&fd, &c(&["loop"]), true).is_err());
    // A stat through a link to "/etc" is the tree's etc, not the host's.
    let st = stat_in_root(&fd, "/a/b/abs/", "c1").unwrap();
    assert_eq!(st.mode & (1 << 31), 1 << 31);
    let st = stat_in_root(&fd, "/a/b/abs", "c1").unwrap();
    assert_eq!(st.link_target, "/etc");
    assert_eq!(st.mode & (1 << 27), 1 << 27);
    let err = stat_in_root(&fd, "/a/up/passwd", "c1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Could not find the file /a/up/passwd in container c1"
    );
}

#[test]
fn path_stat_header_is_docker_json_in_base64() {
    let st = PathStat {
        name: "passwd".into(),
        size: 5,
        mode: go_file_mode(0o100644),
        mtime: "2024-01-02T03:04:05Z".into(),
        link_target: String::new(),
    };
    let json = serde_json::to_string(&st).unwrap();
    assert_eq!(
        json,
        r#"{"name":"passwd","size":5,"mode":420,"mtime":"2024-01-02T03:04:05Z","linkTarget":""}"#
    );
    assert_eq!(
        st.header_value(),
        "eyJuYW1lIjoicGFzc3dkIiwic2l6ZSI6NSwibW9kZSI6NDIwLCJtdGltZSI6IjIwMjQtMDEtMDJUMDM6MDQ6MDVaIiwibGlua1RhcmdldCI6IiJ9"
    );
    assert_eq!(go_file_mode(0o040755), (1 << 31) | 0o755);
    assert_eq!(go_file_mode(0o120777), (1 << 27) | 0o777);
    assert_eq!(go_file_mode(0o020666), (1 << 26) | (1 << 21) | 0o666);
    assert_eq!(go_file_mode(0o104755), (1 << 23) | 0o755);
}
