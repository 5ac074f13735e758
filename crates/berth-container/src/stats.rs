//! Resource usage of a running container (`GET /containers/{id}/stats`), read from its cgroup
//! (v1: one directory per controller; v2: one unified directory), `/proc/stat`,
//! `/proc/meminfo` and the container's `/proc/<pid>/net/dev`. The parsers take file contents
//! so that both cgroup layouts are unit-tested from fixture files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_api::models::stats::{
    BlkioEntry, BlkioStats, ContainerStats, CpuStats, CpuUsage, MemoryStats, NetworkStats,
    PidsStats, ThrottlingData,
};
use chrono::Utc;

use crate::error::Result;
use crate::manager::Containers;
use crate::record::{GO_ZERO_TIME, Record, go_time};

/// The cgroup hierarchy root.
pub const CGROUP_ROOT: &str = berth_runtime::cgroups::ROOT;

/// USER_HZ: the unit of `cpuacct.stat` (100 on every Linux architecture Berth runs on).
const USER_HZ: u64 = 100;
const NANOS: u64 = 1_000_000_000;

/// Where one container's cgroup files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupDirs {
    /// cgroup v1: the container's directory in each controller's hierarchy.
    V1 {
        cpu: PathBuf,
        cpuacct: PathBuf,
        cpuset: PathBuf,
        memory: PathBuf,
        pids: PathBuf,
        blkio: PathBuf,
    },
    /// cgroup v2: the container's directory in the unified hierarchy.
    V2(PathBuf),
}

impl CgroupDirs {
    /// The directories of `cgroup_path` (`/berth/<id>`) under `root` (normally
    /// [`CGROUP_ROOT`]): v2 when `root` is a unified hierarchy (it has `cgroup.controllers`),
    /// v1 otherwise (a hybrid host's `unified` mount carries no controllers).
    pub fn locate(root: &Path, cgroup_path: &str) -> CgroupDirs {
        let rel = cgroup_path.trim_start_matches('/');
        if berth_runtime::cgroups::CgroupVersion::of(root).is_v2() {
            return CgroupDirs::V2(root.join(rel));
        }
        let dir = |ctrl: &str| root.join(ctrl).join(rel);
        CgroupDirs::V1 {
            cpu: dir("cpu"),
            cpuacct: dir("cpuacct"),
            cpuset: dir("cpuset"),
            memory: dir("memory"),
            pids: dir("pids"),
            blkio: dir("blkio"),
        }
    }
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn read_u64(p: &Path) -> u64 {
    read(p).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `cpuacct.stat`).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A limit file: a number, or `max` / a huge v1 value meaning "none" (0).
pub fn parse_limit(text: &str) -> u64 {
    match text.trim() {
        "max" | "" => 0,
        // v1 reports "unlimited" as the largest page-aligned i64.
        s => s.parse::<u64>().ok().filter(|v| *v < 1 << 62).unwrap_or(0),
    }
}

/// v1 `blkio.*_recursive` files: `MAJ:MIN Op value` lines (the trailing `Total n` is dropped).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let dev = f.next()?;
            let op = f.next()?;
            let value = f.next()?.parse().ok()?;
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value,
            })
        })
        .collect()
}

/// v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..` → (bytes, ios) as Docker
/// reports them (ops `read` and `write`).
pub fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse::<u64>() else {
                continue;
            };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "read"),
                "wbytes" => (&mut bytes, "write"),
                "rios" => (&mut ios, "read"),
                "wios" => (&mut ios, "write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    (bytes, ios)
}

/// `/proc/<pid>/net/dev`, without `lo`.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetworkStats> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            NetworkStats {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        );
    }
    out
}

/// Host CPU time in nanoseconds and the number of online CPUs, from `/proc/stat` (Docker
/// sums user, nice, system, idle, iowait, irq and softirq).
pub fn parse_proc_stat(text: &str) -> (u64, u64) {
    let mut total = 0;
    let mut cpus = 0;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let ticks: u64 = f.take(7).filter_map(|x| x.parse::<u64>().ok()).sum();
                total = ticks * (NANOS / USER_HZ);
            }
            Some(c) if c.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    (total, cpus)
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn parse_mem_total(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// What a cgroup says about CPU, memory, pids and block I/O.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    pub cpu: CpuUsage,
    pub throttling: ThrottlingData,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
}

