//! The shim binary as a sealed, in-memory copy (runc's defence against CVE-2019-5736).
//!
//! A container's processes are clones of a shim helper until their `execve`, so their
//! `/proc/self/exe` is the shim's executable: `--entrypoint /proc/self/exe` runs it in the
//! container, and a process there could open it for writing once no shim runs it (the only
//! protection was `ETXTBSY`). The daemon copies the binary once into a `memfd` sealed against
//! every change and starts each shim from it (`/proc/self/fd/N`): what a container can reach
//! through `/proc/self/exe` is that copy, which nobody can write, never the host's file.
//!
//! One copy serves every shim: its pages are shared (shmem) as the file's page cache was,
//! so the footprint per shim is unchanged; the daemon holds the one copy (the binary's size).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{MemfdFlags, SealFlags};

use crate::error::{Result, RuntimeError};

/// A sealed copy of an executable, kept open for the life of the process.
#[derive(Debug)]
pub struct SealedBinary {
    fd: OwnedFd,
    source: PathBuf,
}

impl SealedBinary {
    /// Copies `path` into a new sealed memfd.
    pub fn new(path: &Path) -> Result<SealedBinary> {
        let io = |op, e| RuntimeError::io(op, path, e);
        let mut src = File::open(path).map_err(|e| io("open", e))?;
        let fd = rustix::fs::memfd_create(
            "berth-shim",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| io("create a memfd for", e.into()))?;
        let mut copy = File::from(fd);
        std::io::copy(&mut src, &mut copy).map_err(|e| io("copy into a memfd", e))?;
        rustix::fs::fcntl_add_seals(
            &copy,
            SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
        )
        .map_err(|e| io("seal the memfd copy of", e.into()))?;
        Ok(SealedBinary {
            fd: copy.into(),
            source: path.to_path_buf(),
        })
    }

    /// The path that executes the copy, valid in this process and in the children it
    /// spawns (resolved by their `execve` before close-on-exec descriptors go).
    pub fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The binary it was copied from.
    pub fn source(&self) -> &Path {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_copy_runs_and_cannot_be_written() {
        let sealed = SealedBinary::new(Path::new("/bin/true")).unwrap();
        let status = std::process::Command::new(sealed.exec_path())
            .status()
            .unwrap();
        assert!(status.success());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(sealed.exec_path())
            .unwrap();
        assert!(
            f.write_all(b"x").is_err(),
            "a sealed copy must refuse writes"
        );
        assert_eq!(sealed.source(), Path::new("/bin/true"));
    }
}
