//! A container's working directory (`-w`, the image's `WORKDIR`): Docker requires it absolute,
//! stores it cleaned, and creates it in the container's root filesystem when it is missing
//! (root-owned, mode 0755), refusing a path that is not a directory.
//!
//! At create, only the image's layers are looked at (no overlay is mounted then), so a path
//! the image has as a file is refused early; the directory itself is made at each start, in
//! the mounted root, resolving every component inside it without following a symlink out.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{ContainerError, Result, invalid};
use crate::fs::{lower_metadata, resolve, split_container_path};

/// Docker's `translateWorkingDir`: empty stays empty, a relative path is refused, others are
/// cleaned like Go's `filepath.Clean` (`/a/./b/../c/` → `/a/c`).
pub fn translate(wd: &str) -> Result<String> {
    if wd.is_empty() {
        return Ok(String::new());
    }
    if !wd.starts_with('/') {
        return Err(invalid(format!(
            "the working directory '{wd}' is invalid, it needs to be an absolute path"
        )));
    }
    let mut out: Vec<&str> = Vec::new();
    for c in wd.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

fn not_a_directory(wd: &str) -> ContainerError {
    // Docker's message (and, being unclassified there, a 500).
    ContainerError::Internal(format!("Cannot mkdir: {wd} is not a directory"))
}

/// At create: refuses a working directory the image (`layers`, bottom first) has as something
/// other than a directory, or below such a thing. Symlinks are left to the start, which
/// resolves them in the mounted tree.
pub fn check_image(layers: &[PathBuf], wd: &str) -> Result<()> {
    let (comps, _) = split_container_path(wd);
    for i in 0..comps.len() {
        let Some(md) = lower_metadata(layers, &comps[..=i]) else {
            return Ok(());
        };
        let ft = md.file_type();
        if ft.is_symlink() {
            return Ok(());
        }
        if !ft.is_dir() {
            return Err(not_a_directory(wd));
        }
    }
    Ok(())
}

/// At start: creates `wd` in the mounted root filesystem `root` when it is missing. Symlinks
/// are resolved as the container would (absolute targets restart at `root`, `..` stops
/// there); every directory made is owned by root with mode 0755, existing ones are left as
/// they are.
pub fn ensure(root: &Path, wd: &str) -> Result<()> {
    if wd.is_empty() || wd == "/" {
        return Ok(());
    }
    let io_err = |e: io::Error| ContainerError::io("create working directory in", root, e);
    let root_fd = open_dir_fd(root).map_err(io_err)?;
    let (comps, _) = split_container_path(wd);
    let resolved = resolve(&root_fd, &comps, true).map_err(io_err)?;
    let mut dir = root_fd;
    for c in &resolved {
        let name = OsStr::from_bytes(c);
        dir = match open_child(&dir, name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        // Only what is made here: as Docker's MkdirAllAndChown(WithOnlyNew);
                        // the mode is set again as the daemon's umask may have masked it.
                        rustix::fs::chownat(
                            &dir,
                            name,
                            Some(rustix::fs::Uid::ROOT),
                            Some(rustix::fs::Gid::ROOT),
                            AtFlags::SYMLINK_NOFOLLOW,
                        )
                        .map_err(|e| io_err(e.into()))?;
                        rustix::fs::chmodat(
                            &dir,
                            name,
                            Mode::from_raw_mode(0o755),
                            AtFlags::empty(),
                        )
                        .map_err(|e| io_err(e.into()))?;
                    }
                    // Made meanwhile (another start of the same image layer cannot, but the
                    // container's own processes can).
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err(e.into())),
                }
                match open_child(&dir, name) {
                    Ok(fd) => fd,
                    Err(Errno::NOTDIR | Errno::LOOP) => return Err(not_a_directory(wd)),
                    Err(e) => return Err(io_err(e.into())),
                }
            }
            // A file, or a symlink that appeared after the resolution.
            Err(Errno::NOTDIR | Errno::LOOP) => return Err(not_a_directory(wd)),
            Err(e) => return Err(io_err(e.into())),
        };
    }
    Ok(())
}

fn open_dir_fd(p: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        p,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// One component below `dir`, which must be a directory and not a symlink.
fn open_child(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn translate_is_dockers() {
        assert_eq!(translate("").unwrap(), "");
        assert_eq!(translate("/").unwrap(), "/");
        assert_eq!(translate("/a/./b/../c/").unwrap(), "/a/c");
        assert_eq!(translate("/../..").unwrap(), "/");
        assert_eq!(
            translate("rel/dir").unwrap_err().to_string(),
            "the working directory 'rel/dir' is invalid, it needs to be an absolute path"
        );
    }

    #[test]
    fn ensure_creates_missing_dirs_inside_the_root_only() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/srv", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../outside", root.join("up")).unwrap();

        ensure(&root, "/tmp/new/dir").unwrap();
        let md = std::fs::metadata(root.join("tmp/new/dir")).unwrap();
        assert!(md.is_dir());
        assert_eq!(md.permissions().mode() & 0o7777, 0o755);
        assert_eq!((md.uid(), md.gid()), (0, 0));
        // Idempotent.
        ensure(&root, "/tmp/new/dir").unwrap();

        // An absolute symlink is followed inside the root.
        ensure(&root, "/link/app").unwrap();
        assert!(root.join("srv/app").is_dir());
        // `..` stops at the root: nothing appears outside.
        ensure(&root, "/up/x").unwrap();
        assert!(root.join("outside/x").is_dir());
        assert!(!outside.join("x").exists());

        for bad in ["/etc/passwd", "/etc/passwd/sub"] {
            assert_eq!(
                ensure(&root, bad).unwrap_err().to_string(),
                format!("Cannot mkdir: {bad} is not a directory")
            );
        }
    }

    #[test]
    fn check_image_refuses_files() {
        let t = tempfile::tempdir().unwrap();
        let l1 = t.path().join("l1");
        let l2 = t.path().join("l2");
        std::fs::create_dir_all(l1.join("etc")).unwrap();
        std::fs::write(l1.join("etc/passwd"), b"x").unwrap();
        std::fs::create_dir_all(l2.join("srv")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", l2.join("srv/link")).unwrap();
        let layers = vec![l1, l2];
        check_image(&layers, "/etc").unwrap();
        check_image(&layers, "/tmp/new/dir").unwrap();
        check_image(&layers, "/srv/link/x").unwrap();
        for bad in ["/etc/passwd", "/etc/passwd/sub"] {
            assert_eq!(
                check_image(&layers, bad).unwrap_err().to_string(),
                format!("Cannot mkdir: {bad} is not a directory")
            );
        }
    }
}
