//! The daemon itself: API basics, version negotiation, single-instance lock, clean shutdown,
//! config handling, TCP listeners.

use berth_e2e::Daemon;
use berth_e2e::daemon::{ChildGuard, binary};

#[test]
fn ping_answers_with_dockers_headers() {
    let daemon = Daemon::start();
    let api = daemon.api();
    let ping = api.get("/_ping");
    assert_eq!(ping.status, 200);
    assert_eq!(ping.text(), "OK");
    assert_eq!(ping.header("Api-Version"), Some("1.51"));
    assert_eq!(ping.header("Ostype"), Some("linux"));
    assert!(
        ping.header("Server").unwrap_or_default().contains("Berth"),
        "{:?}",
        ping.headers
    );

    let head = api.request("HEAD", "/_ping", &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Api-Version"), Some("1.51"));
}

#[test]
fn versioned_paths_and_negotiation() {
    let daemon = Daemon::start();
    let api = daemon.api();
    for path in [
        "/v1.24/version",
        "/v1.41/version",
        "/v1.51/version",
        "/version",
    ] {
        let response = api.get(path);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(response.json()["ApiVersion"], "1.51");
        assert_eq!(response.json()["MinAPIVersion"], "1.24");
    }
    let too_new = api.get("/v1.99/version");
    assert_eq!(too_new.status, 400);
    assert_eq!(
        too_new.message(),
        "client version 1.99 is too new. Maximum supported API version is 1.51"
    );
    let too_old = api.get("/v1.12/version");
    assert_eq!(too_old.status, 400);
    assert!(
        too_old.message().contains("is too old"),
        "{}",
        too_old.text()
    );

    let missing = api.get("/v1.51/no/such/endpoint");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.message(), "page not found");
}

#[test]
fn info_and_version_describe_this_machine() {
    let daemon = Daemon::start();
    let info = daemon.api().get("/info").json();
    assert_eq!(info["OSType"], "linux");
    assert_eq!(
        info["DockerRootDir"],
        daemon.data_root().display().to_string()
    );
    assert_eq!(
        info["NCPU"].as_i64(),
        Some(std::thread::available_parallelism().unwrap().get() as i64)
    );
    assert!(info["MemTotal"].as_i64().unwrap_or(0) > 0);
    assert_eq!(info["Images"], 0);

    let out = daemon.berth(&["version"]).success();
    assert!(out.stdout.contains("Server"), "{}", out.stdout);
    assert!(out.stdout.contains("1.51"), "{}", out.stdout);
    let out = daemon.berth(&["info"]).success();
    assert!(
        out.stdout
            .contains(&daemon.data_root().display().to_string()),
        "{}",
        out.stdout
    );
    let out = daemon
        .berth(&["version", "--format", "{{.Server.APIVersion}}"])
        .success();
    assert_eq!(out.stdout.trim(), "1.51");
}

#[test]
fn a_second_daemon_on_the_same_data_root_refuses_to_start() {
    let daemon = Daemon::start();
    // Same data root, its own socket and exec root: the lock, not the socket, must stop it.
    let mut cmd = std::process::Command::new(binary("berthd"));
    cmd.arg("--data-root")
        .arg(daemon.data_root())
        .arg("--exec-root")
        .arg(daemon.dir().join("run2"))
        .arg("--config-file")
        .arg(daemon.dir().join("daemon.json"))
        .arg("-H")
        .arg(format!(
            "unix://{}",
            daemon.dir().join("other.sock").display()
        ));
    let out = cmd.output().expect("run second berthd");
    assert!(!out.status.success(), "second daemon started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data root"), "unclear message: {stderr}");
    // The first one is untouched.
    assert_eq!(daemon.api().get("/_ping").status, 200);
}

#[test]
fn sigterm_shuts_down_cleanly_and_removes_the_socket() {
    let mut daemon = Daemon::start();
    let pidfile = daemon.exec_root().join("berthd.pid");
    assert_eq!(
        std::fs::read_to_string(&pidfile).expect("pidfile").trim(),
        daemon.pid().unwrap().to_string()
    );
    assert_eq!(daemon.stop(), Some(0), "log:\n{}", daemon.log());
    assert!(!daemon.socket().exists(), "socket left behind");
    assert!(!pidfile.exists(), "pidfile left behind");
    // And it comes back on the same data root.
    daemon.start_again();
    assert_eq!(daemon.api().get("/_ping").status, 200);
}

#[test]
fn a_directive_given_twice_is_refused() {
    let daemon = Daemon::start();
    let config = daemon.dir().join("conflict.json");
    std::fs::write(&config, r#"{"data-root": "/tmp/elsewhere"}"#).unwrap();
    let out = std::process::Command::new(binary("berthd"))
        .arg("--data-root")
        .arg(daemon.dir().join("root2"))
        .arg("--config-file")
        .arg(&config)
        .arg("-H")
        .arg(format!("unix://{}", daemon.dir().join("c.sock").display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data-root"), "{stderr}");
}

#[test]
fn serves_tcp_as_well_as_unix() {
    let daemon = Daemon::start();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = daemon.dir().join("tcp");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("daemon.json"), "{}").unwrap();
    let _daemon = ChildGuard(
        std::process::Command::new(binary("berthd"))
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("run"))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            // No default bridge and no firewall table: this daemon is not dropped as a `Daemon`,
            // so nothing would clean them up.
            .arg("--bridge")
            .arg("none")
            .arg("--iptables=false")
            .arg("-H")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("b.sock").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let host = format!("tcp://127.0.0.1:{port}");
    let mut ok = false;
    for _ in 0..300 {
        let out = std::process::Command::new(binary("berth"))
            .args(["-H", &host, "version", "--format", "{{.Server.APIVersion}}"])
            .env("BERTH_CONFIG", dir.join("cfg"))
            .output()
            .unwrap();
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.51");
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ok, "berth could not reach the daemon over tcp");
}

#[test]
fn the_cli_reports_an_unreachable_daemon() {
    let daemon = Daemon::start();
    let out = std::process::Command::new(binary("berth"))
        .args([
            "-H",
            &format!("unix://{}", daemon.dir().join("nobody.sock").display()),
            "images",
        ])
        .env("BERTH_CONFIG", daemon.dir().join("cfg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Cannot connect"));
}
