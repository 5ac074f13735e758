//! A container's filesystem end to end: `docker diff`, `docker cp` (both ways), `docker export`
//! and `docker commit` against a real berthd running real busybox containers, plus the raw
//! archive API. Needs root; the docker-CLI parts are skipped where docker is not installed.

use std::io::Read;
use std::time::{Duration, Instant};

use berth_e2e::{Daemon, busybox_archive, docker_cli};
use serde_json::{Value, json};

fn ready() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    true
}

fn daemon() -> Daemon {
    let d = Daemon::start();
    let r = d.api().post(
        "/images/load?quiet=1",
        Some(&busybox_archive("busybox:latest")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    d
}

fn create(d: &Daemon, name: &str, body: Value) -> String {
    let r = d.api().post(
        &format!("/containers/create?name={name}"),
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["Id"].as_str().unwrap().to_string()
}

fn start(d: &Daemon, id: &str) {
    let r = d.api().post(&format!("/containers/{id}/start"), None);
    assert_eq!(r.status, 204, "{}", r.text());
}

fn wait(d: &Daemon, id: &str) -> i64 {
    let r = d.api().post(&format!("/containers/{id}/wait"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["StatusCode"].as_i64().unwrap()
}

/// Waits until `path` exists in the container (seen through the archive API).
fn wait_for_file(d: &Daemon, id: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = d.api().request(
            "HEAD",
            &format!("/containers/{id}/archive?path={path}"),
            &[],
            None,
        );
        if r.status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never appeared in {id}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn changes(d: &Daemon, id: &str) -> Vec<(String, i64)> {
    let r = d.api().get(&format!("/containers/{id}/changes"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["Path"].as_str().unwrap().to_string(),
                c["Kind"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn tar_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn decode_stat(header: &str) -> Value {
    use base64::Engine as _;
    let out = base64::engine::general_purpose::STANDARD
        .decode(header)
        .unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn diff_export_and_archive_of_a_stopped_container() {
    if !ready() {
        return;
    }
    let d = daemon();
    let id = create(
        &d,
        "writer",
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "mkdir -p /data/sub && echo hello > /data/sub/f && ln -s /etc /data/etc-link && rm /bin/ls && echo x >> /etc/passwd"]}),
    );
    start(&d, &id);
    assert_eq!(wait(&d, &id), 0);

    let got = changes(&d, &id);
    for want in [
        ("/bin", 0),
        ("/bin/ls", 2),
        ("/data", 1),
        ("/data/etc-link", 1),
        ("/data/sub", 1),
        ("/data/sub/f", 1),
        ("/etc", 0),
        ("/etc/passwd", 0),
    ] {
        assert!(
            got.contains(&(want.0.to_string(), want.1)),
            "{want:?} missing from {got:?}"
        );
    }
    assert!(!got.iter().any(|(p, _)| p == "/etc/hostname"), "{got:?}");

    // Stat: a file, a symlink (target resolved in the container), a missing path.
    let r = d.api().request(
        "HEAD",
        &format!("/containers/{id}/archive?path=/data/sub/f"),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    let st = decode_stat(r.header("X-Docker-Container-Path-Stat").unwrap());
    assert_eq!(st["name"], "f");
    assert_eq!(st["size"], 6);
    let r = d.api().request(
        "HEAD",
        &format!("/containers/{id}/archive?path=/data/etc-link"),
        &[],
        None,
    );
    let st = decode_stat(r.header("X-Docker-Container-Path-Stat").unwrap());
    assert_eq!(st["linkTarget"], "/etc");
    assert_eq!(st["mode"].as_u64().unwrap() & (1 << 27), 1 << 27);
    let r = d.api().get(&format!("/containers/{id}/archive?path=/nope"));
    assert_eq!(r.status, 404);
    assert_eq!(
        r.message(),
        format!("Could not find the file /nope in container {id}")
    );

    // GET: a directory under its basename; through the symlink with a trailing slash the
    // container's /etc, not the host's.
    let r = d
        .api()
        .get(&format!("/containers/{id}/archive?path=/data/sub"));
    assert_eq!(r.status, 200, "{}", r.text());
    let names: Vec<String> = tar_entries(&r.body).into_iter().map(|e| e.0).collect();
    assert_eq!(names, vec!["sub/", "sub/f"]);
    let r = d.api().get(&format!(
        "/containers/{id}/archive?path=/data/etc-link/passwd"
    ));
    let entries = tar_entries(&r.body);
    assert_eq!(entries[0].0, "passwd");
    assert!(String::from_utf8_lossy(&entries[0].1).ends_with("x\n"));

    // Export: the merged tree, no leftover mount.
    let r = d.api().get(&format!("/containers/{id}/export"));
    assert_eq!(r.status, 200);
    let entries = tar_entries(&r.body);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert!(names.contains(&"data/sub/f"), "{names:?}");
    assert!(names.contains(&"bin/sh"));
    assert!(!names.contains(&"bin/ls"));
    let rootfs = d.data_root().join("containers").join(&id).join("rootfs");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(rootfs.to_str().unwrap()),
        "a temporary mount was left behind"
    );

    // PUT into the stopped container, refused onto a file.
    let tar = berth_e2e::fixtures::pack(&[("in/copied.txt".to_string(), b"copied\n".to_vec())]);
    let r = d.api().request(
        "PUT",
        &format!("/containers/{id}/archive?path=/data"),
        &[],
        Some(&tar),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.api().request(
        "PUT",
        &format!("/containers/{id}/archive?path=/data/sub/f"),
        &[],
        Some(&tar),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.api().get(&format!(
        "/containers/{id}/archive?path=/data/in/copied.txt"
    ));
    assert_eq!(tar_entries(&r.body)[0].1, b"copied\n");
}

#[test]
fn commit_of_a_stopped_container_builds_on_its_image() {
    if !ready() {
        return;
    }
    let d = daemon();
    let id = create(
        &d,
        "maker",
        json!({"Image": "busybox", "Env": ["MADE=1"], "Cmd": ["sh", "-c", "echo made > /made && rm /bin/ls"]}),
    );
    start(&d, &id);
    assert_eq!(wait(&d, &id), 0);
    let r = d.api().post(
        "/commit?container=maker&repo=made&tag=v1&comment=first&author=tester&changes=ENV%20B%3D2",
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let image_id = r.json()["Id"].as_str().unwrap().to_string();
    let img = d.api().get("/images/made:v1/json").json();
    assert_eq!(img["Id"], image_id);
    let base = d.api().get("/images/busybox/json").json();
    assert_eq!(
        img["RootFS"]["Layers"].as_array().unwrap().len(),
        base["RootFS"]["Layers"].as_array().unwrap().len() + 1
    );
    let env: Vec<&str> = img["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"MADE=1") && env.contains(&"B=2"), "{env:?}");
    assert_eq!(img["Author"], "tester");
    let history = d.api().get("/images/made:v1/history").json();
    assert_eq!(history[0]["Comment"], "first");

    // A new container from it sees the file and the deletion, and has no changes itself.
    let id2 = create(
        &d,
        "user",
        json!({"Image": "made:v1", "Cmd": ["sh", "-c", "cat /made; if test -e /bin/ls; then echo ls-back; fi"]}),
    );
    start(&d, &id2);
    assert_eq!(wait(&d, &id2), 0);
    let logs = d
        .api()
        .get(&format!("/containers/{id2}/logs?stdout=1&stderr=1"));
    assert!(logs.text().contains("made"), "{}", logs.text());
    assert!(!logs.text().contains("ls-back"), "{}", logs.text());
    assert_eq!(changes(&d, &id2), Vec::<(String, i64)>::new());

    // Committing an unchanged container adds no layer, only a history entry.
    let r = d.api().post("/commit?container=user&repo=same", None);
    assert_eq!(r.status, 201, "{}", r.text());
    let same = d.api().get("/images/same/json").json();
    assert_eq!(same["RootFS"]["Layers"], img["RootFS"]["Layers"]);
    let history = d.api().get("/images/same/history").json();
    assert_eq!(
        history[0]["CreatedBy"],
        "sh -c cat /made; if test -e /bin/ls; then echo ls-back; fi"
    );
}

#[test]
fn docker_cli_diff_cp_export_commit_on_a_running_container() {
    if !ready() || docker_cli().is_none() {
        eprintln!("skipped: needs root and the docker CLI");
        return;
    }
    let d = daemon();
    let docker = |args: &[&str]| d.docker(args).unwrap();
    docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo hi > /created && sleep 300",
    ])
    .success();
    let id = d.api().get("/containers/web/json").json()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_file(&d, &id, "/created");

    let out = docker(&["diff", "web"]).success();
    assert!(out.stdout.contains("A /created"), "{}", out.stdout);

    // cp out (file and directory), cp in, then read it back through the container.
    let tmp = d.dir().join("cp");
    std::fs::create_dir_all(&tmp).unwrap();
    let dest = tmp.join("created");
    docker(&["cp", "web:/created", dest.to_str().unwrap()]).success();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "hi\n");
    docker(&["cp", "web:/etc", tmp.to_str().unwrap()]).success();
    assert!(tmp.join("etc/passwd").is_file());
    let src = tmp.join("incoming.txt");
    std::fs::write(&src, "incoming\n").unwrap();
    docker(&["cp", src.to_str().unwrap(), "web:/tmp/"]).success();
    let r = d
        .api()
        .get(&format!("/containers/{id}/archive?path=/tmp/incoming.txt"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tar_entries(&r.body)[0].1, b"incoming\n");

    let export = tmp.join("web.tar");
    docker(&["export", "-o", export.to_str().unwrap(), "web"]).success();
    let bytes = std::fs::read(&export).unwrap();
    let names: Vec<String> = tar_entries(&bytes).into_iter().map(|e| e.0).collect();
    assert!(names.contains(&"created".to_string()), "{names:?}");
    assert!(names.contains(&"tmp/incoming.txt".to_string()));

    let out = docker(&["commit", "-m", "snap", "web", "myimg:v2"]).success();
    assert!(out.stdout.trim().starts_with("sha256:"), "{}", out.stdout);
    let out = docker(&["inspect", "-f", "{{json .Config.Cmd}}", "myimg:v2"]).success();
    assert_eq!(
        out.stdout.trim(),
        r#"["sh","-c","echo hi > /created && sleep 300"]"#
    );
    // The container was paused for the commit only.
    let state = d.api().get("/containers/web/json").json();
    assert_eq!(state["State"]["Status"], "running");

    docker(&[
        "create",
        "--name",
        "from-commit",
        "myimg:v2",
        "cat",
        "/created",
    ])
    .success();
    docker(&["start", "from-commit"]).success();
    let out = docker(&["wait", "from-commit"]).success();
    assert_eq!(out.stdout.trim(), "0");
    let out = docker(&["logs", "from-commit"]).success();
    assert_eq!(out.stdout, "hi\n");
    let out = docker(&["diff", "from-commit"]).success();
    assert_eq!(out.stdout, "");
    docker(&["rm", "-f", "web"]).success();
}
