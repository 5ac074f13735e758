//! Overlay networks on one daemon (a one-manager swarm): swarm-scoped networks through the
//! docker CLI, the allocator's addresses, the data plane (a netns per overlay with a bridge
//! and a VXLAN device, a veth per task), service discovery, VIP load balancing and the
//! routing mesh, and that removing everything leaves nothing behind.

use berth_e2e::containers::{daemon_with_busybox, until};
use berth_e2e::overlay::{self, MeshGuard, host_get};
use berth_e2e::swarm_setup::local_task_container_ids;
use berth_e2e::{Daemon, require_root};
use serde_json::Value;

fn docker_ok(d: &Daemon, args: &[&str]) -> Option<String> {
    Some(d.docker(args)?.success().stdout)
}

/// `swarm init` on 127.0.0.1 with a VXLAN port and an address pool of the test's own (tests
/// run in parallel); false (with a note) without a docker CLI.
fn overlay_swarm(d: &Daemon, data_path_port: &str, pool: &str) -> bool {
    if d.docker(&["version"]).is_none() {
        eprintln!("skipped: no docker CLI");
        return false;
    }
    docker_ok(
        d,
        &[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--data-path-port",
            data_path_port,
            "--default-addr-pool",
            pool,
        ],
    )
    .unwrap();
    true
}

/// The container `probe` on `backend`, a client inside the overlay.
fn probe_on_backend(d: &Daemon) {
    docker_ok(
        d,
        &[
            "run",
            "-d",
            "--name",
            "probe",
            "--network",
            "backend",
            "busybox:latest",
            "sleep",
            "1000",
        ],
    )
    .unwrap();
}

