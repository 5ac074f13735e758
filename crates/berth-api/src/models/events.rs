//! `GET /events`: one JSON object per line, as Docker streams them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventMessage {
    /// `image`, `container`, `volume`, `network`, `daemon`, ...
    #[serde(rename = "Type")]
    pub kind: String,
    /// `load`, `tag`, `untag`, `delete`, `import`, `create`, `start`, ...
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: EventActor,
    /// `local` (or `swarm`).
    #[serde(rename = "scope")]
    pub scope: String,
    /// Unix seconds.
    #[serde(rename = "time")]
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// Deprecated fields (API < 1.22 clients and many scripts still read them).
    #[serde(rename = "status", skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "from", skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventActor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}
