//! Plain HTTP GETs for a build: `ADD http://...` and the `remote` context URL. Only `http://`
//! (the daemon's registry TLS setup is for registries); redirects are not followed.

use std::path::Path;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

/// Downloads `url` into the file `path`. Errors in Docker's words where it has some.
pub async fn get_to_file(url: &str, path: &Path) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {url}: only http:// downloads are supported"))?;
    let (authority, path_q) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("failed to GET {url}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("failed to GET {url}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(path_q)
        .header(http::header::HOST, authority)
        .header(
            http::header::USER_AGENT,
            concat!("Berth/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("invalid URL {url}: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("failed to GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("failed to GET {url} with status {}", resp.status()));
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("failed to read {url}: {e}"))?;
        if let Some(data) = frame.data_ref() {
            file.write_all(data)
                .await
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    file.flush().await.map_err(|e| e.to_string())?;
    Ok(())
}
