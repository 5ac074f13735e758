//! The Engine API router. A middleware wrapped around the routes strips the `/v1.NN` prefix
//! (so routing sees the bare path), checks the version, records it in the request's extensions
//! and stamps Docker's headers on every response.

mod body;
mod build;
mod container_fs;
mod container_stats;
mod containers;
mod distribution;
mod events;
mod exec;
mod hijack;
mod images;
mod networks;
mod push;
mod swarm;
mod swarm_networks;
mod system;
mod volumes;

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::version::split_version_prefix;
use berth_api::{ApiError, ApiVersion, ErrorKind, Filters, MAX_API_VERSION};
use bytes::Bytes;
use tower::Layer;

use crate::imagestore::ImageError;
use crate::state::AppState;

/// Builds the whole API service for a daemon.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/system/df", get(system::disk_usage))
        .route("/events", get(events::events))
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/prune", post(containers::prune))
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::remove),
        )
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/changes", get(container_fs::changes))
        .route("/containers/{id}/export", get(container_fs::export))
        .route(
            "/containers/{id}/archive",
            get(container_fs::archive_get)
                .head(container_fs::archive_head)
                .put(container_fs::archive_put),
        )
        .route("/commit", post(container_fs::commit))
        .route("/containers/{id}/stats", get(container_stats::stats))
        .route("/containers/{id}/update", post(container_stats::update))
        .route(
            "/containers/{id}/{action}",
            post(containers::post_action).delete(containers::remove_link),
        )
        .route("/exec/{id}/json", get(containers::exec_inspect))
        .route("/exec/{id}/{action}", post(exec::exec_post))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/networks", get(networks::list))
        .route("/networks/", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/images/json", get(images::list))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/create", post(distribution::create))
        .route("/images/prune", post(images::prune))
        .route("/distribution/{*rest}", get(distribution::inspect))
        .route("/auth", post(distribution::auth))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::delete),
        )
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/build/cancel", post(build::cancel))
        .merge(swarm::routes(state.clone()))
        .fallback(page_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::disk_reserve::around_freeing,
        ))
        .with_state(state);
    Router::new().fallback_service(from_fn(api_version).layer(routes))
}

/// The API version a request was made with (the newest when its path had no prefix).
#[derive(Debug, Clone, Copy)]
pub struct RequestVersion(pub ApiVersion);

async fn api_version(mut req: Request, next: Next) -> Response {
    let mut response = match strip_version(&mut req) {
        Ok(()) => json_error_body(next.run(req).await).await,
        Err(e) => Error(e).into_response(),
    };
    stamp_headers(response.headers_mut());
    response
}

/// Docker's errors are always `{"message": ...}`; a rejection produced below the handlers
/// (axum's extractors, a layer) comes as plain text and is rewrapped here.
async fn json_error_body(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 << 10).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    json_response(status, &berth_api::error::ErrorResponse { message })
}

/// Rewrites `/v1.41/images/json?x` to `/images/json?x` and records the version.
fn strip_version(req: &mut Request) -> Result<(), ApiError> {
    let uri = req.uri().clone();
    let (prefix, rest) = split_version_prefix(uri.path());
    let version = match prefix {
        None => MAX_API_VERSION,
        Some(text) => {
            let asked = ApiVersion::parse(text)
                .ok_or_else(|| ApiError::invalid(format!("invalid API version: {text}")))?;
            match asked.check_supported() {
                Ok(version) => version,
                // skopeo's `docker-daemon:` transport pins API 1.22 for its image load, whose
                // wire format has not changed since 1.17: served as the oldest supported.
                Err(_)
                    if rest == "/images/load"
                        && asked.at_least(1, 17)
                        && asked < berth_api::MIN_API_VERSION =>
                {
                    berth_api::MIN_API_VERSION
                }
                Err(e) => return Err(e),
            }
        }
    };
    if prefix.is_some() {
        let path_and_query = match uri.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        let mut parts = uri.into_parts();
        parts.path_and_query = Some(
            path_and_query
                .parse()
                .map_err(|_| ApiError::invalid("invalid request path"))?,
        );
        *req.uri_mut() =
            Uri::from_parts(parts).map_err(|_| ApiError::invalid("invalid request path"))?;
    }
    req.extensions_mut().insert(RequestVersion(version));
    Ok(())
}

fn stamp_headers(headers: &mut axum::http::HeaderMap) {
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(headers, "api-version", "1.51");
    set(headers, "docker-experimental", "false");
    set(headers, "ostype", "linux");
    headers.insert(
        header::SERVER,
        HeaderValue::from_static(crate::SERVER_HEADER),
    );
}

async fn page_not_found() -> Error {
    Error(ApiError::not_found("page not found"))
}

async fn method_not_allowed() -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &ApiError::invalid("method not allowed").body(),
    )
}

/// An API error response: Docker's status code and `{"message": ...}`.
#[derive(Debug)]
pub struct Error(pub ApiError);

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.kind.status_code())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(error = %self.0.message, "request failed");
        }
        json_response(status, &self.0.body())
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error(e)
    }
}

impl From<ImageError> for Error {
    fn from(e: ImageError) -> Self {
        Error(image_error(&e))
    }
}

pub(crate) fn image_error(e: &ImageError) -> ApiError {
    ApiError::new(e.kind(), e.to_string())
}

/// A registry error's message as Docker words it (a build's FROM pull shows it in-band).
pub(crate) fn registry_error_message(e: &berth_registry::client::RegistryError) -> String {
    distribution::registry_error(e).message
}

/// The BuildCache rows of `/system/df`.
pub(crate) fn build_cache_usage(state: &AppState) -> Vec<serde_json::Value> {
    build::usage(state)
}

/// A blocking task that panicked or was cancelled.
pub(crate) fn join_error(e: tokio::task::JoinError) -> Error {
    Error(ApiError::new(
        ErrorKind::Internal,
        format!("internal error: {e}"),
    ))
}

/// Serializes a body as JSON with the given status.
pub(crate) fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            Bytes::from(bytes),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// 200 with an empty body (dockerd's answer to `/swarm/leave`, `/services/{id}` DELETE...).
pub(crate) fn empty_ok() -> Response {
    StatusCode::OK.into_response()
}

/// 204 with no body.
pub(crate) fn no_content_response() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) fn ok_json<T: serde::Serialize>(value: &T) -> Response {
    json_response(StatusCode::OK, value)
}

/// A streaming body fed by a channel (progress messages, exported tars, events).
pub(crate) fn channel_body(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    Body::from_stream(stream)
}

/// Docker's query strings: repeated keys (`names=a&names=b`), `1`/`true` booleans and the JSON
/// `filters` parameter.
#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty value for `key`.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every value given for `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn bool(&self, key: &str, default: bool) -> bool {
        self.get(key).map_or(default, berth_api::parse_bool)
    }

    pub fn filters(&self) -> Result<Filters, ApiError> {
        Filters::parse(self.get("filters").unwrap_or_default())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Query::parse(parts.uri.query()))
    }
}

#[cfg(test)]
mod tests;
