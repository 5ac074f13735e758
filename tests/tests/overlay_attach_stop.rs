//! Plain containers on an attachable overlay hold their address only while they run, as
//! dockerd's (attached at start, released at stop, at an exit of their own and when the
//! daemon finds them stopped after a crash): on a worker of a swarm of two
//! (`berth_e2e::cluster`), in a /29 subnet that holds five containers, a stopped container's
//! address is taken by the next one to start, a start with none left fails and leaves nothing
//! held, a restarted container joins the overlay again and is reached across nodes, and a
//! network whose containers are all stopped can be removed (their next start says so).

use std::time::Duration;

use berth_e2e::overlay::{HTTPD, docker_ok, get_from};
use berth_e2e::swarm_setup::poll;
use berth_e2e::{Cluster, Daemon, overlay, require_root};
use serde_json::Value;

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(90), Duration::from_millis(250), f);
}

/// Container id -> address (without prefix) of a node's containers on a swarm network, as
/// `network inspect` there shows them (none when the node does not list the network).
fn attached(d: &Daemon, net: &str) -> Vec<(String, String)> {
    let Some(out) = d.docker(&["network", "inspect", net]) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    v[0]["Containers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(id, c)| {
            let addr = c["IPv4Address"].as_str().unwrap_or_default();
            (id.clone(), addr.split('/').next().unwrap_or("").to_string())
        })
        .collect()
}

fn address_of(d: &Daemon, net: &str, id: &str) -> Option<String> {
    attached(d, net)
        .into_iter()
        .find(|(c, _)| c == id)
        .map(|(_, a)| a)
}

fn id_of(d: &Daemon, name: &str) -> String {
    docker_ok(d, &["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

fn running(d: &Daemon, name: &str) -> bool {
    docker_ok(d, &["inspect", "-f", "{{.State.Running}}", name]).trim() == "true"
}

fn run_on(d: &Daemon, name: &str, net: &str, script: &str) -> String {
    docker_ok(
        d,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            "busybox:latest",
            "sh",
            "-c",
            script,
        ],
    )
    .trim()
    .to_string()
}

/// `docker network create -d overlay --attachable --subnet SUBNET NAME` on `m`: the id.
fn attachable_overlay(m: &Daemon, name: &str, subnet: &str) -> String {
    let args = ["network", "create", "-d", "overlay", "--attachable"];
    let mut args = args.to_vec();
    args.extend(["--subnet", subnet, name]);
    docker_ok(m, &args).trim().to_string()
}

/// Removes what the test made even when it failed half-way (the cluster's own drop ends the
/// daemons).
struct Cleanup<'a>(&'a Daemon, &'a Daemon, Vec<&'static str>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for d in [self.0, self.1] {
            if let Some(out) = d.docker(&["ps", "-aq"]) {
                for id in out.stdout.split_whitespace() {
                    let _ = d.docker(&["rm", "-f", id]);
                }
            }
        }
        for net in &self.2 {
            let _ = self.0.docker(&["network", "rm", net]);
        }
    }
}

