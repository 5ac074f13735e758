//! What the runtime is given to run a container: its record turned into a
//! [`ContainerRunConfig`] at every start.

use std::path::{Path, PathBuf};

use berth_api::models::Resources as ApiResources;
use berth_api::vocab::{NamespaceMode as Mode, NetworkMode, SecurityOpts};
use berth_runtime::cgroups::CgroupVersion;
use berth_runtime::config::{
    ContainerRunConfig, DeviceSpec, MountKind, MountSpec, NamespaceMode, NamespaceModes,
    OciRuntime, ProcessUser, Resources, SeccompMode, Ulimit,
};

use super::Containers;
use crate::error::{Result, conflict, invalid};
use crate::network::NetworkStart;
use crate::record::{Paths, Record};
use crate::user;

impl Containers {
    /// The `/dev/shm` a container gets for its IPC mode: `None` keeps the runtime's own.
    pub(super) fn ipc_shm(&self, r: &Record, paths: &Paths) -> Result<Option<PathBuf>> {
        let target = match r.ipc_mode() {
            Mode::Shareable => return Ok(Some(paths.shm())),
            Mode::Container(target) => target,
            _ => return Ok(None),
        };
        let donor = self.get(&target)?;
        match donor.record().ipc_mode() {
            Mode::Shareable => Ok(Some(donor.paths.shm())),
            Mode::Host => Ok(Some(PathBuf::from("/dev/shm"))),
            _ => Err(invalid(
                "non-shareable IPC (hint: use IpcMode:shareable for the donor container)",
            )),
        }
    }

    /// The `kind` namespace (`pid`, `ipc`, `uts`) for its mode; a mode that does not parse
    /// (records are checked at create only for IPC) is a private namespace.
    pub(super) fn namespace(&self, mode: &str, kind: &str) -> Result<NamespaceMode> {
        match Mode::parse(mode) {
            Ok(Mode::Host) => Ok(NamespaceMode::Host),
            Ok(Mode::Container(target)) => self.join(&target, kind),
            _ => Ok(NamespaceMode::Private),
        }
    }

    /// The `kind` namespace of the running container `target`.
    fn join(&self, target: &str, kind: &str) -> Result<NamespaceMode> {
        let other = self.get(target)?;
        let r = other.record();
        if !r.state.status.is_running() || r.state.pid == 0 {
            return Err(conflict(format!(
                "cannot join {kind} namespace of a non running container: container {} is {}",
                other.id,
                r.state.status.as_str()
            )));
        }
        Ok(NamespaceMode::Path(PathBuf::from(format!(
            "/proc/{}/ns/{kind}",
            r.state.pid
        ))))
    }

