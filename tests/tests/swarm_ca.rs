//! Swarm root CA rotation (`swarm ca --rotate`) and `swarm ca` itself, across daemons in
//! their own network namespaces (`berth_e2e::cluster`). Certificate renewal is in
//! `swarm_ca_renew.rs` (it needs a daemon environment knob of its own).

use std::path::Path;
use std::time::Duration;

use berth_e2e::swarm_setup::{
    create_service, heartbeat, identity, is_running, list_tasks, node_id, poll, reachable_managers,
};
use berth_e2e::{Cluster, Daemon, require_root};
use serde_json::{Value, json};

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(90), Duration::from_millis(200), f);
}

/// Two busybox sleepers, at most one per node.
fn one_per_node(name: &str) -> Value {
    json!({
        "Name": name,
        "Mode": {"Replicated": {"Replicas": 2}},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"], "StopGracePeriod": 1_000_000_000u64},
            "Placement": {"MaxReplicas": 1}
        }
    })
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn openssl(args: &[&str]) -> berth_e2e::daemon::Output {
    berth_e2e::daemon::run(
        {
            let mut c = std::process::Command::new("openssl");
            c.args(args);
            c
        },
        None,
    )
}

/// Whether `cert` (leaf first, then its chain) verifies against `root` alone.
fn verifies(dir: &Path, root: &str, cert: &str) -> bool {
    let root = write(dir, "root.pem", root);
    let certs: Vec<&str> = cert
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    let leaf = write(dir, "leaf.pem", certs[0]);
    let chain = write(dir, "chain.pem", &certs[1..].concat());
    let mut args = vec!["verify", "-CAfile", &root];
    if certs.len() > 1 {
        args.extend(["-untrusted", &chain]);
    }
    args.push(&leaf);
    openssl(&args).code == 0
}

/// A TLS handshake to `addr` from inside node `i`'s namespace with the given client
/// certificate; answers openssl's output (an alert from the server shows in it).
fn handshake(c: &Cluster, i: usize, addr: &str, dir: &Path, cert: &str, key: &str) -> String {
    let cert = write(dir, "client.pem", cert);
    let key = write(dir, "client.key", key);
    let out = c.node(i).exec(&[
        "sh",
        "-c",
        &format!(
            "sleep 1 | openssl s_client -connect {addr} -servername swarm-manager -cert {cert} -key {key} -tls1_3 2>&1"
        ),
    ]);
    out.stdout + &out.stderr
}

fn running_on(d: &Daemon, service: &str, node: &str) -> usize {
    let filters = json!({"service": [service], "node": [node], "desired-state": ["running"]});
    list_tasks(d, &filters)
        .iter()
        .filter(|t| is_running(t))
        .count()
}