fn inspect_network(d: &Daemon, name: &str) -> Value {
    let r = d.api().get(&format!("/networks/{name}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn swarm_networks_are_created_listed_inspected_and_removed() {
    require_root!();
    let d = daemon_with_busybox();
    // Outside a swarm an overlay cannot be made (dockerd's text).
    let Some(out) = d.docker(&["network", "create", "-d", "overlay", "nope"]) else {
        eprintln!("skipped: no docker CLI");
        return;
    };
    let out = out.failure();
    assert!(
        out.stderr.contains("This node is not a swarm manager"),
        "{}",
        out.stderr
    );
    docker_ok(
        &d,
        &[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--default-addr-pool",
            "10.210.0.0/16",
            "--default-addr-pool-mask-length",
            "25",
        ],
    )
    .unwrap();
    // `swarm init` made the routing mesh's network from the pool's first subnet.
    let ingress = inspect_network(&d, "ingress");
    assert_eq!(ingress["Scope"], "swarm");
    assert_eq!(ingress["Driver"], "overlay");
    assert_eq!(ingress["Ingress"], true);
    assert_eq!(ingress["IPAM"]["Config"][0]["Subnet"], "10.210.0.0/25");
    let id = overlay::create_attachable(&d, "backend");
    let backend = inspect_network(&d, "backend");
    assert_eq!(backend["Id"], id.trim());
    assert_eq!(backend["Attachable"], true);
    assert_eq!(backend["IPAM"]["Config"][0]["Subnet"], "10.210.0.128/25");
    assert_eq!(
        backend["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        "4097"
    );
    // IPsec needs ESP in the kernel, which this one lacks: refused, never left in clear.
    let out = d
        .docker(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--opt",
            "encrypted",
            "secret",
        ])
        .unwrap()
        .failure();
    assert!(
        out.stderr
            .contains("encrypted overlay networks are not supported"),
        "{}",
        out.stderr
    );
    docker_ok(
        &d,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--internal",
            "--subnet",
            "10.211.5.0/24",
            "--gateway",
            "10.211.5.254",
            "private",
        ],
    )
    .unwrap();
    let private = inspect_network(&d, "private");
    assert_eq!(private["Internal"], true);
    assert_eq!(private["IPAM"]["Config"][0]["Gateway"], "10.211.5.254");
    let out = d
        .docker(&["network", "create", "-d", "overlay", "backend"])
        .unwrap()
        .failure();
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    let out = d
        .docker(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.211.5.0/25",
            "clash",
        ])
        .unwrap()
        .failure();
    assert!(out.stderr.contains("overlaps"), "{}", out.stderr);
    let ls = docker_ok(&d, &["network", "ls", "--filter", "scope=swarm"]).unwrap();
    for name in ["ingress", "backend", "private"] {
        assert!(ls.contains(name), "{ls}");
    }
    assert!(!ls.contains("bridge "), "{ls}");
    let ls = docker_ok(&d, &["network", "ls", "--format", "{{.Name}} {{.Scope}}"]).unwrap();
    assert!(ls.contains("backend swarm"), "{ls}");
    assert!(ls.contains("bridge local"), "{ls}");
    let out = d
        .docker(&[
            "service",
            "create",
            "--network",
            "ingress",
            "busybox:latest",
            "true",
        ])
        .unwrap()
        .failure();
    assert!(
        out.stderr
            .contains("explicitly attached to the ingress network"),
        "{}",
        out.stderr
    );
    // A network a service uses cannot go (swarmkit's text).
    docker_ok(
        &d,
        &[
            "service",
            "create",
            "--name",
            "api",
            "--network",
            "backend",
            "--detach",
            "busybox:latest",
            "sleep",
            "1000",
        ],
    )
    .unwrap();
    let out = d.docker(&["network", "rm", "backend"]).unwrap().failure();
    assert!(
        out.stderr.contains("is in use by service"),
        "{}",
        out.stderr
    );
    docker_ok(&d, &["service", "rm", "api"]).unwrap();
    docker_ok(&d, &["network", "rm", "backend", "private"]).unwrap();
    let out = d
        .docker(&["network", "inspect", "backend"])
        .unwrap()
        .failure();
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    until("the service's containers to go", || {
        d.api()
            .get("/containers/json?all=1")
            .json()
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    docker_ok(&d, &["swarm", "leave", "--force"]).unwrap();
}

/// A service whose tasks answer HTTP with their hostname (busybox httpd).
fn web_args<'a>(name: &'a str, network: &'a str, replicas: &'a str) -> Vec<&'a str> {
    vec![
        "service",
        "create",
        "--name",
        name,
        "--network",
        network,
        "--replicas",
        replicas,
        "--detach",
        "busybox:latest",
        "sh",
        "-c",
        "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www",
    ]
}

fn exec(d: &Daemon, container: &str, cmd: &str) -> (bool, String) {
    let out = d
        .docker(&["exec", container, "sh", "-c", cmd])
        .expect("docker CLI");
    (out.code == 0, format!("{}{}", out.stdout, out.stderr))
}

/// An HTTP GET from inside a container (busybox `nc`): whether a body came, and the body's
/// last line (the answering task's hostname).
fn http_get(d: &Daemon, container: &str, host: &str) -> (bool, String) {
    let (_, out) = exec(
        d,
        container,
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80 | tail -1"),
    );
    let body = out.trim().to_string();
    (!body.is_empty() && !body.contains(' '), body)
}

