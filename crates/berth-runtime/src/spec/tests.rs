//! Unit tests of spec generation.

use super::*;

#[test]
fn cgroups_paths_stay_inside_the_hierarchy() {
    assert_eq!(clean_cgroups_path("/berth/abc"), "/berth/abc");
    assert_eq!(clean_cgroups_path("../../../x/abc"), "/x/abc");
    assert_eq!(clean_cgroups_path("/a/../../b//./c/"), "/b/c");
    assert_eq!(clean_cgroups_path("a/b"), "/a/b");
}
use crate::config::{DeviceSpec, MountSpec, NamespaceModes, Resources, Ulimit};
use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompOperator};

struct FakeHost;

impl HostProbe for FakeHost {
    fn kernel_version(&self) -> (u32, u32) {
        (6, 18)
    }
    fn arch(&self) -> &str {
        "amd64"
    }
    fn host_devices(&self) -> Vec<PathBuf> {
        vec![PathBuf::from("/dev/fuse")]
    }
    fn device(&self, path: &Path) -> io::Result<HostDevice> {
        if path == Path::new("/dev/fuse") {
            Ok(HostDevice {
                block: false,
                major: 10,
                minor: 229,
                mode: 0o666,
                uid: 0,
                gid: 0,
            })
        } else {
            Err(io::Error::from(io::ErrorKind::NotFound))
        }
    }
}

fn base() -> ContainerRunConfig {
    ContainerRunConfig {
        id: "abc".into(),
        rootfs: "/r".into(),
        args: vec!["sh".into()],
        hostname: "h".into(),
        ..Default::default()
    }
}

fn make(cfg: &ContainerRunConfig) -> Spec {
    generate(cfg, &FakeHost).unwrap()
}

fn caps(spec: &Spec) -> Vec<String> {
    let set = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .effective()
        .clone()
        .unwrap();
    let mut v: Vec<String> = set
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn syscall_names(spec: &Spec) -> Vec<String> {
    spec.linux()
        .as_ref()
        .unwrap()
        .seccomp()
        .as_ref()
        .unwrap()
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|s| s.names().clone())
        .collect()
}

#[test]
fn default_capabilities() {
    let spec = make(&base());
    assert_eq!(caps(&spec), sorted(DEFAULT_CAPABILITIES));
    let c = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap();
    assert_eq!(c.bounding(), c.effective());
    assert_eq!(c.permitted(), c.effective());
    assert!(c.inheritable().is_none() && c.ambient().is_none());
}

#[test]
fn cap_add_and_drop() {
    let mut cfg = base();
    cfg.cap_add = vec!["net_admin".into(), "CAP_SYS_PTRACE".into()];
    cfg.cap_drop = vec!["MKNOD".into(), "cap_chown".into()];
    let got = caps(&make(&cfg));
    assert!(got.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(got.contains(&"CAP_SYS_PTRACE".to_string()));
    assert!(!got.contains(&"CAP_MKNOD".to_string()));
    assert!(!got.contains(&"CAP_CHOWN".to_string()));
    assert_eq!(got.len(), DEFAULT_CAPABILITIES.len());
}

#[test]
fn cap_all() {
    let mut cfg = base();
    cfg.cap_add = vec!["ALL".into()];
    cfg.cap_drop = vec!["NET_RAW".into()];
    let got = caps(&make(&cfg));
    assert_eq!(got.len(), ALL_CAPABILITIES.len() - 1);
    assert!(!got.contains(&"CAP_NET_RAW".to_string()));

    let mut cfg = base();
    cfg.cap_drop = vec!["all".into()];
    cfg.cap_add = vec!["chown".into()];
    assert_eq!(caps(&make(&cfg)), vec!["CAP_CHOWN".to_string()]);
}

#[test]
fn unknown_capability_is_an_error() {
    let mut cfg = base();
    cfg.cap_add = vec!["CAP_FLY".into()];
    let err = generate(&cfg, &FakeHost).unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidConfig(_)));
    assert!(err.to_string().contains("CAP_FLY"), "{err}");
}

#[test]
fn privileged_caps_stay_within_the_bounding_set() {
    // This machine lacks CAP_SYS_RESOURCE (bit 24).
    let kept = within_bounding(capability_set(true, &[], &[]).unwrap(), Some(!(1 << 24)));
    assert_eq!(kept.len(), ALL_CAPABILITIES.len() - 1);
    assert!(!kept.iter().any(|c| c == "CAP_SYS_RESOURCE"));
    assert_eq!(
        within_bounding(vec!["CAP_CHOWN".into()], None),
        ["CAP_CHOWN"],
        "unknown bounding set: unchanged"
    );
}

