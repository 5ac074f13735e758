//! Writing directory trees as tar streams: a container's filesystem for `export` and `cp`, and a
//! container's overlay upper directory as an OCI layer for `commit`.
//!
//! Trees are walked through directory file descriptors: every directory is opened relative to
//! its parent with `O_NOFOLLOW | O_DIRECTORY`, every file with `O_NOFOLLOW`, so a running
//! container swapping a directory for a symlink mid-walk cannot make the walk leave the tree.
//! Ownership, modes, mtimes, symlinks, hard links (as tar links to the first name seen), device
//! nodes, fifos and extended attributes (`SCHILY.xattr.*` PAX records) are kept. Overlay's own
//! `trusted.overlay.*` attributes are never written.
//!
//! In overlay-diff mode ([`PackOptions::overlay_diff`]) overlayfs whiteouts become OCI
//! whiteouts: a 0:0 character device `NAME` is written as an empty `.wh.NAME`, and a directory
//! with `trusted.overlay.opaque=y` is followed by `.wh..wh..opq`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

/// What to leave out of a packed tree and how to write whiteouts.
#[derive(Default)]
pub struct PackOptions<'a> {
    /// Called with each entry's path relative to the walk's root (`proc`, `etc/hostname`) and
    /// its `lstat`; `Skip::Entry` leaves the entry out, `Skip::Contents` writes a directory without its
    /// children.
    pub skip: Option<SkipFn<'a>>,
    /// Write overlayfs whiteouts and opaque directories as OCI whiteout entries.
    pub overlay_diff: bool,
    /// A remapped container's files: host ids in the range are written as the container's
    /// (`--userns-remap`; dockerd's archives map them back the same way).
    pub to_container: Option<IdShift>,
}

/// One contiguous id mapping: container id `n` is host id `uid + n` (`gid + n`) for `n`
/// below the count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdShift {
    pub uid: u32,
    pub uid_count: u32,
    pub gid: u32,
    pub gid_count: u32,
}

impl IdShift {
    /// Host ids → container ids; ids outside the range stay as they are.
    pub fn to_container(&self, uid: u64, gid: u64) -> (u64, u64) {
        let back = |id: u64, base: u32, count: u32| match id.checked_sub(u64::from(base)) {
            Some(c) if c < u64::from(count) => c,
            _ => id,
        };
        (
            back(uid, self.uid, self.uid_count),
            back(gid, self.gid, self.gid_count),
        )
    }

    /// Container ids → host ids; ids outside the range stay as they are.
    pub fn to_host(&self, uid: u64, gid: u64) -> (u64, u64) {
        let fwd = |id: u64, base: u32, count: u32| {
            if id < u64::from(count) {
                id + u64::from(base)
            } else {
                id
            }
        };
        (
            fwd(uid, self.uid, self.uid_count),
            fwd(gid, self.gid, self.gid_count),
        )
    }
}

/// Decides, from a path relative to the walk's root and its `lstat`, what to pack of it.
pub type SkipFn<'a> = &'a dyn Fn(&[u8], &Stat) -> Skip;

/// What [`PackOptions::skip`] decides for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Pack it.
    No,
    /// Leave the entry (and everything below it) out.
    Entry,
    /// Keep a directory entry but none of its contents.
    Contents,
}

const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Writes the children of the directory `dir` (not the directory itself) as a tar stream into
/// `out`, names relative to it (`bin/`, `etc/passwd`), and finishes the archive.
pub fn pack_dir_contents(
    dir: &impl AsFd,
    opts: &PackOptions<'_>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut p = Packer::new(opts, out);
    let dir = dup_dir(dir)?;
    p.children(&dir, b"", b"")?;
    p.finish()
}

/// Writes the entry `name` of the directory `parent` (and, for a directory, everything below
/// it) with the tar name `tar_name` (`docker cp`: the path's basename), and finishes the
/// archive. The entry itself is never followed when it is a symlink.
pub fn pack_entry(
    parent: &impl AsFd,
    name: &OsStr,
    tar_name: &[u8],
    opts: &PackOptions<'_>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut p = Packer::new(opts, out);
    let parent = dup_dir(parent)?;
    p.entry(&parent, name, tar_name, b"")?;
    p.finish()
}

