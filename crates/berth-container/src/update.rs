//! `POST /containers/{id}/update`: Docker's merge and validation of new resources and restart
//! policy, persisted in the record and, for a running container, written to its cgroup (v1 and
//! v2 files).

use std::path::{Path, PathBuf};

use berth_api::models::Resources;
use berth_api::models::stats::ContainerUpdateRequest;
use berth_runtime::cgroups::CgroupVersion;
use berth_runtime::spec::{cpu_weight_from_shares, io_weight_from_blkio};

use crate::error::{ContainerError, Result, conflict, invalid};
use crate::manager::Containers;
use crate::merge;
use crate::stats::{CGROUP_ROOT, CgroupDirs};
use berth_api::vocab::RestartPolicy;

/// CFS period Docker uses for `NanoCpus`.
const DEFAULT_CFS_PERIOD: i64 = 100_000;

/// Docker's `conflictingUpdateOptions` (409) inside its "Cannot update container" wrapper.
fn cannot_update(id: &str, msg: impl std::fmt::Display) -> ContainerError {
    conflict(format!("Cannot update container {id}: {msg}"))
}

/// Merges an update into the current resources as Docker's `UpdateContainer` does: zero
/// (or absent) fields keep their value. Errors are Docker's messages.
pub fn merge_resources(cur: &mut Resources, new: &Resources) -> std::result::Result<(), String> {
    if new.nano_cpus > 0 && cur.cpu_period > 0 {
        return Err(
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
                .into(),
        );
    }
    if new.nano_cpus > 0 && cur.cpu_quota > 0 {
        return Err(
            "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"
                .into(),
        );
    }
    if new.cpu_period > 0 && cur.nano_cpus > 0 {
        return Err(
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
                .into(),
        );
    }
    if new.cpu_quota > 0 && cur.nano_cpus > 0 {
        return Err(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
                .into(),
        );
    }
    if new.blkio_weight != 0 {
        cur.blkio_weight = new.blkio_weight;
    }
    if new.cpu_shares != 0 {
        cur.cpu_shares = new.cpu_shares;
    }
    if new.nano_cpus != 0 {
        cur.nano_cpus = new.nano_cpus;
    }
    if new.cpu_period != 0 {
        cur.cpu_period = new.cpu_period;
    }
    if new.cpu_quota != 0 {
        cur.cpu_quota = new.cpu_quota;
    }
    if !new.cpuset_cpus.is_empty() {
        cur.cpuset_cpus = new.cpuset_cpus.clone();
    }
    if !new.cpuset_mems.is_empty() {
        cur.cpuset_mems = new.cpuset_mems.clone();
    }
    if new.memory != 0 {
        // Docker fills MemorySwap with twice the memory when a limit is set without one.
        let swap = if cur.memory_swap == 0 && cur.memory > 0 {
            cur.memory.wrapping_mul(2)
        } else {
            cur.memory_swap
        };
        if new.memory > swap && new.memory_swap == 0 {
            return Err("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into());
        }
        cur.memory = new.memory;
    }
    if new.memory_swap != 0 {
        cur.memory_swap = new.memory_swap;
    }
    if new.memory_reservation != 0 {
        cur.memory_reservation = new.memory_reservation;
    }
    if new.cpu_realtime_period != 0 {
        cur.cpu_realtime_period = new.cpu_realtime_period;
    }
    if new.cpu_realtime_runtime != 0 {
        cur.cpu_realtime_runtime = new.cpu_realtime_runtime;
    }
    if let Some(p) = new.pids_limit {
        // 0 and negative values mean unlimited; Docker stores no limit then.
        cur.pids_limit = (p > 0).then_some(p);
    }
    Ok(())
}

/// One cgroup file write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub path: PathBuf,
    pub value: String,
}

fn w(dir: &Path, file: &str, value: impl ToString) -> Write {
    Write {
        path: dir.join(file),
        value: value.to_string(),
    }
}

/// The cgroup writes that put `r` (the merged resources) into effect for the fields `update`
/// touched, in an order the kernel accepts.
pub fn plan(dirs: &CgroupDirs, r: &Resources, update: &Resources) -> Vec<Write> {
    let ch = Changes::of(r, update);
    match dirs {
        CgroupDirs::V1 {
            cpu,
            cpuset,
            memory,
            pids,
            blkio,
            ..
        } => plan_v1([cpu, cpuset, memory, pids, blkio], r, update, &ch),
        CgroupDirs::V2(dir) => plan_v2(dir, r, update, &ch),
    }
}

/// What an update changes that takes more than one file, and the CFS period and quota the
/// resulting limits come to.
struct Changes {
    memory: bool,
    cpu: bool,
    period: i64,
    quota: i64,
}

