//! Attachable overlays and swarm networks on a worker (a manager and a worker, each in its own
//! network namespace: `berth_e2e::cluster`): a plain container started on the worker gets its
//! address from the managers' allocator, reaches a service on the manager by name and VIP and
//! is reached by name from the manager; its address goes with it (also after a worker
//! restart); a network that is not attachable gets dockerd's refusal; the worker lists the
//! swarm networks it uses, and ingress.

use std::time::Duration;

use berth_e2e::overlay::{HTTPD, docker_ok, get_from};
use berth_e2e::swarm_setup::{
    poll, running_task_containers, running_tasks, task_container, task_node,
};
use berth_e2e::{Cluster, Daemon, overlay, require_root};
use serde_json::{Value, json};

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(90), Duration::from_millis(250), f);
}

/// The names of the networks a daemon lists.
fn network_names(d: &Daemon) -> Vec<String> {
    d.api()
        .get("/networks")
        .json()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["Name"].as_str().map(str::to_string))
        .collect()
}

/// Tries `network rm NET` on the manager until its answer contains `want` (the release of
/// attachments is asynchronous: the node's overlay agent notices a removed container).
fn until_rm_says(m: &Daemon, net: &str, want: &str) {
    let mut last = String::new();
    wait_for(
        &format!("network rm {net} to say {want:?} (last: {last})"),
        || {
            let out = m.docker(&["network", "rm", net]).unwrap();
            last = out.stderr.clone();
            out.stderr.contains(want)
        },
    );
}