    /// The run configuration of a start: what depends on the host, on other containers and
    /// on the network is resolved here; the rest is [`assemble`], a pure function of the
    /// record.
    pub(super) fn run_config(
        &self,
        r: &Record,
        paths: &Paths,
        root: &Path,
        net: &NetworkStart,
    ) -> Result<ContainerRunConfig> {
        let h = &r.host_config;
        let passwd = user::read_in_root(root, "/etc/passwd");
        let group = user::read_in_root(root, "/etc/group");
        let group_add = h.group_add.clone().unwrap_or_default();
        let user = user::resolve(&r.config.user, &group_add, &passwd, &group)?;
        let home = user::home(user.uid, &passwd);
        let namespaces = NamespaceModes {
            pid: self.namespace(&h.pid_mode, "pid")?,
            ipc: self.namespace(&h.ipc_mode, "ipc")?,
            uts: self.namespace(&h.uts_mode, "uts")?,
            net: self.net_namespace(r.network_mode(), net)?,
            cgroup: cgroup_namespace(&h.cgroupns_mode, CgroupVersion::host().is_v2()),
        };
        let mut mounts =
            crate::volumes::runtime_mounts(&self.inner.volumes, r, root, self.remap_of(r))?;
        if let Some(shm) = self.ipc_shm(r, paths)? {
            add_mount(&mut mounts, "/dev/shm", shm, false, vec!["rprivate".into()]);
        }
        // `--network container:X` takes X's network identity, as Docker does: its hostname,
        // /etc/hosts and /etc/resolv.conf.
        let (etc, hostname, domainname) = match r.network_mode().container() {
            Some(target) => {
                let donor = self.get(target)?;
                let dr = donor.record();
                (
                    donor.paths.clone(),
                    dr.config.hostname,
                    dr.config.domainname,
                )
            }
            None => (
                paths.clone(),
                r.config.hostname.clone(),
                r.config.domainname.clone(),
            ),
        };
        for (file, dest) in [
            (etc.hostname(), "/etc/hostname"),
            (etc.hosts(), "/etc/hosts"),
            (etc.resolv_conf(), "/etc/resolv.conf"),
        ] {
            add_mount(&mut mounts, dest, file, h.readonly_rootfs, Vec::new());
        }
        let mut cfg = assemble(
            r,
            Resolved {
                rootfs: root.to_path_buf(),
                user,
                home,
                namespaces,
                mounts,
                hostname,
                domainname,
                link_env: net.link_env.clone(),
                cgroup_path: self.cgroup_path(r),
                runtime: self.oci_runtime(&h.runtime)?,
                init_path: self.inner.init_path.clone(),
            },
        )?;
        cfg.userns = self.remap_of(r);
        if cfg.userns.is_some() {
            // dockerd: sharing another container's PID, IPC or network namespace means
            // sharing its user namespace (which owns them) as well.
            let donor = [h.pid_mode.as_str(), h.ipc_mode.as_str()]
                .into_iter()
                .filter_map(|m| match Mode::parse(m) {
                    Ok(Mode::Container(t)) => Some(t),
                    _ => None,
                })
                .chain(r.network_mode().container().map(str::to_string))
                .next();
            if let Some(donor) = donor
                && let NamespaceMode::Path(p) = self.join(&donor, "user")?
            {
                cfg.userns_path = Some(p);
            }
        }
        Ok(cfg)
    }

    /// The network namespace: the host's, another container's (its netns file while it
    /// runs, else its process's), the one the network service made, or a private one.
    fn net_namespace(&self, mode: &NetworkMode, net: &NetworkStart) -> Result<NamespaceMode> {
        match mode {
            NetworkMode::Host => Ok(NamespaceMode::Host),
            NetworkMode::Container(target) => {
                let other = self.get(target)?;
                let netns = self
                    .inner
                    .opts
                    .network
                    .as_ref()
                    .and_then(|n| n.0.netns_of(&other.id));
                match netns {
                    Some(p) if other.record().state.status.is_running() => {
                        Ok(NamespaceMode::Path(p))
                    }
                    _ => self.join(target, "net"),
                }
            }
            _ => Ok(match &net.netns {
                Some(p) => NamespaceMode::Path(p.clone()),
                None => NamespaceMode::Private,
            }),
        }
    }
}

/// The cgroup namespace for `--cgroupns`. Records always carry a mode (filled at create);
/// Docker's default for the host's cgroup version otherwise.
fn cgroup_namespace(mode: &str, host_v2: bool) -> NamespaceMode {
    match mode {
        "private" => NamespaceMode::Private,
        "host" => NamespaceMode::Host,
        _ if host_v2 => NamespaceMode::Private,
        _ => NamespaceMode::Host,
    }
}

/// Adds a bind mount of `source` at `dest` unless the user's mounts already cover `dest`.
fn add_mount(
    mounts: &mut Vec<MountSpec>,
    dest: &str,
    source: PathBuf,
    readonly: bool,
    options: Vec<String>,
) {
    if !mounts.iter().any(|m| m.destination == dest) {
        mounts.push(MountSpec {
            destination: dest.into(),
            kind: MountKind::Bind { source },
            readonly,
            options,
        });
    }
}

/// What [`Containers::run_config`] resolved outside the record.
struct Resolved {
    rootfs: PathBuf,
    user: ProcessUser,
    /// The user's home directory, `HOME` unless the environment sets one.
    home: String,
    namespaces: NamespaceModes,
    mounts: Vec<MountSpec>,
    hostname: String,
    domainname: String,
    /// Legacy links' variables.
    link_env: Vec<String>,
    cgroup_path: String,
    runtime: Option<OciRuntime>,
    /// docker-init, when installed.
    init_path: Option<PathBuf>,
}

