//! Containers end to end: a real berthd runs real containers (root, the `berth-shim` binary
//! beside `berthd`, busybox test images). Each daemon uses its own cgroup parent; dropping
//! it kills the containers by their recorded pids, unmounts and removes the cgroups.

use std::time::{Duration, Instant};

use berth_e2e::containers::{
    create, daemon_with_busybox as daemon, demux, inspect, start, until, wait,
};
use berth_e2e::require_root;
use berth_e2e::{Daemon, busybox_archive};
use serde_json::json;

#[test]
fn echo_hello_create_start_wait_logs_inspect_rm() {
    require_root!();
    let d = daemon();
    let id = create(
        &d,
        Some("hello"),
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "echo hello; echo oops >&2"], "Labels": {"a": "b"}}),
    );
    assert_eq!(id.len(), 64);
    let i = inspect(&d, "hello");
    assert_eq!(i["State"]["Status"], "created");
    assert_eq!(i["State"]["StartedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(i["Name"], "/hello");
    assert_eq!(i["Config"]["Hostname"], &id[..12]);
    assert_eq!(i["HostConfig"]["NetworkMode"], "bridge");
    assert_eq!(i["GraphDriver"]["Name"], "overlayfs");
    start(&d, &id);
    assert_eq!(wait(&d, &id[..10]), 0);
    let i = inspect(&d, "%2Fhello");
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 0);
    assert_ne!(i["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    assert!(
        i["LogPath"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{id}-json.log"))
    );
    let logs = d.api().get("/containers/hello/logs?stdout=1&stderr=1");
    assert_eq!(logs.status, 200);
    assert_eq!(demux(&logs.body), ("hello\n".into(), "oops\n".into()));
    let only_err = d.api().get("/containers/hello/logs?stderr=1");
    assert_eq!(demux(&only_err.body), ("".into(), "oops\n".into()));
    assert_eq!(d.api().get("/containers/hello/logs").status, 400);
    let ps = d.api().get("/containers/json?all=1").json();
    assert_eq!(ps[0]["Names"][0], "/hello");
    assert_eq!(ps[0]["Command"], "sh -c 'echo hello; echo oops >&2'");
    assert!(ps[0]["Status"].as_str().unwrap().starts_with("Exited (0) "));
    // Starting it again runs it again.
    start(&d, "hello");
    assert_eq!(wait(&d, "hello"), 0);
    let r = d.api().delete("/containers/hello");
    assert_eq!(r.status, 204, "{}", r.text());
    let gone = d.api().get("/containers/hello/json");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.message(), "No such container: hello");
    assert!(!d.data_root().join("containers").join(&id).exists());
}

#[test]
fn exit_codes_missing_commands_and_create_errors() {
    require_root!();
    let d = daemon();
    let id = create(
        &d,
        None,
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"]}),
    );
    start(&d, &id);
    assert_eq!(wait(&d, &id), 3);
    let name = inspect(&d, &id)["Name"].as_str().unwrap().to_string();
    assert!(
        name.len() > 3 && name.contains('_'),
        "generated name {name}"
    );

    let bad = create(&d, None, json!({"Image": "busybox", "Cmd": ["nosuchcmd"]}));
    let r = d.api().post(&format!("/containers/{bad}/start"), None);
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("executable file not found"),
        "{}",
        r.message()
    );
    assert_eq!(inspect(&d, &bad)["State"]["ExitCode"], 127);

    let r = d.api().post(
        "/containers/create",
        Some(json!({"Image": "nosuch"}).to_string().as_bytes()),
    );
    assert_eq!(
        (r.status, r.message()),
        (404, "No such image: nosuch".to_string())
    );
    let r = d.api().post(
        "/containers/create?name=bad%20name",
        Some(
            json!({"Image": "busybox", "Cmd": ["true"]})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    );
    let r = d.api().post(
        "/containers/create",
        Some(
            json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": 1024}})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(
        (r.status, r.message()),
        (400, "Minimum memory limit allowed is 6MB".to_string())
    );
    let r = d.api().post(
        "/containers/create",
        Some(json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"AutoRemove": true, "RestartPolicy": {"Name": "always"}}}).to_string().as_bytes()),
    );
    assert_eq!(
        r.message(),
        "can't create 'AutoRemove' container with restart policy"
    );
    let before = std::fs::read_dir(d.data_root().join("containers"))
        .unwrap()
        .count();
    assert_eq!(before, 2, "failed creates leave nothing behind");
}

