//! Berth's extension of `ContainerSpec` beyond swarmkit: `Privileged` (bool) and `Devices`
//! (HostConfig's `DeviceMapping` list: `PathOnHost`, `PathInContainer`, `CgroupPermissions`),
//! the shape swarmkit#1129 and swarmkit#1355 proposed (moby#24862, swarmkit#1244). The
//! docker CLI never sends these keys, and Go clients decoding a service ignore them.
//!
//! Because the docker CLI rewrites the whole spec it read on `docker service update` (and
//! drops fields its types do not know), an update whose `ContainerSpec` lacks a key keeps the
//! service's previous value ([`carry_over`]); clearing takes an explicit `false` / `[]`.

use serde_json::{Value, json};

pub const PRIVILEGED: &str = "Privileged";
pub const DEVICES: &str = "Devices";

/// Checks the extension's fields; the message is the part after swarmkit's
/// `InvalidArgument` prefix.
pub fn validate(cs: &Value) -> Result<(), String> {
    let p = &cs[PRIVILEGED];
    if !p.is_null() && !p.is_boolean() {
        return Err("ContainerSpec: Privileged must be a boolean".into());
    }
    let d = &cs[DEVICES];
    if d.is_null() {
        return Ok(());
    }
    let Some(list) = d.as_array() else {
        return Err("ContainerSpec: Devices must be an array".into());
    };
    for dev in list {
        let host = dev["PathOnHost"].as_str().unwrap_or_default();
        if !host.starts_with('/') {
            return Err(format!(
                "ContainerSpec: device path on host must be absolute: {host:?}"
            ));
        }
        let target = dev["PathInContainer"].as_str().unwrap_or(host);
        if !target.is_empty() && !target.starts_with('/') {
            return Err(format!(
                "ContainerSpec: device path in container must be absolute: {target:?}"
            ));
        }
        let perms = dev["CgroupPermissions"].as_str().unwrap_or("rwm");
        if perms.is_empty() || !perms.chars().all(|c| "rwm".contains(c)) {
            return Err(format!(
                "ContainerSpec: invalid device cgroup permissions: {perms:?}"
            ));
        }
    }
    Ok(())
}

/// Fills an update's `ContainerSpec` with the previous spec's extension fields where the
/// update does not name them (a docker CLI update cannot: its types lack them).
pub fn carry_over(previous: &Value, next: &mut Value) {
    let old = &previous["TaskTemplate"]["ContainerSpec"];
    let Some(cs) = next["TaskTemplate"]["ContainerSpec"].as_object_mut() else {
        return;
    };
    for key in [PRIVILEGED, DEVICES] {
        if !cs.contains_key(key) && !old[key].is_null() {
            cs.insert(key.to_string(), old[key].clone());
        }
    }
}

/// Passes the extension on to the task container's `HostConfig`.
pub fn apply(cs: &Value, config: &mut Value) {
    if cs[PRIVILEGED] == true {
        config["HostConfig"]["Privileged"] = json!(true);
    }
    let devices: Vec<Value> = cs[DEVICES]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let host = d["PathOnHost"].as_str().unwrap_or_default();
            let target = d["PathInContainer"]
                .as_str()
                .filter(|t| !t.is_empty())
                .unwrap_or(host);
            json!({
                "PathOnHost": host,
                "PathInContainer": target,
                "CgroupPermissions": d["CgroupPermissions"].as_str().unwrap_or("rwm"),
            })
        })
        .collect();
    if !devices.is_empty() {
        config["HostConfig"]["Devices"] = json!(devices);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_without_the_fields_keeps_them() {
        let old = json!({"TaskTemplate": {"ContainerSpec": {"Privileged": true, "Devices": [{"PathOnHost": "/dev/zero"}]}}});
        let mut next = json!({"TaskTemplate": {"ContainerSpec": {"Image": "x"}}});
        carry_over(&old, &mut next);
        assert_eq!(next["TaskTemplate"]["ContainerSpec"]["Privileged"], true);
        let mut cleared =
            json!({"TaskTemplate": {"ContainerSpec": {"Privileged": false, "Devices": []}}});
        carry_over(&old, &mut cleared);
        assert_eq!(
            cleared["TaskTemplate"]["ContainerSpec"]["Privileged"],
            false
        );
        assert_eq!(
            cleared["TaskTemplate"]["ContainerSpec"]["Devices"],
            json!([])
        );
    }

    #[test]
    fn host_config_gets_them() {
        let cs = json!({"Privileged": true, "Devices": [{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero"}]});
        let mut config = json!({"HostConfig": {}});
        apply(&cs, &mut config);
        assert_eq!(config["HostConfig"]["Privileged"], true);
        assert_eq!(
            config["HostConfig"]["Devices"][0]["CgroupPermissions"],
            "rwm"
        );
    }
}
