//! Token auth as dockerd does it, against a registry with `auth: token` and the tests' own
//! token issuer (berth_e2e::token_auth): a login obtains a refresh token, `POST /auth`
//! answers it as the `IdentityToken`, the CLIs keep it in config.json instead of the password,
//! and pulls and pushes exchange it with the OAuth2 refresh grant; tokens are reused across
//! requests until they expire, and a token the registry refuses is replaced once. Through
//! the raw API, berth and the docker CLI. Skipped where docker-registry is not installed.

use std::path::Path;
use std::process::Command;

use berth_e2e::daemon::binary;
use berth_e2e::fixtures::ImageSpec;
use berth_e2e::registry::base64_encode;
use berth_e2e::token_auth::{TOKEN_PASSWORD, TOKEN_USER, TokenIssuer};
use berth_e2e::{Daemon, Output, docker_cli};

fn load(daemon: &Daemon, spec: &ImageSpec) {
    let r = daemon
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `X-Registry-Auth` (or the `POST /auth` body, unencoded) for `json`.
fn header(json: &serde_json::Value) -> String {
    base64_encode(json.to_string().as_bytes())
}

/// The last message of a JSON stream: its error, if it is one.
fn stream_error(r: &berth_e2e::ApiResponse) -> Option<String> {
    r.json_lines()
        .last()
        .and_then(|l| l["errorDetail"]["message"].as_str().map(str::to_string))
}

/// `berth -H <daemon> ARGS` with `config` as its config directory.
fn berth(daemon: &Daemon, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(binary("berth"));
    cmd.arg("-H")
        .arg(daemon.host())
        .args(args)
        .env("BERTH_CONFIG", config);
    berth_e2e::daemon::run(cmd, stdin.map(str::as_bytes))
}

fn config_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

/// The issuer's log since `from`.
fn grants_since(issuer: &TokenIssuer, from: usize) -> Vec<String> {
    issuer.log()[from..].to_vec()
}

#[test]
fn a_login_keeps_an_identity_token_that_pulls_and_pushes_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TokenIssuer::start(dir.path());
    let Some(registry) =
        issuer.registry("a_login_keeps_an_identity_token_that_pulls_and_pushes_exchange")
    else {
        return;
    };
    let host = registry.host();
    let daemon = Daemon::start();

    // The raw API: dockerd's answer, with the refresh token the service gave a login.
    let login = serde_json::json!({"username": TOKEN_USER, "password": TOKEN_PASSWORD, "serveraddress": host});
    let from = issuer.log().len();
    let r = daemon
        .api()
        .post("/auth", Some(login.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Status"], "Login Succeeded");
    let identity = r.json()["IdentityToken"].as_str().unwrap().to_string();
    assert!(!identity.is_empty(), "{}", r.text());
    assert_eq!(grants_since(&issuer, from), ["GET basic offline"]);
    let wrong =
        serde_json::json!({"username": TOKEN_USER, "password": "wrong", "serveraddress": host});
    let r = daemon
        .api()
        .post("/auth", Some(wrong.to_string().as_bytes()));
    assert_eq!(r.status, 401, "{}", r.text());
    // A login with the identity token alone (what a CLI does with stored credentials).
    let again = serde_json::json!({"username": TOKEN_USER, "identitytoken": identity, "serveraddress": host});
    let from = issuer.log().len();
    let r = daemon
        .api()
        .post("/auth", Some(again.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        grants_since(&issuer, from),
        ["POST refresh_token client_id=docker"]
    );
    // The service rotated it: the new one is the answer.
    let rotated = r.json()["IdentityToken"].as_str().unwrap().to_string();
    assert!(
        rotated.starts_with("berth-refresh-") && rotated != identity,
        "{}",
        r.text()
    );

    // berth login keeps the identity token, not the password, as the docker CLI does.
    let config = tempfile::tempdir().unwrap();
    let out = berth(
        &daemon,
        config.path(),
        &["login", &host, "-u", TOKEN_USER, "--password-stdin"],
        Some(&format!("{TOKEN_PASSWORD}\n")),
    )
    .success();
    assert_eq!(out.stdout, "Login Succeeded\n");
    let entry = &config_json(config.path())["auths"][&host];
    assert_eq!(
        entry["auth"],
        base64_encode(format!("{TOKEN_USER}:").as_bytes())
    );
    let stored = entry["identitytoken"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(stored.starts_with("berth-refresh-"), "{entry}");
    // A login with the stored credentials keeps the identity token the service rotated to.
    let out = berth(&daemon, config.path(), &["login", &host], None).success();
    assert_eq!(out.stdout, "Login Succeeded\n");
    let entry = &config_json(config.path())["auths"][&host];
    let renewed = entry["identitytoken"].as_str().unwrap_or_default();
    assert!(
        renewed.starts_with("berth-refresh-") && renewed != stored,
        "{entry}"
    );

    // Push and pull send it; berthd exchanges it with the refresh grant, never a password.
    let reference = format!("{host}/team/ident:1");
    let spec = ImageSpec::busybox(Some(&reference)).file_layer(&[("id", b"entity")]);
    load(&daemon, &spec);
    let from = issuer.log().len();
    let out = berth(&daemon, config.path(), &["push", &reference], None).success();
    assert!(out.stdout.contains("1: digest: sha256:"), "{}", out.stdout);
    berth(&daemon, config.path(), &["rmi", &reference], None).success();
    let out = berth(&daemon, config.path(), &["pull", &reference], None).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    let grants = grants_since(&issuer, from);
    assert!(!grants.is_empty());
    assert!(
        grants
            .iter()
            .all(|g| g == "POST refresh_token client_id=docker"),
        "{grants:?}"
    );

    // An identity token the service does not know is refused.
    let bogus = header(
        &serde_json::json!({"username": TOKEN_USER, "identitytoken": "forged", "serveraddress": host}),
    );
    let r = daemon.api().request(
        "POST",
        &format!("/images/{host}/team/ident/push?tag=1"),
        &[("X-Registry-Auth", &bogus)],
        None,
    );
    assert!(
        stream_error(&r)
            .unwrap_or_default()
            .contains("unauthorized"),
        "{}",
        r.text()
    );

    // The docker CLI, through berthd: it keeps the identity token berthd answered, and
    // sends it with a pull.
    if docker_cli().is_some() {
        let out = daemon
            .docker_with_stdin(
                &["login", &host, "-u", TOKEN_USER, "--password-stdin"],
                Some(TOKEN_PASSWORD.as_bytes()),
            )
            .unwrap()
            .success();
        assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
        let entry = &config_json(&daemon.dir().join("docker-config"))["auths"][&host];
        // The same entry berth writes.
        assert_eq!(
            entry["auth"],
            base64_encode(format!("{TOKEN_USER}:").as_bytes())
        );
        assert!(
            entry["identitytoken"]
                .as_str()
                .is_some_and(|t| t.starts_with("berth-refresh-")),
            "{entry}"
        );
        daemon.berth(&["rmi", &reference]).success();
        let from = issuer.log().len();
        let out = daemon.docker(&["pull", &reference]).unwrap().success();
        assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
        assert_eq!(
            grants_since(&issuer, from),
            ["POST refresh_token client_id=docker"]
        );
    }
}

#[test]
fn tokens_are_reused_across_pulls_and_replaced_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TokenIssuer::start(dir.path());
    let Some(registry) =
        issuer.registry("tokens_are_reused_across_pulls_and_replaced_when_refused")
    else {
        return;
    };
    let host = registry.host();
    let daemon = Daemon::start();
    let right = header(
        &serde_json::json!({"username": TOKEN_USER, "password": TOKEN_PASSWORD, "serveraddress": host}),
    );
    let mut specs = Vec::new();
    for name in ["one", "two"] {
        let reference = format!("{host}/team/{name}:1");
        let spec = ImageSpec::busybox(Some(&reference)).file_layer(&[(name, name.as_bytes())]);
        load(&daemon, &spec);
        let r = daemon.api().request(
            "POST",
            &format!("/images/{host}/team/{name}/push?tag=1"),
            &[("X-Registry-Auth", &right)],
            None,
        );
        assert_eq!(stream_error(&r), None, "{}", r.text());
        daemon.berth(&["rmi", &reference]).success();
        specs.push((reference, spec));
    }
    let pull = |name: &str| {
        let r = daemon.api().request(
            "POST",
            &format!("/images/create?fromImage={host}/team/{name}&tag=1"),
            &[("X-Registry-Auth", &right)],
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(stream_error(&r), None, "{}", r.text());
    };

    // The first pull asks for a token; the next one of the same repository, with the same
    // credentials, reuses it (manifest and blobs alike).
    pull("one");
    daemon.berth(&["rmi", &specs[0].0]).success();
    let from = issuer.log().len();
    pull("one");
    assert_eq!(grants_since(&issuer, from), Vec::<String>::new());
    let r = daemon.api().get(&format!("/images/{}/json", specs[0].0));
    assert_eq!(r.json()["Id"], specs[0].1.id());

    // Another repository is another scope: a token of its own. That one is refused by the
    // registry (expired): a fresh one is asked once and the pull goes on.
    issuer.expire_next(1);
    let from = issuer.log().len();
    pull("two");
    assert_eq!(grants_since(&issuer, from), ["GET basic", "GET basic"]);
    let r = daemon.api().get(&format!("/images/{}/json", specs[1].0));
    assert_eq!(r.json()["Id"], specs[1].1.id());
}
