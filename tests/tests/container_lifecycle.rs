//! Container lifecycle corners, checked against dockerd's behaviour: working directories made
//! at start, kill answering once the container is dead, commit of an exiting container, log
//! options, removal of restarting containers, the daemon-managed /etc files through `cp`, an
//! auto-remove container left created by a dead client, cgroup parents and host config
//! validation at create.

use berth_e2e::containers::{
    create, daemon_with_busybox as daemon, demux, inspect, start, until, wait,
};
use berth_e2e::require_root;
use serde_json::{Value, json};

fn logs(d: &berth_e2e::Daemon, id: &str) -> (String, String) {
    let r = d
        .api()
        .get(&format!("/containers/{id}/logs?stdout=1&stderr=1"));
    assert_eq!(r.status, 200, "{}", r.text());
    demux(&r.body)
}

fn post_json(d: &berth_e2e::Daemon, path: &str, body: &Value) -> berth_e2e::ApiResponse {
    d.api().post(path, Some(body.to_string().as_bytes()))
}

#[test]
fn a_missing_working_directory_is_created_and_a_file_is_refused() {
    require_root!();
    let d = daemon();
    let id = create(
        &d,
        None,
        json!({"Image": "busybox", "WorkingDir": "/tmp/new/./dir/",
               "Cmd": ["sh", "-c", "pwd; stat -c '%u %g %a' . /tmp/new"]}),
    );
    assert_eq!(inspect(&d, &id)["Config"]["WorkingDir"], "/tmp/new/dir");
    start(&d, &id);
    assert_eq!(wait(&d, &id), 0);
    assert_eq!(logs(&d, &id).0, "/tmp/new/dir\n0 0 755\n0 0 755\n");
    // A second start finds it there.
    start(&d, &id);
    assert_eq!(wait(&d, &id), 0);

    // A symlink on the way is followed inside the container's root (/usr/bin -> ../bin).
    let id = create(
        &d,
        None,
        json!({"Image": "busybox", "WorkingDir": "/usr/bin/made", "Cmd": ["pwd"]}),
    );
    start(&d, &id);
    assert_eq!(wait(&d, &id), 0);
    let r = d
        .api()
        .get(&format!("/containers/{id}/archive?path=/bin/made"));
    assert_eq!(r.status, 200, "{}", r.text());

    let r = post_json(
        &d,
        "/containers/create",
        &json!({"Image": "busybox", "WorkingDir": "rel/dir", "Cmd": ["pwd"]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.message(),
        "the working directory 'rel/dir' is invalid, it needs to be an absolute path"
    );
    // The image has it as a file: refused at create.
    for bad in ["/etc/passwd", "/etc/passwd/sub"] {
        let r = post_json(
            &d,
            "/containers/create",
            &json!({"Image": "busybox", "WorkingDir": bad, "Cmd": ["pwd"]}),
        );
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(
            r.message(),
            format!("Cannot mkdir: {bad} is not a directory")
        );
    }
    // A symlink to a file is resolved when the container starts.
    let id = create(
        &d,
        None,
        json!({"Image": "busybox", "WorkingDir": "/bin/sh", "Cmd": ["pwd"]}),
    );
    let r = d.api().post(&format!("/containers/{id}/start"), None);
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.message(), "Cannot mkdir: /bin/sh is not a directory");

    let out = d
        .berth(&["run", "--rm", "-w", "/tmp/a/b", "busybox", "pwd"])
        .success();
    assert_eq!(out.stdout, "/tmp/a/b\n");
    if let Some(out) = d.docker(&["run", "--rm", "-w", "/tmp/new/dir", "busybox", "pwd"]) {
        assert_eq!(out.success().stdout, "/tmp/new/dir\n");
        let out = d
            .docker(&["run", "--rm", "-w", "/etc/passwd", "busybox", "pwd"])
            .unwrap()
            .failure();
        assert!(
            out.stderr.contains(
                "Error response from daemon: Cannot mkdir: /etc/passwd is not a directory"
            ),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn kill_answers_once_the_container_is_dead() {
    require_root!();
    let d = daemon();
    for i in 0..25 {
        let id = create(
            &d,
            None,
            json!({"Image": "busybox", "Cmd": ["sh", "-c", "trap '' TERM; sleep 1000"]}),
        );
        start(&d, &id);
        let r = d.api().post(&format!("/containers/{id}/kill"), None);
        assert_eq!(r.status, 204, "{}", r.text());
        let state = &inspect(&d, &id)["State"];
        assert_eq!(state["Status"], "exited", "iteration {i}: {state}");
        assert_eq!(state["Running"], false, "iteration {i}: {state}");
        assert_eq!(state["ExitCode"], 137, "iteration {i}: {state}");
        let r = d.api().delete(&format!("/containers/{id}"));
        assert_eq!(r.status, 204, "{}", r.text());
    }
    // Other signals are only sent: SIGTERM, trapped, leaves it running. (Only once the trap
    // is set: before, the shell is a PID 1 without a handler, which the kernel spares.)
    let id = create(
        &d,
        None,
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "trap 'exit 3' TERM; echo trapped; while :; do sleep 0.1; done"]}),
    );
    start(&d, &id);
    until("the trap", || {
        d.api()
            .get(&format!("/containers/{id}/logs?stdout=1"))
            .text()
            .contains("trapped")
    });
    let r = d
        .api()
        .post(&format!("/containers/{id}/kill?signal=SIGTERM"), None);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(wait(&d, &id), 3);
    if let Some(out) = d.docker(&["run", "-d", "busybox", "sleep", "1000"]) {
        let cid = out.success().stdout.trim().to_string();
        d.docker(&["kill", &cid]).unwrap().success();
        let out = d
            .docker(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}}",
                &cid,
            ])
            .unwrap()
            .success();
        assert_eq!(out.stdout.trim(), "exited 137");
    }
}

