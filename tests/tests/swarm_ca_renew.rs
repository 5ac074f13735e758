//! Node certificate renewal without a restart. A binary of its own: its daemons run with the
//! test-only `BERTH_SWARM_CERT_RENEW_SECS` (renew every few seconds instead of at 50–80 % of
//! an hour), which they inherit from this process.

use std::time::Duration;

use berth_e2e::swarm_setup::{
    create_service, heartbeat, identity, is_running, list_tasks, load_busybox, node_id, poll,
};
use berth_e2e::{Cluster, Daemon, require_root};
use serde_json::json;

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(90), Duration::from_millis(200), f);
}

/// The serial of the node's certificate and whether it expires within `secs`.
fn serial_and_expiry(d: &Daemon, dir: &std::path::Path, secs: u64) -> (String, bool) {
    let cert = identity(d)["cert_pem"].as_str().unwrap().to_string();
    let path = dir.join(format!("{}.pem", d.pid().unwrap_or(0)));
    std::fs::write(&path, cert).unwrap();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new("openssl");
        c.arg("x509").arg("-in").arg(&path).arg("-noout").args(args);
        berth_e2e::run_command(c, None)
    };
    let serial = run(&["-serial"]).success().stdout.trim().to_string();
    let expires = run(&["-checkend", &secs.to_string()]).code != 0;
    (serial, expires)
}

#[test]
fn certificates_renew_without_restart() {
    require_root!();
    // SAFETY: set before any daemon starts; this binary has this one test, so no other
    // thread reads the environment meanwhile.
    unsafe { std::env::set_var("BERTH_SWARM_CERT_RENEW_SECS", "3") };
    let c = Cluster::new(2, &[]);
    let tmp = tempfile::tempdir().unwrap();
    // The shortest lifetime swarmkit allows: an hour.
    let mut spec = heartbeat(2);
    spec["CAConfig"] = json!({"NodeCertExpiry": 3_600_000_000_000u64});
    let swarm = c.init_swarm(spec);
    c.join(1, swarm["JoinTokens"]["Worker"].as_str().unwrap());
    let (m, w) = (c.node(0), c.node(1));
    let worker_pid = w.pid();
    let manager_pid = m.pid();

    for d in [m, w] {
        let (first, in_an_hour) = serial_and_expiry(d, tmp.path(), 3700);
        assert!(in_an_hour, "valid for the hour the spec asks");
        let (_, soon) = serial_and_expiry(d, tmp.path(), 3000);
        assert!(!soon);
        wait_for("a renewed certificate", || {
            serial_and_expiry(d, tmp.path(), 3700).0 != first
        });
    }
    assert_eq!(w.pid(), worker_pid, "no restart");
    assert_eq!(m.pid(), manager_pid, "no restart");
    // A new lifetime applies from the next renewal (swarmkit), on every node.
    m.berth(&["swarm", "update", "--cert-expiry", "2h"])
        .success();
    for d in [m, w] {
        wait_for("a certificate of the new lifetime", || {
            let (_, within_an_hour) = serial_and_expiry(d, tmp.path(), 3700);
            !within_an_hour
        });
        assert!(serial_and_expiry(d, tmp.path(), 7300).1, "two hours");
    }

    // Connections still work with the renewed certificates: the worker stays ready and keeps
    // heartbeating, and a task reaches it.
    let worker_id = node_id(w);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        m.api().get(&format!("/nodes/{worker_id}")).json()["Status"]["State"],
        "ready"
    );
    load_busybox(w);
    let spec = json!({
        "Name": "renewed",
        "Mode": {"Replicated": {"Replicas": 1}},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"], "StopGracePeriod": 1_000_000_000u64},
            "Placement": {"Constraints": ["node.role==worker"]}
        }
    });
    create_service(m, &spec);
    wait_for("the task runs on the worker", || {
        let filters = json!({"service": ["renewed"], "node": [worker_id]});
        list_tasks(m, &filters).iter().any(is_running)
    });
}
