//! Swarm mode on one daemon (a one-manager swarm): init, nodes, services run as labelled
//! containers, scaling, healing, rolling updates, secrets in memory, state across daemon
//! restarts, Docker's errors, and the docker CLI driving the same.

use berth_e2e::containers::{daemon_with_busybox, demux, until};
use berth_e2e::swarm_setup::{create_service, enc_filters, init_local, service};
use berth_e2e::{Daemon, require_root};
use serde_json::{Value, json};

fn sleeper(name: &str, replicas: u64) -> Value {
    json!({
        "Name": name,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"], "Env": ["V=1"], "StopGracePeriod": 1_000_000_000u64},
            "RestartPolicy": {"Condition": "any", "Delay": 100_000_000u64}
        }
    })
}

/// The running containers of a service (by its label), with their inspect data.
fn task_containers(d: &Daemon, service: &str) -> Vec<Value> {
    let filters = json!({"label": [format!("com.docker.swarm.service.name={service}")], "status": ["running"]});
    let r = d.api().get(&format!(
        "/containers/json?filters={}",
        enc_filters(&filters)
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            d.api()
                .get(&format!("/containers/{}/json", c["Id"].as_str().unwrap()))
                .json()
        })
        .collect()
}

fn all_task_containers(d: &Daemon, service: &str) -> usize {
    let filters = json!({"label": [format!("com.docker.swarm.service.name={service}")]});
    let path = format!("/containers/json?all=1&filters={}", enc_filters(&filters));
    d.api().get(&path).json().as_array().unwrap().len()
}

fn running_tasks(d: &Daemon, service: &str) -> Vec<Value> {
    let filters = json!({"service": [service], "desired-state": ["running"]});
    let r = d
        .api()
        .get(&format!("/tasks?filters={}", enc_filters(&filters)));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["Status"]["State"] == "running")
        .cloned()
        .collect()
}

fn update(d: &Daemon, id: &str, version: u64, spec: &Value) -> berth_e2e::api::ApiResponse {
    d.api().post(
        &format!("/services/{id}/update?version={version}"),
        Some(spec.to_string().as_bytes()),
    )
}

fn scale(d: &Daemon, id: &str, replicas: u64) {
    let s = service(d, id);
    let mut spec = s["Spec"].clone();
    spec["Mode"]["Replicated"]["Replicas"] = json!(replicas);
    let r = update(d, id, s["Version"]["Index"].as_u64().unwrap(), &spec);
    assert_eq!(r.status, 200, "{}", r.text());
}

fn converged(d: &Daemon, name: &str, n: usize) -> bool {
    task_containers(d, name).len() == n && running_tasks(d, name).len() == n
}

