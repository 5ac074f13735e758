//! The `local` driver's store: `<data-root>/volumes/<name>/volume.json` (metadata) and
//! `<name>/_data` (the contents, or the mountpoint of the driver options' filesystem).
//!
//! A volume is registered by renaming a complete temporary directory (`.tmp-*`, holding `_data`
//! and the fsynced metadata) to its name, and unregistered by renaming it to `.rm-*` before its
//! contents are deleted; both renames are atomic, so a daemon killed in between leaves either
//! the whole volume or none, and [`VolumeStore::open`] removes the temporary leftovers.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_api::models::{Volume, VolumeUsageData};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, VolumeError, invalid};

/// The label Docker puts on anonymous volumes; `volume prune` removes only these by default.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";
/// The only driver: volumes are directories (or filesystems mounted per their options).
pub const LOCAL_DRIVER: &str = "local";
const META_FILE: &str = "volume.json";
const DATA_DIR: &str = "_data";
const TMP_PREFIX: &str = ".tmp-";
const RM_PREFIX: &str = ".rm-";

/// What the store keeps about a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub name: String,
    pub driver: String,
    pub created_at: DateTime<Utc>,
    pub labels: Option<BTreeMap<String, String>>,
    /// The local driver's options (`type`, `device`, `o`).
    pub options: Option<BTreeMap<String, String>>,
}

impl VolumeMeta {
    /// Created for one container (by `-v /path`, an image `VOLUME` or `--mount` without source).
    pub fn is_anonymous(&self) -> bool {
        self.labels
            .as_ref()
            .is_some_and(|l| l.contains_key(ANONYMOUS_LABEL))
    }

    /// Its contents live on a filesystem mounted from the driver options.
    pub fn has_mount_options(&self) -> bool {
        self.options
            .as_ref()
            .is_some_and(|o| o.contains_key("type") || o.contains_key("device"))
    }
}

