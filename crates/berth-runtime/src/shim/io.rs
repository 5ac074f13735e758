//! Unix socket paths longer than `sun_path` (108 bytes): reached through
//! `/proc/self/fd/<dir fd>/<name>`, which needs no `chdir` and so is thread-safe.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

const SUN_PATH_MAX: usize = 107;

fn via_dir<T>(path: &Path, f: impl FnOnce(&Path) -> std::io::Result<T>) -> std::io::Result<T> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return f(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return f(path);
    };
    let dir = File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    f(&short)
}

/// Connect to a unix socket at any path length.
pub(crate) fn connect_long(path: &Path) -> std::io::Result<UnixStream> {
    via_dir(path, |p| UnixStream::connect(p))
}

/// Bind a unix socket at any path length.
pub(crate) fn bind_long(path: &Path) -> std::io::Result<UnixListener> {
    via_dir(path, |p| UnixListener::bind(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn long_socket_paths_work() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let sock = deep.join("shim.sock");
        assert!(sock.as_os_str().len() > SUN_PATH_MAX);
        let l = bind_long(&sock).unwrap();
        assert!(sock.exists(), "socket created at its real path");
        let mut c = connect_long(&sock).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }
}