#[test]
fn init_wraps_the_command_and_mounts_the_binary() {
    let mut cfg = base();
    cfg.init = true;
    assert!(matches!(
        generate(&cfg, &FakeHost),
        Err(RuntimeError::InvalidConfig(_))
    ));
    cfg.init_path = Some("/var/lib/berth/bin/docker-init".into());
    let spec = make(&cfg);
    let args = spec.process().as_ref().unwrap().args().clone().unwrap();
    assert_eq!(args, ["/sbin/docker-init", "--", "sh"]);
    let m = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sbin/docker-init"))
        .unwrap();
    assert_eq!(
        m.source().as_deref(),
        Some(Path::new("/var/lib/berth/bin/docker-init"))
    );
    assert!(m.options().as_ref().unwrap().iter().any(|o| o == "ro"));
}

#[test]
fn privileged() {
    let mut cfg = base();
    cfg.privileged = true;
    let spec = make(&cfg);
    assert_eq!(caps(&spec).len(), ALL_CAPABILITIES.len());
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().is_none());
    assert!(linux.readonly_paths().is_none());
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    assert_eq!(rules[0].typ(), Some(LinuxDeviceType::A));
    // The host's device nodes come along.
    let devices = linux.devices().clone().unwrap();
    assert!(
        devices
            .iter()
            .any(|d| d.path() == Path::new("/dev/fuse") && d.major() == 10)
    );
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
}

#[test]
fn seccomp_follows_capabilities() {
    let spec = make(&base());
    let s = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
    let names = syscall_names(&spec);
    assert!(!names.contains(&"mount".to_string()));
    assert!(!names.contains(&"kcmp".to_string()));

    let mut cfg = base();
    cfg.cap_add = vec!["SYS_ADMIN".into(), "SYS_PTRACE".into()];
    let names = syscall_names(&make(&cfg));
    assert!(names.contains(&"mount".to_string()));
    assert!(names.contains(&"kcmp".to_string()));

    let mut cfg = base();
    cfg.seccomp = SeccompMode::Unconfined;
    assert!(make(&cfg).linux().as_ref().unwrap().seccomp().is_none());

    let mut cfg = base();
    cfg.seccomp = SeccompMode::Custom(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ERRNO",
           "args":[{"index":1,"value":2,"op":"SCMP_CMP_GT"}]}]}"#
            .into(),
    );
    let spec = make(&cfg);
    let s = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
    let rule = &s.syscalls().as_ref().unwrap()[0];
    assert_eq!(
        rule.args().as_ref().unwrap()[0].op(),
        LinuxSeccompOperator::ScmpCmpGt
    );
}

