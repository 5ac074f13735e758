//! Swarm services on one daemon, beyond the basics of `swarm.rs`: jobs, rolling updates
//! (failure actions, rollback, start-first, health checks gating them), service and task
//! logs, and images pulled for tasks, through the API and the docker CLI.

use berth_e2e::containers::{daemon_with_busybox, exec_code, until};
use berth_e2e::swarm_setup::{
    create_service, docker_init_local, enc_filters, init_local, poll, service,
};
use berth_e2e::{Daemon, require_root};
use serde_json::{Value, json};

fn update(d: &Daemon, id: &str, f: impl FnOnce(&mut Value)) {
    let s = service(d, id);
    let mut spec = s["Spec"].clone();
    f(&mut spec);
    let r = d.api().post(
        &format!("/services/{id}/update?version={}", s["Version"]["Index"]),
        Some(spec.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn tasks(d: &Daemon, id: &str) -> Vec<Value> {
    let filters = json!({"service": [id]});
    let r = d
        .api()
        .get(&format!("/tasks?filters={}", enc_filters(&filters)));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().unwrap().clone()
}

fn in_state(d: &Daemon, id: &str, state: &str) -> Vec<Value> {
    tasks(d, id)
        .into_iter()
        .filter(|t| t["Status"]["State"] == state)
        .collect()
}

fn update_state(d: &Daemon, id: &str) -> (String, String) {
    let s = service(d, id);
    (
        s["UpdateStatus"]["State"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        s["UpdateStatus"]["Message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Updates wait out their monitor periods: allow more than `until`'s 30 s.
fn until_long(what: &str, f: impl FnMut() -> bool) {
    poll(
        what,
        std::time::Duration::from_secs(90),
        std::time::Duration::from_millis(100),
        f,
    );
}

fn env_of(task: &Value) -> Value {
    task["Spec"]["ContainerSpec"]["Env"].clone()
}

#[test]
fn jobs_run_to_completion_and_run_again_when_updated() {
    require_root!();
    let d = daemon_with_busybox();
    init_local(&d);
    let id = create_service(
        &d,
        json!({
            "Name": "job",
            "Mode": {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 3}},
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest", "Args": ["true"]}},
        }),
    );
    until("3 completed tasks", || {
        in_state(&d, &id, "complete").len() == 3
    });
    let s = service(&d, &id);
    assert_eq!(s["JobStatus"]["JobIteration"]["Index"], 0, "{s}");
    assert!(
        tasks(&d, &id)
            .iter()
            .all(|t| t["DesiredState"] == "complete" && t["JobIteration"]["Index"] == 0)
    );
    // Completed tasks are not restarted.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(tasks(&d, &id).len(), 3);
    let r = d.api().get("/services?status=true");
    let listed = &r.json()[0];
    assert_eq!(
        listed["ServiceStatus"],
        json!({"RunningTasks": 0, "DesiredTasks": 2, "CompletedTasks": 3})
    );
    // An update runs the job again, as a new iteration.
    update(&d, &id, |spec| {
        spec["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["N=2"])
    });
    until("the second iteration", || {
        let t = tasks(&d, &id);
        t.iter()
            .filter(|t| t["JobIteration"]["Index"] == 1 && t["Status"]["State"] == "complete")
            .count()
            == 3
    });
    // A mode change is refused as swarmkit does.
    let s = service(&d, &id);
    let mut spec = s["Spec"].clone();
    spec["Mode"] = json!({"Replicated": {"Replicas": 1}});
    let r = d.api().post(
        &format!("/services/{id}/update?version={}", s["Version"]["Index"]),
        Some(spec.to_string().as_bytes()),
    );
    assert_eq!(r.status, 501, "{}", r.text());
    assert_eq!(
        r.message(),
        "rpc error: code = Unimplemented desc = service mode change is not allowed"
    );

    let id = create_service(
        &d,
        json!({
            "Name": "gjob",
            "Mode": {"GlobalJob": {}},
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest", "Args": ["true"]}},
        }),
    );
    until("the global job's task complete", || {
        in_state(&d, &id, "complete").len() == 1
    });
    let r = d
        .api()
        .get("/services?status=true&filters=%7B%22mode%22%3A%5B%22global-job%22%5D%7D");
    let listed = r.json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["ServiceStatus"]["CompletedTasks"], 1);
}

#[test]
fn docker_cli_runs_jobs() {
    require_root!();
    let d = daemon_with_busybox();
    if !docker_init_local(&d) {
        return;
    }
    let out = d
        .docker(&[
            "service",
            "create",
            "--name",
            "job",
            "--mode",
            "replicated-job",
            "--replicas",
            "3",
            "--max-concurrent",
            "2",
            "busybox:latest",
            "true",
        ])
        .unwrap()
        .success();
    assert!(out.stdout.contains("job complete"), "{}", out.stdout);
    let out = d.docker(&["service", "ls"]).unwrap().success();
    assert!(out.stdout.contains("replicated job"), "{}", out.stdout);
    assert!(out.stdout.contains("0/2 (3/3 completed)"), "{}", out.stdout);
    let out = d.docker(&["service", "ps", "job"]).unwrap().success();
    let complete = out
        .stdout
        .lines()
        .filter(|l| l.contains("Complete"))
        .count();
    assert_eq!(complete, 3, "{}", out.stdout);
    let out = d
        .docker(&[
            "service",
            "create",
            "--name",
            "gjob",
            "--mode",
            "global-job",
            "busybox:latest",
            "true",
        ])
        .unwrap()
        .success();
    assert!(out.stdout.contains("job complete"), "{}", out.stdout);
    let out = d.docker(&["service", "ls"]).unwrap().success();
    assert!(out.stdout.contains("0/0 (1/1 completed)"), "{}", out.stdout);
}

fn sleeper(name: &str, replicas: u64, update_config: Value) -> Value {
    json!({
        "Name": name,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"], "Env": ["V=1"], "StopGracePeriod": 1_000_000_000u64},
            "RestartPolicy": {"Condition": "none"}
        },
        "UpdateConfig": update_config,
        "RollbackConfig": {"Parallelism": 0, "Monitor": 1_000_000_000u64},
    })
}

#[test]
fn failing_updates_pause_or_roll_back_and_rollback_restores_the_previous_spec() {
    require_root!();
    let d = daemon_with_busybox();
    init_local(&d);
    // Never healthy: the replacement fails before it ever runs, so the update cannot have
    // moved on to the next slot when the failure is seen.
    let bad = |spec: &mut Value| {
        spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"] =
            json!({"Test": ["CMD", "false"], "Interval": 200_000_000u64, "Retries": 1});
        spec["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["V=2"]);
    };
    // pause: the first failing replacement stops the update.
    let id = create_service(
        &d,
        sleeper(
            "paused",
            2,
            json!({"Parallelism": 1, "FailureAction": "pause"}),
        ),
    );
    until("2 running", || in_state(&d, &id, "running").len() == 2);
    update(&d, &id, bad);
    until_long("the update paused", || update_state(&d, &id).0 == "paused");
    let (_, message) = update_state(&d, &id);
    let failed = in_state(&d, &id, "failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        message,
        format!(
            "update paused due to failure or early termination of task {}",
            failed[0]["ID"].as_str().unwrap()
        )
    );
    // Failed at once (out of rotation), dockerd's words once its container is stopped.
    let mut err = String::new();
    until("the failed task's final error", || {
        let failed = in_state(&d, &id, "failed");
        err = failed[0]["Status"]["Err"].as_str().unwrap().to_string();
        err.starts_with("task: non-zero exit (")
    });
    assert!(err.ends_with("): dockerexec: unhealthy container"), "{err}");
    let running = in_state(&d, &id, "running");
    assert_eq!(running.len(), 1, "the other slot keeps the old spec");
    assert_eq!(env_of(&running[0]), json!(["V=1"]));
    // `service rollback`: the previous spec, with RollbackConfig.
    let s = service(&d, &id);
    let r = d.api().post(
        &format!(
            "/services/{id}/update?version={}&rollback=previous",
            s["Version"]["Index"]
        ),
        Some(s["Spec"].to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (state, message) = update_state(&d, &id);
    assert_eq!(
        (state.as_str(), message.as_str()),
        ("rollback_started", "manually requested rollback")
    );
    until_long("the rollback completed", || {
        update_state(&d, &id) == ("rollback_completed".into(), "rollback completed".into())
    });
    let running = in_state(&d, &id, "running");
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|t| env_of(t) == json!(["V=1"])));

    // rollback: the failure brings the previous spec back by itself.
    let id = create_service(
        &d,
        sleeper(
            "rolled",
            2,
            json!({"Parallelism": 1, "FailureAction": "rollback", "Monitor": 1_000_000_000u64}),
        ),
    );
    until("2 running", || in_state(&d, &id, "running").len() == 2);
    update(&d, &id, bad);
    until_long("the automatic rollback completed", || {
        update_state(&d, &id).0 == "rollback_completed"
    });
    let s = service(&d, &id);
    assert_eq!(
        s["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"],
        json!(["V=1"])
    );
    assert!(s.get("PreviousSpec").is_none(), "{s}");
    until("2 running", || {
        let running = in_state(&d, &id, "running");
        running.len() == 2 && running.iter().all(|t| env_of(t) == json!(["V=1"]))
    });
}

#[test]
fn health_checks_gate_start_first_updates() {
    require_root!();
    let d = daemon_with_busybox();
    init_local(&d);
    let mut spec = sleeper(
        "web",
        1,
        json!({"Parallelism": 1, "Order": "start-first", "Monitor": 1_000_000_000u64}),
    );
    let cs = &mut spec["TaskTemplate"]["ContainerSpec"];
    cs["Args"] = json!(["sh", "-c", "touch /tmp/ok; exec sleep 1000"]);
    cs["Healthcheck"] = json!({"Test": ["CMD", "test", "-f", "/tmp/ok"], "Interval": 300_000_000u64, "Retries": 1000});
    let id = create_service(&d, spec);
    until("the task healthy and running", || {
        in_state(&d, &id, "running").len() == 1
    });
    let old = in_state(&d, &id, "running").remove(0);
    // The replacement is never healthy by itself: it stays `starting`, the old task runs on.
    update(&d, &id, |spec| {
        spec["TaskTemplate"]["ContainerSpec"]["Args"] = json!(["sleep", "1000"]);
    });
    until("the replacement starting", || {
        in_state(&d, &id, "starting").len() == 1
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let new = in_state(&d, &id, "starting");
    assert_eq!(new.len(), 1, "still starting: {:?}", tasks(&d, &id));
    let running = in_state(&d, &id, "running");
    assert_eq!(running.len(), 1);
    assert_eq!(
        running[0]["ID"], old["ID"],
        "start-first: the old task runs"
    );
    assert_eq!(update_state(&d, &id).0, "updating");
    // Healthy: the replacement runs, the old task goes, the update completes.
    let container = new[0]["Status"]["ContainerStatus"]["ContainerID"]
        .as_str()
        .unwrap()
        .to_string();
    let r = d.api().post(
        &format!("/containers/{container}/exec"),
        Some(br#"{"Cmd": ["touch", "/tmp/ok"]}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let exec = r.json()["Id"].as_str().unwrap().to_string();
    let r = d
        .api()
        .post(&format!("/exec/{exec}/start"), Some(br#"{"Detach": true}"#));
    assert!(r.status < 300, "{}", r.text());
    until_long("the update completed", || {
        update_state(&d, &id) == ("completed".into(), "update completed".into())
    });
    until("the old task stopped", || {
        in_state(&d, &id, "running").len() == 1
    });
    let running = in_state(&d, &id, "running");
    assert_eq!(running[0]["ID"], new[0]["ID"]);
    assert!(
        tasks(&d, &id)
            .iter()
            .any(|t| t["ID"] == old["ID"] && t["Status"]["State"] == "shutdown")
    );
}

#[test]
fn docker_cli_update_progress_ends_and_reports_a_pause() {
    require_root!();
    let d = daemon_with_busybox();
    if !docker_init_local(&d) {
        return;
    }
    d.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "--update-monitor",
        "1s",
        "--restart-condition",
        "none",
        "busybox:latest",
        "sleep",
        "1000",
    ])
    .unwrap()
    .success();
    let out = d
        .docker(&[
            "service",
            "update",
            "--detach=false",
            "--env-add",
            "X=2",
            "web",
        ])
        .unwrap()
        .success();
    assert!(
        out.stdout.contains("Service web converged") || out.stdout.contains("converged"),
        "{}",
        out.stdout
    );
    let out = d
        .docker(&[
            "service",
            "inspect",
            "--format",
            "{{.UpdateStatus.State}} {{.UpdateStatus.Message}}",
            "web",
        ])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), "completed update completed");
    let out = d
        .docker(&[
            "service",
            "update",
            "--detach=false",
            "--args",
            "false",
            "web",
        ])
        .unwrap()
        .failure();
    assert!(
        out.stderr.contains(
            "service update paused: update paused due to failure or early termination of task"
        ),
        "{}",
        out.stderr
    );
    let out = d
        .docker(&["service", "rollback", "--detach=false", "web"])
        .unwrap()
        .success();
    assert!(out.stdout.contains("rollback"), "{}", out.stdout);
    // The CLI stops watching after the update's monitor; the rollback's own monitor (5 s by
    // default) may still run, as with dockerd.
    until_long("the rollback completed", || {
        let out = d
            .docker(&[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                "web",
            ])
            .unwrap()
            .success();
        out.stdout.trim() == "rollback_completed"
    });
}

fn talker(name: &str) -> Value {
    json!({
        "Name": name,
        "Mode": {"Replicated": {"Replicas": 2}},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "busybox:latest",
                "Args": ["sh", "-c", "echo out-1; echo err-1 >&2; echo out-2; exec sleep 1000"],
                "StopGracePeriod": 1_000_000_000u64
            }
        }
    })
}

#[test]
fn service_and_task_logs_carry_their_context() {
    require_root!();
    let d = daemon_with_busybox();
    init_local(&d);
    let id = create_service(&d, talker("talk"));
    let node = d.api().get("/info").json()["Swarm"]["NodeID"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/services/{id}/logs?stdout=1&stderr=1&details=1");
    until("both tasks' output", || {
        let r = d.api().get(&path);
        r.status == 200 && berth_e2e::containers::demux(&r.body).0.lines().count() == 4
    });
    let r = d.api().get(&path);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/vnd.docker.multiplexed-stream")
    );
    let (out, err) = berth_e2e::containers::demux(&r.body);
    let running = in_state(&d, &id, "running");
    for t in &running {
        let ctx = format!(
            "com.docker.swarm.node.id={node},com.docker.swarm.service.id={id},com.docker.swarm.task.id={}",
            t["ID"].as_str().unwrap()
        );
        assert!(out.contains(&format!("{ctx} out-1\n")), "{out}");
        assert!(out.contains(&format!("{ctx} out-2\n")), "{out}");
        assert!(err.contains(&format!("{ctx} err-1\n")), "{err}");
    }
    // tail is per task; timestamps come first; without details, the bare lines.
    let r = d
        .api()
        .get(&format!("/services/{id}/logs?stdout=1&tail=1&timestamps=1"));
    let (out, _) = berth_e2e::containers::demux(&r.body);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in lines {
        let (ts, rest) = l.split_once(' ').unwrap();
        assert!(
            chrono_like(ts) && rest == "out-2",
            "a timestamped bare line: {l}"
        );
    }
    let task = running[0]["ID"].as_str().unwrap();
    let r = d
        .api()
        .get(&format!("/tasks/{task}/logs?stdout=1&stderr=1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let (out, err) = berth_e2e::containers::demux(&r.body);
    assert_eq!((out.as_str(), err.as_str()), ("out-1\nout-2\n", "err-1\n"));
    let r = d.api().get("/services/nosuch/logs?stdout=1");
    assert_eq!(r.status, 404);
    assert_eq!(r.message(), "service nosuch not found");
    let r = d.api().get(&format!("/services/{id}/logs"));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "Bad parameters: you must choose at least one stream"
    );
}

/// `2026-01-02T03:04:05.123456789Z`.
fn chrono_like(ts: &str) -> bool {
    ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T'
}

#[test]
fn docker_cli_service_logs_name_each_task() {
    require_root!();
    let d = daemon_with_busybox();
    if !docker_init_local(&d) {
        return;
    }
    let id = create_service(&d, talker("talk"));
    until("both tasks' output", || {
        let r = d.api().get(&format!("/services/{id}/logs?stdout=1"));
        berth_e2e::containers::demux(&r.body).0.lines().count() == 4
    });
    let hostname = d.api().get("/info").json()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    let out = d.docker(&["service", "logs", "talk"]).unwrap().success();
    for t in in_state(&d, &id, "running") {
        let prefix = format!(
            "talk.{}.{}@{hostname}",
            t["Slot"],
            &t["ID"].as_str().unwrap()[..12]
        );
        assert!(
            out.stdout.contains(&format!("{prefix}    | out-1")),
            "{}",
            out.stdout
        );
        assert!(
            out.stderr.contains(&format!("{prefix}    | err-1")),
            "{}",
            out.stderr
        );
    }
    let out = d
        .docker(&["service", "logs", "--raw", "--no-trunc", "talk"])
        .unwrap()
        .success();
    assert_eq!(
        out.stdout.lines().filter(|l| *l == "out-1").count(),
        2,
        "{}",
        out.stdout
    );
    // Following: lines written later arrive.
    let mut child = std::process::Command::new(berth_e2e::docker_cli().unwrap())
        .args(["service", "logs", "-f", "--tail", "0", "talk"])
        .env("DOCKER_HOST", d.host())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (attached, seen_later) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let later = lines.any(|l| l.is_ok_and(|l| l.ends_with("| later")));
        let _ = attached.send(());
        // A task that starts while following is followed too.
        let new_task =
            lines.any(|l| l.is_ok_and(|l| l.starts_with("talk.3.") && l.ends_with("| out-1")));
        later && new_task
    });
    let container = in_state(&d, &id, "running")[0]["Status"]["ContainerStatus"]["ContainerID"]
        .as_str()
        .unwrap()
        .to_string();
    // Through the container's main process, so the lines land in its log; again and again,
    // because nothing tells when the CLI's follow has attached (`--tail 0` skips what came before).
    let r = d.api().post(
        &format!("/containers/{container}/exec"),
        Some(br#"{"Cmd": ["sh", "-c", "while true; do echo later > /proc/1/fd/1; sleep 0.2; done"]}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let exec = r.json()["Id"].as_str().unwrap().to_string();
    d.api()
        .post(&format!("/exec/{exec}/start"), Some(br#"{"Detach": true}"#));
    // The new task starts only once the follow is known to be attached.
    let _ = seen_later.recv_timeout(std::time::Duration::from_secs(30));
    let s = service(&d, &id);
    let mut spec = s["Spec"].clone();
    spec["Mode"]["Replicated"]["Replicas"] = json!(3);
    let r = d.api().post(
        &format!("/services/{id}/update?version={}", s["Version"]["Index"]),
        Some(spec.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().ok();
    child.wait().ok();
    assert!(reader.join().unwrap(), "the followed lines");
}

fn registry_auth_header(username: &str, password: &str, host: &str) -> String {
    berth_e2e::registry::base64_encode(
        json!({"username": username, "password": password, "serveraddress": host})
            .to_string()
            .as_bytes(),
    )
}

#[test]
fn tasks_pull_their_image_with_the_services_registry_credentials() {
    require_root!();
    let Some(registry) = berth_e2e::registry::Registry::start_with_basic_auth("swarm_task_pull")
    else {
        return;
    };
    let host = registry.host();
    let d = daemon_with_busybox();
    let image = format!("{host}/private/bb:1");
    let right = registry_auth_header(
        berth_e2e::registry::BASIC_USER,
        berth_e2e::registry::BASIC_PASSWORD,
        &host,
    );
    let r = d.api().post(
        &format!("/images/busybox:latest/tag?repo={host}/private/bb&tag=1"),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.api().request(
        "POST",
        &format!("/images/{host}/private/bb/push?tag=1"),
        &[("X-Registry-Auth", &right)],
        None,
    );
    assert!(
        r.text().contains("Pushed") || r.text().contains("exists"),
        "{}",
        r.text()
    );
    let untag = || {
        let r = d.api().delete(&format!("/images/{image}"));
        assert_eq!(r.status, 200, "{}", r.text());
    };
    untag();
    init_local(&d);
    let spec = |name: &str| {
        json!({
            "Name": name,
            "TaskTemplate": {
                "ContainerSpec": {"Image": image, "Args": ["sleep", "1000"], "StopGracePeriod": 1_000_000_000u64},
                "RestartPolicy": {"Condition": "none"}
            }
        })
    };
    // Without credentials the pull fails and the task is rejected.
    let id = create_service(&d, spec("anon"));
    until("the task rejected", || {
        in_state(&d, &id, "rejected").len() == 1
    });
    let err = in_state(&d, &id, "rejected")[0]["Status"]["Err"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.starts_with(&format!("No such image: {image}")), "{err}");
    // With them (X-Registry-Auth on create, as `--with-registry-auth` sends), it runs.
    let r = d.api().request(
        "POST",
        "/services/create",
        &[
            ("X-Registry-Auth", &right),
            ("Content-Type", "application/json"),
        ],
        Some(spec("private").to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["ID"].as_str().unwrap().to_string();
    until("the task running", || {
        in_state(&d, &id, "running").len() == 1
    });
    let r = d.api().get(&format!("/images/{image}/json"));
    assert_eq!(r.status, 200, "the image was pulled: {}", r.text());
    let shown = service(&d, &id).to_string();
    assert!(
        !shown.contains(&right) && !shown.contains("RegistryAuth"),
        "{shown}"
    );

    // The docker CLI: login, then `service create --with-registry-auth`.
    d.api().delete(&format!("/services/{id}"));
    until("the task's container gone", || {
        d.api()
            .get("/containers/json?all=1")
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    });
    untag();
    let Some(out) = d.docker_with_stdin(
        &[
            "login",
            "-u",
            berth_e2e::registry::BASIC_USER,
            "--password-stdin",
            &host,
        ],
        Some(berth_e2e::registry::BASIC_PASSWORD.as_bytes()),
    ) else {
        return;
    };
    out.success();
    d.docker(&[
        "service",
        "create",
        "--detach",
        "--with-registry-auth",
        "--name",
        "cli",
        "--restart-condition",
        "none",
        &image,
        "sleep",
        "1000",
    ])
    .unwrap()
    .success();
    until("the CLI's task running", || {
        let out = d
            .docker(&["service", "ps", "--format", "{{.CurrentState}}", "cli"])
            .unwrap()
            .success();
        out.stdout.starts_with("Running")
    });
}

#[test]
fn docker_cli_tasks_get_capabilities_and_host_mode_ports() {
    require_root!();
    let d = daemon_with_busybox();
    if !docker_init_local(&d) {
        return;
    }
    let port = berth_e2e::registry::free_port();
    d.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--publish",
        &format!("mode=host,target=80,published={port}"),
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "CHOWN",
        "busybox:latest",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ])
    .unwrap()
    .success();
    let mut container = String::new();
    until("the task running", || {
        let running = in_state(&d, "web", "running");
        if let Some(t) = running.first() {
            container = t["Status"]["ContainerStatus"]["ContainerID"]
                .as_str()
                .unwrap()
                .to_string();
        }
        !running.is_empty()
    });
    // The published port answers on this node.
    until("the published port answering", || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.write_all(b"GET /hostname HTTP/1.0\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.starts_with("HTTP/1.")
    });
    // NET_ADMIN added, CHOWN dropped.
    assert_eq!(
        exec_code(&d, &container, &["ip", "link", "set", "lo", "mtu", "65000"]),
        0
    );
    assert_ne!(exec_code(&d, &container, &["chown", "1", "/tmp"]), 0);
    let inspect = d.api().get(&format!("/containers/{container}/json")).json();
    assert_eq!(
        inspect["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    // The task says which host port it holds (`service ps`'s PORTS).
    let out = d
        .docker(&["service", "ps", "--format", "{{.Ports}}", "web"])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), format!("*:{port}->80/tcp"));
}

#[test]
fn berth_cli_runs_jobs_shows_logs_and_rolls_back() {
    require_root!();
    let d = daemon_with_busybox();
    d.berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
        .success();
    d.berth(&[
        "service",
        "create",
        "--name",
        "job",
        "--mode",
        "replicated-job",
        "--replicas",
        "2",
        "busybox:latest",
        "sh",
        "-c",
        "echo done",
    ])
    .success();
    until("the job complete", || {
        d.berth(&["service", "ls"])
            .success()
            .stdout
            .contains("0/2 (2/2 completed)")
    });
    let out = d.berth(&["service", "ls"]).success();
    assert!(out.stdout.contains("replicated job"), "{}", out.stdout);
    let hostname = d.api().get("/info").json()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    let out = d.berth(&["service", "logs", "job"]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    for l in lines {
        assert!(
            l.starts_with("job.")
                && l.contains(&format!("@{hostname}"))
                && l.ends_with("    | done"),
            "{l}"
        );
    }
    let out = d.berth(&["service", "logs", "--raw", "job"]).success();
    assert_eq!(out.stdout, "done\ndone\n");

    d.berth(&[
        "service",
        "create",
        "--name",
        "web",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "1s",
        "--rollback-monitor",
        "1s",
        "busybox:latest",
        "sleep",
        "1000",
    ])
    .success();
    until("web running", || in_state(&d, "web", "running").len() == 1);
    d.berth(&["service", "update", "--env-add", "V=2", "web"])
        .success();
    until_long("the update completed", || {
        update_state(&d, "web").0 == "completed"
    });
    d.berth(&["service", "rollback", "web"]).success();
    until_long("the rollback completed", || {
        update_state(&d, "web").0 == "rollback_completed"
    });
    let s = service(&d, "web");
    assert!(
        s["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"].is_null()
            || s["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == json!([]),
        "{s}"
    );
    let out = d
        .berth(&[
            "service",
            "create",
            "--mode",
            "global",
            "--max-concurrent",
            "2",
            "busybox:latest",
        ])
        .failure();
    assert!(
        out.stderr
            .contains("max-concurrent can only be used with replicated-job mode"),
        "{}",
        out.stderr
    );
}
