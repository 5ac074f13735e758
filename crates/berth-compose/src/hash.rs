//! The config hash, computed as Docker Compose v2 computes it, so that a project either tool
//! created is left alone by the other when nothing changed.
//!
//! Compose digests (sha256, hex) the JSON encoding of its service struct, with `build`,
//! `pull_policy`, `scale`, `depends_on` and `deploy.replicas` cleared. That encoding, found by
//! comparing with `docker compose config --hash`: the service's own keys in the Go struct's
//! field order (mostly, not quite, alphabetical: `cpus` comes before `command`), zero values of
//! its plain fields left out (`omitempty`), `x-` extensions left out, `command` and
//! `entrypoint` always present (`null` when unset), nested
//! structures (ports, volumes, health check, deploy, ...) with their keys in Go's field order,
//! maps (environment, labels) sorted, the environment with the `env_file`s merged in (as in
//! the label `up` writes; `config --hash` hashes the paths instead), byte sizes as decimal
//! strings,
//! secrets with their default target, `extra_hosts` as `host=ip`, devices in their long form,
//! compact (no spaces); `cpus` and `cpu_percent` as Go prints a `float32` (`0.5`, `2`), byte
//! sizes (`mem_limit`, `mem_swappiness`, ...) as decimal strings, integers given as strings
//! as numbers.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Go field order of the structures Compose nests in a service (by path; `*` is any key of
/// a map, `[]` any element of a list). Keys not listed follow in sorted order.
const ORDERS: &[(&str, &[&str])] = &[
    (
        "ports[]",
        &[
            "name",
            "mode",
            "host_ip",
            "target",
            "published",
            "protocol",
            "app_protocol",
        ],
    ),
    (
        "volumes[]",
        &[
            "type",
            "source",
            "target",
            "read_only",
            "consistency",
            "bind",
            "volume",
            "tmpfs",
            "image",
        ],
    ),
    (
        "volumes[].bind",
        &["propagation", "create_host_path", "recursive", "selinux"],
    ),
    ("volumes[].volume", &["nocopy", "subpath"]),
    ("volumes[].tmpfs", &["size", "mode"]),
    (
        "blkio_config",
        &[
            "weight",
            "weight_device",
            "device_read_bps",
            "device_read_iops",
            "device_write_bps",
            "device_write_iops",
        ],
    ),
    (
        "deploy.update_config",
        &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
    ),
    (
        "deploy.rollback_config",
        &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
    ),
    (
        "healthcheck",
        &[
            "test",
            "timeout",
            "interval",
            "retries",
            "start_period",
            "start_interval",
            "disable",
        ],
    ),
    (
        "deploy",
        &[
            "mode",
            "replicas",
            "labels",
            "update_config",
            "rollback_config",
            "resources",
            "restart_policy",
            "placement",
            "endpoint_mode",
        ],
    ),
    ("deploy.resources", &["limits", "reservations"]),
    ("deploy.resources.limits", &["cpus", "memory", "pids"]),
    (
        "deploy.resources.reservations",
        &["cpus", "memory", "pids", "generic_resources", "devices"],
    ),
    (
        "deploy.restart_policy",
        &["condition", "delay", "max_attempts", "window"],
    ),
    ("secrets[]", &["source", "target", "uid", "gid", "mode"]),
    ("configs[]", &["source", "target", "uid", "gid", "mode"]),
    ("logging", &["driver", "options"]),
    ("devices[]", &["source", "target", "permissions"]),
    ("ulimits.*", &["single", "soft", "hard"]),
    (
        "networks.*",
        &[
            "aliases",
            "ipv4_address",
            "ipv6_address",
            "link_local_ips",
            "mac_address",
            "driver_opts",
            "priority",
            "gw_priority",
        ],
    ),
];

/// compose-go's `ServiceConfig` fields, in their Go order (the JSON encoding's order).
const SERVICE_ORDER: &[&str] = &[
    "profiles",
    "annotations",
    "attach",
    "build",
    "develop",
    "blkio_config",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "cgroup",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpus",
    "cpuset",
    "cpu_shares",
    "command",
    "configs",
    "container_name",
    "credential_spec",
    "depends_on",
    "deploy",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "dockerfile",
    "domainname",
    "entrypoint",
    "provider",
    "environment",
    "env_file",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "group_add",
    "gpus",
    "hostname",
    "healthcheck",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "label_file",
    "links",
    "logging",
    "log_driver",
    "log_opt",
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "mem_swappiness",
    "mac_address",
    "models",
    "net",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "privileged",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volume_driver",
    "volumes",
    "volumes_from",
    "working_dir",
    "post_start",
    "pre_stop",
];

