//! Pull-through cache: a registry in front of any upstream registry. A manifest or blob the
//! cache lacks is fetched from upstream, answered, and kept; a cached tag is asked again
//! (HEAD, cheap) once its `tag_ttl_secs` passed, and served from the cache when upstream is
//! down. Blobs stream to the client while they are written to an upload session, committed
//! only when their digest verifies. Upstream auth: basic, or docker's token flow with the
//! configured credentials (or anonymously).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};

use crate::config::ProxyConfig;
use crate::digest::{Algorithm, Digest};
use crate::error::{RegistryError, Result};
use crate::http::{blocking, set};
use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::registry::Registry;
use crate::store::Manifest;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub struct Upstream {
    base: String,
    client: reqwest::Client,
    credentials: Option<(String, String)>,
    tag_ttl: Duration,
    /// Bearer tokens by repository.
    tokens: Mutex<HashMap<String, String>>,
    /// When each `repo:tag` was last checked upstream.
    checked: Mutex<HashMap<String, Instant>>,
}

fn upstream_err(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Upstream(e.to_string())
}

/// `key="value"` pairs of a `WWW-Authenticate: Bearer ...` challenge.
fn challenge_params(v: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let rest = v.trim().strip_prefix("Bearer ").unwrap_or(v);
    let mut s = rest;
    while let Some((k, after)) = s.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, n)) => (v.to_string(), n),
                None => (q.to_string(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.to_string(), n),
                None => (after.to_string(), ""),
            }
        };
        out.insert(k, val);
        s = next;
    }
    out
}

impl Upstream {
    pub fn new(config: &ProxyConfig) -> Result<Upstream, String> {
        // reqwest is built without a default crypto provider: ring, as everywhere in Berth.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| format!("proxy client: {e}"))?;
        Ok(Upstream {
            base: config.remote_url.trim_end_matches('/').to_string(),
            client,
            credentials: config
                .username
                .clone()
                .map(|u| (u, config.password.clone().unwrap_or_default())),
            tag_ttl: Duration::from_secs(config.tag_ttl_secs),
            tokens: Mutex::new(HashMap::new()),
            checked: Mutex::new(HashMap::new()),
        })
    }

    fn token(&self, repo: &str) -> Option<String> {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(repo)
            .cloned()
    }

    fn request(&self, method: reqwest::Method, url: &str, repo: &str) -> reqwest::RequestBuilder {
        let mut b = self.client.request(method, url).header("accept", ACCEPT);
        if let Some(t) = self.token(repo) {
            b = b.bearer_auth(t);
        } else if let Some((u, p)) = &self.credentials {
            b = b.basic_auth(u, Some(p));
        }
        b
    }

    /// Sends a request for `repo`, answering an auth challenge once.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        repo: &str,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let r = self
            .request(method.clone(), &url, repo)
            .send()
            .await
            .map_err(upstream_err)?;
        if r.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(r);
        }
        let challenge = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !challenge.to_ascii_lowercase().starts_with("bearer") {
            return Ok(r);
        }
        let params = challenge_params(&challenge);
        let realm = params
            .get("realm")
            .ok_or_else(|| upstream_err("a Bearer challenge without realm"))?;
        let scope = format!("repository:{repo}:pull");
        // By hand: reqwest's `query` is behind a feature this workspace does not build.
        // (The serializer is not Send: it must not live across an await.)
        let query = {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("scope", &scope);
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            q.finish()
        };
        let sep = if realm.contains('?') { '&' } else { '?' };
        let mut t = self.client.get(format!("{realm}{sep}{query}"));
        if let Some((u, p)) = &self.credentials {
            t = t.basic_auth(u, Some(p));
        }
        let answer = t.send().await.map_err(upstream_err)?;
        if !answer.status().is_success() {
            return Err(RegistryError::Upstream(format!(
                "token service {realm} answered {}",
                answer.status()
            )));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&answer.bytes().await.map_err(upstream_err)?)
                .map_err(upstream_err)?;
        let token = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .ok_or_else(|| upstream_err("token service answered no token"))?
            .to_string();
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(repo.to_string(), token);
        self.request(method, &url, repo)
            .send()
            .await
            .map_err(upstream_err)
    }
}

fn upstream(reg: &Registry) -> &Upstream {
    reg.proxy.as_ref().expect("proxy mode")
}

/// Fetches a manifest upstream and caches it.
pub async fn manifest(reg: &Arc<Registry>, name: &str, reference: &str) -> Result<Manifest> {
    let up = upstream(reg);
    let r = up
        .send(
            reqwest::Method::GET,
            &format!("/v2/{name}/manifests/{reference}"),
            name,
        )
        .await?;
    match r.status() {
        s if s.is_success() => {}
        reqwest::StatusCode::NOT_FOUND => {
            return Err(RegistryError::ManifestUnknown {
                name: name.into(),
                reference: reference.into(),
            });
        }
        s => {
            return Err(RegistryError::Upstream(format!(
                "manifest {name}:{reference}: {s}"
            )));
        }
    }
    let media_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = r.bytes().await.map_err(upstream_err)?;
    if bytes.len() as u64 > reg.config.max_manifest_bytes {
        return Err(RegistryError::Upstream(format!(
            "manifest {name}:{reference} is too big"
        )));
    }
    let digest = match Digest::parse(reference) {
        Ok(want) => {
            let got = Digest::of(want.algorithm(), &bytes);
            if got != want {
                return Err(RegistryError::Upstream(format!(
                    "upstream sent {got} for {want}"
                )));
            }
            got
        }
        Err(_) => Digest::of(Algorithm::Sha256, &bytes),
    };
    let (s, n, r, b, m) = (
        reg.store.clone(),
        name.to_string(),
        reference.to_string(),
        bytes.to_vec(),
        media_type.clone(),
    );
    blocking(move || s.cache_manifest(&n, &r, m.as_deref(), &b)).await?;
    if !reference.contains(':') {
        up.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!("{name}:{reference}"), Instant::now());
    }
    let media_type = media_type
        .filter(|m| {
            [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&m.as_str())
                || m.contains("json")
        })
        .unwrap_or_else(|| OCI_MANIFEST.to_string());
    Ok(Manifest {
        digest,
        media_type,
        bytes: bytes.to_vec(),
    })
}

