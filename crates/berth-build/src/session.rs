//! The build session: how a build reaches what only the client has (`RUN --mount=type=secret`
//! values, `RUN --mount=type=ssh` agents). The legacy `POST /build` request carries only the
//! context, so, as BuildKit does, the client first opens `POST /session` (headers
//! [`UUID_HEADER`], `Connection: Upgrade`, `Upgrade: h2c`); the daemon answers `101` and the
//! connection then carries HTTP/2 with the *daemon* as the client and the CLI as the server
//! (BuildKit runs gRPC the same way round). `POST /build?session=<uuid>` names the session.
//!
//! Requests the daemon makes on it (HTTP/2 streams: many at once, each with flow control):
//! - `POST` [`SECRET_PATH`] with [`ID_HEADER`]: `200` and the secret's bytes, or `404`.
//! - `POST` [`SSH_CHECK_PATH`] with [`ID_HEADER`]: `200` when the client forwards that agent.
//! - `POST` [`SSH_PATH`] with [`ID_HEADER`]: one connection to the agent; the request body
//!   goes to the agent and the response body comes back (full duplex), until either side ends.
//!
//! Secrets are requested when a step that mounts them runs, never stored by the daemon beyond
//! the step's tmpfs, and never part of a cache key (as BuildKit, the key holds only the id).

/// The session's id (BuildKit's header name, so a proxy treats both alike).
pub const UUID_HEADER: &str = "X-Docker-Expose-Session-Uuid";
/// The `Upgrade` protocol: HTTP/2 without TLS.
pub const UPGRADE: &str = "h2c";
/// The secret or agent id a request is about.
pub const ID_HEADER: &str = "x-berth-id";
pub const SECRET_PATH: &str = "/berth.secrets.v1/GetSecret";
pub const SSH_CHECK_PATH: &str = "/berth.sshforward.v1/CheckAgent";
pub const SSH_PATH: &str = "/berth.sshforward.v1/ForwardAgent";

use bytes::Bytes;

/// The URI of a session request (HTTP/2 needs a scheme and an authority; neither is used).
pub fn uri(path: &str) -> String {
    format!("http://session{path}")
}

/// Sends `data` on an HTTP/2 stream, waiting for the peer's flow-control window rather than
/// buffering without bound.
pub async fn send_all(tx: &mut h2::SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        tx.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| tx.poll_capacity(cx)).await {
            Some(c) => c?,
            // The stream was reset or closed by the peer.
            None => return Err(h2::Error::from(h2::Reason::CANCEL)),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        tx.send_data(chunk, false)?;
    }
    Ok(())
}

/// The next chunk of a received body, its window released for the next one.
pub async fn recv(body: &mut h2::RecvStream) -> Option<Result<Bytes, h2::Error>> {
    let chunk = body.data().await?;
    if let Ok(c) = &chunk {
        let _ = body.flow_control().release_capacity(c.len());
    }
    Some(chunk)
}

/// A whole received body, at most `limit` bytes (a secret is small; BuildKit caps them at
/// 500 KiB).
pub async fn recv_all(body: &mut h2::RecvStream, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = recv(body).await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if out.len() + chunk.len() > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Copies a socket's bytes onto an HTTP/2 stream until the socket ends (then ends the stream).
pub async fn pump_to_h2(
    mut from: impl tokio::io::AsyncRead + Unpin,
    tx: &mut h2::SendStream<Bytes>,
) -> Result<(), String> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return tx.send_data(Bytes::new(), true).map_err(|e| e.to_string());
        }
        send_all(tx, Bytes::copy_from_slice(&buf[..n]))
            .await
            .map_err(|e| e.to_string())?;
    }
}

/// Copies an HTTP/2 body onto a socket until the body ends (then shuts the socket's write
/// side down, so the other end sees the end).
pub async fn pump_from_h2(
    body: &mut h2::RecvStream,
    mut to: impl tokio::io::AsyncWrite + Unpin,
) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    while let Some(chunk) = recv(body).await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        to.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    to.shutdown().await.map_err(|e| e.to_string())
}