/// Service fields that are Go pointers (or always encoded): kept even when empty or false.
const KEPT_WHEN_EMPTY: &[&str] = &[
    "attach",
    "build",
    "develop",
    "blkio_config",
    "command",
    "credential_spec",
    "deploy",
    "entrypoint",
    "extends",
    "healthcheck",
    "init",
    "logging",
    "provider",
    "scale",
    "stop_grace_period",
];

/// `float32` fields.
const FLOAT32: &[&str] = &["cpus", "cpu_percent"];
/// `UnitBytes` fields: encoded as decimal strings.
const UNIT_BYTES: &[&str] = &[
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "mem_swappiness",
    "shm_size",
];
/// `int64` fields (the file may give them as strings).
const INT64: &[&str] = &[
    "cpu_count",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "oom_score_adj",
    "pids_limit",
];

/// A number as Go's encoding/json prints a `float32`: the shortest decimal that reads back
/// as the same `float32`, without a fraction when it is whole.
fn go_float32(v: &Value) -> Option<Value> {
    let f: f32 = match v {
        Value::Number(n) => n.as_f64()? as f32,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return Some(Value::from(f as i64));
    }
    // `f32`'s Display is the shortest round-tripping decimal; read as f64 it prints the same.
    let text = f.to_string();
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

/// A `UnitBytes` value as a decimal string (`-1`, unlimited swap, included).
fn unit_bytes(v: &Value) -> Option<Value> {
    match v {
        Value::Number(n) => Some(Value::String(n.as_i64()?.to_string())),
        Value::String(s) if s.trim() == "-1" => Some(Value::String("-1".into())),
        Value::String(s) => berth_api::units::ram_in_bytes(s)
            .ok()
            .map(|b| Value::String(b.to_string())),
        _ => None,
    }
}

fn int64(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
        _ => None,
    }
}

/// A duration as Go's `time.Duration.String` prints it (`1m0s`, `1.5s`, `300ms`).
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    // Below a second: one unit with a decimal fraction.
    let frac = |v: u64, unit: u64, name: &str| {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            format!("{sign}{whole}{name}")
        } else {
            let digits = unit.to_string().len() - 1;
            let f = format!("{rest:0digits$}");
            format!("{sign}{whole}.{}{name}", f.trim_end_matches('0'))
        }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return frac(n, 1_000, "µs");
    }
    if n < 1_000_000_000 {
        return frac(n, 1_000_000, "ms");
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sub == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let f = format!("{sub:09}");
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    }
    out
}

fn duration(v: &Value) -> Option<Value> {
    let text = v.as_str()?;
    berth_api::duration::parse_go_duration(text).map(|n| Value::String(go_duration(n)))
}

/// Go's `omitempty`: false, 0, "", and empty lists and maps.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn order_for(path: &str) -> Option<&'static [&'static str]> {
    if path.is_empty() {
        return Some(SERVICE_ORDER);
    }
    ORDERS
        .iter()
        .find(|(p, _)| matches(p, path))
        .map(|(_, o)| *o)
}

/// `networks.*` matches `networks.front`; `[]` segments match as written.
fn matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let q: Vec<&str> = path.split('.').collect();
    p.len() == q.len() && p.iter().zip(&q).all(|(a, b)| *a == "*" || a == b)
}

