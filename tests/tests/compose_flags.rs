//! `berth compose` convergence details and flags against a real daemon: a replacement made
//! beside the old container (a failed create leaves the old one), `up --timestamps` and
//! `--attach-dependencies`, `ps --orphans`, `config --no-interpolate` and `build --print`,
//! `--check`, `--ssh`, compared with Docker Compose v2 where its CLI plugin is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_e2e::containers::daemon_with_busybox;
use berth_e2e::{Daemon, Output, docker_cli, require_root};
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn project_dir(d: &Daemon, name: &str, text: &str) -> PathBuf {
    let dir = d.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), text).unwrap();
    dir
}

fn compose(d: &Daemon, dir: &Path, args: &[&str]) -> Output {
    let file = dir.join("compose.yaml").display().to_string();
    let mut all = vec!["compose", "-f", &file];
    all.extend(args);
    d.berth(&all)
}

fn compose_v2_available() -> bool {
    docker_cli().is_some_and(|docker| {
        Command::new(docker)
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The containers of the daemon: (name, id, state), sorted.
fn all_containers(d: &Daemon) -> Vec<(String, String, String)> {
    let list = d.api().get("/containers/json?all=1").json();
    let mut out: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["Names"][0]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('/')
                    .to_string(),
                c["Id"].as_str().unwrap().to_string(),
                c["State"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn http_get(port: u16) -> String {
    use std::io::{Read, Write};
    let mut body = String::new();
    for _ in 0..100 {
        body.clear();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n");
            let _ = s.read_to_string(&mut body);
            if body.contains("200") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    body
}

fn web(port: u16, extra: &str) -> String {
    format!(
        r#"
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo $$MODE > /www/index.html && exec busybox httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    stop_grace_period: 1s
    environment: {{MODE: first}}
{extra}"#
    )
}

/// A replacement is created beside the old container: when the daemon refuses it, the old
/// container is still there, running, under its name, and nothing else is left behind.
#[test]
fn compose_failed_recreate_keeps_the_old_container() {
    require_root!();
    let d = daemon_with_busybox();
    let port = free_port();
    let dir = project_dir(&d, "keep", &web(port, ""));
    compose(&d, &dir, &["up", "-d"]).success();
    let before = all_containers(&d);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].0, "keep-web-1");
    assert!(http_get(port).contains("first"));

    // 1 KiB of memory: the daemon refuses the create.
    std::fs::write(
        dir.join("compose.yaml"),
        web(port, "    mem_limit: 1k\n").replace("MODE: first", "MODE: second"),
    )
    .unwrap();
    let out = compose(&d, &dir, &["up", "-d"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("Minimum memory limit allowed is 6MB"),
        "{}",
        out.stderr
    );
    assert_eq!(all_containers(&d), before);
    assert!(http_get(port).contains("first"));

    // A change the daemon accepts: the new container takes the name and the port.
    std::fs::write(
        dir.join("compose.yaml"),
        web(port, "").replace("MODE: first", "MODE: second"),
    )
    .unwrap();
    compose(&d, &dir, &["up", "-d"]).success();
    let after = all_containers(&d);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].0, "keep-web-1");
    assert_ne!(after[0].1, before[0].1);
    assert_eq!(after[0].2, "running");
    assert!(http_get(port).contains("second"));
    compose(&d, &dir, &["down", "-t", "1"]).success();
    assert!(all_containers(&d).is_empty());
}

const CHAIN: &str = r#"
services:
  db:
    image: busybox
    command: ["sh", "-c", "echo db-says-hi"]
  app:
    image: busybox
    command: ["sh", "-c", "echo app-says-hi"]
    depends_on: [db]
"#;

/// `up SERVICE` attaches to the named service only; `--attach-dependencies` to its
/// dependencies too; `--timestamps` puts the daemon's timestamp on each line.
#[test]
fn compose_up_attach_dependencies_and_timestamps() {
    require_root!();
    let d = daemon_with_busybox();
    let dir = project_dir(&d, "chain", CHAIN);
    let out = compose(&d, &dir, &["up", "app"]).success();
    assert!(
        out.stdout.contains("Attaching to app-1\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("app-1  | app-says-hi"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("db-says-hi"), "{}", out.stdout);

    let out = compose(
        &d,
        &dir,
        &["up", "--attach-dependencies", "--timestamps", "app"],
    )
    .success();
    assert!(
        out.stdout.contains("Attaching to app-1, db-1\n"),
        "{}",
        out.stdout
    );
    // `app-1  | 2026-01-02T03:04:05.123456789Z app-says-hi`
    for (prefix, text) in [("app-1  | ", "app-says-hi"), ("db-1   | ", "db-says-hi")] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no {text}: {}", out.stdout));
        let rest = line.strip_prefix(prefix).expect(line);
        let (stamp, said) = rest.split_once(' ').expect(line);
        assert_eq!(said, text);
        assert!(
            stamp.len() > 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{line}"
        );
    }

    let out = compose(&d, &dir, &["up", "-d", "--attach-dependencies"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("--detach cannot be combined with --abort-on-container-exit, --abort-on-container-failure, --attach, --attach-dependencies or --watch"),
        "{}",
        out.stderr
    );
    let out = compose(&d, &dir, &["up", "--attach", "db", "--attach-dependencies"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("cannot combine --attach and --attach-dependencies"),
        "{}",
        out.stderr
    );
    compose(&d, &dir, &["down", "-t", "1"]).success();
    assert!(all_containers(&d).is_empty());
}

/// `ps` lists orphans by default (Compose's `--orphans=true`); `--orphans=false` hides them.
#[test]
fn compose_ps_orphans() {
    require_root!();
    let d = daemon_with_busybox();
    let two = r#"
services:
  a: {image: busybox, command: [sleep, "300"], stop_grace_period: 1s}
  b: {image: busybox, command: [sleep, "300"], stop_grace_period: 1s}
"#;
    let dir = project_dir(&d, "orph", two);
    compose(&d, &dir, &["up", "-d"]).success();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  a: {image: busybox, command: [sleep, \"300\"], stop_grace_period: 1s}\n",
    )
    .unwrap();
    let out = compose(&d, &dir, &["ps", "--format", "{{.Service}}"]).success();
    assert_eq!(out.stdout, "a\nb\n");
    let out = compose(
        &d,
        &dir,
        &["ps", "--orphans=false", "--format", "{{.Service}}"],
    )
    .success();
    assert_eq!(out.stdout, "a\n");
    if compose_v2_available() {
        let file = dir.join("compose.yaml").display().to_string();
        for flag in ["--orphans=true", "--orphans=false"] {
            let theirs = d
                .docker(&[
                    "compose",
                    "-f",
                    &file,
                    "ps",
                    flag,
                    "--format",
                    "{{.Service}}",
                ])
                .unwrap()
                .success();
            let ours = compose(&d, &dir, &["ps", flag, "--format", "{{.Service}}"]).success();
            assert_eq!(ours.stdout, theirs.stdout, "{flag}");
        }
    }
    let out = compose(&d, &dir, &["ps", "nope"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no such service: nope"),
        "{}",
        out.stderr
    );
    compose(&d, &dir, &["down", "--remove-orphans", "-t", "1"]).success();
    assert!(all_containers(&d).is_empty());
}

/// `config --no-interpolate` prints the files as written (variables in place), with the
/// project's name and default network, as Compose does; `build --print` prints Compose's bake
/// file; `--check` and `--ssh`, which the daemon's builder cannot do, are refused.
#[test]
fn compose_config_no_interpolate_and_build_print() {
    require_root!();
    let d = daemon_with_busybox();
    let text = r#"
services:
  web:
    image: busybox:${TAG:-latest}
    environment:
      A: ${A}
    command: echo $$HOME ${B:-x}
    ports: ["${PORT:-8080}:80"]
  api:
    build:
      context: .
      args: {X: "1"}
      labels: {tier: api}
      target: run
    image: cfg-api
"#;
    let dir = project_dir(&d, "cfg", text);
    std::fs::write(dir.join("Dockerfile"), "FROM busybox AS run\n").unwrap();
    let out = compose(&d, &dir, &["config", "--no-interpolate"]).success();
    assert!(
        out.stdout.contains("image: busybox:${TAG:-latest}"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("- ${PORT:-8080}:80"), "{}", out.stdout);
    assert!(out.stdout.contains("name: cfg_default"), "{}", out.stdout);
    let json = compose(
        &d,
        &dir,
        &["config", "--no-interpolate", "--format", "json"],
    )
    .success();
    let model: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(model["services"]["web"]["command"], "echo $$HOME ${B:-x}");
    assert_eq!(model["services"]["web"]["environment"]["A"], "${A}");

    let print = compose(&d, &dir, &["build", "--print"]).success();
    let bake: Value = serde_json::from_str(&print.stdout).unwrap();
    assert_eq!(
        bake["group"]["default"]["targets"],
        serde_json::json!(["api"])
    );
    let api = &bake["target"]["api"];
    assert_eq!(api["args"]["X"], "1");
    assert_eq!(api["labels"]["tier"], "api");
    assert_eq!(api["labels"]["com.docker.compose.service"], "api");
    assert_eq!(api["tags"], serde_json::json!(["cfg-api"]));
    assert_eq!(api["output"], serde_json::json!(["type=docker"]));
    // Nothing was built.
    assert_eq!(d.api().get("/images/cfg-api/json").status, 404);

    if compose_v2_available() {
        let file = dir.join("compose.yaml").display().to_string();
        // (YAML is compared as data: the printers quote and indent differently.)
        for args in [
            &["config", "--no-interpolate", "--format", "json"][..],
            &["build", "--print"],
        ] {
            let mut all = vec!["compose", "-f", &file];
            all.extend(args);
            let theirs = d.docker(&all).unwrap().success();
            let ours = compose(&d, &dir, args).success();
            let theirs: Value = serde_json::from_str(&theirs.stdout).unwrap();
            let ours: Value = serde_json::from_str(&ours.stdout).unwrap();
            assert_eq!(ours, theirs, "{args:?}");
        }
    }

    // (`--ssh` is served by a build session: tests/tests/build_session.rs.)
    let out = compose(&d, &dir, &["build", "--check"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("build checks"), "{}", out.stderr);
    assert_eq!(d.api().get("/images/cfg-api/json").status, 404);
}