impl Changes {
    fn of(r: &Resources, update: &Resources) -> Changes {
        let (period, quota) = if r.nano_cpus > 0 {
            (
                DEFAULT_CFS_PERIOD,
                r.nano_cpus * DEFAULT_CFS_PERIOD / 1_000_000_000,
            )
        } else {
            (
                if r.cpu_period > 0 {
                    r.cpu_period
                } else {
                    DEFAULT_CFS_PERIOD
                },
                r.cpu_quota,
            )
        };
        Changes {
            memory: update.memory != 0 || update.memory_swap != 0,
            cpu: update.nano_cpus != 0 || update.cpu_quota != 0 || update.cpu_period != 0,
            period,
            quota,
        }
    }
}

/// cgroup v1's writes, in the container's `cpu`, `cpuset`, `memory`, `pids` and `blkio`
/// directories.
fn plan_v1(dirs: [&PathBuf; 5], r: &Resources, update: &Resources, ch: &Changes) -> Vec<Write> {
    let [cpu, cpuset, memory, pids, blkio] = dirs;
    let mut out = Vec::new();
    if ch.memory {
        let limit = if r.memory > 0 { r.memory } else { -1 };
        let swap = match (r.memory, r.memory_swap) {
            (m, 0) if m > 0 => m * 2,
            (_, s) if s > 0 => s,
            _ => -1,
        };
        // memory.memsw.limit_in_bytes must stay >= memory.limit_in_bytes: raise
        // the larger one first. `apply` retries in the other order on EINVAL.
        out.push(w(memory, "memory.limit_in_bytes", limit));
        if memory.join("memory.memsw.limit_in_bytes").exists() || !memory.exists() {
            out.push(w(memory, "memory.memsw.limit_in_bytes", swap));
        }
    }
    if update.memory_reservation != 0 {
        out.push(w(
            memory,
            "memory.soft_limit_in_bytes",
            r.memory_reservation,
        ));
    }
    if update.cpu_shares != 0 {
        out.push(w(cpu, "cpu.shares", r.cpu_shares));
    }
    if ch.cpu {
        out.push(w(cpu, "cpu.cfs_period_us", ch.period));
        out.push(w(
            cpu,
            "cpu.cfs_quota_us",
            if ch.quota > 0 { ch.quota } else { -1 },
        ));
    }
    if !update.cpuset_cpus.is_empty() {
        out.push(w(cpuset, "cpuset.cpus", &r.cpuset_cpus));
    }
    if !update.cpuset_mems.is_empty() {
        out.push(w(cpuset, "cpuset.mems", &r.cpuset_mems));
    }
    if update.pids_limit.is_some() {
        out.push(w(pids, "pids.max", pids_max(r)));
    }
    if update.blkio_weight != 0 {
        let file = if blkio.join("blkio.bfq.weight").exists() {
            "blkio.bfq.weight"
        } else {
            "blkio.weight"
        };
        out.push(w(blkio, file, r.blkio_weight));
    }
    out
}

/// cgroup v2's writes, in the container's directory of the unified hierarchy.
fn plan_v2(dir: &Path, r: &Resources, update: &Resources, ch: &Changes) -> Vec<Write> {
    let mut out = Vec::new();
    if ch.memory {
        let max = |v: i64| {
            if v > 0 {
                v.to_string()
            } else {
                "max".to_string()
            }
        };
        out.push(w(dir, "memory.max", max(r.memory)));
        let swap = match (r.memory, r.memory_swap) {
            (m, 0) if m > 0 => m.to_string(),
            (m, s) if m > 0 && s > 0 => (s - m).max(0).to_string(),
            _ => "max".to_string(),
        };
        out.push(w(dir, "memory.swap.max", swap));
    }
    if update.memory_reservation != 0 {
        out.push(w(dir, "memory.low", r.memory_reservation));
    }
    if update.cpu_shares != 0 {
        out.push(w(
            dir,
            "cpu.weight",
            cpu_weight_from_shares(r.cpu_shares.max(0) as u64),
        ));
    }
    if ch.cpu {
        let q = if ch.quota > 0 {
            ch.quota.to_string()
        } else {
            "max".to_string()
        };
        out.push(w(dir, "cpu.max", format!("{q} {}", ch.period)));
    }
    if !update.cpuset_cpus.is_empty() {
        out.push(w(dir, "cpuset.cpus", &r.cpuset_cpus));
    }
    if !update.cpuset_mems.is_empty() {
        out.push(w(dir, "cpuset.mems", &r.cpuset_mems));
    }
    if update.pids_limit.is_some() {
        out.push(w(dir, "pids.max", pids_max(r)));
    }
    if update.blkio_weight != 0 {
        if dir.join("io.bfq.weight").exists() {
            out.push(w(dir, "io.bfq.weight", r.blkio_weight));
        } else {
            out.push(w(dir, "io.weight", io_weight_from_blkio(r.blkio_weight)));
        }
    }
    out
}

