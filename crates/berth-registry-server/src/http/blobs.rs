//! Blob endpoints: GET/HEAD (with `Range`), DELETE, and the upload session protocol
//! (POST, PATCH, PUT, GET status, DELETE; monolithic, chunked and cross-repository mount).

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{blocking, empty, header_str, parse_digest, query, query_get, set};
use crate::auth::{Action, Scope};
use crate::digest::{Algorithm, Digest};
use crate::error::{RegistryError, Result};
use crate::paths;
use crate::registry::Registry;
use crate::uploads::Session;

/// Bytes per chunk sent to a client.
const READ_CHUNK: usize = 256 * 1024;

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against a blob of `size`: the inclusive range, or
/// `None` for a header we do not understand (then the whole blob, as RFC 9110 allows).
fn parse_range(h: &str, size: u64) -> Option<Result<(u64, u64)>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let unsatisfiable = || {
        Err(RegistryError::RangeNotSatisfiable {
            range: h.to_string(),
            size,
        })
    };
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 || size == 0 {
                return Some(unsatisfiable());
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size.saturating_sub(1)),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            if b < a {
                // Not a range at all; the conformance suite expects it refused.
                return Some(unsatisfiable());
            }
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if start >= size {
        return Some(unsatisfiable());
    }
    Some(Ok((start, end)))
}

/// A body streamed from a blocking reader on its own thread.
fn stream_body(mut reader: Box<dyn Read + Send>, mut remaining: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        while remaining > 0 {
            let mut buf = vec![0u8; READ_CHUNK.min(remaining as usize)];
            match reader.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob shorter than recorded",
                    )));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    remaining -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

pub async fn get(
    reg: &Arc<Registry>,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let d = parse_digest(digest)?;
    let size = match reg.blob_size(name, &d).await {
        Err(RegistryError::BlobUnknown { .. }) if reg.proxy.is_some() => {
            return crate::proxy::blob(reg, name, &d, headers, head).await;
        }
        other => other?,
    };
    let range = match header_str(headers, "range").and_then(|h| parse_range(h, size)) {
        Some(r) => Some(r?),
        None => None,
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if head || len == 0 {
        Body::empty()
    } else {
        let (s, p) = (reg.store.clone(), paths::blob_data(&d));
        let reader = blocking(move || s.driver.reader(&p, start)).await?;
        reg.metrics.sent(len);
        stream_body(reader, len)
    };
    let mut r = (status, body).into_response();
    set(&mut r, "content-length", len.to_string());
    set(&mut r, "content-type", "application/octet-stream");
    set(&mut r, "docker-content-digest", d.to_string());
    set(&mut r, "etag", format!("\"{d}\""));
    set(&mut r, "accept-ranges", "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut r,
            "content-range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(r)
}

pub async fn delete(reg: &Arc<Registry>, name: &str, digest: &str) -> Result<Response> {
    if !reg.config.delete_enabled {
        return Err(RegistryError::Unsupported("deletes are disabled".into()));
    }
    let d = parse_digest(digest)?;
    let (s, n) = (reg.store.clone(), name.to_string());
    blocking(move || s.unlink_blob(&n, &d)).await?;
    reg.quota_forget(name);
    Ok(empty(StatusCode::ACCEPTED))
}

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// The `Range` an upload reports: `0-<last byte>`, and `0-0` when empty (distribution's,
/// which clients expect).
fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_accepted(status: StatusCode, session: &Session) -> Response {
    let mut r = empty(status);
    set(
        &mut r,
        "location",
        upload_location(&session.name, &session.id),
    );
    set(&mut r, "range", upload_range(session.size));
    set(&mut r, "docker-upload-uuid", &session.id);
    r
}

fn blob_created(name: &str, d: &Digest) -> Response {
    let mut r = empty(StatusCode::CREATED);
    set(&mut r, "location", format!("/v2/{name}/blobs/{d}"));
    set(&mut r, "docker-content-digest", d.to_string());
    r
}

/// `Content-Range: <start>-<end>` (also with a `bytes ` or `bytes=` prefix): its start.
fn content_range_start(h: &HeaderMap) -> Result<Option<u64>> {
    let Some(v) = header_str(h, "content-range") else {
        return Ok(None);
    };
    let spec = v
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' ']);
    let spec = spec.split('/').next().unwrap_or(spec);
    let parsed = spec
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((a, b)) if b >= a => Ok(Some(a)),
        _ => Err(RegistryError::RangeInvalid {
            range: v.to_string(),
            size: 0,
        }),
    }
}

