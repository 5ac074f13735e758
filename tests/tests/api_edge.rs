//! The HTTP edge as Go clients meet it: bodies with `null` members and members in another case,
//! Content-Type rules (what keeps a web page from creating containers), answers that reach the
//! client however large the body it was sending, Docker's JSON errors, the swarm and build
//! endpoints answered as dockerd answers them on a plain node, and Docker Compose v2 (skipped
//! where its CLI plugin is not installed: scripts/install-test-peers.sh installs it).

use std::process::Command;

use berth_e2e::containers::{create, daemon_with_busybox, inspect, start, wait};
use berth_e2e::{Daemon, docker_cli, require_root};
use serde_json::{Map, Value, json};

/// Every member of `object` set to `null`, except `keep`.
fn nulls(object: &Value, keep: &[&str]) -> Map<String, Value> {
    object
        .as_object()
        .expect("an object")
        .keys()
        .filter(|k| !keep.contains(&k.as_str()))
        .map(|k| (k.clone(), Value::Null))
        .collect()
}

#[test]
fn every_optional_member_of_every_body_may_be_null() {
    require_root!();
    let d = daemon_with_busybox();
    let api = d.api();
    // The members come from what the daemon itself reports for these objects, so that a field
    // added to the wire types is covered here too.
    let probe = create(&d, None, json!({"Image": "busybox", "Cmd": ["true"]}));
    let shown = inspect(&d, &probe);
    let mut body = nulls(&shown["Config"], &["Image", "Cmd"]);
    body.insert("Image".into(), json!("busybox"));
    body.insert("Cmd".into(), json!(["sh", "-c", "sleep 30"]));
    body.insert(
        "HostConfig".into(),
        Value::Object(nulls(&shown["HostConfig"], &[])),
    );
    body.insert("NetworkingConfig".into(), json!({"EndpointsConfig": null}));
    let id = create(&d, Some("all-null"), Value::Object(body));
    start(&d, &id);
    assert_eq!(inspect(&d, &id)["State"]["Running"], true);

    let mut update = nulls(&shown["HostConfig"], &[]);
    update.retain(|k, _| k != "RestartPolicy");
    update.insert("RestartPolicy".into(), Value::Null);
    let r = api.post(
        &format!("/containers/{id}/update"),
        Some(Value::Object(update).to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let exec = api.post(
        &format!("/containers/{id}/exec"),
        Some(
            json!({"Cmd": ["true"], "AttachStdin": null, "AttachStdout": null,
                "AttachStderr": null, "ConsoleSize": null, "DetachKeys": null, "Tty": null,
                "Env": null, "Privileged": null, "User": null, "WorkingDir": null})
            .to_string()
            .as_bytes(),
        ),
    );
    assert_eq!(exec.status, 201, "{}", exec.text());
    let exec_id = exec.json()["Id"].as_str().unwrap().to_string();
    let r = api.post(
        &format!("/exec/{exec_id}/start"),
        Some(br#"{"Detach": true, "Tty": null, "ConsoleSize": null}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let bridge = api.get("/networks/bridge").json();
    let mut net = nulls(&bridge, &["Name"]);
    net.insert("Name".into(), json!("nullnet"));
    net.insert("IPAM".into(), Value::Object(nulls(&bridge["IPAM"], &[])));
    let r = api.post(
        "/networks/create",
        Some(Value::Object(net).to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = api.post(
        "/networks/nullnet/connect",
        Some(
            json!({"Container": id, "EndpointConfig": null})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = api.post(
        "/networks/nullnet/disconnect",
        Some(
            json!({"Container": id, "Force": null})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let r = api.post(
        "/volumes/create",
        Some(br#"{"Name": "nullvol", "Driver": null, "DriverOpts": null, "Labels": null}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = api.post(
        &format!("/commit?container={id}&repo=nullcommit"),
        Some(
            Value::Object(nulls(&shown["Config"], &[]))
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = api.post(&format!("/containers/{id}/kill"), None);
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn member_names_match_in_any_case_and_map_keys_are_kept() {
    require_root!();
    let d = daemon_with_busybox();
    let id = create(
        &d,
        None,
        json!({"image": "busybox", "CMD": ["sh", "-c", "exit 3"],
            "labels": {"Mixed.Case": "v"},
            "hostconfig": {"memory": 64 << 20, "CPUSHARES": 512, "pidsLimit": 40,
                "CPURealtimeRuntime": 0, "LogConfig": {"type": "json-file", "config": {"max-size": "1m"}}}}),
    );
    let shown = inspect(&d, &id);
    assert_eq!(shown["Config"]["Labels"], json!({"Mixed.Case": "v"}));
    assert_eq!(shown["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(shown["HostConfig"]["CpuShares"], 512);
    assert_eq!(shown["HostConfig"]["PidsLimit"], 40);
    assert_eq!(
        shown["HostConfig"]["LogConfig"]["Config"],
        json!({"max-size": "1m"})
    );
    start(&d, &id);
    assert_eq!(wait(&d, &id), 3);
    let r = d.api().post(
        &format!("/containers/{id}/update"),
        Some(br#"{"PIDSLIMIT": 30, "restartpolicy": {"name": "on-failure", "MaximumRetryCount": 2}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let shown = inspect(&d, &id);
    assert_eq!(shown["HostConfig"]["PidsLimit"], 30);
    assert_eq!(shown["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
}

#[test]
fn json_bodies_of_another_content_type_are_refused_and_create_nothing() {
    let d = Daemon::start();
    let api = d.api();
    let create = br#"{"Image": "busybox", "Cmd": ["true"]}"#;
    let origin = ("Origin", "http://attacker.example");
    for (ct, message) in [
        (
            "text/plain",
            "unsupported Content-Type header (text/plain): must be 'application/json'",
        ),
        (
            "text/plain;charset=UTF-8",
            "unsupported Content-Type header (text/plain;charset=UTF-8): must be 'application/json'",
        ),
        (
            "application/x-www-form-urlencoded",
            "unsupported Content-Type header (application/x-www-form-urlencoded): must be 'application/json'",
        ),
        (
            "multipart/form-data; boundary=x",
            "unsupported Content-Type header (multipart/form-data; boundary=x): must be 'application/json'",
        ),
        ("", "malformed Content-Type header (): mime: no media type"),
    ] {
        for path in ["/containers/create", "/v1.51/containers/create?name=web"] {
            let r = api.request("POST", path, &[("Content-Type", ct), origin], Some(create));
            assert_eq!(r.status, 400, "{ct}: {}", r.text());
            assert_eq!(r.message(), message);
        }
        for (path, body) in [
            ("/networks/create", &br#"{"Name": "evil"}"#[..]),
            ("/volumes/create", br#"{"Name": "evil"}"#),
            ("/containers/x/exec", br#"{"Cmd": ["true"]}"#),
            ("/containers/x/update", br#"{"Memory": 1}"#),
        ] {
            let r = api.request("POST", path, &[("Content-Type", ct), origin], Some(body));
            assert_eq!(r.status, 400, "{path} {ct}: {}", r.text());
        }
    }
    // A browser's preflight for a JSON post is not answered with any CORS permission.
    let r = api.request(
        "OPTIONS",
        "/containers/create",
        &[
            origin,
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        None,
    );
    assert!(r.status >= 400, "{}", r.status);
    assert!(r.header("Access-Control-Allow-Origin").is_none());
    assert_eq!(api.get("/containers/json?all=1").json(), json!([]));
    let networks = api.get("/networks").json();
    assert!(
        !networks
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["Name"] == "evil"),
        "{networks}"
    );
    assert_eq!(api.get("/volumes").json()["Volumes"], json!([]));
    // Charset parameters and any case are fine, and an empty body needs no type at all.
    let r = api.request(
        "POST",
        "/volumes/create",
        &[("Content-Type", "Application/JSON; charset=utf-8")],
        Some(br#"{"Name": "fine"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = api.post("/volumes/create", None);
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn answers_reach_the_client_whatever_the_body_size() {
    let d = Daemon::start();
    let api = d.api();
    // A refused request's body is read before the answer, so the client (which writes the whole
    // body before reading) gets the answer instead of a broken pipe.
    let mut big = br#"{"ListenAddr": "0.0.0.0:2377", "Pad": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 8 << 20));
    big.extend(br#""}"#);
    let r = api.post("/services/create", Some(&big));
    assert_eq!(r.status, 503, "{}", r.text());
    let r = api.post("/no/such/endpoint", Some(&big));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.message(), "page not found");
    let r = api.request(
        "POST",
        "/containers/create",
        &[("Content-Type", "text/plain")],
        Some(&big),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // Bodies over the daemon's bound get Docker's JSON error, not plain text.
    let mut huge = br#"{"Image": "busybox", "Env": [""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 40 << 20));
    huge.extend(br#""]}"#);
    let r = api.post("/containers/create", Some(&huge));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert!(r.message().contains("too large"), "{}", r.message());
    // A 3 MB create body is an ordinary one (dockerd has no bound at all).
    let mut env = Vec::new();
    for i in 0..3000 {
        env.push(format!("VAR{i}={}", "v".repeat(1000)));
    }
    let r = api.post(
        "/containers/create",
        Some(
            json!({"Image": "nosuchimage", "Env": env})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.message().contains("nosuchimage"), "{}", r.message());
    // The connection was not disturbed: the daemon still answers.
    assert_eq!(api.get("/_ping").status, 200);
}

#[test]
fn swarm_endpoints_answer_as_on_a_node_outside_a_swarm() {
    let d = Daemon::start();
    let api = d.api();
    let not_manager = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
    for (method, path) in [
        ("GET", "/swarm"),
        ("GET", "/v1.51/swarm"),
        ("GET", "/swarm/unlockkey"),
        ("POST", "/swarm/update?version=1"),
        ("POST", "/swarm/unlock"),
        ("GET", "/nodes"),
        ("GET", "/nodes/abc"),
        ("DELETE", "/nodes/abc"),
        ("GET", "/services"),
        ("POST", "/services/create"),
        ("GET", "/services/abc/logs"),
        ("GET", "/tasks"),
        ("GET", "/tasks/abc"),
        ("GET", "/secrets"),
        ("POST", "/secrets/create"),
        ("GET", "/configs"),
        ("POST", "/configs/abc/update"),
    ] {
        let body = (method == "POST").then_some(&b"{}"[..]);
        let r = api.request(method, path, &[], body);
        assert_eq!(r.status, 503, "{method} {path}: {}", r.text());
        assert_eq!(r.message(), not_manager, "{method} {path}");
    }
    let r = api.post("/swarm/leave?force=1", None);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.message(), "This node is not part of a swarm");
    // A join without a manager to reach is refused as dockerd does, and the node stays outside.
    let r = api.post("/swarm/join", Some(br#"{"ListenAddr": "0.0.0.0:2377"}"#));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.message(), "at least 1 RemoteAddr is required to join");
    assert_eq!(
        api.get("/info").json()["Swarm"]["LocalNodeState"],
        "inactive"
    );

    let Some(docker) = d.docker(&["node", "ls"]) else {
        eprintln!("skipped the docker CLI part: no docker CLI");
        return;
    };
    let out = docker.failure();
    assert!(out.stderr.contains(not_manager), "{}", out.stderr);
    let out = d.docker(&["swarm", "leave"]).unwrap().failure();
    assert!(
        out.stderr.contains("This node is not part of a swarm"),
        "{}",
        out.stderr
    );
    let out = d
        .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), "inactive");
}

#[test]
fn build_prune_reports_an_empty_cache_and_system_prune_works() {
    let d = Daemon::start();
    let r = d.api().post("/build/prune?all=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"CachesDeleted": null, "SpaceReclaimed": 0})
    );
    let Some(out) = d.docker(&["system", "prune", "-f"]) else {
        eprintln!("skipped the docker CLI part: no docker CLI");
        return;
    };
    let out = out.success();
    assert!(
        out.stdout.contains("Total reclaimed space"),
        "{}",
        out.stdout
    );
    let out = d.docker(&["builder", "prune", "-f"]).unwrap().success();
    assert!(out.stdout.contains("Total"), "{}", out.stdout);
}

/// `docker compose`, when the CLI and its Compose v2 plugin are installed.
fn compose_available() -> bool {
    docker_cli().is_some_and(|docker| {
        Command::new(docker)
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn compose_v2_brings_a_project_up_and_down() {
    require_root!();
    if !compose_available() {
        eprintln!("skipped: no docker compose plugin (scripts/install-test-peers.sh installs it)");
        return;
    }
    let d = daemon_with_busybox();
    let dir = d.dir().join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n\
         \x20 web:\n\
         \x20   image: busybox\n\
         \x20   command: [\"sh\", \"-c\", \"echo ready > /data/state; sleep 300\"]\n\
         \x20   environment:\n\
         \x20     GREETING: hello\n\
         \x20   labels:\n\
         \x20     tier: front\n\
         \x20   volumes:\n\
         \x20     - data:/data\n\
         \x20   networks: [back]\n\
         \x20 worker:\n\
         \x20   image: busybox\n\
         \x20   command: [\"sleep\", \"300\"]\n\
         \x20   depends_on: [web]\n\
         \x20   networks: [back]\n\
         volumes:\n\
         \x20 data: {}\n\
         networks:\n\
         \x20 back: {}\n",
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let mut all = vec!["compose", "--project-directory"];
        let project = dir.display().to_string();
        all.push(&project);
        all.extend(["-p", "edge"]);
        all.extend(args);
        d.docker(&all).unwrap()
    };
    compose(&["up", "-d"]).success();
    let out = compose(&["ps", "--format", "{{.Service}} {{.State}}"]).success();
    assert!(out.stdout.contains("web running"), "{}", out.stdout);
    assert!(out.stdout.contains("worker running"), "{}", out.stdout);
    let out = compose(&[
        "exec",
        "-T",
        "web",
        "sh",
        "-c",
        "echo $GREETING; cat /data/state",
    ])
    .success();
    assert_eq!(out.stdout.trim(), "hello\nready");
    compose(&["down", "-v"]).success();
    assert_eq!(d.api().get("/containers/json?all=1").json(), json!([]));
    let volumes = d.api().get("/volumes").json();
    assert_eq!(volumes["Volumes"], json!([]), "{volumes}");
}

#[test]
fn idle_and_streaming_connections_do_not_lock_out_short_requests() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;
    let d = Daemon::start_with(&["--max-connections", "24"]);
    assert!(
        d.log().contains("max_connections=24"),
        "the limit is not reported:\n{}",
        d.log()
    );
    let connect = || UnixStream::connect(d.socket()).unwrap();
    // Long streams that never end, more of them than the limit: each one is answered.
    let mut held = Vec::new();
    for i in 0..30 {
        let mut s = connect();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head)
            .unwrap_or_else(|e| panic!("event stream {i} got no answer: {e}"));
        assert_eq!(&head, b"HTTP/1.1 200");
        held.push(s);
    }
    // And sockets that never send a request.
    for _ in 0..20 {
        held.push(connect());
    }
    // A half-sent request: the server closes it once the head times out.
    let mut slow = connect();
    slow.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A normal request gets its answer: the streams hold no slot.
    let r = d.api().get("/_ping");
    assert_eq!(r.status, 200);
    slow.set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    assert!(closed.is_ok(), "half-sent request still open: {closed:?}");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    drop(held);
    assert_eq!(d.api().get("/_ping").status, 200);
}
