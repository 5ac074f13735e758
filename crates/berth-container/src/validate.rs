//! More of dockerd's checks of a host configuration at create, with its messages and status
//! codes, so that what it refuses never gets as far as a start: `--add-host` entries,
//! `Isolation`, cpusets against the host's, `--security-opt` keys and values, and
//! `--storage-opt` (no quota support here). The older checks are in [`crate::merge`].

use std::collections::BTreeSet;

use berth_api::models::HostConfig;
use berth_api::vocab::SecurityOpts;

use crate::error::{ContainerError, Result, invalid};

/// Linux's usual maximum CPU number; requests above it (or above the host's highest CPU)
/// are refused before any set is built (dockerd's guard against CVE-2018-20699).
const DEFAULT_MAX_CPUS: i64 = 8192;

/// The host's cpusets (`cpuset.cpus` and `cpuset.mems` of the root cgroup), as dockerd reads
/// them once; `None` where the cpuset controller is not mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCpusets {
    pub cpus: String,
    pub mems: String,
}

impl HostCpusets {
    /// Reads them from the cgroup v1 cpuset hierarchy or the v2 root.
    pub fn read() -> Option<HostCpusets> {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let (cpus, mems) = if berth_runtime::cgroups::CgroupVersion::host().is_v2() {
            (
                read("/sys/fs/cgroup/cpuset.cpus.effective")?,
                read("/sys/fs/cgroup/cpuset.mems.effective")?,
            )
        } else {
            (
                read("/sys/fs/cgroup/cpuset/cpuset.cpus")?,
                read("/sys/fs/cgroup/cpuset/cpuset.mems")?,
            )
        };
        Some(HostCpusets { cpus, mems })
    }
}

/// dockerd's checks that [`crate::merge::validate_host_config`] does not do. 400s, except
/// `SecurityOpt` and `StorageOpt` which dockerd refuses later in its create, with a 500.
pub fn host_config(h: &HostConfig, cpusets: Option<&HostCpusets>) -> Result<()> {
    for e in h.extra_hosts.iter().flatten() {
        extra_host(e)?;
    }
    // Linux has only the default isolation.
    if !(h.isolation.is_empty() || h.isolation.eq_ignore_ascii_case("default")) {
        return Err(invalid(format!(
            "invalid isolation '{}' on linux",
            h.isolation
        )));
    }
    if h.resources.io_maximum_bandwidth != 0 || h.resources.io_maximum_iops != 0 {
        return Err(invalid(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps",
        ));
    }
    if let Some(sets) = cpusets {
        cpuset(&h.resources.cpuset_cpus, &sets.cpus, "cpus", "CPUs")?;
        cpuset(&h.resources.cpuset_mems, &sets.mems, "mems", "memory nodes")?;
    }
    SecurityOpts::parse(h.security_opt.as_deref().unwrap_or_default())
        .map_err(|e| ContainerError::Internal(e.0))?;
    if let Some(opts) = &h.storage_opt {
        storage_opts(opts)?;
    }
    Ok(())
}

/// Drops what dockerd discards on Linux, with its warnings: `CpuPercent` (Windows only) and
/// `KernelMemory` where the kernel has no kernel memory accounting (where it has, the value
/// is kept, and like runc since 1.1 not applied).
pub fn discard_unsupported(h: &mut HostConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    let r = &mut h.resources;
    if r.kernel_memory > 0
        && !std::path::Path::new("/sys/fs/cgroup/memory/memory.kmem.limit_in_bytes").exists()
    {
        warnings.push("Your kernel does not support kernel memory limit capabilities or the cgroup is not mounted. Limitation discarded.".into());
        r.kernel_memory = 0;
    }
    if r.cpu_percent > 0 {
        warnings.push("linux does not support CPU percent. Percent discarded.".into());
        r.cpu_percent = 0;
    }
    let root = std::path::Path::new("/sys/fs/cgroup");
    if cgroup_limits_unavailable(root) {
        warnings.extend(discard_limits(h, &|_| false));
    } else if let Some(controllers) = berth_runtime::cgroups::v2_controllers(root) {
        // A rootless daemon's delegated cgroup may lack controllers (systemd delegates memory
        // and pids by default, cpu, cpuset and io only when configured): their limits only.
        warnings.extend(discard_limits(h, &|c| controllers.iter().any(|n| n == c)));
    }
    warnings
}