/// A cpuset list (`0-2,4`) as its members; `None` when malformed.
pub fn parse_cpu_list(s: &str) -> Option<std::collections::BTreeSet<u32>> {
    let mut out = std::collections::BTreeSet::new();
    for part in s.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let v = part.trim().parse::<u32>().ok()?;
                (v, v)
            }
        };
        if a > b {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

/// Docker's check of a requested cpuset against the host's (`kind` is `cpus` or `mems`).
pub fn check_cpuset(
    kind: &str,
    requested: &str,
    available: &str,
) -> std::result::Result<(), String> {
    if requested.is_empty() {
        return Ok(());
    }
    let Some(want) = parse_cpu_list(requested) else {
        return Err(format!("Invalid value {requested} for cpuset {kind}"));
    };
    let have = parse_cpu_list(available).unwrap_or_default();
    if !want.is_subset(&have) {
        let what = if kind == "cpus" {
            "CPUs"
        } else {
            "memory nodes"
        };
        return Err(format!(
            "Requested {what} are not available - requested {requested}, available: {}",
            available.trim()
        ));
    }
    Ok(())
}

/// The host's cpuset file (`cpus` or `mems`) at the hierarchy root.
fn host_cpuset(root: &Path, kind: &str) -> String {
    let file = if CgroupVersion::of(root).is_v2() {
        root.join(format!("cpuset.{kind}.effective"))
    } else {
        root.join("cpuset").join(format!("cpuset.{kind}"))
    };
    std::fs::read_to_string(file).unwrap_or_default()
}

/// Whether the hierarchy under `root` can weigh block I/O (Docker discards the weight
/// with a warning otherwise).
fn blkio_weight_supported(root: &Path) -> bool {
    if CgroupVersion::of(root).is_v2() {
        return std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "io"));
    }
    let b = root.join("blkio");
    b.join("blkio.weight").exists() || b.join("blkio.bfq.weight").exists()
}

fn pids_max(r: &Resources) -> String {
    match r.pids_limit {
        Some(p) if p > 0 => p.to_string(),
        _ => "max".into(),
    }
}

/// Performs the writes. A memory pair the kernel refuses in one order (`EINVAL`: the limit
/// would exceed memory+swap, or the reverse) is retried in the other.
pub fn apply(writes: &[Write]) -> std::result::Result<(), String> {
    let describe = |wr: &Write, e: &std::io::Error| {
        let hint = if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) {
            " (the container uses more memory than the new limit)"
        } else {
            ""
        };
        format!(
            "cannot write {:?} to {}: {e}{hint}",
            wr.value,
            wr.path.display()
        )
    };
    let mut i = 0;
    while i < writes.len() {
        let wr = &writes[i];
        match std::fs::write(&wr.path, &wr.value) {
            Ok(()) => i += 1,
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
                    && wr.path.ends_with("memory.limit_in_bytes")
                    && writes
                        .get(i + 1)
                        .is_some_and(|n| n.path.ends_with("memory.memsw.limit_in_bytes")) =>
            {
                let next = &writes[i + 1];
                std::fs::write(&next.path, &next.value).map_err(|e| describe(next, &e))?;
                std::fs::write(&wr.path, &wr.value).map_err(|e| describe(wr, &e))?;
                i += 2;
            }
            Err(e) => return Err(describe(wr, &e)),
        }
    }
    Ok(())
}

