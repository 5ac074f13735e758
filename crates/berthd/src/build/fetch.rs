//! GETs for a build: `ADD http(s)://...` and the `remote` context URL. HTTPS is rustls with
//! the system's roots (which honour `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus the CAs of the
//! daemon's `certs.d/<host[:port]>/*.crt`, as a registry on that host would be trusted.
//! Redirects are followed (Go's client, which dockerd uses, follows up to 10).

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// `host[:port]` of an http(s) URL, as `certs.d` names its directories.
fn authority(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    Some(auth.rsplit_once('@').map_or(auth, |(_, h)| h))
}

fn client(url: &str, certs_dir: Option<&Path>) -> Result<reqwest::Client, String> {
    // reqwest's rustls needs the process-wide provider (ring, as berth-registry's).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut certs = Vec::new();
    if url.starts_with("https://")
        && let (Some(dir), Some(host)) = (certs_dir, authority(url))
        && let Ok(entries) = std::fs::read_dir(dir.join(host))
    {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "crt") {
                let pem = std::fs::read(e.path())
                    .map_err(|err| format!("cannot read {}: {err}", e.path().display()))?;
                certs.extend(reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
                    format!("invalid CA certificate {}: {err}", e.path().display())
                })?);
            }
        }
    }
    reqwest::Client::builder()
        .tls_certs_merge(certs)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("Berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up an HTTP client: {e}"))
}

/// Downloads `url` into the file `path`. Errors in Docker's words where it has some.
pub async fn get_to_file(url: &str, path: &Path, certs_dir: Option<&Path>) -> Result<(), String> {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(format!(
            "unsupported URL {url}: only http:// and https:// downloads are supported"
        ));
    }
    let client = client(url, certs_dir)?;
    let mut resp = client.get(url).send().await.map_err(|e| {
        // reqwest's Display stops at the outermost cause; the TLS reason is further down.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        format!("failed to GET {url}: {text}")
    })?;
    if !resp.status().is_success() {
        return Err(format!("failed to GET {url} with status {}", resp.status()));
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("failed to read {url}: {e}"))?
    {
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    Ok(())
}
