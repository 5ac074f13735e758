//! `berth login` / `berth logout` against a registry with htpasswd auth (Debian's
//! docker-registry on 127.0.0.1, see berth_e2e::registry): credentials checked by the daemon
//! (`POST /auth`), kept in config.json or a credential helper, and sent with pulls
//! (`X-Registry-Auth`). Each test has its own config directories (never ~/.docker or
//! ~/.berth). Skipped with a message where docker-registry is not installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_e2e::daemon::binary;
use berth_e2e::registry::{BASIC_PASSWORD, BASIC_USER, OCI_MANIFEST, Registry, base64_encode};
use berth_e2e::{Daemon, ImageSpec, Output, docker_cli};

/// A registry that wants `ci`/`s3cret`, holding `private/app:1` (with `/secret` in it).
fn private_registry(test: &str) -> Option<(Registry, String)> {
    let registry = Registry::start_with_basic_auth(test)?;
    let spec = ImageSpec::busybox(None).file_layer(&[("secret", b"private\n")]);
    registry.push_image("private/app", Some("1"), &spec, OCI_MANIFEST);
    let image = format!("{}/private/app:1", registry.host());
    Some((registry, image))
}

/// Runs `cmd` with `stdin` (or none) and collects what it printed.
fn output_of(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().expect("wait for the command");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `berth -H <daemon> ARGS` with the given config dir and extra environment.
fn berth(
    daemon: &Daemon,
    config: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new(binary("berth"));
    cmd.arg("-H")
        .arg(daemon.host())
        .args(args)
        .env("BERTH_CONFIG", config)
        .envs(env.iter().copied());
    output_of(cmd, stdin)
}

fn config_json(dir: &Path) -> serde_json::Value {
    match std::fs::read(dir.join("config.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("config.json is JSON"),
        Err(_) => serde_json::json!({}),
    }
}

#[test]
fn login_stores_credentials_that_pull_and_run_send_until_logout() {
    let Some((registry, image)) =
        private_registry("login_stores_credentials_that_pull_and_run_send_until_logout")
    else {
        return;
    };
    let host = registry.host();
    let daemon = Daemon::start();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path();
    let run = |args: &[&str], stdin: Option<&str>| berth(&daemon, config, &[], args, stdin);

    // Anonymous: the registry refuses.
    let out = run(&["pull", &image], None).failure();
    assert!(
        out.stderr.contains("no basic auth credentials"),
        "{}",
        out.stderr
    );

    // A wrong password: the daemon's 401 in docker's words, and nothing stored.
    let out = run(
        &["login", &host, "-u", BASIC_USER, "--password-stdin"],
        Some("wrong\n"),
    )
    .failure();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("Error response from daemon: ")
            && out.stderr.contains("401 Unauthorized"),
        "{}",
        out.stderr
    );
    assert_eq!(config_json(config).get("auths"), None);

    // -p works and is warned about; the entry is docker's.
    let out = run(
        &["login", &host, "-u", BASIC_USER, "-p", BASIC_PASSWORD],
        None,
    )
    .success();
    assert_eq!(out.stdout, "Login Succeeded\n");
    assert!(
        out.stderr.starts_with(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n"
        ),
        "{}",
        out.stderr
    );
    let auth = base64_encode(format!("{BASIC_USER}:{BASIC_PASSWORD}").as_bytes());
    assert_eq!(
        config_json(config)["auths"][&host],
        serde_json::json!({ "auth": auth })
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(config.join("config.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "config.json holds credentials: {mode:o}");

    // pull, and run's implicit pull, send them.
    let out = run(&["pull", &image], None).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    run(&["rmi", &image], None).success();
    let out = run(&["run", "--rm", &image, "cat", "/secret"], None).success();
    assert_eq!(out.stdout, "private\n");
    assert!(out.stderr.contains("Pull complete"), "{}", out.stderr);

    // push sends them too: a copy under another name goes up, and comes back.
    let copy = format!("{host}/pushed/copy:1");
    run(&["tag", &image, &copy], None).success();
    let out = run(&["push", &copy], None).success();
    assert!(out.stdout.contains("1: digest: sha256:"), "{}", out.stdout);
    run(&["rmi", &copy], None).success();
    run(&["pull", &copy], None).success();

    // With the stored credentials, a bare `login` needs no password.
    let out = run(&["login", &host], None).success();
    assert_eq!(out.stdout, "Login Succeeded\n");
    assert!(
        out.stderr
            .starts_with("Authenticating with existing credentials... [Username: ci]\n"),
        "{}",
        out.stderr
    );

    // Flags docker refuses, refused alike.
    let out = run(
        &["login", "-p", "x", "--password-stdin", &host],
        Some("x\n"),
    )
    .failure();
    assert_eq!(
        out.stderr,
        "conflicting options: cannot specify both --password and --password-stdin\n"
    );
    let out = run(&["login", "--password-stdin", &host], Some("x\n")).failure();
    assert_eq!(
        out.stderr,
        "the --password-stdin option requires --username to be set\n"
    );

    let out = run(&["logout", &host], None).success();
    assert_eq!(
        out.stdout,
        format!("Removing login credentials for {host}\n")
    );
    assert_eq!(config_json(config)["auths"].get(&host), None);
    run(&["rmi", &image], None).success();
    let out = run(&["pull", &image], None).failure();
    assert!(
        out.stderr.contains("no basic auth credentials"),
        "{}",
        out.stderr
    );
    let out = run(&["push", &copy], None).failure();
    assert!(
        out.stderr.contains("no basic auth credentials"),
        "{}",
        out.stderr
    );
    // Logging out again is not an error.
    run(&["logout", &host], None).success();
}

/// A `docker-credential-test` helper in its own directory: it keeps one set of credentials in
/// `creds.json` beside it and logs each action to `calls`.
fn fake_helper(dir: &Path) -> PathBuf {
    let script = dir.join("docker-credential-test");
    std::fs::write(
        &script,
        r#"#!/bin/sh
here=$(dirname "$0")
echo "$1" >> "$here/calls"
case "$1" in
  store) cat > "$here/creds.json" ;;
  get)
    read -r server
    if [ -f "$here/creds.json" ]; then cat "$here/creds.json"; else
      echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) read -r server; rm -f "$here/creds.json" ;;
  list) echo '{}' ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[test]
fn a_credential_helper_named_by_creds_store_keeps_the_secrets() {
    let Some((registry, image)) =
        private_registry("a_credential_helper_named_by_creds_store_keeps_the_secrets")
    else {
        return;
    };
    let host = registry.host();
    let daemon = Daemon::start();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path();
    std::fs::write(config.join("config.json"), r#"{"credsStore":"test"}"#).unwrap();
    let helper_dir = tempfile::tempdir().unwrap();
    fake_helper(helper_dir.path());
    let path = format!(
        "{}:{}",
        helper_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", path.as_str())];
    let run = |args: &[&str], stdin: Option<&str>| berth(&daemon, config, &env, args, stdin);
    let calls = || std::fs::read_to_string(helper_dir.path().join("calls")).unwrap_or_default();

    let out = run(
        &["login", &host, "-u", BASIC_USER, "--password-stdin"],
        Some(&format!("{BASIC_PASSWORD}\n")),
    )
    .success();
    assert_eq!(out.stdout, "Login Succeeded\n");
    // No plain-text warning: the helper has the secret, config.json only the registry.
    assert_eq!(out.stderr, "");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(helper_dir.path().join("creds.json")).unwrap())
            .unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"ServerURL": host, "Username": BASIC_USER, "Secret": BASIC_PASSWORD})
    );
    let file = config_json(config);
    assert_eq!(file["auths"][&host], serde_json::json!({}));
    assert_eq!(file["credsStore"], "test");

    let out = run(&["pull", &image], None).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    assert!(calls().lines().any(|c| c == "get"), "{}", calls());

    run(&["logout", &host], None).success();
    assert!(calls().lines().any(|c| c == "erase"), "{}", calls());
    assert!(!helper_dir.path().join("creds.json").exists());
    assert_eq!(config_json(config)["auths"].get(&host), None);
    run(&["rmi", &image], None).success();
    run(&["pull", &image], None).failure();
}