pub async fn start_upload(reg: &Arc<Registry>, name: &str, req: Request) -> Result<Response> {
    let q = query(req.uri());
    if let Some(mount) = query_get(&q, "mount") {
        let d = parse_digest(mount)?;
        // Without `from`, any repository's copy will do — only on an open registry, where
        // every repository is readable anyway.
        let from = query_get(&q, "from").map(str::to_string);
        let allowed = match &from {
            Some(f) => {
                crate::names::valid_name(f)
                    && reg
                        .auth
                        .allows(req.headers(), &Scope::repository(f, Action::Pull))
                        .await
            }
            None => reg.auth.is_open(),
        };
        if allowed {
            let (s, n, dd) = (reg.store.clone(), name.to_string(), d.clone());
            let mounted = blocking(move || -> Result<bool> {
                let _commit = s.commit_guard();
                let there = match &from {
                    Some(f) => s.blob_size(f, &dd).is_ok(),
                    None => s.blob_size_anywhere(&dd).is_some(),
                };
                if !there {
                    return Ok(false);
                }
                s.link_blob(&n, &dd)?;
                Ok(true)
            })
            .await?;
            if mounted {
                reg.quota_forget(name);
                return Ok(blob_created(name, &d));
            }
        }
        // Not mountable: an ordinary session, as the spec's fallback says.
    }
    let algorithm = match query_get(&q, "digest-algorithm") {
        Some(a) => Algorithm::parse(a).ok_or_else(|| {
            RegistryError::Unsupported(format!("digest algorithm {a:?} is not supported"))
        })?,
        None => Algorithm::Sha256,
    };
    if let Some(digest) = query_get(&q, "digest") {
        // Monolithic: the whole blob in this POST.
        let d = parse_digest(digest)?;
        let id = reg.uploads.start(&reg.store, name, d.algorithm()).await?;
        let session = reg.uploads.get(&reg.store, name, &id).await?;
        let mut session = session.lock().await;
        let body = req.into_body();
        if let Err(e) = reg
            .uploads
            .append(&reg.store, &mut session, None, body)
            .await
        {
            let _ = reg.uploads.cancel(&reg.store, &session).await;
            return Err(e);
        }
        reg.metrics.received(session.size);
        finish(reg, &mut session, &d).await?;
        return Ok(blob_created(name, &d));
    }
    let id = reg.uploads.start(&reg.store, name, algorithm).await?;
    let session = reg.uploads.get(&reg.store, name, &id).await?;
    let session = session.lock().await;
    Ok(upload_accepted(StatusCode::ACCEPTED, &session))
}

async fn finish(reg: &Arc<Registry>, session: &mut Session, d: &Digest) -> Result<()> {
    if let Err(e) = reg.check_quota(&session.name, session.size).await {
        let _ = reg.uploads.cancel(&reg.store, session).await;
        return Err(e);
    }
    reg.uploads.finish(&reg.store, session, d).await?;
    reg.quota_add(&session.name, session.size);
    Ok(())
}

pub async fn upload_status(reg: &Arc<Registry>, name: &str, id: &str) -> Result<Response> {
    let session = reg.uploads.get(&reg.store, name, id).await?;
    let session = session.lock().await;
    Ok(upload_accepted(StatusCode::NO_CONTENT, &session))
}

pub async fn patch_upload(
    reg: &Arc<Registry>,
    name: &str,
    id: &str,
    req: Request,
) -> Result<Response> {
    let start = content_range_start(req.headers())?;
    let session = reg.uploads.get(&reg.store, name, id).await?;
    let mut session = session.lock().await;
    let before = session.size;
    let result = reg
        .uploads
        .append(&reg.store, &mut session, start, req.into_body())
        .await;
    reg.metrics.received(session.size - before);
    result?;
    Ok(upload_accepted(StatusCode::ACCEPTED, &session))
}

pub async fn put_upload(
    reg: &Arc<Registry>,
    name: &str,
    id: &str,
    req: Request,
) -> Result<Response> {
    let q = query(req.uri());
    let d = parse_digest(query_get(&q, "digest").ok_or_else(|| {
        RegistryError::DigestInvalid("the closing PUT of an upload needs ?digest=".into())
    })?)?;
    let start = content_range_start(req.headers())?;
    let session = reg.uploads.get(&reg.store, name, id).await?;
    let mut session = session.lock().await;
    // The final chunk may come with the PUT; an empty body appends nothing.
    {
        let before = session.size;
        let result = reg
            .uploads
            .append(&reg.store, &mut session, start, req.into_body())
            .await;
        reg.metrics.received(session.size - before);
        result?;
    }
    finish(reg, &mut session, &d).await?;
    Ok(blob_created(name, &d))
}

pub async fn cancel_upload(reg: &Arc<Registry>, name: &str, id: &str) -> Result<Response> {
    let session = reg.uploads.get(&reg.store, name, id).await?;
    let session = session.lock().await;
    reg.uploads.cancel(&reg.store, &session).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap().unwrap(), (0, 9));
        assert_eq!(parse_range("bytes=90-", 100).unwrap().unwrap(), (90, 99));
        assert_eq!(parse_range("bytes=-10", 100).unwrap().unwrap(), (90, 99));
        assert_eq!(parse_range("bytes=50-500", 100).unwrap().unwrap(), (50, 99));
        assert!(parse_range("bytes=100-", 100).unwrap().is_err());
        assert!(parse_range("items=0-1", 100).is_none());
        assert!(parse_range("bytes=5-1", 100).unwrap().is_err());
    }
}
