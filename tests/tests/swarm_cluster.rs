//! Swarm mode across several daemons, each in its own network namespace (the harness in
//! `berth_e2e::cluster`).

use berth_e2e::{Cluster, require_root};

/// The harness itself: hosts with their own hostnames and addresses that reach each other,
/// links that can be cut and partitions that can be made and healed, daemons that survive
/// SIGKILL and restart.
#[test]
fn harness_hosts_links_and_restarts() {
    require_root!();
    let mut c = Cluster::new(3, &[]);
    for n in &c.nodes {
        let info = n.api().get("/info").json();
        assert_eq!(
            info["Name"],
            n.hostname.as_str(),
            "each daemon its own hostname"
        );
    }
    let ping_once = |c: &Cluster, from: usize, to: usize| {
        c.node(from)
            .exec(&["busybox", "ping", "-c", "1", "-W", "1", &c.node(to).ip])
            .code
            == 0
    };
    // A link just set up takes a moment to forward (carrier, ARP): a few tries.
    let ping = |c: &Cluster, from: usize, to: usize| (0..10).any(|_| ping_once(c, from, to));
    assert!(ping(&c, 0, 1) && ping(&c, 1, 2));
    c.cut(1);
    assert!(!ping_once(&c, 0, 1), "a cut link drops traffic");
    assert!(ping(&c, 0, 2));
    c.heal(1);
    assert!(ping(&c, 0, 1));
    c.partition(&[0]);
    assert!(!ping_once(&c, 0, 1) && !ping_once(&c, 0, 2));
    assert!(ping(&c, 1, 2), "the majority side still talks");
    c.heal_partition();
    assert!(ping(&c, 0, 2));
    let old = c.node(2).pid().unwrap();
    c.node_mut(2).kill_hard();
    c.node_mut(2).start_again();
    assert_ne!(c.node(2).pid().unwrap(), old);
    let info = c.node(2).api().get("/info").json();
    assert_eq!(info["Name"], c.node(2).hostname.as_str());
}

use std::time::Duration;

use berth_e2e::Daemon;
use berth_e2e::swarm_setup::{
    all_ready, create_service, heartbeat, local_task_containers, node_id, nodes, poll,
    running_by_node,
};
use serde_json::{Value, json};

/// Polls `f` every 100 ms for up to 60 s (a loaded 2-core machine runs 3-5 daemons).
fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(60), Duration::from_millis(100), f);
}

/// The test service: `replicas` busybox sleepers with a 1 s stop grace period.
fn web(replicas: u64) -> Value {
    json!({
        "Name": "web",
        "Mode": {"Replicated": {"Replicas": replicas}},
        "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"], "StopGracePeriod": 1_000_000_000u64}}
    })
}

/// [`web`] restarted 100 ms after any exit.
fn web_restarting(replicas: u64) -> Value {
    let mut spec = web(replicas);
    spec["TaskTemplate"]["RestartPolicy"] = json!({"Condition": "any", "Delay": 100_000_000u64});
    spec
}

