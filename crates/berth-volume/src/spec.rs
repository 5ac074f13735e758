//! Docker's mount specifications: `-v` (`HostConfig.Binds`), `--mount` (`HostConfig.Mounts`),
//! `--tmpfs` (`HostConfig.Tmpfs`), `--volumes-from` and image `VOLUME`s, parsed and validated
//! with Docker's messages into [`MountEntry`] values that a container record stores. Nothing
//! here touches the filesystem: creating volumes and host directories is the caller's step.

use std::collections::{BTreeMap, HashSet};

use berth_api::models::{HostConfig, Mount, MountPoint};
use serde::{Deserialize, Serialize};

use crate::error::{Result, invalid};

/// What is mounted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    #[default]
    Bind,
    Volume,
    Tmpfs,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One resolved mount of a container, as its record keeps it (Docker's `MountPoints`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountEntry {
    pub kind: MountKind,
    /// Host path of a bind; a volume's mountpoint once resolved.
    pub source: String,
    /// A volume's name.
    pub name: String,
    pub destination: String,
    pub driver: String,
    /// The mode string as given (`ro,rshared`), Docker's `Mode`.
    pub mode: String,
    pub rw: bool,
    pub propagation: String,
    /// Fill a new, empty volume with what the image has at the destination.
    pub copy_data: bool,
    /// The volume was created for this container (`rm -v` removes it).
    pub anonymous: bool,
    /// Bind without recursion (`bind-nonrecursive`).
    pub non_recursive: bool,
    /// A path inside the volume to mount instead of its root (`volume-subpath`).
    pub subpath: String,
    /// tmpfs mount data (`size=...`, `mode=...`).
    pub tmpfs_options: Vec<String>,
    /// From `HostConfig.Tmpfs`: Docker does not list these in `Mounts`.
    pub hidden: bool,
    /// A bind whose missing host path is created (`-v`, `bind-create-src`), at create and
    /// again at start if it went away meanwhile.
    pub create_source: bool,
}

impl MountEntry {
    /// Docker's `MountPoint` for inspect and `ps`.
    pub fn mount_point(&self) -> MountPoint {
        MountPoint {
            kind: self.kind.as_str().into(),
            name: self.name.clone(),
            source: self.source.clone(),
            destination: self.destination.clone(),
            driver: self.driver.clone(),
            mode: self.mode.clone(),
            rw: self.rw,
            propagation: self.propagation.clone(),
        }
    }
}

/// A parsed mount plus what creating it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planned {
    pub entry: MountEntry,
    /// Labels and driver options for a volume created by this mount.
    pub volume_labels: Option<BTreeMap<String, String>>,
    pub volume_options: Option<BTreeMap<String, String>>,
}

const PROPAGATIONS: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn invalid_spec(raw: &str) -> String {
    format!("invalid volume specification: '{raw}'")
}

/// Docker's `ValidMountMode`: comma-separated, at most one of each class.
pub fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for o in mode.split(',') {
        let class = match o {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            p if PROPAGATIONS.contains(&p) => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[class] += 1;
    }
    counts.iter().all(|c| *c <= 1)
}

fn mode_propagation(mode: &str) -> Option<&str> {
    mode.split(',').find(|o| PROPAGATIONS.contains(o))
}

fn mode_rw(mode: &str) -> bool {
    !mode.split(',').any(|o| o == "ro")
}

fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn err_config(kind: &str, msg: impl std::fmt::Display) -> crate::VolumeError {
    invalid(format!("invalid mount config for type {kind:?}: {msg}"))
}

fn check_target(kind: &str, target: &str) -> Result<()> {
    if target.is_empty() {
        return Err(err_config(kind, "field Target must not be empty"));
    }
    if target == "/" {
        return Err(err_config(
            kind,
            "invalid specification: destination can't be '/'",
        ));
    }
    if !target.starts_with('/') {
        return Err(err_config(
            kind,
            format!("invalid mount path: '{target}' mount path must be absolute"),
        ));
    }
    Ok(())
}

