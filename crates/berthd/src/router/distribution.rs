//! Registry endpoints: `POST /images/create?fromImage=` (pull). The registry protocol lives in
//! berth-registry; this module turns its progress into Docker's JSON stream and its errors
//! into Docker's statuses.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use berth_api::models::{JsonMessage, ProgressDetail};
use berth_api::{ApiError, ErrorKind};
use berth_registry::client::{
    OciRemote, Platform, PullEvent, RegistryError, Remote, inspect_remote, pull_image,
};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::images::{image_event, json_stream_response, progress_bar};
use super::{Error, Query, Result, image_error, ok_json};
use crate::imagestore::Reference;
use crate::state::AppState;

/// `POST /images/create`: a pull with `fromImage`, an import otherwise.
pub async fn create(state: State<AppState>, query: Query, body: Body) -> Result<Response> {
    match query.non_empty("fromImage") {
        Some(image) => {
            let image = image.to_string();
            pull(state.0, &query, &image).await
        }
        None => super::images::create(state, query, body).await,
    }
}

/// Docker's status for a registry error.
fn registry_error(e: &RegistryError) -> ApiError {
    match e {
        RegistryError::NotFound(m) => ApiError::new(ErrorKind::NotFound, m.clone()),
        RegistryError::Unauthorized(m) => ApiError::new(ErrorKind::Unauthorized, m.clone()),
        RegistryError::Invalid(m) => ApiError::invalid(m.clone()),
        RegistryError::Transport(m) => ApiError::internal(m.clone()),
        RegistryError::Store(e) => image_error(e),
    }
}

/// `fromImage` and `tag` as one reference: the docker CLI sends `fromImage=busybox&tag=1.36`,
/// or the digest in `tag` for a pull by digest; `fromImage` may carry either itself.
fn pull_reference(from_image: &str, tag: Option<&str>) -> Result<Reference> {
    let text = match tag {
        Some(t) if t.starts_with("sha256:") => format!("{from_image}@{t}"),
        Some(t) => format!("{from_image}:{t}"),
        None => from_image.to_string(),
    };
    let reference = Reference::parse_normalized(&text)?;
    Ok(if reference.digest().is_some() {
        reference
    } else {
        reference.with_default_tag()
    })
}

fn message_of(event: PullEvent) -> JsonMessage {
    let (progress_detail, progress) = match event.progress {
        Some((current, total)) => (
            Some(ProgressDetail {
                current: Some(current as i64),
                total: total.map(|t| t as i64),
            }),
            Some(progress_bar(current, total)),
        ),
        // Docker sends `"progressDetail":{}` with every layer status.
        None => (event.id.as_ref().map(|_| ProgressDetail::default()), None),
    };
    JsonMessage {
        status: Some(event.status),
        id: event.id,
        progress_detail,
        progress,
        ..Default::default()
    }
}

async fn pull(state: AppState, query: &Query, from_image: &str) -> Result<Response> {
    let reference = pull_reference(from_image, query.non_empty("tag"))?;
    let platform = match query.non_empty("platform") {
        Some(p) => Platform::parse(p).map_err(|e| Error(registry_error(&e)))?,
        None => Platform::host(),
    };
    let remote = Arc::new(OciRemote::new(state.config.registry.remote_options()));
    // The top-level manifest is fetched before the response starts, so that an unknown
    // repository or tag, or an unreachable registry, is an HTTP error as Docker's is; what
    // goes wrong after `Pulling from` (no manifest for the platform, schema 1, a layer)
    // travels in the stream, as in moby's pullTag.
    let top = remote
        .fetch_manifest(&reference)
        .await
        .map_err(|e| Error(registry_error(&e)))?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let handle = tokio::runtime::Handle::current();
    let max_concurrent = state.config.registry.max_concurrent_downloads;
    tokio::task::spawn_blocking(move || {
        let send = |message: &JsonMessage| {
            let mut line = serde_json::to_vec(message).unwrap_or_default();
            line.push(b'\n');
            // A client that went away does not stop the pull: it finishes (or fails) and
            // cleans up as if the client were there.
            let _ = tx.blocking_send(Bytes::from(line));
        };
        let events = |event: PullEvent| send(&message_of(event));
        let result = pull_image(
            remote.as_ref(),
            &handle,
            &state.images,
            &reference,
            top,
            &platform,
            max_concurrent,
            &events,
        );
        match result {
            Ok(outcome) => {
                let name = reference.familiar_string();
                image_event(&state, "pull", &name, &outcome.image.config.labels(), &name);
            }
            Err(e) => {
                tracing::info!(error = %e, image = %reference, "pull failed");
                send(&JsonMessage::error(registry_error(&e).message));
            }
        }
    });
    Ok(json_stream_response(rx))
}

/// `GET /distribution/{name}/json`: what a reference resolves to in its registry, and the
/// platforms it serves.
pub async fn inspect(State(state): State<AppState>, Path(rest): Path<String>) -> Result<Response> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(Error(ApiError::not_found(format!(
            "page not found: /distribution/{rest}"
        ))));
    };
    let reference = Reference::parse_normalized(name)?;
    let reference = if reference.digest().is_some() {
        reference
    } else {
        reference.with_default_tag()
    };
    let remote = OciRemote::new(state.config.registry.remote_options());
    let (descriptor, platforms) = inspect_remote(&remote, &reference)
        .await
        .map_err(|e| Error(registry_error(&e)))?;
    let platforms: Vec<serde_json::Value> = platforms
        .iter()
        .map(|p| {
            let mut v = serde_json::json!({"architecture": p.architecture, "os": p.os});
            if let Some(variant) = p.variant.as_deref().filter(|v| !v.is_empty()) {
                v["variant"] = variant.into();
            }
            v
        })
        .collect();
    Ok(ok_json(&serde_json::json!({
        "Descriptor": {
            "mediaType": descriptor.media_type,
            "digest": descriptor.digest.to_string(),
            "size": descriptor.size,
        },
        "Platforms": platforms,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_from_the_query() {
        let r = |i, t| pull_reference(i, t).unwrap().to_string();
        assert_eq!(r("busybox", None), "docker.io/library/busybox:latest");
        assert_eq!(
            r("127.0.0.1:5000/a/b", Some("1.0")),
            "127.0.0.1:5000/a/b:1.0"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            r("127.0.0.1:5000/a", Some(&d)),
            format!("127.0.0.1:5000/a@{d}")
        );
        assert_eq!(
            r(&format!("127.0.0.1:5000/a@{d}"), None),
            format!("127.0.0.1:5000/a@{d}")
        );
        assert!(pull_reference("UPPER", None).is_err());
    }
}
