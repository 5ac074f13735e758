//! Image endpoints.

use std::pin::Pin;

use berth_api::models::{
    HistoryItem, ImageDeleteItem, ImageInspect, ImagePruneResponse, ImageSummary, JsonMessage,
};
use bytes::Bytes;
use futures_util::Stream;
use http::Method;

use crate::query::encode_path;
use crate::{Body, Client, Filters, Query, Result, stream};

/// A request body streamed from a file or stdin.
pub type UploadStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// `GET /images/json` parameters.
#[derive(Debug, Clone, Default)]
pub struct ImageListOptions {
    /// Include intermediate images.
    pub all: bool,
    /// Ask for `RepoDigests` (older daemons need it).
    pub digests: bool,
    pub filters: Filters,
}

/// `DELETE /images/{name}` parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageRemoveOptions {
    pub force: bool,
    pub no_prune: bool,
}

/// `POST /images/create?fromSrc=-` parameters.
#[derive(Debug, Clone, Default)]
pub struct ImageImportOptions {
    /// The repository to tag the image with (may include `:tag`).
    pub repo: String,
    pub tag: String,
    /// Dockerfile instructions applied to the config (`CMD ["sh"]`).
    pub changes: Vec<String>,
    pub message: String,
    pub platform: String,
}

impl Client {
    /// `GET /images/json`.
    pub async fn images_list(&self, options: &ImageListOptions) -> Result<Vec<ImageSummary>> {
        let mut query = Query::new();
        query
            .flag("all", options.all)
            .flag("digests", options.digests)
            .filters(&options.filters);
        self.request_json(
            Method::GET,
            "/images/json",
            &query,
            Body::Empty,
            "image list",
        )
        .await
    }

    /// `GET /images/{name}/json`, typed.
    pub async fn image_inspect(&self, name: &str) -> Result<ImageInspect> {
        let raw = self.image_inspect_raw(name).await?;
        crate::decode_value(raw, "image inspect")
    }

    /// `GET /images/{name}/json` as the daemon sent it (for `inspect --format`).
    pub async fn image_inspect_raw(&self, name: &str) -> Result<serde_json::Value> {
        let path = format!("/images/{}/json", encode_path(name));
        self.request_value(
            Method::GET,
            &path,
            &Query::new(),
            Body::Empty,
            "image inspect",
        )
        .await
    }

    /// `GET /images/{name}/json`, the exact bytes (docker's `inspect` re-indents them, keeping
    /// the daemon's key order).
    pub async fn image_inspect_bytes(&self, name: &str) -> Result<Bytes> {
        let path = format!("/images/{}/json", encode_path(name));
        self.request_bytes(Method::GET, &path, &Query::new(), Body::Empty)
            .await
    }

    /// `GET /images/{name}/history`.
    pub async fn image_history(&self, name: &str) -> Result<Vec<HistoryItem>> {
        let path = format!("/images/{}/history", encode_path(name));
        self.request_json(
            Method::GET,
            &path,
            &Query::new(),
            Body::Empty,
            "image history",
        )
        .await
    }

    /// `POST /images/{name}/tag?repo=&tag=`.
    pub async fn image_tag(&self, source: &str, repo: &str, tag: &str) -> Result<()> {
        let path = format!("/images/{}/tag", encode_path(source));
        let mut query = Query::new();
        query.push("repo", repo).non_empty("tag", tag);
        self.request(Method::POST, &path, &query, Body::Empty)
            .await?;
        Ok(())
    }

    /// `DELETE /images/{name}`.
    pub async fn image_remove(
        &self,
        name: &str,
        options: ImageRemoveOptions,
    ) -> Result<Vec<ImageDeleteItem>> {
        let path = format!("/images/{}", encode_path(name));
        let mut query = Query::new();
        query
            .flag("force", options.force)
            .flag("noprune", options.no_prune);
        self.request_json(Method::DELETE, &path, &query, Body::Empty, "image remove")
            .await
    }

