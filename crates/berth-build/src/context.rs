//! The build context on disk: a deterministic walk that honours `.dockerignore` (pruning
//! excluded trees no exception can reach into), and a streaming tar of it, as the docker CLI
//! sends it (owner root, mtimes and modes kept, symlinks as links, never followed).
//!
//! Used by `berth build` to send a context, and usable by the daemon for a directory context.

use std::collections::VecDeque;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::dockerignore::Dockerignore;

/// One file, directory or link of the context.
#[derive(Debug)]
pub struct Entry {
    /// `/`-separated, relative to the context root (never empty, no leading `./`).
    pub rel: String,
    /// Where it is on disk.
    pub path: PathBuf,
    /// `lstat` of it: links are not followed.
    pub metadata: Metadata,
}

struct Dir {
    rel: String,
    path: PathBuf,
    /// Children not yet visited, in name order.
    children: VecDeque<String>,
    /// An excluded directory walked only because an exception may match inside: its entry
    /// is emitted just before the first included descendant, if any.
    pending: Option<Entry>,
}

/// The iterator of [`walk`].
pub struct Walk {
    ignore: Dockerignore,
    stack: Vec<Dir>,
    out: VecDeque<io::Result<Entry>>,
    root_error: Option<io::Error>,
}

/// Walks `root` depth-first, names in byte order, a directory before its contents, skipping
/// what `ignore` excludes. Errors (an unreadable directory) are yielded and the walk goes on.
pub fn walk(root: &Path, ignore: &Dockerignore) -> Walk {
    let mut w = Walk {
        ignore: ignore.clone(),
        stack: Vec::new(),
        out: VecDeque::new(),
        root_error: None,
    };
    match read_children(root) {
        Ok(children) => w.stack.push(Dir {
            rel: String::new(),
            path: root.to_path_buf(),
            children,
            pending: None,
        }),
        Err(e) => w.root_error = Some(e),
    }
    w
}

fn read_children(dir: &Path) -> io::Result<VecDeque<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| annotate(e, dir))? {
        let entry = entry.map_err(|e| annotate(e, dir))?;
        match entry.file_name().into_string() {
            Ok(n) => names.push(n),
            Err(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: file name {n:?} is not UTF-8", dir.display()),
                ));
            }
        }
    }
    names.sort_unstable();
    Ok(names.into())
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Walk {
    /// Emits the pending (excluded but entered) ancestors, outermost first, then `entry`.
    fn emit(&mut self, entry: Entry) {
        for d in &mut self.stack {
            if let Some(p) = d.pending.take() {
                self.out.push_back(Ok(p));
            }
        }
        self.out.push_back(Ok(entry));
    }

    fn step(&mut self) -> bool {
        let Some(top) = self.stack.last_mut() else {
            return false;
        };
        let Some(name) = top.children.pop_front() else {
            self.stack.pop();
            return true;
        };
        let rel = if top.rel.is_empty() {
            name.clone()
        } else {
            format!("{}/{name}", top.rel)
        };
        let path = top.path.join(&name);
        let metadata = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                self.out.push_back(Err(annotate(e, &path)));
                return true;
            }
        };
        let excluded = self.ignore.is_excluded(&rel);
        if metadata.is_dir() {
            if excluded && !self.ignore.may_contain_included(&rel) {
                return true;
            }
            let children = match read_children(&path) {
                Ok(c) => c,
                Err(e) => {
                    self.out.push_back(Err(e));
                    return true;
                }
            };
            let entry = Entry {
                rel: rel.clone(),
                path: path.clone(),
                metadata,
            };
            let pending = if excluded {
                Some(entry)
            } else {
                self.emit(entry);
                None
            };
            self.stack.push(Dir {
                rel,
                path,
                children,
                pending,
            });
        } else if !excluded {
            self.emit(Entry {
                rel,
                path,
                metadata,
            });
        }
        true
    }
}

impl Iterator for Walk {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.root_error.take() {
            return Some(Err(e));
        }
        loop {
            if let Some(item) = self.out.pop_front() {
                return Some(item);
            }
            if !self.step() {
                return None;
            }
        }
    }
}

/// Writes the context under `root` as a tar to `writer`, file by file (nothing is held in
/// memory beyond a copy buffer). `always_include` (the Dockerfile and `.dockerignore`, as
/// the docker CLI keeps them so the daemon can read them) are sent even when excluded.
/// Returns the number of entries written.
pub fn write_tar<W: Write>(
    root: &Path,
    ignore: &Dockerignore,
    always_include: &[&str],
    writer: W,
) -> io::Result<u64> {
    let ignore = ignore.with_exceptions(always_include);
    let mut tar = tar::Builder::new(writer);
    let mut count = 0;
    for entry in walk(root, &ignore) {
        let entry = entry?;
        append(&mut tar, &entry)?;
        count += 1;
    }
    tar.finish()?;
    Ok(count)
}