#[test]
fn the_docker_cli_logs_in_through_berthd_and_berth_reads_what_it_stored() {
    let Some(docker) = docker_cli() else {
        eprintln!("skipped: the docker CLI is not installed");
        return;
    };
    let Some((registry, image)) =
        private_registry("the_docker_cli_logs_in_through_berthd_and_berth_reads_what_it_stored")
    else {
        return;
    };
    let host = registry.host();
    let daemon = Daemon::start();
    let docker_config = tempfile::tempdir().unwrap();
    let docker_run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(&docker);
        cmd.args(args)
            .env("DOCKER_HOST", daemon.host())
            .env("DOCKER_CONFIG", docker_config.path())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        output_of(cmd, stdin)
    };

    let out = docker_run(
        &["login", &host, "-u", BASIC_USER, "--password-stdin"],
        Some("wrong\n"),
    )
    .failure();
    assert!(out.stderr.contains("401 Unauthorized"), "{}", out.stderr);
    let out = docker_run(
        &["login", &host, "-u", BASIC_USER, "--password-stdin"],
        Some(&format!("{BASIC_PASSWORD}\n")),
    )
    .success();
    assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);

    // berth, pointed at docker's config directory, finds and sends the same credentials.
    let out = berth(&daemon, docker_config.path(), &[], &["pull", &image], None).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    // ... and docker reads what berth writes.
    berth(&daemon, docker_config.path(), &[], &["logout", &host], None).success();
    berth(
        &daemon,
        docker_config.path(),
        &[],
        &["login", &host, "-u", BASIC_USER, "--password-stdin"],
        Some(&format!("{BASIC_PASSWORD}\n")),
    )
    .success();
    berth(&daemon, docker_config.path(), &[], &["rmi", &image], None).success();
    let out = docker_run(&["pull", &image], None).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    docker_run(&["logout", &host], None).success();
    assert_eq!(config_json(docker_config.path())["auths"].get(&host), None);
}