impl Containers {
    /// `POST /containers/{id}/update`: returns Docker's warnings.
    pub async fn update_resources(
        &self,
        key: &str,
        mut req: ContainerUpdateRequest,
    ) -> Result<Vec<String>> {
        let c = self.get(key)?;
        let root = Path::new(CGROUP_ROOT);
        let mut warnings = Vec::new();
        if req.resources.blkio_weight > 0 && !blkio_weight_supported(root) {
            warnings.push("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.".to_string());
            req.resources.blkio_weight = 0;
        }
        for (kind, value) in [
            ("cpus", &req.resources.cpuset_cpus),
            ("mems", &req.resources.cpuset_mems),
        ] {
            check_cpuset(kind, value, &host_cpuset(root, kind)).map_err(invalid)?;
        }
        let _op = c.lock_ops().await;
        let r = c.record();
        if r.state.status == crate::Status::Removing || r.state.status == crate::Status::Dead {
            return Err(cannot_update(
                &r.id,
                "container is marked for removal and cannot be \"update\"",
            ));
        }
        let mut host = r.host_config.clone();
        merge_resources(&mut host.resources, &req.resources)
            .map_err(|m| cannot_update(&r.id, m))?;
        if let Some(p) = req.restart_policy.as_ref().filter(|p| !p.name.is_empty()) {
            let policy = RestartPolicy::parse(p)?;
            if host.auto_remove && policy != RestartPolicy::No {
                return Err(cannot_update(
                    &r.id,
                    "Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
            host.restart_policy = p.clone();
        }
        merge::validate_host_config(&host, self.ncpu())?;
        if r.state.status.is_running() {
            let dirs = CgroupDirs::locate(Path::new(CGROUP_ROOT), &c.cgroup_path());
            let writes = plan(&dirs, &host.resources, &req.resources);
            tokio::task::spawn_blocking(move || apply(&writes))
                .await
                .map_err(|e| ContainerError::Internal(format!("internal error: {e}")))?
                .map_err(|m| {
                    ContainerError::Internal(format!("Cannot update container {}: {m}", r.id))
                })?;
        }
        c.modify(|rec| rec.host_config = host)?;
        self.event(&c, "update", &[]);
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_merge_rules() {
        let mut cur = Resources::default();
        let err = merge_resources(
            &mut cur.clone(),
            &Resources {
                memory: 128 << 20,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.starts_with("Memory limit should be smaller"), "{err}");

        cur.memory = 256 << 20;
        merge_resources(
            &mut cur,
            &Resources {
                memory: 128 << 20,
                nano_cpus: 500_000_000,
                pids_limit: Some(40),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cur.memory, 128 << 20);
        assert_eq!(cur.nano_cpus, 500_000_000);
        assert_eq!(cur.pids_limit, Some(40));

        let err = merge_resources(
            &mut cur,
            &Resources {
                cpu_quota: 5000,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        );
        merge_resources(
            &mut cur,
            &Resources {
                pids_limit: Some(-1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cur.pids_limit, None);
    }

    #[test]
    fn cpusets_are_checked_as_docker_does() {
        assert_eq!(
            parse_cpu_list("0-2,4"),
            Some([0, 1, 2, 4].into_iter().collect())
        );
        assert!(parse_cpu_list("2-1").is_none());
        assert!(check_cpuset("cpus", "", "0-1").is_ok());
        assert!(check_cpuset("cpus", "1", "0-1\n").is_ok());
        assert_eq!(
            check_cpuset("cpus", "0-5", "0-1\n").unwrap_err(),
            "Requested CPUs are not available - requested 0-5, available: 0-1"
        );
        assert_eq!(
            check_cpuset("mems", "x", "0").unwrap_err(),
            "Invalid value x for cpuset mems"
        );
    }

    #[test]
    fn v2_plan_and_apply() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "").unwrap();
        let dirs = CgroupDirs::locate(root.path(), "/berth/x");
        let CgroupDirs::V2(dir) = &dirs else { panic!() };
        std::fs::create_dir_all(dir).unwrap();
        let update = Resources {
            memory: 128 << 20,
            memory_swap: 256 << 20,
            nano_cpus: 500_000_000,
            pids_limit: Some(40),
            cpu_shares: 512,
            blkio_weight: 500,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let writes = plan(&dirs, &update, &update);
        apply(&writes).unwrap();
        let get = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(get("memory.max"), "134217728");
        assert_eq!(get("memory.swap.max"), "134217728");
        assert_eq!(get("cpu.max"), "50000 100000");
        assert_eq!(get("pids.max"), "40");
        assert_eq!(get("cpu.weight"), "20");
        assert_eq!(get("io.weight"), "4950");
        assert_eq!(get("cpuset.cpus"), "0");
    }

    #[test]
    fn v1_plan() {
        let root = tempfile::tempdir().unwrap();
        let dirs = CgroupDirs::locate(root.path(), "/berth/x");
        let r = Resources {
            memory: 128 << 20,
            cpu_quota: 20_000,
            cpu_period: 50_000,
            pids_limit: None,
            ..Default::default()
        };
        let update = Resources {
            memory: 128 << 20,
            cpu_quota: 20_000,
            pids_limit: Some(0),
            ..Default::default()
        };
        let writes: Vec<(String, String)> = plan(&dirs, &r, &update)
            .into_iter()
            .map(|w| {
                (
                    w.path
                        .strip_prefix(root.path())
                        .unwrap()
                        .display()
                        .to_string(),
                    w.value,
                )
            })
            .collect();
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            writes,
            vec![
                s("memory/berth/x/memory.limit_in_bytes", "134217728"),
                s("memory/berth/x/memory.memsw.limit_in_bytes", "268435456"),
                s("cpu/berth/x/cpu.cfs_period_us", "50000"),
                s("cpu/berth/x/cpu.cfs_quota_us", "20000"),
                s("pids/berth/x/pids.max", "max"),
            ]
        );
    }
}
