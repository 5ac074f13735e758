//! Manifest endpoints (GET/HEAD/PUT/DELETE by tag or digest) and content discovery: tags
//! list and catalog with `n`/`last` pagination, and the referrers API.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::{blocking, empty, header_str, parse_digest, query, query_get, set};
use crate::error::{RegistryError, Result};
use crate::manifest::OCI_INDEX;
use crate::names;
use crate::registry::Registry;

fn check_reference(reference: &str) -> Result<()> {
    if reference.contains(':') {
        parse_digest(reference).map(|_| ())
    } else if names::valid_tag(reference) {
        Ok(())
    } else {
        Err(RegistryError::TagInvalid(reference.to_string()))
    }
}

pub async fn get(reg: &Arc<Registry>, name: &str, reference: &str, head: bool) -> Result<Response> {
    check_reference(reference)?;
    let (s, n, r) = (reg.store.clone(), name.to_string(), reference.to_string());
    let m = match blocking(move || s.get_manifest(&n, &r)).await {
        Err(RegistryError::ManifestUnknown { .. }) if reg.proxy.is_some() => {
            crate::proxy::manifest(reg, name, reference).await?
        }
        Ok(m) if reg.proxy.is_some() && !reference.contains(':') => {
            // A tag in a cache may have moved upstream: refresh it when its age says so.
            crate::proxy::refresh_tag(reg, name, reference, m).await?
        }
        other => other?,
    };
    let len = m.bytes.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(m.bytes)
    };
    reg.metrics.sent(if head { 0 } else { len as u64 });
    let mut r = (StatusCode::OK, body).into_response();
    set(&mut r, "content-type", &m.media_type);
    set(&mut r, "content-length", len.to_string());
    set(&mut r, "docker-content-digest", m.digest.to_string());
    set(&mut r, "etag", format!("\"{}\"", m.digest));
    Ok(r)
}

pub async fn put(
    reg: &Arc<Registry>,
    name: &str,
    reference: &str,
    req: Request,
) -> Result<Response> {
    check_reference(reference)?;
    // `?tag=` on a push by digest: tags set in the same request (OCI 1.1, end-7b).
    let extra_tags: Vec<String> = query(req.uri())
        .into_iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v)
        .collect();
    for t in &extra_tags {
        if !names::valid_tag(t) {
            return Err(RegistryError::TagInvalid(t.clone()));
        }
    }
    let limit = reg.config.max_manifest_bytes;
    if let Some(n) = header_str(req.headers(), "content-length").and_then(|n| n.parse::<u64>().ok())
        && n > limit
    {
        return Err(RegistryError::ManifestTooBig { size: n, limit });
    }
    let content_type = header_str(req.headers(), "content-type").map(str::to_string);
    let bytes = axum::body::to_bytes(req.into_body(), limit as usize)
        .await
        .map_err(|_| RegistryError::ManifestTooBig {
            size: limit + 1,
            limit,
        })?;
    reg.metrics.received(bytes.len() as u64);
    reg.check_quota(name, bytes.len() as u64).await?;
    let (s, n, r, b) = (
        reg.store.clone(),
        name.to_string(),
        reference.to_string(),
        bytes.clone(),
    );
    let tags = extra_tags.clone();
    let (digest, parsed) = blocking(move || {
        let (digest, parsed) = s.put_manifest(&n, &r, content_type.as_deref(), &b)?;
        for t in &tags {
            s.set_tag(&n, t, &digest)?;
        }
        Ok::<_, RegistryError>((digest, parsed))
    })
    .await?;
    reg.quota_add(name, bytes.len() as u64);
    let mut resp = empty(StatusCode::CREATED);
    set(
        &mut resp,
        "location",
        format!("/v2/{name}/manifests/{digest}"),
    );
    set(&mut resp, "docker-content-digest", digest.to_string());
    for t in &extra_tags {
        if let Ok(v) = http::HeaderValue::from_str(t) {
            resp.headers_mut().append("oci-tag", v);
        }
    }
    if let Some(subject) = parsed.subject {
        set(&mut resp, "oci-subject", subject.to_string());
    }
    tracing::info!(repository = %name, reference, %digest, "manifest pushed");
    Ok(resp)
}

pub async fn delete(reg: &Arc<Registry>, name: &str, reference: &str) -> Result<Response> {
    if !reg.config.delete_enabled {
        return Err(RegistryError::Unsupported("deletes are disabled".into()));
    }
    check_reference(reference)?;
    let (s, n, r) = (reg.store.clone(), name.to_string(), reference.to_string());
    blocking(move || s.delete_manifest(&n, &r)).await?;
    reg.quota_forget(name);
    Ok(empty(StatusCode::ACCEPTED))
}

/// The `n`/`last` window of a sorted list, and whether more follow.
fn paginate(all: Vec<String>, q: &[(String, String)]) -> Result<(Vec<String>, Option<usize>)> {
    let last = query_get(q, "last");
    let n = match query_get(q, "n") {
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| RegistryError::Unsupported(format!("n={n:?} is not a number")))?,
        ),
        None => None,
    };
    let mut items: Vec<String> = match last {
        Some(l) => all.into_iter().filter(|t| t.as_str() > l).collect(),
        None => all,
    };
    let more = match n {
        Some(n) if items.len() > n => {
            items.truncate(n);
            Some(n)
        }
        _ => None,
    };
    Ok((items, more))
}

fn paged_response(body: serde_json::Value, next: Option<(String, usize, &str)>) -> Response {
    let mut r = (StatusCode::OK, axum::Json(body)).into_response();
    if let Some((path, n, last)) = next {
        let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
        set(
            &mut r,
            "link",
            format!("<{path}?n={n}&last={last}>; rel=\"next\""),
        );
    }
    r
}

pub async fn tags(reg: &Arc<Registry>, name: &str, uri: &http::Uri) -> Result<Response> {
    let (s, n) = (reg.store.clone(), name.to_string());
    let all = match blocking(move || s.tags(&n)).await {
        Err(RegistryError::NameUnknown(_)) if reg.proxy.is_some() => {
            crate::proxy::tags(reg, name).await?
        }
        other => other?,
    };
    let (items, more) = paginate(all, &query(uri))?;
    let next = more.map(|n| {
        (
            format!("/v2/{name}/tags/list"),
            n,
            items.last().map(String::as_str).unwrap_or(""),
        )
    });
    Ok(paged_response(
        serde_json::json!({ "name": name, "tags": items }),
        next,
    ))
}

pub async fn catalog(reg: &Arc<Registry>, uri: &http::Uri) -> Result<Response> {
    let s = reg.store.clone();
    let all = blocking(move || s.catalog()).await?;
    let (items, more) = paginate(all, &query(uri))?;
    let next = more.map(|n| {
        (
            "/v2/_catalog".to_string(),
            n,
            items.last().map(String::as_str).unwrap_or(""),
        )
    });
    Ok(paged_response(
        serde_json::json!({ "repositories": items }),
        next,
    ))
}

pub async fn referrers(
    reg: &Arc<Registry>,
    name: &str,
    digest: &str,
    uri: &http::Uri,
) -> Result<Response> {
    let subject = parse_digest(digest)?;
    let q = query(uri);
    let artifact_type = query_get(&q, "artifactType").map(str::to_string);
    let (s, n, a) = (reg.store.clone(), name.to_string(), artifact_type.clone());
    let list = blocking(move || s.referrers(&n, &subject, a.as_deref())).await?;
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": list,
    });
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    set(&mut r, "content-type", OCI_INDEX);
    if artifact_type.is_some() {
        set(&mut r, "oci-filters-applied", "artifactType");
    }
    Ok(r)
}