#[test]
fn masked_and_readonly_paths() {
    let spec = make(&base());
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.masked_paths().clone().unwrap(),
        DEFAULT_MASKED_PATHS.to_vec()
    );
    assert!(
        linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/sys/devices/virtual/powercap".to_string())
    );
    assert_eq!(
        linux.readonly_paths().clone().unwrap(),
        DEFAULT_READONLY_PATHS.to_vec()
    );
    let mut cfg = base();
    cfg.masked_paths = Some(vec![]);
    assert_eq!(
        make(&cfg)
            .linux()
            .as_ref()
            .unwrap()
            .masked_paths()
            .clone()
            .unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn resources_map_like_docker() {
    let mut cfg = base();
    cfg.resources = Resources {
        memory: 1 << 30,
        memory_reservation: 1 << 29,
        nano_cpus: 1_500_000_000,
        cpu_shares: 512,
        cpuset_cpus: "0-1".into(),
        pids_limit: 100,
        blkio_weight: 300,
        oom_kill_disable: true,
        ..Default::default()
    };
    let spec = make(&cfg);
    let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    let cpu = r.cpu().clone().unwrap();
    assert_eq!(cpu.quota(), Some(150_000));
    assert_eq!(cpu.period(), Some(100_000));
    assert_eq!(cpu.shares(), Some(512));
    assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
    let mem = r.memory().unwrap();
    assert_eq!(mem.limit(), Some(1 << 30));
    assert_eq!(
        mem.swap(),
        Some(2 << 30),
        "swap defaults to twice the memory"
    );
    assert_eq!(mem.reservation(), Some(1 << 29));
    assert_eq!(mem.disable_oom_killer(), Some(true));
    assert_eq!(r.pids().unwrap().limit(), 100);
    assert_eq!(r.block_io().clone().unwrap().weight(), Some(300));

    // cgroup v2: the weight is written to the io file directly, converted for io.weight.
    struct V2Host(&'static str);
    impl HostProbe for V2Host {
        fn kernel_version(&self) -> (u32, u32) {
            (6, 18)
        }
        fn arch(&self) -> &str {
            "amd64"
        }
        fn device(&self, _: &Path) -> io::Result<HostDevice> {
            Err(io::Error::from(io::ErrorKind::NotFound))
        }
        fn io_weight_file(&self) -> Option<&'static str> {
            Some(self.0)
        }
    }
    for (file, want) in [("io.weight", "2930"), ("io.bfq.weight", "300")] {
        let spec = generate(&cfg, &V2Host(file)).unwrap();
        let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        assert!(r.block_io().is_none());
        let unified = r.unified().clone().unwrap();
        assert_eq!(unified.get(file).map(String::as_str), Some(want));
        // And the shares as runc's weight: 1 + (512 - 2) * 9999 / 262142.
        assert_eq!(unified.get("cpu.weight").map(String::as_str), Some("20"));
        assert_eq!(r.cpu().clone().unwrap().shares(), None);
    }

    cfg.resources = Resources {
        memory: 100,
        memory_swap: -1,
        ..Default::default()
    };
    let mem = make(&cfg)
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .clone()
        .unwrap()
        .memory()
        .unwrap();
    assert_eq!(mem.swap(), Some(-1));

    cfg.resources = Resources {
        nano_cpus: 1,
        cpu_quota: 1000,
        ..Default::default()
    };
    assert!(generate(&cfg, &FakeHost).is_err());
}

#[test]
fn ipc_none_has_no_dev_shm() {
    let mut cfg = base();
    cfg.no_dev_shm = true;
    let spec = make(&cfg);
    assert!(
        !spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.destination() == Path::new("/dev/shm"))
    );
}

#[test]
fn default_mounts_and_shm_size() {
    let mut cfg = base();
    cfg.shm_size = Some(1 << 20);
    let spec = make(&cfg);
    let mounts = spec.mounts().clone().unwrap();
    let dests: Vec<_> = mounts
        .iter()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/mqueue",
            "/dev/shm"
        ]
    );
    let shm = &mounts[6];
    assert!(
        shm.options()
            .as_ref()
            .unwrap()
            .contains(&"size=1048576".to_string())
    );
    let pts = mounts[2].options().clone().unwrap();
    for o in ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] {
        assert!(pts.contains(&o.to_string()));
    }
    assert!(
        mounts[3]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string())
    );
    let default_shm = make(&base()).mounts().clone().unwrap()[6]
        .options()
        .clone()
        .unwrap();
    assert!(default_shm.contains(&"size=67108864".to_string()));
}