#[test]
fn berth_keeps_credentials_in_dockers_config_dir_by_default() {
    let Some((registry, image)) =
        private_registry("berth_keeps_credentials_in_dockers_config_dir_by_default")
    else {
        return;
    };
    let host = registry.host();
    let daemon = Daemon::start();
    let home = tempfile::tempdir().unwrap();
    // `berth` with HOME, and only the config variables given, set.
    let run = |env: &[(&str, &Path)], args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(binary("berth"));
        cmd.arg("-H")
            .arg(daemon.host())
            .args(args)
            .env("HOME", home.path())
            .env_remove("BERTH_CONFIG")
            .env_remove("DOCKER_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        output_of(cmd, stdin)
    };
    let login = ["login", &host, "-u", BASIC_USER, "--password-stdin"];
    let password = format!("{BASIC_PASSWORD}\n");
    let auth = serde_json::json!({
        "auth": base64_encode(format!("{BASIC_USER}:{BASIC_PASSWORD}").as_bytes())
    });

    // ~/.docker, as the docker CLI.
    let out = run(&[], &login, Some(&password)).success();
    assert!(
        out.stderr.contains(&format!(
            "{}",
            home.path().join(".docker/config.json").display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(
        config_json(&home.path().join(".docker"))["auths"][&host],
        auth
    );
    assert!(!home.path().join(".berth").exists());
    // The docker CLI, with the same HOME, pulls with what berth stored.
    if let Some(docker) = docker_cli() {
        let mut cmd = Command::new(docker);
        cmd.args(["pull", &image])
            .env("DOCKER_HOST", daemon.host())
            .env("HOME", home.path())
            .env_remove("DOCKER_CONFIG")
            .env_remove("DOCKER_CONTEXT");
        let out = output_of(cmd, None).success();
        assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
        run(&[], &["rmi", &image], None).success();
    }
    run(&[], &["pull", &image], None).success();

    // $DOCKER_CONFIG, as the docker CLI; BERTH_CONFIG and --config over it.
    let docker_config = tempfile::tempdir().unwrap();
    let berth_config = tempfile::tempdir().unwrap();
    let flag_config = tempfile::tempdir().unwrap();
    run(
        &[("DOCKER_CONFIG", docker_config.path())],
        &login,
        Some(&password),
    )
    .success();
    assert_eq!(config_json(docker_config.path())["auths"][&host], auth);
    let both = [
        ("DOCKER_CONFIG", docker_config.path()),
        ("BERTH_CONFIG", berth_config.path()),
    ];
    run(&both, &login, Some(&password)).success();
    assert_eq!(config_json(berth_config.path())["auths"][&host], auth);
    let mut with_flag = vec!["--config", flag_config.path().to_str().unwrap()];
    with_flag.extend(login);
    run(&both, &with_flag, Some(&password)).success();
    assert_eq!(config_json(flag_config.path())["auths"][&host], auth);
}
