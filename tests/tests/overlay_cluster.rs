//! Overlay networks across daemons, each in its own network namespace (the harness in
//! `berth_e2e::cluster`): tasks on one overlay reach each other across nodes by address and
//! by service VIP over VXLAN, and a published port answers on a node that runs no task of
//! its service (the routing mesh).

use std::time::Duration;

use berth_e2e::overlay::{HTTPD, get_from};
use berth_e2e::swarm_setup::{poll, ready_node_ids, running_tasks, task_container, task_node};
use berth_e2e::{Cluster, Daemon, require_root};

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(90), Duration::from_millis(250), f);
}

/// The service's running tasks: (node id, container id, address on the first network).
fn running(d: &Daemon, service: &str) -> Vec<(String, String, String)> {
    running_tasks(d, service)
        .iter()
        .map(|t| {
            let addr = t["NetworksAttachments"][0]["Addresses"][0]
                .as_str()
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            (task_node(t), task_container(t), addr)
        })
        .collect()
}

#[test]
fn overlays_span_nodes_and_the_mesh_answers_on_every_node() {
    require_root!();
    let Some(c) = Cluster::swarm_of_two() else {
        return;
    };
    let m = c.node(0);
    let node_ids = ready_node_ids(m);
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
        // One of the ready nodes; mapped by the daemon's own /info.
        assert!(node_ids.iter().any(|n| n == node), "{node} in {node_ids:?}");
        c.daemon_of(node)
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
