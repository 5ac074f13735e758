//! `berth compose` with `build:` sections against a real daemon: the three-tier app whose api
//! is built from a Dockerfile in the test's directory (a `.dockerignore`, an `ARG` taken from
//! `.env`), brought up with `--build --wait`, reached from the host and from another service;
//! a changed context recreates only api, an unchanged project is left alone, a cached
//! `compose build` says so, `down --rmi local` removes the built image; a failing build
//! starts nothing; `compose build` flags, `dockerfile_inline`, `--no-build`, `create --build`,
//! `pull_policy: build`; remote tarball and git contexts; and Docker Compose v2 (classic
//! builder) and docker-compose v1 building against berthd, where installed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_e2e::containers::daemon_with_busybox;
use berth_e2e::{Daemon, Output, require_root};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn app(port: u16) -> String {
    format!(
        r#"
name: tiers
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec busybox httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    stop_grace_period: 1s
    depends_on:
      api: {{condition: service_started}}
  api:
    build:
      context: ./api
      args: [GREETING]
      labels: {{tier: api}}
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
volumes:
  data: {{}}
"#
    )
}

const API_DOCKERFILE: &str = r#"FROM busybox
ARG GREETING=unset
RUN mkdir -p /www && echo "$GREETING" > /www/index.html
COPY . /src/
COPY version.txt /www/version.txt
CMD ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"#;

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

/// The project's containers: (name, id, state), sorted by name.
fn containers(d: &Daemon, project: &str) -> Vec<(String, String, String)> {
    let list = d.api().get("/containers/json?all=1").json();
    let mut out: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["Labels"]["com.docker.compose.project"] == project)
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

fn names(list: &[(String, String, String)]) -> Vec<&str> {
    list.iter().map(|(n, _, _)| n.as_str()).collect()
}

/// GET `path` on the host's published port, retried while the server starts listening.
fn http_get(port: u16, path: &str) -> String {
    let mut body = String::new();
    for _ in 0..100 {
        body.clear();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes());
            let _ = s.read_to_string(&mut body);
            if body.contains("200") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    body
}

