//! The config hash, computed as Docker Compose v2 computes it, so that a project either tool
//! created is left alone by the other when nothing changed.
//!
//! Compose digests (sha256, hex) the JSON encoding of its service struct, with `build`,
//! `pull_policy`, `scale`, `depends_on` and `deploy.replicas` cleared. That encoding, found by
//! comparing with `docker compose config --hash`: the service's own keys sorted (it is encoded
//! through a map), `command` and `entrypoint` always present (`null` when unset), nested
//! structures (ports, volumes, health check, deploy, ...) with their keys in Go's field order,
//! maps (environment, labels) sorted, the environment with the `env_file`s merged in (as in
//! the label `up` writes; `config --hash` hashes the paths instead), byte sizes as decimal
//! strings,
//! secrets with their default target, `extra_hosts` as `host=ip`, devices in their long form,
//! compact (no spaces). Not reproduced yet: `cpus` (the other tool then recreates such
//! containers once).

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

fn order_for(path: &str) -> Option<&'static [&'static str]> {
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
            if let Some(Value::Object(spec)) = resources.get_mut(part)
                && let Some(Value::String(text)) = spec.get("memory")
                && let Ok(bytes) = berth_api::units::ram_in_bytes(text)
            {
                spec.insert("memory".into(), Value::String(bytes.to_string()));
            }
        }
    }
    for key in ["mem_limit", "memswap_limit", "mem_reservation", "shm_size"] {
        if let Some(Value::String(text)) = s.get(key)
            && let Ok(bytes) = berth_api::units::ram_in_bytes(text)
        {
            s.insert(key.into(), Value::String(bytes.to_string()));
        }
    }
    Value::Object(s)
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
}
