//! A typed async client for the Docker Engine API as `berthd` serves it.
//!
//! ```no_run
//! # async fn demo() -> berth_client::Result<()> {
//! let client = berth_client::Client::new(berth_client::Host::parse("unix:///run/berth/berth.sock")?);
//! let images = client.images_list(&berth_client::ImageListOptions::default()).await?;
//! # Ok(()) }
//! ```
//!
//! The API version is negotiated as the docker CLI does: the first request pings the daemon,
//! reads its `Api-Version` header and uses the lower of that and [`berth_api::MAX_API_VERSION`];
//! every later request is prefixed `/v1.NN/`. A pinned version skips the ping.
//!
//! Attach and exec start are hijacked connections ([`Hijacked`]): the request is written by
//! hand with `Upgrade: tcp`, `101 Switching Protocols` (or the legacy `200 OK`) hands back the
//! socket's own read and write halves, and shutting the write half down half-closes the
//! connection (stdin ended) while output keeps arriving. Without a TTY the output is Docker's
//! multiplexed framing ([`Demuxer`], [`demux_stream`]); with one it is raw bytes.
//!
//! `container_wait` returns once the daemon has answered the request head: the docker CLI's
//! `run` relies on that to register the wait before `start`, so the daemon must flush the head
//! of `POST /containers/{id}/wait` at once and send the body when the condition is met.

mod build;
mod connect;
mod containers;
mod error;
mod hijack;
mod host;
mod images;
mod networks;
mod query;
mod stream;
mod system;
mod tls;
mod transport;
mod volumes;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

pub use berth_api::stream::StreamKind;
pub use berth_api::{ApiError, ApiVersion, ErrorKind, Filters};
pub use build::{BuildOptions, BuildPruneOptions, BuildPruneReport};
pub use connect::{CommandConn, Endpoint};
pub use containers::{
    AttachOptions, CommitOptions, ContainerListOptions, ContainerRemoveOptions, CopyToOptions,
    LogsOptions, PathStat, WaitHandle, demux_stream, encode_path_stat,
};
pub use error::{Error, Result};
pub use hijack::{Demuxer, HijackReader, HijackWriter, Hijacked};
pub use host::{DEFAULT_HOST, Host, SshSpec};
pub use images::{ImageImportOptions, ImageListOptions, ImageRemoveOptions, UploadStream};
pub use query::Query;
pub use system::{EventsOptions, PingInfo};
pub use tls::{TlsConfig, TlsOptions};
pub use transport::Body;

/// A connection-less handle on one daemon; cheap to clone, safe to share.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    pinned: Option<ApiVersion>,
    negotiated: std::sync::Arc<OnceCell<ApiVersion>>,
}

impl Client {
    /// A client that negotiates the API version on first use.
    pub fn new(host: Host) -> Client {
        Client {
            endpoint: Endpoint { host, tls: None },
            pinned: None,
            negotiated: Default::default(),
        }
    }

    /// A client that always uses `version` (`BERTH_API_VERSION`), without pinging first.
    pub fn with_version(host: Host, version: ApiVersion) -> Client {
        Client {
            endpoint: Endpoint { host, tls: None },
            pinned: Some(version),
            negotiated: Default::default(),
        }
    }

    /// The same client speaking TLS to its tcp host (`--tls`, `--tlsverify`).
    pub fn with_tls(mut self, tls: TlsConfig) -> Client {
        self.endpoint.tls = Some(tls);
        self
    }

    pub fn host(&self) -> &Host {
        &self.endpoint.host
    }

    /// A raw connection to the daemon, as two halves (`system dial-stdio` relays it).
    pub async fn dial(&self) -> Result<(HijackReader, HijackWriter)> {
        hijack::dial(&self.endpoint).await
    }

    /// The client's own (maximum) API version.
    pub fn client_version(&self) -> ApiVersion {
        self.pinned.unwrap_or(berth_api::MAX_API_VERSION)
    }

    /// The version requests use: pinned, or negotiated with the daemon (pinging it once).
    pub async fn api_version(&self) -> Result<ApiVersion> {
        if let Some(v) = self.pinned {
            return Ok(v);
        }
        self.negotiated
            .get_or_try_init(|| async {
                let ping = self.ping().await?;
                Ok(negotiate(ping.api_version.as_deref()))
            })
            .await
            .copied()
    }

