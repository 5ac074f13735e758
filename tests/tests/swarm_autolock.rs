//! Swarm autolock: the manager's key sealed at rest with the unlock key, a restarted manager
//! locked until `swarm unlock`, wrong keys refused with dockerd's texts, key rotation and
//! turning autolock off; through the API, the docker CLI and the berth CLI.

use berth_e2e::containers::{daemon_with_busybox, until};
use berth_e2e::{Daemon, require_root};
use serde_json::{Value, json};

const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";

fn identity_file(d: &Daemon) -> String {
    std::fs::read_to_string(d.data_root().join("swarm/certificates/identity.json"))
        .expect("identity.json")
}

fn unlock_key(d: &Daemon) -> String {
    let r = d.api().get("/swarm/unlockkey");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["UnlockKey"].as_str().unwrap().to_string()
}

fn unlock(d: &Daemon, key: &str) -> berth_e2e::api::ApiResponse {
    let body = json!({ "UnlockKey": key }).to_string();
    d.api().post("/swarm/unlock", Some(body.as_bytes()))
}

fn node_state(d: &Daemon) -> String {
    d.api().get("/info").json()["Swarm"]["LocalNodeState"]
        .as_str()
        .unwrap()
        .to_string()
}

fn update_swarm(d: &Daemon, query: &str, change: impl FnOnce(&mut Value)) {
    let swarm = d.api().get("/swarm").json();
    let mut spec = swarm["Spec"].clone();
    change(&mut spec);
    let path = format!("/swarm/update?version={}{query}", swarm["Version"]["Index"]);
    let r = d.api().post(&path, Some(spec.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
}

fn running(d: &Daemon, name: &str) -> bool {
    let filters = json!({"service": [name], "desired-state": ["running"]}).to_string();
    let r = d.api().get(&format!(
        "/tasks?filters={}",
        form_urlencoded::byte_serialize(filters.as_bytes()).collect::<String>()
    ));
    r.status == 200
        && r.json()
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["Status"]["State"] == "running"))
}

#[test]
fn autolocked_manager_restarts_locked_until_unlocked() {
    require_root!();
    let mut d = daemon_with_busybox();
    let r = d.api().post(
        "/swarm/init",
        Some(br#"{"ListenAddr": "127.0.0.1:23781", "AutoLockManagers": true}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let node_id = r.json().as_str().unwrap().to_string();
    let key = unlock_key(&d);
    assert!(key.starts_with("SWMKEY-1-"), "{key}");
    let swarm = d.api().get("/swarm").json();
    assert_eq!(swarm["Spec"]["EncryptionConfig"]["AutoLockManagers"], true);
    assert!(
        !swarm.to_string().contains(&key),
        "the key is not in GET /swarm"
    );
    // The node's TLS key is not on disk in the clear.
    let identity = identity_file(&d);
    assert!(!identity.contains("PRIVATE KEY"), "{identity}");
    let spec = json!({
        "Name": "locked-web",
        "Mode": {"Replicated": {"Replicas": 1}},
        "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"], "StopGracePeriod": 1_000_000_000u64}},
    });
    let r = d
        .api()
        .post("/services/create", Some(spec.to_string().as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    until("the task runs", || running(&d, "locked-web"));
    // The Raft data (log, objects, the CA key in the cluster object) is encrypted at rest.
    let raft = std::fs::read(d.data_root().join("swarm/raft.redb")).unwrap();
    let contains = |needle: &[u8]| raft.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"locked-web") && !contains(b"PRIVATE KEY") && !contains(b"busybox"));

    d.restart();
    assert_eq!(node_state(&d), "locked");
    assert_eq!(
        d.api().get("/info").json()["Swarm"]["NodeID"],
        node_id.as_str()
    );
    let r = d.api().get("/services");
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (503, json!(LOCKED))
    );
    let r = d.api().get("/swarm/unlockkey");
    assert_eq!(r.status, 503, "{}", r.text());
    let r = d.api().post("/swarm/init", Some(b"{}"));
    assert_eq!(r.status, 503, "{}", r.text());
    let join = json!({"RemoteAddrs": ["127.0.0.1:1"], "JoinToken": "SWMTKN-1-x"}).to_string();
    let r = d.api().post("/swarm/join", Some(join.as_bytes()));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("already part of a swarm"), "{}", r.text());
    let r = unlock(&d, "not-a-key");
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (400, json!("invalid key string"))
    );
    let wrong = "SWMKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = unlock(&d, wrong);
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (
            401,
            json!("swarm could not be unlocked: invalid key provided")
        )
    );
    let r = d.api().post("/swarm/leave", None);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("Swarm is encrypted and locked"),
        "{}",
        r.text()
    );
    let r = unlock(&d, &key);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(node_state(&d), "active");
    let r = d.api().get("/services/locked-web");
    assert_eq!(r.status, 200, "{}", r.text());
    until("the task runs after unlock", || running(&d, "locked-web"));
    let r = unlock(&d, &key);
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (400, json!("swarm is not locked"))
    );

    // Rotation: the old key no longer opens the manager.
    update_swarm(&d, "&rotateManagerUnlockKey=true", |_| {});
    let rotated = unlock_key(&d);
    assert!(
        rotated.starts_with("SWMKEY-1-") && rotated != key,
        "{rotated}"
    );
    d.restart();
    assert_eq!(node_state(&d), "locked");
    assert_eq!(unlock(&d, &key).status, 401);
    let r = unlock(&d, &rotated);
    assert_eq!(r.status, 200, "{}", r.text());

    // Autolock off: no key, the manager's key in the clear again, restarts active.
    update_swarm(&d, "", |spec| {
        spec["EncryptionConfig"]["AutoLockManagers"] = json!(false)
    });
    assert_eq!(unlock_key(&d), "");
    assert!(identity_file(&d).contains("PRIVATE KEY"));
    d.restart();
    assert_eq!(node_state(&d), "active");
    until("the task runs after a plain restart", || {
        running(&d, "locked-web")
    });

    // On again, then a locked node leaves with --force.
    update_swarm(&d, "", |spec| {
        spec["EncryptionConfig"]["AutoLockManagers"] = json!(true)
    });
    assert!(unlock_key(&d).starts_with("SWMKEY-1-"));
    d.restart();
    assert_eq!(node_state(&d), "locked");
    let r = d.api().post("/swarm/leave?force=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(node_state(&d), "inactive");
    until("the task's container is gone", || {
        d.api().get("/containers/json?all=1").json() == json!([])
    });
}

