//! Swarm services over several daemons (each in its own network namespace, the harness in
//! `berth_e2e::cluster`): logs of tasks on other nodes, secrets only where they are used,
//! rolling updates across nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use berth_e2e::swarm_setup::{create_service, enc_filters, node_id, poll, running_by_node};
use berth_e2e::{Cluster, Daemon, require_root};
use serde_json::{Value, json};

/// Polls `f` every 100 ms for up to 90 s (a loaded 2-core machine runs 4-5 daemons).
fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(90), Duration::from_millis(100), f);
}

/// The service's tasks desired running.
fn live_tasks(d: &Daemon, service: &str) -> Vec<Value> {
    let filters = json!({"service": [service], "desired-state": ["running"]});
    let r = d
        .api()
        .get(&format!("/tasks?filters={}", enc_filters(&filters)));
    r.json().as_array().cloned().unwrap_or_default()
}

/// A task that prints a line, then waits (and ends at once on SIGTERM).
fn talker(name: &str, replicas: u64) -> Value {
    json!({
        "Name": name,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "busybox:latest",
                "Command": ["sh", "-c", "trap 'exit 0' TERM; echo hello; while true; do sleep 1; done"],
                "StopGracePeriod": 2_000_000_000u64
            }
        }
    })
}

/// `service logs` on any manager shows the lines of every task, wherever it runs: here two
/// managers and two workers, one task each; asked of the second manager (not the leader) it
/// reaches the leader's and both workers' engines; `-f` gets lines a worker's task writes
/// later.
#[test]
fn service_logs_reach_tasks_on_every_node() {
    require_root!();
    let c = Cluster::swarm(4, 2, 2);
    let m = c.node(0);
    let id = create_service(m, talker("web", 4));
    wait_for("4 tasks running, one per node", || {
        let by = running_by_node(m, "web");
        by.len() == 4 && by.values().all(|n| *n == 1)
    });
    let ids: BTreeSet<String> = c.nodes.iter().map(|n| node_id(n)).collect();
    let asked = c.node(1);
    wait_for("every task's line, from the other manager", || {
        let r = asked
            .api()
            .get(&format!("/services/{id}/logs?stdout=1&stderr=1&details=1"));
        let (out, _) = berth_e2e::containers::demux(&r.body);
        ids.iter().all(|n| {
            out.lines().any(|l| {
                l.contains(&format!("com.docker.swarm.node.id={n},")) && l.ends_with(" hello")
            })
        })
    });
    let tasks = live_tasks(m, "web");
    let worker = c.node(3);
    let worker_id = node_id(worker);
    let on_worker = tasks
        .iter()
        .find(|t| t["NodeID"] == worker_id.as_str())
        .expect("a task on the worker")
        .clone();
    // A task's own logs, asked of a manager that does not run it.
    let task_id = on_worker["ID"].as_str().unwrap();
    let r = asked.api().get(&format!("/tasks/{task_id}/logs?stdout=1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let (out, _) = berth_e2e::containers::demux(&r.body);
    assert_eq!(out, "hello\n");

    let Some(docker) = berth_e2e::docker_cli() else {
        eprintln!("docker CLI missing: `docker service logs` not checked");
        return;
    };
    let out = asked.docker(&["service", "logs", "web"]).unwrap().success();
    for n in &c.nodes {
        let line = out
            .stdout
            .lines()
            .find(|l| {
                l.contains(&format!("@{} ", n.hostname)) || l.contains(&format!("@{}|", n.hostname))
            })
            .unwrap_or_else(|| panic!("no line of {}: {}", n.hostname, out.stdout));
        assert!(line.starts_with("web."), "{line}");
        assert!(line.ends_with("| hello"), "{line}");
    }

    // Following from the leader: a line the worker's task writes later arrives.
    let mut child = std::process::Command::new(docker)
        .args(["service", "logs", "-f", "--tail", "0", "web"])
        .env("DOCKER_HOST", m.host())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let want = format!("@{}", worker.hostname);
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .any(|l| l.is_ok_and(|l| l.contains(&want) && l.ends_with("| later-from-worker")))
    });
    // The follow has reached the worker once earlier lines would have: give it a moment,
    // then write twice (the first may land before the stream is open).
    std::thread::sleep(Duration::from_secs(2));
    let container = on_worker["Status"]["ContainerStatus"]["ContainerID"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reader.is_finished() && Instant::now() < deadline {
        let r = worker.api().post(
            &format!("/containers/{container}/exec"),
            Some(br#"{"Cmd": ["sh", "-c", "echo later-from-worker > /proc/1/fd/1"]}"#),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let exec = r.json()["Id"].as_str().unwrap().to_string();
        worker
            .api()
            .post(&format!("/exec/{exec}/start"), Some(br#"{"Detach": true}"#));
        std::thread::sleep(Duration::from_secs(2));
    }
    child.kill().ok();
    child.wait().ok();
    assert!(
        reader.join().unwrap(),
        "the followed line of the worker's task"
    );
}

/// Files under `dir` (not following links, skipping devices and FIFOs) that contain `what`.
fn files_containing(dir: &std::path::Path, what: &str) -> Vec<String> {
    let out = std::process::Command::new("grep")
        .args(["-rlsF", "-D", "skip", "--", what])
        .arg(dir)
        .output()
        .expect("run grep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A secret used by a service constrained to one worker reaches that worker only, in its
/// task's tmpfs: the other worker's exec root and data root have no trace of it, nor does
/// the first worker's data root (never on disk). Then a rolling update (`--env-add`,
/// parallelism 1) over the four nodes converges with one task per slot all along.
#[test]
fn secrets_reach_only_their_node_and_updates_roll_across_nodes() {
    require_root!();
    let c = Cluster::swarm(4, 2, 2);
    let m = c.node(0);
    let (w1, w2) = (c.node(2), c.node(3));
    let value = format!("s3cr3t-{}-value", std::process::id());
    let body = json!({"Name": "token", "Data": base64_encode(value.as_bytes())});
    let r = m
        .api()
        .post("/secrets/create", Some(body.to_string().as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    let secret_id = r.json()["ID"].as_str().unwrap().to_string();
    let spec = json!({
        "Name": "sec",
        "Mode": {"Replicated": {"Replicas": 1}},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "busybox:latest",
                "Args": ["sleep", "1000"],
                "StopGracePeriod": 1_000_000_000u64,
                "Secrets": [{"SecretID": secret_id, "SecretName": "token",
                    "File": {"Name": "token", "UID": "0", "GID": "0", "Mode": 292}}]
            },
            "Placement": {"Constraints": [format!("node.hostname=={}", w1.hostname)]}
        }
    });
    create_service(m, &spec);
    let w1_id = node_id(w1);
    wait_for("the secret's task running on the first worker", || {
        running_by_node(m, "sec").get(&w1_id) == Some(&1)
    });
    let task = live_tasks(m, "sec").remove(0);
    let container = task["Status"]["ContainerStatus"]["ContainerID"]
        .as_str()
        .unwrap()
        .to_string();
    let r = w1.api().post(
        &format!("/containers/{container}/exec"),
        Some(br#"{"Cmd": ["cat", "/run/secrets/token"], "AttachStdout": true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let exec = r.json()["Id"].as_str().unwrap().to_string();
    let r = w1.api().post(
        &format!("/exec/{exec}/start"),
        Some(br#"{"Detach": false}"#),
    );
    assert_eq!(berth_e2e::containers::demux(&r.body).0, value);
    let in_exec_root = files_containing(&w1.exec_root(), &value);
    assert!(
        !in_exec_root.is_empty()
            && in_exec_root
                .iter()
                .all(|f| f.contains("/swarm/tasks/") || f.contains("/containers/")),
        "the secret is in the worker's task tmpfs: {in_exec_root:?}"
    );
    assert_eq!(
        files_containing(&w1.data_root(), &value),
        Vec::<String>::new(),
        "never on the running worker's disk"
    );
    for what in [value.as_str(), secret_id.as_str()] {
        for dir in [w2.exec_root(), w2.data_root()] {
            assert_eq!(
                files_containing(&dir, what),
                Vec::<String>::new(),
                "the other worker has no trace of the secret ({what})"
            );
        }
    }

    // A rolling update over the four nodes, one task at a time.
    let id = create_service(
        m,
        json!({
            "Name": "roll",
            "Mode": {"Replicated": {"Replicas": 4}},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"],
                    "StopGracePeriod": 1_000_000_000u64, "Env": ["V=1"]}
            },
            "UpdateConfig": {"Parallelism": 1, "Order": "stop-first", "FailureAction": "pause"}
        }),
    );
    wait_for("4 tasks running, one per node", || {
        let by = running_by_node(m, "roll");
        by.len() == 4 && by.values().all(|n| *n == 1)
    });
    let service = m.api().get(&format!("/services/{id}")).json();
    let mut spec = service["Spec"].clone();
    spec["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["V=1", "W=2"]);
    let r = m.api().post(
        &format!(
            "/services/{id}/update?version={}",
            service["Version"]["Index"]
        ),
        Some(spec.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for("the update completed with 4 new tasks running", || {
        // At no point two live tasks in a slot, nor a slot missing more than one at a time.
        let tasks = live_tasks(m, "roll");
        let mut slots = BTreeMap::<u64, usize>::new();
        for t in &tasks {
            *slots.entry(t["Slot"].as_u64().unwrap()).or_default() += 1;
        }
        assert!(slots.values().all(|n| *n == 1), "a slot doubled: {tasks:?}");
        assert!(
            tasks.len() >= 3,
            "more than one task gone at once: {tasks:?}"
        );
        let state = m.api().get(&format!("/services/{id}")).json()["UpdateStatus"]["State"].clone();
        let fresh = tasks
            .iter()
            .filter(|t| t["Status"]["State"] == "running")
            .filter(|t| t["Spec"]["ContainerSpec"]["Env"] == json!(["V=1", "W=2"]))
            .count();
        state == "completed" && fresh == 4 && tasks.len() == 4
    });
    let by = running_by_node(m, "roll");
    assert_eq!(by.len(), 4, "still one per node: {by:?}");
    let running: usize = c
        .nodes
        .iter()
        .map(|n| {
            let filters =
                json!({"label": ["com.docker.swarm.service.name=roll"], "status": ["running"]});
            n.api()
                .get(&format!(
                    "/containers/json?filters={}",
                    enc_filters(&filters)
                ))
                .json()
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(running, 4, "the engines run 4 containers in all");
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Three managers and two workers: a 12-replica service spreads over all five (2 or 3 tasks
/// each, every engine running its share), and `service logs` on a follower shows all 12.
#[test]
fn twelve_replicas_spread_over_three_managers_and_two_workers() {
    require_root!();
    let c = Cluster::swarm(5, 3, 2);
    let m = c.node(0);
    let id = create_service(m, talker("wide", 12));
    wait_for("12 tasks running over the 5 nodes", || {
        let by = running_by_node(m, "wide");
        by.len() == 5
            && by.values().sum::<usize>() == 12
            && by.values().all(|n| (2..=3).contains(n))
    });
    let by = running_by_node(m, "wide");
    for n in &c.nodes {
        let filters =
            json!({"label": ["com.docker.swarm.service.name=wide"], "status": ["running"]});
        let here = n
            .api()
            .get(&format!(
                "/containers/json?filters={}",
                enc_filters(&filters)
            ))
            .json()
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(
            Some(&here),
            by.get(&node_id(n)),
            "{} runs its share",
            n.hostname
        );
    }
    wait_for("the 12 tasks' lines from a follower manager", || {
        let r = c
            .node(2)
            .api()
            .get(&format!("/services/{id}/logs?stdout=1&details=1"));
        let (out, _) = berth_e2e::containers::demux(&r.body);
        let tasks: BTreeSet<&str> = out
            .lines()
            .filter(|l| l.ends_with(" hello"))
            .filter_map(|l| l.split("com.docker.swarm.task.id=").nth(1))
            .map(|t| t.trim_end_matches(" hello"))
            .collect();
        tasks.len() == 12
    });
}
