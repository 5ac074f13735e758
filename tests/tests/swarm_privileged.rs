//! Berth's extension of swarm services beyond swarmkit: privileged tasks and host devices
//! (`ContainerSpec.Privileged` / `Devices`, moby#24862, swarmkit#1244), through the berth
//! CLI, the raw API, stacks, and the docker CLI (which must neither break on nor drop them).

use berth_e2e::containers::{daemon_with_busybox, exec_code, until};
use berth_e2e::swarm_setup::{current_task_container, service, wait_current_task_container};
use berth_e2e::{Daemon, require_root};
use serde_json::{Value, json};

/// Runs `script` with `sh -c` in a container; its exit code.
fn sh_code(d: &Daemon, container: &str, script: &str) -> i64 {
    exec_code(d, container, &["sh", "-c", script])
}

/// Reads 4 MiB from the device the task got as `/dev/myzero`.
const READ_DEVICE: &str = "[ \"$(head -c 4194304 /dev/myzero | wc -c)\" -eq 4194304 ]";
/// Needs CAP_SYS_ADMIN (not among a container's default capabilities).
const MOUNT: &str = "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t";

#[test]
fn privileged_tasks_and_devices_through_the_berth_cli() {
    require_root!();
    let d = daemon_with_busybox();
    d.berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
        .success();
    // Docker's flag syntax for a bad device.
    let out = d.berth(&[
        "service",
        "create",
        "--device",
        "/dev/zero:/dev/z:rwx",
        "busybox:latest",
    ]);
    let out = out.failure();
    assert!(out.stderr.contains("--device"), "{}", out.stderr);

    d.berth(&[
        "service",
        "create",
        "--name",
        "priv",
        "--privileged",
        "--device",
        "/dev/zero:/dev/myzero:r",
        "busybox:latest",
        "sleep",
        "1000",
    ])
    .success();
    d.berth(&[
        "service",
        "create",
        "--name",
        "plain",
        "busybox:latest",
        "sleep",
        "1000",
    ])
    .success();
    let c = wait_current_task_container(&d, "priv");
    let plain = wait_current_task_container(&d, "plain");
    assert_eq!(sh_code(&d, &c, READ_DEVICE), 0, "the device reads");
    assert_eq!(sh_code(&d, &c, MOUNT), 0, "a privileged task mounts");
    assert_eq!(sh_code(&d, &c, "ip link add br9 type bridge"), 0);
    assert_ne!(sh_code(&d, &plain, MOUNT), 0, "an ordinary task cannot");
    assert_ne!(sh_code(&d, &plain, "test -e /dev/myzero"), 0);
    let inspect = d.api().get(&format!("/containers/{c}/json")).json();
    assert_eq!(inspect["HostConfig"]["Privileged"], true);
    assert_eq!(
        inspect["HostConfig"]["Devices"],
        json!([{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero", "CgroupPermissions": "r"}])
    );

    // `service inspect` shows them; an update that changes something else keeps them.
    let out = d.berth(&["service", "inspect", "priv"]).success();
    let shown: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        shown[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Privileged"],
        true
    );
    d.berth(&["service", "update", "--env-add", "A=1", "priv"])
        .success();
    until("the updated task running", || {
        current_task_container(&d, "priv").is_some_and(|id| id != c)
    });
    let c2 = wait_current_task_container(&d, "priv");
    assert_eq!(sh_code(&d, &c2, READ_DEVICE), 0);
    assert_eq!(sh_code(&d, &c2, MOUNT), 0);

    // Taken back: `--privileged=false`, `--device-rm`.
    d.berth(&[
        "service",
        "update",
        "--privileged=false",
        "--device-rm",
        "/dev/myzero",
        "priv",
    ])
    .success();
    until("the unprivileged task running", || {
        current_task_container(&d, "priv").is_some_and(|id| id != c2)
    });
    let c3 = wait_current_task_container(&d, "priv");
    assert_ne!(sh_code(&d, &c3, MOUNT), 0);
    assert_ne!(sh_code(&d, &c3, "test -e /dev/myzero"), 0);
    let cs = &service(&d, "priv")["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Privileged"], false);
    assert_eq!(cs["Devices"], json!([]));
}

#[test]
fn raw_api_and_docker_cli_updates_keep_the_extension() {
    require_root!();
    let d = daemon_with_busybox();
    let r = d
        .api()
        .post("/swarm/init", Some(br#"{"ListenAddr": "127.0.0.1:2377"}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    let spec = |devices: Value| {
        json!({
            "Name": "dev",
            "TaskTemplate": {"ContainerSpec": {
                "Image": "busybox:latest",
                "Args": ["sleep", "1000"],
                "Privileged": true,
                "Devices": devices,
            }},
        })
    };
    // Bad input is refused as swarmkit refuses a bad spec.
    let r = d.api().post(
        "/services/create",
        Some(
            spec(json!([{"PathOnHost": "dev/zero"}]))
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("InvalidArgument desc = ContainerSpec: device path on host must be absolute"),
        "{}",
        r.text()
    );
    let r = d.api().post(
        "/services/create",
        Some(
            spec(json!([{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero", "CgroupPermissions": "rwm"}]))
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let c = wait_current_task_container(&d, "dev");
    assert_eq!(sh_code(&d, &c, READ_DEVICE), 0);

    // An update as the docker CLI sends it (its types lack both keys) keeps them.
    let s = service(&d, "dev");
    let mut next = s["Spec"].clone();
    let cs = next["TaskTemplate"]["ContainerSpec"]
        .as_object_mut()
        .unwrap();
    cs.remove("Privileged");
    cs.remove("Devices");
    cs.insert("Env".into(), json!(["B=2"]));
    let r = d.api().post(
        &format!("/services/dev/update?version={}", s["Version"]["Index"]),
        Some(next.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cs = &service(&d, "dev")["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Privileged"], true);
    assert_eq!(cs["Devices"][0]["PathInContainer"], "/dev/myzero");
    assert_eq!(cs["Env"], json!(["B=2"]));

    // The docker CLI: inspect and update of such a service work, and keep them.
    let Some(out) = d.docker(&["service", "inspect", "--pretty", "dev"]) else {
        eprintln!("docker CLI part skipped: no docker CLI");
        return;
    };
    out.success();
    d.docker(&["service", "inspect", "dev"]).unwrap().success();
    d.docker(&["service", "update", "--detach", "--env-add", "C=3", "dev"])
        .unwrap()
        .success();
    let cs = &service(&d, "dev")["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Privileged"], true);
    // The docker CLI rebuilds the list from a Go map: its order is random.
    let mut env: Vec<&str> = cs["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    env.sort();
    assert_eq!(env, ["B=2", "C=3"]);
    until("the docker-updated task running", || {
        current_task_container(&d, "dev").is_some_and(|id| id != c)
    });
    let c2 = wait_current_task_container(&d, "dev");
    assert_eq!(sh_code(&d, &c2, READ_DEVICE), 0);
    assert_eq!(sh_code(&d, &c2, MOUNT), 0);
}

#[test]
fn stack_deploy_maps_compose_privileged_and_devices() {
    require_root!();
    let d = daemon_with_busybox();
    d.berth(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
        .success();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(
        &file,
        "services:\n  hw:\n    image: busybox:latest\n    command: sleep 1000\n    privileged: true\n    devices:\n      - /dev/zero:/dev/myzero\n",
    )
    .unwrap();
    d.berth(&["stack", "deploy", "-c", file.to_str().unwrap(), "st"])
        .success();
    let cs = &service(&d, "st_hw")["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Privileged"], true);
    assert_eq!(
        cs["Devices"],
        json!([{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero", "CgroupPermissions": "rwm"}])
    );
    let c = wait_current_task_container(&d, "st_hw");
    assert_eq!(sh_code(&d, &c, READ_DEVICE), 0);
    assert_eq!(sh_code(&d, &c, MOUNT), 0);
}
