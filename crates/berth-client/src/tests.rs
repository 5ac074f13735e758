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

/// Without a ping: the first request goes at our version; a daemon as new answers it.
#[tokio::test]
async fn a_daemon_as_new_is_asked_without_a_ping() {
    let daemon = fake_daemon(route);
    let client = Client::new(daemon.host.clone());
    client.images_list(&Default::default()).await.unwrap();
    client.images_list(&Default::default()).await.unwrap();
    let requests = daemon.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let ours = format!("GET /v{}/images/json ", berth_api::MAX_API_VERSION);
    assert!(
        requests.iter().all(|r| r.starts_with(&ours)),
        "{requests:?}"
    );
}

/// An older daemon refuses our version (400, with its own in Api-Version): the request goes
/// again at its version, and so do the next ones.
#[tokio::test]
async fn an_older_daemon_gets_the_request_again_at_its_version() {
    let daemon = fake_daemon(|line: &str| {
        if line.contains("/v1.44/") {
            return route(line);
        }
        http(
            "400 Bad Request",
            "Api-Version: 1.44\r\nContent-Type: application/json\r\n",
            r#"{"message":"client version 1.51 is too new. Maximum supported API version is 1.44"}"#,
        )
    });
    let client = Client::new(daemon.host.clone());
    let images = client.images_list(&Default::default()).await.unwrap();
    assert_eq!(images[0].id, "sha256:abc");
    client.images_list(&Default::default()).await.unwrap();
    let requests = daemon.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests[1].starts_with("GET /v1.44/images/json "));
    assert!(requests[2].starts_with("GET /v1.44/images/json "));
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

/// A fake daemon for hijacked requests: answers `status_line`, sends a stdout frame, echoes
/// every stdin byte back as stderr frames until the client half-closes, then sends a final
/// stdout frame and closes. Returns the request head it saw.
fn hijack_daemon(
    status_line: &'static str,
) -> (tempfile::TempDir, Host, tokio::task::JoinHandle<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut pending = buf.split_off(head_end);
        if status_line.starts_with("404") {
            let body = r#"{"message":"No such container: nope"}"#;
            let answer = format!(
                "HTTP/1.1 {status_line}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).await.unwrap();
            return head;
        }
        let mut out = format!(
            "HTTP/1.1 {status_line}\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        .into_bytes();
        berth_api::stream::encode_frame(StreamKind::Stdout, b"hello\n", &mut out);
        conn.write_all(&out).await.unwrap();
        // Body bytes (exec start's JSON) are not stdin.
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while pending.len() < body_len {
            let n = conn.read(&mut chunk).await.unwrap();
            pending.extend_from_slice(&chunk[..n]);
        }
        let mut stdin = pending.split_off(body_len);
        loop {
            if !stdin.is_empty() {
                let mut frame = Vec::new();
                berth_api::stream::encode_frame(StreamKind::Stderr, &stdin, &mut frame);
                conn.write_all(&frame).await.unwrap();
                stdin.clear();
            }
            let n = conn.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            stdin.extend_from_slice(&chunk[..n]);
        }
        let mut frame = Vec::new();
        berth_api::stream::encode_frame(StreamKind::Stdout, b"bye\n", &mut frame);
        conn.write_all(&frame).await.unwrap();
        head
    });
    (dir, Host::Unix(path), task)
}

async fn exercise_hijack(hijacked: Hijacked) -> Vec<(StreamKind, Vec<u8>)> {
    let (reader, mut writer) = hijacked.into_split();
    let mut demux = Demuxer::new(reader);
    let mut frames = vec![demux.next_frame().await.unwrap().unwrap()];
    writer.write_all(b"ping").await.unwrap();
    frames.push(demux.next_frame().await.unwrap().unwrap());
    // Half-close: the daemon sees EOF on stdin and still sends its last output.
    writer.shutdown().await.unwrap();
    while let Some(frame) = demux.next_frame().await.unwrap() {
        frames.push(frame);
    }
    frames
}

