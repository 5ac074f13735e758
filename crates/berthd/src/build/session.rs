//! berthd's end of the build session (protocol: `berth_build::session`): `POST /session`
//! upgrades the connection to HTTP/2 with the daemon as the client; a build that names the
//! session (`session=` on `/build`) asks it for secrets and ssh-agent connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use berth_build::session::{
    self as proto, ID_HEADER, SECRET_PATH, SSH_CHECK_PATH, SSH_PATH, UPGRADE, UUID_HEADER,
};
use bytes::Bytes;
use h2::client::SendRequest;

/// Open sessions by id. A session lives as long as its connection; the generation tells a
/// replaced entry from the current one when an old connection ends.
static SESSIONS: LazyLock<Mutex<SessionMap>> = LazyLock::new(Default::default);

/// Session id → (generation, the HTTP/2 handle).
type SessionMap = HashMap<String, (u64, SendRequest<Bytes>)>;
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// BuildKit's cap on a secret's size.
const MAX_SECRET: usize = 500 * 1024;

fn plain(status: StatusCode, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({ "message": message }).to_string(),
        ))
        .unwrap_or_default()
}

/// `POST /session`: answers `101` and keeps the connection as the session's HTTP/2 client.
pub async fn open(mut req: Request) -> Response {
    let id = req
        .headers()
        .get(UUID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if id.is_empty() {
        return plain(StatusCode::BAD_REQUEST, "session id is required");
    }
    let upgrade_ok = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE));
    if !upgrade_ok {
        return plain(
            StatusCode::BAD_REQUEST,
            "a session needs Connection: Upgrade and Upgrade: h2c",
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let (send, conn) = match h2::client::handshake(io).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(session = %id, error = %e, "build session handshake failed");
                return;
            }
        };
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        lock().insert(id.clone(), (generation, send));
        tracing::debug!(session = %id, "build session open");
        let _ = conn.await;
        let mut map = lock();
        if map.get(&id).is_some_and(|(g, _)| *g == generation) {
            map.remove(&id);
        }
        tracing::debug!(session = %id, "build session closed");
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, UPGRADE)
        .body(Body::empty())
        .unwrap_or_default()
}

fn lock() -> std::sync::MutexGuard<'static, SessionMap> {
    SESSIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The session's HTTP/2 handle. The client sends `/build` once it has the `101`, so the
/// handshake may still be finishing: wait a little for it.
async fn handle(session: &str) -> Result<SendRequest<Bytes>, String> {
    for _ in 0..100 {
        let found = lock().get(session).map(|(_, s)| s.clone());
        if let Some(s) = found {
            return s
                .ready()
                .await
                .map_err(|e| format!("build session {session}: {e}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("no active session for {session}"))
}

fn request(path: &str, id: &str) -> Result<http::Request<()>, String> {
    http::Request::post(proto::uri(path))
        .header(ID_HEADER, id)
        .body(())
        .map_err(|e| e.to_string())
}

/// The secret `id` from the session: `None` when the client has no such secret (or the build
/// has no session).
pub async fn secret(session: Option<&str>, id: &str) -> Result<Option<Vec<u8>>, String> {
    let Some(session) = session else {
        return Ok(None);
    };
    let mut send = handle(session).await?;
    let (resp, _) = send
        .send_request(request(SECRET_PATH, id)?, true)
        .map_err(|e| format!("secret {id}: {e}"))?;
    let resp = resp.await.map_err(|e| format!("secret {id}: {e}"))?;
    if resp.status() == http::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(format!(
            "secret {id}: the client answered {}",
            resp.status()
        ));
    }
    let mut body = resp.into_body();
    proto::recv_all(&mut body, MAX_SECRET)
        .await
        .map(Some)
        .map_err(|e| format!("secret {id}: {e}"))
}

/// Whether the session forwards the ssh agent `id`.
pub async fn has_agent(session: Option<&str>, id: &str) -> Result<bool, String> {
    let Some(session) = session else {
        return Ok(false);
    };
    let mut send = handle(session).await?;
    let (resp, _) = send
        .send_request(request(SSH_CHECK_PATH, id)?, true)
        .map_err(|e| format!("ssh {id}: {e}"))?;
    let resp = resp.await.map_err(|e| format!("ssh {id}: {e}"))?;
    Ok(resp.status().is_success())
}

/// Forwards one connection to the container's agent socket to the client's agent `id`, both
/// ways, until either side ends.
pub async fn forward_agent(
    session: String,
    id: String,
    conn: tokio::net::UnixStream,
) -> Result<(), String> {
    let mut send = handle(&session).await?;
    let (resp, mut tx) = send
        .send_request(request(SSH_PATH, &id)?, false)
        .map_err(|e| format!("ssh {id}: {e}"))?;
    let (rd, wr) = conn.into_split();
    let up = proto::pump_to_h2(rd, &mut tx);
    let down = async {
        let resp = resp.await.map_err(|e| format!("ssh {id}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("ssh {id}: the client answered {}", resp.status()));
        }
        let mut body = resp.into_body();
        proto::pump_from_h2(&mut body, wr).await
    };
    // The agent's answers end the exchange: once they are all through, a request the client
    // is still sending has no reader.
    let (a, b) = tokio::join!(up, down);
    b.and(a)
}
