//! The HTTP edge: a request becomes a typed [`Route`] (name and reference validated), is
//! authorised for the scope it needs, and is answered by `blobs.rs` or `manifests.rs`.
//! Every error is a [`RegistryError`], turned into the spec's JSON body here and only here.

mod blobs;
mod manifests;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::auth::{Action, Scope};
use crate::digest::{Digest, DigestParseError};
use crate::error::{RegistryError, Result};
use crate::names;
use crate::registry::Registry;

/// What a `/v2/...` request addresses, parsed before anything else runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags { name: String },
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, id: String },
    Referrers { name: String, digest: String },
}

impl Route {
    /// `None` for a path that is no registry endpoint at all (a plain 404).
    pub fn parse(path: &str) -> Result<Option<Route>> {
        let Some(rest) = path.strip_prefix("/v2") else {
            return Ok(None);
        };
        let rest = match rest {
            "" | "/" => return Ok(Some(Route::Base)),
            r => match r.strip_prefix('/') {
                Some(r) => r,
                None => return Ok(None),
            },
        };
        if rest == "_catalog" {
            return Ok(Some(Route::Catalog));
        }
        let checked = |name: &str| -> Result<String> {
            if names::valid_name(name) {
                Ok(name.to_string())
            } else {
                Err(RegistryError::NameInvalid(name.to_string()))
            }
        };
        if let Some(name) = rest
            .strip_prefix("")
            .and_then(|r| r.strip_suffix("/tags/list"))
        {
            return Ok(Some(Route::Tags {
                name: checked(name)?,
            }));
        }
        if let Some(name) = rest
            .strip_suffix("/blobs/uploads")
            .or(rest.strip_suffix("/blobs/uploads/"))
        {
            return Ok(Some(Route::UploadStart {
                name: checked(name)?,
            }));
        }
        // The last marker wins: a reference never contains `/`, a name may contain anything.
        for (marker, kind) in [
            ("/blobs/uploads/", 0),
            ("/manifests/", 1),
            ("/blobs/", 2),
            ("/referrers/", 3),
        ] {
            if let Some(at) = rest.rfind(marker) {
                let (name, tail) = (&rest[..at], &rest[at + marker.len()..]);
                if tail.is_empty() || tail.contains('/') {
                    continue;
                }
                let name = checked(name)?;
                let tail = tail.to_string();
                return Ok(Some(match kind {
                    0 => Route::Upload { name, id: tail },
                    1 => Route::Manifest {
                        name,
                        reference: tail,
                    },
                    2 => Route::Blob { name, digest: tail },
                    _ => Route::Referrers { name, digest: tail },
                }));
            }
        }
        Ok(None)
    }

    /// The access a request of `method` on this route needs.
    pub fn scope(&self, method: &Method) -> Option<Scope> {
        let action = match *method {
            Method::GET | Method::HEAD => Action::Pull,
            Method::DELETE => Action::Delete,
            _ => Action::Push,
        };
        let name = match self {
            Route::Base => return None,
            Route::Catalog => return Some(Scope::catalog()),
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => name,
        };
        // Upload sessions are part of pushing, whatever the method.
        let action = match self {
            Route::UploadStart { .. } | Route::Upload { .. } => Action::Push,
            _ => action,
        };
        Some(Scope::repository(name, action))
    }
}

/// A digest from a URL or query: malformed is `DIGEST_INVALID`, an unknown algorithm too
/// (the conformance suite wants 400 for both).
pub fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| match e {
        DigestParseError::Malformed => {
            RegistryError::DigestInvalid(format!("{s:?} is not a digest"))
        }
        DigestParseError::UnknownAlgorithm(a) => {
            RegistryError::DigestInvalid(format!("digest algorithm {a:?} is not supported"))
        }
    })
}

/// The query string as pairs (decoded).
pub fn query(req_uri: &http::Uri) -> Vec<(String, String)> {
    req_uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Sets a header from a string we built (always valid header text).
pub fn set(resp: &mut Response, name: &'static str, value: impl AsRef<str>) {
    if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
        resp.headers_mut().insert(name, v);
    }
}

pub fn empty(status: StatusCode) -> Response {
    let mut r = (status, Body::empty()).into_response();
    set(&mut r, "content-length", "0");
    r
}