#[test]
fn stopped_containers_on_a_worker_give_their_overlay_address_back() {
    require_root!();
    let Some(c) = Cluster::swarm_of_two() else {
        return;
    };
    let (m, w) = (c.node(0), c.node(1));
    let _cleanup = Cleanup(m, w, vec!["small"]);
    let net_id = attachable_overlay(m, "small", "10.231.7.0/29");
    // Five addresses (.2 to .6): one on the manager, four on the worker.
    let mc = run_on(m, "mc", "small", HTTPD);
    let c1 = run_on(w, "c1", "small", HTTPD);
    run_on(w, "c2", "small", "exec sleep 1000");
    run_on(w, "c3", "small", "exec sleep 1000");
    // c4 ends by itself once told.
    let c4 = run_on(
        w,
        "c4",
        "small",
        "until [ -f /tmp/go ]; do sleep 0.2; done; exit 3",
    );
    wait_for("four containers attached on the worker", || {
        attached(w, "small").len() == 4
    });
    let c1_addr = address_of(w, "small", &c1).unwrap();
    let c4_addr = address_of(w, "small", &c4).unwrap();
    // Created, it holds nothing; started with no address left, the start fails.
    docker_ok(
        w,
        &[
            "create",
            "--name",
            "c5",
            "--network",
            "small",
            "busybox:latest",
            "sleep",
            "1000",
        ],
    );
    let c5 = id_of(w, "c5");
    let out = w.docker(&["start", "c5"]).unwrap().failure();
    assert!(
        out.stderr
            .contains("Could not attach to network small: no address left on network small"),
        "{}",
        out.stderr
    );
    assert!(!running(w, "c5"));
    assert_eq!(attached(w, "small").len(), 4);
    // A stop gives c1's address back; inspect keeps the network without an address.
    docker_ok(w, &["stop", "-t", "1", "c1"]);
    wait_for("c1's address released", || {
        address_of(w, "small", &c1).is_none()
    });
    let ctr: Value = serde_json::from_str(&docker_ok(w, &["inspect", "c1"])).unwrap();
    let ep = &ctr[0]["NetworkSettings"]["Networks"]["small"];
    assert_eq!(ep["NetworkID"], net_id.as_str(), "{ctr}");
    assert_eq!(ep["IPAddress"], "", "{ctr}");
    // ...which the next start takes.
    docker_ok(w, &["start", "c5"]);
    wait_for("c5 attached", || address_of(w, "small", &c5).is_some());
    assert_eq!(address_of(w, "small", &c5).unwrap(), c1_addr);
    let out = w.docker(&["start", "c1"]).unwrap().failure();
    assert!(out.stderr.contains("no address left"), "{}", out.stderr);
    // An exit of its own gives c4's back, and c1 starts again with it.
    // Only a trigger: c4 may end before the exec's status is collected (then 137).
    let _ = w.docker(&["exec", "c4", "touch", "/tmp/go"]);
    wait_for("c4 to exit", || !running(w, "c4"));
    wait_for("c4's address released", || {
        address_of(w, "small", &c4).is_none()
    });
    docker_ok(w, &["start", "c1"]);
    wait_for("c1 attached again", || {
        address_of(w, "small", &c1).is_some()
    });
    assert_eq!(address_of(w, "small", &c1).unwrap(), c4_addr);
    let ctr: Value = serde_json::from_str(&docker_ok(w, &["inspect", "c1"])).unwrap();
    assert_eq!(
        ctr[0]["NetworkSettings"]["Networks"]["small"]["IPAddress"],
        c4_addr.as_str(),
        "{ctr}"
    );
    // Across nodes, by name, both ways.
    wait_for("c1 to reach mc over the overlay", || {
        get_from(w, "c1", "mc", 80).as_deref() == Some(&mc[..12])
    });
    wait_for("mc to reach c1 over the overlay", || {
        get_from(m, "mc", "c1", 80).as_deref() == Some(&c1[..12])
    });
    // Stopped containers are removed as before (c4 exited by itself).
    docker_ok(w, &["rm", "c4"]);
    docker_ok(w, &["stop", "-t", "1", "c2"]);
    docker_ok(w, &["rm", "c2"]);
    // `network disconnect` of a stopped container forgets the network: it starts without it;
    // `network connect` of a stopped one gives the address at the next start.
    docker_ok(w, &["stop", "-t", "1", "c3"]);
    docker_ok(w, &["network", "disconnect", "small", "c3"]);
    let out = w
        .docker(&["network", "disconnect", "small", "c3"])
        .unwrap()
        .failure();
    assert!(
        out.stderr.contains("is not connected to the network small"),
        "{}",
        out.stderr
    );
    docker_ok(w, &["start", "c3"]);
    let c3 = id_of(w, "c3");
    let ctr: Value = serde_json::from_str(&docker_ok(w, &["inspect", "c3"])).unwrap();
    assert!(
        ctr[0]["NetworkSettings"]["Networks"]["small"].is_null(),
        "{ctr}"
    );
    assert!(address_of(w, "small", &c3).is_none());
    docker_ok(w, &["stop", "-t", "1", "c3"]);
    docker_ok(w, &["network", "connect", "small", "c3"]);
    assert!(address_of(w, "small", &c3).is_none());
    docker_ok(w, &["start", "c3"]);
    wait_for("c3 attached", || address_of(w, "small", &c3).is_some());
    // Everything removed: the network goes, and no overlay netns is left.
    for name in ["c1", "c3", "c5"] {
        docker_ok(w, &["rm", "-f", name]);
    }
    docker_ok(m, &["rm", "-f", "mc"]);
    overlay::remove_network_and_wait_clean(&c, m, "small");
}