/// `swarm ca --rotate`: every node gets a certificate from a new root, the old root stops
/// being trusted, join tokens change, tasks keep running and new ones still reach the worker.
#[test]
fn ca_rotation_moves_every_node_to_a_new_root() {
    require_root!();
    let c = Cluster::new(2, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let swarm = c.init_swarm(heartbeat(2));
    let old_root = swarm["TLSInfo"]["TrustRoot"].as_str().unwrap().to_string();
    let old_token = swarm["JoinTokens"]["Worker"].as_str().unwrap().to_string();
    c.join(1, &old_token);
    let (m, w) = (c.node(0), c.node(1));
    c.load_busybox();
    // dockerd's `Swarm` header: the node state, with the role when active.
    assert_eq!(w.api().get("/_ping").header("Swarm"), Some("active/worker"));
    assert_eq!(
        m.api().get("/_ping").header("Swarm"),
        Some("active/manager")
    );
    let worker_id = node_id(w);
    create_service(m, one_per_node("keep"));
    wait_for("a task on the worker", || {
        running_on(m, "keep", &worker_id) == 1
    });
    // Before: both nodes show the root's key as their issuer, as the docker CLI compares.
    wait_for("nodes report their TLSInfo", || {
        let nodes = m.api().get("/nodes").json();
        nodes.as_array().unwrap().iter().all(|n| {
            n["Description"]["TLSInfo"]["CertIssuerPublicKey"]
                == swarm["TLSInfo"]["CertIssuerPublicKey"]
        })
    });
    let old_worker = identity(w);
    let old_cert = old_worker["cert_pem"].as_str().unwrap().to_string();
    let old_key = old_worker["key_pem"].as_str().unwrap().to_string();
    assert!(verifies(tmp.path(), &old_root, &old_cert));

    // `swarm ca` shows the root; docker's output is the same.
    let shown = m.berth(&["swarm", "ca"]).success().stdout;
    assert_eq!(shown.trim(), old_root.trim());
    if let Some(out) = m.docker(&["swarm", "ca"]) {
        assert_eq!(out.success().stdout, shown);
    }

    // Rotate (the docker CLI when installed, else berth's); it waits for convergence, then
    // prints the new root after its progress lines.
    let out = match m.docker(&["swarm", "ca", "--rotate"]) {
        Some(out) => out.success().stdout,
        None => m.berth(&["swarm", "ca", "--rotate"]).success().stdout,
    };
    let swarm = m.api().get("/swarm").json();
    let new_root = swarm["TLSInfo"]["TrustRoot"].as_str().unwrap().to_string();
    assert_ne!(new_root, old_root);
    assert!(out.trim_end().ends_with(new_root.trim()), "{out}");
    assert_eq!(swarm["RootRotationInProgress"], false);
    assert_eq!(swarm["Spec"]["CAConfig"]["ForceRotate"], 1);
    let new_token = swarm["JoinTokens"]["Worker"].as_str().unwrap();
    assert_ne!(
        new_token.split('-').nth(2),
        old_token.split('-').nth(2),
        "the token names the new root's digest"
    );
    for n in &c.nodes {
        wait_for("the node trusts the new root", || {
            identity(n)["ca_pem"].as_str() == Some(new_root.as_str())
        });
        let id = identity(n);
        let cert = id["cert_pem"].as_str().unwrap();
        assert!(
            verifies(tmp.path(), &new_root, cert),
            "issued by the new root"
        );
        let leaf = cert
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap();
        assert!(
            !verifies(tmp.path(), &old_root, leaf),
            "not by the old root"
        );
    }
    for n in m.api().get("/nodes").json().as_array().unwrap() {
        assert_eq!(n["Description"]["TLSInfo"]["TrustRoot"], new_root.as_str());
    }

    // The old root is no longer trusted: the worker's old certificate is refused by the
    // manager, its new one accepted.
    let new_worker = identity(w);
    let refused = handshake(&c, 1, &m.addr(2377), tmp.path(), &old_cert, &old_key);
    let accepted = handshake(
        &c,
        1,
        &m.addr(2377),
        tmp.path(),
        new_worker["cert_pem"].as_str().unwrap(),
        new_worker["key_pem"].as_str().unwrap(),
    );
    assert!(
        refused.contains("alert"),
        "old certificate refused:\n{refused}"
    );
    assert!(
        !accepted.contains("alert"),
        "new certificate accepted:\n{accepted}"
    );

    // Tasks kept running; a new one still reaches the worker.
    assert_eq!(running_on(m, "keep", &worker_id), 1);
    create_service(m, one_per_node("after"));
    wait_for("a new task on the worker", || {
        running_on(m, "after", &worker_id) == 1
    });
}

/// `--ca-cert`/`--ca-key`: a pair that does not match gets swarmkit's error; a matching pair
/// becomes the root.
#[test]
fn ca_rotation_to_a_given_pair() {
    require_root!();
    let c = Cluster::new(1, &[]);
    let tmp = tempfile::tempdir().unwrap();
    c.init_swarm(heartbeat(2));
    let m = c.node(0);
    let dir = tmp.path().to_string_lossy().into_owned();
    for name in ["a", "b"] {
        let out = openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{dir}/{name}.key"),
            "-out",
            &format!("{dir}/{name}.pem"),
            "-days",
            "3650",
            "-subj",
            &format!("/CN=test-ca-{name}"),
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let (a_pem, b_key) = (format!("{dir}/a.pem"), format!("{dir}/b.key"));
    let out = m
        .berth(&[
            "swarm",
            "ca",
            "--rotate",
            "--ca-cert",
            &a_pem,
            "--ca-key",
            &b_key,
        ])
        .failure();
    let want = "Error response from daemon: rpc error: code = InvalidArgument desc = certificate key mismatch";
    assert!(out.stderr.contains(want), "{}", out.stderr);
    if let Some(out) = m.docker(&[
        "swarm",
        "ca",
        "--rotate",
        "--ca-cert",
        &a_pem,
        "--ca-key",
        &b_key,
    ]) {
        let out = out.failure();
        assert!(out.stderr.contains(want), "{}", out.stderr);
    }
    let out = m.berth(&["swarm", "ca", "--ca-cert", &a_pem]).failure();
    assert!(
        out.stderr
            .contains("`--ca-cert` flag requires the `--rotate` flag to update the CA"),
        "{}",
        out.stderr
    );
    let a_key = format!("{dir}/a.key");
    let out = m
        .berth(&[
            "swarm",
            "ca",
            "--rotate",
            "--ca-cert",
            &a_pem,
            "--ca-key",
            &a_key,
        ])
        .success();
    let given = std::fs::read_to_string(&a_pem).unwrap();
    assert_eq!(out.stdout.lines().last(), given.trim().lines().last());
    let swarm = m.api().get("/swarm").json();
    assert_eq!(
        swarm["TLSInfo"]["TrustRoot"].as_str().unwrap().trim(),
        given.trim()
    );
    assert!(
        swarm["Spec"]["CAConfig"].get("SigningCAKey").is_none(),
        "the key is never shown"
    );
    let id = identity(m);
    assert!(verifies(
        tmp.path(),
        &given,
        id["cert_pem"].as_str().unwrap()
    ));
    // The manager's node certificate now names the given root as its issuer.
    let leaf = write(tmp.path(), "m.pem", id["cert_pem"].as_str().unwrap());
    let issuer = openssl(&["x509", "-in", &leaf, "-noout", "-issuer"]).stdout;
    assert!(issuer.contains("test-ca-a"), "{issuer}");
}

/// Under autolock a rotated manager's new key is sealed as the old one was: the restarted
/// manager is locked (`/_ping` says so, as dockerd's `Swarm: locked`) and the unlock key opens
/// it.
#[test]
fn autolocked_manager_rotates_and_stays_sealed() {
    require_root!();
    let mut c = Cluster::new(1, &[]);
    let m = c.node(0);
    let body =
        json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": m.ip, "AutoLockManagers": true});
    let r = m
        .api()
        .post("/swarm/init", Some(body.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    let key = m.api().get("/swarm/unlockkey").json()["UnlockKey"]
        .as_str()
        .unwrap()
        .to_string();
    let before = identity(m)["cert_pem"].as_str().unwrap().to_string();
    let out = m.berth(&["swarm", "ca", "--rotate"]).success().stdout;
    let root = m.api().get("/swarm").json()["TLSInfo"]["TrustRoot"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(out.trim_end().ends_with(root.trim()), "{out}");
    assert!(
        out.contains("rotated TLS certificates"),
        "progress drawn: {out}"
    );
    let after =
        std::fs::read_to_string(m.data_root().join("swarm/certificates/identity.json")).unwrap();
    assert!(!after.contains(&before), "a new certificate");
    assert!(
        !after.contains("PRIVATE KEY"),
        "the new key is sealed: {after}"
    );

    c.node_mut(0).restart();
    let m = c.node(0);
    assert_eq!(m.api().get("/_ping").header("Swarm"), Some("locked"));
    let body = json!({"UnlockKey": key}).to_string();
    let r = m.api().post("/swarm/unlock", Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        m.api().get("/_ping").header("Swarm"),
        Some("active/manager")
    );
    assert_eq!(
        m.api().get("/swarm").json()["TLSInfo"]["TrustRoot"],
        root.as_str()
    );
}

/// Two managers: Raft keeps committing through the rotation and after it, when both trust
/// only the new root (their kept connections are replaced by handshakes with the new
/// certificates).
#[test]
fn managers_keep_raft_through_a_rotation() {
    require_root!();
    let c = Cluster::new(2, &[]);
    let swarm = c.init_swarm(heartbeat(2));
    let token = swarm["JoinTokens"]["Manager"].as_str().unwrap().to_string();
    c.join(1, &token);
    let (m0, m1) = (c.node(0), c.node(1));
    wait_for("two reachable managers", || reachable_managers(m0) == 2);
    let old_root = swarm["TLSInfo"]["TrustRoot"].as_str().unwrap().to_string();
    // Through the second manager (a follower forwards the update to the leader).
    m1.berth(&["swarm", "ca", "--rotate", "-q"]).success();
    let new_root = m1.api().get("/swarm").json()["TLSInfo"]["TrustRoot"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_root, old_root);
    for n in &c.nodes {
        wait_for("the manager trusts the new root", || {
            identity(n)["ca_pem"].as_str() == Some(new_root.as_str())
        });
    }
    // Writes still commit (both managers are needed for a quorum of two) from either side.
    for (i, n) in c.nodes.iter().enumerate() {
        let body = json!({"Name": format!("after-{i}"), "Data": "aGVsbG8="}).to_string();
        let r = n.api().post("/secrets/create", Some(body.as_bytes()));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    wait_for("both managers see both writes", || {
        c.nodes
            .iter()
            .all(|n| n.api().get("/secrets").json().as_array().map(|a| a.len()) == Some(2))
    });
}
