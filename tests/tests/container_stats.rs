//! Stats, update and health checks end to end: a real berthd runs busybox containers (root)
//! and the real docker CLI reads `docker stats`, sends `docker update` and shows health in
//! `docker ps`.

use std::time::{Duration, Instant};

use berth_e2e::{Daemon, busybox_archive};
use serde_json::Value;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A daemon with `busybox:latest` loaded, or `None` (skipped) without root or docker.
fn daemon(test: &str) -> Option<Daemon> {
    if !is_root() || berth_e2e::docker_cli().is_none() {
        eprintln!("skipped {test}: needs root and the docker CLI");
        return None;
    }
    let d = Daemon::start();
    let r = d.api().post(
        "/images/load?quiet=1",
        Some(&busybox_archive("busybox:latest")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    Some(d)
}

fn docker(d: &Daemon, args: &[&str]) -> String {
    d.docker(args).unwrap().success().stdout
}

fn inspect(d: &Daemon, id: &str) -> Value {
    let r = d.api().get(&format!("/containers/{id}/json"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The container's directory in one cgroup v1 controller (or the unified v2 one).
fn cgroup_file(d: &Daemon, id: &str, controller: &str, file: &str) -> String {
    let spec: Value =
        serde_json::from_slice(&std::fs::read(d.run_dir(id).join("config.json")).unwrap()).unwrap();
    let rel = spec["linux"]["cgroupsPath"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let root = std::path::Path::new("/sys/fs/cgroup");
    let dir = if root.join("cgroup.controllers").exists() {
        root.join(&rel)
    } else {
        root.join(controller).join(&rel)
    };
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

#[test]
fn docker_stats_and_update() {
    let Some(d) = daemon("docker_stats_and_update") else {
        return;
    };
    let id = docker(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--memory",
            "256m",
            "busybox",
            "sh",
            "-c",
            "head -c 20000000 /dev/zero > /dev/shm/f; yes > /dev/null & sleep 1000",
        ],
    )
    .trim()
    .to_string();

    // One object with precpu from a second earlier.
    let r = d.api().get("/containers/web/stats?stream=false");
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    assert_eq!(s["name"], "/web");
    assert_eq!(s["id"], id.as_str());
    let total = s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap();
    let pre = s["precpu_stats"]["cpu_usage"]["total_usage"]
        .as_u64()
        .unwrap();
    assert!(total > pre && pre > 0, "{s}");
    assert!(
        s["cpu_stats"]["system_cpu_usage"].as_u64().unwrap()
            > s["precpu_stats"]["system_cpu_usage"].as_u64().unwrap()
    );
    assert_eq!(s["memory_stats"]["limit"], 256u64 << 20);
    assert!(s["memory_stats"]["usage"].as_u64().unwrap() > 0);
    assert!(s["pids_stats"]["current"].as_u64().unwrap() >= 2, "{s}");
    assert_ne!(s["preread"], "0001-01-01T00:00:00Z");
    assert!(s.get("storage_stats").is_some() && s.get("num_procs").is_some());

    let r = d
        .api()
        .get("/containers/web/stats?stream=false&one-shot=true");
    let s = r.json();
    assert_eq!(s["preread"], "0001-01-01T00:00:00Z");
    assert!(s["precpu_stats"]["cpu_usage"]["total_usage"] == 0, "{s}");
    assert_eq!(
        d.api()
            .get("/containers/web/stats?stream=true&one-shot=true")
            .status,
        400
    );
    assert_eq!(d.api().get("/containers/nope/stats?stream=0").status, 404);

    let out = docker(
        &d,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.BlockIO}}|{{.PIDs}}",
            "web",
        ],
    );
    eprintln!("docker stats: {out}");
    let cols: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(cols[0], "web");
    let cpu: f64 = cols[1].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 20.0 && cpu <= 205.0, "a spinning yes: {out}");
    assert!(cols[2].ends_with("/ 256MiB"), "{out}");
    assert!(cols[6] == "2" || cols[6] == "3", "{out}");

    // As Docker records it: a memory limit without a swap limit allows as much swap again.
    assert_eq!(inspect(&d, "web")["HostConfig"]["MemorySwap"], 512u64 << 20);
    // docker update: Docker's rule on memory without swap, then the requested update.
    let err = d
        .docker(&["update", "--memory", "600m", "web"])
        .unwrap()
        .failure();
    assert!(
        err.stderr
            .contains("Memory limit should be smaller than already set memoryswap limit"),
        "{}",
        err.stderr
    );
    docker(
        &d,
        &[
            "update",
            "--memory",
            "128m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "40",
            "web",
        ],
    );
    let hc = &inspect(&d, "web")["HostConfig"];
    assert_eq!(hc["Memory"], 128u64 << 20);
    assert_eq!(hc["NanoCpus"], 500_000_000u64);
    assert_eq!(hc["PidsLimit"], 40);
    assert_eq!(
        cgroup_file(&d, &id, "memory", "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(cgroup_file(&d, &id, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file(&d, &id, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup_file(&d, &id, "pids", "pids.max"), "40");
    let err = d
        .docker(&["update", "--cpu-quota", "20000", "web"])
        .unwrap()
        .failure();
    assert!(
        err.stderr.contains(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        ),
        "{}",
        err.stderr
    );
    let err = d
        .docker(&["update", "--memory", "6m", "--memory-swap", "6m", "web"])
        .unwrap()
        .failure();
    assert!(
        err.stderr.contains("memory.limit_in_bytes") || err.stderr.contains("memory.max"),
        "the kernel refuses a limit below the usage: {}",
        err.stderr
    );
    assert_eq!(inspect(&d, "web")["HostConfig"]["Memory"], 128u64 << 20);
    docker(&d, &["update", "--restart", "on-failure:3", "web"]);
    let hc = &inspect(&d, "web")["HostConfig"];
    assert_eq!(hc["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(hc["RestartPolicy"]["MaximumRetryCount"], 3);

    // CPU limit in effect: about half a CPU.
    std::thread::sleep(Duration::from_millis(1500));
    let out = docker(
        &d,
        &["stats", "--no-stream", "--format", "{{.CPUPerc}}", "web"],
    );
    let cpu: f64 = out.trim().trim_end_matches('%').parse().unwrap();
    assert!(cpu < 65.0, "limited to 0.5 CPU: {out}");

    // Stopped: zeroed stats, at once.
    docker(&d, &["stop", "-t", "0", "web"]);
    let s = d.api().get("/containers/web/stats?stream=false").json();
    assert_eq!(s["read"], "0001-01-01T00:00:00Z");
    assert_eq!(s["name"], "/web");
    assert_eq!(s["memory_stats"], serde_json::json!({}));
    docker(&d, &["rm", "-f", "web"]);
}

fn health(d: &Daemon, name: &str) -> Value {
    inspect(d, name)["State"]["Health"].clone()
}

/// An RFC 3339 UTC time with its fraction padded to nanoseconds, so that two of them compare as
/// strings (Go's format drops the fraction's trailing zeros).
fn sortable_time(t: &str) -> String {
    let t = t.trim_end_matches('Z');
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    format!("{secs}.{frac:0<9}")
}

fn ps_status(d: &Daemon, name: &str) -> String {
    docker(
        d,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.Status}}",
        ],
    )
    .trim()
    .to_string()
}

#[test]
fn health_checks() {
    let Some(mut d) = daemon("health_checks") else {
        return;
    };
    docker(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "hc",
            "--health-cmd",
            "test -e /tmp/ok && echo ok",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            "busybox",
            "sh",
            "-c",
            "sleep 2; touch /tmp/ok; sleep 1000",
        ],
    );
    assert_eq!(health(&d, "hc")["Status"], "starting");
    assert!(ps_status(&d, "hc").ends_with("(health: starting)"));
    until("unhealthy", Duration::from_secs(10), || {
        health(&d, "hc")["Status"] == "unhealthy"
    });
    assert!(
        ps_status(&d, "hc").ends_with("(unhealthy)"),
        "{}",
        ps_status(&d, "hc")
    );
    until("healthy", Duration::from_secs(10), || {
        health(&d, "hc")["Status"] == "healthy"
    });
    let h = health(&d, "hc");
    assert!(ps_status(&d, "hc").ends_with("(healthy)"));
    assert_eq!(h["FailingStreak"], 0);
    let log = h["Log"].as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5, "{h}");
    let last = log.last().unwrap();
    assert_eq!(last["ExitCode"], 0);
    assert_eq!(last["Output"], "ok\n");
    assert!(last["Start"].as_str().unwrap() <= last["End"].as_str().unwrap());
    let out = docker(
        &d,
        &["ps", "--filter", "health=healthy", "--format", "{{.Names}}"],
    );
    assert_eq!(out.trim(), "hc");
    let out = docker(
        &d,
        &[
            "ps",
            "--filter",
            "health=unhealthy",
            "--format",
            "{{.Names}}",
        ],
    );
    assert_eq!(out.trim(), "");
    until("five results", Duration::from_secs(10), || {
        health(&d, "hc")["Log"].as_array().unwrap().len() == 5
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(health(&d, "hc")["Log"].as_array().unwrap().len(), 5);

    // `until` in whole seconds: one second ahead, or an event later in this same second is cut
    // off (the stream ends once that time has passed).
    let until_ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let ev = d
        .api()
        .get(&format!("/events?since=0&until={until_ts}"))
        .json_lines();
    let actions: Vec<&str> = ev
        .iter()
        .filter(|e| e["Actor"]["Attributes"]["name"] == "hc")
        .filter_map(|e| e["Action"].as_str())
        .filter(|a| a.starts_with("health_status"))
        .collect();
    assert_eq!(
        actions,
        ["health_status: unhealthy", "health_status: healthy"]
    );
    // Every probe is an exec in the event stream too, with its exit code.
    let dies: Vec<&Value> = ev
        .iter()
        .filter(|e| e["Actor"]["Attributes"]["name"] == "hc")
        .filter(|e| {
            e["Action"]
                .as_str()
                .is_some_and(|a| a.starts_with("exec_die: "))
        })
        .collect();
    assert!(dies.len() >= 5, "{dies:?}");
    assert!(
        dies.iter()
            .all(|e| e["Actor"]["Attributes"]["execID"].is_string())
    );

    // Timeouts fail with -1; start interval during the start period.
    docker(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "slow",
            "--health-cmd",
            "sleep 5",
            "--health-interval",
            "200ms",
            "--health-timeout",
            "300ms",
            "--health-retries",
            "1",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    until("slow unhealthy", Duration::from_secs(10), || {
        health(&d, "slow")["Status"] == "unhealthy"
    });
    let log = health(&d, "slow")["Log"].clone();
    assert_eq!(log[0]["ExitCode"], -1);
    assert_eq!(log[0]["Output"], "Health check exceeded timeout (300ms)");

    docker(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "quick",
            "--health-cmd",
            "true",
            "--health-interval",
            "1h",
            "--health-start-period",
            "30s",
            "--health-start-interval",
            "100ms",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    until("quick healthy", Duration::from_secs(5), || {
        health(&d, "quick")["Status"] == "healthy"
    });

    // Stopping ends the checks (unhealthy, as Docker); starting begins again.
    docker(&d, &["stop", "-t", "0", "quick"]);
    assert_eq!(health(&d, "quick")["Status"], "unhealthy");
    docker(&d, &["start", "quick"]);
    assert_eq!(health(&d, "quick")["Status"], "starting");
    until("quick healthy again", Duration::from_secs(5), || {
        health(&d, "quick")["Status"] == "healthy"
    });

    // An adopted container gets its checks back: it starts again from "starting", and a check
    // made after the restart makes it healthy. With a 200 ms interval that check may already
    // have run by the first inspect on a loaded machine, so "healthy" then must come from it.
    let last_start = |h: &serde_json::Value| {
        h["Log"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|e| e["Start"].as_str())
            .map(sortable_time)
            .unwrap_or_default()
    };
    let before = last_start(&health(&d, "hc"));
    d.kill_hard();
    d.start_again();
    let h = health(&d, "hc");
    assert!(
        h["Status"] == "starting" || (h["Status"] == "healthy" && last_start(&h) > before),
        "{h}"
    );
    until("h healthy after adoption", Duration::from_secs(10), || {
        let h = health(&d, "hc");
        h["Status"] == "healthy" && last_start(&h) > before
    });

    // Pausing stops the checks (unhealthy, as Docker's); unpausing resumes them.
    docker(&d, &["pause", "hc"]);
    assert_eq!(health(&d, "hc")["Status"], "unhealthy");
    docker(&d, &["unpause", "hc"]);
    until("hc healthy after unpause", Duration::from_secs(10), || {
        health(&d, "hc")["Status"] == "healthy"
    });

    docker(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "none",
            "--no-healthcheck",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    assert!(health(&d, "none").is_null());
    assert!(!ps_status(&d, "none").contains("health"));
    docker(&d, &["rm", "-f", "hc", "slow", "quick", "none"]);
}

#[test]
#[ignore = "manual: a daemon with busybox for a minute"]
fn manual_daemon() {
    let Some(d) = daemon("manual_daemon") else {
        return;
    };
    println!("DOCKER_HOST={}", d.host());
    std::thread::sleep(Duration::from_secs(600));
}