fn dup_dir(dir: &impl AsFd) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

struct Packer<'a, 'o> {
    opts: &'a PackOptions<'a>,
    out: &'o mut dyn Write,
    /// (dev, ino) of files with several links → the tar name written first.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    let mut v = a.to_vec();
    if !v.ends_with(b"/") {
        v.push(b'/');
    }
    v.extend_from_slice(b);
    v
}

impl<'a, 'o> Packer<'a, 'o> {
    fn new(opts: &'a PackOptions<'a>, out: &'o mut dyn Write) -> Self {
        Packer {
            opts,
            out,
            links: HashMap::new(),
            buf: vec![0; 128 * 1024],
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.write_all(&[0; 1024])?;
        self.out.flush()
    }

    /// Packs every child of `dir`; `tar_dir` is the directory's tar name, `rel` its path
    /// relative to the walk root (for the skip decision).
    fn children(&mut self, dir: &OwnedFd, tar_dir: &[u8], rel: &[u8]) -> io::Result<()> {
        let mut names: Vec<OsString> = Vec::new();
        let mut reader = rustix::fs::Dir::read_from(dir)?;
        while let Some(ent) = reader.read() {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            names.push(OsStr::from_bytes(n).to_os_string());
        }
        names.sort();
        for name in names {
            let tar_name = join(tar_dir, name.as_bytes());
            self.entry(dir, &name, &tar_name, rel)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        tar_name: &[u8],
        rel_parent: &[u8],
    ) -> io::Result<()> {
        let rel = join(rel_parent, name.as_bytes());
        let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone since the directory was read (a running container).
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let skip = self.opts.skip.map_or(Skip::No, |f| f(&rel, &st));
        if skip == Skip::Entry {
            return Ok(());
        }
        let kind = FileType::from_raw_mode(st.st_mode);
        if self.opts.overlay_diff
            && kind == FileType::CharacterDevice
            && rustix::fs::major(st.st_rdev) == 0
            && rustix::fs::minor(st.st_rdev) == 0
        {
            let (dir, base) = split_name(tar_name);
            let wh = join(dir, &[b".wh.".as_slice(), base].concat());
            let mut h = self.header(&st, tar::EntryType::Regular);
            h.set_mode(0o600);
            h.set_size(0);
            return self.write(&mut h, &wh, None, &[], &mut io::empty());
        }
        match kind {
            FileType::Directory => self.dir_entry(parent, name, tar_name, &rel, &st, skip),
            FileType::RegularFile => self.file_entry(parent, name, tar_name, &st),
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(parent, name, Vec::new())?;
                let xattrs = self.xattrs_path(parent, name);
                let mut h = self.header(&st, tar::EntryType::Symlink);
                h.set_size(0);
                self.write(
                    &mut h,
                    tar_name,
                    Some(target.as_bytes()),
                    &xattrs,
                    &mut io::empty(),
                )
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let t = match kind {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let xattrs = self.xattrs_path(parent, name);
                let mut h = self.header(&st, t);
                h.set_size(0);
                if kind != FileType::Fifo {
                    h.set_device_major(rustix::fs::major(st.st_rdev))?;
                    h.set_device_minor(rustix::fs::minor(st.st_rdev))?;
                }
                self.write(&mut h, tar_name, None, &xattrs, &mut io::empty())
            }
            // Sockets and anything else have no tar form.
            _ => Ok(()),
        }
    }

    /// A directory: its entry, an opaque marker in overlay-diff mode, then its children.
    fn dir_entry(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        tar_name: &[u8],
        rel: &[u8],
        st: &Stat,
        skip: Skip,
    ) -> io::Result<()> {
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let xattrs = self.xattrs_fd(&dir)?;
        let mut h = self.header(st, tar::EntryType::Directory);
        let mut dir_name = tar_name.to_vec();
        if !dir_name.ends_with(b"/") {
            dir_name.push(b'/');
        }
        self.write(&mut h, &dir_name, None, &xattrs, &mut io::empty())?;
        let mut v = [0u8; 4];
        if self.opts.overlay_diff
            && rustix::fs::fgetxattr(&dir, OPAQUE_XATTR, &mut v).is_ok_and(|n| n == 1)
            && v[0] == b'y'
        {
            let mut oh = self.header(st, tar::EntryType::Regular);
            oh.set_mode(0o600);
            oh.set_size(0);
            let opq = join(&dir_name, b".wh..wh..opq");
            self.write(&mut oh, &opq, None, &[], &mut io::empty())?;
        }
        if skip != Skip::Contents {
            self.children(&dir, &dir_name, rel)?;
        }
        Ok(())
    }

    /// A regular file, or a hard link to one already written.
    fn file_entry(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        tar_name: &[u8],
        st: &Stat,
    ) -> io::Result<()> {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = self.header(st, tar::EntryType::Link);
                h.set_size(0);
                return self.write(&mut h, tar_name, Some(&first), &[], &mut io::empty());
            }
            self.links.insert(key, tar_name.to_vec());
        }
        let fd = match rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            // Replaced by something else since the directory was read.
            return Ok(());
        }
        let xattrs = self.xattrs_fd(&fd)?;
        let mut h = self.header(&st, tar::EntryType::Regular);
        let size = st.st_size as u64;
        h.set_size(size);
        let file = File::from(fd);
        // A file shrinking while it is read is padded; a growing one is cut at its size.
        let mut data = file.take(size).chain(io::repeat(0)).take(size);
        self.write(&mut h, tar_name, None, &xattrs, &mut data)
    }

    fn xattrs_fd(&self, fd: &OwnedFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(read_xattrs(&path))
    }

    fn xattrs_path(&self, parent: &OwnedFd, name: &OsStr) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut path = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd()));
        path.push(name);
        read_xattrs(&path)
    }

    /// Writes one entry: PAX records for long names and xattrs, the header, the data, padding.
    fn write(
        &mut self,
        h: &mut tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let old = h.as_old_mut();
        if name.len() > old.name.len() {
            pax.push((b"path".to_vec(), name.to_vec()));
        }
        let n = name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&name[..n]);
        if let Some(link) = link {
            if link.len() > old.linkname.len() {
                pax.push((b"linkpath".to_vec(), link.to_vec()));
            }
            let n = link.len().min(old.linkname.len());
            old.linkname[..n].copy_from_slice(&link[..n]);
        }
        for (k, v) in xattrs {
            pax.push(([b"SCHILY.xattr.".as_slice(), k].concat(), v.clone()));
        }
        if !pax.is_empty() {
            let body = pax_records(&pax);
            let mut ph = tar::Header::new_ustar();
            let pname = b"PaxHeaders/entry";
            ph.as_old_mut().name[..pname.len()].copy_from_slice(pname);
            ph.set_mode(0o644);
            ph.set_size(body.len() as u64);
            ph.set_entry_type(tar::EntryType::XHeader);
            ph.set_cksum();
            self.out.write_all(ph.as_bytes())?;
            self.out.write_all(&body)?;
            pad(self.out, body.len() as u64)?;
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        let size = h.size()?;
        let mut written = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&self.buf[..n])?;
            written += n as u64;
        }
        if written != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: size changed while packing",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        pad(self.out, size)
    }
}