/// The kernel filesystems a runtime must own: runc refuses binds onto `/proc` (other than the
/// few files lxcfs-style setups overlay), and the error is better at create than at start.
fn check_protected(source: &str, dest: &str) -> Result<()> {
    const PROC_ALLOWED: [&str; 9] = [
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/sys/kernel/ns_last_pid",
    ];
    if dest == "/proc" {
        return Err(invalid(format!(
            "error mounting {source:?} to rootfs at \"/proc\": \"/proc\" cannot be mounted because it is not of type proc"
        )));
    }
    if dest.starts_with("/proc/") && !PROC_ALLOWED.contains(&dest) {
        return Err(invalid(format!(
            "error mounting {source:?} to rootfs at {dest:?}: {dest:?} cannot be mounted because it is inside /proc"
        )));
    }
    Ok(())
}

/// One `-v` entry: `DEST`, `NAME:DEST[:MODE]` or `/HOST:DEST[:MODE]`.
pub fn parse_bind(raw: &str, volume_driver: &str) -> Result<Planned> {
    let arr: Vec<&str> = raw.splitn(4, ':').collect();
    if arr[0].is_empty() {
        return Err(invalid(invalid_spec(raw)));
    }
    let (source, target, mode) = match arr.as_slice() {
        [t] => ("", *t, ""),
        [_, m] if valid_mode(m) => return Err(invalid(invalid_spec(raw))),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(invalid(invalid_spec(raw))),
    };
    if !valid_mode(mode) {
        return Err(invalid(format!("invalid mode: {mode}")));
    }
    let kind = if source.starts_with('/') {
        MountKind::Bind
    } else {
        MountKind::Volume
    };
    let wrap = |e: crate::VolumeError| invalid(format!("{}: {e}", invalid_spec(raw)));
    check_target(kind.as_str(), target).map_err(wrap)?;
    let destination = clean(target);
    let rw = mode_rw(mode);
    let mut entry = MountEntry {
        kind,
        destination,
        rw,
        mode: mode.to_string(),
        ..Default::default()
    };
    match kind {
        MountKind::Bind => {
            entry.source = clean(source);
            entry.propagation = mode_propagation(mode).unwrap_or("rprivate").to_string();
            check_protected(&entry.source, &entry.destination)?;
        }
        _ => {
            if source.is_empty() {
                entry.anonymous = true;
            } else {
                crate::store::validate_name(source)?;
                entry.name = source.to_string();
            }
            entry.driver = if volume_driver.is_empty() {
                "local".into()
            } else {
                volume_driver.to_string()
            };
            entry.copy_data = !mode.split(',').any(|o| o == "nocopy");
            if mode.is_empty() {
                // What Docker stores for a volume given without a mode.
                entry.mode = "z".into();
            }
            check_protected(source, &entry.destination)?;
        }
    }
    // `-v` creates a missing host path; a `--mount` bind refuses it.
    entry.create_source = kind == MountKind::Bind;
    Ok(Planned {
        entry,
        ..Default::default()
    })
}

