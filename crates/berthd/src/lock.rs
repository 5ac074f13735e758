//! One daemon per data root: an exclusive, non-blocking `flock` on `<data-root>/berthd.lock`,
//! held for the life of the process. The file carries the holder's pid for the error message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

pub const LOCK_FILE: &str = "berthd.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another berthd is already using data root {root} (pid {pid})")]
    Busy { root: PathBuf, pid: String },
    #[error("cannot lock data root {root}: {source}")]
    Io {
        root: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct DataRootLock {
    _file: File,
}

impl DataRootLock {
    /// Creates the data root if needed and takes its lock, or says who holds it.
    pub fn acquire(root: &Path) -> Result<DataRootLock, LockError> {
        let io = |source: std::io::Error| LockError::Io {
            root: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(root.join(LOCK_FILE))
            .map_err(io)?;
        if let Err(errno) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if errno == rustix::io::Errno::WOULDBLOCK {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Busy {
                    root: root.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_string()
                    },
                });
            }
            return Err(io(errno.into()));
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataRootLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataRootLock::acquire(dir.path()).unwrap();
        let err = DataRootLock::acquire(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("another berthd is already using data root"),
            "{text}"
        );
        assert!(
            text.contains(&format!("(pid {})", std::process::id())),
            "{text}"
        );
        drop(first);
        DataRootLock::acquire(dir.path()).unwrap();
    }
}
