//! Resolving `--user` and `--group-add` against the image's `/etc/passwd` and `/etc/group`,
//! read from the mounted root filesystem without following symlinks out of it.

use std::io::Read;
use std::path::Path;

use berth_runtime::config::ProcessUser;

use crate::error::{Result, invalid};

/// Reads a file inside `root`, resolving the path as if `root` were `/`
/// (`openat2(RESOLVE_IN_ROOT)`). A missing file reads as empty.
pub fn read_in_root(root: &Path, path: &str) -> String {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let Ok(dir) = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return String::new();
    };
    let Ok(fd) = rustix::fs::openat2(
        &dir,
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) else {
        return String::new();
    };
    let mut text = String::new();
    let _ = std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut text);
    text
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The home directory of `uid` in the given passwd text, `/` when it has none (as runc).
///
/// The container's `HOME` comes from here when the configuration does not set it. Otherwise
/// libcontainer looks the user up itself inside the container's root with glibc, whose NSS
/// may load modules the image ships, in a process that still holds privileges.
pub fn home(uid: u32, passwd: &str) -> String {
    parse_passwd(passwd)
        .into_iter()
        .find(|e| e.uid == uid && !e.home.is_empty())
        .map(|e| e.home)
        .unwrap_or_else(|| "/".into())
}

/// Resolves `user` (`""`, `name`, `uid`, `uid:gid`, `name:group`, ...) and `group_add` against
/// the given passwd and group texts, with Docker's error messages.
pub fn resolve(user: &str, group_add: &[String], passwd: &str, group: &str) -> Result<ProcessUser> {
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let (uid, mut gid, name) = match users.iter().find(|e| e.name == u || e.uid.to_string() == u) {
        Some(e) if e.name == u || u.parse::<u32>().is_ok() => (e.uid, e.gid, Some(e.name.clone())),
        _ => match u.parse::<u32>() {
            Ok(uid) => (uid, 0, None),
            Err(_) => {
                return Err(invalid(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                )));
            }
        },
    };
    let find_group = |g: &str| -> Result<u32> {
        if let Some(e) = groups.iter().find(|e| e.name == g) {
            return Ok(e.gid);
        }
        g.parse::<u32>().map_err(|_| {
            invalid(format!(
                "unable to find group {g}: no matching entries in group file"
            ))
        })
    };
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        gid = find_group(g)?;
    }
    let mut additional: Vec<u32> = Vec::new();
    if let Some(name) = &name {
        for e in &groups {
            if e.members.iter().any(|m| m == name) && e.gid != gid && !additional.contains(&e.gid) {
                additional.push(e.gid);
            }
        }
    }
    for g in group_add {
        let id = groups
            .iter()
            .find(|e| e.name == *g)
            .map(|e| e.gid)
            .or_else(|| g.parse().ok())
            .ok_or_else(|| {
                invalid(format!(
                    "Unable to find group {g}: no matching entries in group file"
                ))
            })?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn home_comes_from_passwd_or_is_slash() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nodd:x:7:7\n";
        assert_eq!(home(0, passwd), "/root");
        assert_eq!(home(33, passwd), "/var/www");
        assert_eq!(home(7, passwd), "/", "an entry without a home field");
        assert_eq!(home(1000, passwd), "/", "no entry");
        assert_eq!(home(0, ""), "/", "no passwd file");
    }

    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:www\n";

    fn r(u: &str) -> Result<ProcessUser> {
        resolve(u, &[], PASSWD, GROUP)
    }

    #[test]
    fn resolves_users_like_docker() {
        assert_eq!(r("").unwrap().uid, 0);
        let www = r("www").unwrap();
        assert_eq!(
            (www.uid, www.gid, www.additional_gids.clone()),
            (33, 33, vec![50])
        );
        assert_eq!(r("33").unwrap().gid, 33);
        let numeric = r("1000:1000").unwrap();
        assert_eq!((numeric.uid, numeric.gid), (1000, 1000));
        assert_eq!(r("1000").unwrap().gid, 0);
        assert_eq!(r("www:root").unwrap().gid, 0);
        assert_eq!(
            r("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            r("www:nogroup").unwrap_err().to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        let added = resolve("", &["staff".into(), "7".into()], PASSWD, GROUP).unwrap();
        assert_eq!(added.additional_gids, vec![50, 7]);
    }

    #[test]
    fn reads_files_inside_the_root_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(d.path().join("secret"), "outside").unwrap();
        std::fs::write(root.join("etc/passwd"), "inside").unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("etc/escape")).unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("etc/abs")).unwrap();
        assert_eq!(read_in_root(&root, "/etc/passwd"), "inside");
        assert_eq!(read_in_root(&root, "/etc/escape"), "");
        assert_eq!(read_in_root(&root, "/etc/abs"), "");
        assert_eq!(read_in_root(&root, "/etc/missing"), "");
    }
}