/// Whether the daemon cannot set limits at all (see
/// [`berth_runtime::cgroups::limits_unavailable`]).
pub fn cgroup_limits_unavailable(root: &std::path::Path) -> bool {
    berth_runtime::cgroups::limits_unavailable(root)
}

/// Drops every limit a cgroup would enforce, with dockerd's warnings (`--cpus`, which dockerd
/// refuses there, is dropped with a warning of the same kind, as the others).
fn discard_limits(h: &mut HostConfig, available: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut w = Vec::new();
    let r = &mut h.resources;
    let (memory, cpu, pids, io, cpuset) = (
        available("memory"),
        available("cpu"),
        available("pids"),
        available("io"),
        available("cpuset"),
    );
    let mut drop = |set: bool, text: &str| {
        if set {
            w.push(text.to_string());
        }
        set
    };
    if drop(
        !memory && r.memory > 0,
        "Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.",
    ) {
        r.memory = 0;
    }
    if drop(
        !memory && r.memory_reservation > 0,
        "Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.",
    ) {
        r.memory_reservation = 0;
    }
    if drop(
        !memory && r.memory_swap > 0,
        "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.",
    ) {
        r.memory_swap = 0;
    }
    if drop(
        !cpu && r.cpu_shares > 0,
        "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded.",
    ) {
        r.cpu_shares = 0;
    }
    if drop(
        !cpu && r.cpu_quota > 0,
        "Your kernel does not support CPU CFS quota or the cgroup is not mounted. Quota discarded.",
    ) {
        r.cpu_quota = 0;
    }
    if drop(
        !cpu && r.cpu_period > 0,
        "Your kernel does not support CPU CFS period or the cgroup is not mounted. Period discarded.",
    ) {
        r.cpu_period = 0;
    }
    if drop(
        !cpu && r.nano_cpus > 0,
        "Your kernel does not support CPU CFS scheduler or the cgroup is not mounted. CPUs discarded.",
    ) {
        r.nano_cpus = 0;
    }
    if drop(
        !pids && r.pids_limit.is_some_and(|p| p > 0),
        "Your kernel does not support pids limit capabilities or the cgroup is not mounted. PIDs limit discarded.",
    ) {
        r.pids_limit = None;
    }
    if drop(
        !io && r.blkio_weight > 0,
        "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.",
    ) {
        r.blkio_weight = 0;
    }
    if drop(
        !cpuset && (!r.cpuset_cpus.is_empty() || !r.cpuset_mems.is_empty()),
        "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded.",
    ) {
        r.cpuset_cpus.clear();
        r.cpuset_mems.clear();
    }
    w
}

/// `name:ip` (or the berth CLI's `name=ip`), the ip possibly in brackets or `host-gateway`.
fn extra_host(val: &str) -> Result<()> {
    let (name, ip) = match val.split_once('=').or_else(|| val.split_once(':')) {
        Some((n, ip)) if !n.is_empty() => (n, ip),
        _ => return Err(invalid(format!("bad format for add-host: {val:?}"))),
    };
    let _ = name;
    let bare = ip.trim().trim_start_matches('[').trim_end_matches(']');
    if ip != "host-gateway" && bare.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(format!("invalid IP address in add-host: {ip:?}")));
    }
    Ok(())
}

