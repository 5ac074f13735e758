//! COPY/ADD layers written straight as a tar stream, without a container: the selected files
//! with their effective owner and mode, the directories above the destination as the parent
//! image has them (so a COPY never changes `/tmp`'s mode), and ADD's archives re-rooted.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_build::engine::sources::excluded;
use berth_build::executor::CopyItem;

/// Owner and mode rules of one COPY.
pub struct Effective {
    pub owner: (u32, u32),
    pub chmod: Option<u32>,
    pub exclude: Vec<String>,
}

/// The parent image's layer directories, top first, to look paths up in (whiteouts honoured).
pub struct ParentView {
    pub layers: Vec<PathBuf>,
}

impl ParentView {
    /// `lstat` of `rel` (no leading `/`) as the merged image shows it.
    pub fn stat(&self, rel: &str) -> Option<fs::Metadata> {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return self.layers.first().and_then(|l| l.symlink_metadata().ok());
        }
        for layer in &self.layers {
            // A whiteout of the path or of one of its parents hides everything below.
            let mut hidden = false;
            let mut prefix = PathBuf::new();
            for comp in Path::new(rel).components() {
                let name = comp.as_os_str().to_string_lossy();
                if layer.join(&prefix).join(format!(".wh.{name}")).exists() {
                    hidden = true;
                    break;
                }
                prefix.push(comp);
            }
            if hidden {
                return None;
            }
            if let Ok(m) = layer.join(rel).symlink_metadata() {
                return Some(m);
            }
        }
        None
    }

    pub fn is_dir(&self, rel: &str) -> bool {
        self.stat(rel).is_some_and(|m| m.is_dir())
    }

    /// A file of the image (`etc/passwd`), empty when missing.
    pub fn read(&self, rel: &str) -> String {
        for layer in &self.layers {
            if let Ok(s) = fs::read_to_string(layer.join(rel)) {
                return s;
            }
        }
        String::new()
    }
}

/// Writes tar entries; remembers which directories it already wrote.
pub struct LayerWriter<'a, W: Write> {
    tar: tar::Builder<W>,
    parent: &'a ParentView,
    written: std::collections::HashSet<String>,
    pub entries: usize,
}

fn header(
    kind: tar::EntryType,
    mode: u32,
    owner: (u32, u32),
    mtime: i64,
    size: u64,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(owner.0 as u64);
    h.set_gid(owner.1 as u64);
    h.set_mtime(mtime.max(0) as u64);
    h.set_size(size);
    h
}