#[test]
fn stop_kill_rm_semantics_and_name_conflicts() {
    require_root!();
    let d = daemon();
    let id = create(
        &d,
        Some("web"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &id);
    assert_eq!(d.api().post("/containers/web/start", None).status, 304);
    let r = d.api().post(
        "/containers/create?name=web",
        Some(
            json!({"Image": "busybox", "Cmd": ["true"]})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.message(),
        format!(
            "Conflict. The container name \"/web\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
        )
    );
    let r = d.api().delete("/containers/web");
    assert_eq!(r.status, 409);
    assert_eq!(
        r.message(),
        "cannot remove container \"web\": container is running: stop the container before removing or force remove"
    );
    // sleep as pid 1 ignores SIGTERM's default: stop falls back to SIGKILL after t.
    let r = d.api().post("/containers/web/stop?t=0", None);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(inspect(&d, "web")["State"]["ExitCode"], 137);
    assert_eq!(d.api().post("/containers/web/stop", None).status, 304);
    let r = d.api().post("/containers/web/kill", None);
    assert_eq!(r.status, 409);
    assert_eq!(
        r.message(),
        format!("Cannot kill container: web: container {id} is not running")
    );
    start(&d, "web");
    let bad = d.api().post("/containers/web/kill?signal=SIGNOPE", None);
    assert_eq!(
        (bad.status, bad.message()),
        (400, "Invalid signal: SIGNOPE".to_string())
    );
    let r = d.api().post("/containers/web/kill?signal=9", None);
    assert_eq!(r.status, 204);
    assert_eq!(wait(&d, "web"), 137);
    let r = d.api().post("/containers/web/rename?name=web2", None);
    assert_eq!(r.status, 204);
    start(&d, "web2");
    let r = d.api().delete("/containers/web2?force=1");
    assert_eq!(r.status, 204, "{}", r.text());
    let id2 = create(
        &d,
        Some("web"),
        json!({"Image": "busybox", "Cmd": ["true"]}),
    );
    assert_ne!(id, id2);
}

#[test]
fn ps_filters_and_status() {
    require_root!();
    let d = daemon();
    let up = create(
        &d,
        Some("up"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"], "Labels": {"tier": "web"}}),
    );
    start(&d, &up);
    let done = create(
        &d,
        Some("done"),
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "exit 2"]}),
    );
    start(&d, &done);
    wait(&d, &done);
    let _fresh = create(
        &d,
        Some("fresh"),
        json!({"Image": "busybox", "Cmd": ["true"]}),
    );
    let names = |q: &str| -> Vec<String> {
        let r = d.api().get(&format!("/containers/json?{q}"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Names"][0].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(""), vec!["/up"]);
    assert_eq!(names("all=1"), vec!["/fresh", "/done", "/up"]);
    assert_eq!(names("limit=1"), vec!["/fresh"]);
    let f = |j: &str| format!("filters={}", urlencode(j));
    assert_eq!(names(&f(r#"{"status":["exited"]}"#)), vec!["/done"]);
    assert_eq!(names(&f(r#"{"status":["created"]}"#)), vec!["/fresh"]);
    assert_eq!(names(&f(r#"{"exited":["2"]}"#)), vec!["/done"]);
    assert_eq!(
        names(&format!("all=1&{}", f(r#"{"label":["tier=web"]}"#))),
        vec!["/up"]
    );
    assert_eq!(
        names(&format!("all=1&{}", f(r#"{"name":["^/do"]}"#))),
        vec!["/done"]
    );
    assert_eq!(
        names(&format!(
            "all=1&{}",
            f(&format!(r#"{{"id":["{}"]}}"#, &up[..8]))
        )),
        vec!["/up"]
    );
    assert_eq!(
        names(&format!("all=1&{}", f(r#"{"ancestor":["busybox"]}"#))).len(),
        3
    );
    assert_eq!(
        names(&format!("all=1&{}", f(r#"{"before":["fresh"]}"#))),
        vec!["/done", "/up"]
    );
    let bad = d.api().get(&format!(
        "/containers/json?{}",
        f(r#"{"status":["sleepy"]}"#)
    ));
    assert_eq!(
        (bad.status, bad.message()),
        (400, "invalid filter 'status=sleepy'".to_string())
    );
    let rows = d.api().get("/containers/json?all=1").json();
    let status = |n: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["Names"][0] == n)
            .unwrap()["Status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(status("/up").starts_with("Up "), "{}", status("/up"));
    assert!(
        status("/done").starts_with("Exited (2) "),
        "{}",
        status("/done")
    );
    assert_eq!(status("/fresh"), "Created");
    let info = d.api().get("/info").json();
    assert_eq!(
        (
            info["Containers"].as_i64(),
            info["ContainersRunning"].as_i64()
        ),
        (Some(3), Some(1))
    );
    let rmi = d.api().delete("/images/busybox");
    assert_eq!(rmi.status, 409, "{}", rmi.text());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_daemon_killed_hard_leaves_containers_running_and_adopts_them() {
    require_root!();
    let mut d = daemon();
    let id = create(
        &d,
        Some("survivor"),
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"]}),
    );
    start(&d, &id);
    let pid = inspect(&d, &id)["State"]["Pid"].as_i64().unwrap();
    d.kill_hard();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "container died with the daemon"
    );
    d.start_again();
    let i = inspect(&d, "survivor");
    assert_eq!(i["State"]["Status"], "running");
    assert_eq!(i["State"]["Pid"], pid);
    let r = d.api().post("/containers/survivor/stop?t=5", None);
    assert_eq!(r.status, 204, "{}", r.text());
    let i = inspect(&d, "survivor");
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 7);
    // A container that exits while no daemon runs is recorded with its real exit code.
    let id2 = create(
        &d,
        Some("brief"),
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "sleep 0.3; exit 4"]}),
    );
    start(&d, &id2);
    d.stop();
    std::thread::sleep(Duration::from_millis(500));
    d.start_again();
    let i = inspect(&d, "brief");
    assert_eq!(
        (
            i["State"]["Status"].as_str(),
            i["State"]["ExitCode"].as_i64()
        ),
        (Some("exited"), Some(4))
    );
}

#[test]
fn on_failure_restarts_count_and_stop() {
    require_root!();
    let d = daemon();
    let id = create(
        &d,
        Some("flaky"),
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "exit 1"], "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}}),
    );
    start(&d, &id);
    until("two restarts", || {
        let i = inspect(&d, &id);
        i["RestartCount"] == 2 && i["State"]["Status"] == "exited"
    });
    std::thread::sleep(Duration::from_millis(500));
    let i = inspect(&d, &id);
    assert_eq!(
        (i["RestartCount"].as_i64(), i["State"]["ExitCode"].as_i64()),
        (Some(2), Some(1))
    );
}

#[test]
fn pause_unpause_and_top() {
    require_root!();
    let d = daemon();
    let id = create(
        &d,
        Some("pz"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &id);
    let top = d.api().get("/containers/pz/top");
    assert_eq!(top.status, 200, "{}", top.text());
    let top = top.json();
    assert!(top["Titles"].as_array().unwrap().iter().any(|t| t == "PID"));
    let rows = top["Processes"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{top}");
    assert!(
        rows[0]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("sleep 1000")
    );
    assert_eq!(d.api().post("/containers/pz/pause", None).status, 204);
    assert_eq!(inspect(&d, "pz")["State"]["Status"], "paused");
    assert_eq!(d.api().post("/containers/pz/pause", None).status, 409);
    let ps = d.api().get("/containers/json").json();
    assert!(ps[0]["Status"].as_str().unwrap().ends_with("(Paused)"));
    assert_eq!(d.api().post("/containers/pz/unpause", None).status, 204);
    assert_eq!(d.api().post("/containers/pz/unpause", None).status, 409);
    assert_eq!(d.api().post("/containers/pz/kill", None).status, 204);
    assert_eq!(wait(&d, "pz"), 137);
    assert_eq!(d.api().get("/containers/pz/top").status, 409);
}

#[test]
fn docker_cli_run_rm_and_logs() {
    require_root!();
    let d = daemon();
    let Some(out) = d.docker(&["run", "--rm", "busybox", "echo", "hello"]) else {
        return;
    };
    let out = out.success();
    assert_eq!(out.stdout, "hello\n");
    let code = d
        .docker(&["run", "busybox", "sh", "-c", "exit 5"])
        .unwrap()
        .code;
    assert_eq!(code, 5);
    let code = d
        .docker(&["run", "--rm", "busybox", "nosuchcmd"])
        .unwrap()
        .code;
    assert_eq!(code, 127);
    let out = d
        .docker(&[
            "run",
            "-d",
            "--name",
            "bg",
            "busybox",
            "sh",
            "-c",
            "echo hi; sleep 1000",
        ])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim().len(), 64);
    until("log line", || {
        d.docker(&["logs", "bg"]).unwrap().stdout == "hi\n"
    });
    d.docker(&["rm", "-f", "bg"]).unwrap().success();
    let ps = d
        .docker(&["ps", "-a", "--format", "{{.Names}}"])
        .unwrap()
        .success();
    assert!(!ps.stdout.contains("bg"), "{}", ps.stdout);
}

#[test]
fn docker_cli_attach_stdin_and_exec() {
    require_root!();
    let d = daemon();
    if d.docker(&["version"]).is_none() {
        return;
    }
    let out = d
        .docker(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])
        .unwrap();
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    let out = d
        .docker_with_stdin(&["run", "--rm", "-i", "busybox", "cat"], Some(b"piped\n"))
        .unwrap()
        .success();
    assert_eq!(out.stdout, "piped\n");
    let out = d
        .docker(&["run", "--rm", "--init", "busybox", "ps", "-o", "comm"])
        .unwrap()
        .success();
    assert!(out.stdout.contains("docker-init"), "{}", out.stdout);
    d.docker(&["run", "-d", "--name", "ex", "busybox", "sleep", "1000"])
        .unwrap()
        .success();
    let out = d
        .docker(&["exec", "ex", "echo", "from-exec"])
        .unwrap()
        .success();
    assert_eq!(out.stdout, "from-exec\n");
    assert_eq!(
        d.docker(&["exec", "ex", "sh", "-c", "exit 9"])
            .unwrap()
            .code,
        9
    );
    let missing = d.docker(&["exec", "ex", "nosuch"]).unwrap();
    assert_eq!(missing.code, 127, "{missing:?}");
    let out = d
        .docker_with_stdin(&["exec", "-i", "ex", "cat"], Some(b"hi\n"))
        .unwrap()
        .success();
    assert_eq!(out.stdout, "hi\n");
    let ids = d
        .docker(&["inspect", "-f", "{{len .ExecIDs}}", "ex"])
        .unwrap()
        .success();
    // Docker lists only execs that have not ended (an exec leaves its container's list
    // when it exits); all four ended.
    assert_eq!(ids.stdout.trim(), "0");
    d.docker(&["kill", "ex"]).unwrap().success();
    d.docker(&["wait", "ex"]).unwrap().success();
    let stopped = d.docker(&["exec", "ex", "true"]).unwrap();
    assert_ne!(stopped.code, 0);
    assert!(
        stopped.stderr.contains("is not running"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn daemon_stop_keeps_containers_and_restart_policies_apply_on_start() {
    require_root!();
    let mut d = daemon();
    let keep = create(
        &d,
        Some("keep"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &keep);
    let always = create(
        &d,
        Some("always"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"], "HostConfig": {"RestartPolicy": {"Name": "always"}}}),
    );
    start(&d, &always);
    let unless = create(
        &d,
        Some("unless"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"], "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}}}),
    );
    start(&d, &unless);
    for name in ["always", "unless"] {
        let r = d.api().post(&format!("/containers/{name}/stop?t=0"), None);
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let pid = inspect(&d, "keep")["State"]["Pid"].as_i64().unwrap();
    assert_eq!(d.stop(), Some(0), "SIGTERM ends the daemon cleanly");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "a daemon shutdown must not stop containers"
    );
    d.start_again();
    assert_eq!(inspect(&d, "keep")["State"]["Status"], "running");
    until("always to come back", || {
        inspect(&d, "always")["State"]["Status"] == "running"
    });
    assert_eq!(inspect(&d, "unless")["State"]["Status"], "exited");
}

#[test]
fn a_private_network_namespace_has_only_loopback_and_it_is_up() {
    require_root!();
    let d = daemon();
    let out = d
        .berth(&[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "ip -o link | wc -l; ip -o link show lo; ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok",
        ])
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0].trim(), "1", "only lo is expected: {}", out.stdout);
    assert!(lines[1].contains("UP"), "lo must be up: {}", out.stdout);
    assert_eq!(lines[2], "ping-ok", "{}", out.stdout);
    // On the default bridge lo is up too (next to eth0).
    let out = d
        .berth(&["run", "--rm", "busybox", "ping", "-c1", "-W2", "127.0.0.1"])
        .success();
    assert!(out.stdout.contains("1 packets received"), "{}", out.stdout);
}

/// `--add-runtime runc=/usr/sbin/runc`: `/info` lists it, `HostConfig.Runtime` picks it
/// (validated at create), and the container runs, logs and exits through runc.
#[test]
fn an_added_oci_runtime_runs_containers() {
    require_root!();
    const RUNC: &str = "/usr/sbin/runc";
    if !std::path::Path::new(RUNC).exists() {
        eprintln!("skipped: {RUNC} is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let d = Daemon::start_with(&["--add-runtime", &format!("runc={RUNC}")]);
    let r = d.api().post(
        "/images/load?quiet=1",
        Some(&busybox_archive("busybox:latest")),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let info = d.api().get("/info").json();
    assert_eq!(info["DefaultRuntime"], "berth");
    assert_eq!(info["Runtimes"]["runc"]["path"], RUNC, "{info}");
    assert!(info["Runtimes"]["berth"].is_object(), "{info}");

    let r = d.api().post(
        "/containers/create",
        Some(
            json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Runtime": "nope"}})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.message()
            .contains("unknown or invalid runtime name: nope"),
        "{}",
        r.message()
    );

    let id = create(
        &d,
        Some("viarunc"),
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "echo hi; exit 3"],
               "HostConfig": {"Runtime": "runc"}}),
    );
    assert_eq!(inspect(&d, &id)["HostConfig"]["Runtime"], "runc");
    start(&d, &id);
    assert_eq!(wait(&d, &id), 3);
    let logs = d.api().get(&format!("/containers/{id}/logs?stdout=1"));
    assert_eq!(demux(&logs.body).0, "hi\n");
    let dir = d.run_dir(&id);
    // The shim reports the exit, then cleans up, removing shim.pid last.
    until("the shim's clean-up", || !dir.join("shim.pid").exists());
    assert!(
        !dir.join("runtime-state").join(&id).exists(),
        "runc's state is deleted after the exit"
    );

    // Without a runtime, the default (embedded) one.
    let id = create(&d, None, json!({"Image": "busybox", "Cmd": ["true"]}));
    assert_eq!(inspect(&d, &id)["HostConfig"]["Runtime"], "berth");

    // The CLI path: `run --rm --runtime runc`, with berth if it has the flag, and docker's
    // CLI when installed.
    let out = d.berth(&["run", "--rm", "--runtime", "runc", "busybox", "echo", "hi"]);
    if out.code == 0 {
        assert_eq!(out.stdout, "hi\n");
    } else {
        eprintln!("berth run --runtime: {}", out.stderr);
    }
    if let Some(out) = d.docker(&["run", "--rm", "--runtime", "runc", "busybox", "echo", "hi"]) {
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "hi\n"),
            "{}",
            out.stderr
        );
    }
}

/// `--log-driver local`: rotated `local-logs/container.log*` files read in order, `tail`,
/// `timestamps`, and `logs -f` of a running container.
#[test]
fn local_log_driver_rotates_tails_and_follows() {
    require_root!();
    let d = daemon();
    let out = d
        .berth(&[
            "run",
            "--name",
            "loc",
            "--log-driver",
            "local",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=2",
            "busybox",
            "sh",
            "-c",
            "seq 1 500",
        ])
        .success();
    assert!(out.stdout.ends_with("499\n500\n"), "{}", out.stdout);
    let id = inspect(&d, "loc")["Id"].as_str().unwrap().to_string();
    let dir = d
        .data_root()
        .join("containers")
        .join(&id)
        .join("local-logs");
    assert!(dir.join("container.log").exists());
    // `local` compresses rotated files by default (the shim gzips beside the output).
    berth_e2e::containers::until("the rotated file to be compressed", || {
        !dir.join("container.log.1").exists()
    });
    assert!(dir.join("container.log.1.gz").exists());
    assert!(!dir.join("container.log.2.gz").exists());
    assert!(
        inspect(&d, "loc")["LogPath"]
            .as_str()
            .unwrap()
            .ends_with("local-logs/container.log")
    );
    let tail = d.berth(&["logs", "--tail", "5", "loc"]).success();
    assert_eq!(tail.stdout, "496\n497\n498\n499\n500\n");
    // All that is kept: the rotated file (at least 1 kB, which is 1000 bytes: max-size is
    // decimal, as Docker reads it; ~33 bytes an entry) and the live one, consecutive numbers
    // ending at 500.
    let all = d.berth(&["logs", "loc"]).success().stdout;
    let nums: Vec<u32> = all.lines().map(|l| l.parse().unwrap()).collect();
    assert!(nums.len() > 30 && nums.len() < 500, "{}", nums.len());
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{all}");
    assert_eq!(*nums.last().unwrap(), 500);
    let ts = d.berth(&["logs", "-t", "--tail", "2", "loc"]).success();
    let lines: Vec<&str> = ts.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", ts.stdout);
    for (l, n) in lines.iter().zip(["499", "500"]) {
        let (t, rest) = l.split_once(' ').unwrap();
        assert_eq!(rest, n);
        assert!(chrono_like(t), "{l}");
    }
    // Following a running container sees new lines.
    d.berth(&[
        "run",
        "-d",
        "--name",
        "locf",
        "--log-driver",
        "local",
        "busybox",
        "sh",
        "-c",
        "echo first; sleep 1; echo second; sleep 1000",
    ])
    .success();
    let mut child = std::process::Command::new(berth_e2e::daemon::binary("berth"))
        .arg("-H")
        .arg(d.host())
        .args(["logs", "-f", "locf"])
        .env("BERTH_CONFIG", d.dir().join("berth-config"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen, ["first", "second"]);
    d.berth(&["rm", "-f", "locf"]).success();
    // Bad options fail the create, as in Docker.
    let bad = d.berth(&[
        "create",
        "--log-driver",
        "local",
        "--log-opt",
        "max-file=0",
        "busybox",
    ]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("max-file"), "{}", bad.stderr);
    let gz = d.berth(&[
        "create",
        "--log-driver",
        "local",
        "--log-opt",
        "compress=yes",
        "busybox",
    ]);
    assert_ne!(gz.code, 0);
    assert!(gz.stderr.contains("compress"), "{}", gz.stderr);
}

/// `2026-11-22T21:01:45.123456789Z`
fn chrono_like(t: &str) -> bool {
    t.len() == 30 && t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.'
}

/// `HOME` is set as Docker sets it: from the user's passwd entry, `/` without one, and left
/// alone when the configuration gives it.
#[test]
fn home_follows_the_user() {
    require_root!();
    let d = daemon();
    let home = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "sh", "-c", "echo $HOME"]);
        d.berth(&a).success().stdout.trim().to_string()
    };
    assert_eq!(home(&[]), "/root");
    assert_eq!(home(&["--user", "www"]), "/var/www");
    assert_eq!(home(&["--user", "1234"]), "/");
    assert_eq!(home(&["-e", "HOME=/elsewhere"]), "/elsewhere");
    // An exec as another user gets that user's.
    d.berth(&["run", "-d", "--name", "homes", "busybox", "sleep", "100"])
        .success();
    let exec_home = |args: &[&str]| {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["homes", "sh", "-c", "echo $HOME"]);
        d.berth(&a).success().stdout.trim().to_string()
    };
    assert_eq!(exec_home(&[]), "/root");
    assert_eq!(exec_home(&["--user", "www"]), "/var/www");
    assert_eq!(exec_home(&["--user", "www", "-e", "HOME=/x"]), "/x");
    d.berth(&["rm", "-f", "homes"]).success();
}
