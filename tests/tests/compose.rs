//! `berth compose` against a real daemon: a multi-service app brought up with `--wait`,
//! reached from the host, scaled, changed (only the changed service recreated), left alone by
//! an unchanged `up`, and brought down leaving nothing; bad input creating nothing; and
//! interoperability with Docker Compose v2 in both directions (skipped where its CLI plugin is
//! not installed: scripts/install-test-peers.sh installs it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_e2e::containers::daemon_with_busybox;
use berth_e2e::{Daemon, Output, docker_cli, require_root};
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn app(port: u16, worker_sleep: u32) -> String {
    format!(
        r#"
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec busybox httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    stop_grace_period: 1s
    depends_on:
      db: {{condition: service_healthy}}
  db:
    image: busybox
    command: ["sh", "-c", "echo ok > /data/ready; exec sleep 300"]
    stop_grace_period: 1s
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/ready"]
      interval: 1s
      retries: 30
  worker:
    image: busybox
    command: ["sh", "-c", "test -f /scratch/first || date > /scratch/first; exec sleep {worker_sleep}"]
    stop_grace_period: 1s
    volumes: ["/scratch"]
volumes:
  data: {{}}
"#
    )
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

/// The project's containers: name -> (id, state), from the API.
fn containers(d: &Daemon, project: &str) -> Vec<(String, String, String)> {
    let filter = format!(r#"{{"label":["com.docker.compose.project={project}"]}}"#);
    let list = d
        .api()
        .get(&format!(
            "/containers/json?all=1&filters={}",
            urlencode(&filter)
        ))
        .json();
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

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET / on the host's published port; `--wait` only knows the container runs, so the
/// server may take a moment to listen.
fn http_get(port: u16) -> String {
    let mut body = String::new();
    for _ in 0..100 {
        body.clear();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n");
            let _ = s.read_to_string(&mut body);
            if body.contains("200") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    body
}

fn names(list: &[(String, String, String)]) -> Vec<&str> {
    list.iter().map(|(n, _, _)| n.as_str()).collect()
}

#[test]
fn compose_app_comes_up_scales_converges_and_goes_down() {
    require_root!();
    let d = daemon_with_busybox();
    let port = free_port();
    let dir = project_dir(&d, "shop", &app(port, 300));

    compose(&d, &dir, &["up", "-d", "--wait"]).success();
    let first = containers(&d, "shop");
    assert_eq!(names(&first), ["shop-db-1", "shop-web-1", "shop-worker-1"]);
    assert!(first.iter().all(|(_, _, s)| s == "running"), "{first:?}");
    let body = http_get(port);
    assert!(
        body.contains("hello-from-web"),
        "{body}\n{}",
        compose(&d, &dir, &["logs", "web"]).stdout
    );

    // Compose v2's labels and resource names.
    let web = d.api().get("/containers/shop-web-1/json").json();
    let labels = &web["Config"]["Labels"];
    assert_eq!(labels["com.docker.compose.project"], "shop");
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(labels["com.docker.compose.container-number"], "1");
    assert_eq!(labels["com.docker.compose.oneoff"], "False");
    assert_eq!(
        labels["com.docker.compose.depends_on"],
        "db:service_healthy:false"
    );
    assert_eq!(
        labels["com.docker.compose.project.working_dir"],
        dir.display().to_string()
    );
    assert_eq!(
        labels["com.docker.compose.config-hash"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(
        labels["com.docker.compose.image"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        web["NetworkSettings"]["Networks"]["shop_default"].is_object(),
        "{web}"
    );
    let net = d.api().get("/networks/shop_default").json();
    assert_eq!(net["Labels"]["com.docker.compose.network"], "default");
    let vol = d.api().get("/volumes/shop_data").json();
    assert_eq!(vol["Labels"]["com.docker.compose.volume"], "data");
    // The service name resolves on the project network.
    let out = compose(
        &d,
        &dir,
        &[
            "exec",
            "-T",
            "worker",
            "wget",
            "-q",
            "-O",
            "-",
            "http://web/index.html",
        ],
    )
    .success();
    assert_eq!(out.stdout.trim(), "hello-from-web");

    // config --hash agrees with the label.
    let out = compose(&d, &dir, &["config", "--hash", "web"]).success();
    assert_eq!(
        out.stdout.trim(),
        format!(
            "web {}",
            labels["com.docker.compose.config-hash"].as_str().unwrap()
        )
    );

    // An unchanged project: nothing is touched.
    let out = compose(&d, &dir, &["up", "-d"]).success();
    assert_eq!(containers(&d, "shop"), first, "{}", out.stderr);
    assert!(
        !out.stderr.contains("Created") && !out.stderr.contains("Recreated"),
        "{}",
        out.stderr
    );

    // Scaling adds and then removes the highest numbers.
    compose(&d, &dir, &["up", "-d", "--scale", "worker=3"]).success();
    let scaled = containers(&d, "shop");
    assert_eq!(
        names(&scaled),
        [
            "shop-db-1",
            "shop-web-1",
            "shop-worker-1",
            "shop-worker-2",
            "shop-worker-3"
        ]
    );
    compose(&d, &dir, &["up", "-d", "--scale", "worker=1"]).success();
    assert_eq!(containers(&d, "shop"), first);

    let worker = d.api().get("/containers/shop-worker-1/json").json();
    let anonymous = worker["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/scratch")
        .map(|m| m["Name"].clone())
        .unwrap_or_else(|| panic!("no anonymous volume: {worker}"));

    // One service changed: only it is recreated.
    std::fs::write(dir.join("compose.yaml"), app(port, 301)).unwrap();
    compose(&d, &dir, &["up", "-d"]).success();
    let changed = containers(&d, "shop");
    assert_eq!(names(&changed), names(&first));
    assert_eq!(changed[0], first[0], "db was recreated");
    assert_eq!(changed[1], first[1], "web was recreated");
    assert_ne!(changed[2].1, first[2].1, "worker was not recreated");
    // The recreated container took its predecessor's anonymous volume over.
    let worker = d.api().get("/containers/shop-worker-1/json").json();
    let scratch: Vec<&Value> = worker["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Destination"] == "/scratch")
        .collect();
    assert_eq!(scratch.len(), 1, "{worker}");
    assert_eq!(scratch[0]["Name"], anonymous, "{worker}");

    let out = compose(&d, &dir, &["ps", "--format", "{{.Service}} {{.State}}"]).success();
    assert_eq!(out.stdout, "db running\nweb running\nworker running\n");
    let out = compose(&d, &dir, &["logs", "--no-color", "db"]).success();
    assert!(
        out.stdout.is_empty() || out.stdout.starts_with("db-1"),
        "{}",
        out.stdout
    );

    compose(&d, &dir, &["down", "-v", "-t", "1"]).success();
    assert!(containers(&d, "shop").is_empty());
    assert_eq!(d.api().get("/networks/shop_default").status, 404);
    assert_eq!(d.api().get("/volumes").json()["Volumes"], json!([]));
}

#[test]
fn compose_bad_input_creates_nothing() {
    require_root!();
    let d = daemon_with_busybox();
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  web:\n    image: busybox\n    foo: 1\n",
            "services.web Additional property foo is not allowed",
        ),
        ("services:\n  web:\n    image: busybox\n   bad: [\n", "line"),
        (
            "services:\n  web:\n    image: \"${NOPE:?set NOPE}\"\n",
            "required variable NOPE is missing a value: set NOPE",
        ),
        (
            "services:\n  a:\n    image: busybox\n    depends_on: [b]\n  b:\n    image: busybox\n    depends_on: [a]\n",
            "dependency cycle detected",
        ),
        (
            "services:\n  web:\n    image: busybox\n    networks: [nope]\n",
            "undefined network nope",
        ),
        (
            "services:\n  web:\n    image: busybox\n    env_file: missing.env\n",
            "missing.env not found",
        ),
        (
            "services:\n  web:\n    image: busybox\n    command: [sleep, '30']\n    volumes: [\"data:/d\"]\n    networks: [ext]\nvolumes:\n  data: {}\nnetworks:\n  ext:\n    external: true\n",
            "network ext declared as external, but could not be found",
        ),
    ];
    for (i, (text, message)) in cases.iter().enumerate() {
        let dir = project_dir(&d, &format!("bad{i}"), text);
        let out = compose(&d, &dir, &["up", "-d"]);
        assert_eq!(out.code, 1, "case {i}: {}", out.stderr);
        assert!(out.stderr.contains(message), "case {i}: {}", out.stderr);
    }
    assert_eq!(d.api().get("/containers/json?all=1").json(), json!([]));
    assert_eq!(d.api().get("/volumes").json()["Volumes"], json!([]));
    let networks = d.api().get("/networks").json();
    assert!(
        networks
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["Labels"].get("com.docker.compose.project").is_none()),
        "{networks}"
    );
}

fn compose_v2_available() -> bool {
    docker_cli().is_some_and(|docker| {
        Command::new(docker)
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn docker_compose(d: &Daemon, dir: &Path, args: &[&str]) -> Output {
    let file = dir.join("compose.yaml").display().to_string();
    let mut all = vec!["compose", "-f", &file];
    all.extend(args);
    d.docker(&all).unwrap()
}

const INTEROP: &str = r#"
services:
  web:
    image: busybox
    command: ["sleep", "300"]
    stop_grace_period: 1s
    volumes: ["data:/data"]
    environment: {MODE: web, LEVEL: 2}
    labels: [tier=front]
    healthcheck: {test: ["CMD", "true"], interval: 1s, retries: 3}
    restart: unless-stopped
    # Numeric fields Compose hashes in its own way (float32, sizes, strings as integers).
    cpus: 0.5
    mem_limit: 96m
    mem_reservation: 32m
    cpu_shares: 512
    pids_limit: 200
  worker:
    image: busybox
    command: sleep 300
    stop_grace_period: 1s
    depends_on: [web]
    deploy:
      resources: {limits: {memory: 64m, cpus: "0.25"}}
      restart_policy: {condition: on-failure, window: 1m}
  cache:
    image: busybox
    command: ["sleep", "300"]
    stop_grace_period: 1s
    environment: {ROLE: cache}
    env_file: [cache.env]
volumes:
  data: {}
"#;

#[test]
fn compose_projects_move_between_berth_and_docker_compose_v2() {
    require_root!();
    if !compose_v2_available() {
        eprintln!("skipped: no docker compose plugin (scripts/install-test-peers.sh installs it)");
        return;
    }
    let d = daemon_with_busybox();
    let dir = project_dir(&d, "interop", INTEROP);
    std::fs::write(dir.join("cache.env"), "SIZE=64\n").unwrap();

    // Both compute the same config hashes.
    // (`config --hash` of a service with an env_file hashes the file's path where the label
    // `up` writes hashes its variables: compared through the labels below.)
    let ours = compose(&d, &dir, &["config", "--hash", "web,worker"]).success();
    let theirs = docker_compose(&d, &dir, &["config", "--hash", "web,worker"]).success();
    assert_eq!(ours.stdout, theirs.stdout);

    // Made by berth compose, seen, left alone and removed by Docker Compose.
    compose(&d, &dir, &["up", "-d"]).success();
    let made = containers(&d, "interop");
    let out = docker_compose(&d, &dir, &["ps", "--format", "{{.Service}} {{.State}}"]).success();
    assert_eq!(out.stdout, "cache running\nweb running\nworker running\n");
    let out = docker_compose(&d, &dir, &["up", "-d"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        containers(&d, "interop"),
        made,
        "docker compose recreated: {}",
        out.stderr
    );
    docker_compose(&d, &dir, &["down", "-v", "-t", "1"]).success();
    assert_eq!(d.api().get("/containers/json?all=1").json(), json!([]));
    assert_eq!(d.api().get("/volumes").json()["Volumes"], json!([]));

    // Made by Docker Compose, seen, left alone, scaled and removed by berth compose.
    docker_compose(&d, &dir, &["up", "-d"]).success();
    let made = containers(&d, "interop");
    let out = compose(&d, &dir, &["ps", "--format", "{{.Name}} {{.State}}"]).success();
    assert_eq!(
        out.stdout,
        "interop-cache-1 running\ninterop-web-1 running\ninterop-worker-1 running\n"
    );
    let out = compose(&d, &dir, &["up", "-d"]).success();
    assert_eq!(
        containers(&d, "interop"),
        made,
        "berth compose recreated: {}",
        out.stderr
    );
    compose(&d, &dir, &["up", "-d", "--scale", "worker=2"]).success();
    assert_eq!(
        names(&containers(&d, "interop")),
        [
            "interop-cache-1",
            "interop-web-1",
            "interop-worker-1",
            "interop-worker-2"
        ]
    );
    let out = compose(&d, &dir, &["ls"]).success();
    assert!(out.stdout.contains("interop"), "{}", out.stdout);
    compose(&d, &dir, &["down", "-v", "-t", "1"]).success();
    assert_eq!(d.api().get("/containers/json?all=1").json(), json!([]));
    assert_eq!(d.api().get("/volumes").json()["Volumes"], json!([]));
}

/// Debian's docker-compose (v1), when installed, keeps working against berthd.
#[test]
fn docker_compose_v1_drives_berthd() {
    require_root!();
    let Ok(v1) = which("docker-compose") else {
        eprintln!("skipped: no docker-compose (scripts/install-test-peers.sh installs it)");
        return;
    };
    let d = daemon_with_busybox();
    let dir = project_dir(&d, "legacy", INTEROP);
    std::fs::write(dir.join("cache.env"), "SIZE=64\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&v1)
            .args(["-p", "legacy", "-f"])
            .arg(dir.join("compose.yaml"))
            .args(args)
            .env("DOCKER_HOST", d.host())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["up", "-d"]);
    assert_eq!(
        names(&containers(&d, "legacy")),
        ["legacy_cache_1", "legacy_web_1", "legacy_worker_1"]
    );
    // berth compose sees v1's project through the same labels.
    let out = compose(
        &d,
        &dir,
        &["-p", "legacy", "ps", "--format", "{{.Service}} {{.State}}"],
    )
    .success();
    assert_eq!(out.stdout, "cache running\nweb running\nworker running\n");
    run(&["down", "-v", "-t", "1"]);
    assert!(containers(&d, "legacy").is_empty());
    assert_eq!(d.api().get("/volumes").json()["Volumes"], json!([]));
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

const JOBS: &str = r#"
services:
  init:
    image: busybox
    command: ["sh", "-c", "echo init done"]
  app:
    image: busybox
    command: ["sh", "-c", "cat /run/secrets/token /run/secrets/key /etc/app.conf /inline.conf; exit 3"]
    depends_on:
      init: {condition: service_completed_successfully}
    secrets: [token, key]
    configs:
      - source: conf
        target: /etc/app.conf
      - inline.conf
secrets:
  token: {environment: COMPOSE_E2E_TOKEN}
  key: {file: ./key.txt}
configs:
  conf: {file: ./app.conf}
  inline.conf: {content: "inline-config"}
"#;

#[test]
fn compose_attached_up_exit_code_secrets_and_one_off_run() {
    require_root!();
    let d = daemon_with_busybox();
    let dir = project_dir(&d, "jobs", JOBS);
    std::fs::write(dir.join("key.txt"), "file-secret\n").unwrap();
    std::fs::write(dir.join("app.conf"), "file-config\n").unwrap();
    let file = dir.join("compose.yaml").display().to_string();
    let mut cmd = Command::new(berth_e2e::daemon::binary("berth"));
    cmd.args([
        "-H",
        &d.host(),
        "compose",
        "-f",
        &file,
        "up",
        "--exit-code-from",
        "app",
        "--no-color",
    ])
    .env("COMPOSE_E2E_TOKEN", "env-secret")
    .env("BERTH_CONFIG", d.dir().join("berth-config"));
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "init-1  | init done",
        "app-1   | env-secret",
        "file-secret",
        "app-1   | file-config",
        "inline-config",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    // The secret's value was written where only this user can read it, until `down`.
    let files = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("berth-compose/jobs");
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&files), 0o700);
    assert_eq!(mode(&files.join("secrets/token")), 0o444);

    // `--wait` does not wait on a job (a service_completed_successfully dependency) to run.
    let out = compose(&d, &dir, &["up", "-d", "--wait", "init"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // `wait` reports the exit codes, and exits with the last one.
    let out = compose(&d, &dir, &["wait", "app"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (3, "3\n"),
        "{}",
        out.stderr
    );
    // `events` replays the project's container events.
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let out = compose(
        &d,
        &dir,
        &["events", "--json", "--since", "0", "--until", &until],
    )
    .success();
    let first: serde_json::Value =
        serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "container");
    assert!(
        out.stdout.contains(r#""service":"app""#) && out.stdout.contains(r#""action":"start""#),
        "{}",
        out.stdout
    );

    // A one-off container: its own name and labels, removed with --rm.
    let out = compose(
        &d,
        &dir,
        &[
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "-e",
            "X=1",
            "init",
            "sh",
            "-c",
            "echo one-off $X",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "one-off 1");
    let left = containers(&d, "jobs");
    assert!(
        left.iter().all(|(n, _, _)| !n.contains("-run-")),
        "{left:?}"
    );
    compose(&d, &dir, &["down", "-t", "1"]).success();
    assert!(containers(&d, "jobs").is_empty());
    assert!(!files.exists(), "{} left after down", files.display());
}

#[test]
fn compose_config_prints_the_normalised_model() {
    require_root!();
    let d = Daemon::start();
    let dir = project_dir(
        &d,
        "cfg",
        "name: cfg\nservices:\n  web:\n    image: \"nginx:${TAG:-1.27}\"\n    ports: [\"8080:80\"]\n    environment: [A=1]\n  db:\n    image: postgres\n    profiles: [db]\n",
    );
    let out = compose(&d, &dir, &["config", "--format", "json"]).success();
    let model: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(model["name"], "cfg");
    assert_eq!(model["services"]["web"]["image"], "nginx:1.27");
    assert_eq!(
        model["services"]["web"]["ports"],
        json!([{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}])
    );
    assert_eq!(model["services"]["web"]["environment"], json!({"A": "1"}));
    assert_eq!(model["networks"]["default"]["name"], "cfg_default");
    assert!(model["services"].get("db").is_none());
    let out = compose(&d, &dir, &["config"]).success();
    assert!(
        out.stdout.starts_with("name: cfg\nservices:\n"),
        "{}",
        out.stdout
    );
    let out = compose(&d, &dir, &["--profile", "db", "config", "--services"]).success();
    assert_eq!(out.stdout, "db\nweb\n");
    let out = compose(&d, &dir, &["config", "--images"]).success();
    assert_eq!(out.stdout, "nginx:1.27\n");
}

#[test]
fn compose_verbs_act_on_the_projects_containers() {
    require_root!();
    let d = daemon_with_busybox();
    let port = free_port();
    let dir = project_dir(
        &d,
        "verbs",
        &format!(
            "services:\n  web:\n    image: busybox\n    command: [\"busybox\", \"httpd\", \"-f\", \"-p\", \"80\"]\n    ports: [\"127.0.0.1:{port}:80\"]\n    init: true\n  worker:\n    image: busybox\n    command: [\"sleep\", \"300\"]\n    init: true\n"
        ),
    );
    // One operation at a time (`--parallel 1`) gets there too.
    compose(&d, &dir, &["--parallel", "1", "up", "-d"]).success();
    let state = |service: &str| {
        compose(&d, &dir, &["ps", "-a", "--format", "{{.State}}", service])
            .success()
            .stdout
            .trim()
            .to_string()
    };
    let out = compose(&d, &dir, &["port", "web", "80"]).success();
    assert_eq!(out.stdout.trim(), format!("127.0.0.1:{port}"));
    let out = compose(&d, &dir, &["top", "worker"]).success();
    assert!(
        out.stdout.starts_with("verbs-worker-1\n") && out.stdout.contains("sleep"),
        "{}",
        out.stdout
    );
    let out = compose(&d, &dir, &["images"]).success();
    assert!(
        out.stdout.contains("verbs-web-1") && out.stdout.contains("busybox"),
        "{}",
        out.stdout
    );
    let out = compose(&d, &dir, &["ls"]).success();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("verbs") && l.contains("running(2)")),
        "{}",
        out.stdout
    );

    compose(&d, &dir, &["pause", "worker"]).success();
    assert_eq!(state("worker"), "paused");
    compose(&d, &dir, &["unpause", "worker"]).success();
    assert_eq!(state("worker"), "running");
    compose(&d, &dir, &["stop", "-t", "1", "worker"]).success();
    assert_eq!(state("worker"), "exited");
    compose(&d, &dir, &["start", "worker"]).success();
    assert_eq!(state("worker"), "running");
    compose(&d, &dir, &["restart", "-t", "1", "worker"]).success();
    assert_eq!(state("worker"), "running");
    compose(&d, &dir, &["kill", "worker"]).success();
    assert_eq!(state("worker"), "exited");
    compose(&d, &dir, &["rm", "-f", "worker"]).success();
    assert_eq!(state("worker"), "");

    let local = d.dir().join("note.txt");
    std::fs::write(&local, "copied").unwrap();
    compose(
        &d,
        &dir,
        &["cp", local.to_str().unwrap(), "web:/tmp/note.txt"],
    )
    .success();
    let out = compose(&d, &dir, &["exec", "-T", "web", "cat", "/tmp/note.txt"]).success();
    assert_eq!(out.stdout, "copied");

    // `down -p NAME` where there is no compose file: the project is found by its labels.
    let empty = d.dir().join("elsewhere");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(berth_e2e::daemon::binary("berth"))
        .args(["-H", &d.host(), "compose", "-p", "verbs", "down", "-t", "1"])
        .current_dir(&empty)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(containers(&d, "verbs").is_empty());
    assert_eq!(d.api().get("/networks/verbs_default").status, 404);
}

#[test]
fn compose_push_pull_and_up_pulling_a_missing_image() {
    require_root!();
    let Some(registry) = berth_e2e::registry::Registry::start("compose_push_pull") else {
        return;
    };
    let d = daemon_with_busybox();
    let image = format!("{}/compose/app:1", registry.host());
    d.berth(&["tag", "busybox", &image]).success();
    let dir = project_dir(
        &d,
        "reg",
        &format!(
            "services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"300\"]\n    init: true\n"
        ),
    );
    compose(&d, &dir, &["push"]).success();
    d.berth(&["rmi", &image]).success();
    compose(&d, &dir, &["pull"]).success();
    assert_eq!(d.api().get(&format!("/images/{image}/json")).status, 200);
    d.berth(&["rmi", &image]).success();
    // `up` pulls what is missing (the default policy).
    let out = compose(&d, &dir, &["up", "-d"]).success();
    assert!(out.stderr.contains("Pulled"), "{}", out.stderr);
    assert_eq!(containers(&d, "reg")[0].2, "running");
    // `--pull never` with the image gone refuses before creating anything.
    compose(&d, &dir, &["down", "-t", "1"]).success();
    d.berth(&["rmi", &image]).success();
    let out = compose(&d, &dir, &["up", "-d", "--pull", "never"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("is not present and the pull policy is never"),
        "{}",
        out.stderr
    );
    assert!(containers(&d, "reg").is_empty());
}

#[test]
fn compose_pull_and_push_send_the_logged_in_credentials() {
    require_root!();
    use berth_e2e::registry::{BASIC_PASSWORD, BASIC_USER, Registry};
    let Some(registry) = Registry::start_with_basic_auth("compose_auth") else {
        return;
    };
    let d = daemon_with_busybox();
    let host = registry.host();
    let image = format!("{host}/compose/private:1");
    d.berth(&["tag", "busybox", &image]).success();
    let dir = project_dir(
        &d,
        "priv",
        &format!(
            "services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"300\"]\n    init: true\n"
        ),
    );
    // Anonymous: the registry refuses the push.
    let out = compose(&d, &dir, &["push"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    d.berth_with_stdin(
        &["login", &host, "-u", BASIC_USER, "--password-stdin"],
        Some(format!("{BASIC_PASSWORD}\n").as_bytes()),
    )
    .success();
    compose(&d, &dir, &["push"]).success();
    d.berth(&["rmi", &image]).success();
    compose(&d, &dir, &["pull"]).success();
    assert_eq!(d.api().get(&format!("/images/{image}/json")).status, 200);
    // `up` pulls a missing private image with the same credentials.
    d.berth(&["rmi", &image]).success();
    compose(&d, &dir, &["up", "-d"]).success();
    assert_eq!(containers(&d, "priv")[0].2, "running");
    compose(&d, &dir, &["down", "-t", "1"]).success();
}