/// Reads a container's cgroup; `host_memory` stands in for an absent memory limit.
pub fn read_cgroup(dirs: &CgroupDirs, host_memory: u64) -> CgroupStats {
    let mut s = CgroupStats::default();
    match dirs {
        CgroupDirs::V1 {
            cpu,
            cpuacct,
            memory,
            pids,
            blkio,
            ..
        } => {
            s.cpu.total_usage = read_u64(&cpuacct.join("cpuacct.usage"));
            s.cpu.percpu_usage = read(&cpuacct.join("cpuacct.usage_percpu")).map(|t| {
                t.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            });
            let st = parse_flat_keyed(&read(&cpuacct.join("cpuacct.stat")).unwrap_or_default());
            let tick = NANOS / USER_HZ;
            s.cpu.usage_in_usermode = st.get("user").copied().unwrap_or(0) * tick;
            s.cpu.usage_in_kernelmode = st.get("system").copied().unwrap_or(0) * tick;
            let cs = parse_flat_keyed(&read(&cpu.join("cpu.stat")).unwrap_or_default());
            s.throttling = ThrottlingData {
                periods: cs.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: cs.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: cs.get("throttled_time").copied().unwrap_or(0),
            };
            s.memory = MemoryStats {
                usage: read_u64(&memory.join("memory.usage_in_bytes")),
                max_usage: read_u64(&memory.join("memory.max_usage_in_bytes")),
                stats: parse_flat_keyed(&read(&memory.join("memory.stat")).unwrap_or_default()),
                failcnt: read_u64(&memory.join("memory.failcnt")),
                limit: parse_limit(
                    &read(&memory.join("memory.limit_in_bytes")).unwrap_or_default(),
                ),
            };
            s.pids = PidsStats {
                current: read_u64(&pids.join("pids.current")),
                limit: parse_limit(&read(&pids.join("pids.max")).unwrap_or_default()),
            };
            let list = |name: &str| -> Option<Vec<BlkioEntry>> {
                // The CFQ files when the scheduler keeps them, else the throttle ones.
                let cfq = read(&blkio.join(format!("blkio.{name}")))
                    .map(|t| parse_blkio_v1(&t))
                    .filter(|v| !v.is_empty());
                cfq.or_else(|| {
                    read(&blkio.join(format!("blkio.throttle.{name}"))).map(|t| parse_blkio_v1(&t))
                })
            };
            s.blkio = BlkioStats {
                io_service_bytes_recursive: list("io_service_bytes_recursive"),
                io_serviced_recursive: list("io_serviced_recursive"),
                ..Default::default()
            };
        }
        CgroupDirs::V2(dir) => {
            let cs = parse_flat_keyed(&read(&dir.join("cpu.stat")).unwrap_or_default());
            let us = |k: &str| cs.get(k).copied().unwrap_or(0) * 1000;
            s.cpu = CpuUsage {
                total_usage: us("usage_usec"),
                percpu_usage: None,
                usage_in_kernelmode: us("system_usec"),
                usage_in_usermode: us("user_usec"),
            };
            s.throttling = ThrottlingData {
                periods: cs.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: cs.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: us("throttled_usec"),
            };
            s.memory = MemoryStats {
                usage: read_u64(&dir.join("memory.current")),
                stats: parse_flat_keyed(&read(&dir.join("memory.stat")).unwrap_or_default()),
                limit: parse_limit(&read(&dir.join("memory.max")).unwrap_or_default()),
                ..Default::default()
            };
            s.pids = PidsStats {
                current: read_u64(&dir.join("pids.current")),
                limit: parse_limit(&read(&dir.join("pids.max")).unwrap_or_default()),
            };
            if let Some(t) = read(&dir.join("io.stat")) {
                let (bytes, ios) = parse_io_stat(&t);
                s.blkio.io_service_bytes_recursive = Some(bytes);
                s.blkio.io_serviced_recursive = Some(ios);
            }
        }
    }
    if s.memory.limit == 0 || (host_memory > 0 && s.memory.limit > host_memory) {
        s.memory.limit = host_memory;
    }
    s
}

