//! More of a task's container config, from the `ContainerSpec` fields dockerd's executor
//! passes on (ulimits, OOM score, groups, `no-new-privileges`) and the service's host-mode
//! published ports (`--publish mode=host`: bound on the node that runs the task; ingress
//! ports are the routing mesh's, not bound here).

use serde_json::{Map, Value, json};

use crate::store::State;
use crate::types::Task;

/// Adds to `config` (a container create body) what the task asks beyond the basics.
pub fn extend(state: &State, task: &Task, config: &mut Value) {
    let cs = &task.spec["ContainerSpec"];
    let host = &mut config["HostConfig"];
    if let Some(ulimits) = cs["Ulimits"].as_array() {
        host["Ulimits"] = json!(ulimits);
    }
    if let Some(score) = cs["OomScoreAdj"].as_i64() {
        host["OomScoreAdj"] = json!(score);
    }
    if let Some(groups) = cs["Groups"].as_array() {
        host["GroupAdd"] = json!(groups);
    }
    if cs["Privileges"]["NoNewPrivileges"] == true {
        host["SecurityOpt"] = json!(["no-new-privileges"]);
    }
    let ports = state
        .services
        .get(&task.service_id)
        .and_then(|s| s.spec["EndpointSpec"]["Ports"].as_array().cloned())
        .unwrap_or_default();
    let mut bindings = Map::new();
    let mut exposed = Map::new();
    for p in ports.iter().filter(|p| p["PublishMode"] == "host") {
        let Some(target) = p["TargetPort"].as_u64() else {
            continue;
        };
        let key = format!("{target}/{}", p["Protocol"].as_str().unwrap_or("tcp"));
        // 0: a port the engine picks, as `docker run -p 80` does.
        let published = p["PublishedPort"]
            .as_u64()
            .filter(|p| *p > 0)
            .map(|p| p.to_string())
            .unwrap_or_default();
        exposed.insert(key.clone(), json!({}));
        let entry = bindings.entry(key).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({"HostIp": "", "HostPort": published}));
        }
    }
    if !bindings.is_empty() {
        config["HostConfig"]["PortBindings"] = Value::Object(bindings);
        config["ExposedPorts"] = Value::Object(exposed);
    }
}