#[test]
fn root_propagation_follows_the_binds() {
    let root = |opts: &[&[&str]]| {
        let mut cfg = base();
        cfg.mounts = opts
            .iter()
            .map(|o| MountSpec {
                destination: "/x".into(),
                kind: MountKind::Bind {
                    source: "/srv".into(),
                },
                readonly: false,
                options: o.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        make(&cfg)
            .linux()
            .clone()
            .unwrap()
            .rootfs_propagation()
            .clone()
    };
    assert_eq!(root(&[]).as_deref(), Some("private"));
    assert_eq!(root(&[&[]]).as_deref(), Some("private"));
    assert_eq!(root(&[&["rslave"], &[]]).as_deref(), Some("slave"));
    assert_eq!(
        root(&[&["rslave"], &["rshared"]]).as_deref(),
        Some("shared")
    );
}

#[test]
fn extra_mounts_replace_defaults_and_get_options() {
    let mut cfg = base();
    cfg.mounts = vec![
        MountSpec {
            destination: "/data".into(),
            kind: MountKind::Bind {
                source: "/srv/data".into(),
            },
            readonly: true,
            options: vec![],
        },
        MountSpec {
            destination: "/dev/shm".into(),
            kind: MountKind::Tmpfs,
            readonly: false,
            options: vec!["size=1m".into()],
        },
    ];
    let mounts = make(&cfg).mounts().clone().unwrap();
    assert_eq!(
        mounts
            .iter()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
            .count(),
        1
    );
    let data = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/data"))
        .unwrap();
    assert_eq!(data.typ().as_deref(), Some("bind"));
    assert_eq!(
        data.options().clone().unwrap(),
        vec!["rbind", "rprivate", "ro"]
    );
    let shm = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/dev/shm"))
        .unwrap();
    assert_eq!(
        shm.options().clone().unwrap(),
        vec!["nosuid", "nodev", "noexec", "size=1m", "rw"]
    );
}

#[test]
fn namespaces_follow_modes() {
    let ns_types = |spec: &Spec| -> Vec<LinuxNamespaceType> {
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .clone()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    };
    let spec = make(&base());
    let t = ns_types(&spec);
    for want in [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ] {
        assert!(t.contains(&want), "{want:?}");
    }
    assert_eq!(spec.hostname().as_deref(), Some("h"));
    assert_eq!(
        spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
        Some(Path::new("/berth/abc"))
    );

    let mut cfg = base();
    cfg.namespaces = NamespaceModes {
        net: NamespaceMode::Host,
        uts: NamespaceMode::Host,
        ipc: NamespaceMode::Host,
        pid: NamespaceMode::Path("/proc/42/ns/pid".into()),
        cgroup: NamespaceMode::Host,
    };
    let spec = make(&cfg);
    let nss = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
    assert_eq!(nss.len(), 2, "{nss:?}");
    let pid = nss
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Pid)
        .unwrap();
    assert_eq!(pid.path().as_deref(), Some(Path::new("/proc/42/ns/pid")));
    assert!(
        spec.hostname().is_none(),
        "no hostname without a UTS namespace"
    );
    let shm = spec
        .mounts()
        .clone()
        .unwrap()
        .into_iter()
        .find(|m| m.destination() == Path::new("/dev/shm"))
        .unwrap();
    assert_eq!(shm.typ().as_deref(), Some("bind"));
}

#[test]
fn device_cgroup_rules_parse_as_docker_reads_them() {
    for bad in [
        "c 1:11",
        "x 1:11 rw",
        "c 1-11 rw",
        "c 1:11 rwx",
        "c a:11 rw",
        "c 1:11  rw",
    ] {
        let err = parse_device_cgroup_rule(bad).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!("invalid device cgroup rule format: '{bad}'")),
            "{err}"
        );
    }
    let r = parse_device_cgroup_rule("c 1:* rw").unwrap();
    assert_eq!(
        (
            r.allow(),
            r.typ(),
            r.major(),
            r.minor(),
            r.access().as_deref()
        ),
        (true, Some(LinuxDeviceType::C), Some(1), None, Some("rw"))
    );
    let mut cfg = base();
    cfg.device_cgroup_rules = vec!["b 8:* rwm".into()];
    let spec = make(&cfg);
    let rules = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    let last = rules.devices().clone().unwrap().pop().unwrap();
    assert_eq!(
        (last.typ(), last.major()),
        (Some(LinuxDeviceType::B), Some(8))
    );
}

#[test]
fn default_device_rules_deny_then_allow() {
    let spec = make(&base());
    let rules = spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert!(!rules[0].allow());
    assert_eq!(rules[0].typ(), Some(LinuxDeviceType::A));
    let allowed = |t, maj, min| {
        rules
            .iter()
            .any(|r| r.allow() && r.typ() == Some(t) && r.major() == maj && r.minor() == min)
    };
    assert!(allowed(LinuxDeviceType::C, Some(1), Some(3)));
    assert!(allowed(LinuxDeviceType::C, Some(136), None));
    assert!(allowed(LinuxDeviceType::B, None, None));
}

#[test]
fn devices_from_host() {
    let mut cfg = base();
    cfg.devices = vec![DeviceSpec {
        path_on_host: "/dev/fuse".into(),
        path_in_container: String::new(),
        permissions: "rw".into(),
    }];
    let spec = make(&cfg);
    let linux = spec.linux().as_ref().unwrap();
    let dev = &linux.devices().clone().unwrap()[0];
    assert_eq!((dev.major(), dev.minor()), (10, 229));
    assert_eq!(dev.path(), Path::new("/dev/fuse"));
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    let last = rules.last().unwrap();
    assert_eq!(
        (last.major(), last.minor(), last.access().as_deref()),
        (Some(10), Some(229), Some("rw"))
    );

    cfg.devices[0].path_on_host = "/dev/nope".into();
    assert!(
        generate(&cfg, &FakeHost)
            .unwrap_err()
            .to_string()
            .contains("/dev/nope")
    );
}

