use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

/// Appends an entry with the name and link written verbatim (the tar crate's setters
/// refuse `..` and absolute names, which are exactly what these tests need).
fn raw(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: Option<&str>,
    data: &[u8],
    mode: u32,
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

struct Sandbox {
    _dir: tempfile::TempDir,
    dest: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let outside = dir.path().join("outside");
    fs_create(&dest);
    fs_create(&outside);
    Sandbox {
        _dir: dir,
        dest,
        outside,
    }
}

fn fs_create(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

fn unpack_bytes(data: &[u8], dest: &Path) -> Result<UnpackedLayer> {
    unpack_layer(&mut &data[..], dest, "sha256:test", &mut |_| {})
}

#[test]
fn unpacks_every_entry_kind_into_overlay_format() {
    let sb = sandbox();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, "./", tar::EntryType::Directory, None, b"", 0o755);
    raw(&mut b, "bin/", tar::EntryType::Directory, None, b"", 0o755);
    // A file with setuid, owned by 1000:1001, with an xattr.
    b.append_pax_extensions([
        ("SCHILY.xattr.user.note", &b"hello"[..]),
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(5);
    h.set_mode(0o4755);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(1_500_000_000);
    b.append_data(&mut h, "bin/su", &b"su!!!"[..]).unwrap();
    raw(
        &mut b,
        "bin/su-link",
        tar::EntryType::Link,
        Some("bin/su"),
        b"",
        0o755,
    );
    raw(
        &mut b,
        "bin/sh",
        tar::EntryType::Symlink,
        Some("/bin/busybox"),
        b"",
        0o777,
    );
    let mut dev = |name: &str, kind, major, minor| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o666);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        b.append_data(&mut h, name, &b""[..]).unwrap();
    };
    dev("dev/null", tar::EntryType::Char, 1, 3);
    dev("dev/loop0", tar::EntryType::Block, 7, 0);
    dev("run/fifo", tar::EntryType::Fifo, 0, 0);
    raw(
        &mut b,
        "etc/.wh.passwd",
        tar::EntryType::Regular,
        None,
        b"",
        0o644,
    );
    raw(
        &mut b,
        "var/cache/.wh..wh..opq",
        tar::EntryType::Regular,
        None,
        b"",
        0o644,
    );
    raw(
        &mut b,
        "var/cache/kept",
        tar::EntryType::Regular,
        None,
        b"k",
        0o600,
    );
    let data = b.into_inner().unwrap();

    let unpacked = unpack_bytes(&data, &sb.dest).unwrap();
    assert_eq!(unpacked.diff_id, Digest::of_bytes(&data));
    assert_eq!(unpacked.compression, Compression::None);
    assert_eq!(unpacked.size, 6);

    let d = &sb.dest;
    let su = std::fs::symlink_metadata(d.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((su.uid(), su.gid()), (1000, 1001));
    assert_eq!(su.mtime(), 1_500_000_000);
    assert_eq!(su.nlink(), 2, "hard link shares the inode");
    assert_eq!(std::fs::read(d.join("bin/su-link")).unwrap(), b"su!!!");
    let mut note = vec![0u8; 16];
    let n = rustix::fs::getxattr(d.join("bin/su"), "user.note", &mut note).unwrap();
    assert_eq!(&note[..n], b"hello");
    assert!(
        rustix::fs::getxattr(d.join("bin/su"), "trusted.overlay.redirect", &mut note).is_err(),
        "overlay xattrs from the layer are dropped"
    );
    assert_eq!(
        std::fs::read_link(d.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    let null = std::fs::metadata(d.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.permissions().mode() & 0o777, 0o666);
    let lp = std::fs::metadata(d.join("dev/loop0")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), rustix::fs::makedev(7, 0));
    assert!(
        std::fs::metadata(d.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // Whiteout: a 0:0 character device named like the hidden file.
    let wh = std::fs::symlink_metadata(d.join("etc/passwd")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!d.join("etc/.wh.passwd").exists());
    // Opaque directory.
    let mut v = [0u8; 4];
    let n = rustix::fs::getxattr(d.join("var/cache"), "trusted.overlay.opaque", &mut v).unwrap();
    assert_eq!(&v[..n], b"y");
    assert!(!d.join("var/cache/.wh..wh..opq").exists());
    assert!(d.join("var/cache/kept").exists());
    // Directory mtimes survive the creation of their children.
    assert_eq!(
        std::fs::metadata(d.join("bin")).unwrap().mtime(),
        1_600_000_000
    );
}

fn assert_escape(data: &[u8], sb: &Sandbox, entry: &str) {
    let err = unpack_bytes(data, &sb.dest).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot unpack layer sha256:test: entry {entry:?} escapes the layer root"),
    );
    assert_eq!(err.kind(), berth_api::ErrorKind::InvalidArgument);
    let outside: Vec<_> = std::fs::read_dir(&sb.outside).unwrap().collect();
    assert!(
        outside.len() <= 1,
        "something was written outside: {outside:?}"
    );
    if let Ok(s) = std::fs::read(sb.outside.join("secret")) {
        assert_eq!(s, b"secret", "the file outside was modified");
        assert_eq!(
            std::fs::metadata(sb.outside.join("secret"))
                .unwrap()
                .nlink(),
            1
        );
    }
}

#[test]
fn rejects_dotdot_paths() {
    let sb = sandbox();
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        "a/../../outside/passwd",
        tar::EntryType::Regular,
        None,
        b"x",
        0o644,
    );
    assert_escape(&b.into_inner().unwrap(), &sb, "a/../../outside/passwd");
}

#[test]
fn rejects_absolute_paths() {
    let sb = sandbox();
    let target = format!("{}/passwd", sb.outside.display());
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, &target, tar::EntryType::Regular, None, b"x", 0o644);
    assert_escape(&b.into_inner().unwrap(), &sb, &target);
}

#[test]
fn rejects_writing_through_an_absolute_symlink() {
    let sb = sandbox();
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        "evil",
        tar::EntryType::Symlink,
        Some(sb.outside.to_str().unwrap()),
        b"",
        0o777,
    );
    raw(
        &mut b,
        "evil/passwd",
        tar::EntryType::Regular,
        None,
        b"x",
        0o644,
    );
    assert_escape(&b.into_inner().unwrap(), &sb, "evil/passwd");
}

#[test]
fn rejects_writing_through_a_relative_symlink() {
    let sb = sandbox();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, "d/", tar::EntryType::Directory, None, b"", 0o755);
    raw(
        &mut b,
        "d/up",
        tar::EntryType::Symlink,
        Some("../../outside"),
        b"",
        0o777,
    );
    raw(
        &mut b,
        "d/up/sub/file",
        tar::EntryType::Regular,
        None,
        b"x",
        0o644,
    );
    assert_escape(&b.into_inner().unwrap(), &sb, "d/up/sub/file");
}