#[test]
fn commit_of_an_exiting_container_succeeds() {
    require_root!();
    let d = daemon();
    for i in 0..40 {
        let id = create(
            &d,
            None,
            json!({"Image": "busybox", "Cmd": ["touch", "/test"]}),
        );
        start(&d, &id);
        let r = d.api().post(
            &format!("/commit?container={id}&repo=committed&tag=t{i}"),
            None,
        );
        assert_eq!(r.status, 201, "iteration {i}: {}", r.text());
    }
    let out = d
        .berth(&["run", "-d", "busybox", "touch", "/test"])
        .success();
    let id = out.stdout.trim().to_string();
    d.berth(&["commit", &id, "committed:cli"]).success();
}

#[test]
fn log_options_are_checked_like_dockerd() {
    require_root!();
    let d = daemon();
    for log_config in [
        json!({"Type": "json-file", "Config": {"max-file": "2"}}),
        json!({"Config": {"max-file": "2"}}),
        json!({"Type": "json-file", "Config": {"mode": "non-blocking", "max-buffer-size": "4m"}}),
        json!({"Type": "none", "Config": {"anything": "goes"}}),
    ] {
        let id = create(
            &d,
            None,
            json!({"Image": "busybox", "Cmd": ["echo", "hi"], "HostConfig": {"LogConfig": log_config}}),
        );
        start(&d, &id);
        assert_eq!(wait(&d, &id), 0);
        if log_config["Type"] != "none" {
            assert_eq!(logs(&d, &id).0, "hi\n", "{log_config}");
        }
    }
    for (log_config, message) in [
        (
            json!({"Type": "bogus"}),
            "logger: no log driver named 'bogus' is registered",
        ),
        (
            json!({"Type": "json-file", "Config": {"mode": "fast"}}),
            "logger: logging mode not supported: fast",
        ),
        (
            json!({"Type": "json-file", "Config": {"nope": "1"}}),
            "unknown log opt 'nope' for json-file log driver",
        ),
    ] {
        let r = post_json(
            &d,
            "/containers/create",
            &json!({"Image": "busybox", "HostConfig": {"LogConfig": log_config}}),
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.message(), message);
    }
    if let Some(out) = d.docker(&[
        "run",
        "--rm",
        "--log-opt",
        "max-file=2",
        "busybox",
        "echo",
        "hi",
    ]) {
        assert_eq!(out.success().stdout, "hi\n");
    }
    let out = d
        .berth(&[
            "run",
            "--rm",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-file=2",
            "busybox",
            "echo",
            "hi",
        ])
        .success();
    assert_eq!(out.stdout, "hi\n");
}

