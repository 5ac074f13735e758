//! Registry endpoints: `POST /images/create?fromImage=` (pull). The registry protocol lives in
//! berth-registry; this module turns its progress into Docker's JSON stream and its errors
//! into Docker's statuses.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use berth_api::models::{JsonMessage, ProgressDetail};
use berth_api::{ApiError, ErrorKind};
use berth_registry::client::{
    Credentials, OciRemote, Platform, PullEvent, RegistryError, Remote, inspect_remote,
    pull_all_tags, pull_image,
};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::images::{image_event, json_stream_response, progress_bar};
use super::{Error, Query, Result, image_error, ok_json};
use crate::imagestore::Reference;
use crate::state::AppState;

/// `POST /images/create`: a pull with `fromImage`, an import otherwise.
pub async fn create(
    state: State<AppState>,
    query: Query,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    match query.non_empty("fromImage") {
        Some(image) => {
            let image = image.to_string();
            let credentials = registry_auth(&headers)?;
            pull(state.0, &query, &image, credentials).await
        }
        None => super::images::create(state, query, body).await,
    }
}

/// Docker's `AuthConfig`: the `POST /auth` body, and base64url JSON in `X-Registry-Auth`.
#[derive(serde::Deserialize, Default)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// `base64(username:password)`, as config.json stores it.
    #[serde(default)]
    auth: String,
    #[serde(default)]
    registrytoken: String,
    /// A refresh token an earlier login obtained (what the docker CLI keeps instead of the
    /// password when the registry gave one).
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    serveraddress: String,
}

impl AuthConfig {
    fn credentials(self) -> Credentials {
        use base64::Engine as _;
        if !self.registrytoken.is_empty() {
            return Credentials::Bearer(self.registrytoken);
        }
        if !self.identitytoken.is_empty() {
            return Credentials::Identity {
                username: self.username,
                token: self.identitytoken,
            };
        }
        let (username, password) = if self.username.is_empty() && !self.auth.is_empty() {
            let pair = base64::engine::general_purpose::STANDARD
                .decode(&self.auth)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let (u, p) = pair.split_once(':').unwrap_or_default();
            (u.to_string(), p.to_string())
        } else {
            (self.username, self.password)
        };
        if username.is_empty() {
            Credentials::Anonymous
        } else {
            Credentials::Basic { username, password }
        }
    }
}

/// The credentials of `X-Registry-Auth` (older clients use the standard base64 alphabet;
/// padding either way). Absent or empty is anonymous.
pub(crate) fn registry_auth(headers: &HeaderMap) -> Result<Credentials> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let Some(value) = headers.get("x-registry-auth") else {
        return Ok(Credentials::Anonymous);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(Credentials::Anonymous);
    }
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let bytes = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::STANDARD, config).decode(text))
        .map_err(|_| ApiError::invalid("invalid X-Registry-Auth header: not base64"))?;
    let auth: AuthConfig = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("invalid X-Registry-Auth header: {e}")))?;
    Ok(auth.credentials())
}

/// `X-Registry-Config` (a build's credentials): base64 JSON of server address → auth config,
/// keyed here by registry host. Unreadable headers count as none (the build may not pull).
pub(crate) fn registry_config_credentials(
    headers: &HeaderMap,
) -> std::collections::HashMap<String, Credentials> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let Some(text) = headers
        .get("x-registry-config")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Default::default();
    };
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let bytes = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::STANDARD, config).decode(text))
        .unwrap_or_default();
    let map: std::collections::HashMap<String, AuthConfig> =
        serde_json::from_slice(&bytes).unwrap_or_default();
    map.into_iter()
        .map(|(server, auth)| (registry_host(&server), auth.credentials()))
        .collect()
}