/// The run configuration from the record and what the start resolved.
fn assemble(r: &Record, x: Resolved) -> Result<ContainerRunConfig> {
    let h = &r.host_config;
    let (seccomp, no_new_privileges) =
        security_options(h.security_opt.as_deref().unwrap_or_default())?;
    Ok(ContainerRunConfig {
        id: r.id.clone(),
        rootfs: x.rootfs,
        args: std::iter::once(r.path.clone())
            .chain(r.args.iter().cloned())
            .collect(),
        env: environment(
            r.config.env.as_deref().unwrap_or_default(),
            &x.link_env,
            &x.home,
        ),
        working_dir: r.config.working_dir.clone(),
        user: x.user,
        hostname: x.hostname,
        domainname: x.domainname,
        tty: r.config.tty,
        console_size: h
            .console_size
            .filter(|[rows, cols]| *rows > 0 && *cols > 0)
            .map(|[rows, cols]| {
                (
                    rows.min(u16::MAX as u64) as u16,
                    cols.min(u16::MAX as u64) as u16,
                )
            }),
        open_stdin: r.config.open_stdin,
        readonly_rootfs: h.readonly_rootfs,
        privileged: h.privileged,
        cap_add: h.cap_add.clone().unwrap_or_default(),
        cap_drop: h.cap_drop.clone().unwrap_or_default(),
        no_new_privileges,
        seccomp,
        namespaces: x.namespaces,
        resources: resources(&h.resources),
        shm_size: (h.shm_size > 0).then_some(h.shm_size as u64),
        no_dev_shm: r.ipc_mode() == Mode::None,
        mounts: x.mounts,
        devices: devices(&h.resources),
        device_cgroup_rules: h.resources.device_cgroup_rules.clone().unwrap_or_default(),
        ulimits: ulimits(&h.resources),
        masked_paths: h.masked_paths.clone(),
        readonly_paths: h.readonly_paths.clone(),
        sysctls: h.sysctls.clone().unwrap_or_default(),
        cgroup_path: Some(x.cgroup_path),
        runtime: x.runtime,
        init: h.resources.init.unwrap_or(false) && x.init_path.is_some(),
        init_path: x.init_path,
        stdin_once: r.config.stdin_once,
        log: r.log_config()?,
        ..Default::default()
    })
}

/// The seccomp mode and `no-new-privileges` from `--security-opt` (checked at create; a
/// record from before that check fails here).
fn security_options(opts: &[String]) -> Result<(SeccompMode, bool)> {
    let opts = SecurityOpts::parse(opts)?;
    let seccomp = match opts.seccomp() {
        None => SeccompMode::Default,
        Some("unconfined") => SeccompMode::Unconfined,
        Some(profile) => SeccompMode::Custom(profile.to_string()),
    };
    Ok((seccomp, opts.no_new_privileges()))
}