#[test]
fn services_run_as_labelled_containers_scale_heal_update_and_go() {
    require_root!();
    let d = daemon_with_busybox();
    let api = d.api();
    let node_id = init_local(&d);
    let r = api.post("/swarm/init", Some(b"{}"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        r.message(),
        "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."
    );
    assert_eq!(api.get("/_ping").header("Swarm"), Some("active/manager"));
    let info = api.get("/info").json();
    assert_eq!(info["Swarm"]["LocalNodeState"], "active");
    assert_eq!(info["Swarm"]["NodeID"], node_id.as_str());
    assert_eq!(info["Swarm"]["Nodes"], 1);
    let nodes = api.get("/nodes").json();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["ID"], node_id.as_str());
    assert_eq!(nodes[0]["Status"]["State"], "ready");
    assert_eq!(nodes[0]["ManagerStatus"]["Leader"], true);
    let tokens = api.get("/swarm").json()["JoinTokens"].clone();
    assert!(tokens["Worker"].as_str().unwrap().starts_with("SWMTKN-1-"));
    assert_ne!(tokens["Worker"], tokens["Manager"]);

    let id = create_service(&d, sleeper("web", 3));
    until("3 running tasks", || converged(&d, "web", 3));
    for c in task_containers(&d, "web") {
        let labels = &c["Config"]["Labels"];
        let task_id = labels["com.docker.swarm.task.id"].as_str().unwrap();
        assert_eq!(labels["com.docker.swarm.service.id"], id.as_str());
        assert_eq!(labels["com.docker.swarm.node.id"], node_id.as_str());
        let name = labels["com.docker.swarm.task.name"].as_str().unwrap();
        assert!(
            name.starts_with("web.") && name.ends_with(task_id),
            "{name}"
        );
        assert_eq!(c["Name"].as_str().unwrap(), format!("/{name}"));
    }
    let r = api.get("/services?status=true").json();
    assert_eq!(r[0]["ServiceStatus"]["RunningTasks"], 3);
    // The service's creation is an event of type service, as dockerd's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1; // `until` is whole seconds: the creation may be in the current one.
    let filters = form_urlencoded::byte_serialize(br#"{"type":["service"]}"#).collect::<String>();
    let events = api
        .get(&format!("/events?since=0&until={now}&filters={filters}"))
        .json_lines();
    assert!(
        events.iter().any(|e| e["Action"] == "create"
            && e["Actor"]["ID"] == id.as_str()
            && e["Actor"]["Attributes"]["name"] == "web"),
        "{events:?}"
    );

    scale(&d, &id, 5);
    until("5 running tasks", || converged(&d, "web", 5));
    scale(&d, &id, 1);
    until("1 running task", || converged(&d, "web", 1));

    // A task whose container dies is replaced by a new task in the same slot.
    let victim = task_containers(&d, "web").remove(0);
    let victim_task = victim["Config"]["Labels"]["com.docker.swarm.task.id"].clone();
    let r = api.post(
        &format!("/containers/{}/kill", victim["Id"].as_str().unwrap()),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    until("a replacement task", || {
        let running = running_tasks(&d, "web");
        running.len() == 1 && running[0]["ID"] != victim_task && converged(&d, "web", 1)
    });

    // A rolling update replaces every task with one that has the new env.
    scale(&d, &id, 3);
    until("3 running tasks", || converged(&d, "web", 3));
    let s = service(&d, &id);
    let version = s["Version"]["Index"].as_u64().unwrap();
    let mut spec = s["Spec"].clone();
    spec["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["V=2"]);
    spec["UpdateConfig"] = json!({"Parallelism": 1, "Order": "stop-first"});
    let r = update(&d, &id, version, &spec);
    assert_eq!(r.status, 200, "{}", r.text());
    // The version it was based on is stale now.
    let r = update(&d, &id, version, &spec);
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        r.message(),
        "rpc error: code = Unknown desc = update out of sequence"
    );
    let r = api.post(
        &format!("/services/{id}/update"),
        Some(spec.to_string().as_bytes()),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    until("3 updated tasks", || {
        let cs = task_containers(&d, "web");
        cs.len() == 3
            && cs.iter().all(|c| {
                c["Config"]["Env"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("V=2"))
            })
            && running_tasks(&d, "web").len() == 3
    });
    assert_eq!(
        service(&d, &id)["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Env"],
        json!(["V=1"])
    );

    let r = api.get("/services/nosuch");
    assert_eq!(r.status, 404);
    assert_eq!(r.message(), "service nosuch not found");
    let r = api.delete(&format!("/services/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    until("the service's containers gone", || {
        all_task_containers(&d, "web") == 0
    });
    until("its tasks gone", || {
        api.get("/tasks").json().as_array().unwrap().is_empty()
    });

    let r = api.post("/swarm/leave", None);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.message()
            .contains("Use `--force` to ignore this message."),
        "{}",
        r.message()
    );
    create_service(&d, sleeper("left", 1));
    until("1 running task", || converged(&d, "left", 1));
    let r = api.post("/swarm/leave?force=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        all_task_containers(&d, "left"),
        0,
        "leaving removes the swarm's containers"
    );
    assert_eq!(
        api.get("/info").json()["Swarm"]["LocalNodeState"],
        "inactive"
    );
    assert_eq!(api.get("/services").status, 503);
}

#[test]
fn swarm_state_survives_daemon_restarts() {
    require_root!();
    let mut d = daemon_with_busybox();
    let node_id = init_local(&d);
    let id = create_service(&d, sleeper("keep", 2));
    // Recovering a cluster from this manager's state keeps it (and this node) as they are.
    let r = d
        .api()
        .post("/swarm/init", Some(br#"{"ForceNewCluster": true}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!(node_id));
    assert_eq!(service(&d, &id)["Spec"]["Name"], "keep");
    until("2 running tasks", || converged(&d, "keep", 2));
    let before: Vec<Value> = running_tasks(&d, "keep")
        .iter()
        .map(|t| t["ID"].clone())
        .collect();
    d.restart();
    assert_eq!(
        d.api().get("/info").json()["Swarm"]["NodeID"],
        node_id.as_str()
    );
    assert_eq!(service(&d, &id)["Spec"]["Name"], "keep");
    until("2 running tasks after SIGTERM", || converged(&d, "keep", 2));
    let after: Vec<Value> = running_tasks(&d, "keep")
        .iter()
        .map(|t| t["ID"].clone())
        .collect();
    assert_eq!(before.len(), after.len());
    d.kill_hard();
    d.start_again();
    assert_eq!(service(&d, &id)["Spec"]["Name"], "keep");
    scale(&d, &id, 3);
    until("3 running tasks after SIGKILL", || converged(&d, "keep", 3));
    let r = d.api().post("/swarm/leave?force=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn secrets_and_configs_are_files_in_memory() {
    require_root!();
    let d = daemon_with_busybox();
    init_local(&d);
    let api = d.api();
    let data = base64_of(b"hunter2");
    let r = api.post(
        "/secrets/create",
        Some(json!({"Name": "pw", "Data": data}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let secret_id = r.json()["ID"].as_str().unwrap().to_string();
    let r = api.post(
        "/secrets/create",
        Some(json!({"Name": "pw", "Data": data}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let inspect = api.get("/secrets/pw").json();
    assert_eq!(inspect["ID"], secret_id.as_str());
    assert!(
        inspect["Spec"].get("Data").is_none(),
        "secret data never comes back"
    );
    let r = api.post(
        "/configs/create",
        Some(
            json!({"Name": "conf", "Data": base64_of(b"k=v")})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let config_id = r.json()["ID"].as_str().unwrap().to_string();
    assert_eq!(
        api.get("/configs/conf").json()["Spec"]["Data"],
        base64_of(b"k=v")
    );

    let mut spec = sleeper("reader", 1);
    spec["TaskTemplate"]["ContainerSpec"]["Args"] = json!([
        "sh",
        "-c",
        "echo start; cat /run/secrets/pw /etc/app.conf; echo; sleep 1000"
    ]);
    spec["TaskTemplate"]["ContainerSpec"]["Secrets"] = json!([{"SecretID": secret_id, "SecretName": "pw", "File": {"Name": "pw", "UID": "0", "GID": "0", "Mode": 292}}]);
    spec["TaskTemplate"]["ContainerSpec"]["Configs"] = json!([{"ConfigID": config_id, "ConfigName": "conf", "File": {"Name": "/etc/app.conf", "UID": "0", "GID": "0", "Mode": 292}}]);
    create_service(&d, spec);
    until("the reader runs", || converged(&d, "reader", 1));
    let c = task_containers(&d, "reader").remove(0);
    let cid = c["Id"].as_str().unwrap().to_string();
    let mut seen = String::new();
    until("the files read", || {
        let r = api.get(&format!("/containers/{cid}/logs?stdout=1&stderr=1"));
        let (out, err) = demux(&r.body);
        seen = format!("{out}{err}");
        seen.contains("hunter2k=v")
    });
    // The files live on a tmpfs of the task's own, never on disk.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let exec_root = d.exec_root().join("swarm/tasks");
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs ") && l.contains(exec_root.to_str().unwrap())),
        "no tmpfs under {}",
        exec_root.display()
    );
    let r = api.delete("/secrets/pw");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.message()
            .contains("is in use by the following service: reader"),
        "{}",
        r.message()
    );
    let r = api.delete("/services/reader");
    assert_eq!(r.status, 200);
    until("the reader's containers gone", || {
        all_task_containers(&d, "reader") == 0
    });
    assert_eq!(api.delete("/secrets/pw").status, 204);
    assert_eq!(api.delete("/configs/conf").status, 204);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(exec_root.to_str().unwrap()),
        "the task's tmpfs is gone"
    );
    assert_eq!(api.post("/swarm/leave?force=1", None).status, 200);
}

fn base64_of(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn docker_cli_drives_a_swarm() {
    require_root!();
    let d = daemon_with_busybox();
    let Some(out) = d.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]) else {
        eprintln!("skipped: no docker CLI");
        return;
    };
    let out = out.success();
    assert!(
        out.stdout.contains("docker swarm join --token SWMTKN-1-"),
        "{}",
        out.stdout
    );
    let out = d.docker(&["swarm", "init"]).unwrap().failure();
    assert!(
        out.stderr.contains("This node is already part of a swarm"),
        "{}",
        out.stderr
    );
    let out = d
        .docker(&["swarm", "join-token", "worker"])
        .unwrap()
        .success();
    assert!(out.stdout.contains("127.0.0.1:2377"), "{}", out.stdout);
    let out = d.docker(&["node", "ls"]).unwrap().success();
    assert!(
        out.stdout.contains("Ready") && out.stdout.contains("Leader"),
        "{}",
        out.stdout
    );
    let out = d
        .docker(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "busybox:latest",
            "sleep",
            "1000",
        ])
        .unwrap()
        .success();
    assert!(out.stdout.trim().len() >= 25, "{}", out.stdout);
    until("3 running tasks", || converged(&d, "web", 3));
    let out = d.docker(&["service", "ls"]).unwrap().success();
    assert!(
        out.stdout.contains("web") && out.stdout.contains("3/3"),
        "{}",
        out.stdout
    );
    let out = d.docker(&["service", "ps", "web"]).unwrap().success();
    let running = out
        .stdout
        .lines()
        .filter(|l| l.contains("web.") && l.contains("Running"))
        .count();
    assert_eq!(running, 3, "{}", out.stdout);
    d.docker(&["service", "scale", "web=1"]).unwrap().success();
    until("1 running task", || converged(&d, "web", 1));
    d.docker(&["service", "update", "--env-add", "X=2", "web"])
        .unwrap()
        .success();
    until("the updated task", || {
        let cs = task_containers(&d, "web");
        cs.len() == 1
            && cs[0]["Config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&json!("X=2"))
    });
    let out = d
        .docker(&["service", "inspect", "--format", "{{.Spec.Name}}", "web"])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), "web");
    let out = d
        .docker_with_stdin(&["secret", "create", "pw", "-"], Some(b"hunter2"))
        .unwrap()
        .success();
    assert!(!out.stdout.trim().is_empty());
    let out = d.docker(&["secret", "ls"]).unwrap().success();
    assert!(out.stdout.contains("pw"), "{}", out.stdout);
    d.docker(&["secret", "rm", "pw"]).unwrap().success();
    let out = d
        .docker(&["service", "inspect", "nosuch"])
        .unwrap()
        .failure();
    assert!(out.stderr.contains("nosuch"), "{}", out.stderr);
    d.docker(&["service", "rm", "web"]).unwrap().success();
    until("the service's containers gone", || {
        all_task_containers(&d, "web") == 0
    });
    let out = d.docker(&["swarm", "leave"]).unwrap().failure();
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    d.docker(&["swarm", "leave", "--force"]).unwrap().success();
    let out = d
        .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), "inactive");
}

#[test]
fn berth_cli_drives_a_swarm() {
    require_root!();
    let d = daemon_with_busybox();
    let out = d
        .berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
        .success();
    assert!(
        out.stdout.contains("Swarm initialized: current node ("),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("berth swarm join --token SWMTKN-1-"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("127.0.0.1:2377"), "{}", out.stdout);
    let out = d.berth(&["swarm", "init"]).failure();
    assert!(
        out.stderr.contains("This node is already part of a swarm"),
        "{}",
        out.stderr
    );
    let token = d
        .berth(&["swarm", "join-token", "-q", "manager"])
        .success()
        .stdout;
    assert!(token.trim().starts_with("SWMTKN-1-"));
    let rotated = d
        .berth(&["swarm", "join-token", "-q", "--rotate", "manager"])
        .success()
        .stdout;
    assert_ne!(token, rotated);
    let out = d.berth(&["node", "ls"]).success();
    assert!(
        out.stdout.contains(" * ") && out.stdout.contains("Leader") && out.stdout.contains("Ready"),
        "{}",
        out.stdout
    );
    d.berth(&["node", "update", "--label-add", "zone=eu", "self"])
        .success();
    let out = d
        .berth(&[
            "node",
            "inspect",
            "--format",
            "{{.Spec.Labels.zone}}",
            "self",
        ])
        .success();
    assert_eq!(out.stdout.trim(), "eu");
    let out = d
        .berth(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "2",
            "--stop-grace-period",
            "1s",
            "--constraint",
            "node.labels.zone==eu",
            "busybox:latest",
            "sleep",
            "1000",
        ])
        .success();
    assert_eq!(out.stdout.trim().len(), 25, "{}", out.stdout);
    until("2 running tasks", || converged(&d, "web", 2));
    let out = d.berth(&["service", "ls"]).success();
    assert!(
        out.stdout.contains("web") && out.stdout.contains("2/2"),
        "{}",
        out.stdout
    );
    let out = d.berth(&["service", "ps", "web"]).success();
    assert_eq!(
        out.stdout.lines().filter(|l| l.contains("Running")).count(),
        2,
        "{}",
        out.stdout
    );
    let out = d.berth(&["service", "scale", "web=3"]).success();
    assert_eq!(out.stdout.trim(), "web scaled to 3");
    until("3 running tasks", || converged(&d, "web", 3));
    d.berth(&[
        "service",
        "update",
        "--env-add",
        "X=1",
        "--update-parallelism",
        "0",
        "web",
    ])
    .success();
    until("the updated tasks", || {
        let cs = task_containers(&d, "web");
        cs.len() == 3
            && cs.iter().all(|c| {
                c["Config"]["Env"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("X=1"))
            })
    });
    let out = d
        .berth(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.Mode.Replicated.Replicas}}",
            "web",
        ])
        .success();
    assert_eq!(out.stdout.trim(), "3");
    d.berth_with_stdin(&["secret", "create", "pw", "-"], Some(b"hunter2"))
        .success();
    let out = d.berth(&["secret", "ls"]).success();
    assert!(out.stdout.contains("pw"), "{}", out.stdout);
    d.berth_with_stdin(&["config", "create", "conf", "-"], Some(b"k=v"))
        .success();
    let out = d
        .berth(&["config", "inspect", "--format", "{{.Spec.Data}}", "conf"])
        .success();
    assert_eq!(out.stdout.trim(), base64_of(b"k=v"));
    let out = d.berth(&["service", "rm", "web", "nosuch"]).failure();
    assert!(
        out.stderr.contains("service nosuch not found"),
        "{}",
        out.stderr
    );
    until("the service's containers gone", || {
        all_task_containers(&d, "web") == 0
    });
    d.berth(&["secret", "rm", "pw"]).success();
    let out = d.berth(&["swarm", "leave"]).failure();
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(
        d.berth(&["swarm", "leave", "--force"])
            .success()
            .stdout
            .trim(),
        "Node left the swarm."
    );
}

#[test]
fn drained_nodes_run_nothing_and_node_updates_check_versions() {
    require_root!();
    let d = daemon_with_busybox();
    let node_id = init_local(&d);
    let api = d.api();
    create_service(&d, sleeper("drained", 2));
    until("2 running tasks", || converged(&d, "drained", 2));
    let node = api.get(&format!("/nodes/{node_id}")).json();
    let version = node["Version"]["Index"].as_u64().unwrap();
    let mut spec = node["Spec"].clone();
    spec["Availability"] = json!("sideways");
    let path = format!("/nodes/{node_id}/update?version={version}");
    let r = api.post(&path, Some(spec.to_string().as_bytes()));
    assert_eq!(r.status, 400, "{}", r.text());
    spec["Availability"] = json!("drain");
    let r = api.post(&path, Some(spec.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = api.post(&path, Some(spec.to_string().as_bytes()));
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        r.message(),
        "rpc error: code = Unknown desc = update out of sequence"
    );
    until("no task running on the drained node", || {
        task_containers(&d, "drained").is_empty()
    });
    until("tasks waiting for a node", || {
        let tasks = api.get("/tasks").json();
        let pending = tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["DesiredState"] == "running" && t["Status"]["State"] == "pending")
            .filter(|t| {
                t["Status"]["Err"] == "no suitable node (1 node not available for new tasks)"
            })
            .count();
        pending == 2 && running_tasks(&d, "drained").is_empty()
    });
    let node = api.get(&format!("/nodes/{node_id}")).json();
    let version = node["Version"]["Index"].as_u64().unwrap();
    spec["Availability"] = json!("active");
    let r = api.post(
        &format!("/nodes/{node_id}/update?version={version}"),
        Some(spec.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    until("2 running tasks again", || converged(&d, "drained", 2));
    assert_eq!(api.get("/nodes/nosuch").message(), "node nosuch not found");
    assert_eq!(api.get("/tasks/nosuch").status, 404);
    assert_eq!(api.post("/swarm/leave?force=1", None).status, 200);
}
