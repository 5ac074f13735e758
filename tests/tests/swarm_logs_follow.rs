//! `service logs -f` of tasks on another node goes on across that node's daemon restart (its
//! tasks keep running meanwhile), without repeating or skipping a line, and picks up tasks
//! that start later, as docker's follow does (the harness in `berth_e2e::cluster`).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_e2e::swarm_setup::{create_service, node_id, poll};
use berth_e2e::{Cluster, require_root};
use serde_json::json;

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(90), Duration::from_millis(100), f);
}

/// The followed lines, `HOST N` each, numbered per task.
type Lines = Arc<Mutex<Vec<String>>>;

/// Per task (its container's hostname): the numbers seen, in arrival order.
fn by_task(lines: &Lines) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for l in lines.lock().unwrap().iter() {
        if let Some((host, n)) = l.split_once(' ')
            && let Ok(n) = n.trim().parse()
        {
            out.entry(host.to_string()).or_default().push(n);
        }
    }
    out
}

#[test]
fn following_service_logs_survives_a_worker_restart_and_picks_up_new_tasks() {
    require_root!();
    // Node 0 a manager, node 1 a worker, busybox on both, both ready.
    let mut c = Cluster::swarm(2, 1, 2);
    let m = c.node(0);
    let spec = json!({
        "Name": "tick",
        "Mode": {"Replicated": {"Replicas": 1}},
        "TaskTemplate": {
            "Placement": {"Constraints": ["node.role==worker"]},
            "ContainerSpec": {
                "Image": "busybox:latest",
                "Command": ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo \"$(hostname) $i\"; sleep 0.2; done"],
                "StopGracePeriod": 2_000_000_000u64
            }
        }
    });
    create_service(m, &spec);

    let mut child = Command::new(berth_e2e::daemon::binary("berth"))
        .args(["-H", &m.host(), "service", "logs", "-f", "--raw", "tick"])
        .env("BERTH_CONFIG", m.dir().join("berth-config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed (by its PID) whatever happens below.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(l);
        }
    });
    wait_for("the worker's task followed", || {
        by_task(&lines).values().any(|n| n.len() >= 10)
    });

    // The worker's daemon restarts; its task goes on writing meanwhile.
    c.node_mut(1).restart();
    let before = by_task(&lines);
    let (host, seen) = before
        .iter()
        .next()
        .map(|(h, n)| (h.clone(), n.len()))
        .unwrap();
    wait_for("lines written after the restart", || {
        by_task(&lines)
            .get(&host)
            .is_some_and(|n| n.len() >= seen + 25)
    });

    // Cut off, its daemon killed and started again meanwhile: the manager's stream from the
    // old daemon is on a connection that will never answer nor fail. Once the node is marked
    // down and comes back, the follow reconnects.
    let wid = node_id(c.node(1));
    c.cut(1);
    c.node_mut(1).kill_hard();
    c.node_mut(1).start_again();
    let m = c.node(0);
    wait_for("the worker marked down", || {
        m.api().get(&format!("/nodes/{wid}")).json()["Status"]["State"] == "down"
    });
    let seen = by_task(&lines)[&host].len();
    c.heal(1);
    wait_for("lines written after the cut", || {
        by_task(&lines)
            .get(&host)
            .is_some_and(|n| n.len() >= seen + 25)
    });

    // A task that starts later is followed too.
    let s = m.api().get("/services/tick").json();
    let mut spec = s["Spec"].clone();
    spec["Mode"]["Replicated"]["Replicas"] = json!(2);
    let r = m.api().post(
        &format!("/services/tick/update?version={}", s["Version"]["Index"]),
        Some(spec.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Both running tasks followed: tick.2, and tick.1's replacement (the worker was down, so
    // tick.1 was rescheduled; its first task's lines stop where it was shut down). Each task's
    // hostname is its container's short id.
    let worker = c.node(1);
    let followed = || {
        let running = worker
            .berth(&[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=tick",
            ])
            .stdout;
        let ids: Vec<&str> = running.split_whitespace().collect();
        let seen = by_task(&lines);
        ids.len() == 2
            && ids
                .iter()
                .all(|id| seen.get(*id).is_some_and(|n| n.len() >= 5))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !followed() {
        if std::time::Instant::now() > deadline {
            // What the follow missed: whether the tasks ran and wrote, and what it got.
            let counts: BTreeMap<String, usize> = by_task(&lines)
                .into_iter()
                .map(|(h, n)| (h, n.len()))
                .collect();
            let ps = m.berth(&["service", "ps", "--no-trunc", "tick"]);
            let containers = worker.berth(&["ps", "-a"]);
            panic!(
                "timed out waiting for the new task's lines; followed {counts:?}\nservice ps: {}{}\nworker ps -a: {}",
                ps.stdout, ps.stderr, containers.stdout,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Every task's lines once each, none skipped, in order.
    for (host, numbers) in by_task(&lines) {
        let first = numbers[0];
        let want: Vec<u64> = (first..first + numbers.len() as u64).collect();
        assert_eq!(numbers, want, "the lines of {host}");
        assert_eq!(first, 1, "{host} followed from its first line");
    }
}