/// One `--mount` (`HostConfig.Mounts` entry).
pub fn parse_mount(m: &Mount) -> Result<Planned> {
    let kind = m.kind.as_str();
    check_target(kind, &m.target)?;
    let mut planned = Planned::default();
    let e = &mut planned.entry;
    e.destination = clean(&m.target);
    e.rw = !m.read_only;
    match kind {
        "bind" => {
            if m.source.is_empty() {
                return Err(err_config(kind, "field Source must not be empty"));
            }
            if m.volume_options.is_some() {
                return Err(err_config(
                    kind,
                    "field VolumeOptions must not be specified",
                ));
            }
            if m.tmpfs_options.is_some() {
                return Err(err_config(kind, "field TmpfsOptions must not be specified"));
            }
            if !m.source.starts_with('/') {
                return Err(err_config(
                    kind,
                    format!(
                        "invalid mount path: '{}' mount path must be absolute",
                        m.source
                    ),
                ));
            }
            let b = m.bind_options.clone().unwrap_or_default();
            if !b.propagation.is_empty() && !PROPAGATIONS.contains(&b.propagation.as_str()) {
                return Err(err_config(
                    kind,
                    format!("invalid propagation mode: {}", b.propagation),
                ));
            }
            e.kind = MountKind::Bind;
            e.source = clean(&m.source);
            e.propagation = if b.propagation.is_empty() {
                "rprivate".into()
            } else {
                b.propagation.clone()
            };
            e.non_recursive = b.non_recursive;
            e.create_source = b.create_mountpoint;
            check_protected(&e.source, &e.destination)?;
        }
        "volume" => {
            if m.bind_options.is_some() {
                return Err(err_config(kind, "field BindOptions must not be specified"));
            }
            if m.tmpfs_options.is_some() {
                return Err(err_config(kind, "field TmpfsOptions must not be specified"));
            }
            if m.source.is_empty() && m.read_only {
                return Err(err_config(
                    kind,
                    "must not set ReadOnly mode when using anonymous volumes",
                ));
            }
            e.kind = MountKind::Volume;
            if m.source.is_empty() {
                e.anonymous = true;
            } else {
                crate::store::validate_name(&m.source)?;
                e.name = m.source.clone();
            }
            e.driver = "local".into();
            e.copy_data = true;
            // What Docker stores as the mode of a `--mount` volume.
            e.mode = "z".into();
            if let Some(v) = &m.volume_options {
                if v.no_copy {
                    e.copy_data = false;
                }
                if let Some(d) = &v.driver_config {
                    if !d.name.is_empty() {
                        e.driver = d.name.clone();
                    }
                    planned.volume_options = d.options.clone().filter(|o| !o.is_empty());
                }
                planned.volume_labels = v.labels.clone().filter(|l| !l.is_empty());
                if !v.subpath.is_empty() {
                    if v.subpath.starts_with('/') || v.subpath.split('/').any(|c| c == "..") {
                        return Err(err_config(
                            kind,
                            format!(
                                "subpath must be a relative path within the volume: {}",
                                v.subpath
                            ),
                        ));
                    }
                    e.subpath = v.subpath.clone();
                }
            }
            check_protected(&m.source, &e.destination)?;
        }
        "tmpfs" => {
            if m.bind_options.is_some() {
                return Err(err_config(kind, "field BindOptions must not be specified"));
            }
            if m.volume_options.is_some() {
                return Err(err_config(
                    kind,
                    "field VolumeOptions must not be specified",
                ));
            }
            if !m.source.is_empty() {
                return Err(err_config(kind, "field Source must not be specified"));
            }
            e.kind = MountKind::Tmpfs;
            if let Some(t) = &m.tmpfs_options {
                if t.size_bytes < 0 {
                    return Err(err_config(kind, "invalid tmpfs size"));
                }
                if t.size_bytes > 0 {
                    e.tmpfs_options.push(format!("size={}", t.size_bytes));
                }
                if t.mode != 0 {
                    e.tmpfs_options.push(format!("mode={:o}", t.mode));
                }
            }
            check_protected("tmpfs", &e.destination)?;
        }
        _ => return Err(err_config(kind, "mount type unknown")),
    }
    Ok(planned)
}