#[test]
fn restarting_and_paused_containers_need_force_to_be_removed() {
    require_root!();
    let d = daemon();
    let id = create(
        &d,
        Some("flappy"),
        json!({"Image": "busybox", "Cmd": ["false"], "HostConfig": {"RestartPolicy": {"Name": "always"}}}),
    );
    start(&d, &id);
    // Between two runs it is `restarting`; its back-off grows with each exit, so it is soon
    // caught there.
    let mut refused = None;
    for _ in 0..500 {
        if inspect(&d, &id)["State"]["Status"] != "restarting" {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        let r = d.api().delete("/containers/flappy");
        assert_eq!(r.status, 409, "{}", r.text());
        if r.message().contains("restarting") {
            refused = Some(r.message());
            break;
        }
    }
    assert_eq!(
        refused.as_deref(),
        Some(
            "cannot remove container \"flappy\": container is restarting: stop the container before removing or force remove"
        )
    );
    let r = d.api().delete("/containers/flappy?force=1");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(d.api().get("/containers/flappy/json").status, 404);

    let id = create(
        &d,
        Some("frozen"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &id);
    assert_eq!(d.api().post("/containers/frozen/pause", None).status, 204);
    let r = d.api().delete(&format!("/containers/{}", &id[..12]));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.message(),
        format!(
            "cannot remove container \"{}\": container is paused and must be unpaused first",
            &id[..12]
        )
    );
    let r = d.api().delete("/containers/frozen?force=1");
    assert_eq!(r.status, 204, "{}", r.text());
}

fn tar_file(bytes: &[u8]) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut a = tar::Archive::new(bytes);
    let mut e = a.entries().unwrap().next().expect("one entry").unwrap();
    let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
    let mut data = Vec::new();
    e.read_to_end(&mut data).unwrap();
    (name, data)
}

fn one_file_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn cp_sees_the_daemon_managed_etc_files() {
    require_root!();
    let d = daemon();
    let id = create(
        &d,
        Some("named"),
        json!({"Image": "busybox", "Hostname": "myhost", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &id);
    let get = |path: &str| {
        let r = d
            .api()
            .get(&format!("/containers/{id}/archive?path={path}"));
        assert_eq!(r.status, 200, "{}", r.text());
        tar_file(&r.body).1
    };
    assert_eq!(get("/etc/hostname"), b"myhost\n");
    assert!(
        String::from_utf8(get("/etc/hosts"))
            .unwrap()
            .contains("\tmyhost\n")
    );
    assert!(!get("/etc/resolv.conf").is_empty());
    let head = d.api().request(
        "HEAD",
        &format!("/containers/{id}/archive?path=/etc/hostname"),
        &[],
        None,
    );
    assert_eq!(head.status, 200);
    assert!(head.header("X-Docker-Container-Path-Stat").is_some());

    let out = d.berth(&["cp", "named:/etc/hostname", "-"]).success();
    assert!(out.stdout.contains("myhost\n"), "{}", out.stdout);
    if let Some(out) = d.docker(&["cp", "named:/etc/hostname", "-"]) {
        assert!(out.success().stdout.contains("myhost\n"));
    }

    // Copied in: what the container sees changes, and its mount stays.
    let r = d.api().request(
        "PUT",
        &format!("/containers/{id}/archive?path=/etc"),
        &[("Content-Type", "application/x-tar")],
        Some(&one_file_tar("hostname", b"newname\n")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get("/etc/hostname"), b"newname\n");
    let out = d
        .berth(&["exec", "named", "cat", "/etc/hostname"])
        .success();
    assert_eq!(out.stdout, "newname\n");
    let out = d
        .berth(&[
            "exec",
            "named",
            "grep",
            "-c",
            " /etc/hostname ",
            "/proc/self/mountinfo",
        ])
        .success();
    assert_eq!(out.stdout, "1\n");

    // Stopped: still the files it saw.
    let r = d.api().post(&format!("/containers/{id}/stop?t=0"), None);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get("/etc/hostname"), b"newname\n");
    assert!(
        String::from_utf8(get("/etc/hosts"))
            .unwrap()
            .contains("\tmyhost\n")
    );
}

#[test]
fn an_auto_remove_container_never_started_is_removed_at_daemon_start() {
    require_root!();
    let mut d = daemon();
    let id = create(
        &d,
        Some("orphan"),
        json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"AutoRemove": true}}),
    );
    let kept = create(
        &d,
        Some("kept"),
        json!({"Image": "busybox", "Cmd": ["true"]}),
    );
    d.kill_hard();
    d.start_again();
    berth_e2e::containers::until("the orphan to be removed", || {
        d.api().get(&format!("/containers/{id}/json")).status == 404
    });
    assert!(!d.data_root().join("containers").join(&id).exists());
    assert_eq!(inspect(&d, &kept)["State"]["Status"], "created");
    // Its name is free again.
    create(
        &d,
        Some("orphan"),
        json!({"Image": "busybox", "Cmd": ["true"]}),
    );
}

/// Removes what a cgroup parent named `name` may have left, in and out of the hierarchy.
struct CgroupLeftovers(String);

impl CgroupLeftovers {
    fn outside(&self) -> Vec<std::path::PathBuf> {
        ["/", "/sys", "/sys/fs"]
            .iter()
            .map(|d| std::path::Path::new(d).join(&self.0))
            .collect()
    }
}

