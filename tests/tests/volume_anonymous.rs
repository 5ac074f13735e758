//! Volumes created without a name are anonymous (dockerd's label
//! `com.docker.volume.anonymous`), so `volume prune` without `all` removes them: through the
//! raw API, berth and the docker CLI.

use berth_e2e::Daemon;
use serde_json::Value;

fn names(d: &Daemon) -> Vec<String> {
    let r = d.api().get("/volumes");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn unnamed_volumes_are_anonymous_and_pruned() {
    let d = Daemon::start();
    // Raw API: an empty body and an explicit empty name.
    let r = d.api().post("/volumes/create", Some(b"{}"));
    assert_eq!(r.status, 201, "{}", r.text());
    let v: Value = r.json();
    let anon = v["Name"].as_str().unwrap().to_string();
    assert_eq!(anon.len(), 64, "{v}");
    assert_eq!(v["Labels"]["com.docker.volume.anonymous"], "", "{v}");
    let r = d.api().post(
        "/volumes/create",
        Some(br#"{"Name":"","Labels":{"team":"a"}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let anon2 = r.json()["Name"].as_str().unwrap().to_string();
    assert_eq!(r.json()["Labels"]["team"], "a");
    let r = d
        .api()
        .post("/volumes/create", Some(br#"{"Name":"keepme"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        r.json()["Labels"]
            .get("com.docker.volume.anonymous")
            .is_none()
    );

    let r = d.api().post("/v1.43/volumes/prune", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut deleted: Vec<String> = r.json()["VolumesDeleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    deleted.sort();
    let mut want = vec![anon, anon2];
    want.sort();
    assert_eq!(deleted, want);
    assert_eq!(names(&d), vec!["keepme".to_string()]);

    // berth: `volume create` without a name, then `volume prune -f`.
    let made = d
        .berth(&["volume", "create"])
        .success()
        .stdout
        .trim()
        .to_string();
    assert_eq!(made.len(), 64);
    let out = d.berth(&["volume", "prune", "-f"]).success();
    assert!(out.stdout.contains(&made), "{}", out.stdout);
    assert_eq!(names(&d), vec!["keepme".to_string()]);

    // The docker CLI, when installed.
    if let Some(out) = d.docker(&["volume", "create"]) {
        let made = out.success().stdout.trim().to_string();
        let out = d.docker(&["volume", "prune", "-f"]).unwrap().success();
        assert!(out.stdout.contains(&made), "{}", out.stdout);
        assert_eq!(names(&d), vec!["keepme".to_string()]);
    }
}