fn pad(out: &mut dyn Write, size: u64) -> io::Result<()> {
    let rem = (size % 512) as usize;
    if rem != 0 {
        out.write_all(&[0; 512][..512 - rem])?;
    }
    Ok(())
}

/// PAX records: `"<len> <key>=<value>\n"` where `len` counts the whole record.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} ").as_bytes());
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

fn split_name(name: &[u8]) -> (&[u8], &[u8]) {
    let name = name.strip_suffix(b"/").unwrap_or(name);
    match name.iter().rposition(|b| *b == b'/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (&[], name),
    }
}

impl Packer<'_, '_> {
    fn header(&self, st: &Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = base_header(st, kind);
        if let Some(shift) = &self.opts.to_container {
            let (u, g) = shift.to_container(st.st_uid as u64, st.st_gid as u64);
            h.set_uid(u);
            h.set_gid(g);
        }
        h
    }
}

fn base_header(st: &Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Extended attributes of `path` (not following a final symlink), without overlay's own.
fn read_xattrs(path: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        if key.starts_with(OVERLAY_XATTR_PREFIX) {
            continue;
        }
        let mut value = vec![0u8; 65536];
        let key_os = OsStr::from_bytes(key);
        if let Ok(len) = rustix::fs::lgetxattr(path, key_os, &mut value) {
            value.truncate(len);
            out.push((key.to_vec(), value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let kind = e.header().entry_type();
                let mut data = Vec::new();
                if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
                    data = e.link_name_bytes().unwrap().into_owned();
                } else {
                    e.read_to_end(&mut data).unwrap();
                }
                (name, kind, data)
            })
            .collect()
    }

    fn open(p: &std::path::Path) -> OwnedFd {
        rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn packs_a_tree_with_links_and_long_names() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/passwd"), b"root:x:0:0\n").unwrap();
        std::fs::hard_link(r.join("etc/passwd"), r.join("etc/sub/hard")).unwrap();
        symlink("/etc/passwd", r.join("link")).unwrap();
        let long = "x".repeat(150);
        std::fs::write(r.join(&long), b"long").unwrap();
        std::fs::create_dir(r.join("proc")).unwrap();
        std::fs::write(r.join("proc/cpuinfo"), b"no").unwrap();
        let skip = |p: &[u8], _: &Stat| {
            if p == b"proc" {
                Skip::Contents
            } else {
                Skip::No
            }
        };
        let opts = PackOptions {
            skip: Some(&skip),
            overlay_diff: false,
            ..Default::default()
        };
        let mut out = Vec::new();
        pack_dir_contents(&open(r), &opts, &mut out).unwrap();
        let e = entries(&out);
        let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "etc/",
                "etc/passwd",
                "etc/sub/",
                "etc/sub/hard",
                "link",
                "proc/",
                long.as_str()
            ]
        );
        assert_eq!(e[1].2, b"root:x:0:0\n");
        assert_eq!(e[3].1, tar::EntryType::Link);
        assert_eq!(e[3].2, b"etc/passwd");
        assert_eq!(e[4].2, b"/etc/passwd");
        assert_eq!(e[6].2, b"long");
    }

    #[test]
    fn pack_entry_uses_the_given_name() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("d/e")).unwrap();
        std::fs::write(t.path().join("d/e/f"), b"1").unwrap();
        std::fs::set_permissions(
            t.path().join("d/e/f"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        let mut out = Vec::new();
        pack_entry(
            &open(t.path()),
            OsStr::new("d"),
            b"d",
            &PackOptions::default(),
            &mut out,
        )
        .unwrap();
        let names: Vec<String> = entries(&out).into_iter().map(|e| e.0).collect();
        assert_eq!(names, vec!["d/", "d/e/", "d/e/f"]);
        let mut a = tar::Archive::new(&out[..]);
        let modes: Vec<u32> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().mode().unwrap())
            .collect();
        assert_eq!(modes[2], 0o751);
    }

    #[test]
    fn overlay_whiteouts_become_oci_whiteouts() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root for mknod and trusted xattrs");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc/opq")).unwrap();
        std::fs::write(r.join("etc/opq/new"), b"n").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("etc/gone"),
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .unwrap();
        rustix::fs::setxattr(
            r.join("etc/opq"),
            OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let opts = PackOptions {
            skip: None,
            overlay_diff: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        pack_dir_contents(&open(r), &opts, &mut out).unwrap();
        let names: Vec<String> = entries(&out).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            vec![
                "etc/",
                "etc/.wh.gone",
                "etc/opq/",
                "etc/opq/.wh..wh..opq",
                "etc/opq/new"
            ]
        );
        // And back: unpacking the layer recreates the overlay form.
        let dest = tempfile::tempdir().unwrap();
        crate::unpack::unpack_layer(&mut &out[..], dest.path(), "test", &mut |_| {}).unwrap();
        let md = std::fs::symlink_metadata(dest.path().join("etc/gone")).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(md.file_type().is_char_device());
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        let r = pax_records(&[(b"path".to_vec(), b"a".repeat(95))]);
        let text = String::from_utf8(r).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), text.len());
    }
}