#[test]
fn docker_cli_locks_and_unlocks_a_swarm() {
    require_root!();
    let mut d = Daemon::start();
    let Some(out) = d.docker(&[
        "swarm",
        "init",
        "--autolock",
        "--advertise-addr",
        "127.0.0.1",
        "--listen-addr",
        "127.0.0.1:23782",
    ]) else {
        eprintln!("skipped: no docker CLI");
        return;
    };
    let out = out.success();
    assert!(out.stdout.contains("SWMKEY-1-"), "{}", out.stdout);
    let key = d
        .docker(&["swarm", "unlock-key", "-q"])
        .unwrap()
        .success()
        .stdout
        .trim()
        .to_string();
    assert!(out.stdout.contains(&key), "{}", out.stdout);
    let rotated = d
        .docker(&["swarm", "unlock-key", "--rotate", "-q"])
        .unwrap()
        .success()
        .stdout
        .trim()
        .to_string();
    assert!(
        rotated.starts_with("SWMKEY-1-") && rotated != key,
        "{rotated}"
    );
    d.restart();
    let out = d
        .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), "locked");
    let out = d.docker(&["service", "ls"]).unwrap().failure();
    assert!(out.stderr.contains(LOCKED), "{}", out.stderr);
    let out = d
        .docker_with_stdin(&["swarm", "unlock"], Some(format!("{key}\n").as_bytes()))
        .unwrap()
        .failure();
    assert!(
        out.stderr.contains("invalid key provided"),
        "{}",
        out.stderr
    );
    d.docker_with_stdin(
        &["swarm", "unlock"],
        Some(format!("{rotated}\n").as_bytes()),
    )
    .unwrap()
    .success();
    d.docker(&["service", "ls"]).unwrap().success();
    let out = d
        .docker(&["swarm", "update", "--autolock=false"])
        .unwrap()
        .success();
    assert!(out.stdout.contains("Swarm updated."), "{}", out.stdout);
    let out = d.docker(&["swarm", "unlock-key"]).unwrap().failure();
    assert!(
        out.stderr.contains("no unlock key is set"),
        "{}",
        out.stderr
    );
    let out = d
        .docker(&["swarm", "update", "--autolock=true"])
        .unwrap()
        .success();
    assert!(out.stdout.contains("SWMKEY-1-"), "{}", out.stdout);
    d.docker(&["swarm", "leave", "--force"]).unwrap().success();
}

