//! The real docker CLI against berthd. Skipped (with a message) where docker is not installed.

use berth_e2e::fixtures::ImageSpec;
use berth_e2e::{Daemon, docker_cli};

fn docker_or_skip(test: &str) -> bool {
    if docker_cli().is_none() {
        eprintln!("skipped {test}: no docker CLI on this machine");
        return false;
    }
    true
}

#[test]
fn docker_version_info_and_ping() {
    if !docker_or_skip("docker_version_info_and_ping") {
        return;
    }
    let daemon = Daemon::start();
    let out = daemon
        .docker(&[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}",
        ])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), "1.51 linux");
    let out = daemon.docker(&["info"]).unwrap().success();
    assert!(out.stdout.contains("Server Version"), "{}", out.stdout);
    assert!(
        !out.stderr.contains("rror"),
        "docker info complained: {}",
        out.stderr
    );
}

#[test]
fn docker_load_images_inspect_tag_rmi() {
    if !docker_or_skip("docker_load_images_inspect_tag_rmi") {
        return;
    }
    let daemon = Daemon::start();
    let spec = ImageSpec::busybox(Some("busybox:latest"));
    let file = daemon.dir().join("busybox.tar");
    std::fs::write(&file, spec.docker_archive()).unwrap();
    let out = daemon
        .docker(&["load", "-i", &file.display().to_string()])
        .unwrap()
        .success();
    assert!(
        out.stdout.contains("Loaded image: busybox:latest"),
        "{}",
        out.stdout
    );

    let out = daemon
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"])
        .unwrap()
        .success();
    assert_eq!(
        out.stdout.trim(),
        format!("busybox:latest {}", &spec.id()[7..19])
    );
    let out = daemon.docker(&["images"]).unwrap().success();
    assert!(out.stdout.starts_with("REPOSITORY"), "{}", out.stdout);

    let out = daemon
        .docker(&[
            "inspect",
            "--format",
            "{{.Id}} {{json .Config.Cmd}}",
            "busybox",
        ])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), format!("{} [\"sh\"]", spec.id()));
    let out = daemon
        .docker(&["image", "inspect", "busybox"])
        .unwrap()
        .success();
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(parsed[0]["Id"], spec.id());
    let out = daemon.docker(&["history", "busybox"]).unwrap().success();
    assert!(out.stdout.contains("CREATED BY"), "{}", out.stdout);

    daemon
        .docker(&["tag", "busybox", "mine/busybox:v1"])
        .unwrap()
        .success();
    let out = daemon
        .docker(&["rmi", "mine/busybox:v1"])
        .unwrap()
        .success();
    assert!(
        out.stdout.contains("Untagged: mine/busybox:v1"),
        "{}",
        out.stdout
    );
    let out = daemon.docker(&["rmi", "nope"]).unwrap().failure();
    assert!(out.stderr.contains("No such image: nope"), "{}", out.stderr);
    let out = daemon.docker(&["rmi", "busybox"]).unwrap().success();
    assert!(out.stdout.contains("Deleted: "), "{}", out.stdout);
    let out = daemon.docker(&["images", "-q"]).unwrap().success();
    assert_eq!(out.stdout.trim(), "");
}

#[test]
fn docker_save_then_load_round_trip() {
    if !docker_or_skip("docker_save_then_load_round_trip") {
        return;
    }
    let first = Daemon::start();
    let spec = ImageSpec::busybox(Some("round:trip")).file_layer(&[("x", b"x")]);
    first
        .docker_with_stdin(&["load"], Some(&spec.docker_archive()))
        .unwrap()
        .success();
    let saved = first.dir().join("saved.tar");
    first
        .docker(&["save", "-o", &saved.display().to_string(), "round:trip"])
        .unwrap()
        .success();

    let second = Daemon::start();
    let out = second
        .docker(&["load", "-i", &saved.display().to_string()])
        .unwrap()
        .success();
    assert!(out.stdout.contains("round:trip"), "{}", out.stdout);
    let out = second
        .docker(&["inspect", "-f", "{{.Id}}", "round:trip"])
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), spec.id());

    // The docker CLI's import and prune against berthd too.
    let out = second.docker(&["image", "prune", "-f"]).unwrap().success();
    assert!(
        out.stdout.contains("Total reclaimed space"),
        "{}",
        out.stdout
    );
    let out = second.docker(&["system", "df"]).unwrap().success();
    assert!(out.stdout.contains("Images"), "{}", out.stdout);
}
