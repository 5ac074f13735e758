//! The storage seam: everything the registry keeps goes through a [`StorageDriver`], a small
//! path-addressed blob store (distribution's `storagedriver.StorageDriver`). Paths are
//! `/`-separated, absolute, and built only by [`crate::paths`]; drivers never see user input.
//!
//! The trait is synchronous: the filesystem driver does blocking I/O, and the HTTP layer calls
//! drivers from blocking tasks. Every driver runs the one suite in [`testsuite`].

pub mod filesystem;
pub mod inmemory;
#[cfg(test)]
pub mod testsuite;

use std::io::{Read, Write};
use std::time::SystemTime;

pub use filesystem::FilesystemDriver;
pub use inmemory::InMemoryDriver;

/// What a driver can fail with. `NotFound` is the only variant callers decide on.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("storage path {0} not found")]
    NotFound(String),
    #[error("storage path {path}: offset {offset} is past its end")]
    InvalidOffset { path: String, offset: u64 },
    #[error("storage path {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    pub fn io(path: &str, source: std::io::Error) -> DriverError {
        if source.kind() == std::io::ErrorKind::NotFound {
            DriverError::NotFound(path.to_string())
        } else {
            DriverError::Io {
                path: path.to_string(),
                source,
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, DriverError::NotFound(_))
    }
}

pub type DriverResult<T> = Result<T, DriverError>;

/// What [`StorageDriver::stat`] tells about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub modified: SystemTime,
    pub is_dir: bool,
}

/// An open writer ([`StorageDriver::writer`]). Bytes become visible at the path only on
/// [`FileWriter::commit`] (durably: the filesystem driver syncs before acknowledging);
/// [`FileWriter::cancel`] removes them. Dropping without either leaves what was written in
/// place for a later `writer(path, append = true)`: that is how resumable uploads survive a
/// dropped connection.
pub trait FileWriter: Write + Send {
    /// Bytes written so far, including those present before an append.
    fn size(&self) -> u64;
    fn commit(self: Box<Self>) -> DriverResult<()>;
    fn cancel(self: Box<Self>) -> DriverResult<()>;
}

/// A path-addressed store. Writes through [`StorageDriver::put_content`] and
/// [`StorageDriver::move_path`] are atomic: a reader sees the old or the new content, never
/// a part, even when the process dies mid-call.
pub trait StorageDriver: Send + Sync + 'static {
    /// A short name for logs (`filesystem`, `inmemory`).
    fn name(&self) -> &'static str;
    fn get_content(&self, path: &str) -> DriverResult<Vec<u8>>;
    fn put_content(&self, path: &str, content: &[u8]) -> DriverResult<()>;
    /// A reader from `offset`; an offset equal to the size reads nothing, one past it fails.
    fn reader(&self, path: &str, offset: u64) -> DriverResult<Box<dyn Read + Send>>;
    /// A writer at the end of what is there (`append`) or of an emptied file.
    fn writer(&self, path: &str, append: bool) -> DriverResult<Box<dyn FileWriter>>;
    fn stat(&self, path: &str) -> DriverResult<FileInfo>;
    /// The direct children of a directory, as full paths, sorted.
    fn list(&self, path: &str) -> DriverResult<Vec<String>>;
    /// Moves a file, replacing what is at `dest` (atomically), creating its parents.
    fn move_path(&self, source: &str, dest: &str) -> DriverResult<()>;
    /// Deletes a file or a whole directory tree.
    fn delete(&self, path: &str) -> DriverResult<()>;
    /// Every file (not directory) under `path`, recursively, sorted by path.
    fn walk(&self, path: &str) -> DriverResult<Vec<FileInfo>> {
        let mut out = Vec::new();
        let mut stack = vec![path.to_string()];
        while let Some(dir) = stack.pop() {
            let children = match self.list(&dir) {
                Ok(c) => c,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            for child in children {
                let info = match self.stat(&child) {
                    Ok(i) => i,
                    // Removed between list and stat (a concurrent delete): not there.
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                };
                if info.is_dir {
                    stack.push(child);
                } else {
                    out.push(info);
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}