/// A cached tag, checked upstream when its time is up; the cached one when upstream is down.
pub async fn refresh_tag(
    reg: &Arc<Registry>,
    name: &str,
    tag: &str,
    cached: Manifest,
) -> Result<Manifest> {
    let up = upstream(reg);
    let key = format!("{name}:{tag}");
    let fresh = up
        .checked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .is_some_and(|t| t.elapsed() < up.tag_ttl);
    if fresh {
        return Ok(cached);
    }
    let head = up
        .send(
            reqwest::Method::HEAD,
            &format!("/v2/{name}/manifests/{tag}"),
            name,
        )
        .await;
    let moved = match &head {
        Ok(r) if r.status().is_success() => r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|d| d != cached.digest.to_string()),
        _ => false,
    };
    up.checked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, Instant::now());
    if moved {
        return manifest(reg, name, tag).await.or(Ok(cached));
    }
    Ok(cached)
}

/// A blob the cache lacks: streamed from upstream to the client and into the cache.
pub async fn blob(
    reg: &Arc<Registry>,
    name: &str,
    d: &Digest,
    _headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let up = upstream(reg);
    let path = format!("/v2/{name}/blobs/{d}");
    let method = if head {
        reqwest::Method::HEAD
    } else {
        reqwest::Method::GET
    };
    let r = up.send(method, &path, name).await?;
    match r.status() {
        s if s.is_success() => {}
        reqwest::StatusCode::NOT_FOUND => {
            return Err(RegistryError::BlobUnknown {
                name: name.into(),
                digest: d.to_string(),
            });
        }
        s => return Err(RegistryError::Upstream(format!("blob {d}: {s}"))),
    }
    let len = r.content_length();
    let mut response = if head {
        (StatusCode::OK, Body::empty()).into_response()
    } else {
        let (to_client, client_rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let (to_cache, cache_rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let mut stream = r.bytes_stream();
        tokio::spawn(async move {
            let mut client_open = true;
            while let Some(item) = stream.next().await {
                let item = item.map_err(std::io::Error::other);
                let failed = item.is_err();
                let copy = match &item {
                    Ok(b) => Ok(b.clone()),
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                };
                if client_open && to_client.send(item).await.is_err() {
                    client_open = false; // the client left; the cache still fills
                }
                if to_cache.send(copy).await.is_err() || failed {
                    return;
                }
            }
        });
        let (reg2, name2, d2) = (reg.clone(), name.to_string(), d.clone());
        tokio::spawn(async move {
            let body = Body::from_stream(futures_util::stream::unfold(
                cache_rx,
                |mut rx| async move { rx.recv().await.map(|i| (i, rx)) },
            ));
            if let Err(e) = cache_blob(&reg2, &name2, &d2, body).await {
                tracing::warn!(repository = %name2, digest = %d2, error = %e, "blob not cached");
            }
        });
        reg.metrics.sent(len.unwrap_or(0));
        (
            StatusCode::OK,
            Body::from_stream(futures_util::stream::unfold(
                client_rx,
                |mut rx| async move { rx.recv().await.map(|i| (i, rx)) },
            )),
        )
            .into_response()
    };
    if let Some(n) = len {
        set(&mut response, "content-length", n.to_string());
    }
    set(&mut response, "content-type", "application/octet-stream");
    set(&mut response, "docker-content-digest", d.to_string());
    Ok(response)
}

async fn cache_blob(reg: &Arc<Registry>, name: &str, d: &Digest, body: Body) -> Result<()> {
    let id = reg.uploads.start(&reg.store, name, d.algorithm()).await?;
    let session = reg.uploads.get(&reg.store, name, &id).await?;
    let mut session = session.lock().await;
    if let Err(e) = reg
        .uploads
        .append(&reg.store, &mut session, None, body)
        .await
    {
        let _ = reg.uploads.cancel(&reg.store, &session).await;
        return Err(e);
    }
    reg.uploads.finish(&reg.store, &mut session, d).await
}

/// Tags of an upstream repository (not cached: lists change).
pub async fn tags(reg: &Arc<Registry>, name: &str) -> Result<Vec<String>> {
    let r = upstream(reg)
        .send(reqwest::Method::GET, &format!("/v2/{name}/tags/list"), name)
        .await?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(RegistryError::NameUnknown(name.into()));
    }
    if !r.status().is_success() {
        return Err(RegistryError::Upstream(format!(
            "tags of {name}: {}",
            r.status()
        )));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.map_err(upstream_err)?).map_err(upstream_err)?;
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    Ok(tags)
}

#[cfg(test)]
mod tests {
    #[test]
    fn challenges() {
        let p = super::challenge_params(
            "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/busybox:pull\"",
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
    }
}