/// Docker's rule for local volume names (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`), with its messages.
pub fn validate_name(name: &str) -> Result<()> {
    if name.len() == 1 {
        return Err(invalid(format!(
            "create {name}: volume name is too short, names should be at least two alphanumeric characters"
        )));
    }
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return Err(invalid(format!(
            "create {name}: {name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

/// Docker's local driver options: `type`, `device`, `o` (and `size`, which needs quotas).
pub fn validate_options(name: &str, opts: &BTreeMap<String, String>) -> Result<()> {
    for key in opts.keys() {
        if !["type", "o", "device", "size"].contains(&key.as_str()) {
            return Err(invalid(format!("create {name}: invalid option: {key:?}")));
        }
    }
    for (opt, needs) in [
        ("device", &["type"][..]),
        ("type", &["device"][..]),
        ("o", &["device", "type"][..]),
    ] {
        if opts.contains_key(opt) {
            for need in needs {
                if !opts.contains_key(*need) {
                    return Err(invalid(format!(
                        "create {name}: missing required option: {need:?}"
                    )));
                }
            }
        }
    }
    if opts.contains_key("size") {
        return Err(invalid(format!(
            "create {name}: quota size requested but no quota support"
        )));
    }
    Ok(())
}

/// A new anonymous volume's name: 64 hex digits, like a Docker id.
pub fn generate_name() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The local driver's volumes under `<data-root>/volumes`.
pub struct VolumeStore {
    root: PathBuf,
    /// Serialises creates and removes (a name is checked and registered in one step).
    lock: Mutex<()>,
    /// Held by whoever decides from container records that a volume is unused (and removes
    /// it) and by a container create from resolving its volumes until its record is
    /// registered: a volume cannot be removed between being chosen and being used.
    users: Mutex<()>,
}

impl VolumeStore {
    /// Opens (creating) `<data_root>/volumes` and removes what interrupted creates and removes
    /// left behind.
    pub fn open(data_root: &Path) -> Result<VolumeStore> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root).map_err(|e| VolumeError::io("create", &root, e))?;
        for entry in std::fs::read_dir(&root).map_err(|e| VolumeError::io("read", &root, e))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) || name.starts_with(RM_PREFIX) {
                let dir = entry.path();
                let data = dir.join(DATA_DIR);
                if is_mountpoint(&data) {
                    let _ = rustix::mount::unmount(&data, rustix::mount::UnmountFlags::DETACH);
                }
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove volume leftover");
                }
            }
        }
        Ok(VolumeStore {
            root,
            lock: Mutex::new(()),
            users: Mutex::new(()),
        })
    }

    /// The lock that orders "which containers use a volume" against container creates.
    pub fn users_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where a volume's contents are (`Mountpoint`).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir(name).join(DATA_DIR)
    }

    /// Creates a volume, or returns the existing one of that name (as Docker does); the bool
    /// says whether it was created. `name` `None` or empty generates a name.
    pub fn create(
        &self,
        name: Option<&str>,
        driver: &str,
        options: Option<BTreeMap<String, String>>,
        labels: Option<BTreeMap<String, String>>,
    ) -> Result<(VolumeMeta, bool)> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => generate_name(),
        };
        validate_name(&name)?;
        let driver = if driver.is_empty() {
            LOCAL_DRIVER
        } else {
            driver
        };
        if driver != LOCAL_DRIVER {
            return Err(VolumeError::Invalid(format!(
                "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let options = options.filter(|o| !o.is_empty());
        if let Some(o) = &options {
            validate_options(&name, o)?;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(existing) = self.get(&name) {
            return Ok((existing, false));
        }
        let meta = VolumeMeta {
            name: name.clone(),
            driver: driver.to_string(),
            created_at: Utc::now(),
            labels,
            options,
        };
        let tmp = self
            .root
            .join(format!("{TMP_PREFIX}{}", &generate_name()[..16]));
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir(&tmp)?;
            std::fs::create_dir(tmp.join(DATA_DIR))?;
            let bytes = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
            let mut f = std::fs::File::create(tmp.join(META_FILE))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, self.dir(&name))?;
            std::fs::File::open(&self.root)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(VolumeError::io("create volume", &self.dir(&name), e));
        }
        Ok((meta, true))
    }

    /// One volume's metadata.
    pub fn get(&self, name: &str) -> Result<VolumeMeta> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        let path = self.dir(name).join(META_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_string()));
            }
            Err(e) => return Err(VolumeError::io("read", &path, e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| VolumeError::io("parse", &path, std::io::Error::other(e)))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<VolumeMeta> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.get(&name) {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!(volume = %name, error = %e, "skipping unreadable volume"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Removes a volume and its contents. The caller has checked that no container uses it.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.get(name)?;
        let data = self.data_dir(name);
        if is_mountpoint(&data) {
            rustix::mount::unmount(&data, rustix::mount::UnmountFlags::DETACH)
                .map_err(|e| VolumeError::io("unmount", &data, e.into()))?;
        }
        let doomed = self
            .root
            .join(format!("{RM_PREFIX}{}", &generate_name()[..16]));
        std::fs::rename(self.dir(name), &doomed)
            .map_err(|e| VolumeError::io("remove volume", &self.dir(name), e))?;
        let _ = std::fs::File::open(&self.root).and_then(|d| d.sync_all());
        std::fs::remove_dir_all(&doomed).map_err(|e| VolumeError::io("remove", &doomed, e))
    }

    /// Makes the volume's contents available at its mountpoint: for a volume with driver
    /// options, mounts the filesystem they describe unless it already is.
    pub fn mount(&self, name: &str) -> Result<PathBuf> {
        let meta = self.get(name)?;
        let data = self.data_dir(name);
        if !meta.has_mount_options() || is_mountpoint(&data) {
            return Ok(data);
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if is_mountpoint(&data) {
            return Ok(data);
        }
        let opts = meta.options.clone().unwrap_or_default();
        mount_options(&opts, &data).map_err(|e| {
            VolumeError::Io(berth_api::PathIoError {
                op: "failed to mount local volume",
                path: format!("{name} at {}", data.display()),
                source: e,
            })
        })?;
        Ok(data)
    }

    /// Unmounts a volume's driver-option filesystem (when its last user stopped).
    pub fn unmount(&self, name: &str) -> Result<()> {
        let Ok(meta) = self.get(name) else {
            return Ok(());
        };
        let data = self.data_dir(name);
        if meta.has_mount_options() && is_mountpoint(&data) {
            rustix::mount::unmount(&data, rustix::mount::UnmountFlags::DETACH)
                .map_err(|e| VolumeError::io("unmount", &data, e.into()))?;
        }
        Ok(())
    }

    /// Bytes stored in the volume.
    pub fn size(&self, name: &str) -> u64 {
        dir_size(&self.data_dir(name))
    }

    /// The API's view (`UsageData` is left to the caller).
    pub fn to_api(&self, m: &VolumeMeta) -> Volume {
        Volume {
            created_at: m.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            driver: m.driver.clone(),
            labels: m.labels.clone(),
            mountpoint: self.data_dir(&m.name).display().to_string(),
            name: m.name.clone(),
            options: m.options.clone(),
            scope: "local".into(),
            usage_data: None::<VolumeUsageData>,
        }
    }
}

/// Mounts what Docker's local driver options describe (`type`, `device`, `o`) on `target`:
/// flags among `o` become mount flags, the rest the filesystem's data.
fn mount_options(opts: &BTreeMap<String, String>, target: &Path) -> std::io::Result<()> {
    use rustix::mount::MountFlags as F;
    let device = opts.get("device").map(String::as_str).unwrap_or_default();
    let fstype = opts.get("type").map(String::as_str).unwrap_or_default();
    let mut flags = F::empty();
    let mut data = Vec::new();
    let mut bind = false;
    for o in opts
        .get("o")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
        .filter(|o| !o.is_empty())
    {
        match o {
            "ro" => flags |= F::RDONLY,
            "rw" | "suid" | "dev" | "exec" | "async" | "atime" | "diratime" | "defaults" => {}
            "nosuid" => flags |= F::NOSUID,
            "nodev" => flags |= F::NODEV,
            "noexec" => flags |= F::NOEXEC,
            "sync" => flags |= F::SYNCHRONOUS,
            "dirsync" => flags |= F::DIRSYNC,
            "noatime" => flags |= F::NOATIME,
            "nodiratime" => flags |= F::NODIRATIME,
            "relatime" => flags |= F::RELATIME,
            "strictatime" => flags |= F::STRICTATIME,
            "bind" => bind = true,
            "rbind" => {
                bind = true;
                flags |= F::REC;
            }
            other => data.push(other),
        }
    }
    let data = CString::new(data.join(",")).map_err(std::io::Error::other)?;
    if bind {
        rustix::mount::mount(device, target, fstype, flags | F::BIND, None)?;
        if flags.contains(F::RDONLY) {
            rustix::mount::mount_remount(target, flags | F::BIND, "")?;
        }
        return Ok(());
    }
    rustix::mount::mount(device, target, fstype, flags, data.as_c_str())?;
    Ok(())
}

/// Whether `path` is a mount point, from `/proc/self/mountinfo`.
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| unescape_mountinfo(m) == want)
    })
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes in a tree (regular files' lengths), not following symlinks or other filesystems'
/// special files.
pub fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    let mut total = 0;
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            total += dir_size(&e.path());
        } else if ft.is_file() {
            total += e.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        validate_name("data").unwrap();
        validate_name("a1_.-b").unwrap();
        assert_eq!(
            validate_name("x").unwrap_err().to_string(),
            "create x: volume name is too short, names should be at least two alphanumeric characters"
        );
        assert_eq!(
            validate_name("a b").unwrap_err().to_string(),
            "create a b: \"a b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        assert!(validate_name("-ab").is_err());
        assert!(validate_name("./rel").is_err());
        assert_eq!(generate_name().len(), 64);
    }

    #[test]
    fn options_follow_the_local_driver() {
        let o = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        validate_options(
            "v",
            &o(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")]),
        )
        .unwrap();
        assert_eq!(
            validate_options("v", &o(&[("foo", "bar")]))
                .unwrap_err()
                .to_string(),
            "create v: invalid option: \"foo\""
        );
        assert_eq!(
            validate_options("v", &o(&[("type", "tmpfs")]))
                .unwrap_err()
                .to_string(),
            "create v: missing required option: \"device\""
        );
    }

    #[test]
    fn create_get_list_remove_and_sweep() {
        let d = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(d.path()).unwrap();
        let labels = Some(BTreeMap::from([("k".to_string(), "v".to_string())]));
        let (v, created) = s.create(Some("data"), "", None, labels.clone()).unwrap();
        assert!(created);
        assert_eq!(v.driver, "local");
        assert!(s.data_dir("data").is_dir());
        let (again, created) = s.create(Some("data"), "local", None, None).unwrap();
        assert!(!created);
        assert_eq!(again.labels, labels);
        let (anon, _) = s.create(None, "", None, None).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert_eq!(s.list().len(), 2);
        let api = s.to_api(&s.get("data").unwrap());
        assert_eq!(api.scope, "local");
        assert!(api.mountpoint.ends_with("/volumes/data/_data"));
        assert!(matches!(s.get("nope"), Err(VolumeError::NotFound(_))));
        assert!(s.create(Some("bad name"), "", None, None).is_err());
        assert!(s.create(Some("ok"), "nfs-plugin", None, None).is_err());

        // What a killed daemon leaves: a half-made create and a half-done remove.
        std::fs::create_dir_all(d.path().join("volumes/.tmp-1/_data")).unwrap();
        std::fs::create_dir_all(d.path().join("volumes/.rm-2/_data")).unwrap();
        std::fs::write(d.path().join("volumes/data/_data/f"), b"keep").unwrap();
        let s = VolumeStore::open(d.path()).unwrap();
        assert!(!d.path().join("volumes/.tmp-1").exists());
        assert!(!d.path().join("volumes/.rm-2").exists());
        assert_eq!(s.list().len(), 2);
        assert_eq!(s.size("data"), 4);

        s.remove("data").unwrap();
        assert!(matches!(s.get("data"), Err(VolumeError::NotFound(_))));
        assert!(!d.path().join("volumes/data").exists());
        assert!(matches!(s.remove("data"), Err(VolumeError::NotFound(_))));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(!is_mountpoint(Path::new("/proc/self")));
    }
}
