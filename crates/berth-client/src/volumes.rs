//! Volume endpoints.

use berth_api::models::{Volume, VolumeCreateOptions, VolumeListResponse, VolumePruneResponse};
use bytes::Bytes;
use http::Method;

use crate::containers::json_body;
use crate::query::encode_path;
use crate::{Body, Client, Filters, Query, Result};

impl Client {
    /// `GET /volumes`.
    pub async fn volumes_list(&self, filters: &Filters) -> Result<VolumeListResponse> {
        let mut query = Query::new();
        query.filters(filters);
        self.request_json(Method::GET, "/volumes", &query, Body::Empty, "volume list")
            .await
    }

    /// `POST /volumes/create`.
    pub async fn volume_create(&self, options: &VolumeCreateOptions) -> Result<Volume> {
        self.request_json(
            Method::POST,
            "/volumes/create",
            &Query::new(),
            json_body(options)?,
            "volume create",
        )
        .await
    }

    /// `GET /volumes/{name}` as the daemon sent it (for `inspect --format`).
    pub async fn volume_inspect_bytes(&self, name: &str) -> Result<Bytes> {
        let path = format!("/volumes/{}", encode_path(name));
        self.request_bytes(Method::GET, &path, &Query::new(), Body::Empty)
            .await
    }

    /// `DELETE /volumes/{name}?force=`.
    pub async fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let path = format!("/volumes/{}", encode_path(name));
        let mut query = Query::new();
        query.flag("force", force);
        self.request_bytes(Method::DELETE, &path, &query, Body::Empty)
            .await?;
        Ok(())
    }

    /// `POST /volumes/prune`.
    pub async fn volumes_prune(&self, filters: &Filters) -> Result<VolumePruneResponse> {
        let mut query = Query::new();
        query.filters(filters);
        self.request_json(
            Method::POST,
            "/volumes/prune",
            &query,
            Body::Empty,
            "volume prune",
        )
        .await
    }
}
