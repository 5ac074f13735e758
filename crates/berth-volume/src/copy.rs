//! Copy-up: a new, empty volume mounted over a directory that has content in the image is
//! first filled with that content, as Docker does: files, directories, symlinks, fifos and
//! device nodes, with owners, modes, modification times and extended attributes (file
//! capabilities, ACLs, `user.*`); the volume's root takes the directory's owner and mode.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, VolumeError};

/// The directory `dest` names inside `root`, if every component exists and none is a symlink
/// (a symlink could lead out of the container's root; Docker skips what it cannot resolve).
pub fn dir_in_root(root: &Path, dest: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(n) => {
                p.push(n);
                let m = std::fs::symlink_metadata(&p).ok()?;
                if m.file_type().is_symlink() {
                    return None;
                }
            }
            Component::RootDir | Component::CurDir => {}
            _ => return None,
        }
    }
    std::fs::symlink_metadata(&p)
        .ok()
        .filter(|m| m.is_dir())
        .map(|_| p)
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut rd| rd.next().is_none())
}

/// Fills `volume` from `source` when the volume is empty; returns whether it copied.
pub fn copy_up(source: &Path, volume: &Path) -> Result<bool> {
    if !is_empty_dir(volume) || is_empty_dir(source) {
        return Ok(false);
    }
    copy_tree(source, volume).map_err(|e| VolumeError::io("copy image content into", volume, e))?;
    let m = std::fs::symlink_metadata(source).map_err(|e| VolumeError::io("stat", source, e))?;
    std::os::unix::fs::lchown(volume, Some(m.uid()), Some(m.gid()))
        .and_then(|()| {
            std::fs::set_permissions(volume, std::fs::Permissions::from_mode(m.mode() & 0o7777))
        })
        .map_err(|e| VolumeError::io("set owner and mode of", volume, e))?;
    Ok(true)
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let m = std::fs::symlink_metadata(&from)?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            // fifo, socket, character or block device: recreate the node.
            let kind = rustix::fs::FileType::from_raw_mode(m.mode());
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &to,
                kind,
                rustix::fs::Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )?;
        }
        std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid()))?;
        if !ft.is_symlink() {
            // After chown, which clears security.capability.
            copy_xattrs(&from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            let times = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: m.atime(),
                    tv_nsec: m.atime_nsec() as _,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: m.mtime(),
                    tv_nsec: m.mtime_nsec() as _,
                },
            };
            rustix::fs::utimensat(rustix::fs::CWD, &to, &times, rustix::fs::AtFlags::empty())?;
        }
    }
    Ok(())
}

/// Copies extended attributes, except overlayfs' own (`trusted.overlay.*`); a filesystem
/// without xattr support on either side copies none.
fn copy_xattrs(from: &Path, to: &Path) -> std::io::Result<()> {
    let unsupported =
        |e: &rustix::io::Errno| matches!(*e, rustix::io::Errno::NOTSUP | rustix::io::Errno::NODATA);
    let size = match rustix::fs::llistxattr_query(from) {
        Ok(0) => return Ok(()),
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(from, &mut names[..])?;
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let name = std::ffi::OsStr::from_bytes(name);
        let len = match rustix::fs::lgetxattr_query(from, name) {
            Ok(len) => len,
            Err(e) if unsupported(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; len];
        let len = rustix::fs::lgetxattr(from, name, &mut value[..])?;
        match rustix::fs::lsetxattr(to, name, &value[..len], rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_into_an_empty_volume_only() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("img/data");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), b"x").unwrap();
        std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::os::unix::fs::symlink("sub/f", src.join("link")).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();
        let xattrs = rustix::fs::lsetxattr(
            src.join("sub/f"),
            "user.berth",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
        let vol = d.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        assert!(copy_up(&src, &vol).unwrap());
        assert_eq!(std::fs::read(vol.join("sub/f")).unwrap(), b"x");
        let m = std::fs::metadata(vol.join("sub/f")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640);
        assert_eq!(
            std::fs::read_link(vol.join("link")).unwrap(),
            Path::new("sub/f")
        );
        assert_eq!(std::fs::metadata(&vol).unwrap().mode() & 0o777, 0o750);
        if xattrs {
            let mut buf = [0u8; 16];
            let n = rustix::fs::lgetxattr(vol.join("sub/f"), "user.berth", &mut buf[..]).unwrap();
            assert_eq!(&buf[..n], b"kept");
        }
        // Not empty any more: a second copy does nothing.
        std::fs::write(src.join("new"), b"y").unwrap();
        assert!(!copy_up(&src, &vol).unwrap());
        assert!(!vol.join("new").exists());

        assert_eq!(
            dir_in_root(&d.path().join("img"), "/data"),
            Some(src.clone())
        );
        std::os::unix::fs::symlink("/etc", d.path().join("img/esc")).unwrap();
        assert_eq!(dir_in_root(&d.path().join("img"), "/esc"), None);
        assert_eq!(dir_in_root(&d.path().join("img"), "/missing"), None);
    }
}
