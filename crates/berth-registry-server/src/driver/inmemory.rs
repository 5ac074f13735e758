//! A [`StorageDriver`] in memory: for tests, and as the second implementation that keeps the
//! trait honest (everything the registry needs must be expressible without a filesystem).

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{DriverError, DriverResult, FileInfo, FileWriter, StorageDriver};

/// Path → (content, modification time).
type Files = Arc<Mutex<BTreeMap<String, (Vec<u8>, SystemTime)>>>;

#[derive(Default)]
pub struct InMemoryDriver {
    files: Files,
}

impl InMemoryDriver {
    pub fn new() -> InMemoryDriver {
        InMemoryDriver::default()
    }
}

fn norm(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

fn dir_prefix(path: &str) -> String {
    let p = norm(path);
    if p == "/" { p } else { format!("{p}/") }
}

impl InMemoryDriver {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Vec<u8>, SystemTime)>> {
        // A panic while holding the map cannot leave it half-updated: every update is one
        // insert or remove.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_dir(map: &BTreeMap<String, (Vec<u8>, SystemTime)>, path: &str) -> bool {
        let prefix = dir_prefix(path);
        map.range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

impl StorageDriver for InMemoryDriver {
    fn name(&self) -> &'static str {
        "inmemory"
    }

    fn get_content(&self, path: &str) -> DriverResult<Vec<u8>> {
        self.lock()
            .get(&norm(path))
            .map(|(c, _)| c.clone())
            .ok_or_else(|| DriverError::NotFound(path.to_string()))
    }

    fn put_content(&self, path: &str, content: &[u8]) -> DriverResult<()> {
        self.lock()
            .insert(norm(path), (content.to_vec(), SystemTime::now()));
        Ok(())
    }

    fn reader(&self, path: &str, offset: u64) -> DriverResult<Box<dyn Read + Send>> {
        let content = self.get_content(path)?;
        if offset > content.len() as u64 {
            return Err(DriverError::InvalidOffset {
                path: path.to_string(),
                offset,
            });
        }
        let mut cursor = Cursor::new(content);
        cursor.set_position(offset);
        Ok(Box::new(cursor))
    }

    fn writer(&self, path: &str, append: bool) -> DriverResult<Box<dyn FileWriter>> {
        let existing = if append {
            self.get_content(path).unwrap_or_default()
        } else {
            Vec::new()
        };
        // The file exists from the start, as on a filesystem.
        self.put_content(path, &existing)?;
        Ok(Box::new(MemWriter {
            files: self.files.clone(),
            path: norm(path),
            buf: existing,
        }))
    }

    fn stat(&self, path: &str) -> DriverResult<FileInfo> {
        let map = self.lock();
        if let Some((content, modified)) = map.get(&norm(path)) {
            return Ok(FileInfo {
                path: path.to_string(),
                size: content.len() as u64,
                modified: *modified,
                is_dir: false,
            });
        }
        if InMemoryDriver::is_dir(&map, path) {
            return Ok(FileInfo {
                path: path.to_string(),
                size: 0,
                modified: SystemTime::now(),
                is_dir: true,
            });
        }
        Err(DriverError::NotFound(path.to_string()))
    }

    fn list(&self, path: &str) -> DriverResult<Vec<String>> {
        let map = self.lock();
        let prefix = dir_prefix(path);
        let mut out: Vec<String> = Vec::new();
        for key in map.range(prefix.clone()..).map(|(k, _)| k) {
            let Some(rest) = key.strip_prefix(&prefix) else {
                break;
            };
            let child = rest.split('/').next().unwrap_or_default();
            let full = format!("{prefix}{child}");
            if out.last() != Some(&full) {
                out.push(full);
            }
        }
        if out.is_empty() {
            return Err(DriverError::NotFound(path.to_string()));
        }
        Ok(out)
    }

    fn move_path(&self, source: &str, dest: &str) -> DriverResult<()> {
        let mut map = self.lock();
        let entry = map
            .remove(&norm(source))
            .ok_or_else(|| DriverError::NotFound(source.to_string()))?;
        map.insert(norm(dest), entry);
        Ok(())
    }

    fn delete(&self, path: &str) -> DriverResult<()> {
        let mut map = self.lock();
        if map.remove(&norm(path)).is_some() {
            return Ok(());
        }
        let prefix = dir_prefix(path);
        let keys: Vec<String> = map
            .range(prefix.clone()..)
            .map(|(k, _)| k.clone())
            .take_while(|k| k.starts_with(&prefix))
            .collect();
        if keys.is_empty() {
            return Err(DriverError::NotFound(path.to_string()));
        }
        for k in keys {
            map.remove(&k);
        }
        Ok(())
    }
}

struct MemWriter {
    files: Files,
    path: String,
    buf: Vec<u8>,
}

impl MemWriter {
    fn store(&self) {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.path.clone(), (self.buf.clone(), SystemTime::now()));
    }
}

impl Write for MemWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MemWriter {
    fn drop(&mut self) {
        // Like a file whose writer went away: what was written stays, for an append.
        if !self.path.is_empty() {
            self.store();
        }
    }
}

impl FileWriter for MemWriter {
    fn size(&self) -> u64 {
        self.buf.len() as u64
    }

    fn commit(self: Box<Self>) -> DriverResult<()> {
        self.store();
        Ok(())
    }

    fn cancel(mut self: Box<Self>) -> DriverResult<()> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.path);
        self.path.clear();
        Ok(())
    }
}