#[test]
fn rejects_hard_links_that_escape() {
    let sb = sandbox();
    std::fs::write(sb.outside.join("secret"), b"secret").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        "hl",
        tar::EntryType::Link,
        Some("../outside/secret"),
        b"",
        0o644,
    );
    assert_escape(&b.into_inner().unwrap(), &sb, "hl");

    // Through a symlinked directory planted by an earlier entry.
    let sb = sandbox();
    std::fs::write(sb.outside.join("secret"), b"secret").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        "s",
        tar::EntryType::Symlink,
        Some(sb.outside.to_str().unwrap()),
        b"",
        0o777,
    );
    raw(
        &mut b,
        "hl",
        tar::EntryType::Link,
        Some("s/secret"),
        b"",
        0o644,
    );
    assert_escape(&b.into_inner().unwrap(), &sb, "hl");
    assert!(!sb.dest.join("hl").exists());
}

#[test]
fn pax_records_override_header_ownership_and_time() {
    let sb = sandbox();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("uid", &b"3000000"[..]),
        ("gid", &b"3000001"[..]),
        ("mtime", &b"1700000000.5"[..]),
    ])
    .unwrap();
    raw(&mut b, "f", tar::EntryType::Regular, None, b"x", 0o640);
    unpack_bytes(&b.into_inner().unwrap(), &sb.dest).unwrap();
    let m = std::fs::metadata(sb.dest.join("f")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mtime()),
        (3_000_000, 3_000_001, 1_700_000_000)
    );
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
}

#[test]
fn inside_symlinks_and_dotdot_that_stay_inside_work() {
    let sb = sandbox();
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        "usr/lib/",
        tar::EntryType::Directory,
        None,
        b"",
        0o755,
    );
    raw(
        &mut b,
        "lib",
        tar::EntryType::Symlink,
        Some("usr/lib"),
        b"",
        0o777,
    );
    raw(
        &mut b,
        "lib/libc.so",
        tar::EntryType::Regular,
        None,
        b"c",
        0o644,
    );
    raw(
        &mut b,
        "usr/../etc/hosts",
        tar::EntryType::Regular,
        None,
        b"h",
        0o644,
    );
    unpack_bytes(&b.into_inner().unwrap(), &sb.dest).unwrap();
    assert_eq!(
        std::fs::read(sb.dest.join("usr/lib/libc.so")).unwrap(),
        b"c"
    );
    assert_eq!(std::fs::read(sb.dest.join("etc/hosts")).unwrap(), b"h");
}

#[test]
fn gzip_and_zstd_layers_have_the_plain_diff_id() {
    let plain = crate::testutil::layer_tar(&[("a/", b""), ("a/b", b"bee")]);
    for (blob, kind) in [
        (crate::testutil::gzip(&plain), Compression::Gzip),
        (crate::testutil::zstd(&plain), Compression::Zstd),
    ] {
        let sb = sandbox();
        let u = unpack_bytes(&blob, &sb.dest).unwrap();
        assert_eq!(u.compression, kind);
        assert_eq!(u.diff_id, Digest::of_bytes(&plain));
        assert_eq!(std::fs::read(sb.dest.join("a/b")).unwrap(), b"bee");
        let (d, c) = diff_id_of(&mut &blob[..], "x").unwrap();
        assert_eq!((d, c), (Digest::of_bytes(&plain), kind));
    }
}

#[test]
fn truncated_layers_fail() {
    let plain = crate::testutil::layer_tar(&[("big", &[7u8; 10_000][..])]);
    let sb = sandbox();
    assert!(unpack_bytes(&plain[..3000], &sb.dest).is_err());
    let gz = crate::testutil::gzip(&plain);
    let sb = sandbox();
    assert!(unpack_bytes(&gz[..gz.len() / 2], &sb.dest).is_err());
}

#[test]
fn later_entries_replace_earlier_ones() {
    let sb = sandbox();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, "x/", tar::EntryType::Directory, None, b"", 0o755);
    raw(&mut b, "x/y", tar::EntryType::Regular, None, b"1", 0o644);
    raw(
        &mut b,
        "x",
        tar::EntryType::Regular,
        None,
        b"file now",
        0o644,
    );
    raw(&mut b, "f", tar::EntryType::Regular, None, b"old", 0o644);
    raw(&mut b, "f", tar::EntryType::Regular, None, b"new", 0o644);
    unpack_bytes(&b.into_inner().unwrap(), &sb.dest).unwrap();
    assert_eq!(std::fs::read(sb.dest.join("x")).unwrap(), b"file now");
    assert_eq!(std::fs::read(sb.dest.join("f")).unwrap(), b"new");
}