/// The process's environment: the container's, then links' variables it does not set, then
/// `HOME` unless set.
fn environment(own: &[String], link_env: &[String], home: &str) -> Vec<String> {
    let key = |v: &str| v.split('=').next().unwrap_or_default().to_string();
    let mut env = own.to_vec();
    for v in link_env {
        let k = key(v);
        if !env.iter().any(|e| key(e) == k) {
            env.push(v.clone());
        }
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

fn resources(res: &ApiResources) -> Resources {
    Resources {
        memory: res.memory,
        memory_swap: res.memory_swap,
        memory_reservation: res.memory_reservation,
        oom_kill_disable: res.oom_kill_disable.unwrap_or(false),
        cpu_shares: res.cpu_shares.max(0) as u64,
        cpu_quota: res.cpu_quota,
        cpu_period: res.cpu_period.max(0) as u64,
        nano_cpus: res.nano_cpus,
        cpuset_cpus: res.cpuset_cpus.clone(),
        cpuset_mems: res.cpuset_mems.clone(),
        pids_limit: res.pids_limit.unwrap_or(0),
        blkio_weight: res.blkio_weight,
    }
}

fn devices(res: &ApiResources) -> Vec<DeviceSpec> {
    res.devices
        .iter()
        .flatten()
        .map(|d| DeviceSpec {
            path_on_host: PathBuf::from(&d.path_on_host),
            path_in_container: d.path_in_container.clone(),
            permissions: d.cgroup_permissions.clone(),
        })
        .collect()
}

fn ulimits(res: &ApiResources) -> Vec<Ulimit> {
    res.ulimits
        .iter()
        .flatten()
        .map(|u| Ulimit {
            name: u.name.clone(),
            soft: u.soft.max(0) as u64,
            hard: u.hard.max(0) as u64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved() -> Resolved {
        Resolved {
            rootfs: PathBuf::from("/r"),
            user: ProcessUser::default(),
            home: "/root".into(),
            namespaces: NamespaceModes::default(),
            mounts: Vec::new(),
            hostname: "h".into(),
            domainname: String::new(),
            link_env: Vec::new(),
            cgroup_path: "/berth/x".into(),
            runtime: None,
            init_path: None,
        }
    }

    #[test]
    fn the_environment_keeps_the_containers_own_values() {
        let env = environment(
            &["A=1".into(), "HOME=/h".into()],
            &["A=link".into(), "B=link".into()],
            "/root",
        );
        assert_eq!(env, ["A=1", "HOME=/h", "B=link"]);
        assert_eq!(environment(&[], &[], "/home/u"), ["HOME=/home/u"]);
    }

    #[test]
    fn security_options_set_seccomp_and_no_new_privileges() {
        let o = |v: &[&str]| security_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(o(&[]).unwrap(), (SeccompMode::Default, false));
        assert_eq!(
            o(&["seccomp=unconfined", "no-new-privileges"]).unwrap(),
            (SeccompMode::Unconfined, true)
        );
        assert_eq!(
            o(&[
                "seccomp:/p.json",
                "no-new-privileges=false",
                "label=disable"
            ])
            .unwrap(),
            (SeccompMode::Custom("/p.json".into()), false)
        );
        assert!(o(&["foo"]).is_err());
    }

    #[test]
    fn assemble_maps_the_record() {
        let mut r = Record {
            id: "x".into(),
            path: "/bin/sh".into(),
            args: vec!["-c".into(), "true".into()],
            ..Default::default()
        };
        r.host_config.ipc_mode = "none".into();
        r.host_config.shm_size = 1 << 20;
        r.host_config.resources.cpu_shares = -1;
        r.host_config.resources.init = Some(true);
        r.host_config.console_size = Some([0, 80]);
        let cfg = assemble(&r, resolved()).unwrap();
        assert_eq!(cfg.args, ["/bin/sh", "-c", "true"]);
        assert_eq!(cfg.env, ["HOME=/root"]);
        assert!(cfg.no_dev_shm);
        assert_eq!(cfg.shm_size, Some(1 << 20));
        assert_eq!(cfg.resources.cpu_shares, 0);
        // --init without docker-init installed runs the command directly.
        assert!(!cfg.init);
        assert_eq!(cfg.console_size, None);
        assert_eq!(cfg.cgroup_path.as_deref(), Some("/berth/x"));
    }

    #[test]
    fn cgroup_namespace_defaults_follow_the_host() {
        assert_eq!(cgroup_namespace("", true), NamespaceMode::Private);
        assert_eq!(cgroup_namespace("", false), NamespaceMode::Host);
        assert_eq!(cgroup_namespace("private", false), NamespaceMode::Private);
    }

    #[test]
    fn user_mounts_win_over_the_daemons() {
        let mut m = Vec::new();
        add_mount(&mut m, "/etc/hosts", "/a".into(), false, Vec::new());
        add_mount(&mut m, "/etc/hosts", "/b".into(), true, Vec::new());
        assert_eq!(m.len(), 1);
        assert!(matches!(&m[0].kind, MountKind::Bind { source } if source == Path::new("/a")));
    }
}
