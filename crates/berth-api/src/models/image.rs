//! Image endpoints: `GET /images/json`, `GET /images/{name}/json`, `GET /images/{name}/history`,
//! `DELETE /images/{name}`, `POST /images/prune`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ContainerConfig;

/// One row of `GET /images/json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageSummary {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "ParentId")]
    pub parent_id: String,
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    #[serde(rename = "RepoDigests")]
    pub repo_digests: Vec<String>,
    /// Unix seconds.
    #[serde(rename = "Created")]
    pub created: i64,
    #[serde(rename = "Size")]
    pub size: i64,
    /// -1 when not computed (Docker computes it only for `system df`).
    #[serde(rename = "SharedSize")]
    pub shared_size: i64,
    /// Deprecated but still read by older clients; equal to `Size`.
    #[serde(rename = "VirtualSize", skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<i64>,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
    /// -1 when not computed.
    #[serde(rename = "Containers")]
    pub containers: i64,
}

/// `GET /images/{name}/json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageInspect {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    #[serde(rename = "RepoDigests")]
    pub repo_digests: Vec<String>,
    #[serde(rename = "Parent")]
    pub parent: String,
    #[serde(rename = "Comment")]
    pub comment: String,
    /// RFC 3339 with nanoseconds, as in the image config; empty when unknown.
    #[serde(rename = "Created")]
    pub created: String,
    /// Deprecated fields older clients and scripts still read.
    #[serde(rename = "Container")]
    pub container: String,
    #[serde(rename = "ContainerConfig")]
    pub container_config: ContainerConfig,
    #[serde(rename = "DockerVersion")]
    pub docker_version: String,
    #[serde(rename = "Author")]
    pub author: String,
    #[serde(rename = "Config")]
    pub config: ContainerConfig,
    #[serde(rename = "Architecture")]
    pub architecture: String,
    #[serde(rename = "Variant", skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "Os")]
    pub os: String,
    #[serde(rename = "OsVersion", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "Size")]
    pub size: i64,
    #[serde(rename = "VirtualSize", skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<i64>,
    #[serde(rename = "GraphDriver")]
    pub graph_driver: DriverData,
    #[serde(rename = "RootFS")]
    pub root_fs: ImageRootFs,
    #[serde(rename = "Metadata")]
    pub metadata: ImageMetadata,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriverData {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Data")]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageRootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageMetadata {
    /// RFC 3339; the time the image was last tagged (Docker's zero time when never).
    #[serde(rename = "LastTagTime")]
    pub last_tag_time: String,
}

/// One row of `GET /images/{name}/history`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryItem {
    /// The image id for rows that are an image, `<missing>` otherwise.
    #[serde(rename = "Id")]
    pub id: String,
    /// Unix seconds.
    #[serde(rename = "Created")]
    pub created: i64,
    #[serde(rename = "CreatedBy")]
    pub created_by: String,
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    #[serde(rename = "Size")]
    pub size: i64,
    #[serde(rename = "Comment")]
    pub comment: String,
}

/// One element of the `DELETE /images/{name}` and prune responses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDeleteItem {
    #[serde(rename = "Untagged", skip_serializing_if = "Option::is_none")]
    pub untagged: Option<String>,
    #[serde(rename = "Deleted", skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
}

/// `POST /images/prune`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagePruneResponse {
    /// Docker sends `null` when nothing was deleted.
    #[serde(rename = "ImagesDeleted")]
    pub images_deleted: Option<Vec<ImageDeleteItem>>,
    #[serde(rename = "SpaceReclaimed")]
    pub space_reclaimed: i64,
}

/// `POST /images/create?fromSrc=...` answers with a progress stream whose last message carries
/// the new image id in `status`; `POST /commit` and similar answer with this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdResponse {
    #[serde(rename = "Id")]
    pub id: String,
}
