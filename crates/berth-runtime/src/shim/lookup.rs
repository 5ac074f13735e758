//! Before starting a container, resolve its command in the root filesystem the way the exec
//! in the container would (`PATH` search), without following symlinks out of the root
//! (`openat2` with `RESOLVE_IN_ROOT`). A missing command becomes a typed error the daemon can
//! map to Docker's exit code 127 (126 when the file exists but cannot be executed).

use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::error::{Result, RuntimeError};
use crate::spec::DEFAULT_PATH;

enum Probe {
    Executable,
    NotExecutable,
    Missing,
    Unknown,
}

fn probe(root: &std::fs::File, path: &Path) -> Probe {
    let fd = match rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Probe::Missing,
        Err(_) => return Probe::Unknown,
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) => {
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft == FileType::RegularFile && st.st_mode & 0o111 != 0 {
                Probe::Executable
            } else {
                Probe::NotExecutable
            }
        }
        Err(_) => Probe::Unknown,
    }
}

/// Check that `args0` resolves to an executable file in `rootfs`, using `PATH` from `env`,
/// relative paths against `cwd`. Candidates under one of `mounted` (destinations of extra
/// mounts, not visible yet) are not judged. Errors only when the answer is certain.
pub fn check_executable(
    rootfs: &Path,
    args0: &str,
    env: &[String],
    cwd: &Path,
    mounted: &[PathBuf],
) -> Result<()> {
    let Ok(root) = std::fs::File::open(rootfs) else {
        return Ok(());
    };
    let candidates: Vec<PathBuf> = if args0.contains('/') {
        vec![cwd.join(args0)]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| cwd.join(d).join(args0))
            .collect()
    };
    let mut not_runnable = false;
    for c in &candidates {
        if mounted.iter().any(|m| c.starts_with(m)) {
            return Ok(());
        }
        match probe(&root, c) {
            Probe::Executable | Probe::Unknown => return Ok(()),
            Probe::NotExecutable => not_runnable = true,
            Probe::Missing => {}
        }
    }
    if not_runnable {
        Err(RuntimeError::ExecutableNotRunnable {
            name: args0.to_string(),
        })
    } else {
        Err(RuntimeError::ExecutableNotFound {
            name: args0.to_string(),
        })
    }
}

/// Check that an exec's working directory `cwd` is a directory in `rootfs` (symlinks
/// resolved inside it), as runc's `chdir` would find it; runc's words when it is not.
/// Directories under one of `mounted` are not judged (their mounts are not visible here).
pub fn check_cwd(rootfs: &Path, cwd: &Path, mounted: &[PathBuf]) -> Result<()> {
    let Ok(root) = std::fs::File::open(rootfs) else {
        return Ok(());
    };
    if mounted.iter().any(|m| cwd.starts_with(m)) {
        return Ok(());
    }
    let why = match rustix::fs::openat2(
        &root,
        cwd,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    ) {
        Ok(_) => return Ok(()),
        Err(rustix::io::Errno::NOENT) => "no such file or directory",
        Err(rustix::io::Errno::NOTDIR) => "not a directory",
        // Anything else (permissions are the process's, not ours) is left to the runtime.
        Err(_) => return Ok(()),
    };
    Err(RuntimeError::ExecStart {
        reason: format!(
            "chdir to cwd ({:?}) set in config.json failed: {why}",
            cwd.display().to_string()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn cwd_must_be_a_directory_in_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("work")).unwrap();
        std::fs::write(d.path().join("file"), "").unwrap();
        // Resolved in the root: the host's /tmp does not count.
        std::os::unix::fs::symlink("/work", d.path().join("link")).unwrap();
        assert!(check_cwd(d.path(), Path::new("/work"), &[]).is_ok());
        assert!(check_cwd(d.path(), Path::new("/link"), &[]).is_ok());
        let e = check_cwd(d.path(), Path::new("/nonexistent"), &[]).unwrap_err();
        assert_eq!(
            e.oci_exec_message().unwrap(),
            "OCI runtime exec failed: exec failed: unable to start container process: \
             chdir to cwd (\"/nonexistent\") set in config.json failed: no such file or \
             directory: unknown"
        );
        assert_eq!(e.docker_exit_code(), Some(127));
        let e = check_cwd(d.path(), Path::new("/file"), &[]).unwrap_err();
        assert!(e.to_string().ends_with("not a directory"), "{e}");
        assert!(check_cwd(d.path(), Path::new("/vol/x"), &[PathBuf::from("/vol")]).is_ok());
    }

    #[test]
    fn finds_and_misses() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        let exe = d.path().join("bin/tool");
        std::fs::write(&exe, "").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.path().join("bin/data"), "").unwrap();
        // An absolute symlink must resolve inside the root, not on the host.
        std::os::unix::fs::symlink("/bin/tool", d.path().join("bin/link")).unwrap();
        let env = vec!["PATH=/usr/bin:/bin".to_string()];
        let cwd = Path::new("/");
        assert!(check_executable(d.path(), "tool", &env, cwd, &[]).is_ok());
        assert!(check_executable(d.path(), "link", &env, cwd, &[]).is_ok());
        assert!(check_executable(d.path(), "/bin/tool", &env, cwd, &[]).is_ok());
        assert!(matches!(
            check_executable(d.path(), "nope", &env, cwd, &[]),
            Err(RuntimeError::ExecutableNotFound { .. })
        ));
        assert!(matches!(
            check_executable(d.path(), "data", &env, cwd, &[]),
            Err(RuntimeError::ExecutableNotRunnable { .. })
        ));
        assert!(check_executable(d.path(), "nope", &env, cwd, &[PathBuf::from("/usr")]).is_ok());
    }
}
