//! The image configuration JSON (Docker's image config, a superset of the OCI config). The id of
//! an image is the digest of the bytes as they arrived, so a config is never re-serialised to
//! compute an id; unknown fields survive a round trip through `extra`.

use berth_api::models::ContainerConfig;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// An image config (`application/vnd.oci.image.config.v1+json` /
/// `application/vnd.docker.container.image.v1+json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// RFC 3339 creation time, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Fields this type does not model (`container_config`, `os.version`, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The layer list of an image, bottom first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default = "layers_type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

fn layers_type() -> String {
    "layers".to_string()
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: layers_type(),
            diff_ids: Vec::new(),
        }
    }
}

/// One step of an image's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// The creation time, if present and valid RFC 3339.
    pub fn created_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let created = self.created.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(created)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// The image's labels (from `config.Labels`).
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        self.config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
    }
}

/// Chain ids for a list of diff ids (OCI: ChainID(L0) = DiffID(L0),
/// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => Digest::of_bytes(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_fields_and_parses_docker_configs() {
        let json = r#"{"architecture":"amd64","os":"linux","os.version":"x","created":"2024-01-02T03:04:05.123456789Z",
            "config":{"Cmd":["sh"],"Labels":{"a":"b"}},"container_config":{"Cmd":["x"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
            "history":[{"created_by":"/bin/sh","empty_layer":true}]}"#;
        let c: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert!(c.extra.contains_key("os.version"));
        assert!(c.extra.contains_key("container_config"));
        assert_eq!(c.labels().get("a").map(String::as_str), Some("b"));
        assert_eq!(
            c.created_time().unwrap().to_rfc3339(),
            "2024-01-02T03:04:05.123456789+00:00"
        );
        assert!(c.history[0].empty_layer);
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["os.version"], "x");
    }

    #[test]
    fn chain_ids_follow_the_oci_formula() {
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of_bytes(format!("{a} {b}").as_bytes()));
    }
}
