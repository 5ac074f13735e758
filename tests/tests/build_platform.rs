//! Builds and platforms: Berth runs no emulation, so it builds for its own platform.
//! `FROM --platform=$BUILDPLATFORM` works; a stage or `--platform` for another platform is
//! refused up front with a clear error (never a half-built image or an exec format error).

use std::process::Command;

use berth_e2e::containers::daemon_with_busybox;
use berth_e2e::{Daemon, require_root};

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

fn other_arch() -> &'static str {
    if host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    }
}

fn ctx_dir(d: &Daemon, name: &str, dockerfile: &str) -> String {
    let dir = d.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    dir.display().to_string()
}

#[test]
fn from_platform_is_the_build_platform_or_a_clear_error() {
    require_root!();
    let d = daemon_with_busybox();
    let host = format!("linux/{}", host_arch());
    let other = format!("linux/{}", other_arch());

    let ok = ctx_dir(
        &d,
        "ok",
        "FROM --platform=$BUILDPLATFORM busybox AS build\nARG TARGETPLATFORM\nRUN echo $TARGETPLATFORM > /p\n\
         FROM --platform=${TARGETPLATFORM} busybox\nCOPY --from=build /p /p\n",
    );
    d.berth(&["build", "-t", "plat:1", &ok]).success();
    let out = d
        .berth(&["run", "--rm", "plat:1", "cat", "/p"])
        .success()
        .stdout;
    assert_eq!(out, format!("{host}\n"));
    // The host's platform named explicitly (with an alias) is fine too.
    let alias = if host_arch() == "amd64" {
        "linux/x86_64"
    } else {
        "linux/aarch64"
    };
    d.berth(&["build", "--platform", alias, &ok]).success();

    // A needed stage for another platform: refused before any step runs.
    let bad = ctx_dir(
        &d,
        "bad",
        &format!("FROM --platform={other} busybox\nRUN echo should-not-run\n"),
    );
    let out = d.berth(&["build", &bad]).failure();
    assert!(
        out.stderr.contains(&format!(
            "FROM --platform={other} busybox: this daemon builds for {host} only"
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("should-not-run"), "{}", out.stdout);
    // ... but a stage the target does not need is not checked.
    let skipped = ctx_dir(
        &d,
        "skipped",
        &format!(
            "FROM --platform={other} busybox AS foreign\nRUN true\nFROM busybox AS native\nRUN true\n"
        ),
    );
    d.berth(&["build", "--target", "native", &skipped])
        .success();

    // --platform for another platform: the daemon's 400, through berth and the docker CLI.
    let out = d.berth(&["build", "--platform", &other, &ok]).failure();
    assert!(
        out.stderr.contains(&format!(
            "cannot build for platform {other}: this daemon builds for {host} only"
        )),
        "{}",
        out.stderr
    );
    if let Some(docker) = berth_e2e::docker_cli() {
        let out = Command::new(docker)
            .args(["build", "--platform", &other, &ok])
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_CONFIG", d.dir().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot build for platform"), "{err}");
    }
    let r = d.api().get("/containers/json?all=1");
    assert_eq!(r.json().as_array().unwrap().len(), 0, "{}", r.text());
}