impl<'a, W: Write> LayerWriter<'a, W> {
    pub fn new(out: W, parent: &'a ParentView) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        LayerWriter {
            tar,
            parent,
            written: Default::default(),
            entries: 0,
        }
    }

    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }

    /// Entries for the directories above `rel` (exclusive), as the parent image has them or
    /// root-owned 0755 when new.
    fn parents(&mut self, rel: &str) -> io::Result<()> {
        let mut acc = String::new();
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            self.dir_as_parent(&acc.clone(), None)?;
        }
        Ok(())
    }

    /// A directory entry keeping the parent image's metadata when it has the directory, else
    /// `new` (mode, owner, mtime) or root 0755.
    fn dir_as_parent(&mut self, rel: &str, new: Option<(u32, (u32, u32), i64)>) -> io::Result<()> {
        if !self.written.insert(rel.to_string()) {
            return Ok(());
        }
        let (mode, owner, mtime) = match self.parent.stat(rel) {
            Some(m) if m.is_dir() => (m.mode() & 0o7777, (m.uid(), m.gid()), m.mtime()),
            _ => new.unwrap_or((0o755, (0, 0), now())),
        };
        let mut h = header(tar::EntryType::Directory, mode, owner, mtime, 0);
        self.tar
            .append_data(&mut h, format!("{rel}/"), io::empty())?;
        self.entries += 1;
        Ok(())
    }

    /// `mkdir -p` of an absolute path (WORKDIR): nothing when the image has it.
    pub fn mkdir(&mut self, abs: &str) -> io::Result<()> {
        let rel = abs.trim_matches('/');
        if rel.is_empty() || self.parent.is_dir(rel) {
            return Ok(());
        }
        self.parents(rel)?;
        self.dir_as_parent(rel, None)
    }

    /// One COPY item.
    pub fn item(&mut self, item: &CopyItem, eff: &Effective) -> io::Result<()> {
        let mut dest = item.dest.trim_start_matches('/').to_string();
        if item.extract {
            return self.extract(&item.src, &dest);
        }
        let meta = fs::metadata(&item.src).or_else(|_| item.src.symlink_metadata())?;
        if !meta.is_dir()
            && item.into_existing_dir
            && !dest.is_empty()
            && self.parent.is_dir(&dest)
            && let Some(name) = item.src.file_name()
        {
            dest = format!("{dest}/{}", name.to_string_lossy());
        }
        if meta.is_dir() {
            if !dest.is_empty() {
                self.parents(&dest)?;
                let mode = eff.chmod.unwrap_or(meta.mode() & 0o7777);
                self.dir_as_parent(&dest, Some((mode, eff.owner, meta.mtime())))?;
            }
            self.tree(&item.src, &dest, "", eff)
        } else {
            self.parents(&dest)?;
            self.file(&item.src, &dest, eff)
        }
    }

    fn tree(&mut self, dir: &Path, dest: &str, rel: &str, eff: &Effective) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for n in names {
            let child_rel = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            if excluded(&eff.exclude, &child_rel) {
                continue;
            }
            let src = dir.join(&n);
            let target = if dest.is_empty() {
                child_rel.clone()
            } else {
                format!("{dest}/{child_rel}")
            };
            let m = src.symlink_metadata()?;
            if m.is_dir() {
                let mode = eff.chmod.unwrap_or(m.mode() & 0o7777);
                self.written.insert(target.clone());
                let mut h = header(tar::EntryType::Directory, mode, eff.owner, m.mtime(), 0);
                self.tar
                    .append_data(&mut h, format!("{target}/"), io::empty())?;
                self.entries += 1;
                self.tree(&src, dest, &child_rel, eff)?;
            } else {
                self.file(&src, &target, eff)?;
            }
        }
        Ok(())
    }

    fn file(&mut self, src: &Path, target: &str, eff: &Effective) -> io::Result<()> {
        let m = src.symlink_metadata()?;
        let ft = m.file_type();
        self.entries += 1;
        if ft.is_symlink() {
            let link = fs::read_link(src)?;
            let mut h = header(tar::EntryType::Symlink, 0o777, eff.owner, m.mtime(), 0);
            return self.tar.append_link(&mut h, target, link);
        }
        if !ft.is_file() {
            // Devices, fifos and sockets in a context are not copied (as BuildKit).
            self.entries -= 1;
            return Ok(());
        }
        let mode = eff.chmod.unwrap_or(m.permissions().mode() & 0o7777);
        let mut h = header(tar::EntryType::Regular, mode, eff.owner, m.mtime(), m.len());
        let f = fs::File::open(src)?;
        self.tar.append_data(&mut h, target, f.take(m.len()))
    }

    /// ADD of a local archive: its entries below `dest`.
    fn extract(&mut self, archive: &Path, dest: &str) -> io::Result<()> {
        if !dest.is_empty() {
            self.parents(&format!("{dest}/x"))?;
        }
        let f = io::BufReader::new(fs::File::open(archive)?);
        let (_, reader) = berth_image::unpack::decompress(f)?;
        let mut ar = tar::Archive::new(reader);
        for entry in ar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let clean = path.trim_start_matches("./").trim_start_matches('/');
            if clean.split('/').any(|c| c == "..") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("archive entry {path:?} escapes the destination"),
                ));
            }
            let target = if dest.is_empty() {
                clean.to_string()
            } else {
                format!("{dest}/{clean}")
            };
            if target.trim_end_matches('/').is_empty() {
                continue;
            }
            let mut h = entry.header().clone();
            self.entries += 1;
            match h.entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let link = entry.link_name()?.unwrap_or_default().into_owned();
                    let link = if h.entry_type() == tar::EntryType::Link {
                        let l = link.to_string_lossy();
                        PathBuf::from(if dest.is_empty() {
                            l.trim_start_matches("./").to_string()
                        } else {
                            format!("{dest}/{}", l.trim_start_matches("./"))
                        })
                    } else {
                        link
                    };
                    self.tar.append_link(&mut h, &target, link)?;
                }
                _ => {
                    let size = h.size()?;
                    self.tar
                        .append_data(&mut h, &target, (&mut entry).take(size))?;
                }
            }
        }
        Ok(())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<(String, u32, u64)> {
        let mut ar = tar::Archive::new(tar_bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn copy_keeps_parent_dirs_and_applies_owner_and_mode() {
        let image = tempfile::tempdir().unwrap();
        fs::create_dir(image.path().join("tmp")).unwrap();
        fs::set_permissions(image.path().join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        let ctx = tempfile::tempdir().unwrap();
        fs::write(ctx.path().join("f"), b"x").unwrap();
        fs::create_dir(ctx.path().join("d")).unwrap();
        fs::write(ctx.path().join("d/skip.log"), b"x").unwrap();
        fs::write(ctx.path().join("d/keep"), b"x").unwrap();
        let parent = ParentView {
            layers: vec![image.path().to_path_buf()],
        };
        let mut w = LayerWriter::new(Vec::new(), &parent);
        let eff = Effective {
            owner: (7, 8),
            chmod: Some(0o600),
            exclude: vec!["*.log".into()],
        };
        let item = |src: &str, dest: &str| CopyItem {
            src: ctx.path().join(src),
            dest: dest.into(),
            extract: false,
            into_existing_dir: true,
        };
        w.item(&item("f", "/tmp/a/f"), &eff).unwrap();
        w.item(&item("f", "/tmp"), &eff).unwrap();
        w.item(&item("d", "/x"), &eff).unwrap();
        w.mkdir("/tmp").unwrap();
        let out = names(&w.finish().unwrap());
        assert_eq!(out[0], ("tmp/".into(), 0o1777, 0));
        assert_eq!(out[1], ("tmp/a/".into(), 0o755, 0));
        assert_eq!(out[2], ("tmp/a/f".into(), 0o600, 7));
        assert_eq!(out[3].0, "tmp/f");
        assert_eq!(out[4], ("x/".into(), 0o600, 7));
        assert_eq!(out[5].0, "x/keep");
        assert_eq!(out.len(), 6);
    }
}