/// One manager and two workers: joins (with Docker's refusals of bad tokens, another CA
/// and a second join), a service spread over the three nodes and run by each node's engine,
/// scaling, a worker killed (down after missed heartbeats, its tasks rescheduled) and back.
#[test]
fn workers_join_run_tasks_and_are_replaced_when_down() {
    require_root!();
    let mut c = Cluster::new(3, &[]);
    c.load_busybox();
    let swarm = c.init_swarm(heartbeat(2));
    let worker_token = swarm["JoinTokens"]["Worker"].as_str().unwrap().to_string();

    // A token that is not the cluster's (same CA digest, other secret), a malformed one,
    // and one naming another CA.
    let mut wrong = worker_token.clone();
    wrong.replace_range(wrong.len() - 3.., "zzz");
    let r = c.try_join(1, &wrong);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.message(),
        "rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster"
    );
    let r = c.try_join(1, "SWMTKN-1-bad");
    assert_eq!(
        (r.status, r.message().as_str()),
        (400, "invalid join token")
    );
    let other_ca = format!(
        "SWMTKN-1-{}-{}",
        "1".repeat(50),
        &worker_token[worker_token.len() - 25..]
    );
    let r = c.try_join(1, &other_ca);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.message()
            .starts_with("remote CA does not match fingerprint. Expected: "),
        "{}",
        r.message()
    );
    assert_eq!(
        c.node(1).api().get("/info").json()["Swarm"]["LocalNodeState"],
        "inactive"
    );

    let remote = c.node(0).addr(2377);
    let out = c
        .node(1)
        .berth(&["swarm", "join", "--token", &worker_token, &remote])
        .success();
    assert_eq!(out.stdout, "This node joined a swarm as a worker.\n");
    // The second worker joins with the docker CLI where there is one, else with berth.
    let args = [
        "swarm",
        "join",
        "--token",
        worker_token.as_str(),
        remote.as_str(),
    ];
    let out = match c.node(2).docker(&args) {
        Some(out) => out,
        None => c.node(2).berth(&args),
    }
    .success();
    assert_eq!(out.stdout, "This node joined a swarm as a worker.\n");
    let r = c.try_join(1, &worker_token);
    assert_eq!(r.status, 503);
    assert!(
        r.message()
            .starts_with("This node is already part of a swarm.")
    );
    let info = c.node(1).api().get("/info").json();
    assert_eq!(info["Swarm"]["LocalNodeState"], "active");
    assert_eq!(info["Swarm"]["ControlAvailable"], false);
    assert_eq!(info["Swarm"]["NodeAddr"], c.node(1).ip.as_str());
    assert_eq!(
        info["Swarm"]["RemoteManagers"][0]["Addr"],
        c.node(0).addr(2377).as_str()
    );
    // A worker answers cluster calls with dockerd's text.
    let r = c.node(1).api().get("/nodes");
    assert_eq!(r.status, 503);
    assert!(
        r.message()
            .contains("Worker nodes can't be used to view or modify cluster state")
    );

    let m = c.node(0);
    wait_for("three ready nodes", || all_ready(m, 3));
    let hostnames: Vec<String> = nodes(m)
        .iter()
        .map(|n| {
            n["Description"]["Hostname"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for n in &c.nodes {
        assert!(hostnames.contains(&n.hostname), "{hostnames:?}");
    }

    create_service(m, web_restarting(6));
    wait_for("6 tasks running, 2 per node", || {
        let by = running_by_node(m, "web");
        by.len() == 3 && by.values().all(|n| *n == 2)
    });
    // Each engine runs its own share.
    wait_for("each node runs 2 containers", || {
        c.nodes.iter().all(|n| local_task_containers(n, "web") == 2)
    });

    // A worker dies: it goes down after its missed heartbeats, its tasks move.
    let worker_id = c.node(2).api().get("/info").json()["Swarm"]["NodeID"]
        .as_str()
        .unwrap()
        .to_string();
    c.node_mut(2).kill_hard();
    let m = c.node(0);
    wait_for("the dead worker is down", || {
        m.api().get(&format!("/nodes/{worker_id}")).json()["Status"]["State"] == "down"
    });
    wait_for("6 tasks running on the two live nodes", || {
        let by = running_by_node(m, "web");
        by.values().sum::<usize>() == 6 && !by.contains_key(&worker_id)
    });
    // Back: it reports ready again and stops the tasks that moved away.
    c.node_mut(2).start_again();
    let m = c.node(0);
    wait_for("the worker is ready again", || {
        m.api().get(&format!("/nodes/{worker_id}")).json()["Status"]["State"] == "ready"
    });
    wait_for("the returned worker stops its old tasks", || {
        local_task_containers(c.node(2), "web") == 0
    });

    // A worker that is up cannot be removed; the last manager cannot be either.
    let w1 = node_id(c.node(1));
    let r = m.api().delete(&format!("/nodes/{w1}"));
    assert_eq!(r.status, 500);
    assert_eq!(
        r.message(),
        format!(
            "rpc error: code = FailedPrecondition desc = node {w1} is not down and can't be removed"
        )
    );
    let manager_id = node_id(m);
    let r = m.api().delete(&format!("/nodes/{manager_id}"));
    assert_eq!(r.status, 500);
    assert!(
        r.message()
            .contains("is a cluster manager and is a member of the raft cluster")
    );
    let r = m.api().post("/swarm/leave", None);
    assert_eq!(r.status, 503);
    assert!(
        r.message()
            .contains("Removing the last manager erases all current state of the swarm.")
    );

    // A worker leaves: its containers go, the manager sees it down and `node rm` takes it.
    let r = c.node(1).api().post("/swarm/leave", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(local_task_containers(c.node(1), "web"), 0);
    assert_eq!(
        c.node(1).api().get("/info").json()["Swarm"]["LocalNodeState"],
        "inactive"
    );
    wait_for("the worker that left is down", || {
        m.api().get(&format!("/nodes/{w1}")).json()["Status"]["State"] == "down"
    });
    let r = m.api().delete(&format!("/nodes/{w1}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(nodes(m).len(), 2);
    wait_for("6 tasks on the manager and the returned worker", || {
        running_by_node(m, "web").values().sum::<usize>() == 6
            && c.nodes
                .iter()
                .map(|n| local_task_containers(n, "web"))
                .sum::<usize>()
                == 6
    });
}

/// The leader's node id as `d` sees it, when its view has one leader and `managers`
/// reachable managers.
fn leader_seen_by(d: &Daemon, reachable: usize) -> Option<String> {
    let ns = nodes(d);
    let leaders: Vec<&Value> = ns
        .iter()
        .filter(|n| n["ManagerStatus"]["Leader"] == true)
        .collect();
    let ok = ns
        .iter()
        .filter(|n| n["ManagerStatus"]["Reachability"] == "reachable")
        .count();
    (leaders.len() == 1 && ok == reachable)
        .then(|| leaders[0]["ID"].as_str().unwrap_or_default().to_string())
}

/// Three managers and a worker: managers join through Raft (learner, then voter), writes on a
/// follower reach the leader, every manager reads the same state; the leader killed with
/// SIGKILL, another takes over and the service converges with no task lost or doubled; the
/// old leader comes back as a follower; without a quorum, writes get Docker's text.
#[test]
fn managers_replicate_fail_over_and_refuse_writes_without_quorum() {
    require_root!();
    let mut c = Cluster::new(4, &[]);
    c.load_busybox();
    let swarm = c.init_swarm(heartbeat(2));
    let manager_token = swarm["JoinTokens"]["Manager"].as_str().unwrap().to_string();
    let worker_token = swarm["JoinTokens"]["Worker"].as_str().unwrap().to_string();
    for i in [1, 2] {
        c.join(i, &manager_token);
        let info = c.node(i).api().get("/info").json();
        assert_eq!(info["Swarm"]["ControlAvailable"], true, "{info}");
    }
    c.join(3, &worker_token);
    let first_leader = node_id(c.node(0));
    for i in 0..3 {
        wait_for(
            "every manager sees 4 ready nodes, 3 managers, node 0 leading",
            || {
                all_ready(c.node(i), 4)
                    && leader_seen_by(c.node(i), 3).as_deref() == Some(first_leader.as_str())
            },
        );
    }
    let info = c.node(1).api().get("/info").json();
    assert_eq!(info["Swarm"]["Managers"], 3);
    assert_eq!(info["Swarm"]["Nodes"], 4);
    assert_eq!(info["Swarm"]["RemoteManagers"].as_array().unwrap().len(), 3);

    // Created on a follower: forwarded to the leader.
    let spec = web_restarting(8);
    create_service(c.node(2), &spec);
    wait_for("8 tasks running, 2 per node", || {
        let by = running_by_node(c.node(1), "web");
        by.len() == 4 && by.values().all(|n| *n == 2)
    });

    // The leader dies.
    c.node_mut(0).kill_hard();
    let mut new_leader = String::new();
    wait_for(
        "a new leader, the old one unreachable",
        || match leader_seen_by(c.node(1), 2) {
            Some(l) if l != first_leader => {
                new_leader = l;
                true
            }
            _ => false,
        },
    );
    wait_for("8 tasks running on the 3 live nodes, one per slot", || {
        let by = running_by_node(c.node(2), "web");
        let live: usize = (1..4)
            .map(|i| local_task_containers(c.node(i), "web"))
            .sum();
        by.values().sum::<usize>() == 8 && !by.contains_key(&first_leader) && live == 8
    });
    // Writes still work through the new leader.
    let r = c.node(1).api().get("/services/web").json();
    let version = r["Version"]["Index"].as_u64().unwrap();
    let mut spec2 = spec.clone();
    spec2["Mode"]["Replicated"]["Replicas"] = json!(6);
    let r = c.node(1).api().post(
        &format!("/services/web/update?version={version}"),
        Some(spec2.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for("6 tasks running after the scale down", || {
        running_by_node(c.node(2), "web").values().sum::<usize>() == 6
    });

    // The old leader comes back as a follower and stops its stale tasks.
    c.node_mut(0).start_again();
    wait_for("the old leader is reachable again", || {
        leader_seen_by(c.node(1), 3).as_deref() == Some(new_leader.as_str())
    });
    wait_for("the old leader's containers of moved tasks stop", || {
        let total: usize = (0..4)
            .map(|i| local_task_containers(c.node(i), "web"))
            .sum();
        total == 6
    });

    // A manager leaves: refused without --force (Docker's warning), then out of the Raft
    // membership; it is then unreachable and down, and `node rm` takes it.
    let r = c.node(0).api().post("/swarm/leave", None);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        r.message(),
        "You are attempting to leave the swarm on a node that is participating as a manager. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."
    );
    let r = c.node(1).api().delete(&format!("/nodes/{first_leader}"));
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.message().ends_with("is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal"),
        "{}",
        r.message()
    );
    let r = c.node(0).api().post("/swarm/leave?force=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(local_task_containers(c.node(0), "web"), 0);
    wait_for("the manager that left is down and unreachable", || {
        let n = c
            .node(1)
            .api()
            .get(&format!("/nodes/{first_leader}"))
            .json();
        n["Status"]["State"] == "down" && n["ManagerStatus"]["Reachability"] == "unreachable"
    });
    let r = c.node(1).api().delete(&format!("/nodes/{first_leader}"));
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for("6 tasks on the remaining nodes", || {
        let total: usize = (1..4)
            .map(|i| local_task_containers(c.node(i), "web"))
            .sum();
        total == 6 && running_by_node(c.node(1), "web").values().sum::<usize>() == 6
    });
    if let Some(out) = c.node(2).docker(&["node", "ls"]) {
        let out = out.success();
        assert!(out.stdout.contains("MANAGER STATUS"), "{}", out.stdout);
        assert!(
            out.stdout.contains("Leader") && out.stdout.contains("Reachable"),
            "{}",
            out.stdout
        );
    }

    // One of the two managers left is killed: no quorum, writes refused with swarmkit's
    // text, naming the manager this one waits for.
    let survivor = (1..3).find(|i| node_id(c.node(*i)) != new_leader).unwrap();
    let dead = if survivor == 1 { 2 } else { 1 };
    let dead_addr = c.node(dead).addr(2377);
    c.node_mut(dead).kill_hard();
    let r = c.node(survivor).api().post(
        "/secrets/create",
        Some(br#"{"Name": "s1", "Data": "YWJj"}"#),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.message().starts_with("The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online."),
        "{}",
        r.message()
    );
    assert!(r.message().contains(&dead_addr), "{}", r.message());
    // Reads still answer from the local store.
    assert_eq!(c.node(survivor).api().get("/services/web").status, 200);
}

/// `node promote` turns running workers into managers (Raft members that take writes), and
/// `node demote` turns a manager back into a worker that keeps its tasks' containers.
#[test]
fn promote_and_demote_running_nodes() {
    require_root!();
    let c = Cluster::swarm(3, 1, 2);
    let m = c.node(0);
    let (w1, w2) = (node_id(c.node(1)), node_id(c.node(2)));
    let out = m.berth(&["node", "promote", &w1]).success();
    assert_eq!(
        out.stdout,
        format!("Node {w1} promoted to a manager in the swarm.\n")
    );
    let promote2 = m
        .docker(&["node", "promote", &w2])
        .unwrap_or_else(|| m.berth(&["node", "promote", &w2]));
    promote2.success();
    for i in [1, 2] {
        wait_for("the promoted node controls the swarm", || {
            c.node(i).api().get("/info").json()["Swarm"]["ControlAvailable"] == true
        });
    }
    wait_for("three reachable managers seen from a promoted one", || {
        leader_seen_by(c.node(2), 3).is_some()
    });
    let out = m.berth(&["node", "promote", &w1]).success();
    assert_eq!(out.stdout, format!("Node {w1} is already a manager.\n"));

    // A write on a promoted manager.
    create_service(c.node(1), web(3));
    wait_for("one task per node", || {
        let by = running_by_node(m, "web");
        by.len() == 3 && by.values().all(|n| *n == 1)
    });

    let out = m.berth(&["node", "demote", &w2]).success();
    assert_eq!(out.stdout, format!("Manager {w2} demoted in the swarm.\n"));
    wait_for("the demoted node is a worker again", || {
        let info = c.node(2).api().get("/info").json();
        info["Swarm"]["LocalNodeState"] == "active" && info["Swarm"]["ControlAvailable"] == false
    });
    wait_for(
        "two managers, the demoted node ready without manager status",
        || {
            let n = m.api().get(&format!("/nodes/{w2}")).json();
            n["ManagerStatus"].is_null()
                && n["Status"]["State"] == "ready"
                && leader_seen_by(m, 2).is_some()
        },
    );
    assert_eq!(
        local_task_containers(c.node(2), "web"),
        1,
        "its task kept running"
    );
    assert_eq!(m.api().get("/info").json()["Swarm"]["Managers"], 2);
}

/// A network partition (nftables in the switch namespace) isolates the leader: the minority
/// refuses writes with Docker's text, the majority elects a leader and goes on; when the
/// partition ends, the old leader follows and has the majority's writes.
#[test]
fn partition_minority_refuses_writes_and_heals() {
    require_root!();
    let c = Cluster::new(3, &[]);
    let swarm = c.init_swarm(heartbeat(2));
    c.join_all(&swarm, 3);
    let first = node_id(c.node(0));
    wait_for("three reachable managers", || {
        leader_seen_by(c.node(1), 3).as_deref() == Some(first.as_str())
    });
    c.partition(&[0]);
    let r = c.node(0).api().post(
        "/secrets/create",
        Some(br#"{"Name": "minority", "Data": "YWJj"}"#),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.message().starts_with("The swarm does not have a leader."),
        "{}",
        r.message()
    );
    wait_for("a new leader on the majority side", || {
        leader_seen_by(c.node(1), 2).is_some_and(|l| l != first)
    });
    let r = c.node(2).api().post(
        "/secrets/create",
        Some(br#"{"Name": "majority", "Data": "YWJj"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    c.heal_partition();
    wait_for("the old leader has the majority's write", || {
        c.node(0).api().get("/secrets/majority").status == 200
    });
    assert_eq!(c.node(0).api().get("/secrets/minority").status, 404);
    wait_for("three reachable managers again", || {
        leader_seen_by(c.node(1), 3).is_some_and(|l| l != first)
    });
}

/// Every manager restarted in turn (SIGTERM, then started again on its data root): each comes
/// back with the cluster's state, the swarm keeps a leader and the service keeps its tasks.
#[test]
fn every_manager_restarts_in_turn() {
    require_root!();
    let mut c = Cluster::swarm(3, 3, 2);
    wait_for("three reachable managers", || {
        leader_seen_by(c.node(0), 3).is_some()
    });
    create_service(c.node(0), web(3));
    wait_for("3 tasks running", || {
        running_by_node(c.node(0), "web").values().sum::<usize>() == 3
    });
    for i in 0..3 {
        c.node_mut(i).restart();
        let other = (i + 1) % 3;
        wait_for("three reachable managers after a restart", || {
            leader_seen_by(c.node(other), 3).is_some() && leader_seen_by(c.node(i), 3).is_some()
        });
        let r = c.node(i).api().get("/services/web");
        assert_eq!(r.status, 200, "node {i} kept the state: {}", r.text());
        wait_for("3 tasks running, one container each", || {
            let total: usize = (0..3)
                .map(|k| local_task_containers(c.node(k), "web"))
                .sum();
            running_by_node(c.node(i), "web").values().sum::<usize>() == 3 && total == 3
        });
    }
}

/// Quorum lost for good (two managers of three dead): `swarm init --force-new-cluster` on the
/// survivor makes it the only manager with the state it had; writes work again and the
/// service's tasks converge on it.
#[test]
fn force_new_cluster_recovers_from_a_lost_quorum() {
    require_root!();
    let mut c = Cluster::swarm(3, 3, 2);
    wait_for("three reachable managers", || {
        leader_seen_by(c.node(2), 3).is_some()
    });
    create_service(c.node(0), web(3));
    wait_for("3 tasks running", || {
        running_by_node(c.node(2), "web").values().sum::<usize>() == 3
    });
    c.node_mut(0).kill_hard();
    c.node_mut(1).kill_hard();
    let s = c.node(2);
    let r = s.api().post(
        "/secrets/create",
        Some(br#"{"Name": "s1", "Data": "YWJj"}"#),
    );
    assert_eq!(r.status, 503, "{}", r.text());

    let out = s.berth(&["swarm", "init", "--force-new-cluster"]).success();
    assert!(out.stdout.contains("is now a manager"), "{}", out.stdout);
    let r = s.api().post(
        "/secrets/create",
        Some(br#"{"Name": "s1", "Data": "YWJj"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let me = node_id(s);
    wait_for("the survivor leads, its service's tasks all on it", || {
        running_by_node(s, "web").get(&me) == Some(&3) && local_task_containers(s, "web") == 3
    });
    // It keeps its state across a restart as the only member.
    c.node_mut(2).restart();
    let s = c.node(2);
    let r = s.api().post(
        "/secrets/create",
        Some(br#"{"Name": "s2", "Data": "YWJj"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.api().get("/secrets/s1").status, 200);
}

/// A worker cut off from its manager keeps its containers running; the manager marks it down
/// and reschedules; when the link is back the worker is ready again and stops the tasks that
/// moved away, so the service ends with its replica count exactly.
#[test]
fn worker_keeps_tasks_while_cut_off_and_reconciles() {
    require_root!();
    let c = Cluster::swarm(2, 1, 2);
    let m = c.node(0);
    create_service(m, web(4));
    wait_for("2 containers on each node", || {
        local_task_containers(c.node(0), "web") == 2 && local_task_containers(c.node(1), "web") == 2
    });
    let worker = node_id(c.node(1));
    c.cut(1);
    wait_for("the cut-off worker is down and its tasks moved", || {
        m.api().get(&format!("/nodes/{worker}")).json()["Status"]["State"] == "down"
            && local_task_containers(m, "web") == 4
    });
    assert_eq!(
        local_task_containers(c.node(1), "web"),
        2,
        "a worker without its manager keeps its tasks running"
    );
    c.heal(1);
    wait_for("the worker is back and stopped its moved tasks", || {
        m.api().get(&format!("/nodes/{worker}")).json()["Status"]["State"] == "ready"
            && local_task_containers(c.node(1), "web") == 0
            && local_task_containers(m, "web") == 4
    });
}
