//! `run`'s request sequence against a fake daemon: create, attach (upgraded), wait (its head
//! answered at once, its body after start), start; output streamed; the exit status returned.

use std::sync::{Arc, Mutex};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use super::*;
use berth_client::StreamKind;

use crate::cli::GlobalOptions;
use crate::output::StatusError;

pub(crate) async fn read_head(conn: &mut UnixStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            let mut body = buf[i + 4..].to_vec();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while body.len() < len {
                let n = conn.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return (head, body);
        }
        let n = conn.read(&mut chunk).await.unwrap();
        if n == 0 {
            return (String::from_utf8_lossy(&buf).to_string(), Vec::new());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub(crate) fn reply(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nApi-Version: 1.51\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[derive(Parser)]
#[command(name = "berth")]
struct Cmd {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    Run(RunArgs),
}

#[tokio::test]
async fn run_creates_attaches_waits_starts_and_exits_with_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let log: Arc<Mutex<Vec<String>>> = Default::default();
    let started = Arc::new(Notify::new());
    let seen = log.clone();
    let start_signal = started.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            let started = start_signal.clone();
            tokio::spawn(async move {
                let (head, body) = read_head(&mut conn).await;
                let line = head.lines().next().unwrap_or_default().to_string();
                let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                if !path.starts_with("/_ping") {
                    seen.lock().unwrap().push(path.clone());
                }
                if path.starts_with("/_ping") {
                    conn.write_all(reply("200 OK", "OK").as_bytes())
                        .await
                        .unwrap();
                } else if path.contains("/containers/create") {
                    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(request["Image"], "busybox");
                    assert_eq!(request["AttachStdout"], true);
                    conn.write_all(
                        reply("201 Created", r#"{"Id":"c0ffee","Warnings":["careful"]}"#)
                            .as_bytes(),
                    )
                    .await
                    .unwrap();
                } else if path.contains("/attach") {
                    assert!(head.contains("Upgrade: tcp"));
                    // Registered before answering, so a quick start cannot be missed.
                    let woken = started.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    conn.write_all(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                        .await
                        .unwrap();
                    woken.await;
                    let mut frames = Vec::new();
                    berth_api::stream::encode_frame(StreamKind::Stdout, b"hello\n", &mut frames);
                    conn.write_all(&frames).await.unwrap();
                    conn.shutdown().await.unwrap();
                } else if path.contains("/wait") {
                    let woken = started.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                        .await
                        .unwrap();
                    conn.flush().await.unwrap();
                    woken.await;
                    let body = r#"{"StatusCode":3}"#;
                    conn.write_all(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes())
                        .await
                        .unwrap();
                } else if path.contains("/start") {
                    conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .await
                        .unwrap();
                    // Wake the attach and the wait (each waits once).
                    started.notify_waiters();
                } else {
                    conn.write_all(
                        reply("404 Not Found", r#"{"message":"unexpected"}"#).as_bytes(),
                    )
                    .await
                    .unwrap();
                }
            });
        }
    });

    let Sub::Run(args) =
        Cmd::try_parse_from(["berth", "run", "--sig-proxy=false", "busybox", "echo", "hi"])
            .unwrap()
            .cmd;
    let env = Env {
        global: GlobalOptions {
            host: vec![format!("unix://{}", sock.display())],
            ..Default::default()
        },
        config: crate::config::ConfigDir::new(dir.path().join("config")),
    };
    let err = run(&env, args).await.unwrap_err();
    let status = err.downcast_ref::<StatusError>().unwrap();
    assert_eq!((status.code, status.message.as_str()), (3, ""));
    let log = log.lock().unwrap().clone();
    let order: Vec<&str> = log
        .iter()
        .map(|p| {
            ["create", "attach", "wait", "start"]
                .into_iter()
                .find(|k| p.contains(k))
                .unwrap_or("other")
        })
        .collect();
    assert_eq!(order, ["create", "attach", "wait", "start"], "{log:?}");
    assert!(log[1].contains("stream=1&stdout=1&stderr=1"), "{}", log[1]);
    assert!(log[2].ends_with("/wait?condition=next-exit"), "{}", log[2]);
}
