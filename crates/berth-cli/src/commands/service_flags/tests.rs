//! The flags' parsers, and `--with-registry-auth` against a fake daemon.

use std::sync::{Arc, Mutex};

use clap::Parser;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use super::network::parse_ports;
use crate::cli::GlobalOptions;
use crate::commands::Env;
use crate::commands::container::flow_tests::{read_head, reply};
use crate::commands::service::ServiceCommand;

#[test]
fn short_publish_syntax_gives_ingress_ports() {
    assert_eq!(
        parse_ports("8080:80/udp", "-p, --publish").unwrap(),
        [
            json!({"Protocol": "udp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"})
        ]
    );
    assert_eq!(
        parse_ports("80", "-p, --publish").unwrap(),
        [json!({"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress"})]
    );
    let range = parse_ports("9000-9001:90-91", "-p, --publish").unwrap();
    assert_eq!(range.len(), 2);
    assert_eq!(range[1]["PublishedPort"], 9001);
    assert_eq!(range[1]["TargetPort"], 91);
    let e = parse_ports("127.0.0.1:80:80", "-p, --publish").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid argument \"127.0.0.1:80:80\" for \"-p, --publish\" flag: hostip is not supported"
    );
}

#[test]
fn long_publish_syntax_defaults_to_tcp_and_ingress() {
    assert_eq!(
        parse_ports("target=80,published=8080", "-p, --publish").unwrap(),
        [
            json!({"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"})
        ]
    );
    let e = parse_ports("target=80,protocol=icmp", "-p, --publish").unwrap_err();
    assert!(
        e.to_string().ends_with("invalid protocol value 'icmp'"),
        "{e}"
    );
}

#[derive(Parser)]
#[command(name = "berth")]
struct Cmd {
    #[command(subcommand)]
    cmd: ServiceCommand,
}

/// Runs `berth service ARGS` against a fake daemon with stored credentials for docker.io;
/// returns the heads of the requests it got.
async fn service_with(args: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let log: Arc<Mutex<Vec<String>>> = Default::default();
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let (head, _) = read_head(&mut conn).await;
            let path = head.split(' ').nth(1).unwrap_or_default().to_string();
            let answer = if path.contains("/services/create") {
                reply("201 Created", r#"{"ID":"svc1"}"#)
            } else if path.contains("/update") {
                reply("200 OK", r#"{"Warnings":[]}"#)
            } else if path.contains("/services/") {
                reply(
                    "200 OK",
                    r#"{"ID":"svc1","Version":{"Index":3},"Spec":{"Name":"s","TaskTemplate":{"ContainerSpec":{"Image":"busybox"}},"Mode":{"Replicated":{"Replicas":1}}}}"#,
                )
            } else {
                reply("200 OK", "OK")
            };
            if !path.starts_with("/_ping") {
                seen.lock().unwrap().push(head);
            }
            conn.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    let config = crate::config::ConfigDir::new(dir.path().join("config"));
    let auth = crate::credentials::AuthConfig {
        username: "ci".into(),
        password: "pw".into(),
        ..Default::default()
    };
    crate::credentials::store(&config, crate::credentials::INDEX_SERVER, &auth).unwrap();
    let env = Env {
        global: GlobalOptions {
            host: vec![format!("unix://{}", sock.display())],
            ..Default::default()
        },
        config,
    };
    let cmd = Cmd::try_parse_from(["berth"].iter().chain(args))
        .unwrap()
        .cmd;
    crate::commands::service::run(&env, cmd).await.unwrap();
    log.lock().unwrap().clone()
}

fn has_auth(head: &str) -> bool {
    head.lines().any(|l| l.starts_with("x-registry-auth: "))
}

#[tokio::test]
async fn with_registry_auth_sends_the_stored_credentials() {
    let requests = service_with(&["create", "--with-registry-auth", "me/private"]).await;
    let create = requests
        .iter()
        .find(|r| r.contains("/services/create"))
        .unwrap();
    assert!(has_auth(create), "{create}");
    let requests = service_with(&["create", "me/private"]).await;
    assert!(!requests.iter().any(|r| has_auth(r)), "{requests:?}");
    let requests = service_with(&[
        "update",
        "--with-registry-auth",
        "--image",
        "me/private:2",
        "s",
    ])
    .await;
    let update = requests.iter().find(|r| r.contains("/update")).unwrap();
    assert!(has_auth(update), "{update}");
    // Without --image: the credentials for the service's image (docker.io's here).
    let requests = service_with(&["update", "--with-registry-auth", "--force", "s"]).await;
    let update = requests.iter().find(|r| r.contains("/update")).unwrap();
    assert!(has_auth(update), "{update}");
}
