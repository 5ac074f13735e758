//! `--userns-remap`: which subordinate id ranges containers run in, and the remapped data
//! root (`<data-root>/<uid>.<gid>/`), with dockerd's rules and error messages
//! (`daemon/daemon_unix.go`: `parseRemappedRoot`, `setupRemappedRoot`, `setupDaemonRoot`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::idmap::IdMapping;

/// `--userns-remap default` means this user (created with its ranges when missing).
pub const DEFAULT_REMAP_USER: &str = "dockremap";
const DEFAULT_RANGE_START: u64 = 100_000;
const DEFAULT_RANGE_LEN: u64 = 65_536;

/// Where the account databases are; tests of the parsing use other files.
#[derive(Debug, Clone)]
pub struct Files {
    pub passwd: PathBuf,
    pub group: PathBuf,
    pub subuid: PathBuf,
    pub subgid: PathBuf,
}

impl Default for Files {
    fn default() -> Self {
        Files {
            passwd: "/etc/passwd".into(),
            group: "/etc/group".into(),
            subuid: "/etc/subuid".into(),
            subgid: "/etc/subgid".into(),
        }
    }
}

/// `name:x:id:...` entries of a passwd or group file.
fn entries(path: &Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.trim();
            let id = f.nth(1)?.trim().parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_string(), id))
        })
        .collect()
}

fn by_name(path: &Path, name: &str) -> Option<u32> {
    entries(path)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|e| e.1)
}

fn by_id(path: &Path, id: u32) -> Option<String> {
    entries(path)
        .into_iter()
        .find(|(_, i)| *i == id)
        .map(|e| e.0)
}

/// The `--userns-remap` value resolved to a user and a group name, as dockerd's
/// `parseRemappedRoot`; `default` creates [`DEFAULT_REMAP_USER`] when it does not exist.
pub fn parse_remapped_root(spec: &str, files: &Files) -> Result<(String, String), String> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() > 2 {
        return Err(format!(
            "Invalid user/group specification in --userns-remap: {spec:?}"
        ));
    }
    let (user, mut group) = if let Ok(uid) = parts[0].parse::<i32>() {
        let user = by_id(&files.passwd, uid as u32).ok_or_else(|| {
            format!("Uid {uid} has no entry in /etc/passwd: no matching entries in passwd file")
        })?;
        let group = if parts.len() == 1 {
            Some(by_id(&files.group, uid as u32).ok_or_else(|| {
                format!("Gid {uid} has no entry in /etc/group: no matching entries in group file")
            })?)
        } else {
            None
        };
        (user, group)
    } else {
        let name = if parts[0] == "default" {
            DEFAULT_REMAP_USER
        } else {
            parts[0]
        };
        if by_name(&files.passwd, name).is_none() {
            if parts[0] != "default" {
                return Err(format!(
                    "Error during uid lookup for {name:?}: no matching entries in passwd file"
                ));
            }
            add_remap_user(name, files)
                .map_err(|e| format!("Error during {name:?} user creation: {e}"))?;
            return Ok((name.to_string(), name.to_string()));
        }
        let group = if parts.len() == 1 {
            by_name(&files.group, name).ok_or_else(|| {
                format!("Error during gid lookup for {name:?}: no matching entries in group file")
            })?;
            Some(name.to_string())
        } else {
            None
        };
        (name.to_string(), group)
    };
    if let Some(g) = parts.get(1) {
        group = Some(if let Ok(gid) = g.parse::<i32>() {
            by_id(&files.group, gid as u32).ok_or_else(|| {
                format!("Gid {gid} has no entry in /etc/passwd: no matching entries in group file")
            })?
        } else {
            by_name(&files.group, g).ok_or_else(|| {
                format!(
                    "Error during groupname lookup for {g:?}: no matching entries in group file"
                )
            })?;
            g.to_string()
        });
    }
    Ok((user, group.unwrap_or_default()))
}

/// `(start, count)` ranges of `user` (by name or uid) in a subordinate id file, in order.
fn sub_ranges(path: &Path, user: &str, uid: Option<u32>) -> Result<Vec<(u64, u64)>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let uid = uid.map(|u| u.to_string());
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        let parsed = match f.as_slice() {
            [name, start, count] => start
                .parse::<u64>()
                .ok()
                .zip(count.parse::<u64>().ok())
                .map(|r| (*name, r)),
            _ => None,
        };
        let Some((name, range)) = parsed else {
            return Err(format!(
                "invalid subid line in {}: {line:?}",
                path.display()
            ));
        };
        if name == user || Some(name) == uid.as_deref() {
            out.push(range);
        }
    }
    Ok(out)
}