impl Drop for CgroupLeftovers {
    fn drop(&mut self) {
        let root = std::path::Path::new("/sys/fs/cgroup");
        let mut dirs = vec![root.join(&self.0)];
        for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
            dirs.push(e.path().join(&self.0));
        }
        for d in dirs {
            // Its container's cgroup first (gone with the container, unless a test failed).
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
        for d in self.outside() {
            if d.is_dir() && !d.starts_with("/sys") {
                let _ = std::fs::remove_dir_all(&d);
            }
        }
    }
}

#[test]
fn a_cgroup_parent_with_dotdot_stays_inside_the_hierarchy() {
    require_root!();
    let d = daemon();
    let name = format!("berth-esc-{}", std::process::id());
    let guard = CgroupLeftovers(name.clone());
    let id = create(
        &d,
        None,
        json!({"Image": "busybox", "Cmd": ["cat", "/proc/self/cgroup"],
               "HostConfig": {"CgroupParent": format!("../../../../{name}")}}),
    );
    start(&d, &id);
    assert_eq!(wait(&d, &id), 0);
    for p in guard.outside() {
        assert!(!p.exists(), "{} was created", p.display());
    }
    let root = std::path::Path::new("/sys/fs/cgroup");
    let inside = std::iter::once(root.join(&name))
        .chain(
            std::fs::read_dir(root)
                .unwrap()
                .flatten()
                .map(|e| e.path().join(&name)),
        )
        .any(|p| p.is_dir());
    assert!(inside, "no cgroup under {}", root.display());
    let r = d.api().delete(&format!("/containers/{id}"));
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn host_config_is_checked_at_create_like_dockerd() {
    require_root!();
    let d = daemon();
    let refused = |host: Value, status: u16, message: &str| {
        let r = post_json(
            &d,
            "/containers/create",
            &json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": host}),
        );
        assert_eq!(r.status, status, "{host}: {}", r.text());
        assert_eq!(r.message(), message, "{host}");
    };
    refused(
        json!({"ExtraHosts": ["bad"]}),
        400,
        "bad format for add-host: \"bad\"",
    );
    refused(
        json!({"ExtraHosts": ["a:1.2.3"]}),
        400,
        "invalid IP address in add-host: \"1.2.3\"",
    );
    refused(
        json!({"Isolation": "hyperv"}),
        400,
        "invalid isolation 'hyperv' on linux",
    );
    refused(
        json!({"CpusetCpus": "garbage"}),
        400,
        "Invalid value garbage for cpuset cpus: invalid format: garbage",
    );
    let cpus = std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.cpus")
        .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/cpuset.cpus.effective"))
        .unwrap_or_default();
    if !cpus.trim().is_empty() {
        refused(
            json!({"CpusetCpus": "0-1000"}),
            400,
            &format!(
                "Requested CPUs are not available - requested 0-1000, available: {}",
                cpus.trim()
            ),
        );
    }
    refused(
        json!({"SecurityOpt": ["no-new-privileges:maybe"]}),
        500,
        "invalid --security-opt 2: \"no-new-privileges:maybe\"",
    );
    refused(
        json!({"SecurityOpt": ["bogus=1"]}),
        500,
        "invalid --security-opt 2: \"bogus=1\"",
    );
    // The berth CLI passes a `key=value` it does not know on; the daemon refuses it at
    // create (before, a start failed on it).
    let out = d
        .berth(&["create", "--security-opt", "foo=bar", "busybox", "true"])
        .failure();
    assert!(
        out.stderr
            .contains("Error response from daemon: invalid --security-opt 2: \"foo=bar\""),
        "{}",
        out.stderr
    );
    refused(
        json!({"StorageOpt": {"size": "1G"}}),
        500,
        "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
    );
    refused(
        json!({"IOMaximumIOps": 10}),
        400,
        "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps",
    );
    // KernelMemory went away in API 1.42: checked before, ignored since.
    let body =
        json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"KernelMemory": 1 << 20}});
    let r = post_json(&d, "/v1.41/containers/create", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.message(), "Minimum kernel memory limit allowed is 6MB");
    let r = post_json(&d, "/v1.51/containers/create", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_string();
    assert!(inspect(&d, &id)["HostConfig"].get("KernelMemory").is_none());
    assert_eq!(d.api().delete(&format!("/containers/{id}")).status, 204);
    let r = post_json(
        &d,
        "/containers/create",
        &json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"CpuPercent": 50}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["Warnings"],
        json!(["linux does not support CPU percent. Percent discarded."])
    );
    let id = r.json()["Id"].as_str().unwrap().to_string();
    assert_eq!(d.api().delete(&format!("/containers/{id}")).status, 204);
    // Nothing was left behind by the refusals.
    let all = d.api().get("/containers/json?all=1").json();
    assert_eq!(all.as_array().unwrap().len(), 0, "{all}");

    // What dockerd starts, berth starts: a huge memory limit (its doubled swap wraps, as
    // Go's does) and a swap of -2.
    for host in [
        json!({"Memory": i64::MAX}),
        json!({"Memory": 64 << 20, "MemorySwap": -2}),
        json!({"SecurityOpt": ["no-new-privileges:false"], "ExtraHosts": ["gw:host-gateway", "v6=::1"]}),
    ] {
        let id = create(
            &d,
            None,
            json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": host}),
        );
        start(&d, &id);
        assert_eq!(wait(&d, &id), 0, "{host}");
    }
    // Through the docker CLI, the message is dockerd's.
    if let Some(out) = d.docker(&["create", "--isolation", "hyperv", "busybox"]) {
        let out = out.failure();
        assert!(
            out.stderr.contains("invalid isolation 'hyperv' on linux"),
            "{}",
            out.stderr
        );
    }
}