fn write(value: &Value, path: &str, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            if let Some(order) = order_for(path) {
                keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(order.len()));
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                let sub = if path.is_empty() {
                    (*k).clone()
                } else {
                    format!("{path}.{k}")
                };
                write(&map[*k], &sub, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, &format!("{path}[]"), out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The service as Compose hashes it, from its canonical tree before `env_file`s are merged
/// into its environment; `lookup` resolves bare environment keys.
pub fn view(service: &Map<String, Value>, lookup: &dyn Fn(&str) -> Option<String>) -> Value {
    let mut s = service.clone();
    for key in ["build", "pull_policy", "scale", "depends_on", "profiles"] {
        s.remove(key);
    }
    s.entry("command").or_insert(Value::Null);
    s.entry("entrypoint").or_insert(Value::Null);
    if let Some(Value::Object(deploy)) = s.get_mut("deploy") {
        deploy.remove("replicas");
        deploy.entry("resources").or_insert(json!({}));
        deploy.entry("placement").or_insert(json!({}));
    }
    if let Some(Value::Object(env)) = s.get_mut("environment") {
        let keys: Vec<String> = env.keys().cloned().collect();
        for k in keys {
            // A bare key takes the shell's value; unset, it stays null.
            if env[&k].is_null()
                && let Some(v) = lookup(&k)
            {
                env.insert(k, Value::String(v));
            }
        }
    }
    if let Some(Value::Array(files)) = s.get_mut("env_file") {
        for f in files.iter_mut() {
            if let Some(p) = f.get("path").cloned() {
                *f = p;
            }
        }
    }
    // Secrets get their default target; configs do not.
    if let Some(Value::Array(refs)) = s.get_mut("secrets") {
        for r in refs.iter_mut() {
            if let Some(o) = r.as_object_mut()
                && !o.contains_key("target")
                && let Some(Value::String(src)) = o.get("source")
            {
                let target = format!("/run/secrets/{src}");
                o.insert("target".into(), Value::String(target));
            }
        }
    }
    // `host:ip` is written `host=ip`.
    if let Some(Value::Array(hosts)) = s.get_mut("extra_hosts") {
        for h in hosts.iter_mut() {
            if let Value::String(text) = h
                && !text.contains('=')
                && let Some((host, ip)) = text.split_once(':')
            {
                *h = Value::String(format!("{host}={ip}"));
            }
        }
    }
    // Devices in their long form.
    if let Some(Value::Array(devices)) = s.get_mut("devices") {
        for d in devices.iter_mut() {
            if let Value::String(text) = d {
                let parts: Vec<&str> = text.split(':').collect();
                *d = json!({
                    "source": parts[0],
                    "target": parts.get(1).unwrap_or(&parts[0]),
                    "permissions": parts.get(2).unwrap_or(&"rwm"),
                });
            }
        }
    }
    if let Some(Value::Object(resources)) = s.get_mut("deploy").and_then(|d| d.get_mut("resources"))
    {
        for part in ["limits", "reservations"] {
            if let Some(Value::Object(spec)) = resources.get_mut(part) {
                convert(spec, "memory", unit_bytes);
                convert(spec, "cpus", go_float32);
                convert(spec, "pids", int64);
            }
        }
    }
    for key in UNIT_BYTES {
        convert(&mut s, key, unit_bytes);
        // A zero `UnitBytes` is omitted like any zero integer.
        if s.get(*key).and_then(Value::as_str) == Some("0") {
            s.remove(*key);
        }
    }
    convert(&mut s, "stop_grace_period", duration);
    if let Some(Value::Object(hc)) = s.get_mut("healthcheck") {
        for key in ["timeout", "interval", "start_period", "start_interval"] {
            convert(hc, key, duration);
        }
    }
    if let Some(Value::Object(deploy)) = s.get_mut("deploy") {
        for part in ["update_config", "rollback_config"] {
            if let Some(Value::Object(u)) = deploy.get_mut(part) {
                convert(u, "delay", duration);
                convert(u, "monitor", duration);
            }
        }
        if let Some(Value::Object(r)) = deploy.get_mut("restart_policy") {
            convert(r, "delay", duration);
            convert(r, "window", duration);
        }
    }
    // tmpfs sizes are `UnitBytes`.
    if let Some(Value::Array(vols)) = s.get_mut("volumes") {
        for v in vols {
            if let Some(Value::Object(t)) = v.get_mut("tmpfs") {
                convert(t, "size", unit_bytes);
            }
        }
    }
    // compose-go's blkio device structs have no JSON tags: Go's field names, rates as
    // `UnitBytes`.
    if let Some(Value::Object(b)) = s.get_mut("blkio_config") {
        for (key, list) in b.iter_mut() {
            let Value::Array(items) = list else { continue };
            for item in items {
                let Value::Object(o) = item else { continue };
                if key != "weight_device" {
                    convert(o, "rate", unit_bytes);
                }
                let renamed: Map<String, Value> = std::mem::take(o)
                    .into_iter()
                    .map(|(k, v)| {
                        let mut c = k.chars();
                        let cap = c
                            .next()
                            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                            .unwrap_or_default();
                        (cap, v)
                    })
                    .collect();
                *o = renamed;
            }
        }
    }
    for key in FLOAT32 {
        convert(&mut s, key, go_float32);
    }
    for key in INT64 {
        convert(&mut s, key, int64);
    }
    // Extensions are not encoded; plain fields at their zero value are omitted.
    s.retain(|k, v| {
        !k.starts_with("x-") && (KEPT_WHEN_EMPTY.contains(&k.as_str()) || !is_empty(v))
    });
    Value::Object(s)
}

fn convert(map: &mut Map<String, Value>, key: &str, f: fn(&Value) -> Option<Value>) {
    if let Some(new) = map.get(key).and_then(f) {
        map.insert(key.into(), new);
    }
}

/// sha256 (hex) of the view's encoding.
pub fn digest(view: &Value) -> String {
    let mut text = String::new();
    write(view, "", &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(service: Value) -> String {
        let none = |_: &str| None;
        digest(&view(service.as_object().unwrap(), &none))
    }

    /// Hashes `docker compose config --hash` (v2.40.3) printed for the same services.
    #[test]
    fn agrees_with_docker_compose() {
        assert_eq!(
            hash(
                json!({"image": "busybox", "command": ["sleep", "300"], "networks": {"default": null}})
            ),
            "30a81aa59751480d7398334be28fc51b3b91af2207ef9bb23c9890af87f62b8f"
        );
        assert_eq!(
            hash(
                json!({"image": "busybox", "command": ["sleep", "300"], "scale": 1,
                        "healthcheck": {"test": ["CMD", "true"]}, "networks": {"default": null}})
            ),
            "42f209684f2482e6a13730231ae2627d54def0003a6608472954843cd7577b88"
        );
    }

    /// Numbers as Compose encodes them: `cpus` a float32 placed before `command` (Go field
    /// order), sizes as decimal strings, zero values omitted, durations as Go prints them.
    #[test]
    fn numeric_fields_agree_with_docker_compose() {
        assert_eq!(
            hash(json!({"image": "busybox", "cpus": 0.5, "networks": {"default": null}})),
            "e11b425fb23bc128250c6b2b9e2e336f184b08bf06035ac4862d7425d5de8692"
        );
        assert_eq!(
            hash(json!({"image": "busybox", "cpus": 2, "networks": {"default": null}})),
            "8f3e7bf5208600091e8db5c151559e882f138e6e681eed481d92c146fd408a9f"
        );
        assert_eq!(
            hash(
                json!({"image": "busybox", "cpus": 0.1, "cpu_rt_period": 1000,
                        "cpu_rt_runtime": 1000, "memswap_limit": -1,
                        "networks": {"default": null}})
            ),
            "ded8132dd04f5e1058d7fc7be571d7d34c936763c15cecdb0fe89b317a1cfca5"
        );
        assert_eq!(
            hash(
                json!({"image": "busybox", "cpus": "1.5", "mem_limit": "64m",
                        "memswap_limit": "128m", "mem_reservation": "32m", "cpu_shares": 512,
                        "cpu_quota": 50000, "cpu_period": 100000, "cpuset": "0",
                        "pids_limit": 100, "mem_swappiness": 10, "oom_score_adj": 100,
                        "shm_size": "64m", "cpu_count": 1, "cpu_percent": 50,
                        "cpu_rt_runtime": 0, "blkio_config": {"weight": 300},
                        "oom_kill_disable": true, "networks": {"default": null}})
            ),
            "330811bdf540c47ac6f96612461772d7b44c2e1631c66f5abce1287b1ee9588f"
        );
        assert_eq!(
            hash(json!({"image": "busybox", "deploy": {"resources": {
                "limits": {"cpus": "0.5", "memory": "64m", "pids": 10},
                "reservations": {"cpus": "0.25", "memory": "16m"}}},
                "networks": {"default": null}})),
            "c060454bebde18ae1fb5a3770ba9533ac2320abe2215e635ca1f084a1e32d5c0"
        );
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(60_000_000_000), "1m0s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(0), "0s");
    }
}