#[test]
fn process_fields() {
    let mut cfg = base();
    cfg.env = vec!["PATH=/bin".into(), "A=1".into()];
    cfg.tty = true;
    cfg.user.uid = 1000;
    cfg.user.gid = 1000;
    cfg.user.additional_gids = vec![10];
    cfg.group_add = vec![20, 10];
    cfg.working_dir = "/work".into();
    cfg.ulimits = vec![Ulimit {
        name: "nofile".into(),
        soft: 1024,
        hard: 2048,
    }];
    cfg.no_new_privileges = true;
    cfg.readonly_rootfs = true;
    let spec = make(&cfg);
    let p = spec.process().as_ref().unwrap();
    assert_eq!(
        p.env().clone().unwrap(),
        vec!["HOSTNAME=h", "TERM=xterm", "PATH=/bin", "A=1"]
    );
    assert_eq!(p.user().uid(), 1000);
    assert_eq!(p.user().additional_gids().clone().unwrap(), vec![10, 20]);
    assert_eq!(p.cwd(), Path::new("/work"));
    assert_eq!(p.terminal(), Some(true));
    assert_eq!(p.no_new_privileges(), Some(true));
    let rl = &p.rlimits().clone().unwrap()[0];
    assert_eq!(
        (rl.typ(), rl.soft(), rl.hard()),
        (PosixRlimitType::RlimitNofile, 1024, 2048)
    );
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));

    let p2 = make(&base());
    let p2 = p2.process().as_ref().unwrap();
    assert!(p2.rlimits().is_none(), "no rlimits unless asked");
    assert!(
        p2.no_new_privileges().is_none(),
        "never Some(false): see generate()"
    );
    assert_eq!(p2.env().clone().unwrap()[0], format!("PATH={DEFAULT_PATH}"));

    cfg.ulimits = vec![Ulimit {
        name: "bogus".into(),
        soft: 1,
        hard: 1,
    }];
    assert!(generate(&cfg, &FakeHost).is_err());
}

#[test]
fn spec_round_trips_through_json() {
    let spec = make(&base());
    let text = serde_json::to_string(&spec).unwrap();
    let back: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, spec);
    assert!(spec.version().starts_with("1."));
}

/// `--userns-remap`: a new user namespace with the range, listed first; the daemon's network
/// namespace moves to the annotation the shim joins before it (libcontainer could not join it
/// from inside); `/sys` is a read-only bind of the host's. An external runtime (runc) joins
/// the path itself; a container sharing another's namespaces joins its user namespace.
#[test]
fn remapped_containers_get_a_user_namespace() {
    let mut cfg = base();
    cfg.namespaces.net = NamespaceMode::Path("/run/berth/netns/abc".into());
    cfg.userns = Some(crate::idmap::IdMapping {
        uid: 100000,
        uid_count: 65536,
        gid: 200000,
        gid_count: 1000,
    });
    let spec = make(&cfg);
    let linux = spec.linux().as_ref().unwrap();
    let ns = linux.namespaces().as_ref().unwrap();
    assert_eq!(ns[0].typ(), LinuxNamespaceType::User);
    assert!(ns[0].path().is_none());
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    let u = &linux.uid_mappings().as_ref().unwrap()[0];
    assert_eq!(
        (u.container_id(), u.host_id(), u.size()),
        (0, 100000, 65536)
    );
    let g = &linux.gid_mappings().as_ref().unwrap()[0];
    assert_eq!((g.container_id(), g.host_id(), g.size()), (0, 200000, 1000));
    assert_eq!(
        spec.annotations().as_ref().unwrap()[NETNS_ANNOTATION],
        "/run/berth/netns/abc"
    );
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert_eq!(sys.typ().as_deref(), Some("bind"));
    assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));

    cfg.runtime = Some(crate::config::OciRuntime::default());
    cfg.userns_path = Some("/proc/42/ns/user".into());
    let spec = make(&cfg);
    let linux = spec.linux().as_ref().unwrap();
    let ns = linux.namespaces().as_ref().unwrap();
    assert_eq!(ns[0].path().as_deref(), Some(Path::new("/proc/42/ns/user")));
    assert!(
        linux.uid_mappings().is_none(),
        "a joined namespace has its own"
    );
    assert!(
        ns.iter()
            .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_some())
    );
    assert!(spec.annotations().is_none());

    // Without remapping: none of it.
    let spec = make(&base());
    let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
}