/// Zeroed stats: what Docker answers for a container that is not running.
pub fn zeroed(r: &Record) -> ContainerStats {
    ContainerStats {
        name: r.slash_name(),
        id: r.id.clone(),
        read: GO_ZERO_TIME.into(),
        preread: GO_ZERO_TIME.into(),
        ..Default::default()
    }
}

/// One sample of a running container (its `precpu_stats` left empty). Blocking: reads files.
pub fn sample(r: &Record, cgroup_path: &str) -> ContainerStats {
    let dirs = CgroupDirs::locate(Path::new(CGROUP_ROOT), cgroup_path);
    let host_memory = parse_mem_total(&read(Path::new("/proc/meminfo")).unwrap_or_default());
    let cg = read_cgroup(&dirs, host_memory);
    let (system, cpus) = parse_proc_stat(&read(Path::new("/proc/stat")).unwrap_or_default());
    let networks = if r.network_mode().is_host() || r.state.pid <= 0 {
        None
    } else {
        read(Path::new(&format!("/proc/{}/net/dev", r.state.pid)))
            .map(|t| parse_net_dev(&t))
            .filter(|n| !n.is_empty())
    };
    ContainerStats {
        name: r.slash_name(),
        id: r.id.clone(),
        read: go_time(Some(Utc::now())),
        preread: GO_ZERO_TIME.into(),
        pids_stats: cg.pids,
        blkio_stats: cg.blkio,
        cpu_stats: CpuStats {
            cpu_usage: cg.cpu,
            system_cpu_usage: system,
            online_cpus: cpus,
            throttling_data: cg.throttling,
        },
        memory_stats: cg.memory,
        networks,
        ..Default::default()
    }
}

/// Sets `prev` as the earlier sample of `cur` (`precpu_stats`, `preread`).
pub fn with_previous(mut cur: ContainerStats, prev: &ContainerStats) -> ContainerStats {
    cur.precpu_stats = prev.cpu_stats.clone();
    cur.preread = prev.read.clone();
    cur
}

impl Containers {
    /// One stats sample of a container and whether it runs: real numbers while it runs,
    /// zeroed stats otherwise.
    pub async fn stats_sample(&self, key: &str) -> Result<(ContainerStats, bool)> {
        let c = self.get(key)?;
        let r = c.record();
        if !r.state.status.is_running() {
            return Ok((zeroed(&r), false));
        }
        let cg = c.cgroup_path();
        let s = tokio::task::spawn_blocking(move || sample(&r, &cg))
            .await
            .map_err(|e| crate::ContainerError::Internal(format!("internal error: {e}")))?;
        Ok((s, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v2_layout_is_read_from_the_unified_directory() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "cgroup.controllers", "cpu memory pids io\n");
        let dirs = CgroupDirs::locate(root.path(), "/berth/abc");
        let CgroupDirs::V2(dir) = &dirs else {
            panic!("not v2: {dirs:?}")
        };
        write(
            dir,
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\nthrottled_usec 42\n",
        );
        write(dir, "memory.current", "1048576\n");
        write(dir, "memory.max", "max\n");
        write(
            dir,
            "memory.stat",
            "anon 4096\nfile 8192\ninactive_file 4096\n",
        );
        write(dir, "pids.current", "3\n");
        write(dir, "pids.max", "40\n");
        write(
            dir,
            "io.stat",
            "8:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        let s = read_cgroup(&dirs, 8 << 30);
        assert_eq!(s.cpu.total_usage, 2_500_000);
        assert_eq!(s.cpu.usage_in_usermode, 2_000_000);
        assert_eq!(s.cpu.usage_in_kernelmode, 500_000);
        assert_eq!(s.cpu.percpu_usage, None);
        assert_eq!(
            s.throttling,
            ThrottlingData {
                periods: 10,
                throttled_periods: 3,
                throttled_time: 42_000
            }
        );
        assert_eq!(s.memory.usage, 1 << 20);
        assert_eq!(s.memory.limit, 8 << 30, "no limit: the host's memory");
        assert_eq!(s.memory.stats["inactive_file"], 4096);
        assert_eq!(s.memory.max_usage, 0);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 3,
                limit: 40
            }
        );
        let bytes = s.blkio.io_service_bytes_recursive.unwrap();
        assert_eq!(bytes.len(), 2);
        assert_eq!((bytes[0].op.as_str(), bytes[0].value), ("read", 1024));
        assert_eq!((bytes[1].op.as_str(), bytes[1].value), ("write", 2048));
        assert_eq!(s.blkio.io_serviced_recursive.unwrap()[1].value, 2);

        write(dir, "memory.max", "134217728\n");
        assert_eq!(read_cgroup(&dirs, 8 << 30).memory.limit, 128 << 20);
    }