/// One `--tmpfs DEST[:OPTIONS]` (`HostConfig.Tmpfs`).
pub fn parse_tmpfs(dest: &str, opts: &str) -> Result<Planned> {
    check_target("tmpfs", dest)?;
    let mut rw = true;
    let tmpfs_options = opts
        .split(',')
        .filter(|o| !o.is_empty())
        .filter(|o| match *o {
            "ro" => {
                rw = false;
                false
            }
            "rw" => false,
            _ => true,
        })
        .map(str::to_string)
        .collect();
    let destination = clean(dest);
    check_protected("tmpfs", &destination)?;
    Ok(Planned {
        entry: MountEntry {
            kind: MountKind::Tmpfs,
            destination,
            rw,
            tmpfs_options,
            hidden: true,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// One `--volumes-from CONTAINER[:ro|rw]`: the container and the mode to force, if any.
pub fn parse_volumes_from(spec: &str) -> Result<(String, Option<bool>)> {
    let (id, mode) = match spec.split_once(':') {
        Some((id, mode)) => (id, Some(mode)),
        None => (spec, None),
    };
    match mode {
        None => Ok((id.to_string(), None)),
        Some(m) if valid_mode(m) && !m.split(',').any(|o| o == "nocopy") => {
            Ok((id.to_string(), Some(mode_rw(m))))
        }
        Some(m) => Err(invalid(format!("invalid mode: {m}"))),
    }
}

/// Every mount of a new container in Docker's order of precedence: image `VOLUME`s, then
/// `--volumes-from` (whose mounts `from` looks up), then `-v`, then `--mount` (a destination
/// given twice among these two is an error), then `--tmpfs`, which replaces any other mount of
/// its destination.
pub fn plan(
    host: &HostConfig,
    image_volumes: &[String],
    from: &mut dyn FnMut(&str) -> Result<Vec<MountEntry>, crate::VolumeError>,
) -> Result<Vec<Planned>> {
    let mut out: Vec<Planned> = Vec::new();
    let replace = |out: &mut Vec<Planned>, p: Planned| {
        out.retain(|o| o.entry.destination != p.entry.destination);
        out.push(p);
    };
    for dest in image_volumes {
        let mut p = parse_bind(dest, "").map_err(|e| invalid(format!("image volume: {e}")))?;
        p.entry.mode = String::new();
        replace(&mut out, p);
    }
    for spec in host.volumes_from.iter().flatten() {
        let (id, rw) = parse_volumes_from(spec)?;
        for mut e in from(&id)? {
            if let Some(rw) = rw {
                e.rw = rw;
            }
            // The volumes belong to the other container: never removed with this one.
            e.anonymous = false;
            replace(
                &mut out,
                Planned {
                    entry: e,
                    ..Default::default()
                },
            );
        }
    }
    let mut seen = HashSet::new();
    let volume_driver = host.volume_driver.clone();
    for raw in host.binds.iter().flatten() {
        let p = parse_bind(raw, &volume_driver)?;
        if !seen.insert(p.entry.destination.clone()) {
            return Err(invalid(format!(
                "Duplicate mount point: {}",
                p.entry.destination
            )));
        }
        replace(&mut out, p);
    }
    for m in host.mounts.iter().flatten() {
        let p = parse_mount(m)?;
        if !seen.insert(p.entry.destination.clone()) {
            return Err(invalid(format!("Duplicate mount point: {}", m.target)));
        }
        replace(&mut out, p);
    }
    for (dest, opts) in host.tmpfs.iter().flatten() {
        replace(&mut out, parse_tmpfs(dest, opts)?);
    }
    for p in &out {
        if p.entry.kind == MountKind::Volume && !["", "local"].contains(&p.entry.driver.as_str()) {
            return Err(invalid(format!(
                "error looking up volume plugin {0}: plugin \"{0}\" not found",
                p.entry.driver
            )));
        }
    }
    // Parents before children, so a mount inside another mount lands on top of it.
    out.sort_by_key(|p| p.entry.destination.matches('/').count());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::models::container::{BindOptions, TmpfsOptions, VolumeOptions};

    fn err(raw: &str) -> String {
        parse_bind(raw, "").unwrap_err().to_string()
    }

    #[test]
    fn binds_parse_like_dockers() {
        let p = parse_bind("data:/data:ro,nocopy", "").unwrap().entry;
        assert_eq!(p.kind, MountKind::Volume);
        assert_eq!((p.name.as_str(), p.destination.as_str()), ("data", "/data"));
        assert!(!p.rw && !p.copy_data && !p.anonymous);
        assert_eq!(p.mode, "ro,nocopy");
        let p = parse_bind("data:/data", "").unwrap().entry;
        assert_eq!(p.mode, "z");
        assert!(p.rw && p.copy_data);
        let p = parse_bind("/var/log", "").unwrap().entry;
        assert!(p.anonymous && p.name.is_empty());
        let p = parse_bind("/host/x/:/x/./y:ro,rshared", "").unwrap();
        assert!(p.entry.create_source);
        assert_eq!(p.entry.kind, MountKind::Bind);
        assert_eq!(p.entry.source, "/host/x");
        assert_eq!(p.entry.destination, "/x/y");
        assert_eq!(p.entry.propagation, "rshared");
        assert_eq!(p.entry.mode, "ro,rshared");
        assert_eq!(
            parse_bind("/h:/x", "").unwrap().entry.propagation,
            "rprivate"
        );

        assert_eq!(err("nm:/x:bogus"), "invalid mode: bogus");
        assert_eq!(err("nm:/x:ro,rw"), "invalid mode: ro,rw");
        assert_eq!(err("/x:rw"), "invalid volume specification: '/x:rw'");
        assert_eq!(err("a:b:c:d"), "invalid volume specification: 'a:b:c:d'");
        assert_eq!(
            err("nm:rel"),
            "invalid volume specification: 'nm:rel': invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            err("/tmp/x:/"),
            "invalid volume specification: '/tmp/x:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        );
        assert_eq!(
            err("./rel:/x"),
            "create ./rel: \"./rel\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        assert!(err("/tmp/x:/proc").contains("cannot be mounted because it is not of type proc"));
        assert!(err("/tmp/x:/proc/sys").contains("inside /proc"));
        parse_bind("/tmp/x:/proc/cpuinfo", "").unwrap();
        assert!(valid_mode("ro,z,rslave,nocopy,cached"));
        assert!(!valid_mode("shared,slave"));
    }

    #[test]
    fn mounts_parse_like_dockers() {
        let m = |json: &str| -> Mount { serde_json::from_str(json).unwrap() };
        let e = |json: &str| parse_mount(&m(json)).unwrap_err().to_string();
        assert_eq!(
            e(r#"{"Type":"bind","Target":"/x"}"#),
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(
            e(r#"{"Type":"bind","Source":"rel","Target":"/x"}"#),
            "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            e(r#"{"Type":"volume","Target":"/x","ReadOnly":true}"#),
            "invalid mount config for type \"volume\": must not set ReadOnly mode when using anonymous volumes"
        );
        assert_eq!(
            e(r#"{"Type":"tmpfs","Source":"x","Target":"/x"}"#),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            e(r#"{"Type":"weird","Target":"/x"}"#),
            "invalid mount config for type \"weird\": mount type unknown"
        );
        let b = parse_mount(&Mount {
            kind: "bind".into(),
            source: "/h".into(),
            target: "/x".into(),
            bind_options: Some(BindOptions {
                propagation: "rslave".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        assert!(!b.entry.create_source);
        assert_eq!(b.entry.propagation, "rslave");
        let v = parse_mount(&Mount {
            kind: "volume".into(),
            source: "data".into(),
            target: "/x".into(),
            volume_options: Some(VolumeOptions {
                no_copy: true,
                labels: Some([("a".to_string(), "b".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        assert!(!v.entry.copy_data);
        assert_eq!(v.entry.mode, "z");
        assert!(v.volume_labels.is_some());
        let t = parse_mount(&Mount {
            kind: "tmpfs".into(),
            target: "/t".into(),
            tmpfs_options: Some(TmpfsOptions {
                size_bytes: 1 << 20,
                mode: 0o1777,
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(t.entry.tmpfs_options, vec!["size=1048576", "mode=1777"]);
    }

    #[test]
    fn plan_orders_and_rejects_duplicates() {
        let host = HostConfig {
            binds: Some(vec!["a1:/x".into(), "/h:/x/y".into()]),
            tmpfs: Some([("/x/y".to_string(), "size=1m,ro".to_string())].into()),
            volumes_from: Some(vec!["other:ro".into()]),
            ..Default::default()
        };
        let mut from = |id: &str| {
            assert_eq!(id, "other");
            Ok(vec![MountEntry {
                kind: MountKind::Volume,
                name: "shared".into(),
                destination: "/shared".into(),
                rw: true,
                anonymous: true,
                ..Default::default()
            }])
        };
        let p = plan(&host, &["/x".into(), "/img".into()], &mut from).unwrap();
        let dests: Vec<_> = p.iter().map(|p| p.entry.destination.as_str()).collect();
        assert_eq!(dests, ["/img", "/shared", "/x", "/x/y"]);
        let x = &p[2].entry;
        assert_eq!(x.name, "a1", "-v replaces the image volume");
        assert!(!p[1].entry.rw && !p[1].entry.anonymous);
        assert_eq!(p[3].entry.kind, MountKind::Tmpfs);
        assert!(!p[3].entry.rw);

        let dup = HostConfig {
            binds: Some(vec!["a1:/x".into(), "b1:/x".into()]),
            ..Default::default()
        };
        let mut none = |_: &str| Ok(Vec::new());
        assert_eq!(
            plan(&dup, &[], &mut none).unwrap_err().to_string(),
            "Duplicate mount point: /x"
        );
        assert_eq!(
            parse_volumes_from("c:bogus").unwrap_err().to_string(),
            "invalid mode: bogus"
        );
        assert_eq!(
            parse_volumes_from("c:ro").unwrap(),
            ("c".into(), Some(false))
        );
    }
}
