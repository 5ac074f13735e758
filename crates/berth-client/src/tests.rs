//! Tests against a tiny fake daemon on a temporary unix socket.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::*;

/// Serves canned answers: `route(request_line) -> raw HTTP response`. Records request lines.
struct FakeDaemon {
    _dir: tempfile::TempDir,
    host: Host,
    requests: Arc<Mutex<Vec<String>>>,
}

fn fake_daemon(route: fn(&str) -> String) -> FakeDaemon {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                let line = text.lines().next().unwrap_or_default().to_string();
                seen.lock().unwrap().push(line.clone());
                let answer = route(&line);
                conn.write_all(answer.as_bytes()).await.unwrap();
                conn.shutdown().await.ok();
            });
        }
    });
    FakeDaemon {
        host: Host::Unix(path),
        _dir: dir,
        requests,
    }
}

fn http(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
}

fn route(line: &str) -> String {
    if line.starts_with("GET /_ping") {
        return http("200 OK", "Api-Version: 1.45\r\nOSType: linux\r\n", "OK");
    }
    if line.contains("/images/nope/json") {
        return http(
            "404 Not Found",
            "Content-Type: application/json\r\n",
            r#"{"message":"No such image: nope"}"#,
        );
    }
    if line.contains("/images/json") {
        return http(
            "200 OK",
            "Content-Type: application/json\r\n",
            r#"[{"Id":"sha256:abc","RepoTags":null,"Labels":null,"Created":5,"Size":10,"SharedSize":-1,"Containers":-1}]"#,
        );
    }
    if line.contains("/events") {
        return http(
            "200 OK",
            "",
            "{\"Type\":\"image\",\"Action\":\"tag\",\"Actor\":{\"ID\":\"sha256:1\",\"Attributes\":{\"name\":\"a:b\"}},\"time\":1,\"timeNano\":1000000001}\n{\"Type\":\"image\",\"Action\":\"untag\",\"Actor\":{\"ID\":\"sha256:2\"},\"time\":2,\"timeNano\":2}\n",
        );
    }
    http("500 Internal Server Error", "", "boom")
}

#[tokio::test]
async fn negotiates_the_lower_version_and_prefixes_paths() {
    let daemon = fake_daemon(route);
    let client = Client::new(daemon.host.clone());
    assert_eq!(client.api_version().await.unwrap().to_string(), "1.45");
    let images = client
        .images_list(&ImageListOptions {
            all: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(images[0].id, "sha256:abc");
    assert!(images[0].repo_tags.is_empty());
    let requests = daemon.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[1].starts_with("GET /v1.45/images/json?all=1 "));
}

#[tokio::test]
async fn pinned_version_skips_the_ping() {
    let daemon = fake_daemon(route);
    let client = Client::with_version(daemon.host.clone(), ApiVersion::parse("1.41").unwrap());
    client.images_list(&Default::default()).await.unwrap();
    let requests = daemon.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].starts_with("GET /v1.41/images/json "));
}

#[tokio::test]
async fn decodes_api_errors() {
    let daemon = fake_daemon(route);
    let client = Client::new(daemon.host.clone());
    let err = client.image_inspect("nope").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "No such image: nope");
    let err = client.version().await.unwrap_err();
    assert_eq!(err.api().unwrap().kind, ErrorKind::Internal);
    assert_eq!(err.to_string(), "boom");
}

#[tokio::test]
async fn streams_events() {
    let daemon = fake_daemon(route);
    let client = Client::new(daemon.host.clone());
    let events: Vec<_> = client
        .events(&Default::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(events.len(), 2);
    let first = events[0].as_ref().unwrap();
    assert_eq!(first.action, "tag");
    assert_eq!(first.actor.attributes["name"], "a:b");
    assert_eq!(events[1].as_ref().unwrap().action, "untag");
}

#[tokio::test]
async fn unreachable_daemon_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::Unix(dir.path().join("missing.sock"));
    let err = Client::new(host.clone()).version().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Cannot connect to the Berth daemon at {host}. Is the berth daemon running?")
    );
}

#[test]
fn negotiation_takes_the_minimum() {
    assert_eq!(negotiate(Some("1.44")).to_string(), "1.44");
    assert_eq!(negotiate(Some("1.99")).to_string(), "1.51");
    assert_eq!(negotiate(None).to_string(), "1.51");
}