/// Appends one entry with a header built from its metadata, owned by root as the docker CLI
/// sends it.
pub fn append<W: Write>(tar: &mut tar::Builder<W>, entry: &Entry) -> io::Result<()> {
    let md = &entry.metadata;
    let mut header = tar::Header::new_gnu();
    header.set_mode(md.mode() & 0o7777);
    header.set_mtime(u64::try_from(md.mtime()).unwrap_or(0));
    header.set_uid(0);
    header.set_gid(0);
    let ft = md.file_type();
    if ft.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        tar.append_data(&mut header, format!("{}/", entry.rel), io::empty())
    } else if ft.is_symlink() {
        let target = fs::read_link(&entry.path).map_err(|e| annotate(e, &entry.path))?;
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        tar.append_link(&mut header, &entry.rel, target)
    } else if ft.is_file() {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(md.len());
        let file = File::open(&entry.path).map_err(|e| annotate(e, &entry.path))?;
        // `take` keeps the tar well-formed if the file grows while it is read.
        // A large buffer: io::copy then moves the file in few big reads and writes.
        let mut data = io::BufReader::with_capacity(256 * 1024, file.take(md.len()));
        let mut counted = CountingReader {
            inner: &mut data,
            n: 0,
        };
        tar.append_data(&mut header, &entry.rel, &mut counted)?;
        if counted.n != md.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: file shrank while it was being sent",
                    entry.path.display()
                ),
            ));
        }
        Ok(())
    } else if ft.is_fifo() {
        header.set_entry_type(tar::EntryType::Fifo);
        header.set_size(0);
        tar.append_data(&mut header, &entry.rel, io::empty())
    } else {
        // Sockets and device nodes have no place in a build context.
        Ok(())
    }
}

/// What dockerd does with a received context before the build: `.dockerignore` and the
/// Dockerfile are removed from it when `.dockerignore` excludes them (the client sent them
/// only so the daemon could read them), so `COPY . .` does not copy them. This is also how
/// the Dockerfile the docker CLI adds for `-f -` (`.dockerfile.<hex>`, listed in the
/// `.dockerignore` it rewrites) stays out of the image. Returns the paths removed.
pub fn remove_build_files(context: &Path, dockerfile: &str) -> io::Result<Vec<String>> {
    let ignore_path = context.join(".dockerignore");
    let text = match fs::read_to_string(&ignore_path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(annotate(e, &ignore_path)),
    };
    let ignore = Dockerignore::parse(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("error reading .dockerignore: {e}"),
        )
    })?;
    let mut removed = Vec::new();
    for name in [".dockerignore", dockerfile] {
        let rel = crate::dockerignore::clean_path(name);
        if rel.starts_with("..") || rel.starts_with('/') || !ignore.is_excluded(&rel) {
            continue;
        }
        match fs::remove_file(context.join(&rel)) {
            Ok(()) => removed.push(rel),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(annotate(e, &context.join(&rel))),
        }
    }
    Ok(removed)
}

/// A reader of a context tar that completes a stream ending right after an entry's data:
/// the docker CLI sends exactly that for `-f -` and a Dockerfile outside the context (its tar
/// rewriter never writes the last entry's padding nor the end-of-archive blocks), and Go's
/// tar reader, unlike Rust's `tar`, accepts it. At end of input this yields zeros up to the
/// next 512-byte block and then two zero blocks; a complete tar is unaffected (the reader
/// stops at its end-of-archive blocks and never reads the extra zeros).
pub struct CompleteTar<R> {
    inner: R,
    read: u64,
    /// Zero bytes still to yield once `inner` is exhausted.
    tail: Option<u64>,
}

impl<R: Read> CompleteTar<R> {
    pub fn new(inner: R) -> Self {
        CompleteTar {
            inner,
            read: 0,
            tail: None,
        }
    }
}

impl<R: Read> Read for CompleteTar<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.tail.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.read += n as u64;
                return Ok(n);
            }
            let pad = (512 - self.read % 512) % 512;
            self.tail = Some(pad + 1024);
        }
        let left = self.tail.unwrap_or(0);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        buf[..n].fill(0);
        self.tail = Some(left - n as u64);
        Ok(n)
    }
}

