//! Autolock across managers (each daemon in its own network namespace): the setting made on
//! one manager locks the others too; a restarted follower is locked until unlocked with the
//! cluster's key, then rejoins with the cluster's state.

use std::time::Duration;

use berth_e2e::swarm_setup::{poll, reachable_managers};
use berth_e2e::{Cluster, Daemon, require_root};
use serde_json::{Value, json};

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(60), Duration::from_millis(100), f);
}

fn identity(d: &Daemon) -> String {
    std::fs::read_to_string(d.data_root().join("swarm/certificates/identity.json"))
        .unwrap_or_default()
}

#[test]
fn autolock_reaches_every_manager_and_a_locked_follower_rejoins() {
    require_root!();
    let mut c = Cluster::new(2, &[]);
    let swarm = c.init_swarm(Value::Null);
    c.join_all(&swarm, 2);
    wait_for("two reachable managers", || {
        reachable_managers(c.node(0)) == 2
    });
    assert!(identity(c.node(1)).contains("PRIVATE KEY"));

    // Autolock turned on through the leader; the follower seals its own key.
    let swarm: Value = c.node(0).api().get("/swarm").json();
    let mut spec = swarm["Spec"].clone();
    spec["EncryptionConfig"]["AutoLockManagers"] = json!(true);
    let path = format!("/swarm/update?version={}", swarm["Version"]["Index"]);
    let r = c
        .node(0)
        .api()
        .post(&path, Some(spec.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    let key = c.node(0).api().get("/swarm/unlockkey").json()["UnlockKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(key.starts_with("SWMKEY-1-"));
    let from_follower = c.node(1).api().get("/swarm/unlockkey").json();
    assert_eq!(from_follower["UnlockKey"], key.as_str());
    wait_for("the follower's key sealed", || {
        !identity(c.node(1)).contains("PRIVATE KEY")
    });

    c.node_mut(1).restart();
    let info = c.node(1).api().get("/info").json();
    assert_eq!(info["Swarm"]["LocalNodeState"], "locked");
    let wrong = json!({"UnlockKey": "SWMKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    let r = c
        .node(1)
        .api()
        .post("/swarm/unlock", Some(wrong.to_string().as_bytes()));
    assert_eq!(r.status, 401, "{}", r.text());
    let right = json!({ "UnlockKey": key });
    let r = c
        .node(1)
        .api()
        .post("/swarm/unlock", Some(right.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for("both managers reachable after the unlock", || {
        reachable_managers(c.node(1)) == 2 && reachable_managers(c.node(0)) == 2
    });
    // Writes need both managers: the unlocked one is back in the quorum.
    let secret = json!({"Name": "after-unlock", "Data": "c2VjcmV0"});
    let r = c
        .node(1)
        .api()
        .post("/secrets/create", Some(secret.to_string().as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(c.node(0).api().get("/secrets/after-unlock").status, 200);
}