#[test]
fn containers_on_a_worker_join_attachable_overlays_through_the_managers() {
    require_root!();
    let Some(mut c) = Cluster::swarm_of_two() else {
        eprintln!("skipped: no docker CLI");
        return;
    };
    let (m, w) = (c.node(0), c.node(1));
    overlay::create_attachable(m, "backend");
    docker_ok(m, &["network", "create", "-d", "overlay", "closed"]);
    let manager_host = m.hostname.clone();
    docker_ok(
        m,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--network",
            "backend",
            "--constraint",
            &format!("node.hostname=={manager_host}"),
            "--detach",
            "busybox:latest",
            "sh",
            "-c",
            HTTPD,
        ],
    );
    wait_for("the web task", || {
        running_task_containers(m, "web").len() == 1
    });
    let web_task = running_task_containers(m, "web")[0].clone();
    // A worker lists ingress (every node's) but not an overlay it has nothing on.
    wait_for("the worker to list ingress", || {
        network_names(w).contains(&"ingress".to_string())
    });
    assert!(!network_names(w).contains(&"backend".to_string()));
    let ingress = docker_ok(w, &["network", "inspect", "ingress"]);
    assert!(ingress.contains("\"Ingress\": true"), "{ingress}");
    let out = w
        .docker(&["network", "inspect", "backend"])
        .unwrap()
        .failure();
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    // Not attachable: dockerd's refusal, on the worker as on a manager.
    let out = w
        .docker(&["run", "-d", "--network", "closed", "busybox:latest", "true"])
        .unwrap()
        .failure();
    assert!(
        out.stderr.contains(
            "Could not attach to network closed: rpc error: code = PermissionDenied desc = network closed not manually attachable"
        ),
        "{}",
        out.stderr
    );
    // The docker CLI on the worker: an address from the managers, the overlay up there.
    let wprobe = docker_ok(
        w,
        &[
            "run",
            "-d",
            "--name",
            "wprobe",
            "--network",
            "backend",
            "busybox:latest",
            "sh",
            "-c",
            HTTPD,
        ],
    )
    .trim()
    .to_string();
    wait_for("the worker to list backend", || {
        network_names(w).contains(&"backend".to_string())
    });
    let inspect: Value =
        serde_json::from_str(&docker_ok(w, &["network", "inspect", "backend"])).unwrap();
    let containers = &inspect[0]["Containers"];
    assert_eq!(containers[&wprobe]["Name"], "wprobe", "{inspect}");
    let wprobe_addr = containers[&wprobe]["IPv4Address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // `docker inspect` shows the overlay beside docker_gwbridge, as dockerd.
    let mut shown = Value::Null;
    wait_for("inspect to show wprobe's overlay endpoint", || {
        let ctr: Value = serde_json::from_str(&docker_ok(w, &["inspect", "wprobe"])).unwrap();
        shown = ctr[0]["NetworkSettings"]["Networks"].clone();
        shown["backend"]["IPAddress"] == wprobe_addr.as_str()
    });
    assert_eq!(shown["backend"]["NetworkID"], inspect[0]["Id"], "{shown}");
    // Listed on the worker, yet removed only through a manager (dockerd's errNoManager; it
    // said "not found" before); nothing changes.
    let no_manager = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state.";
    let out = w.docker(&["network", "rm", "backend"]).unwrap().failure();
    assert!(out.stderr.contains(no_manager), "{}", out.stderr);
    // (The docker CLI asks before it removes ingress: the API directly.)
    for net in ["backend", "ingress"] {
        let r = w.api().delete(&format!("/networks/{net}"));
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.message().starts_with(no_manager), "{}", r.text());
    }
    assert!(network_names(w).contains(&"backend".to_string()));
    // It reaches the service on the manager by name (its VIP) and by the VIP itself.
    let mut body = None;
    wait_for("the worker's container to reach web by name", || {
        body = get_from(w, "wprobe", "web", 80);
        body.is_some()
    });
    assert_eq!(body.unwrap(), web_task[..12]);
    let service: Value = m.api().get("/services/web").json();
    let vip = service["Endpoint"]["VirtualIPs"][0]["Addr"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        get_from(w, "wprobe", &vip, 80).as_deref(),
        Some(&web_task[..12])
    );
    // The manager's task and a plain container there reach it by name, across nodes.
    let mut body = None;
    wait_for("the manager's task to reach wprobe by name", || {
        body = get_from(m, &web_task, "wprobe", 80);
        body.is_some()
    });
    assert_eq!(body.unwrap(), wprobe[..12]);
    docker_ok(
        m,
        &[
            "run",
            "-d",
            "--name",
            "mprobe",
            "--network",
            "backend",
            "busybox:latest",
            "sleep",
            "1000",
        ],
    );
    wait_for("the manager's container to reach wprobe", || {
        get_from(m, "mprobe", "wprobe", 80).as_deref() == Some(&wprobe[..12])
    });
    let resolved = docker_ok(m, &["exec", "mprobe", "nslookup", "wprobe", "127.0.0.11"]);
    assert!(resolved.contains(&wprobe_addr), "{resolved}");
    // `network connect` and `disconnect` of a container on the worker's default bridge: an
    // interface on the overlay comes and goes, and the VIP answers meanwhile.
    docker_ok(
        w,
        &[
            "run",
            "-d",
            "--name",
            "wc",
            "busybox:latest",
            "sleep",
            "1000",
        ],
    );
    docker_ok(w, &["network", "connect", "backend", "wc"]);
    let prefix = vip.rsplit_once('.').unwrap().0.to_string();
    let overlay_addr = |d: &Daemon| {
        let out = docker_ok(d, &["exec", "wc", "ip", "-o", "-4", "addr"]);
        out.lines()
            .find(|l| l.contains(&format!(" {prefix}.")))
            .map(str::to_string)
    };
    wait_for("wc's interface on backend", || overlay_addr(w).is_some());
    assert!(overlay_addr(w).unwrap().contains("eth1"));
    wait_for("wc to reach the VIP", || {
        get_from(w, "wc", &vip, 80).as_deref() == Some(&web_task[..12])
    });
    let out = w
        .docker(&["network", "connect", "backend", "wc"])
        .unwrap()
        .failure();
    assert!(
        out.stderr
            .contains("endpoint with name wc already exists in network backend"),
        "{}",
        out.stderr
    );
    docker_ok(w, &["network", "disconnect", "backend", "wc"]);
    wait_for("wc's interface on backend to go", || {
        overlay_addr(w).is_none()
    });
    let out = w
        .docker(&["network", "disconnect", "backend", "wc"])
        .unwrap()
        .failure();
    assert!(
        out.stderr.contains("is not connected to network backend"),
        "{}",
        out.stderr
    );
    docker_ok(w, &["rm", "-f", "wc"]);
    // The berth CLI on the worker, and `run --rm`: the address goes with the container.
    let out = w.berth(&[
        "run", "--rm", "--network", "backend", "busybox:latest", "sh", "-c",
        "for i in $(seq 30); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 80 | grep -q . && exit 0; sleep 1; done; exit 1",
    ]);
    out.success();
    // Removal releases: the network keeps active endpoints until every container has gone.
    docker_ok(m, &["rm", "-f", "mprobe"]);
    let out = m.docker(&["network", "rm", "backend"]).unwrap().failure();
    assert!(out.stderr.contains("active endpoints"), "{}", out.stderr);
    // A worker restart: the session and the attachment survive it, and the removal after it
    // still releases.
    c.nodes[1].daemon.restart();
    let (m, w) = (c.node(0), c.node(1));
    wait_for("the worker back in its swarm", || {
        w.api().get("/info").json()["Swarm"]["LocalNodeState"] == "active"
            && network_names(w).contains(&"backend".to_string())
    });
    docker_ok(w, &["rm", "-f", "wprobe"]);
    until_rm_says(m, "backend", "is in use by service");
    let inspect: Value =
        serde_json::from_str(&docker_ok(w, &["network", "inspect", "ingress"])).unwrap();
    assert_eq!(inspect[0]["Containers"], json!({}), "{inspect}");
    // A worker that leaves with a container still attached: `node rm` releases its address.
    docker_ok(
        w,
        &[
            "run",
            "-d",
            "--name",
            "orphan",
            "--network",
            "backend",
            "busybox:latest",
            "sleep",
            "1000",
        ],
    );
    let worker_id = w.api().get("/info").json()["Swarm"]["NodeID"]
        .as_str()
        .unwrap()
        .to_string();
    until_rm_says(m, "backend", "active endpoints");
    docker_ok(w, &["swarm", "leave"]);
    wait_for("the worker down", || {
        m.api().get(&format!("/nodes/{worker_id}")).json()["Status"]["State"] == "down"
    });
    docker_ok(m, &["node", "rm", &worker_id]);
    docker_ok(m, &["service", "rm", "web"]);
    // Removable while `orphan` still runs on the node that left: `node rm` released it.
    overlay::remove_network_and_wait_clean(&c, m, "backend");
    docker_ok(m, &["network", "rm", "closed"]);
    docker_ok(w, &["rm", "-f", "orphan"]);
}

