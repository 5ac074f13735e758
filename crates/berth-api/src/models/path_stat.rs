//! `X-Docker-Container-Path-Stat`: a path's stat in a container, sent by `HEAD`/`GET
//! /containers/{id}/archive` (the daemon writes it, the client reads it).

use serde::{Deserialize, Serialize};

/// A path's stat, `mode` in Go's `os.FileMode` bits (directory is bit 31, symlink bit 27).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & (1 << 31) != 0
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & (1 << 27) != 0
    }

    /// The header value: standard base64 of the JSON, as dockerd sends it.
    pub fn header_value(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }
}