/// `https://index.docker.io/v1/`, `http://reg:5000/`, `reg:5000` → the registry's `host[:port]`.
fn registry_host(server_address: &str) -> String {
    let rest = server_address
        .strip_prefix("https://")
        .or_else(|| server_address.strip_prefix("http://"))
        .unwrap_or(server_address);
    let host = rest.split('/').next().unwrap_or_default();
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// `POST /auth`: checks credentials with the registry (what `docker login` asks the daemon).
/// Where the registry's token service gives a refresh token, it is the `IdentityToken` the
/// client keeps instead of the password (as dockerd answers).
pub async fn auth(State(state): State<AppState>, body: Bytes) -> Result<Response> {
    let config: AuthConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid auth configuration: {e}")))?;
    let registry = registry_host(&config.serveraddress);
    let remote = OciRemote::new(state.config.registry.remote_options())
        .with_credentials(config.credentials());
    let identity_token = remote
        .check_login(&registry)
        .await
        .map_err(|e| Error(registry_error(&e)))?;
    Ok(ok_json(&serde_json::json!({
        "Status": "Login Succeeded",
        "IdentityToken": identity_token,
    })))
}

/// Docker's status for a registry error.
pub(super) fn registry_error(e: &RegistryError) -> ApiError {
    match e {
        RegistryError::NotFound(m) => ApiError::new(ErrorKind::NotFound, m.clone()),
        RegistryError::Unauthorized(m) => ApiError::new(ErrorKind::Unauthorized, m.clone()),
        RegistryError::Invalid(m) => ApiError::invalid(m.clone()),
        RegistryError::Transport(m) => ApiError::internal(m.clone()),
        RegistryError::Store(e) => image_error(e),
    }
}

/// `fromImage` and `tag` as one reference: the docker CLI sends `fromImage=busybox&tag=1.36`,
/// or the digest in `tag` for a pull by digest; `fromImage` may carry either itself. A name
/// with neither means every tag of the repository (dockerd's rule; `docker pull --all-tags`).
fn pull_reference(from_image: &str, tag: Option<&str>) -> Result<Reference> {
    let text = match tag {
        Some(t) if t.starts_with("sha256:") => format!("{from_image}@{t}"),
        Some(t) => format!("{from_image}:{t}"),
        None => from_image.to_string(),
    };
    Ok(Reference::parse_normalized(&text)?)
}

pub(super) fn message_of(event: PullEvent) -> JsonMessage {
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

/// What a pull fetches: the image a tag or digest names (its top manifest already fetched),
/// or every tag of a repository.
enum Target {
    One(berth_registry::client::Manifest),
    AllTags(Vec<String>),
}

async fn pull(
    state: AppState,
    query: &Query,
    from_image: &str,
    credentials: Credentials,
) -> Result<Response> {
    let reference = pull_reference(from_image, query.non_empty("tag"))?;
    let all_tags = reference.tag().is_none() && reference.digest().is_none();
    let platform = match query.non_empty("platform") {
        Some(p) => Platform::parse(p).map_err(|e| Error(registry_error(&e)))?,
        None => Platform::host(),
    };
    let remote = Arc::new(
        OciRemote::new(state.config.registry.remote_options()).with_credentials(credentials),
    );
    // The top-level manifest is fetched before the response starts, so that an unknown
    // repository or tag, or an unreachable registry, is an HTTP error as Docker's is; what
    // goes wrong after `Pulling from` (no manifest for the platform, schema 1, a layer)
    // travels in the stream, as in moby's pullTag.
    let target = if all_tags {
        Target::AllTags(
            remote
                .list_tags(&reference)
                .await
                .map_err(|e| Error(registry_error(&e)))?,
        )
    } else {
        Target::One(
            remote
                .fetch_manifest(&reference)
                .await
                .map_err(|e| Error(registry_error(&e)))?,
        )
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let handle = tokio::runtime::Handle::current();
    let options = state.config.registry.pull_options(&state.config.data_root);
    tokio::task::spawn_blocking(move || {
        let send = |message: &JsonMessage| {
            let mut line = serde_json::to_vec(message).unwrap_or_default();
            line.push(b'\n');
            // A client that went away does not stop the pull: it finishes (or fails) and
            // cleans up as if the client were there.
            let _ = tx.blocking_send(Bytes::from(line));
        };
        let events = |event: PullEvent| send(&message_of(event));
        let result = match target {
            Target::One(top) => pull_image(
                remote.as_ref(),
                &handle,
                &state.images,
                &reference,
                top,
                &platform,
                &options,
                &events,
            )
            .map(|outcome| vec![outcome]),
            Target::AllTags(tags) => pull_all_tags(
                remote.as_ref(),
                &handle,
                &state.images,
                &reference,
                &tags,
                &platform,
                &options,
                &events,
            ),
        };
        match result {
            Ok(outcomes) => {
                // One event for the reference asked (dockerd's), with the labels of the image
                // it named (the last one of a repository's tags).
                let name = reference.familiar_string();
                let labels = outcomes
                    .last()
                    .map(|o| o.image.config.labels())
                    .unwrap_or_default();
                image_event(&state, "pull", &name, &labels, &name);
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
pub async fn inspect(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
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
    let remote = OciRemote::new(state.config.registry.remote_options())
        .with_credentials(registry_auth(&headers)?);
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
    fn credentials_from_x_registry_auth() {
        use base64::Engine as _;
        let header = |json: &str, engine: &base64::engine::GeneralPurpose| {
            let mut h = HeaderMap::new();
            h.insert("x-registry-auth", engine.encode(json).parse().unwrap());
            registry_auth(&h).unwrap()
        };
        let url = base64::engine::general_purpose::URL_SAFE;
        let std = base64::engine::general_purpose::STANDARD_NO_PAD;
        assert!(matches!(
            header(r#"{"username":"ci","password":"p?>~"}"#, &url),
            Credentials::Basic { username, password } if username == "ci" && password == "p?>~"
        ));
        assert!(matches!(
            header(r#"{"auth":"Y2k6czNjcmV0"}"#, &std),
            Credentials::Basic { username, password } if username == "ci" && password == "s3cret"
        ));
        assert!(matches!(
            header(r#"{"registrytoken":"tok"}"#, &url),
            Credentials::Bearer(t) if t == "tok"
        ));
        assert!(matches!(
            header(r#"{"username":"ci","identitytoken":"rt"}"#, &url),
            Credentials::Identity { username, token } if username == "ci" && token == "rt"
        ));
        assert!(matches!(header("{}", &url), Credentials::Anonymous));
        assert!(matches!(
            registry_auth(&HeaderMap::new()).unwrap(),
            Credentials::Anonymous
        ));
        let mut bad = HeaderMap::new();
        bad.insert("x-registry-auth", "%%%".parse().unwrap());
        assert!(registry_auth(&bad).is_err());
    }

    #[test]
    fn registry_hosts_of_server_addresses() {
        assert_eq!(registry_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_host(""), "docker.io");
        assert_eq!(registry_host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn references_from_the_query() {
        let r = |i, t| pull_reference(i, t).unwrap().to_string();
        // Every tag (the docker CLI sends `tag=latest` for a plain `docker pull busybox`).
        assert_eq!(r("busybox", None), "docker.io/library/busybox");
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