/// The running tasks of a service: (node id, container id, IPv6 address on its first network).
fn tasks_v6(m: &Daemon, service: &str) -> Vec<(String, String, String)> {
    running_tasks(m, service)
        .iter()
        .map(|t| {
            let v6 = t["NetworksAttachments"][0]["Addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .find(|a| a.contains(':'))
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            (task_node(t), task_container(t), v6)
        })
        .collect()
}

#[test]
fn ipv6_overlays_carry_tasks_across_nodes() {
    require_root!();
    let Some(c) = Cluster::swarm_of_two() else {
        eprintln!("skipped: no docker CLI");
        return;
    };
    let m = c.node(0);
    // dockerd's refusals of bad IPv6 subnets.
    let out = m
        .docker(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--ipv6",
            "--subnet",
            "fd42:77::1/64",
            "bad",
        ])
        .unwrap()
        .failure();
    assert!(
        out.stderr
            .contains("invalid subnet fd42:77::1/64: it should be fd42:77::/64"),
        "{}",
        out.stderr
    );
    let out = m
        .docker(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "fd42:77::/64",
            "bad",
        ])
        .unwrap()
        .failure();
    assert!(out.stderr.contains("IPv6 is not enabled"), "{}", out.stderr);
    docker_ok(
        m,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--ipv6",
            "--subnet",
            "fd42:77::/64",
            "--attachable",
            "dual",
        ],
    );
    let out = m
        .docker(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--ipv6",
            "--subnet",
            "fd42:77::/80",
            "clash",
        ])
        .unwrap()
        .failure();
    assert!(out.stderr.contains("overlaps"), "{}", out.stderr);
    let inspect: Value =
        serde_json::from_str(&docker_ok(m, &["network", "inspect", "dual"])).unwrap();
    assert_eq!(inspect[0]["EnableIPv6"], true, "{inspect}");
    let configs = inspect[0]["IPAM"]["Config"].as_array().unwrap();
    assert!(
        configs.iter().any(|c| c["Subnet"] == "fd42:77::/64"),
        "{inspect}"
    );
    assert!(
        configs
            .iter()
            .any(|c| c["Subnet"].as_str().is_some_and(|s| !s.contains(':'))),
        "{inspect}"
    );
    docker_ok(
        m,
        &[
            "service",
            "create",
            "--name",
            "six",
            "--network",
            "dual",
            "--replicas",
            "2",
            "--detach",
            "busybox:latest",
            "sh",
            "-c",
            HTTPD,
        ],
    );
    let mut tasks = Vec::new();
    wait_for("a task with an IPv6 address on each node", || {
        tasks = tasks_v6(m, "six");
        let nodes: std::collections::BTreeSet<&String> = tasks.iter().map(|t| &t.0).collect();
        tasks.len() == 2 && nodes.len() == 2 && tasks.iter().all(|t| t.2.starts_with("fd42:77::"))
    });
    let (node_a, ctr_a, v6_a) = tasks[0].clone();
    let (node_b, ctr_b, v6_b) = tasks[1].clone();
    let (da, db) = (c.daemon_of(&node_a), c.daemon_of(&node_b));
    // IPv6 over the VXLAN (IPv4 underlay), both ways: ping and HTTP.
    wait_for("a ping over IPv6 to the other node's task", || {
        da.docker(&["exec", &ctr_a, "ping", "-c", "1", "-W", "2", &v6_b])
            .is_some_and(|o| o.code == 0)
    });
    let mut body = String::new();
    wait_for("HTTP over IPv6 across nodes", || {
        // busybox nc: its wget crashes on IPv6 URLs.
        body = get_from(db, &ctr_b, &v6_a, 80).unwrap_or_default();
        body == ctr_a[..12]
    });
    // The embedded DNS answers AAAA for tasks.NAME.
    let mut answer = String::new();
    wait_for("tasks.six to resolve to both IPv6 addresses", || {
        answer = da
            .docker(&[
                "exec",
                &ctr_a,
                "nslookup",
                "-type=AAAA",
                "tasks.six",
                "127.0.0.11",
            ])
            .map(|o| o.stdout)
            .unwrap_or_default();
        answer.contains(&v6_a) && answer.contains(&v6_b)
    });
    // A plain container on the worker gets an IPv6 address too, reached from the manager's
    // task by address and by name (AAAA).
    let w = c.node(1);
    let plain = docker_ok(
        w,
        &[
            "run",
            "-d",
            "--name",
            "plain6",
            "--network",
            "dual",
            "busybox:latest",
            "sleep",
            "1000",
        ],
    )
    .trim()
    .to_string();
    let mut plain_v6 = String::new();
    wait_for("plain6's IPv6 address", || {
        let inspect: Value =
            serde_json::from_str(&docker_ok(w, &["network", "inspect", "dual"])).unwrap();
        plain_v6 = inspect[0]["Containers"][&plain]["IPv6Address"]
            .as_str()
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        plain_v6.starts_with("fd42:77::")
    });
    let manager_id = m.api().get("/info").json()["Swarm"]["NodeID"]
        .as_str()
        .unwrap()
        .to_string();
    let on_manager = tasks.iter().find(|t| t.0 == manager_id).unwrap().1.clone();
    wait_for("the manager's task to ping plain6 over IPv6", || {
        m.docker(&["exec", &on_manager, "ping", "-c", "1", "-W", "2", &plain_v6])
            .is_some_and(|o| o.code == 0)
    });
    let answer = docker_ok(
        m,
        &["exec", &on_manager, "nslookup", "plain6", "127.0.0.11"],
    );
    assert!(answer.contains(&plain_v6), "{answer}");
    docker_ok(w, &["rm", "-f", "plain6"]);
    docker_ok(m, &["service", "rm", "six"]);
    overlay::remove_network_and_wait_clean(&c, m, "dual");
}
