//! A rootless daemon's limits on cgroup v2, written by the shim itself.
//!
//! In a rootless daemon with a delegated cgroup (see berthd's `rootless::cgroup`), the runtime
//! can create the containers' cgroups and move their processes in, but not attach the eBPF
//! device filter cgroup v2 uses for device rules (`BPF_PROG_LOAD` needs `CAP_BPF` or
//! `CAP_SYS_ADMIN` in the host's user namespace). libcontainer attaches one whenever a spec
//! has resources, so such a spec carries none: the limits travel in [`ANNOTATION`] instead,
//! and the shim writes them into the container's cgroup after the runtime's create, before
//! the process starts. Device rules are not enforced there, as with runc's rootless
//! containers; the container sees only the device nodes its spec makes.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

/// The spec annotation holding the resources (JSON) of a rootless daemon's container.
pub const ANNOTATION: &str = "io.berth.rootless-cgroup-resources";

/// The cgroup v2 writes for `res` in `dir`: `(file, value)`, in order.
pub fn writes(res: &LinuxResources) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut w = |file: &str, value: String| out.push((file.to_string(), value));
    if let Some(m) = res.memory() {
        let limit = m.limit().unwrap_or(0);
        if limit > 0 {
            w("memory.max", limit.to_string());
        }
        // v2 limits swap alone: the spec's swap is memory + swap (runc's conversion).
        match m.swap() {
            Some(-1) => w("memory.swap.max", "max".into()),
            Some(s) if s > 0 && limit > 0 => w("memory.swap.max", (s - limit).max(0).to_string()),
            Some(s) if s > 0 => w("memory.swap.max", s.to_string()),
            _ => {}
        }
        if let Some(r) = m.reservation().filter(|r| *r > 0) {
            w("memory.low", r.to_string());
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            w("cpuset.cpus", cpus.clone());
        }
        if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            w("cpuset.mems", mems.clone());
        }
        let quota = c.quota().unwrap_or(0);
        let period = c.period().unwrap_or(0);
        if quota != 0 || period != 0 {
            let q = if quota > 0 {
                quota.to_string()
            } else {
                "max".into()
            };
            let p = if period > 0 { period } else { 100_000 };
            w("cpu.max", format!("{q} {p}"));
        }
        if let Some(shares) = c.shares().filter(|s| *s > 0) {
            w(
                "cpu.weight",
                crate::spec::cpu_weight_from_shares(shares).to_string(),
            );
        }
    }
    if let Some(p) = res.pids() {
        w(
            "pids.max",
            if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            },
        );
    }
    if let Some(unified) = res.unified() {
        let mut keys: Vec<&String> = unified.keys().collect();
        keys.sort();
        for k in keys {
            w(k, unified[k].clone());
        }
    }
    out
}

/// Writes `res` into the cgroup directory `dir`.
pub fn apply(dir: &Path, res: &LinuxResources) -> Result<(), String> {
    for (file, value) in writes(res) {
        std::fs::write(dir.join(&file), &value)
            .map_err(|e| format!("write {value:?} to {}: {e}", dir.join(&file).display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_style_resources_become_v2_files() {
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":67108864,"swap":134217728,"reservation":33554432},
                "cpu":{"quota":50000,"period":100000,"cpus":"0"},
                "pids":{"limit":40},"unified":{"io.weight":"default 2930"}}"#,
        )
        .unwrap();
        let w = writes(&res);
        let get = |f: &str| w.iter().find(|(k, _)| k == f).map(|(_, v)| v.as_str());
        assert_eq!(get("memory.max"), Some("67108864"));
        assert_eq!(get("memory.swap.max"), Some("67108864"));
        assert_eq!(get("memory.low"), Some("33554432"));
        assert_eq!(get("cpu.max"), Some("50000 100000"));
        assert_eq!(get("cpuset.cpus"), Some("0"));
        assert_eq!(get("pids.max"), Some("40"));
        assert_eq!(get("io.weight"), Some("default 2930"));
        let dir = tempfile::tempdir().unwrap();
        apply(dir.path(), &res).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("memory.max")).unwrap(),
            "67108864"
        );
    }
}
