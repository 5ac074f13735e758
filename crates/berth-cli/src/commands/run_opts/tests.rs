//! The create bodies docker 28.2's CLI sent for a table of `docker run` command lines
//! (captured from a socket listener, `docker_create.jsonl`), compared with ours.

use clap::Parser;
use serde_json::Value;

use super::parse::{
    PortMap, parse_device, parse_expose, parse_mount, parse_port_spec, parse_restart, parse_ulimit,
};
use super::*;

#[derive(Debug, Parser)]
#[command(name = "run", disable_help_flag = true)]
struct Run {
    #[command(flatten)]
    run: RunFlags,
    #[command(flatten)]
    opts: ContainerOptions,
}

fn parse(args: &[&str]) -> Result<Run, clap::Error> {
    Run::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
}

/// Go leaves out nil pointers only with `omitempty`; we may emit `null` for them instead.
fn strip_nulls(value: Value) -> Value {
    berth_client::strip_nulls(value)
}

#[test]
fn create_bodies_match_what_docker_sends() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("{}/", dir.path().display());
    std::fs::write(
        dir.path().join("sec.json"),
        "{\"defaultAction\":\"SCMP_ACT_ALLOW\"}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("env.list"), "A=1\n# c\nB\n").unwrap();
    std::fs::write(dir.path().join("labels"), "l1=x\n").unwrap();
    let fixtures = include_str!("docker_create.jsonl").replace("/tmp/cap/", &root);
    let mut checked = 0;
    for line in fixtures.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let args: Vec<&str> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let run = parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let spec = run
            .opts
            .to_spec(run.run.detach)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let ours = sort_env(strip_nulls(serde_json::to_value(&spec.request).unwrap()));
        let theirs = sort_env(strip_nulls(case["body"].clone()));
        if ours != theirs {
            diff("", &ours, &theirs);
            panic!("{args:?}: bodies differ");
        }
        let path = case["path"].as_str().unwrap();
        assert_eq!(spec.name.is_some(), path.contains("name="), "{args:?}");
        assert_eq!(
            spec.platform.is_some(),
            path.contains("platform="),
            "{args:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 19);
}

#[test]
fn memory_sizes() {
    // The grammar itself is tested in berth_api::units; here, what the flags make of it.
    let run = parse(&["-m", "1.5GiB", "--memory-swap", "-1", "busybox"]).unwrap();
    let spec = run.opts.to_spec(false).unwrap();
    let resources = spec.request.host_config.unwrap().resources;
    assert_eq!(resources.memory, 3 << 29);
    assert_eq!(resources.memory_swap, -1);
    // `-1` means unlimited only for --memory-swap, as in docker.
    let run = parse(&["--memory=-1", "busybox"]).unwrap();
    assert_eq!(
        run.opts.to_spec(false).unwrap_err().to_string(),
        "invalid argument \"-1\" for \"-m, --memory\" flag: invalid size: '-1'"
    );
    let run = parse(&["--memory-swap", "12q", "busybox"]).unwrap();
    assert_eq!(
        run.opts.to_spec(false).unwrap_err().to_string(),
        "invalid argument \"12q\" for \"--memory-swap\" flag: invalid suffix: 'q'"
    );
    let run = parse(&["-m", "x", "busybox"]).unwrap();
    let err = run.opts.to_spec(false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument \"x\" for \"-m, --memory\" flag: invalid size: 'x'"
    );
    let status = err
        .downcast::<OptionError>()
        .unwrap()
        .into_status("run", "berth run [OPTIONS] IMAGE [COMMAND] [ARG...]");
    let status = status.downcast_ref::<StatusError>().unwrap();
    assert_eq!(status.code, 125);
    assert_eq!(
        status.message,
        "invalid argument \"x\" for \"-m, --memory\" flag: invalid size: 'x'\n\n\
         Usage:  berth run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n\
         Run 'berth run --help' for more information"
    );
}

#[test]
fn ports() {
    let mut map = PortMap::new();
    parse_port_spec("8000-8002:80", &mut map).unwrap();
    assert_eq!(map["80/tcp"][0].host_port, "8000-8002");
    parse_port_spec("[::1]:53:53/udp", &mut map).unwrap();
    assert_eq!(map["53/udp"][0].host_ip, "::1");
    parse_port_spec("8080:80", &mut map).unwrap();
    assert_eq!(map["80/tcp"].len(), 2);
    for (spec, err) in [
        ("99999", "invalid containerPort: 99999"),
        ("x:80", "invalid hostPort: x"),
        ("80/xyz", "invalid proto: xyz"),
        (
            "1-3:4-5",
            "invalid ranges specified for container and host Ports: 4-5 and 1-3",
        ),
        ("300.1.1.1:80:80", "invalid IP address: 300.1.1.1"),
    ] {
        assert_eq!(parse_port_spec(spec, &mut map).unwrap_err(), err, "{spec}");
    }
    assert_eq!(parse_expose("7000-7001").unwrap(), ["7000/tcp", "7001/tcp"]);
}

#[test]
fn mounts_restart_ulimits_devices() {
    let m = parse_mount("type=bind,src=/a,dst=/b,bind-propagation=rshared").unwrap();
    assert_eq!(m.bind_options.unwrap().propagation, "rshared");
    assert_eq!(
        parse_mount("type=bind,source=/a").unwrap_err(),
        "target is required"
    );
    assert!(parse_mount("type=bind,target=/x,volume-nocopy").is_err());
    assert!(parse_mount("target=/x,bogus=1").is_err());

    assert_eq!(
        parse_restart("on-failure:3").unwrap().maximum_retry_count,
        3
    );
    assert_eq!(parse_restart("always").unwrap().name, "always");
    assert!(parse_restart("always:3").is_err());
    assert!(parse_restart("on-failure:x").is_err());

    let u = parse_ulimit("nofile=1024:2048").unwrap();
    assert_eq!((u.soft, u.hard), (1024, 2048));
    assert_eq!(
        parse_ulimit("nofile").unwrap_err(),
        "invalid ulimit argument: nofile"
    );
    assert_eq!(
        parse_ulimit("bogus=1").unwrap_err(),
        "invalid ulimit type: bogus"
    );
    assert!(parse_ulimit("nofile=10:5").is_err());

    let d = parse_device("/dev/sda:r").unwrap();
    assert_eq!(
        (d.path_in_container.as_str(), d.cgroup_permissions.as_str()),
        ("/dev/sda", "r")
    );
    assert!(parse_device("/dev/sda:/dev/b:x").is_err());
}

#[test]
fn flag_conflicts() {
    let err = |args: &[&str]| {
        let run = parse(args).unwrap();
        run.opts.to_spec(run.run.detach).unwrap_err().to_string()
    };
    assert_eq!(
        err(&["--network", "host", "--network-alias", "x", "busybox"]),
        "network-scoped aliases are only supported for user-defined networks"
    );
    assert_eq!(
        err(&["-d", "-a", "stdout", "busybox"]),
        "conflicting options: cannot specify both --attach and --detach"
    );
    assert_eq!(
        err(&["--no-healthcheck", "--health-cmd", "x", "busybox"]),
        "--no-healthcheck conflicts with --health-* options"
    );
    assert_eq!(
        err(&["--rm", "--restart", "always", "busybox"]),
        "Conflicting options: --restart and --rm"
    );
}

#[test]
fn arguments_after_the_image_belong_to_the_command() {
    let run = parse(&["-e", "A=1", "busybox", "ls", "-l", "-e", "--rm"]).unwrap();
    assert_eq!(run.opts.args, ["busybox", "ls", "-l", "-e", "--rm"]);
    assert!(!run.opts.rm);
    assert!(run.run.sig_proxy);
    let run = parse(&["--sig-proxy=false", "busybox"]).unwrap();
    assert!(!run.run.sig_proxy);
    let spec = parse(&["--entrypoint", "", "busybox"])
        .unwrap()
        .opts
        .to_spec(false)
        .unwrap();
    assert_eq!(spec.request.config.entrypoint, Some(vec![String::new()]));
}

fn diff(path: &str, ours: &Value, theirs: &Value) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                diff(&format!("{path}.{key}"), x, y);
            }
        }
        (a, b) if a != b => eprintln!("{path}: ours {a} docker {b}"),
        _ => {}
    }
}