    /// `POST /images/load`: uploads a docker-archive or OCI-layout tar and streams the daemon's
    /// progress messages back.
    pub async fn image_load(
        &self,
        tar: UploadStream,
        quiet: bool,
    ) -> Result<impl Stream<Item = Result<JsonMessage>> + Send + use<>> {
        let mut query = Query::new();
        query.flag("quiet", quiet);
        let body = Body::Stream {
            content_type: "application/x-tar",
            stream: tar,
        };
        let response = self
            .request(Method::POST, "/images/load", &query, body)
            .await?;
        Ok(stream::json_stream(response.into_body(), "image load"))
    }

    /// `GET /images/get?names=...`: a docker-archive tar, streamed.
    pub async fn image_save(
        &self,
        names: &[String],
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + use<>> {
        let mut query = Query::new();
        for name in names {
            query.push("names", name.clone());
        }
        let response = self
            .request(Method::GET, "/images/get", &query, Body::Empty)
            .await?;
        Ok(stream::bytes_stream(response.into_body()))
    }

    /// `POST /images/create?fromSrc=-`: imports a root filesystem tarball as an image.
    pub async fn image_import(
        &self,
        tar: UploadStream,
        options: &ImageImportOptions,
    ) -> Result<impl Stream<Item = Result<JsonMessage>> + Send + use<>> {
        let mut query = Query::new();
        query
            .push("fromSrc", "-")
            .non_empty("repo", &options.repo)
            .non_empty("tag", &options.tag)
            .non_empty("message", &options.message)
            .non_empty("platform", &options.platform);
        for change in &options.changes {
            query.push("changes", change.clone());
        }
        let body = Body::Stream {
            content_type: "application/x-tar",
            stream: tar,
        };
        let response = self
            .request(Method::POST, "/images/create", &query, body)
            .await?;
        Ok(stream::json_stream(response.into_body(), "image import"))
    }

    /// `POST /images/prune`.
    pub async fn images_prune(&self, filters: &Filters) -> Result<ImagePruneResponse> {
        let mut query = Query::new();
        query.filters(filters);
        self.request_json(
            Method::POST,
            "/images/prune",
            &query,
            Body::Empty,
            "image prune",
        )
        .await
    }
}

impl Client {
    /// `POST /images/create?fromImage=&tag=&platform=`: pulls an image, streaming progress.
    /// `registry_auth` is the `X-Registry-Auth` header's value (base64url JSON credentials).
    pub async fn image_pull(
        &self,
        image: &str,
        tag: &str,
        platform: Option<&str>,
        registry_auth: Option<&str>,
    ) -> Result<impl Stream<Item = Result<JsonMessage>> + Send + use<>> {
        let mut query = Query::new();
        query
            .push("fromImage", image)
            .non_empty("tag", tag)
            .non_empty("platform", platform.unwrap_or_default());
        let headers: Vec<(&str, &str)> = registry_auth
            .map(|auth| ("X-Registry-Auth", auth))
            .into_iter()
            .collect();
        let response = self
            .request_with_headers(
                Method::POST,
                "/images/create",
                &query,
                Body::Empty,
                &headers,
            )
            .await?;
        Ok(stream::json_stream(response.into_body(), "image pull"))
    }

    /// `POST /images/{name}/push?tag=`: pushes an image (every tag of the repository when
    /// `tag` is empty), streaming progress.
    /// `registry_auth` is the `X-Registry-Auth` header's value, as for [`Self::image_pull`].
    pub async fn image_push(
        &self,
        name: &str,
        tag: &str,
        registry_auth: Option<&str>,
    ) -> Result<impl Stream<Item = Result<JsonMessage>> + Send + use<>> {
        let mut query = Query::new();
        query.non_empty("tag", tag);
        let headers: Vec<(&str, &str)> = registry_auth
            .map(|auth| ("X-Registry-Auth", auth))
            .into_iter()
            .collect();
        let response = self
            .request_with_headers(
                Method::POST,
                &format!("/images/{name}/push"),
                &query,
                Body::Empty,
                &headers,
            )
            .await?;
        Ok(stream::json_stream(response.into_body(), "image push"))
    }
}