struct CountingReader<'a, R: Read> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, files: &[&str]) {
        for f in files {
            let p = root.join(f);
            if let Some(dir) = f.strip_suffix('/') {
                fs::create_dir_all(root.join(dir)).unwrap();
            } else {
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, f.as_bytes()).unwrap();
            }
        }
    }

    fn names(root: &Path, ignore: &str) -> Vec<String> {
        walk(root, &Dockerignore::parse(ignore).unwrap())
            .map(|e| e.unwrap().rel)
            .collect()
    }

    #[test]
    fn walk_is_sorted_and_honours_ignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        tree(
            root,
            &[
                "b.txt",
                "a/z",
                "a/b/c.md",
                "node_modules/x/y.js",
                "vendor/keep.txt",
                "vendor/drop",
                "empty/",
            ],
        );
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        assert_eq!(
            names(root, ""),
            [
                "a",
                "a/b",
                "a/b/c.md",
                "a/z",
                "b.txt",
                "empty",
                "link",
                "node_modules",
                "node_modules/x",
                "node_modules/x/y.js",
                "vendor",
                "vendor/drop",
                "vendor/keep.txt"
            ]
        );
        assert_eq!(
            names(root, "node_modules\n*.md\nvendor\n!vendor/keep.txt\nlink\n"),
            [
                "a",
                "a/b",
                "a/b/c.md",
                "a/z",
                "b.txt",
                "empty",
                "vendor",
                "vendor/keep.txt"
            ]
        );
        // The excluded directory is not even read when no exception can match in it: a name
        // the walk would refuse (not UTF-8) goes unnoticed there.
        use std::os::unix::ffi::OsStrExt;
        let bad = root
            .join("node_modules/x")
            .join(std::ffi::OsStr::from_bytes(b"\xff"));
        fs::write(bad, b"").unwrap();
        assert!(walk(root, &Dockerignore::parse("node_modules").unwrap()).all(|e| e.is_ok()));
        assert!(walk(root, &Dockerignore::parse("").unwrap()).any(|e| e.is_err()));
    }

    #[test]
    fn a_tar_cut_after_its_last_data_is_completed() {
        // As the docker CLI sends it: the last entry's data, then nothing.
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("a", b"aa".as_slice()),
            (".dockerfile.x", b"FROM scratch\n".as_slice()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            tar.append_data(&mut h, name, data).unwrap();
        }
        let full = tar.into_inner().unwrap();
        let cut = &full[..512 + 512 + 512 + 13];
        assert!(
            tar::Archive::new(cut)
                .entries()
                .unwrap()
                .any(|e| e.is_err())
        );
        let mut names = Vec::new();
        for e in tar::Archive::new(CompleteTar::new(cut)).entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            names.push((e.path().unwrap().to_string_lossy().into_owned(), data));
        }
        assert_eq!(
            names,
            [
                ("a".into(), "aa".into()),
                (".dockerfile.x".into(), "FROM scratch\n".into())
            ]
        );
        // A whole tar reads the same.
        assert_eq!(
            tar::Archive::new(CompleteTar::new(&full[..]))
                .entries()
                .unwrap()
                .count(),
            2
        );
    }

    #[test]
    fn build_files_removed_when_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        tree(root, &["Dockerfile", "a"]);
        assert!(remove_build_files(root, "Dockerfile").unwrap().is_empty());
        fs::write(root.join(".dockerignore"), "*.log\n").unwrap();
        assert!(remove_build_files(root, "Dockerfile").unwrap().is_empty());
        fs::write(root.join(".dockerignore"), "Dockerfile\n.dockerignore\n").unwrap();
        assert_eq!(
            remove_build_files(root, "Dockerfile").unwrap(),
            [".dockerignore", "Dockerfile"]
        );
        assert!(!root.join("Dockerfile").exists() && root.join("a").exists());
        fs::write(root.join(".dockerfile.abc"), "FROM x").unwrap();
        fs::write(root.join(".dockerignore"), "\n.dockerfile.abc\n").unwrap();
        assert_eq!(
            remove_build_files(root, ".dockerfile.abc").unwrap(),
            [".dockerfile.abc"]
        );
    }

    #[test]
    fn tar_keeps_dockerfile_and_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        tree(
            root,
            &[
                "Dockerfile",
                ".dockerignore",
                "app/main.go",
                "secret.key",
                "docker/Dockerfile.dev",
            ],
        );
        let big = vec![7u8; 3 << 20];
        fs::write(root.join("app/big.bin"), &big).unwrap();
        let ignore = Dockerignore::parse("Dockerfile\n.dockerignore\n*.key\ndocker\n").unwrap();
        let mut buf = Vec::new();
        write_tar(
            root,
            &ignore,
            &[".dockerignore", "Dockerfile", "docker/Dockerfile.dev"],
            &mut buf,
        )
        .unwrap();
        let mut ar = tar::Archive::new(&buf[..]);
        let mut got = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                (e.header().uid().unwrap(), e.header().gid().unwrap()),
                (0, 0)
            );
            if name == "app/big.bin" {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                assert_eq!(data, big);
            }
            got.push(name);
        }
        assert_eq!(
            got,
            [
                ".dockerignore",
                "Dockerfile",
                "app/",
                "app/big.bin",
                "app/main.go",
                "docker/",
                "docker/Dockerfile.dev"
            ]
        );
    }
}
