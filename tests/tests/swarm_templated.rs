//! Templated secrets and configs (`--template-driver golang`) on a one-daemon swarm: each
//! task's files are its own expansion (service name, slot, node hostname, env, another
//! secret), a config that is not templated stays verbatim, a bad template fails the task with
//! dockerd's error, and the docker CLI creates templated configs that berthd expands. On a
//! two-node swarm each node expands its own tasks' payloads (its hostname, a global task's
//! slot being its node id).

use berth_e2e::containers::{daemon_with_busybox, demux, until};
use berth_e2e::swarm_setup::{
    docker_init_local, init_local, list_tasks, node_id, running_tasks, task_container,
};
use berth_e2e::{Cluster, Daemon, require_root};
use serde_json::{Value, json};

/// What a task's container printed so far.
fn logs(d: &Daemon, container: &str) -> String {
    let r = d
        .api()
        .get(&format!("/containers/{container}/logs?stdout=1&stderr=1"));
    let (out, err) = demux(&r.body);
    format!("{out}{err}")
}

/// The node's hostname as the swarm describes it (what `.Node.Hostname` expands to).
fn node_hostname(d: &Daemon) -> String {
    let node = d.api().get(&format!("/nodes/{}", node_id(d))).json();
    node["Description"]["Hostname"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits for `n` running tasks of `service` whose containers printed `marker`; answers them.
fn running_with_output(d: &Daemon, service: &str, n: usize, marker: &str) -> Vec<(Value, String)> {
    let mut seen = Vec::new();
    until(&format!("{n} tasks of {service} printing {marker}"), || {
        seen = running_tasks(d, service)
            .into_iter()
            .map(|t| {
                let out = logs(d, &task_container(&t));
                (t, out)
            })
            .collect();
        seen.len() == n && seen.iter().all(|(_, out)| out.contains(marker))
    });
    seen
}

fn leave(d: &Daemon) {
    let r = d.api().post("/swarm/leave?force=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn templated_configs_and_secrets_expand_per_task() {
    require_root!();
    let d = daemon_with_busybox();
    init_local(&d);
    d.berth_with_stdin(&["secret", "create", "pw", "-"], Some(b"hunter2"))
        .success();
    d.berth_with_stdin(
        &[
            "secret",
            "create",
            "--template-driver",
            "golang",
            "creds",
            "-",
        ],
        Some(br#"user={{env "APP_USER"}} pw={{secret "pw"}} task={{.Task.Name}}"#),
    )
    .success();
    d.berth_with_stdin(
        &["config", "create", "--template-driver", "golang", "app", "-"],
        Some(
            br#"{{.Service.Name}} slot={{.Task.Slot}} host={{.Node.Hostname}} mode={{env "MODE"}} pw={{secret "pw"}} os={{.Node.Platform.OS}}"#,
        ),
    )
    .success();
    d.berth_with_stdin(
        &["config", "create", "plain", "-"],
        Some(b"raw {{.Service.Name}}"),
    )
    .success();
    // inspect shows docker's `Templating` for the templated ones only.
    let templating = |kind: &str, name: &str| {
        d.berth(&[
            kind,
            "inspect",
            "--format",
            "{{json .Spec.Templating}}",
            name,
        ])
        .success()
        .stdout
        .trim()
        .to_string()
    };
    assert_eq!(templating("config", "app"), r#"{"Name":"golang"}"#);
    assert_eq!(templating("secret", "creds"), r#"{"Name":"golang"}"#);
    assert_eq!(templating("config", "plain"), "null");

    d.berth(&[
        "service",
        "create",
        "--name",
        "tpl",
        "--replicas",
        "2",
        "-e",
        "MODE=prod",
        "-e",
        "APP_USER=alice",
        "--secret",
        "pw",
        "--secret",
        "creds",
        "--config",
        "source=app,target=/etc/app.conf",
        "--config",
        "source=plain,target=/etc/plain.conf",
        "busybox:latest",
        "sh",
        "-c",
        "cat /etc/app.conf; echo; cat /run/secrets/creds; echo; cat /etc/plain.conf; echo; echo END; sleep 1000",
    ])
    .success();
    let host = node_hostname(&d);
    assert!(!host.is_empty());
    let tasks = running_with_output(&d, "tpl", 2, "END");
    let mut slots = Vec::new();
    for (t, out) in &tasks {
        let slot = t["Slot"].as_u64().unwrap();
        slots.push(slot);
        let task_name = format!("tpl.{slot}.{}", t["ID"].as_str().unwrap());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[..4],
            [
                format!("tpl slot={slot} host={host} mode=prod pw=hunter2 os=linux").as_str(),
                format!("user=alice pw=hunter2 task={task_name}").as_str(),
                "raw {{.Service.Name}}",
                "END",
            ],
            "{out}"
        );
    }
    slots.sort();
    assert_eq!(slots, [1, 2]);
    // The stored payloads stay templates: the expansion is the task's, in its tmpfs only.
    let out = d
        .berth(&["config", "inspect", "--format", "{{.Spec.Data}}", "app"])
        .success();
    let stored = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            out.stdout.trim(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(stored.starts_with("{{.Service.Name}} slot="), "{stored}");
    d.berth(&["service", "rm", "tpl"]).success();
    leave(&d);
}

#[test]
fn a_bad_template_fails_the_task_with_dockerds_error() {
    require_root!();
    let d = daemon_with_busybox();
    init_local(&d);
    // dockerd refuses templating before API 1.37.
    let body = json!({"Name": "old", "Data": "eA==", "Templating": {"Name": "golang"}});
    let r = d
        .api()
        .post("/v1.36/configs/create", Some(body.to_string().as_bytes()));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.message(),
        "config templating is not supported on the specified API version: 1.36"
    );
    let id = d
        .berth_with_stdin(
            &[
                "config",
                "create",
                "--template-driver",
                "golang",
                "bad",
                "-",
            ],
            Some(b"x {{.Foo}}"),
        )
        .success()
        .stdout
        .trim()
        .to_string();
    d.berth(&[
        "service",
        "create",
        "--name",
        "bad",
        "--restart-condition",
        "none",
        "--config",
        "bad",
        "busybox:latest",
        "sleep",
        "1000",
    ])
    .success();
    let filters = json!({"service": ["bad"]});
    let mut task = Value::Null;
    until("the task failed", || {
        task = list_tasks(&d, &filters)
            .into_iter()
            .next()
            .unwrap_or_default();
        task["Status"]["State"] == "failed"
    });
    assert_eq!(
        task["Status"]["Err"],
        format!(
            "starting container failed: unable to get config from config store: failed to expand templated config {id}: template: expansion:1:4: executing \"expansion\" at <.Foo>: can't evaluate field Foo in type *template.PayloadContext"
        ),
        "{task}"
    );
    assert_eq!(task["Status"]["Message"], "starting");
    // A template that does not parse, and a reference the task does not have.
    for (name, data, error) in [
        (
            "unparsable",
            "{{.Service.Name",
            "template: expansion:1: unclosed action",
        ),
        (
            "missing",
            r#"{{secret "nope"}}"#,
            "template: expansion:1:2: executing \"expansion\" at <secret \"nope\">: error calling secret: secret target nope not found",
        ),
    ] {
        let id = d
            .berth_with_stdin(
                &["secret", "create", "--template-driver", "golang", name, "-"],
                Some(data.as_bytes()),
            )
            .success()
            .stdout
            .trim()
            .to_string();
        let service = format!("svc-{name}");
        d.berth(&[
            "service",
            "create",
            "--name",
            &service,
            "--restart-condition",
            "none",
            "--secret",
            name,
            "busybox:latest",
            "sleep",
            "1000",
        ])
        .success();
        let filters = json!({"service": [service]});
        let mut err = String::new();
        until(&format!("{service} failed"), || {
            let t = list_tasks(&d, &filters)
                .into_iter()
                .next()
                .unwrap_or_default();
            err = t["Status"]["Err"].as_str().unwrap_or_default().to_string();
            t["Status"]["State"] == "failed"
        });
        assert_eq!(
            err,
            format!(
                "starting container failed: unable to get secret from secret store: failed to expand templated secret {id}: {error}"
            )
        );
    }
    // `service ps` shows the error as docker's does.
    let out = d
        .berth(&[
            "service",
            "ps",
            "--no-trunc",
            "--format",
            "{{.CurrentState}}|{{.Error}}",
            "bad",
        ])
        .success();
    assert!(
        out.stdout
            .contains("|\"starting container failed: unable to get config"),
        "{}",
        out.stdout
    );
    leave(&d);
}

#[test]
fn the_docker_cli_creates_templated_configs_berthd_expands() {
    require_root!();
    let d = daemon_with_busybox();
    if !docker_init_local(&d) {
        return;
    }
    d.docker_with_stdin(
        &[
            "config",
            "create",
            "--template-driver",
            "golang",
            "dconf",
            "-",
        ],
        Some(br#"svc={{.Service.Name}} slot={{.Task.Slot}} v={{env "V"}}"#),
    )
    .unwrap()
    .success();
    d.docker_with_stdin(
        &[
            "secret",
            "create",
            "--template-driver",
            "golang",
            "dsec",
            "-",
        ],
        Some(br#"node={{.Node.ID}}"#),
    )
    .unwrap()
    .success();
    let out = d
        .docker(&[
            "config",
            "inspect",
            "--format",
            "{{json .Spec.Templating}}",
            "dconf",
        ])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), r#"{"Name":"golang"}"#);
    d.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "dweb",
        "-e",
        "V=42",
        "--config",
        "source=dconf,target=/etc/d.conf",
        "--secret",
        "dsec",
        "busybox:latest",
        "sh",
        "-c",
        "cat /etc/d.conf; echo; cat /run/secrets/dsec; echo; echo END; sleep 1000",
    ])
    .unwrap()
    .success();
    let tasks = running_with_output(&d, "dweb", 1, "END");
    let lines: Vec<&str> = tasks[0].1.lines().collect();
    let node = node_id(&d);
    assert_eq!(
        lines[..2],
        ["svc=dweb slot=1 v=42", format!("node={node}").as_str()],
        "{}",
        tasks[0].1
    );
    d.docker(&["service", "rm", "dweb"]).unwrap().success();
    leave(&d);
}

#[test]
fn each_node_expands_its_own_tasks_payloads() {
    require_root!();
    let c = Cluster::swarm(2, 1, 2);
    let manager = &c.node(0).daemon;
    manager
        .berth_with_stdin(&["secret", "create", "pw", "-"], Some(b"hunter2"))
        .success();
    manager
        .berth_with_stdin(
            &[
                "config",
                "create",
                "--template-driver",
                "golang",
                "where",
                "-",
            ],
            Some(br#"{{.Node.Hostname}} {{.Task.Slot}} {{.Node.ID}} {{secret "pw"}}"#),
        )
        .success();
    manager
        .berth(&[
            "service",
            "create",
            "--name",
            "everywhere",
            "--mode",
            "global",
            "--secret",
            "pw",
            "--config",
            "source=where,target=/where",
            "busybox:latest",
            "sh",
            "-c",
            "cat /where; echo; echo END; sleep 1000",
        ])
        .success();
    let filters = json!({"service": ["everywhere"], "desired-state": ["running"]});
    let mut outputs = Vec::new();
    until("a task per node printing its payload", || {
        let tasks: Vec<Value> = list_tasks(manager, &filters)
            .into_iter()
            .filter(|t| t["Status"]["State"] == "running")
            .collect();
        outputs = tasks
            .iter()
            .map(|t| {
                let node = t["NodeID"].as_str().unwrap_or_default().to_string();
                let out = logs(c.daemon_of(&node), &task_container(t));
                (node, out)
            })
            .collect();
        outputs.len() == 2 && outputs.iter().all(|(_, out)| out.contains("END"))
    });
    let mut hosts = Vec::new();
    for (node, out) in &outputs {
        let host = c
            .nodes
            .iter()
            .find(|n| node_id(&n.daemon) == *node)
            .map(|n| n.hostname.clone())
            .unwrap();
        assert_eq!(
            out.lines().next().unwrap(),
            format!("{host} {node} {node} hunter2"),
            "{out}"
        );
        hosts.push(host);
    }
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 2, "one task on each node: {outputs:?}");
}
