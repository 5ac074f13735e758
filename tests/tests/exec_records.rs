//! Exec instances outlive a daemon restart: their records are on disk, and an exec that was
//! running when the daemon died (its process belongs to the container's shim) reports its
//! real exit code once it ends.

use berth_e2e::containers::{create, daemon_with_busybox as daemon, inspect, start, until};
use berth_e2e::require_root;
use berth_e2e::{Daemon, docker_cli};
use serde_json::{Value, json};

fn exec_inspect(d: &Daemon, id: &str) -> Value {
    let r = d.api().get(&format!("/exec/{id}/json"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn exec_ids(d: &Daemon, container: &str) -> Vec<String> {
    let ids = &inspect(d, container)["ExecIDs"];
    ids.as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// `POST /containers/{c}/exec` then a detached start; returns the exec id.
fn exec_detached(d: &Daemon, container: &str, cmd: &[&str]) -> String {
    let r = d.api().post(
        &format!("/containers/{container}/exec"),
        Some(json!({"Cmd": cmd}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_string();
    let r = d.api().post(
        &format!("/exec/{id}/start"),
        Some(json!({"Detach": true}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    id
}

#[test]
fn exec_records_survive_a_daemon_sigkill_and_a_running_exec_reports_its_exit() {
    require_root!();
    let mut d = daemon();
    let cid = create(
        &d,
        Some("keeper"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &cid);

    // One exec that ends before the crash.
    let ended = exec_detached(&d, "keeper", &["sh", "-c", "echo done; exit 3"]);
    until("the first exec to end", || {
        exec_inspect(&d, &ended)["Running"] == false
    });
    // One that waits for a file, started through docker's CLI when it is installed.
    let waiter = [
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 5",
    ];
    let running = if docker_cli().is_some() {
        let mut args = vec!["exec", "-d", "keeper"];
        args.extend(waiter);
        d.docker(&args).unwrap().success();
        let ids = exec_ids(&d, "keeper");
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids[0].clone()
    } else {
        exec_detached(&d, "keeper", &waiter)
    };
    let before = exec_inspect(&d, &running);
    assert_eq!(before["Running"], true);
    let pid = before["Pid"].as_i64().unwrap();
    assert!(pid > 0);

    // Every change was written atomically beside the container's record.
    let records = d.data_root().join("containers").join(&cid).join("execs");
    let mut names: Vec<String> = std::fs::read_dir(&records)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want = vec![format!("{ended}.json"), format!("{running}.json")];
    want.sort();
    assert_eq!(names, want);

    d.kill_hard();
    d.start_again();

    let e = exec_inspect(&d, &ended);
    assert_eq!(e["Running"], false);
    assert_eq!(e["ExitCode"], 3);
    assert_eq!(e["ContainerID"], cid.as_str());
    assert_eq!(e["ProcessConfig"]["entrypoint"], "sh");
    assert_eq!(
        e["ProcessConfig"]["arguments"],
        json!(["-c", "echo done; exit 3"])
    );
    assert!(e["Pid"].as_i64().unwrap() > 0);
    let r = exec_inspect(&d, &running);
    assert_eq!(r["Running"], true);
    assert_eq!(r["ExitCode"], Value::Null);
    assert_eq!(r["Pid"], pid);
    // Docker lists the execs that have not ended.
    assert_eq!(exec_ids(&d, "keeper"), vec![running.clone()]);
    if d.docker(&["version"]).is_some() {
        let out = d
            .docker(&["inspect", "-f", "{{json .ExecIDs}}", "keeper"])
            .unwrap()
            .success();
        assert_eq!(out.stdout.trim(), json!([running]).to_string());
    }

    // Let the exec that ran across the restart finish: its real exit code is recorded.
    d.berth(&["exec", "keeper", "touch", "/tmp/go"]).success();
    until("the exec to end", || {
        exec_inspect(&d, &running)["Running"] == false
    });
    assert_eq!(exec_inspect(&d, &running)["ExitCode"], 5);
    assert!(exec_ids(&d, "keeper").is_empty());

    // And that too survives a restart, this time a graceful one.
    d.restart();
    let r = exec_inspect(&d, &running);
    assert_eq!(
        (r["Running"].clone(), r["ExitCode"].clone()),
        (json!(false), json!(5))
    );

    // A created exec that never ran is forgotten with the container's exit; ended ones
    // stay inspectable until the container is removed.
    let r = d.api().post(
        "/containers/keeper/exec",
        Some(json!({"Cmd": ["true"]}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let never = r.json()["Id"].as_str().unwrap().to_string();
    assert_eq!(exec_ids(&d, "keeper"), vec![never.clone()]);
    d.berth(&["kill", "keeper"]).success();
    d.berth(&["wait", "keeper"]);
    let gone = d.api().get(&format!("/exec/{never}/json"));
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert_eq!(exec_inspect(&d, &ended)["ExitCode"], 3);
    d.berth(&["rm", "keeper"]).success();
    for id in [&ended, &running] {
        let r = d.api().get(&format!("/exec/{id}/json"));
        assert_eq!(r.status, 404, "{}", r.text());
        assert_eq!(r.message(), format!("No such exec instance: {id}"));
    }
}

/// The container's init: it ends as soon as an exec has written its pid to `/tmp/pid`,
/// touched `/tmp/go` and been reaped, so the container (and its shim) end right behind the
/// exec, usually before the daemon asked the shim how the exec ended.
const ENDS_AFTER_THE_EXEC: &str =
    "until [ -f /tmp/go ] && ! kill -0 \"$(cat /tmp/pid)\" 2>/dev/null; do sleep 0.001; done";
/// The exec that ends its container, with a status of its own (not 0, not 137).
const ENDING_EXEC: &str = "echo $$ > /tmp/pid && touch /tmp/go; exit 7";

#[test]
fn an_exec_that_ends_its_container_reports_its_own_status() {
    require_root!();
    let d = daemon();
    // Enough containers that the race (shim gone before the daemon's question) happens:
    // before the shim recorded its execs' exits, some of 40 got 137 in three runs of four.
    const N: usize = 48;
    let ids: Vec<String> = (0..N)
        .map(|i| {
            let name = format!("ender{i}");
            let id = create(
                &d,
                Some(&name),
                json!({"Image": "busybox", "Cmd": ["sh", "-c", ENDS_AFTER_THE_EXEC]}),
            );
            start(&d, &id);
            id
        })
        .collect();
    let docker = docker_cli().is_some();
    // Four clients at once, each its share of the containers, through berth, the docker CLI
    // and the raw API (a detached start, then the exec's inspect).
    let results: Vec<(String, i64, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (d, ids) = (&d, &ids);
                s.spawn(move || {
                    let mut got = Vec::new();
                    for (i, id) in ids.iter().enumerate().skip(w).step_by(4) {
                        let cmd = ["exec", id.as_str(), "sh", "-c", ENDING_EXEC];
                        let (how, code) = match i % 3 {
                            0 => ("berth", i64::from(d.berth(&cmd).code)),
                            1 if docker => ("docker", i64::from(d.docker(&cmd).unwrap().code)),
                            _ => {
                                let exec = exec_detached(d, id, &["sh", "-c", ENDING_EXEC]);
                                until("the detached exec to end", || {
                                    exec_inspect(d, &exec)["Running"] == false
                                });
                                ("api", exec_inspect(d, &exec)["ExitCode"].as_i64().unwrap())
                            }
                        };
                        got.push((id.clone(), code, how.to_string()));
                    }
                    got
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let wrong: Vec<_> = results.iter().filter(|(_, code, _)| *code != 7).collect();
    assert!(wrong.is_empty(), "execs that did not report 7: {wrong:?}");
    assert_eq!(results.len(), N);
    for id in &ids {
        until("the container to end", || {
            inspect(&d, id)["State"]["Status"] == "exited"
        });
        assert_eq!(inspect(&d, id)["State"]["ExitCode"], 0);
    }
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    d.berth(&rm).success();
}

/// A container whose exec ended it while the daemon was down: the next daemon reads the
/// exec's status from the exit record its shim left, rather than forgetting the exec.
#[test]
fn an_exec_that_ended_its_container_while_the_daemon_was_down_keeps_its_status() {
    require_root!();
    let mut d = daemon();
    let trigger = tempfile::tempdir().unwrap();
    let cid = create(
        &d,
        Some("ender"),
        json!({
            "Image": "busybox",
            "Cmd": ["sh", "-c", ENDS_AFTER_THE_EXEC],
            "HostConfig": {"Binds": [format!("{}:/trigger", trigger.path().display())]},
        }),
    );
    start(&d, &cid);
    let exec = exec_detached(
        &d,
        "ender",
        &[
            "sh",
            "-c",
            &format!("until [ -f /trigger/go ]; do sleep 0.05; done; {ENDING_EXEC}"),
        ],
    );
    assert_eq!(exec_inspect(&d, &exec)["Running"], true);
    let init = inspect(&d, "ender")["State"]["Pid"].as_i64().unwrap();

    d.kill_hard();
    std::fs::write(trigger.path().join("go"), b"").unwrap();
    until("the container's init to end", || {
        !std::path::Path::new(&format!("/proc/{init}")).exists()
    });
    d.start_again();

    until("the container to be recorded as exited", || {
        inspect(&d, "ender")["State"]["Status"] == "exited"
    });
    let r = exec_inspect(&d, &exec);
    assert_eq!(
        (r["Running"].clone(), r["ExitCode"].clone()),
        (json!(false), json!(7)),
        "{r}"
    );
    d.berth(&["rm", "-f", "ender"]).success();
}
