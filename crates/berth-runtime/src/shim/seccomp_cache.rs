//! Compiled seccomp programs, cached per profile.
//!
//! libseccomp turns Docker's default profile (three architectures, ~350 syscalls) into a BPF
//! program in about 10 ms, inside every container's init and every exec: the largest single
//! cost of `run`. The program depends only on the profile (and on the libseccomp and shim
//! builds), so the shim's helper compiles it once with libcontainer's `export_bpf`, keeps it
//! in `/run/berth-shim/seccomp` (per boot, root only), and hands it to libcontainer with
//! `set_precompiled` (a patch of the vendored libcontainer) before the init or exec is
//! cloned; libcontainer then loads it with the same `seccomp(2)` call and flags libseccomp
//! would use. A cache entry holds its profile and is used only for exactly that profile.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;

const CACHE_DIR: &str = "/run/berth-shim/seccomp";

/// Make the compiled program for `seccomp` available to the processes this one forks next.
/// Any failure only means libcontainer compiles the profile itself, as without the cache.
pub(crate) fn prepare(seccomp: &LinuxSeccomp) {
    if libcontainer::seccomp::is_notify(seccomp) {
        return;
    }
    if let Some(bpf) = cached_or_compiled(seccomp) {
        libcontainer::seccomp::set_precompiled(seccomp.clone(), bpf);
    }
}

fn cached_or_compiled(seccomp: &LinuxSeccomp) -> Option<Vec<u8>> {
    let profile = serde_json::to_vec(seccomp).ok()?;
    let dir = cache_dir();
    let path = dir
        .as_ref()
        .map(|d| d.join(format!("{:016x}.bpf", cache_key(&profile))));
    if let Some(bpf) = path.as_deref().and_then(|p| read_entry(p, &profile)) {
        return Some(bpf);
    }
    let bpf = libcontainer::seccomp::export_bpf(seccomp).ok()?;
    if let (Some(dir), Some(path)) = (dir, path) {
        write_entry(&dir, &path, &profile, &bpf);
    }
    Some(bpf)
}

/// The cache directory, created root-only; `None` if it is not safely ours.
fn cache_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(CACHE_DIR);
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    let uid = nix::unistd::geteuid().as_raw();
    for d in [dir.as_path(), dir.parent()?] {
        let m = std::fs::symlink_metadata(d).ok()?;
        if !m.is_dir() || m.uid() != uid || m.mode() & 0o022 != 0 {
            return None;
        }
    }
    Some(dir)
}

/// What the program depends on: the profile, this binary (its libcontainer), and the
/// libseccomp it loaded (its syscall tables).
fn cache_key(profile: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    profile.hash(&mut h);
    let identity = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
            .ok()
    };
    identity(Path::new("/proc/self/exe")).hash(&mut h);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let lib = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libseccomp"));
    lib.map(|p| (p.to_string(), identity(Path::new(p))))
        .hash(&mut h);
    h.finish()
}

/// An entry is the profile's length (8 bytes, little endian), the profile, the program.
fn read_entry(path: &Path, profile: &[u8]) -> Option<Vec<u8>> {
    let data = std::fs::read(path).ok()?;
    let len = u64::from_le_bytes(data.get(..8)?.try_into().ok()?) as usize;
    let stored = data.get(8..8usize.checked_add(len)?)?;
    if stored != profile {
        return None;
    }
    let bpf = data[8 + len..].to_vec();
    (!bpf.is_empty() && bpf.len() % 8 == 0).then_some(bpf)
}

fn write_entry(dir: &Path, path: &Path, profile: &[u8], bpf: &[u8]) {
    let tmp = dir.join(format!(".tmp{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&(profile.len() as u64).to_le_bytes())?;
        f.write_all(profile)?;
        f.write_all(bpf)
    });
    if written.and_then(|()| std::fs::rename(&tmp, path)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_used_only_for_their_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bpf");
        write_entry(dir.path(), &path, b"{\"a\":1}", &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            read_entry(&path, b"{\"a\":1}").unwrap(),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert!(read_entry(&path, b"{\"a\":2}").is_none());
        std::fs::write(&path, b"\x01\x00").unwrap();
        assert!(read_entry(&path, b"{\"a\":1}").is_none());
    }
}
