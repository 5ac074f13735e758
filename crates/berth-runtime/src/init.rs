//! The `--init` process: `berth-init`, built statically by `build.rs` (see there for why) and
//! embedded here. The daemon writes it once to a file of its own ([`install`]) and passes
//! that path as [`crate::ContainerRunConfig::init_path`]; the spec bind-mounts it read-only at
//! [`INIT_PATH`] (Docker's path) and runs `[INIT_PATH, "--", args...]`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Result, RuntimeError};

/// The statically linked `berth-init` executable.
pub static BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-init"));

/// Where the init appears inside a container (Docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Write [`BINARY`] to `path` (mode 0755, atomically), unless an identical file is there.
pub fn install(path: &Path) -> Result<()> {
    if std::fs::read(path).is_ok_and(|b| b == BINARY) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io("create", dir, e))?;
    }
    crate::bundle::write_atomic(path, BINARY)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| RuntimeError::io("chmod", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No `PT_INTERP` program header: the kernel runs it without a dynamic loader.
    #[test]
    fn init_is_static() {
        let b = BINARY;
        assert_eq!(&b[..4], b"\x7fELF");
        let u16at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
        let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (u16at(0x36), u16at(0x38));
        for i in 0..phnum {
            let ty = u32::from_le_bytes(b[phoff + i * phentsize..][..4].try_into().unwrap());
            assert_ne!(ty, 3, "PT_INTERP found: berth-init is dynamically linked");
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bin/docker-init");
        install(&p).unwrap();
        install(&p).unwrap();
        let out = std::process::Command::new(&p)
            .args(["--", "sh", "-c", "exit 7"])
            .status()
            .unwrap();
        assert_eq!(out.code(), Some(7));
    }
}