#[tokio::test]
async fn attach_upgrades_and_half_closes() {
    let (_dir, host, task) = hijack_daemon("101 UPGRADED");
    let client = Client::with_version(host, ApiVersion::parse("1.51").unwrap());
    let options = AttachOptions {
        stream: true,
        stdin: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let hijacked = client.container_attach("web", &options).await.unwrap();
    assert!(hijacked.upgraded);
    assert_eq!(
        hijacked.content_type.as_deref(),
        Some("application/vnd.docker.multiplexed-stream")
    );
    let frames = exercise_hijack(hijacked).await;
    assert_eq!(
        frames,
        vec![
            (StreamKind::Stdout, b"hello\n".to_vec()),
            (StreamKind::Stderr, b"ping".to_vec()),
            (StreamKind::Stdout, b"bye\n".to_vec()),
        ]
    );
    let head = task.await.unwrap();
    assert!(
        head.starts_with(
            "POST /v1.51/containers/web/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
        ),
        "{head}"
    );
    assert!(head.contains("Connection: Upgrade\r\n"));
    assert!(head.contains("Upgrade: tcp\r\n"));
}

#[tokio::test]
async fn exec_start_accepts_the_legacy_200_and_sends_its_body() {
    let (_dir, host, task) = hijack_daemon("200 OK");
    let client = Client::with_version(host, ApiVersion::parse("1.51").unwrap());
    let config = berth_api::models::container::ExecStartConfig::default();
    let hijacked = client.exec_start("abc", &config).await.unwrap();
    assert!(!hijacked.upgraded);
    let frames = exercise_hijack(hijacked).await;
    assert_eq!(frames.len(), 3);
    let head = task.await.unwrap();
    assert!(head.starts_with("POST /v1.51/exec/abc/start HTTP/1.1\r\n"));
    assert!(head.contains("Content-Type: application/json\r\n"));
}

#[tokio::test]
async fn hijack_errors_are_api_errors() {
    let (_dir, host, _task) = hijack_daemon("404 Not Found");
    let client = Client::with_version(host, ApiVersion::parse("1.51").unwrap());
    let err = client
        .container_attach("nope", &AttachOptions::default())
        .await
        .err()
        .unwrap();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "No such container: nope");
}

#[tokio::test]
async fn logs_are_demultiplexed() {
    fn logs_route(line: &str) -> String {
        let mut body = Vec::new();
        berth_api::stream::encode_frame(StreamKind::Stdout, b"out\n", &mut body);
        berth_api::stream::encode_frame(StreamKind::Stderr, b"err\n", &mut body);
        assert!(
            line.contains("/containers/c1/logs?stdout=1&stderr=1&tail=2"),
            "{line}"
        );
        let mut text = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        // The frames are ASCII apart from the header bytes, which are all < 0x80.
        text.push_str(std::str::from_utf8(&body).unwrap());
        text
    }
    let daemon = fake_daemon(logs_route);
    let client = Client::with_version(daemon.host.clone(), ApiVersion::parse("1.51").unwrap());
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: Some("2".into()),
        ..Default::default()
    };
    let frames: Vec<_> = client
        .container_logs("c1", &options, false)
        .await
        .unwrap()
        .map(|f| f.unwrap())
        .collect()
        .await;
    assert_eq!(
        frames,
        vec![
            (StreamKind::Stdout, Bytes::from_static(b"out\n")),
            (StreamKind::Stderr, Bytes::from_static(b"err\n")),
        ]
    );
}

#[test]
fn path_stat_header_round_trips() {
    let stat = PathStat {
        name: "etc".into(),
        size: 4096,
        mode: (1 << 31) | 0o755,
        mtime: "2024-01-01T00:00:00Z".into(),
        link_target: String::new(),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "X-Docker-Container-Path-Stat",
        encode_path_stat(&stat).parse().unwrap(),
    );
    let decoded = containers::path_stat_for_test(&headers).unwrap();
    assert_eq!(decoded, stat);
    assert!(decoded.is_dir());
}

#[test]
fn path_stat_base64_is_decoded_leniently() {
    let decode = containers::decode_base64_for_test;
    assert_eq!(decode("YWI=").unwrap(), b"ab");
    assert_eq!(decode("YWI").unwrap(), b"ab");
    assert_eq!(decode("").unwrap(), b"");
    // `~>` in the URL-safe alphabet.
    assert_eq!(decode("fj4-").unwrap(), decode("fj4+").unwrap());
    assert!(decode("@@@@").is_none());
    assert!(decode("Y").is_none());
}