/// `wget` of api's page from inside web, over the project network (retried while api's
/// server starts).
fn api_page(d: &Daemon, dir: &Path, path: &str) -> String {
    let url = format!("http://api:8080{path}");
    let mut last = String::new();
    for _ in 0..50 {
        let out = compose(
            d,
            dir,
            &["exec", "-T", "web", "wget", "-q", "-O", "-", &url],
        );
        if out.code == 0 {
            return out.stdout;
        }
        last = out.stderr;
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("api never answered {url}: {last}")
}

fn image_id(d: &Daemon, name: &str) -> Option<String> {
    let r = d.api().get(&format!("/images/{name}/json"));
    (r.status == 200).then(|| r.json()["Id"].as_str().unwrap().to_string())
}

#[test]
fn compose_builds_the_api_of_a_three_tier_app_and_converges_on_rebuilds() {
    require_root!();
    let d = daemon_with_busybox();
    let port = free_port();
    let dir = project_dir(&d, "tiers", &app(port));
    let api = dir.join("api");
    std::fs::create_dir_all(&api).unwrap();
    std::fs::write(api.join("Dockerfile"), API_DOCKERFILE).unwrap();
    std::fs::write(api.join("version.txt"), "v1\n").unwrap();
    std::fs::write(api.join("secret.txt"), "not for the image\n").unwrap();
    std::fs::write(api.join(".dockerignore"), "secret.txt\nnode_modules\n").unwrap();
    // Real sizes: 8 MiB sent, 32 MiB left out by .dockerignore.
    let blob: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(api.join("blob.bin"), &blob).unwrap();
    std::fs::create_dir_all(api.join("node_modules")).unwrap();
    std::fs::write(api.join("node_modules/huge.bin"), vec![7u8; 32 << 20]).unwrap();
    // A bare `ARG` in the file takes its value from the project's environment (.env).
    std::fs::write(dir.join(".env"), "GREETING=hello-from-api\n").unwrap();

    let out = compose(&d, &dir, &["up", "-d", "--build", "--wait"]).success();
    assert!(
        out.stdout.contains("Step 1/7 : FROM busybox"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("Built"), "{}", out.stderr);
    // 8 MiB and some sent; the ignored 32 MiB not.
    let size = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Sending build context to Docker daemon"))
        .and_then(|s| s.trim().strip_suffix("MB"))
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!((8.0..9.0).contains(&size), "{}", out.stdout);
    let first = containers(&d, "tiers");
    assert_eq!(names(&first), ["tiers-api-1", "tiers-db-1", "tiers-web-1"]);
    assert!(first.iter().all(|(_, _, s)| s == "running"), "{first:?}");
    assert!(http_get(port, "/index.html").contains("hello-from-web"));
    assert_eq!(api_page(&d, &dir, "/index.html").trim(), "hello-from-api");
    assert_eq!(api_page(&d, &dir, "/version.txt").trim(), "v1");
    // The context went through .dockerignore.
    let out = compose(&d, &dir, &["exec", "-T", "api", "ls", "/src"]).success();
    assert!(out.stdout.contains("version.txt"), "{}", out.stdout);
    assert!(!out.stdout.contains("secret.txt"), "{}", out.stdout);
    assert!(!out.stdout.contains("node_modules"), "{}", out.stdout);
    let out = compose(
        &d,
        &dir,
        &["exec", "-T", "api", "wc", "-c", "/src/blob.bin"],
    )
    .success();
    assert!(
        out.stdout.starts_with(&format!("{} ", 8u32 << 20)),
        "{}",
        out.stdout
    );

    // The image Compose v2 names and labels; the container records which image it runs.
    let image = d.api().get("/images/tiers-api/json").json();
    let labels = &image["Config"]["Labels"];
    assert_eq!(labels["com.docker.compose.image.builder"], "classic");
    assert_eq!(labels["tier"], "api");
    let built = image["Id"].as_str().unwrap().to_string();
    let c = d.api().get("/containers/tiers-api-1/json").json();
    assert_eq!(
        c["Config"]["Labels"]["com.docker.compose.image"],
        built.as_str()
    );

    // Unchanged: nothing built, nothing touched.
    let out = compose(&d, &dir, &["up", "-d"]).success();
    assert!(!out.stdout.contains("Step"), "{}", out.stdout);
    assert_eq!(containers(&d, "tiers"), first, "{}", out.stderr);
    // Rebuilt from the cache: the same image, so still nothing recreated.
    let out = compose(&d, &dir, &["up", "-d", "--build"]).success();
    assert!(out.stdout.contains("Using cache"), "{}", out.stdout);
    assert_eq!(image_id(&d, "tiers-api").as_deref(), Some(built.as_str()));
    assert_eq!(containers(&d, "tiers"), first, "{}", out.stderr);

    // A changed context: only api is rebuilt and recreated.
    std::fs::write(api.join("version.txt"), "v2\n").unwrap();
    let out = compose(&d, &dir, &["up", "-d", "--build"]).success();
    assert!(out.stderr.contains("Recreated"), "{}", out.stderr);
    let changed = containers(&d, "tiers");
    assert_eq!(names(&changed), names(&first));
    assert_ne!(changed[0].1, first[0].1, "api was not recreated");
    assert_eq!(changed[1], first[1], "db was recreated");
    assert_eq!(changed[2], first[2], "web was recreated");
    assert_eq!(api_page(&d, &dir, "/version.txt").trim(), "v2");
    let rebuilt = image_id(&d, "tiers-api").unwrap();
    assert_ne!(rebuilt, built);

    // `compose build` on a cached build reports its cached steps; --no-cache has none.
    let out = compose(&d, &dir, &["build"]).success();
    assert!(out.stdout.contains("Using cache"), "{}", out.stdout);
    assert_eq!(image_id(&d, "tiers-api").as_deref(), Some(rebuilt.as_str()));
    let out = compose(&d, &dir, &["build", "--no-cache", "api"]).success();
    assert!(!out.stdout.contains("Using cache"), "{}", out.stdout);

    // Down with the local images: the built image goes, busybox (named in the file) stays.
    compose(&d, &dir, &["down", "-v", "--rmi", "local"]).success();
    assert!(containers(&d, "tiers").is_empty());
    assert_eq!(image_id(&d, "tiers-api"), None);
    assert!(image_id(&d, "busybox").is_some());
    assert_eq!(d.api().get("/volumes/tiers_data").status, 404);
    assert_eq!(d.api().get("/networks/tiers_default").status, 404);
}

#[test]
fn compose_build_failure_starts_nothing() {
    require_root!();
    let d = daemon_with_busybox();
    let text = r#"
name: broken
services:
  db:
    image: busybox
    command: ["sleep", "300"]
  api:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        RUN echo about to fail && exit 7
    depends_on: [db]
"#;
    let dir = project_dir(&d, "broken", text);
    let out = compose(&d, &dir, &["up", "-d"]).failure();
    assert!(
        out.stderr.contains(
            "The command '/bin/sh -c echo about to fail && exit 7' returned a non-zero code: 7"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("api"), "{}", out.stderr);
    // The exit status is the failed command's, as with Compose.
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(containers(&d, "broken").is_empty());
    assert_eq!(d.api().get("/networks/broken_default").status, 404);
    assert_eq!(image_id(&d, "broken-api"), None);

    // What the Engine API's builder cannot do is refused before anything is sent.
    std::fs::write(
        dir.join("compose.yaml"),
        text.replace(
            "context: .",
            "context: .\n      platforms: [linux/amd64, linux/arm64]",
        ),
    )
    .unwrap();
    let out = compose(&d, &dir, &["build"]).failure();
    assert!(
        out.stderr.contains("doesn't support multi-arch build"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("Step"), "{}", out.stdout);
}

#[test]
fn compose_build_flags_inline_dockerfiles_no_build_and_create_build() {
    require_root!();
    let d = daemon_with_busybox();
    let text = r#"
name: flags
services:
  tool:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        ARG V=default
        RUN echo "$$V" > /v
    command: ["sleep", "300"]
    stop_grace_period: 1s
  other:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        RUN echo other > /o
    command: ["sleep", "300"]
    stop_grace_period: 1s
    pull_policy: build
    profiles: [extra]
"#;
    // `$$`: the file is interpolated before the Dockerfile is, as in Compose.
    let dir = project_dir(&d, "flags", text);
    // --no-build with no image: a clear error, nothing made.
    let out = compose(&d, &dir, &["up", "-d", "--no-build"]).failure();
    assert!(out.stderr.contains("--no-build"), "{}", out.stderr);
    assert!(containers(&d, "flags").is_empty());

    // -q prints nothing; --build-arg overrides the Dockerfile's default.
    let out = compose(&d, &dir, &["build", "-q", "--build-arg", "V=from-flag"]).success();
    assert_eq!(out.stdout, "");
    assert!(image_id(&d, "flags-tool").is_some());

    // create --build rebuilds (the default value again) and creates without starting.
    let out = compose(&d, &dir, &["create", "--build"]).success();
    assert!(
        out.stdout.contains("Step 1/4 : FROM busybox"),
        "{}",
        out.stdout
    );
    let list = containers(&d, "flags");
    assert_eq!(names(&list), ["flags-tool-1"]);
    assert_eq!(list[0].2, "created");
    compose(&d, &dir, &["start"]).success();
    let out = compose(&d, &dir, &["exec", "-T", "tool", "cat", "/v"]).success();
    assert_eq!(out.stdout.trim(), "default");
    compose(&d, &dir, &["down", "--rmi", "local"]).success();
    assert_eq!(image_id(&d, "flags-tool"), None);

    // --with-dependencies builds what the named service depends on too.
    std::fs::write(
        dir.join("compose.yaml"),
        text.replace(
            "    profiles: [extra]",
            "    profiles: [extra]\n    depends_on: [tool]",
        ),
    )
    .unwrap();
    let out = compose(&d, &dir, &["--profile", "extra", "build", "other"]).success();
    assert!(!out.stdout.contains("[tool]"), "{}", out.stdout);
    assert_eq!(image_id(&d, "flags-tool"), None);
    let out = compose(
        &d,
        &dir,
        &[
            "--profile",
            "extra",
            "build",
            "--with-dependencies",
            "other",
        ],
    )
    .success();
    assert!(out.stdout.contains("[tool] Step 1/4"), "{}", out.stdout);
    compose(&d, &dir, &["--profile", "extra", "down", "--rmi", "local"]).success();
    std::fs::write(dir.join("compose.yaml"), text).unwrap();

    // Two services build together, their lines told apart by the service's name.
    let out = compose(&d, &dir, &["--profile", "extra", "build"]).success();
    assert!(
        out.stdout.contains("[tool] Step 1/4 : FROM busybox"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("[other] Step 1/3 : FROM busybox"),
        "{}",
        out.stdout
    );
    assert!(image_id(&d, "flags-tool").is_some() && image_id(&d, "flags-other").is_some());
    // `pull_policy: build`: `up` builds it every time, the image being there or not.
    let out = compose(&d, &dir, &["--profile", "extra", "up", "-d", "other"]).success();
    assert!(
        out.stdout.contains("Step 1/3 : FROM busybox"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("[tool]"), "{}", out.stdout);
    let out = compose(&d, &dir, &["--profile", "extra", "up", "-d", "other"]).success();
    assert!(
        out.stdout.contains("Step 1/3 : FROM busybox"),
        "{}",
        out.stdout
    );
    compose(&d, &dir, &["--profile", "extra", "down", "--rmi", "local"]).success();
    assert_eq!(image_id(&d, "flags-other"), None);
}

fn compose_v2_available() -> bool {
    berth_e2e::docker_cli().is_some_and(|docker| {
        std::process::Command::new(docker)
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

/// Docker Compose building through the Engine API's `/build` (its classic builder), as it
/// does where buildx is absent: `DOCKER_BUILDKIT=0`.
fn docker_compose_classic(d: &Daemon, dir: &Path, args: &[&str]) -> Output {
    let file = dir.join("compose.yaml").display().to_string();
    let out = std::process::Command::new(berth_e2e::docker_cli().unwrap())
        .args(["compose", "-f", &file])
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir().join("docker-config"))
        .env("DOCKER_BUILDKIT", "0")
        .env("COMPOSE_BAKE", "false")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .output()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A project built by berth compose is left alone by Docker Compose v2 (same image name,
/// labels and hash), and the reverse.
#[test]
fn compose_built_projects_move_between_berth_and_docker_compose_v2() {
    require_root!();
    if !compose_v2_available() {
        eprintln!("skipped: no docker compose plugin (scripts/install-test-peers.sh installs it)");
        return;
    }
    let d = daemon_with_busybox();
    let text = r#"
name: both
services:
  app:
    build: ./app
    command: ["sleep", "300"]
    stop_grace_period: 1s
"#;
    let dir = project_dir(&d, "both", text);
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("app/Dockerfile"),
        "FROM busybox\nRUN echo built > /b\n",
    )
    .unwrap();

    compose(&d, &dir, &["up", "-d"]).success();
    let made = containers(&d, "both");
    let out = docker_compose(&d, &dir, &["up", "-d"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        containers(&d, "both"),
        made,
        "docker compose recreated: {}",
        out.stderr
    );
    let ours = image_id(&d, "both-app").unwrap();
    docker_compose(&d, &dir, &["down", "-t", "1"]).success();

    // Built by Docker Compose (through the same API), then left alone by berth compose.
    let out = docker_compose_classic(&d, &dir, &["up", "-d", "--build"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // The same request as ours: the same image, from the cache of berth compose's build.
    assert_eq!(image_id(&d, "both-app").as_deref(), Some(ours.as_str()));
    assert!(out.stdout.contains("Using cache"), "{}", out.stdout);
    let made = containers(&d, "both");
    let out = compose(&d, &dir, &["up", "-d"]).success();
    assert_eq!(
        containers(&d, "both"),
        made,
        "berth compose recreated: {}",
        out.stderr
    );
    compose(&d, &dir, &["down", "-t", "1", "--rmi", "local"]).success();
    assert_eq!(image_id(&d, "both-app"), None);
}

/// Serves `body` to every GET on 127.0.0.1 until the test ends; returns the port.
fn serve_once_per_request(body: Vec<u8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut head = [0u8; 4096];
            let _ = s.read(&mut head);
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = s.write_all(&body);
        }
    });
    port
}

#[test]
fn compose_builds_from_a_remote_tarball_context() {
    require_root!();
    let d = daemon_with_busybox();
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        (
            "Dockerfile",
            &b"FROM busybox\nCOPY hello.txt /hello.txt\n"[..],
        ),
        ("hello.txt", &b"from-a-tarball\n"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    }
    let port = serve_once_per_request(tar.into_inner().unwrap());
    let text = format!(
        "name: remote\nservices:\n  app:\n    build: http://127.0.0.1:{port}/ctx.tar\n    command: [\"cat\", \"/hello.txt\"]\n"
    );
    let dir = project_dir(&d, "remote", &text);
    let out = compose(&d, &dir, &["build"]).success();
    assert!(
        out.stdout.contains("Step 2/3 : COPY hello.txt /hello.txt"),
        "{}",
        out.stdout
    );
    let out = compose(&d, &dir, &["run", "--rm", "-T", "app"]).success();
    assert_eq!(out.stdout.trim(), "from-a-tarball");
    compose(&d, &dir, &["down", "--rmi", "local"]).success();
}

/// A static file server for `root` on 127.0.0.1 (git's "dumb" HTTP protocol needs no more).
fn serve_dir(root: PathBuf) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let path = line
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .split('?')
                .next()
                .unwrap_or("/");
            let file = root.join(path.trim_start_matches('/'));
            let reply = match std::fs::read(&file) {
                Ok(body) if !path.contains("..") => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = s.write_all(&reply);
        }
    });
    port
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compose_builds_from_a_git_context() {
    require_root!();
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no git");
        return;
    }
    let d = daemon_with_busybox();
    let work = d.dir().join("gitwork");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(
        work.join("sub/Dockerfile"),
        "FROM busybox\nCOPY msg.txt /msg.txt\n",
    )
    .unwrap();
    std::fs::write(work.join("sub/msg.txt"), "from-git\n").unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "init"]);
    let served = d.dir().join("served");
    std::fs::create_dir_all(&served).unwrap();
    git(
        &served,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"],
    );
    git(&served.join("repo.git"), &["update-server-info"]);
    let port = serve_dir(served);
    let text = format!(
        "name: fromgit\nservices:\n  app:\n    build: http://127.0.0.1:{port}/repo.git#main:sub\n    command: [\"cat\", \"/msg.txt\"]\n"
    );
    let dir = project_dir(&d, "fromgit", &text);
    let out = compose(&d, &dir, &["build"]).success();
    assert!(
        out.stdout.contains("Step 2/3 : COPY msg.txt /msg.txt"),
        "{}",
        out.stdout
    );
    let out = compose(&d, &dir, &["run", "--rm", "-T", "app"]).success();
    assert_eq!(out.stdout.trim(), "from-git");
    compose(&d, &dir, &["down", "--rmi", "local"]).success();
}

/// Debian's docker-compose (v1) builds `build:` sections against berthd too (its image is
/// `PROJECT_SERVICE`, v1's name).
#[test]
fn docker_compose_v1_builds_against_berthd() {
    require_root!();
    let Some(v1) = ["/usr/bin/docker-compose", "/usr/local/bin/docker-compose"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        eprintln!("skipped: no docker-compose (scripts/install-test-peers.sh installs it)");
        return;
    };
    let d = daemon_with_busybox();
    let text = "services:\n  app:\n    build: ./app\n    command: [\"sleep\", \"300\"]\n    stop_grace_period: 1s\n";
    let dir = project_dir(&d, "legacy", text);
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("app/Dockerfile"),
        "FROM busybox\nRUN echo v1 > /v1\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&v1)
            .args(["-p", "legacy", "-f"])
            .arg(dir.join("compose.yaml"))
            .args(args)
            .env("DOCKER_HOST", d.host())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "docker-compose {args:?}: {text}");
        text
    };
    let out = run(&["build"]);
    assert!(
        out.contains("Successfully tagged legacy_app:latest"),
        "{out}"
    );
    run(&["up", "-d"]);
    let out = run(&["exec", "-T", "app", "cat", "/v1"]);
    assert_eq!(out.trim(), "v1");
    run(&["down", "--rmi", "local", "-t", "1"]);
    assert_eq!(image_id(&d, "legacy_app"), None);
}

/// `compose build --push` pushes the built image `image:` names; `pull` then brings it back.
#[test]
fn compose_build_push_sends_the_built_image_to_a_registry() {
    require_root!();
    let Some(registry) = berth_e2e::registry::Registry::start("compose_build_push") else {
        return;
    };
    let d = daemon_with_busybox();
    let image = format!("{}/compose/built:1", registry.host());
    let text = format!(
        "services:\n  app:\n    image: {image}\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN echo pushed > /p\n"
    );
    let dir = project_dir(&d, "pushed", &text);
    let out = compose(&d, &dir, &["build", "--push"]).success();
    assert!(out.stderr.contains("Pushed"), "{}", out.stderr);
    let built = image_id(&d, &image).unwrap();
    d.berth(&["rmi", &image]).success();
    compose(&d, &dir, &["pull"]).success();
    assert_eq!(image_id(&d, &image), Some(built));
}