/// docker 28 sends `Env` in Go map order (it varies from run to run): compare it sorted.
fn sort_env(mut body: Value) -> Value {
    if let Some(Value::Array(env)) = body.get_mut("Env") {
        env.sort_by_key(|v| v.to_string());
    }
    body
}

#[test]
fn volumes_binds_and_tmpfs() {
    let spec = parse(&[
        "-v",
        "/host:/c:ro",
        "-v",
        "named:/n",
        "-v",
        "/anon",
        "-v",
        "./rel:/r",
        "--tmpfs",
        "/t:size=1m",
        "busybox",
    ])
    .unwrap()
    .opts
    .to_spec(false)
    .unwrap();
    let host = spec.request.host_config.unwrap();
    let binds = host.binds.unwrap();
    assert_eq!(&binds[..2], ["/host:/c:ro", "named:/n"]);
    assert!(
        binds[2].starts_with('/') && binds[2].ends_with("/rel:/r"),
        "{}",
        binds[2]
    );
    let volumes = spec.request.config.volumes.unwrap();
    assert_eq!(volumes.keys().collect::<Vec<_>>(), ["/anon"]);
    assert_eq!(host.tmpfs.unwrap()["/t"], "size=1m");
    let err = parse(&["--env-file", "/nonexistent/env", "busybox"])
        .unwrap()
        .opts
        .to_spec(false)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "open /nonexistent/env: no such file or directory"
    );
}