/// A cpuset list (`0-2,4`) as dockerd parses it: every number at most `max`.
fn parse_list(val: &str, max: i64) -> std::result::Result<BTreeSet<i64>, String> {
    let mut out = BTreeSet::new();
    if val.is_empty() {
        return Ok(out);
    }
    let bad = || format!("invalid format: {val}");
    for r in val.split(',') {
        let (lo, hi) = match r.split_once('-') {
            None => {
                let v: i64 = r.parse().map_err(|_| bad())?;
                (v, v)
            }
            Some((lo, hi)) => {
                let lo: i64 = lo.parse().map_err(|_| bad())?;
                let hi: i64 = hi.parse().map_err(|_| bad())?;
                if hi < lo {
                    return Err(bad());
                }
                (lo, hi)
            }
        };
        if max != 0 && hi > max {
            return Err(format!("value of out range, maximum is {max}"));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// `CpusetCpus`/`CpusetMems` against the host's set (`available`).
fn cpuset(requested: &str, available: &str, what: &str, plural: &str) -> Result<()> {
    if requested.is_empty() {
        return Ok(());
    }
    let host = parse_list(available, 0).unwrap_or_default();
    let max = host.last().copied().unwrap_or(0).max(DEFAULT_MAX_CPUS);
    let wanted = parse_list(requested, max)
        .map_err(|e| invalid(format!("Invalid value {requested} for cpuset {what}: {e}")))?;
    if !wanted.is_subset(&host) {
        return Err(invalid(format!(
            "Requested {plural} are not available - requested {requested}, available: {available}"
        )));
    }
    Ok(())
}

/// `StorageOpt`: overlay's `size` needs project quotas (xfs with `pquota`), which berth does
/// not set up; other keys are unknown to overlay.
fn storage_opts(opts: &std::collections::BTreeMap<String, String>) -> Result<()> {
    if opts.contains_key("size") {
        return Err(ContainerError::Internal(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
                .into(),
        ));
    }
    if let Some(k) = opts.keys().next() {
        return Err(ContainerError::Internal(format!("Unknown option {k}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut HostConfig)) -> (u16, String) {
        let mut h = HostConfig::default();
        f(&mut h);
        let sets = HostCpusets {
            cpus: "0-1".into(),
            mems: "0".into(),
        };
        match host_config(&h, Some(&sets)) {
            Ok(()) => (0, String::new()),
            Err(e) => (e.kind().status_code(), e.to_string()),
        }
    }

    #[test]
    fn dockerd_messages() {
        assert_eq!(check(|_| {}), (0, String::new()));
        let hosts = |v: &[&str]| {
            let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            move |h: &mut HostConfig| h.extra_hosts = Some(v)
        };
        assert_eq!(
            check(hosts(&["a:1.2.3.4", "b=::1", "c:[::1]", "d:host-gateway"])).1,
            ""
        );
        assert_eq!(
            check(hosts(&["bad"])),
            (400, "bad format for add-host: \"bad\"".into())
        );
        assert_eq!(
            check(hosts(&["a:nope"])),
            (400, "invalid IP address in add-host: \"nope\"".into())
        );
        assert_eq!(
            check(|h| h.isolation = "hyperv".into()),
            (400, "invalid isolation 'hyperv' on linux".into())
        );
        assert_eq!(check(|h| h.isolation = "default".into()).0, 0);
        assert_eq!(
            check(|h| h.resources.cpuset_cpus = "0-1000".into()),
            (
                400,
                "Requested CPUs are not available - requested 0-1000, available: 0-1".into()
            )
        );
        assert_eq!(
            check(|h| h.resources.cpuset_cpus = "garbage".into()),
            (
                400,
                "Invalid value garbage for cpuset cpus: invalid format: garbage".into()
            )
        );
        assert_eq!(
            check(|h| h.resources.cpuset_cpus = "0-100000".into()),
            (
                400,
                "Invalid value 0-100000 for cpuset cpus: value of out range, maximum is 8192"
                    .into()
            )
        );
        assert_eq!(check(|h| h.resources.cpuset_cpus = "1,0-0".into()).0, 0);
        assert_eq!(
            check(|h| h.resources.cpuset_mems = "1".into()).1,
            "Requested memory nodes are not available - requested 1, available: 0"
        );
        let sec = |v: &str| {
            let v = vec![v.to_string()];
            move |h: &mut HostConfig| h.security_opt = Some(v)
        };
        for ok in [
            "no-new-privileges",
            "no-new-privileges=true",
            "no-new-privileges:false",
            "seccomp=unconfined",
            "apparmor=unconfined",
            "label=disable",
            "label:type:x",
        ] {
            assert_eq!(check(sec(ok)).0, 0, "{ok}");
        }
        assert_eq!(
            check(sec("no-new-privileges:maybe")),
            (
                500,
                "invalid --security-opt 2: \"no-new-privileges:maybe\"".into()
            )
        );
        assert_eq!(
            check(sec("bogus=1")),
            (500, "invalid --security-opt 2: \"bogus=1\"".into())
        );
        assert_eq!(
            check(sec("bogus")),
            (500, "invalid --security-opt 1: \"bogus\"".into())
        );
        assert_eq!(
            check(|h| h.storage_opt = Some([("size".to_string(), "1G".to_string())].into())),
            (
                500,
                "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
                    .into()
            )
        );
    }
}
