//! Rootless berthd: the daemon run by an ordinary user (`--rootless`, or any start with an
//! effective uid other than 0).
//!
//! Two processes, as rootlesskit arranges them. The *parent* (started by the user, in the
//! host's namespaces) checks what the mode needs, then re-executes berthd as the *child* in a
//! new user namespace with a mount and a network namespace of its own. It maps the user
//! namespace with `newuidmap`/`newgidmap` (root in it is the user; 1..=N are the user's
//! subordinate ids from /etc/subuid and /etc/subgid), gives the network namespace outbound
//! networking with `slirp4netns`, and binds published ports in the host's network namespace
//! for the child (see [`ports`]). The child is an ordinary berthd from there on: root in its
//! namespaces, with its data under `$XDG_DATA_HOME/berth` and its socket and exec root under
//! `$XDG_RUNTIME_DIR`. Containers run in the child's user namespace, so container root is the
//! user's own uid on the host and the other container ids are the user's subordinate ids.
//!
//! Cgroups: on cgroup v2, when the cgroup berthd was started in is delegated to the user
//! (systemd's `Delegate=yes`), the daemon moves into its leaf `berthd`, enables the delegated
//! controllers and mounts it writable as its cgroup namespace's root: containers get cgroups
//! under it, with their limits (see [`cgroup`]). Otherwise (v1, or v2 without delegation) an
//! ordinary user cannot create cgroups: the child mounts its cgroup2 read-only, the runtime
//! places containers in no cgroup, and resource limits are discarded with dockerd's "cgroup is
//! not mounted" warnings.

pub mod cgroup;
pub mod child;
pub mod parent;
pub mod ports;

use std::path::{Path, PathBuf};

use crate::config::Flags;

/// The environment variable that tells berthd it is the child: `<sync-read>,<sync-write>,
/// <ports>` file descriptors inherited from the parent.
pub const CHILD_ENV: &str = "_BERTH_ROOTLESS_CHILD";

/// Whether this start is rootless: asked for, or not run by root.
pub fn wanted(flags: &Flags) -> bool {
    flags.rootless || !rustix::process::geteuid().is_root()
}

/// The directories of a rootless daemon, from the XDG variables (as rootless dockerd:
/// `$XDG_DATA_HOME/berth`, `$XDG_RUNTIME_DIR/berth`, `$XDG_RUNTIME_DIR/berth.sock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    /// `$XDG_CONFIG_HOME/berth/daemon.json`.
    pub config_file: PathBuf,
}

impl Dirs {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Dirs, String> {
        let runtime = env("XDG_RUNTIME_DIR").ok_or(
            "rootless mode needs $XDG_RUNTIME_DIR (a directory of the user's own, such as /run/user/$(id -u), which systemd-logind makes at login)",
        )?;
        let home = env("HOME");
        let xdg = |var: &str, under_home: &str| -> Result<PathBuf, String> {
            env(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| Path::new(h).join(under_home)))
                .ok_or_else(|| format!("rootless mode needs ${var} or $HOME"))
        };
        let runtime = PathBuf::from(runtime);
        Ok(Dirs {
            data_root: xdg("XDG_DATA_HOME", ".local/share")?.join("berth"),
            exec_root: runtime.join("berth"),
            socket: runtime.join("berth.sock"),
            pidfile: runtime.join("berth").join("berthd.pid"),
            config_file: xdg("XDG_CONFIG_HOME", ".config")?.join("berth/daemon.json"),
        })
    }
}

/// A rootless daemon's default configuration file (read when it exists):
/// `$XDG_CONFIG_HOME/berth/daemon.json`. `None` for a root daemon.
pub fn default_config_file() -> Option<PathBuf> {
    if !is_child() {
        return None;
    }
    Dirs::from_env(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .ok()
        .map(|d| d.config_file)
}

/// The parts of the configuration a rootless daemon puts under the user's directories, where
/// neither a flag nor the file chose: called on the loaded configuration.
pub fn apply_dirs(config: &mut crate::config::Config, flags: &Flags, dirs: &Dirs) {
    use crate::config::{DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT, DEFAULT_HOST};
    if config.data_root == Path::new(DEFAULT_DATA_ROOT) {
        config.data_root = dirs.data_root.clone();
    }
    if config.exec_root == Path::new(DEFAULT_EXEC_ROOT) {
        if config.pidfile == Path::new(DEFAULT_EXEC_ROOT).join("berthd.pid") {
            config.pidfile = dirs.pidfile.clone();
        }
        config.exec_root = dirs.exec_root.clone();
    }
    if flags.hosts.is_empty()
        && config.hosts.len() == 1
        && config.hosts[0].to_string() == DEFAULT_HOST
        && let Ok(host) = crate::config::Host::parse(&format!("unix://{}", dirs.socket.display()))
    {
        config.hosts = vec![host];
    }
}

/// A user's first subordinate range in an /etc/subuid-style file: by name or by uid, as
/// newuidmap matches them.
pub fn subordinate_range(file: &Path, user: &str, uid: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != user && who.parse::<u32>().ok() != Some(uid) {
            return None;
        }
        let (start, count) = (start.parse().ok()?, count.parse().ok()?);
        (count > 0).then_some((start, count))
    })
}

