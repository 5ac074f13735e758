//! Overlay networks on one daemon (a one-manager swarm): swarm-scoped networks through the
//! docker CLI, the allocator's addresses, the data plane (a netns per overlay with a bridge
//! and a VXLAN device, a veth per task), service discovery, VIP load balancing and the
//! routing mesh, and that removing everything leaves nothing behind.

use berth_e2e::containers::{daemon_with_busybox, until};
use berth_e2e::{Daemon, require_root};
use serde_json::Value;

fn docker_ok(d: &Daemon, args: &[&str]) -> Option<String> {
    Some(d.docker(args)?.success().stdout)
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
    let id = docker_ok(
        &d,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--attachable",
            "backend",
        ],
    )
    .unwrap();
    let backend = inspect_network(&d, "backend");
    assert_eq!(backend["Id"], id.trim());
    assert_eq!(backend["Attachable"], true);
    assert_eq!(backend["IPAM"]["Config"][0]["Subnet"], "10.210.0.128/25");
    assert_eq!(
        backend["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        "4097"
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
            "--opt",
            "encrypted",
            "private",
        ],
    )
    .unwrap();
    let private = inspect_network(&d, "private");
    assert_eq!(private["Internal"], true);
    assert_eq!(private["IPAM"]["Config"][0]["Gateway"], "10.211.5.254");
    assert!(private["Options"].get("encrypted").is_some(), "{private}");
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
