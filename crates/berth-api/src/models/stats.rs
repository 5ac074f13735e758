//! `GET /containers/{id}/stats` and the `POST /containers/{id}/update` body. The stats shape
//! is Docker's `StatsResponse` exactly: snake_case keys, Go's `omitempty` where Docker has it
//! (the docker CLI and monitoring tools index these keys directly).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::container::{Resources, RestartPolicy};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One stats sample of a container (`stream` sends one a second).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerStats {
    /// The container's name with its leading slash.
    pub name: String,
    pub id: String,
    /// When this sample was read (RFC 3339 with nanoseconds; Go's zero time when stopped).
    pub read: String,
    /// When `precpu_stats` was read.
    pub preread: String,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    /// Always 0 on Linux.
    pub num_procs: u32,
    pub storage_stats: StorageStats,
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networks: Option<BTreeMap<String, NetworkStats>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 (omitted) when unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// Block I/O per device; the lists Docker leaves `null` stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Option<Vec<BlkioEntry>>,
    pub io_serviced_recursive: Option<Vec<BlkioEntry>>,
    pub io_queue_recursive: Option<Vec<BlkioEntry>>,
    pub io_service_time_recursive: Option<Vec<BlkioEntry>>,
    pub io_wait_time_recursive: Option<Vec<BlkioEntry>>,
    pub io_merged_recursive: Option<Vec<BlkioEntry>>,
    pub io_time_recursive: Option<Vec<BlkioEntry>>,
    pub sectors_recursive: Option<Vec<BlkioEntry>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard`, `Total` (cgroup v1); `read`, `write` (v2).
    pub op: String,
    pub value: u64,
}

/// Windows only; an empty object on Linux.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_count_normalized: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_count_normalized: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_size_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    /// Host CPU time in nanoseconds (from `/proc/stat`).
    #[serde(skip_serializing_if = "is_zero")]
    pub system_cpu_usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub online_cpus: u64,
    pub throttling_data: ThrottlingData,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    pub total_usage: u64,
    /// Per CPU (cgroup v1 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percpu_usage: Option<Vec<u64>>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottlingData {
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// cgroup v1 only.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_usage: u64,
    /// `memory.stat`, key by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, u64>,
    /// cgroup v1 only.
    #[serde(skip_serializing_if = "is_zero")]
    pub failcnt: u64,
    /// The limit, or the host's memory when there is none.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// `POST /containers/{id}/update` body: resources beside an optional restart policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, remote = "Self")]
pub struct ContainerUpdateRequest {
    #[serde(flatten, skip_deserializing)]
    pub resources: Resources,
    #[serde(rename = "RestartPolicy", skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
}

super::flattened_part!(ContainerUpdateRequest, resources: Resources);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_stats_have_dockers_keys() {
        let v = serde_json::to_value(ContainerStats::default()).unwrap();
        for k in [
            "read",
            "preread",
            "pids_stats",
            "blkio_stats",
            "num_procs",
            "storage_stats",
            "cpu_stats",
            "precpu_stats",
            "memory_stats",
            "name",
            "id",
        ] {
            assert!(v.get(k).is_some(), "{k} missing");
        }
        assert!(v.get("networks").is_none());
        assert_eq!(v["memory_stats"], serde_json::json!({}));
        assert!(v["blkio_stats"]["io_service_bytes_recursive"].is_null());
        assert_eq!(
            v["cpu_stats"]["throttling_data"],
            serde_json::json!({"periods":0,"throttled_periods":0,"throttled_time":0})
        );
    }

    #[test]
    fn update_body_parses_docker_cli_output() {
        let body = r#"{"BlkioWeight":0,"CpuShares":0,"Memory":134217728,"NanoCpus":500000000,"PidsLimit":40,"RestartPolicy":{"Name":"always"}}"#;
        let u: ContainerUpdateRequest = serde_json::from_str(body).unwrap();
        assert_eq!(u.resources.memory, 134217728);
        assert_eq!(u.resources.pids_limit, Some(40));
        assert_eq!(u.restart_policy.unwrap().name, "always");
    }
}
