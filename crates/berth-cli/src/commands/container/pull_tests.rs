//! `create`'s implicit pull against a fake daemon: any 404 from the create is taken to mean the
//! image is missing (as docker's CLI does), when the image is named and `--pull` is `missing`.

use std::sync::{Arc, Mutex};

use clap::Parser;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use super::flow_tests::{read_head, reply};
use super::*;
use crate::cli::GlobalOptions;

/// A daemon whose first create answers 404 with `message` and later ones succeed; it records
/// each request's line and head.
fn fake_daemon(sock: &std::path::Path, message: &'static str) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(sock).unwrap();
    let log: Arc<Mutex<Vec<String>>> = Default::default();
    let seen = log.clone();
    tokio::spawn(async move {
        let mut creates = 0;
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let (head, _) = read_head(&mut conn).await;
            let path = head.split(' ').nth(1).unwrap_or_default().to_string();
            let answer = if path.contains("/containers/create") {
                creates += 1;
                if creates == 1 {
                    reply("404 Not Found", &format!(r#"{{"message":"{message}"}}"#))
                } else {
                    reply("201 Created", r#"{"Id":"c0ffee","Warnings":[]}"#)
                }
            } else if path.contains("/images/create") {
                reply("200 OK", r#"{"status":"Pulled"}"#)
            } else {
                reply("200 OK", "OK")
            };
            if !path.starts_with("/_ping") {
                seen.lock().unwrap().push(head);
            }
            conn.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    log
}

#[derive(Parser)]
#[command(name = "berth")]
struct Cmd {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    Create(CreateArgs),
}

/// Runs `berth create ARGS` against the fake daemon; returns the outcome and the requests'
/// heads.
async fn create_with(message: &'static str, args: &[&str]) -> (Result<()>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    create_in(&dir, message, args).await
}

async fn create_in(
    dir: &tempfile::TempDir,
    message: &'static str,
    args: &[&str],
) -> (Result<()>, Vec<String>) {
    let sock = dir.path().join("d.sock");
    let log = fake_daemon(&sock, message);
    let Sub::Create(args) = Cmd::try_parse_from(["berth", "create"].iter().chain(args))
        .unwrap()
        .cmd;
    let env = Env {
        global: GlobalOptions {
            host: vec![format!("unix://{}", sock.display())],
            ..Default::default()
        },
        config: crate::config::ConfigDir::new(dir.path().join("config")),
    };
    let result = create(&env, args).await;
    let requests = log.lock().unwrap().clone();
    (result, requests)
}

fn kinds(requests: &[String]) -> Vec<&'static str> {
    requests
        .iter()
        .map(|r| {
            if r.contains("/containers/create") {
                "create"
            } else if r.contains("/images/create") {
                "pull"
            } else {
                "other"
            }
        })
        .collect()
}

#[tokio::test]
async fn any_not_found_pulls_a_named_image() {
    // The daemon's text need not mention the image.
    let (result, requests) = create_with("not found", &["-q", "busybox"]).await;
    result.unwrap();
    assert_eq!(
        kinds(&requests),
        ["create", "pull", "create"],
        "{requests:?}"
    );
    assert!(
        requests[1].contains("fromImage=busybox") && requests[1].contains("tag=latest"),
        "{requests:?}"
    );
}

#[tokio::test]
async fn an_image_id_or_pull_never_is_not_pulled() {
    let id = format!("sha256:{}", "ab".repeat(32));
    for args in [vec![id.as_str()], vec!["--pull=never", "busybox"]] {
        let (result, requests) = create_with("No such image: x", &args).await;
        let e = result.unwrap_err();
        assert!(format!("{e:#}").contains("No such image"), "{e:#}");
        assert_eq!(kinds(&requests), ["create"], "{args:?}: {requests:?}");
    }
}

#[tokio::test]
async fn the_implicit_pull_sends_the_stored_credentials() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::ConfigDir::new(dir.path().join("config"));
    let auth = crate::credentials::AuthConfig {
        username: "ci".into(),
        password: "pw".into(),
        ..Default::default()
    };
    crate::credentials::store(&config, crate::credentials::INDEX_SERVER, &auth).unwrap();
    let (result, requests) = create_in(&dir, "not found", &["-q", "me/private"]).await;
    result.unwrap();
    let pull = &requests[1];
    let header = pull
        .lines()
        .find_map(|l| l.strip_prefix("x-registry-auth: "))
        .unwrap_or_else(|| panic!("no X-Registry-Auth in {pull}"));
    let json = base64::engine::general_purpose::URL_SAFE
        .decode(header.trim())
        .unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(sent["username"], "ci");
    assert_eq!(sent["password"], "pw");
    assert_eq!(sent["serveraddress"], crate::credentials::INDEX_SERVER);
}