    #[test]
    fn v1_layout_reads_each_controller() {
        let root = tempfile::tempdir().unwrap();
        let dirs = CgroupDirs::locate(root.path(), "berth/abc");
        let CgroupDirs::V1 {
            cpu,
            cpuacct,
            memory,
            pids,
            blkio,
            ..
        } = &dirs
        else {
            panic!("not v1")
        };
        write(cpuacct, "cpuacct.usage", "3000000\n");
        write(cpuacct, "cpuacct.usage_percpu", "1000000 2000000 \n");
        write(cpuacct, "cpuacct.stat", "user 2\nsystem 1\n");
        write(
            cpu,
            "cpu.stat",
            "nr_periods 5\nnr_throttled 1\nthrottled_time 999\n",
        );
        write(memory, "memory.usage_in_bytes", "2097152\n");
        write(memory, "memory.max_usage_in_bytes", "4194304\n");
        write(memory, "memory.limit_in_bytes", "9223372036854771712\n");
        write(memory, "memory.failcnt", "7\n");
        write(
            memory,
            "memory.stat",
            "cache 0\nrss 4096\ntotal_inactive_file 123\n",
        );
        write(pids, "pids.current", "2\n");
        write(pids, "pids.max", "max\n");
        write(
            blkio,
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:0 Async 4608\n8:0 Total 4608\nTotal 4608\n",
        );
        write(blkio, "blkio.io_service_bytes_recursive", "Total 0\n");
        let s = read_cgroup(&dirs, 1 << 30);
        assert_eq!(s.cpu.total_usage, 3_000_000);
        assert_eq!(s.cpu.percpu_usage, Some(vec![1_000_000, 2_000_000]));
        assert_eq!(s.cpu.usage_in_usermode, 20_000_000);
        assert_eq!(s.cpu.usage_in_kernelmode, 10_000_000);
        assert_eq!(s.throttling.throttled_time, 999);
        assert_eq!(s.memory.usage, 2 << 20);
        assert_eq!(s.memory.max_usage, 4 << 20);
        assert_eq!(s.memory.limit, 1 << 30);
        assert_eq!(s.memory.failcnt, 7);
        assert_eq!(s.memory.stats["total_inactive_file"], 123);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 2,
                limit: 0
            }
        );
        let b = s.blkio.io_service_bytes_recursive.unwrap();
        assert_eq!(
            b.len(),
            5,
            "the throttle file, without the bare Total: {b:?}"
        );
        assert_eq!((b[0].major, b[0].minor, b[0].op.as_str()), (8, 0, "Read"));
    }

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 0 50 800 10 0 5 7 0 0\ncpu0 50 0 25 400 5 0 2 3 0 0\ncpu1 50 0 25 400 5 0 3 4 0 0\nintr 1\n";
        assert_eq!(parse_proc_stat(stat), (965 * 10_000_000, 2));
        assert_eq!(
            parse_mem_total("MemTotal:        2048 kB\nMemFree: 1 kB\n"),
            2 << 20
        );
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2000      20    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n";
        let n = parse_net_dev(dev);
        assert_eq!(n.len(), 1);
        let e = &n["eth0"];
        assert_eq!(
            (e.rx_bytes, e.rx_packets, e.rx_errors, e.rx_dropped),
            (2000, 20, 1, 2)
        );
        assert_eq!(
            (e.tx_bytes, e.tx_packets, e.tx_errors, e.tx_dropped),
            (3000, 30, 3, 4)
        );
    }
}
