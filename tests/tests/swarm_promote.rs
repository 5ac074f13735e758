//! A promotion whose answer is lost in transit: the leader committed the worker's manager
//! record (Raft ID, manager address), but the worker never heard of its certificate. The
//! worker must still become a manager once it reaches the leader again, not stay a worker
//! with a manager record (the harness in `berth_e2e::cluster`).

use std::time::{Duration, Instant};

use berth_e2e::swarm_setup::{create_service, node_id, poll};
use berth_e2e::{Cluster, Daemon, require_root};
use serde_json::{Value, json};

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(90), Duration::from_millis(100), f);
}

fn node(d: &Daemon, id: &str) -> Value {
    d.api().get(&format!("/nodes/{id}")).json()
}

/// Node 0 a manager, the others workers, every node ready.
fn swarm(n: usize) -> Cluster {
    let c = Cluster::new(n, &[]);
    c.form_swarm(1, 2);
    c
}

/// A service with no task, to write through a manager.
fn no_tasks() -> Value {
    json!({
        "Name": "after",
        "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"]}},
        "Mode": {"Replicated": {"Replicas": 0}},
    })
}

/// In the manager's namespace, drops what it sends from its swarm port to `worker_ip` as TLS
/// application data (record type 0x17 at the start of the TCP payload, after a 32-byte TCP
/// header with timestamps): connections still open and their handshakes pass, the worker's
/// requests arrive and are acted on, but no answer reaches it.
fn lose_answers(c: &Cluster, worker_ip: &str) {
    let m = c.node(0);
    m.exec(&["nft", "add", "table", "inet", "lost"]).success();
    m.exec(&[
        "nft",
        "add chain inet lost out { type filter hook output priority 0; policy accept; }",
    ])
    .success();
    m.exec(&[
        "nft",
        &format!("add rule inet lost out ip daddr {worker_ip} tcp sport 2377 @th,256,8 0x17 drop"),
    ])
    .success();
}

#[test]
fn a_promotion_whose_answer_is_lost_still_makes_a_manager() {
    require_root!();
    let c = swarm(2);
    let m = c.node(0);
    let w = c.node(1);
    let wid = node_id(w);
    lose_answers(&c, &w.ip);
    m.berth(&["node", "promote", &wid]).success();
    // The worker's next session call reaches the leader, which commits the promotion; the
    // answer carrying the manager certificate is lost.
    wait_for("the promotion committed", || {
        !node(m, &wid)["ManagerStatus"].is_null()
    });
    let committed = Instant::now();
    // Past the worker's 10 s call timeout: that answer is gone for good.
    while committed.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(500));
        let info = w.api().get("/info").json();
        assert_eq!(
            info["Swarm"]["ControlAvailable"], false,
            "no answer reached the worker: {info}"
        );
    }
    m.exec(&["nft", "delete", "table", "inet", "lost"])
        .success();
    wait_for("the worker turned manager", || {
        w.api().get("/info").json()["Swarm"]["ControlAvailable"] == true
    });
    wait_for("a reachable manager, seen from the leader", || {
        let n = node(m, &wid);
        n["ManagerStatus"]["Reachability"] == "reachable" && n["Status"]["State"] == "ready"
    });
    assert_eq!(m.api().get("/info").json()["Swarm"]["Managers"], 2);
    // A Raft member: a write through it commits, and the leader sees it.
    create_service(w, no_tasks());
    wait_for("the service seen by the leader", || {
        m.api().get("/services/after").status == 200
    });
}

/// The other way: a manager demoted while cut off never reads the `demoting` mark in its own
/// replica (it is out of the Raft membership before it could), and would stay a leaderless
/// manager. Back on the network, it asks the leader for its node and becomes a worker.
#[test]
fn a_manager_demoted_while_cut_off_becomes_a_worker() {
    require_root!();
    let c = swarm(3);
    let m = c.node(0);
    let ids: Vec<String> = c.nodes.iter().map(|n| node_id(n)).collect();
    for id in &ids[1..] {
        m.berth(&["node", "promote", id]).success();
    }
    wait_for("three reachable managers", || {
        ids.iter()
            .all(|id| node(m, id)["ManagerStatus"]["Reachability"] == "reachable")
    });
    c.cut(2);
    m.berth(&["node", "demote", &ids[2]]).success();
    wait_for("the cut-off manager out of the membership", || {
        node(m, &ids[2])["ManagerStatus"].is_null()
    });
    // Long enough for the leader to have dropped its replication to the removed member
    // (right after the change, entries may still reach it once the link is back).
    std::thread::sleep(Duration::from_secs(5));
    let info = c.node(2).api().get("/info").json();
    assert_eq!(
        info["Swarm"]["ControlAvailable"], true,
        "it could not know yet: {info}"
    );
    c.heal(2);
    wait_for("the demoted node a worker", || {
        let info = c.node(2).api().get("/info").json();
        info["Swarm"]["LocalNodeState"] == "active" && info["Swarm"]["ControlAvailable"] == false
    });
    wait_for("the demoted node ready, two managers", || {
        node(m, &ids[2])["Status"]["State"] == "ready"
            && m.api().get("/info").json()["Swarm"]["Managers"] == 2
    });
    // The two managers still take writes.
    create_service(c.node(1), no_tasks());
}