/// `--pid container:X` shares X's processes, every time (on cgroup v1 the runtime's own
/// `/sys/fs/cgroup` failed about one such start in six), and the joining container's
/// `/sys/fs/cgroup` shows its own cgroups, read-only.
#[test]
fn joining_another_containers_pid_namespace_starts_every_time() {
    require_root!();
    let d = daemon();
    let out = d.berth(&["run", "-d", "--name", "owner", "busybox", "sleep", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    for _ in 0..30 {
        let out = d.berth(&[
            "run",
            "--rm",
            "--pid",
            "container:owner",
            "busybox",
            "cat",
            "/proc/1/cmdline",
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout.replace('\0', " ").trim(), "sleep 1000");
    }
    let out = d.berth(&[
        "run",
        "--rm",
        "--pid",
        "container:owner",
        "busybox",
        "sh",
        "-c",
        "ls /sys/fs/cgroup; touch /sys/fs/cgroup/pids/x /sys/fs/cgroup/x 2>&1; true",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let host_v1 = !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if host_v1 {
        for c in ["cpu", "memory", "pids"] {
            assert!(out.stdout.lines().any(|l| l == c), "{c} missing: {out:?}");
        }
    }
    assert!(out.stdout.contains("Read-only file system"), "{out:?}");
}

/// The daemon waits for its containers' exits without a parked thread each (at 1,000 swarm
/// tasks those threads were a good part of a manager's memory), and still sees every exit,
/// also of containers it adopted at a restart.
#[test]
fn running_containers_do_not_hold_a_daemon_thread_each() {
    require_root!();
    let mut d = daemon();
    const N: usize = 48;
    // The last one ends on its own when told to (a file appears).
    let until_told = "while [ ! -e /tmp/stop ]; do sleep 0.1; done";
    let ids: Vec<String> = (0..N)
        .map(|i| {
            let cmd: &[&str] = if i == N - 1 {
                &["sh", "-c", until_told]
            } else {
                &["sleep", "1000"]
            };
            let mut args = vec!["run", "-d", "--network", "none", "busybox"];
            args.extend(cmd);
            d.berth(&args).success().stdout.trim().to_string()
        })
        .collect();
    let threads = |d: &berth_e2e::Daemon| {
        let pid = d.pid().expect("daemon running");
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
    };
    let n = threads(&d);
    assert!(
        n < N,
        "{n} daemon threads with {N} running containers: a thread per container?"
    );
    d.restart();
    let n = threads(&d);
    assert!(
        n < N,
        "{n} daemon threads after adopting {N} running containers"
    );
    // Every exit is still seen: by signal, and by the container ending on its own.
    for id in &ids[..N / 2] {
        d.berth(&["kill", id]).success();
    }
    d.berth(&["exec", &ids[N - 1], "touch", "/tmp/stop"])
        .success();
    for id in &ids[..N / 2] {
        until("killed container recorded as exited", || {
            inspect(&d, id)["State"]["Status"] == "exited"
        });
        assert_eq!(inspect(&d, id)["State"]["ExitCode"], 137);
    }
    until("container that ended itself recorded as exited", || {
        inspect(&d, &ids[N - 1])["State"]["Status"] == "exited"
    });
    assert_eq!(inspect(&d, &ids[N - 1])["State"]["ExitCode"], 0);
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    d.berth(&rm).success();
}