#[test]
fn a_container_stopped_while_its_daemon_was_down_gives_its_address_back() {
    require_root!();
    let Some(mut c) = Cluster::swarm_of_two() else {
        return;
    };
    attachable_overlay(c.node(0), "back", "10.231.8.0/29");
    let w = c.node(1);
    let id = run_on(w, "k1", "back", "exec sleep 1000");
    wait_for("k1 attached", || address_of(w, "back", &id).is_some());
    let pid: i32 = docker_ok(w, &["inspect", "-f", "{{.State.Pid}}", "k1"])
        .trim()
        .parse()
        .unwrap();
    // The subnet's other four addresses go to the manager's containers; a fifth there waits
    // for k1's.
    let m = c.node(0);
    for name in ["m1", "m2", "m3", "m4"] {
        run_on(m, name, "back", "exec sleep 1000");
    }
    docker_ok(
        m,
        &[
            "create",
            "--name",
            "m5",
            "--network",
            "back",
            "busybox:latest",
            "sleep",
            "1000",
        ],
    );
    let out = m.docker(&["start", "m5"]).unwrap().failure();
    assert!(out.stderr.contains("no address left"), "{}", out.stderr);
    // The worker's daemon dies; k1 ends while no daemon sees it.
    c.nodes[1].daemon.kill_hard();
    let p = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::KILL).unwrap();
    poll(
        "k1's process to end",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || rustix::process::test_kill_process(p).is_err(),
    );
    c.nodes[1].daemon.start_again();
    let (m, w) = (c.node(0), c.node(1));
    let _cleanup = Cleanup(m, w, vec!["back"]);
    assert!(!running(w, "k1"));
    // Back, the worker gives k1's address back: m5 can start with it.
    wait_for("m5 to start with k1's address", || {
        m.docker(&["start", "m5"]).is_some_and(|o| o.code == 0)
    });
    // k1 still knows its network: a start asks for an address again (none left now).
    let out = w.docker(&["start", "k1"]).unwrap().failure();
    assert!(
        out.stderr
            .contains("Could not attach to network back: no address left on network back"),
        "{}",
        out.stderr
    );
    assert!(!running(w, "k1"));
    docker_ok(m, &["rm", "-f", "m5"]);
    docker_ok(w, &["start", "k1"]);
    wait_for("k1 attached again", || address_of(w, "back", &id).is_some());
    // Stopped containers do not keep the network: it goes, and their next start says so.
    docker_ok(w, &["stop", "-t", "1", "k1"]);
    for name in ["m1", "m2", "m3", "m4"] {
        docker_ok(m, &["rm", "-f", name]);
    }
    wait_for("back removable", || {
        m.docker(&["network", "rm", "back"])
            .is_some_and(|o| o.code == 0)
    });
    let out = w.docker(&["start", "k1"]).unwrap().failure();
    assert!(
        out.stderr.contains(
            "Could not attach to network back: rpc error: code = NotFound desc = network back not found"
        ),
        "{}",
        out.stderr
    );
    docker_ok(w, &["rm", "k1"]);
}

#[test]
fn a_restarting_container_joins_its_overlay_at_each_start_and_leaves_it_at_the_end() {
    require_root!();
    let Some(c) = Cluster::swarm_of_two() else {
        return;
    };
    let (m, w) = (c.node(0), c.node(1));
    let _cleanup = Cleanup(m, w, vec!["again"]);
    attachable_overlay(m, "again", "10.231.9.0/24");
    let logs = tempfile::tempdir().unwrap();
    let bind = format!("{}:/log", logs.path().display());
    // Each run notes its overlay address, then fails: the policy starts it twice more.
    docker_ok(
        w,
        &[
            "run",
            "-d",
            "--name",
            "r1",
            "--restart",
            "on-failure:2",
            "-v",
            &bind,
            "--network",
            "again",
            "busybox:latest",
            "sh",
            "-c",
            "ip -o -4 addr show | grep -o 'inet 10.231.9.[0-9]*' >> /log/runs; exit 1",
        ],
    );
    wait_for("r1 to give up", || {
        docker_ok(
            w,
            &["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "r1"],
        )
        .trim()
            == "exited 2"
    });
    let runs = std::fs::read_to_string(logs.path().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 3, "{runs}");
    assert!(
        runs.lines().all(|l| l.starts_with("inet 10.231.9.")),
        "{runs}"
    );
    // Exited for good, it holds nothing: the network can go while it stays.
    wait_for("again removable", || {
        m.docker(&["network", "rm", "again"])
            .is_some_and(|o| o.code == 0)
    });
    docker_ok(w, &["rm", "r1"]);
}