#[test]
fn services_on_an_overlay_resolve_and_balance_over_their_tasks() {
    require_root!();
    let mut d = daemon_with_busybox();
    if !overlay_swarm(&d, "4791", "10.212.0.0/16") {
        return;
    }
    overlay::create_attachable(&d, "backend");
    docker_ok(
        &d,
        &["network", "create", "-d", "overlay", "--internal", "other"],
    )
    .unwrap();
    docker_ok(&d, &web_args("web", "backend", "3")).unwrap();
    docker_ok(&d, &web_args("lonely", "other", "1")).unwrap();
    until("3 web tasks and 1 lonely task", || {
        local_task_container_ids(&d, "web").len() == 3
            && local_task_container_ids(&d, "lonely").len() == 1
    });
    let tasks = local_task_container_ids(&d, "web");
    let client = &tasks[0];
    // The service's name is its VIP; tasks.NAME is every task.
    let service = d.api().get("/services/web").json();
    let vip = service["Endpoint"]["VirtualIPs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| !v["Addr"].is_null())
        .unwrap()["Addr"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut answer = String::new();
    until("web to resolve to its VIP", || {
        answer = exec(&d, client, "nslookup web 127.0.0.11").1;
        answer.contains(&vip)
    });
    until("tasks.web to resolve to 3 addresses", || {
        answer = exec(&d, client, "nslookup tasks.web 127.0.0.11").1;
        answer.matches("Address").count() >= 4
    });
    // Connections to the VIP are spread over the tasks; each answers with its hostname.
    let mut seen = std::collections::BTreeSet::new();
    until("the VIP to reach every task", || {
        let (ok, body) = http_get(&d, client, "web");
        if ok {
            seen.insert(body.trim().to_string());
        } else {
            eprintln!("no answer from the VIP: {body}");
        }
        seen.len() == 3
    });
    // A restarted daemon finds its overlays as they were (the tasks kept running).
    d.restart();
    until("the VIP to answer after a daemon restart", || {
        http_get(&d, client, "web").0
    });
    assert_eq!(local_task_container_ids(&d, "web").len(), 3);
    // A task that dies leaves the rotation: every answer then comes from a running task.
    let victim = tasks[1].clone();
    d.docker(&["kill", &victim]).unwrap();
    until("the VIP to skip the dead task", || {
        let running = local_task_container_ids(&d, "web");
        (0..6).all(|_| {
            let (ok, body) = http_get(&d, client, "web");
            ok && !victim.starts_with(&body) && running.iter().any(|c| c.starts_with(&body))
        })
    });
    // Overlays are isolated: web's tasks cannot reach lonely's.
    let lonely = d
        .api()
        .get(&format!(
            "/containers/{}/json",
            local_task_container_ids(&d, "lonely")[0]
        ))
        .json();
    let _ = lonely;
    let lonely_task = d
        .api()
        .get("/tasks?filters=%7B%22service%22%3A%5B%22lonely%22%5D%7D")
        .json();
    let lonely_ip = lonely_task[0]["NetworksAttachments"][0]["Addresses"][0]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (ok, out) = http_get(&d, client, &lonely_ip);
    assert!(!ok, "reached another overlay: {out}");
    let (ok, _) = exec(&d, client, "nslookup lonely 127.0.0.11");
    assert!(!ok, "another overlay's service resolved");
    // A task on internal overlays only has no way out (no default route).
    let lonely_ctr = local_task_container_ids(&d, "lonely")[0].clone();
    until("the internal task to lose its default route", || {
        !exec(&d, &lonely_ctr, "ip route").1.contains("default")
    });
    // A plain container on the attachable overlay gets an address from the allocator and
    // reaches the service by name.
    let out = d
        .docker(&[
            "run",
            "-d",
            "--name",
            "probe",
            "--network",
            "other",
            "busybox:latest",
            "sleep",
            "1000",
        ])
        .unwrap()
        .failure();
    assert!(
        out.stderr.contains("not manually attachable"),
        "{}",
        out.stderr
    );
    probe_on_backend(&d);
    let mut body = String::new();
    until("the attached container to reach the service", || {
        let (ok, b) = http_get(&d, "probe", "web");
        body = b;
        ok
    });
    let out = d.docker(&["network", "rm", "backend"]).unwrap().failure();
    assert!(out.stderr.contains("active endpoints"), "{}", out.stderr);
    docker_ok(&d, &["rm", "-f", "probe"]).unwrap();
    // Its address goes with it: only the service holds the network then.
    until("the attachment to be released", || {
        let out = d.docker(&["network", "rm", "backend"]).unwrap();
        out.stderr.contains("is in use by service")
    });
    // Everything goes with the services and networks.
    docker_ok(&d, &["service", "rm", "web", "lonely"]).unwrap();
    docker_ok(&d, &["network", "rm", "backend", "other"]).unwrap();
    let overlay_dir = d.exec_root().join("overlay");
    until("the overlay netns to go", || {
        std::fs::read_dir(&overlay_dir).map_or(true, |mut e| e.next().is_none())
    });
    docker_ok(&d, &["swarm", "leave", "--force"]).unwrap();
}

/// The routing mesh's host tables (other daemons' tests may change the rest meanwhile).
fn host_nft_tables() -> String {
    overlay::host_nft_tables("berth_mesh_")
}

#[test]
fn a_published_port_answers_through_the_routing_mesh_and_leaves_nothing() {
    require_root!();
    // Declared before the daemon: dropped after it.
    let _guard;
    let d = daemon_with_busybox();
    _guard = MeshGuard::of(&d);
    if !overlay_swarm(&d, "4792", "10.213.0.0/16") {
        return;
    }
    let tables_before = host_nft_tables();
    let mut args = web_args("web", "ingress", "2");
    // Published through the mesh (mode=ingress, the default); no other network needed.
    args.splice(2..2, ["--publish", "published=38431,target=80"]);
    args.retain(|a| *a != "--network" && *a != "ingress");
    docker_ok(&d, &args).unwrap();
    until("2 web tasks", || {
        local_task_container_ids(&d, "web").len() == 2
    });
    let service = d.api().get("/services/web").json();
    assert_eq!(service["Endpoint"]["Ports"][0]["PublishedPort"], 38431);
    assert_eq!(service["Endpoint"]["Ports"][0]["PublishMode"], "ingress");
    let mut seen = std::collections::BTreeSet::new();
    until("the published port to reach both tasks", || {
        if let Some(host) = host_get(38431) {
            seen.insert(host);
        }
        seen.len() == 2
    });
    // A published port is one service's (swarmkit's text).
    let out = d
        .docker(&[
            "service",
            "create",
            "--publish",
            "38431:80",
            "busybox:latest",
            "true",
        ])
        .unwrap()
        .failure();
    assert!(
        out.stderr.contains("is already in use by service 'web'"),
        "{}",
        out.stderr
    );
    // A port chosen by the allocator (30000-32767) answers too.
    docker_ok(
        &d,
        &[
            "service",
            "update",
            "--detach",
            "--publish-add",
            "target=80",
            "web",
        ],
    )
    .unwrap();
    let mut auto = 0;
    until("an automatic published port", || {
        let s = d.api().get("/services/web").json();
        auto = s["Endpoint"]["Ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["PublishedPort"].as_u64())
            .find(|p| (30000..=32767).contains(p))
            .unwrap_or(0);
        auto > 0
    });
    until("the automatic port to answer", || {
        host_get(auto as u16).is_some()
    });
    assert!(
        host_nft_tables().contains(&overlay::mesh_table(&d)),
        "the mesh's table is named after the exec root"
    );
    docker_ok(&d, &["service", "rm", "web"]).unwrap();
    until("the mesh to go", || {
        host_get(38431).is_none()
            && host_nft_tables() == tables_before
            && std::fs::read_dir(d.exec_root().join("overlay"))
                .map_or(true, |mut e| e.next().is_none())
    });
    docker_ok(&d, &["swarm", "leave", "--force"]).unwrap();
}

/// A task whose container turns unhealthy leaves the VIP's and the routing mesh's rotation:
/// every answer then comes from the healthy task. (Its restart condition is `none`, so no
/// replacement joins the rotation meanwhile.)
#[test]
fn an_unhealthy_task_leaves_the_vip_and_the_mesh() {
    require_root!();
    let _guard;
    let d = daemon_with_busybox();
    _guard = MeshGuard::of(&d);
    if !overlay_swarm(&d, "4793", "10.214.0.0/16") {
        return;
    }
    overlay::create_attachable(&d, "backend");
    let mut args = web_args("web", "backend", "2");
    let cmd = args.pop().unwrap();
    let cmd = format!("touch /healthy && {cmd}");
    args.splice(
        2..2,
        [
            "--publish",
            "published=38433,target=80",
            "--health-cmd",
            "test -f /healthy",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "--restart-condition",
            "none",
            // httpd (pid 1) ignores SIGTERM: the stop waits out this grace period, and the
            // task must leave the rotation before it ends.
            "--stop-grace-period",
            "20s",
        ],
    );
    args.push(&cmd);
    docker_ok(&d, &args).unwrap();
    until("2 web tasks running", || {
        local_task_container_ids(&d, "web").len() == 2
    });
    // Docker's interface order: ingress (the pool's first block) eth0, the overlay eth1,
    // docker_gwbridge last.
    let first = local_task_container_ids(&d, "web")[0].clone();
    let mut addrs = String::new();
    until("ingress eth0, backend eth1, docker_gwbridge eth2", || {
        addrs = exec(&d, &first, "ip -o -4 addr show").1;
        let on = |dev: &str, net: &str| {
            addrs
                .lines()
                .any(|l| l.contains(&format!(" {dev} ")) && l.contains(net))
        };
        on("eth0", "inet 10.214.0.") && on("eth1", "inet 10.214.1.") && on("eth2", "inet ")
    });
    assert!(!addrs.contains("eth2    inet 10.214."), "{addrs}");
    probe_on_backend(&d);
    let mut seen = std::collections::BTreeSet::new();
    until("the VIP and the published port to reach both tasks", || {
        if let (true, body) = http_get(&d, "probe", "web") {
            seen.insert(body);
        }
        if let Some(host) = host_get(38433) {
            seen.insert(host);
        }
        seen.len() == 2
    });
    let tasks = local_task_container_ids(&d, "web");
    let (sick, well) = (&tasks[0], &tasks[1]);
    let from = |body: &str, id: &str| !body.is_empty() && id.starts_with(body);
    exec(&d, sick, "rm /healthy");
    let started = std::time::Instant::now();
    until("every answer to come from the healthy task", || {
        (0..4).all(|_| {
            let (ok, body) = http_get(&d, "probe", "web");
            let host = host_get(38433).unwrap_or_default();
            ok && from(&body, well) && from(&host, well)
        })
    });
    eprintln!(
        "out of rotation {:?} after the check's file went (1 s interval, 1 retry)",
        started.elapsed()
    );
    let sick_state = d.api().get(&format!("/containers/{sick}/json")).json();
    // For the record: when the failing check ended, and when the task was failed.
    let failed_check = sick_state["State"]["Health"]["Log"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["ExitCode"] != 0)
        .and_then(|l| l["End"].as_str().map(String::from));
    let tasks = d.api().get("/tasks").json();
    let failed_at = tasks
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["Status"]["State"] == "failed")
        .and_then(|t| t["Status"]["Timestamp"].as_str().map(String::from));
    eprintln!("check failed at {failed_check:?}, task failed at {failed_at:?}");
    assert_eq!(
        sick_state["State"]["Running"], true,
        "out of rotation only once stopped"
    );
    // dockerd's words once the container is stopped.
    until("the unhealthy task to be stopped", || {
        let tasks = d.api().get("/tasks").json();
        tasks.as_array().unwrap().iter().any(|t| {
            let err = t["Status"]["Err"].as_str().unwrap_or_default();
            err == "task: non-zero exit (137): dockerexec: unhealthy container"
                || err == "task: non-zero exit (143): dockerexec: unhealthy container"
        })
    });
    docker_ok(&d, &["rm", "-f", "probe"]).unwrap();
    docker_ok(&d, &["service", "rm", "web"]).unwrap();
    until("the overlays and the mesh to go", || {
        overlay::leftovers(&d).is_empty()
    });
    docker_ok(&d, &["swarm", "leave", "--force"]).unwrap();
}
