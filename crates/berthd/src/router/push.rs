//! `POST /images/{name}/push?tag=`: pushes one tag (or, without a tag, every tag of the
//! repository) with `X-Registry-Auth`, streaming dockerd's JSON progress. As in dockerd, the
//! response starts at once and every failure (no such local image, a refusal from the
//! registry) arrives as the stream's error message.

use axum::http::HeaderMap;
use axum::response::Response;
use berth_api::models::JsonMessage;
use berth_registry::push::{PushEvent, PushOptions, push};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::distribution::{message_of, registry_auth, registry_error};
use super::images::{image_event, json_stream_response};
use super::{Query, Result};
use crate::imagestore::Reference;
use crate::state::AppState;

/// The reference a push names: `name` from the path and `tag` from the query (a tag in the
/// name itself is taken when the query has none).
fn push_reference(name: &str, tag: Option<&str>) -> Result<Reference> {
    let parsed = Reference::parse_normalized(name)?;
    Ok(match tag {
        Some(t) => parsed.repository().with_tag(t),
        None => parsed,
    })
}

pub(super) async fn push_image(
    state: AppState,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response> {
    let reference = push_reference(name, query.non_empty("tag"))?;
    let credentials = registry_auth(headers)?;
    let options = PushOptions {
        remote: state.config.registry.remote_options(),
        max_concurrent_uploads: state.config.registry.max_concurrent_uploads,
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let send = |message: &JsonMessage| {
            let mut line = serde_json::to_vec(message).unwrap_or_default();
            line.push(b'\n');
            // A client that went away does not stop the push.
            let _ = tx.blocking_send(Bytes::from(line));
        };
        let events = |event: PushEvent| match event {
            PushEvent::Status(e) => send(&message_of(e)),
            PushEvent::Pushed { tag, digest, size } => send(&JsonMessage {
                progress_detail: Some(Default::default()),
                aux: Some(serde_json::json!({
                    "Tag": tag,
                    "Digest": digest.to_string(),
                    "Size": size,
                })),
                ..Default::default()
            }),
        };
        match push(
            &state.images,
            &handle,
            &reference,
            credentials,
            &options,
            &events,
        ) {
            Ok(()) => {
                let name = reference.familiar_string();
                let labels = state
                    .images
                    .get(&reference.to_string())
                    .map(|i| i.config.labels())
                    .unwrap_or_default();
                image_event(&state, "push", &name, &labels, &name);
            }
            Err(e) => {
                tracing::info!(error = %e, image = %reference, "push failed");
                send(&JsonMessage::error(registry_error(&e).message));
            }
        }
    });
    Ok(json_stream_response(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_a_push() {
        let r = |n, t| push_reference(n, t).unwrap().to_string();
        assert_eq!(r("127.0.0.1:5000/a", Some("1")), "127.0.0.1:5000/a:1");
        assert_eq!(r("127.0.0.1:5000/a:2", None), "127.0.0.1:5000/a:2");
        assert_eq!(r("127.0.0.1:5000/a", None), "127.0.0.1:5000/a");
        assert_eq!(r("busybox", Some("x")), "docker.io/library/busybox:x");
    }
}