/// Runs a blocking storage call off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The one handler: every request comes here.
pub async fn handle(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut response = match route(&reg, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    set(
        &mut response,
        "docker-distribution-api-version",
        "registry/2.0",
    );
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    reg.metrics.request(&method, status, elapsed);
    tracing::info!(%method, %path, status, elapsed_ms = elapsed.as_millis() as u64, "request");
    response
}

async fn route(reg: &Arc<Registry>, req: Request) -> Result<Response> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => return Ok(reg.metrics_response().await),
        (&Method::GET, "/healthz") | (&Method::HEAD, "/healthz") => {
            return Ok(reg.health().await);
        }
        (&Method::GET, "/token") if reg.auth.issues_tokens() => {
            let token = reg.auth.issue(req.headers(), &query(req.uri()))?;
            return Ok((StatusCode::OK, axum::Json(token)).into_response());
        }
        _ => {}
    }
    let route = match Route::parse(&path) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(empty(StatusCode::NOT_FOUND)),
        // Name errors after authentication, so they do not tell strangers what exists.
        Err(e) => {
            reg.auth.check(req.headers(), None).await?;
            return Err(e);
        }
    };
    let scope = route.scope(req.method());
    reg.auth.check(req.headers(), scope.as_ref()).await?;
    let method = req.method().clone();
    let writes = !matches!(method, Method::GET | Method::HEAD);
    if writes && route != Route::Base {
        if reg.config.read_only {
            return Err(RegistryError::Unsupported(
                "this registry is read-only".to_string(),
            ));
        }
        if reg.proxy.is_some() {
            return Err(RegistryError::Unsupported(
                "this registry is a pull-through cache: push to its upstream".to_string(),
            ));
        }
    }
    // Upload requests beyond the configured number wait outside: 429 and a hint when to retry.
    let _slot = match (&route, &reg.upload_slots) {
        (Route::UploadStart { .. } | Route::Upload { .. }, Some(slots)) if writes => {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    return Err(RegistryError::TooManyRequests(
                        "too many uploads in progress".into(),
                    ));
                }
            }
        }
        _ => None,
    };
    match route {
        Route::Base => Ok(match method {
            Method::GET | Method::HEAD => {
                let mut r = (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response();
                if method == Method::HEAD {
                    *r.body_mut() = Body::empty();
                }
                r
            }
            _ => empty(StatusCode::METHOD_NOT_ALLOWED),
        }),
        Route::Catalog => manifests::catalog(reg, req.uri()).await,
        Route::Tags { name } => manifests::tags(reg, &name, req.uri()).await,
        Route::Referrers { name, digest } => {
            manifests::referrers(reg, &name, &digest, req.uri()).await
        }
        Route::Manifest { name, reference } => match method {
            Method::GET | Method::HEAD => {
                manifests::get(reg, &name, &reference, method == Method::HEAD).await
            }
            Method::PUT => manifests::put(reg, &name, &reference, req).await,
            Method::DELETE => manifests::delete(reg, &name, &reference).await,
            _ => Ok(empty(StatusCode::METHOD_NOT_ALLOWED)),
        },
        Route::Blob { name, digest } => match method {
            Method::GET | Method::HEAD => {
                blobs::get(reg, &name, &digest, req.headers(), method == Method::HEAD).await
            }
            Method::DELETE => blobs::delete(reg, &name, &digest).await,
            _ => Ok(empty(StatusCode::METHOD_NOT_ALLOWED)),
        },
        Route::UploadStart { name } => match method {
            Method::POST => blobs::start_upload(reg, &name, req).await,
            _ => Ok(empty(StatusCode::METHOD_NOT_ALLOWED)),
        },
        Route::Upload { name, id } => match method {
            Method::GET => blobs::upload_status(reg, &name, &id).await,
            Method::PATCH => blobs::patch_upload(reg, &name, &id, req).await,
            Method::PUT => blobs::put_upload(reg, &name, &id, req).await,
            Method::DELETE => blobs::cancel_upload(reg, &name, &id).await,
            _ => Ok(empty(StatusCode::METHOD_NOT_ALLOWED)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |p: &str| Route::parse(p).unwrap();
        assert_eq!(r("/v2/"), Some(Route::Base));
        assert_eq!(r("/v2"), Some(Route::Base));
        assert_eq!(r("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(
            r("/v2/a/b/manifests/latest"),
            Some(Route::Manifest {
                name: "a/b".into(),
                reference: "latest".into()
            })
        );
        assert_eq!(
            r("/v2/a/manifests/b/manifests/x"),
            Some(Route::Manifest {
                name: "a/manifests/b".into(),
                reference: "x".into()
            })
        );
        assert_eq!(
            r("/v2/a/blobs/uploads/"),
            Some(Route::UploadStart { name: "a".into() })
        );
        assert_eq!(
            r("/v2/a/blobs/uploads/abc"),
            Some(Route::Upload {
                name: "a".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            r("/v2/a/blobs/sha256:x"),
            Some(Route::Blob {
                name: "a".into(),
                digest: "sha256:x".into()
            })
        );
        assert_eq!(r("/v2/a/tags/list"), Some(Route::Tags { name: "a".into() }));
        assert_eq!(r("/other"), None);
        assert!(matches!(
            Route::parse("/v2/../etc/manifests/x"),
            Err(RegistryError::NameInvalid(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a/%2e%2e/blobs/sha256:x"),
            Err(RegistryError::NameInvalid(_))
        ));
    }
}

#[cfg(test)]
mod tests_protocol;