/// Every range of a subordinate id file (for finding a free one).
fn all_ranges(path: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            match f.as_slice() {
                [_, s, c] => s.parse().ok().zip(c.parse().ok()),
                _ => None,
            }
        })
        .collect()
}

/// The first free range of [`DEFAULT_RANGE_LEN`] ids from 100000 (dockerd's
/// `findNextRangeStart`).
fn next_range_start(mut ranges: Vec<(u64, u64)>) -> u64 {
    ranges.sort();
    let mut start = DEFAULT_RANGE_START;
    for (s, c) in ranges {
        let high = start + DEFAULT_RANGE_LEN;
        if (start >= s && start <= s + c) || (high <= s + c && high >= s) {
            start = s + c;
        }
    }
    start
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}; output: {:?}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// dockerd's `AddNamespaceRangesUser`: a system user (useradd makes no ranges for those),
/// then a free 65536-id range in each of /etc/subuid and /etc/subgid unless it has one.
fn add_remap_user(name: &str, files: &Files) -> Result<(), String> {
    run("useradd", &["-r", "-s", "/bin/false", name])
        .map_err(|e| format!("error adding user {name:?}: {e}"))?;
    for (file, flag) in [(&files.subuid, "-v"), (&files.subgid, "-w")] {
        if sub_ranges(file, name, None)?.is_empty() {
            let start = next_range_start(all_ranges(file));
            let range = format!("{start}-{}", start + DEFAULT_RANGE_LEN - 1);
            run("usermod", &[flag, &range, name]).map_err(|e| {
                format!("couldn't create subordinate ID ranges: unable to add range to user: {name:?}: {e}")
            })?;
        }
    }
    Ok(())
}

/// The id mapping of a resolved remap user: its first ranges in /etc/subuid and
/// /etc/subgid (libcontainer writes one line per map without newuidmap).
pub fn load_mapping(user: &str, files: &Files) -> Result<IdMapping, String> {
    let uid = by_name(&files.passwd, user)
        .ok_or_else(|| format!("could not get user for username {user}: no such user"))?;
    let first = |path: &Path| -> Result<(u64, u64), String> {
        let ranges = sub_ranges(path, user, Some(uid))?;
        if ranges.len() > 1 {
            tracing::warn!(
                file = %path.display(),
                "user namespaces: only the first subordinate range of {user:?} is used"
            );
        }
        ranges
            .first()
            .copied()
            .ok_or_else(|| format!("no subuid ranges found for user {user:?}"))
    };
    let (u, uc) = first(&files.subuid)?;
    let (g, gc) = first(&files.subgid)?;
    let fit = |v: u64| u32::try_from(v).map_err(|_| format!("subordinate id {v} out of range"));
    Ok(IdMapping {
        uid: fit(u)?,
        uid_count: fit(uc)?,
        gid: fit(g)?,
        gid_count: fit(gc)?,
    })
}

/// `--userns-remap SPEC`: the mapping, or `None` when it names root (dockerd turns user
/// namespaces off then, with a warning). Errors read as dockerd's.
pub fn setup_remapped_root(spec: &str, files: &Files) -> Result<Option<IdMapping>, String> {
    let (user, group) = parse_remapped_root(spec, files)?;
    if user == "root" {
        tracing::warn!(
            "User namespaces: root cannot be remapped with itself; user namespaces are OFF"
        );
        return Ok(None);
    }
    tracing::info!(
        "User namespaces: ID ranges will be mapped to subuid/subgid ranges of: {user}:{group}"
    );
    load_mapping(&user, files)
        .map(Some)
        .map_err(|e| format!("error creating ID mappings: {e}"))
}