/// A program on `$PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether this process is a rootless daemon's child (in its namespaces).
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some() || child::ACTIVE.get().is_some()
}

/// Stops every running container (their stop timeouts and signals): a rootless daemon's
/// containers live in its namespaces, which a restarted daemon does not share (it makes new
/// ones), so none could be adopted.
pub async fn stop_containers(ctrs: &berth_container::Containers) {
    let running = ctrs
        .list(false, None, berth_container::filters::ListFilter::default())
        .unwrap_or_default();
    if !running.is_empty() {
        tracing::info!(
            count = running.len(),
            "rootless: stopping the containers (they cannot outlive the daemon's namespaces)"
        );
    }
    let stops = running.iter().map(|c| ctrs.stop(&c.id, None, None));
    for result in futures_util::future::join_all(stops).await {
        if let Err(e) = result {
            tracing::warn!(error = %e, "rootless: stopping a container at shutdown");
        }
    }
}

/// `/info`'s warnings about the mode, in dockerd's words: without cgroups (v1, or v2 without
/// delegation), or the controllers a delegated cgroup lacks (`has`).
pub fn info_warnings(rootless: bool, no_cgroups: bool, has: &dyn Fn(&str) -> bool) -> Vec<String> {
    if !rootless {
        return Vec::new();
    }
    if no_cgroups {
        let how = if crate::sysinfo::cgroup_version() == "2" {
            "To enable cgroups in rootless-mode, start berthd in a cgroup delegated to the user (a systemd user unit with Delegate=yes)."
        } else {
            "To enable cgroups in rootless-mode, you need to boot the system in cgroup v2 mode."
        };
        return vec![format!(
            "WARNING: Running in rootless-mode without cgroups. Resource limits (--memory, --cpus, --pids-limit, ...) are discarded with a warning. {how}"
        )];
    }
    let mut w = Vec::new();
    if !has("memory") {
        w.push("WARNING: No memory limit support".to_string());
    }
    if !has("cpu") {
        w.push("WARNING: No cpu cfs quota support".to_string());
        w.push("WARNING: No cpu cfs period support".to_string());
        w.push("WARNING: No cpu shares support".to_string());
    }
    if !has("cpuset") {
        w.push("WARNING: No cpuset support".to_string());
    }
    if !has("pids") {
        w.push("WARNING: No pids limit support".to_string());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_follow_xdg() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let d = Dirs::from_env(&env(&[
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("HOME", "/home/u"),
        ]))
        .unwrap();
        assert_eq!(d.data_root, Path::new("/home/u/.local/share/berth"));
        assert_eq!(d.socket, Path::new("/run/user/1000/berth.sock"));
        assert_eq!(d.exec_root, Path::new("/run/user/1000/berth"));
        assert_eq!(
            d.config_file,
            Path::new("/home/u/.config/berth/daemon.json")
        );
        let d = Dirs::from_env(&env(&[
            ("XDG_RUNTIME_DIR", "/r"),
            ("XDG_DATA_HOME", "/data"),
            ("HOME", "/home/u"),
        ]))
        .unwrap();
        assert_eq!(d.data_root, Path::new("/data/berth"));
        let err = Dirs::from_env(&env(&[("HOME", "/home/u")])).unwrap_err();
        assert!(err.contains("XDG_RUNTIME_DIR"), "{err}");
    }

    #[test]
    fn info_warns_for_each_controller_not_delegated() {
        let has = |c: &str| c == "memory" || c == "pids";
        let w = info_warnings(true, false, &has);
        assert_eq!(
            w,
            [
                "WARNING: No cpu cfs quota support",
                "WARNING: No cpu cfs period support",
                "WARNING: No cpu shares support",
                "WARNING: No cpuset support",
            ]
        );
        assert!(info_warnings(true, false, &|_| true).is_empty());
        assert!(info_warnings(false, true, &|_| false).is_empty());
        let none = info_warnings(true, true, &|_| false);
        assert!(
            none[0].contains("rootless-mode without cgroups"),
            "{none:?}"
        );
    }

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subuid");
        std::fs::write(&file, "alice:100000:65536\n1001:200000:1000\nbob:1:0\n").unwrap();
        assert_eq!(
            subordinate_range(&file, "alice", 1000),
            Some((100000, 65536))
        );
        assert_eq!(
            subordinate_range(&file, "carol", 1001),
            Some((200000, 1000))
        );
        assert_eq!(
            subordinate_range(&file, "bob", 1002),
            None,
            "an empty range"
        );
        assert_eq!(subordinate_range(&file, "dave", 1003), None);
    }
}