    /// Sends a request to a versioned path and returns the response if its status is a success;
    /// an error status becomes [`Error::Api`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Body,
    ) -> Result<Response<Incoming>> {
        self.request_with_headers(method, path, query, body, &[])
            .await
    }

    /// [`Client::request`] with extra request headers (`X-Registry-Auth`).
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>> {
        if self.pinned.is_none() && self.negotiated.get().is_none() {
            // Not negotiated yet: rather than ping first (a round trip on every command), a
            // request that can be sent again goes out at our own version. A daemon as new
            // answers it, and its Api-Version header settles the negotiation; an older one
            // refuses it (400, "client version is too new") and it goes again at the
            // daemon's version.
            let replay = match &body {
                Body::Empty => Some(Body::Empty),
                Body::Json(b) => Some(Body::Json(b.clone())),
                Body::Stream { .. } => None,
            };
            if let Some(replay) = replay {
                let ours = berth_api::MAX_API_VERSION;
                let query = query.to_query_string();
                let uri = format!("/v{ours}{path}{query}");
                let response = transport::send_with_headers(
                    &self.endpoint,
                    method.clone(),
                    &uri,
                    body,
                    headers,
                )
                .await?;
                let theirs = response
                    .headers()
                    .get("api-version")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let version = negotiate(theirs.as_deref());
                let _ = self.negotiated.set(version);
                if response.status() == StatusCode::BAD_REQUEST && version < ours {
                    let uri = format!("/v{version}{path}{query}");
                    let response =
                        transport::send_with_headers(&self.endpoint, method, &uri, replay, headers)
                            .await?;
                    return check_status(response).await;
                }
                return check_status(response).await;
            }
        }
        let version = self.api_version().await?;
        let uri = format!("/v{version}{path}{}", query.to_query_string());
        let response =
            transport::send_with_headers(&self.endpoint, method, &uri, body, headers).await?;
        check_status(response).await
    }

    /// A request whose answer is wanted as the daemon sent it (`inspect --format` renders the
    /// raw JSON, so fields Berth does not model still show).
    pub async fn request_bytes(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Body,
    ) -> Result<Bytes> {
        let response = self.request(method, path, query, body).await?;
        read_body(response.into_body()).await
    }

    /// [`Client::request_bytes`] with extra request headers (`X-Registry-Auth`).
    pub async fn request_bytes_with_headers(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Bytes> {
        let response = self
            .request_with_headers(method, path, query, body, headers)
            .await?;
        read_body(response.into_body()).await
    }

    /// A request whose whole answer is one JSON value.
    pub async fn request_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Body,
        what: &str,
    ) -> Result<T> {
        let value = self.request_value(method, path, query, body, what).await?;
        decode_value(value, what)
    }

    /// A request whose whole answer is one JSON value, undecoded.
    pub async fn request_value(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Body,
        what: &str,
    ) -> Result<serde_json::Value> {
        let bytes = self.request_bytes(method, path, query, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            what: what.to_string(),
            source,
        })
    }
}

/// min(server, ours); a daemon that reports nothing is assumed to be as new as we are
/// (docker falls back to its own default the same way).
fn negotiate(server: Option<&str>) -> ApiVersion {
    let ours = berth_api::MAX_API_VERSION;
    match server.and_then(ApiVersion::parse) {
        Some(theirs) if theirs < ours => theirs,
        _ => ours,
    }
}

async fn read_body(body: Incoming) -> Result<Bytes> {
    Ok(body
        .collect()
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .to_bytes())
}

/// Turns an error status into an [`ApiError`], decoding Docker's `{"message": ...}` body.
async fn check_status(response: Response<Incoming>) -> Result<Response<Incoming>> {
    let status = response.status();
    if status.is_success() || status.is_informational() || status.is_redirection() {
        return Ok(response);
    }
    let bytes = read_body(response.into_body()).await.unwrap_or_default();
    Err(Error::Api(api_error(status, &bytes)))
}

fn api_error(status: StatusCode, body: &[u8]) -> ApiError {
    let kind = ErrorKind::from_status_code(status.as_u16());
    let message = match serde_json::from_slice::<berth_api::error::ErrorResponse>(body) {
        Ok(e) => e.message,
        Err(_) => {
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.is_empty() {
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim()
                .to_string()
            } else {
                text
            }
        }
    };
    ApiError::new(kind, message)
}

/// Decodes a JSON value into a typed model. Go encodes nil slices and maps as `null`, which
/// serde's `default` does not cover, so nulls are dropped first (an absent field gets its
/// default).
pub(crate) fn decode_value<T: DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(strip_nulls(value)).map_err(|source| Error::Decode {
        what: what.to_string(),
        source,
    })
}

/// Drops `null` members recursively. Go encodes empty lists and maps as `null`, which serde's
/// defaults for `Vec`/`BTreeMap` fields refuse; without them the defaults apply.
pub fn strip_nulls(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
