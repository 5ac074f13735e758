//! A [`StorageDriver`] on a local directory. Content written with `put_content` goes to a
//! temporary file beside its target, is synced, renamed over it and the directory synced: a
//! crash leaves the old or the new file. Writers sync on commit, before the registry answers.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{DriverError, DriverResult, FileInfo, FileWriter, StorageDriver};

pub struct FilesystemDriver {
    root: PathBuf,
}

impl FilesystemDriver {
    pub fn new(root: impl Into<PathBuf>) -> DriverResult<FilesystemDriver> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| DriverError::io(&root.display().to_string(), e))?;
        Ok(FilesystemDriver { root })
    }

    fn full(&self, path: &str) -> PathBuf {
        // Paths come from `paths.rs` only, whose components are validated names and digests;
        // the trim keeps `/x` inside the root all the same.
        self.root.join(path.trim_start_matches('/'))
    }

    fn rel(&self, full: &Path) -> String {
        let rel = full.strip_prefix(&self.root).unwrap_or(full);
        format!("/{}", rel.display())
    }
}

fn create_parent(path: &str, full: &Path) -> DriverResult<()> {
    if let Some(parent) = full.parent() {
        fs::create_dir_all(parent).map_err(|e| DriverError::io(path, e))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Makes a rename durable. Best effort: some filesystems refuse fsync on directories.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl StorageDriver for FilesystemDriver {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn get_content(&self, path: &str) -> DriverResult<Vec<u8>> {
        fs::read(self.full(path)).map_err(|e| DriverError::io(path, e))
    }

    fn put_content(&self, path: &str, content: &[u8]) -> DriverResult<()> {
        let full = self.full(path);
        create_parent(path, &full)?;
        let tmp = full.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(content)?;
            f.sync_all()?;
            fs::rename(&tmp, &full)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(DriverError::io(path, e));
        }
        if let Some(parent) = full.parent() {
            sync_dir(parent);
        }
        Ok(())
    }

    fn reader(&self, path: &str, offset: u64) -> DriverResult<Box<dyn Read + Send>> {
        let mut f = File::open(self.full(path)).map_err(|e| DriverError::io(path, e))?;
        let len = f.metadata().map_err(|e| DriverError::io(path, e))?.len();
        if offset > len {
            return Err(DriverError::InvalidOffset {
                path: path.to_string(),
                offset,
            });
        }
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| DriverError::io(path, e))?;
        Ok(Box::new(f))
    }

    fn writer(&self, path: &str, append: bool) -> DriverResult<Box<dyn FileWriter>> {
        let full = self.full(path);
        create_parent(path, &full)?;
        let file = OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&full)
            .map_err(|e| DriverError::io(path, e))?;
        let size = file.metadata().map_err(|e| DriverError::io(path, e))?.len();
        Ok(Box::new(FsWriter {
            path: path.to_string(),
            full,
            file: Some(file),
            size,
        }))
    }

    fn stat(&self, path: &str) -> DriverResult<FileInfo> {
        let meta = fs::metadata(self.full(path)).map_err(|e| DriverError::io(path, e))?;
        Ok(FileInfo {
            path: path.to_string(),
            size: meta.len(),
            modified: meta.modified().map_err(|e| DriverError::io(path, e))?,
            is_dir: meta.is_dir(),
        })
    }

    fn list(&self, path: &str) -> DriverResult<Vec<String>> {
        let full = self.full(path);
        let mut out = Vec::new();
        for entry in fs::read_dir(&full).map_err(|e| DriverError::io(path, e))? {
            let entry = entry.map_err(|e| DriverError::io(path, e))?;
            let name = entry.file_name();
            // Temporary files of a `put_content` in flight are not content.
            if name.to_string_lossy().contains(".tmp-") {
                continue;
            }
            out.push(self.rel(&entry.path()));
        }
        out.sort();
        Ok(out)
    }

    fn move_path(&self, source: &str, dest: &str) -> DriverResult<()> {
        let to = self.full(dest);
        create_parent(dest, &to)?;
        fs::rename(self.full(source), &to).map_err(|e| DriverError::io(source, e))?;
        if let Some(parent) = to.parent() {
            sync_dir(parent);
        }
        Ok(())
    }

    fn delete(&self, path: &str) -> DriverResult<()> {
        let full = self.full(path);
        let meta = fs::symlink_metadata(&full).map_err(|e| DriverError::io(path, e))?;
        if meta.is_dir() {
            fs::remove_dir_all(&full)
        } else {
            fs::remove_file(&full)
        }
        .map_err(|e| DriverError::io(path, e))
    }
}

struct FsWriter {
    path: String,
    full: PathBuf,
    file: Option<File>,
    size: u64,
}

impl Write for FsWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("writer closed"))?;
        let n = file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FileWriter for FsWriter {
    fn size(&self) -> u64 {
        self.size
    }

    fn commit(mut self: Box<Self>) -> DriverResult<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(|e| DriverError::io(&self.path, e))?;
        }
        Ok(())
    }

    fn cancel(mut self: Box<Self>) -> DriverResult<()> {
        self.file.take();
        fs::remove_file(&self.full).map_err(|e| DriverError::io(&self.path, e))
    }
}