/// dockerd's `setupDaemonRoot` for a remapped root: `root` 0711 (anyone may traverse it),
/// `<root>/<uid>.<gid>` 0710 owned by root and the remapped root's group (so the container's
/// root reaches its layers), and every directory above must let the remapped root through.
/// Returns the remapped data root.
pub fn setup_daemon_root(root: &Path, map: &IdMapping) -> Result<PathBuf, String> {
    let ctx = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    if root.exists() {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| ctx("cannot set permissions of", root, e))?;
    } else {
        std::fs::create_dir_all(root).map_err(|e| ctx("cannot create", root, e))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| ctx("cannot set permissions of", root, e))?;
    }
    let remapped = root.join(format!("{}.{}", map.uid, map.gid));
    std::fs::create_dir_all(&remapped)
        .map_err(|e| format!("Cannot create daemon root: {}: {e}", remapped.display()))?;
    std::os::unix::fs::chown(&remapped, Some(0), Some(map.gid))
        .and_then(|()| std::fs::set_permissions(&remapped, std::fs::Permissions::from_mode(0o710)))
        .map_err(|e| format!("Cannot create daemon root: {}: {e}", remapped.display()))?;
    let mut dir = remapped.as_path();
    while let Some(parent) = dir.parent() {
        if parent == Path::new("/") {
            break;
        }
        if !can_access(parent, map) {
            return Err(format!(
                "a subdirectory in your graphroot path ({}) restricts access to the remapped root uid/gid; please fix by allowing 'o+x' permissions on existing directories",
                remapped.display()
            ));
        }
        dir = parent;
    }
    Ok(remapped)
}

/// dockerd's `canAccess`: search permission for the remapped root's uid or gid, or others.
fn can_access(path: &Path, map: &IdMapping) -> bool {
    let Ok(m) = std::fs::metadata(path) else {
        return false;
    };
    let mode = m.mode();
    mode & 0o001 != 0
        || (m.uid() == map.uid && mode & 0o100 != 0)
        || (m.gid() == map.gid && mode & 0o010 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, subuid: &str, subgid: &str) -> Files {
        let f = Files {
            passwd: dir.join("passwd"),
            group: dir.join("group"),
            subuid: dir.join("subuid"),
            subgid: dir.join("subgid"),
        };
        std::fs::write(
            &f.passwd,
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1500:1500::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(&f.group, "root:x:0:\nalice:x:1500:\nstaff:x:50:\n").unwrap();
        std::fs::write(&f.subuid, subuid).unwrap();
        std::fs::write(&f.subgid, subgid).unwrap();
        f
    }

    #[test]
    fn remap_specs_resolve_as_dockerd() {
        let d = tempfile::tempdir().unwrap();
        let f = files(d.path(), "alice:200000:65536\n", "1500:300000:1000\n");
        let p = |s| parse_remapped_root(s, &f);
        assert_eq!(p("alice").unwrap(), ("alice".into(), "alice".into()));
        assert_eq!(p("alice:staff").unwrap(), ("alice".into(), "staff".into()));
        assert_eq!(p("1500").unwrap(), ("alice".into(), "alice".into()));
        assert_eq!(p("1500:50").unwrap(), ("alice".into(), "staff".into()));
        assert_eq!(
            p("a:b:c").unwrap_err(),
            "Invalid user/group specification in --userns-remap: \"a:b:c\""
        );
        assert!(
            p("bob")
                .unwrap_err()
                .starts_with("Error during uid lookup for \"bob\"")
        );
        assert!(
            p("4242")
                .unwrap_err()
                .starts_with("Uid 4242 has no entry in /etc/passwd")
        );
        assert!(
            p("alice:nogroup")
                .unwrap_err()
                .starts_with("Error during groupname lookup")
        );
        // Ranges by name in subuid, by uid in subgid.
        let m = setup_remapped_root("alice", &f).unwrap().unwrap();
        assert_eq!(
            m,
            IdMapping {
                uid: 200000,
                uid_count: 65536,
                gid: 300000,
                gid_count: 1000
            }
        );
        assert_eq!(setup_remapped_root("root", &f).unwrap(), None);
    }

    #[test]
    fn a_user_without_ranges_is_dockerds_error() {
        let d = tempfile::tempdir().unwrap();
        let f = files(d.path(), "other:100000:65536\n", "alice:100000:65536\n");
        assert_eq!(
            setup_remapped_root("alice", &f).unwrap_err(),
            "error creating ID mappings: no subuid ranges found for user \"alice\""
        );
    }

    #[test]
    fn free_ranges_skip_taken_ones() {
        assert_eq!(next_range_start(vec![]), 100000);
        assert_eq!(next_range_start(vec![(100000, 65536)]), 165536);
        assert_eq!(
            next_range_start(vec![(165536, 65536), (100000, 65536)]),
            231072
        );
        assert_eq!(next_range_start(vec![(500000, 10)]), 100000);
    }
}
