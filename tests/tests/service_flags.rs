//! docker's `service create`/`service update` flags through the berth CLI: the same flags give
//! the same `Spec` as the docker CLI's, a host-mode published port answers on 127.0.0.1, a
//! mount is in the task, an update with `--publish-add`/`--env-add`/`--image` rolls the task,
//! and bad values get docker's error texts.

use berth_e2e::containers::{daemon_with_busybox, until};
use berth_e2e::overlay::host_get;
use berth_e2e::swarm_setup::wait_current_task_container;
use berth_e2e::{Daemon, require_root};
use serde_json::{Value, json};

fn service(d: &Daemon, name: &str) -> Value {
    let r = d.api().get(&format!("/services/{name}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The keys of a spec the flags under test set (the docker CLI also sends empty defaults
/// such as `"Resources": {"Limits": {}}`, which say nothing about the flags).
const KEYS: &[&str] = &[
    "/Labels",
    "/EndpointSpec",
    "/TaskTemplate/ContainerSpec/Image",
    "/TaskTemplate/ContainerSpec/Labels",
    "/TaskTemplate/ContainerSpec/Command",
    "/TaskTemplate/ContainerSpec/Args",
    "/TaskTemplate/ContainerSpec/Env",
    "/TaskTemplate/ContainerSpec/Hostname",
    "/TaskTemplate/ContainerSpec/Mounts",
    "/TaskTemplate/ContainerSpec/Healthcheck",
    "/TaskTemplate/ContainerSpec/DNSConfig",
    "/TaskTemplate/ContainerSpec/Hosts",
    "/TaskTemplate/ContainerSpec/Sysctls",
    "/TaskTemplate/ContainerSpec/Ulimits",
    "/TaskTemplate/ContainerSpec/Groups",
    "/TaskTemplate/ContainerSpec/Init",
    "/TaskTemplate/ContainerSpec/ReadOnly",
    "/TaskTemplate/ContainerSpec/TTY",
    "/TaskTemplate/ContainerSpec/StopSignal",
    "/TaskTemplate/Resources",
    "/TaskTemplate/Placement/Preferences",
    "/TaskTemplate/Placement/MaxReplicas",
    "/TaskTemplate/RestartPolicy/Window",
    "/TaskTemplate/LogDriver",
    "/TaskTemplate/Networks",
];

fn relevant(spec: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in KEYS {
        out.insert(
            k.to_string(),
            spec.pointer(k).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

#[test]
fn create_flags_give_the_same_spec_as_the_docker_cli() {
    require_root!();
    let d = daemon_with_busybox();
    d.berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
        .success();
    let subnet = d.spare_subnet(1);
    d.berth(&[
        "network", "create", "-d", "overlay", "--subnet", &subnet, "sfnet",
    ])
    .success();
    let env_file = d.dir().join("svc.env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=1\nB=file\n").unwrap();
    let env_file = env_file.to_str().unwrap();
    #[rustfmt::skip]
    let flags: Vec<&str> = vec![
        "--detach", "--replicas", "0", "--no-resolve-image",
        "-l", "tier=web", "--container-label", "c=d",
        "--env-file", env_file, "-e", "B=flag",
        "--publish", "published=38517,target=80,mode=host",
        "--publish", "published=38518,target=53,protocol=udp,mode=host",
        "--endpoint-mode", "dnsrr",
        "--network", "name=sfnet,alias=web,alias=www",
        "--mount", "type=volume,src=sfvol,dst=/data,volume-label=a=b,volume-nocopy",
        "--mount", "type=bind,src=/tmp,dst=/host,readonly",
        "--mount", "type=tmpfs,dst=/scratch,tmpfs-size=1m,tmpfs-mode=1770",
        "--limit-cpu", "1.5", "--limit-memory", "64m", "--limit-pids", "100",
        "--reserve-cpu", "0.25", "--reserve-memory", "16m",
        "--placement-pref", "spread=node.labels.zone", "--replicas-max-per-node", "2",
        "--restart-window", "10s",
        "--hostname", "svc-host", "--entrypoint", "sh -c",
        "--health-cmd", "true", "--health-interval", "5s", "--health-timeout", "2s",
        "--health-retries", "3", "--health-start-period", "1s",
        "--dns", "10.9.8.7", "--dns-search", "example.com", "--dns-option", "ndots:2",
        "--host", "db:10.1.2.3",
        "--init", "--read-only", "-t", "--stop-signal", "SIGUSR1",
        "--sysctl", "net.core.somaxconn=1024",
        "--ulimit", "nofile=1024:2048",
        "--group", "100",
        "--log-driver", "json-file", "--log-opt", "max-size=1m",
        "busybox:latest", "echo hi",
    ];
    let mut args = vec!["service", "create", "--name", "byberth"];
    args.extend(&flags);
    d.berth(&args).success();
    let ours = relevant(&service(&d, "byberth")["Spec"]);
    // What the flags mean, independently of the docker CLI.
    let net = d.api().get("/networks/sfnet").json()["Id"].clone();
    assert_eq!(
        ours["/TaskTemplate/Networks"],
        json!([{"Target": net, "Aliases": ["web", "www"]}])
    );
    assert_eq!(
        ours["/TaskTemplate/ContainerSpec/Env"],
        json!(["FROM_FILE=1", "B=flag"])
    );
    assert_eq!(
        ours["/EndpointSpec"]["Ports"][0],
        json!({"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 38517, "PublishMode": "host"})
    );
    assert_eq!(
        ours["/TaskTemplate/Resources"]["Limits"],
        json!({"NanoCPUs": 1_500_000_000u64, "MemoryBytes": 67108864, "Pids": 100})
    );
    assert_eq!(
        ours["/TaskTemplate/ContainerSpec/Hosts"],
        json!(["10.1.2.3 db"])
    );
    assert_eq!(
        ours["/TaskTemplate/ContainerSpec/Healthcheck"]["Test"],
        json!(["CMD-SHELL", "true"])
    );
    d.berth(&["service", "rm", "byberth"]).success();
    let mut args = vec!["service", "create", "--name", "bydocker"];
    args.extend(&flags);
    let Some(out) = d.docker(&args) else {
        eprintln!("skipped the docker CLI comparison: no docker CLI");
        return;
    };
    out.success();
    let theirs = relevant(&service(&d, "bydocker")["Spec"]);
    for k in KEYS {
        assert_eq!(ours[*k], theirs[*k], "{k} differs from the docker CLI's");
    }
    d.berth(&["service", "rm", "bydocker"]).success();
    d.berth(&["network", "rm", "sfnet"]).success();
    d.berth(&["swarm", "leave", "--force"]).success();
}

#[test]
fn update_flags_give_the_same_spec_as_the_docker_cli() {
    require_root!();
    let d = daemon_with_busybox();
    d.berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
        .success();
    for (i, net) in [(1, "sfold"), (2, "sfnew")] {
        let subnet = d.spare_subnet(i);
        d.berth(&[
            "network", "create", "-d", "overlay", "--subnet", &subnet, net,
        ])
        .success();
    }
    #[rustfmt::skip]
    let create: Vec<&str> = vec![
        "--detach", "--replicas", "0", "--no-resolve-image", "-l", "gone=1", "-l", "kept=1",
        "--container-label", "cgone=1",
        "--publish", "published=38520,target=80,mode=host",
        "--publish", "published=38521,target=81,mode=host",
        "--mount", "type=tmpfs,dst=/a", "--mount", "type=tmpfs,dst=/b",
        "--placement-pref", "spread=node.labels.a",
        "--no-healthcheck", "--network", "sfold",
        "--dns", "10.0.0.1", "--dns-search", "a.example",
        "--host", "a:10.0.0.1", "--host", "b:10.0.0.2", "--group", "100",
        "--sysctl", "net.core.somaxconn=1024",
        "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=10",
        "busybox:latest", "sleep", "1000",
    ];
    #[rustfmt::skip]
    let update: Vec<&str> = vec![
        "--detach", "--quiet", "--no-resolve-image", "--args", "sleep 2000", "--label-add", "new=2", "--label-rm", "gone",
        "--container-label-add", "cnew=2", "--container-label-rm", "cgone",
        "--publish-rm", "target=81,mode=host", "--publish-rm", "80", "--publish-add", "published=38522,target=82,mode=host",
        "--mount-rm", "/a", "--mount-add", "type=tmpfs,dst=/c,tmpfs-size=1m",
        "--placement-pref-rm", "spread=node.labels.a",
        "--placement-pref-add", "spread=node.labels.b",
        "--limit-memory", "32m", "--reserve-cpu", "0.5", "--replicas-max-per-node", "3",
        "--restart-condition", "on-failure", "--restart-delay", "3s",
        "--restart-max-attempts", "4", "--restart-window", "1m",
        "--health-cmd", "true", "--health-interval", "4s",
        "--hostname", "h2", "--entrypoint", "/bin/sh -c", "--stop-signal", "SIGTERM",
        "--init", "--read-only",
        "--dns-add", "10.0.0.2", "--dns-rm", "10.0.0.1", "--dns-search-rm", "a.example",
        "--dns-option-add", "ndots:3", "--host-rm", "a:10.0.0.1", "--host-add", "c:10.0.0.3",
        "--group-add", "50", "--group-rm", "100",
        "--sysctl-rm", "net.core.somaxconn", "--sysctl-add", "net.ipv4.tcp_syncookies=1",
        "--ulimit-rm", "nproc", "--ulimit-add", "core=0",
        "--network-rm", "sfold", "--network-add", "name=sfnew,alias=n1",
        "--endpoint-mode", "dnsrr",
    ];
    let mut specs = Vec::new();
    for (cli, name) in [("berth", "updberth"), ("docker", "upddocker")] {
        let run = |args: &[&str]| match cli {
            "berth" => Some(d.berth(args)),
            _ => d.docker(args),
        };
        let mut args = vec!["service", "create", "--name", name];
        args.extend(&create);
        let Some(out) = run(&args) else {
            eprintln!("skipped the docker CLI comparison: no docker CLI");
            break;
        };
        out.success();
        let mut args = vec!["service", "update"];
        args.extend(&update);
        args.push(name);
        run(&args).unwrap().success();
        let spec = service(&d, name)["Spec"].clone();
        let mut keys = relevant(&spec);
        for k in [
            "/TaskTemplate/RestartPolicy",
            "/TaskTemplate/Placement/Preferences",
        ] {
            keys[k] = spec.pointer(k).cloned().unwrap_or_default();
        }
        specs.push(keys);
        d.berth(&["service", "rm", name]).success();
    }
    let ours = &specs[0];
    assert_eq!(ours["/Labels"], json!({"kept": "1", "new": "2"}));
    assert_eq!(
        ours["/TaskTemplate/ContainerSpec/Labels"],
        json!({"cnew": "2"})
    );
    assert_eq!(
        ours["/TaskTemplate/ContainerSpec/Args"],
        json!(["sleep", "2000"])
    );
    let targets: Vec<&Value> = ours["/EndpointSpec"]["Ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["TargetPort"])
        .collect();
    assert_eq!(targets, [&json!(80), &json!(82)]);
    let mounts: Vec<&Value> = ours["/TaskTemplate/ContainerSpec/Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["Target"])
        .collect();
    assert_eq!(mounts, [&json!("/b"), &json!("/c")]);
    assert_eq!(
        ours["/TaskTemplate/ContainerSpec/Healthcheck"],
        json!({"Test": ["CMD-SHELL", "true"], "Interval": 4_000_000_000u64})
    );
    let sfnew = d.api().get("/networks/sfnew").json()["Id"].clone();
    assert_eq!(
        ours["/TaskTemplate/Networks"],
        json!([{"Target": sfnew, "Aliases": ["n1"]}])
    );
    assert_eq!(ours["/EndpointSpec"]["Mode"], "dnsrr");
    let cs = |k: &str| &ours[&format!("/TaskTemplate/ContainerSpec/{k}")];
    assert_eq!(
        cs("DNSConfig"),
        &json!({"Nameservers": ["10.0.0.2"], "Options": ["ndots:3"]})
    );
    assert_eq!(cs("Hosts"), &json!(["10.0.0.2 b", "10.0.0.3 c"]));
    assert_eq!(cs("Groups"), &json!(["50"]));
    assert_eq!(cs("Sysctls"), &json!({"net.ipv4.tcp_syncookies": "1"}));
    assert_eq!(
        cs("Ulimits"),
        &json!([{"Name": "core", "Soft": 0, "Hard": 0}, {"Name": "nofile", "Soft": 1024, "Hard": 2048}])
    );
    if let Some(theirs) = specs.get(1) {
        for (k, v) in ours.as_object().unwrap() {
            assert_eq!(v, &theirs[k], "{k} differs from the docker CLI's");
        }
    }
    d.berth(&["network", "rm", "sfold", "sfnew"]).success();
    d.berth(&["swarm", "leave", "--force"]).success();
}

fn exec_out(d: &Daemon, container: &str, script: &str) -> String {
    d.berth(&["exec", container, "sh", "-c", script])
        .success()
        .stdout
}

#[test]
fn published_port_and_mount_reach_the_task_and_update_rolls_it() {
    require_root!();
    let d = daemon_with_busybox();
    d.berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
        .success();
    d.berth(&["tag", "busybox:latest", "sfbox:v2"]).success();
    d.berth(&[
        "service",
        "create",
        "--name",
        "web",
        "--detach",
        "--publish",
        "published=38531,target=80,mode=host",
        "--mount",
        "type=tmpfs,dst=/www,tmpfs-size=4m",
        "--stop-grace-period",
        "1s",
        "--entrypoint",
        "sh -c",
        "busybox:latest",
        "echo \"$HOSTNAME${V:-}\" > /www/index.html && exec httpd -f -p 80 -h /www",
    ])
    .success();
    let first = wait_current_task_container(&d, "web");
    let mounts = exec_out(&d, &first, "grep ' /www ' /proc/mounts");
    assert!(mounts.starts_with("tmpfs /www tmpfs"), "{mounts}");
    assert!(mounts.contains("size=4096k"), "{mounts}");
    until("the published port to answer", || host_get(38531).is_some());
    d.berth(&[
        "service",
        "update",
        "--detach",
        "--publish-add",
        "published=38532,target=80,mode=host",
        "--publish-rm",
        "target=80,mode=host",
        "--env-add",
        "V=v2",
        "--image",
        "sfbox:v2",
        "web",
    ])
    .success();
    let spec = service(&d, "web")["Spec"].clone();
    assert_eq!(spec["TaskTemplate"]["ContainerSpec"]["Image"], "sfbox:v2");
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Env"],
        json!(["V=v2"])
    );
    assert_eq!(
        spec["EndpointSpec"]["Ports"],
        json!([{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 38532, "PublishMode": "host"}])
    );
    let second = wait_current_task_container(&d, "web");
    assert_ne!(first, second, "the update rolls the task");
    let mut body = None;
    until("the new published port to answer with the new env", || {
        body = host_get(38532);
        body.as_deref().is_some_and(|b| b.ends_with("v2"))
    });
    until("the old published port to close", || {
        host_get(38531).is_none()
    });
    d.berth(&["service", "rm", "web"]).success();
    d.berth(&["swarm", "leave", "--force"]).success();
}

#[test]
fn bad_values_get_the_docker_clis_errors() {
    require_root!();
    let d = Daemon::start();
    let cases: &[&[&str]] = &[
        &["--limit-cpu", "x"],
        &["--limit-memory", "x"],
        &["--reserve-cpu", "1.0000000001"],
        &["--limit-pids", "x"],
        &["--placement-pref", "foo"],
        &["--placement-pref", "foo=bar"],
        &["--replicas-max-per-node", "x"],
        &["--publish", "published=80"],
        &["--publish", "x"],
        &["-p", "target=80,mode=x"],
        &["--restart-window", "x"],
        &["--mount", "type=tmpfs"],
        &["--mount", "type=bind,dst=/x,volume-nocopy"],
        &["--health-retries", "x"],
        &["--health-interval", "x"],
        &["--host", "foo"],
        &["--dns", "x"],
        &["--ulimit", "x=1"],
        &["--no-healthcheck", "--health-cmd", "x"],
    ];
    for flags in cases {
        let mut args = vec!["service", "create"];
        args.extend(*flags);
        args.push("busybox:latest");
        let ours = d.berth(&args).failure();
        let first = ours.stderr.lines().next().unwrap_or_default().to_string();
        assert!(
            first.contains(flags[flags.len() - 2]) || first.contains("conflicts"),
            "{flags:?}: {}",
            ours.stderr
        );
        if let Some(theirs) = d.docker(&args) {
            let theirs = theirs.failure();
            assert_eq!(
                first,
                theirs.stderr.lines().next().unwrap_or_default(),
                "{flags:?}"
            );
        }
    }
}
