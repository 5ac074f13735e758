//! Facts about the host the daemon reports in `/version` and `/info`, read from `/proc` and
//! `/etc` (no syscalls beyond file reads).

/// The machine architecture in Go's naming, as Docker reports it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `uname -r`.
pub fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default()
}

pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into())
}

pub fn ncpu() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i64)
}

/// Total memory in bytes, from `/proc/meminfo`.
pub fn mem_total() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<i64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// `(PRETTY_NAME, VERSION_ID)` from `/etc/os-release`.
pub fn operating_system() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    (
        value("PRETTY_NAME").unwrap_or_else(|| "Linux".into()),
        value("VERSION_ID").unwrap_or_default(),
    )
}

/// `"2"` when the unified hierarchy is mounted at `/sys/fs/cgroup`, `"1"` otherwise (including
/// the hybrid layout, whose unified part lives at `/sys/fs/cgroup/unified`).
pub fn cgroup_version() -> &'static str {
    crate::rootless::child::host_cgroup_version()
        .unwrap_or_else(berth_runtime::cgroups::CgroupVersion::host)
        .as_docker_str()
}

pub fn ipv4_forwarding() -> bool {
    read_trimmed("/proc/sys/net/ipv4/ip_forward").as_deref() == Some("1")
}

/// Open file descriptors of this process.
pub fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The node's `Description` in swarm mode: hostname, platform, resources, engine.
pub fn node_description(config: &crate::config::Config) -> serde_json::Value {
    let labels: std::collections::BTreeMap<String, String> = config
        .labels
        .iter()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    serde_json::json!({
        "Hostname": hostname(),
        "Platform": {"Architecture": std::env::consts::ARCH, "OS": "linux"},
        "Resources": {"NanoCPUs": ncpu() * 1_000_000_000, "MemoryBytes": mem_total()},
        "Engine": {
            "EngineVersion": crate::VERSION,
            "Labels": labels,
            "Plugins": [
                {"Type": "Log", "Name": "json-file"},
                {"Type": "Network", "Name": "bridge"},
                {"Type": "Network", "Name": "host"},
                {"Type": "Network", "Name": "null"},
                {"Type": "Volume", "Name": "local"}
            ]
        },
        "TLSInfo": {}
    })
}
