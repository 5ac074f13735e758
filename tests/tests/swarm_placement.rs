//! The scheduler's filters on a one-manager swarm, through the raw API and the docker CLI:
//! max replicas per node and resource reservations leave the tasks that do not fit pending,
//! with swarmkit's explanation (spread preferences over several nodes: the unit tests in
//! berth-swarm's controllers).

use berth_e2e::containers::{daemon_with_busybox, until};
use berth_e2e::swarm_setup::create_service;
use berth_e2e::{Daemon, require_root};
use serde_json::{Value, json};

fn sleeper(name: &str, replicas: u64, placement: Value, resources: Value) -> Value {
    json!({
        "Name": name,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"], "StopGracePeriod": 1_000_000_000u64},
            "Placement": placement,
            "Resources": resources,
        }
    })
}

/// (running, errors of the pending tasks) of a service.
fn states(d: &Daemon, service: &str) -> (usize, Vec<String>) {
    let tasks = d.api().get("/tasks").json();
    let mine: Vec<&Value> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["ServiceID"] == service && t["DesiredState"] == "running")
        .collect();
    let running = mine
        .iter()
        .filter(|t| t["Status"]["State"] == "running")
        .count();
    let mut pending: Vec<String> = mine
        .iter()
        .filter(|t| t["Status"]["State"] == "pending")
        .map(|t| t["Status"]["Err"].as_str().unwrap_or_default().to_string())
        .collect();
    pending.sort();
    (running, pending)
}

#[test]
fn tasks_that_do_not_fit_wait_with_swarmkits_reason() {
    require_root!();
    let d = daemon_with_busybox();
    let api = d.api();
    let r = api.post("/swarm/init", Some(br#"{"ListenAddr": "127.0.0.1:0"}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    let create = |spec: Value| create_service(&d, spec);
    let capped = create(sleeper("capped", 3, json!({"MaxReplicas": 1}), json!({})));
    let max = "no suitable node (max replicas per node limit exceed)".to_string();
    until("one task running, two waiting for a node", || {
        states(&d, &capped) == (1, vec![max.clone(), max.clone()])
    });
    // More memory than the machine has: nothing runs.
    let huge = create(sleeper(
        "huge",
        1,
        json!({}),
        json!({"Reservations": {"MemoryBytes": 1i64 << 50}}),
    ));
    let insufficient = "no suitable node (insufficient resources on 1 node)".to_string();
    until("the task waits for resources", || {
        states(&d, &huge) == (0, vec![insufficient.clone()])
    });

    if let Some(out) = d.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "capped-cli",
        "--replicas",
        "2",
        "--replicas-max-per-node",
        "1",
        "busybox:latest",
        "sleep",
        "1000",
    ]) {
        out.success();
        until("docker service ps shows why", || {
            let out = d
                .docker(&[
                    "service",
                    "ps",
                    "--no-trunc",
                    "--format",
                    "{{.CurrentState}}|{{.Error}}",
                    "capped-cli",
                ])
                .unwrap()
                .success();
            out.stdout.lines().any(|l| l.starts_with("Running"))
                && out.stdout.lines().any(|l| {
                    l.starts_with("Pending") && l.ends_with(&format!("|\"{max}\""))
                        || l.starts_with("Pending") && l.ends_with(&format!("|{max}"))
                })
        });
    }
    // Scaling the capped service down to what fits: nothing waits any more.
    let svc = api.get(&format!("/services/{capped}")).json();
    let version = svc["Version"]["Index"].as_u64().unwrap();
    let mut spec = svc["Spec"].clone();
    spec["Mode"]["Replicated"]["Replicas"] = json!(1);
    let r = api.post(
        &format!("/services/{capped}/update?version={version}"),
        Some(spec.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    until("no capped task waits", || {
        states(&d, &capped) == (1, vec![])
    });
    assert_eq!(api.post("/swarm/leave?force=1", None).status, 200);
}