#[test]
fn berth_cli_locks_and_unlocks_a_swarm() {
    require_root!();
    let mut d = Daemon::start();
    let out = d
        .berth(&[
            "swarm",
            "init",
            "--autolock",
            "--listen-addr",
            "127.0.0.1:23783",
        ])
        .success();
    assert!(out.stdout.contains("berth swarm unlock"), "{}", out.stdout);
    let key = d
        .berth(&["swarm", "unlock-key", "-q"])
        .success()
        .stdout
        .trim()
        .to_string();
    assert!(
        key.starts_with("SWMKEY-1-") && out.stdout.contains(&key),
        "{key}"
    );
    let out = d.berth(&["swarm", "unlock"]).failure();
    assert!(out.stderr.contains("swarm is not locked"), "{}", out.stderr);
    let out = d.berth(&["swarm", "unlock-key", "--rotate"]).success();
    assert!(
        out.stdout
            .contains("Successfully rotated manager unlock key."),
        "{}",
        out.stdout
    );
    let rotated = unlock_key(&d);
    assert!(out.stdout.contains(&rotated) && rotated != key);
    d.restart();
    let out = d.berth(&["service", "ls"]).failure();
    assert!(out.stderr.contains(LOCKED), "{}", out.stderr);
    let out = d
        .berth_with_stdin(&["swarm", "unlock"], Some(b"SWMKEY-1-nope\n"))
        .failure();
    assert!(
        out.stderr.contains("invalid key provided") || out.stderr.contains("invalid key string"),
        "{}",
        out.stderr
    );
    d.berth_with_stdin(
        &["swarm", "unlock"],
        Some(format!("{rotated}\n").as_bytes()),
    )
    .success();
    assert_eq!(node_state(&d), "active");
    let out = d.berth(&["swarm", "update", "--autolock=false"]).success();
    assert_eq!(out.stdout, "Swarm updated.\n");
    let out = d.berth(&["swarm", "unlock-key", "--rotate"]).failure();
    assert!(
        out.stderr
            .contains("cannot rotate because autolock is not turned on"),
        "{}",
        out.stderr
    );
    let out = d.berth(&["swarm", "update", "--autolock"]).success();
    assert!(out.stdout.contains("SWMKEY-1-"), "{}", out.stdout);
    d.berth(&["swarm", "leave", "--force"]).success();
}

/// Whether the certificate in `pem` is still valid `secs` from now (`openssl x509 -checkend`).
fn valid_for(pem: &str, secs: u64) -> Option<bool> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &secs.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(pem.as_bytes()).ok()?;
    Some(child.wait().ok()?.success())
}

#[test]
fn cert_expiry_sets_the_node_certificate_lifetime() {
    require_root!();
    let d = Daemon::start();
    let two_hours = 2 * 3600 * 1_000_000_000u64;
    let body = json!({"ListenAddr": "127.0.0.1:23784", "Spec": {"CAConfig": {"NodeCertExpiry": two_hours}}});
    let r = d
        .api()
        .post("/swarm/init", Some(body.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    let identity: Value = serde_json::from_str(&identity_file(&d)).unwrap();
    let pem = identity["cert_pem"].as_str().unwrap();
    match (valid_for(pem, 3600), valid_for(pem, 3 * 3600)) {
        (Some(hour), Some(three)) => assert!(hour && !three, "a 2 h certificate"),
        _ => eprintln!("no openssl: certificate lifetime not checked"),
    }
    // swarmkit's minimum.
    let swarm = d.api().get("/swarm").json();
    let mut spec = swarm["Spec"].clone();
    assert_eq!(spec["CAConfig"]["NodeCertExpiry"], two_hours);
    spec["CAConfig"]["NodeCertExpiry"] = json!(1_800_000_000_000u64);
    let path = format!("/swarm/update?version={}", swarm["Version"]["Index"]);
    let r = d.api().post(&path, Some(spec.to_string().as_bytes()));
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (
            400,
            json!(
                "rpc error: code = InvalidArgument desc = minimum certificate expiry time is: 1h0m0s"
            )
        )
    );
    if let Some(out) = d.docker(&["swarm", "update", "--cert-expiry", "30m"]) {
        let out = out.failure();
        assert!(
            out.stderr
                .contains("minimum certificate expiry time is: 1h0m0s"),
            "{}",
            out.stderr
        );
        d.docker(&["swarm", "update", "--cert-expiry", "3h"])
            .unwrap()
            .success();
        let swarm = d.api().get("/swarm").json();
        assert_eq!(
            swarm["Spec"]["CAConfig"]["NodeCertExpiry"],
            3u64 * 3600 * 1_000_000_000
        );
    }
    let r = d.api().post("/swarm/leave?force=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
}
