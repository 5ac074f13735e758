//! Overlay networks across daemons, each in its own network namespace (the harness in
//! `berth_e2e::cluster`): tasks on one overlay reach each other across nodes by address and
//! by service VIP over VXLAN, and a published port answers on a node that runs no task of
//! its service (the routing mesh).

use std::time::{Duration, Instant};

use berth_e2e::{Cluster, Daemon, busybox_archive, require_root};
use serde_json::{Value, json};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn load_busybox(d: &Daemon) {
    let r = d.api().post(
        "/images/load?quiet=1",
        Some(&busybox_archive("busybox:latest")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn post(d: &Daemon, path: &str, body: Value) -> Value {
    let r = d.api().post(path, Some(body.to_string().as_bytes()));
    assert!(r.status < 300, "{path}: {}", r.text());
    if r.text().trim().is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

/// The service's running tasks: (node id, container id, address on the first network).
fn running(d: &Daemon, service: &str) -> Vec<(String, String, String)> {
    let filters = json!({"service": [service], "desired-state": ["running"]});
    let path = format!(
        "/tasks?filters={}",
        form_urlencoded::byte_serialize(filters.to_string().as_bytes()).collect::<String>()
    );
    d.api()
        .get(&path)
        .json()
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["Status"]["State"] == "running")
        .map(|t| {
            let addr = t["NetworksAttachments"][0]["Addresses"][0]
                .as_str()
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            (
                t["NodeID"].as_str().unwrap_or_default().to_string(),
                t["Status"]["ContainerStatus"]["ContainerID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                addr,
            )
        })
        .collect()
}

const HTTPD: &str = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";

/// An HTTP GET from inside a task container (busybox nc): the body's last line.
fn get_from(d: &Daemon, container: &str, host: &str, port: u16) -> Option<String> {
    let cmd = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port} | tail -1");
    let out = d.docker(&["exec", container, "sh", "-c", &cmd])?;
    let body = out.stdout.trim().to_string();
    (!body.is_empty() && !body.contains(' ')).then_some(body)
}

#[test]
fn overlays_span_nodes_and_the_mesh_answers_on_every_node() {
    require_root!();
    let c = Cluster::new(2, &[]);
    if c.node(0).docker(&["version"]).is_none() {
        eprintln!("skipped: no docker CLI");
        return;
    }
    for n in &c.nodes {
        load_busybox(n);
    }
    let m = c.node(0);
    post(
        m,
        "/swarm/init",
        json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": m.ip,
               "Spec": {"Dispatcher": {"HeartbeatPeriod": 1_000_000_000u64}}}),
    );
    let token = m.api().get("/swarm").json()["JoinTokens"]["Worker"]
        .as_str()
        .unwrap()
        .to_string();
    post(
        c.node(1),
        "/swarm/join",
        json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": c.node(1).ip,
               "RemoteAddrs": [m.addr(2377)], "JoinToken": token}),
    );
    let node_ids: Vec<String> = {
        let mut ids = Vec::new();
        wait_for("two ready nodes", || {
            let nodes = m.api().get("/nodes").json();
            ids = nodes
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["Status"]["State"] == "ready")
                .map(|n| n["ID"].as_str().unwrap().to_string())
                .collect();
            ids.len() == 2
        });
        ids
    };
    let out = m
        .docker(&["network", "create", "-d", "overlay", "backend"])
        .unwrap()
        .success();
    assert!(!out.stdout.trim().is_empty());
    m.docker(&[
        "service",
        "create",
        "--name",
        "web",
        "--network",
        "backend",
        "--replicas",
        "2",
        "--detach",
        "busybox:latest",
        "sh",
        "-c",
        HTTPD,
    ])
    .unwrap()
    .success();
    let mut tasks = Vec::new();
    wait_for("a web task on each node", || {
        tasks = running(m, "web");
        let nodes: std::collections::BTreeSet<&String> = tasks.iter().map(|t| &t.0).collect();
        tasks.len() == 2 && nodes.len() == 2
    });
    let daemon_of = |node: &str| -> &Daemon {
        let i = node_ids.iter().position(|n| n == node).unwrap();
        // Node ids are listed in the manager's order; map by the daemon's own /info.
        let _ = i;
        c.nodes
            .iter()
            .find(|n| n.api().get("/info").json()["Swarm"]["NodeID"] == node)
            .map(|n| &n.daemon)
            .unwrap()
    };
    let (node_a, ctr_a, _) = tasks[0].clone();
    let (node_b, ctr_b, addr_b) = tasks[1].clone();
    let da = daemon_of(&node_a);
    let db = daemon_of(&node_b);
    // Across nodes by address: VXLAN with the peers' FDB entries.
    let mut answer = None;
    wait_for("a task to reach the other node's task", || {
        answer = get_from(da, &ctr_a, &addr_b, 80);
        answer.is_some()
    });
    assert_eq!(answer.unwrap(), ctr_b[..12]);
    // By name: the VIP spreads over both nodes' tasks.
    let mut seen = std::collections::BTreeSet::new();
    wait_for("the VIP to reach both tasks", || {
        if let Some(h) = get_from(db, &ctr_b, "web", 80) {
            seen.insert(h);
        }
        seen.len() == 2
    });
    // The routing mesh: a service with one task on the manager answers on the worker too.
    let manager_host = m.hostname.clone();
    m.docker(&[
        "service",
        "create",
        "--name",
        "pub",
        "--publish",
        "published=38511,target=80",
        "--constraint",
        &format!("node.hostname=={manager_host}"),
        "--detach",
        "busybox:latest",
        "sh",
        "-c",
        HTTPD,
    ])
    .unwrap()
    .success();
    wait_for("the pub task", || running(m, "pub").len() == 1);
    let pub_ctr = running(m, "pub")[0].1.clone();
    let worker_ip = c.node(1).ip.clone();
    let mut body = String::new();
    wait_for("the worker to answer the published port", || {
        let cmd = format!(
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {worker_ip} 38511 | tail -1"
        );
        body = c
            .node(0)
            .exec(&["sh", "-c", &cmd])
            .stdout
            .trim()
            .to_string();
        body == pub_ctr[..12]
    });
    m.docker(&["service", "rm", "web", "pub"])
        .unwrap()
        .success();
    m.docker(&["network", "rm", "backend"]).unwrap().success();
    for n in &c.nodes {
        let dir = n.exec_root().join("overlay");
        wait_for("every node's overlay netns to go", || {
            std::fs::read_dir(&dir).map_or(true, |mut e| e.next().is_none())
        });
    }
}
