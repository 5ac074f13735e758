//! Docker's JSON progress messages ("JSONMessage"): what `load`, `import`, `pull`, `push` and
//! `build` stream, one object per line.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JsonMessage {
    /// Free text to print as is (`Loaded image: busybox:latest\n`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// A status line, e.g. `Loading layer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// What the status is about, e.g. a short layer digest; lines with the same id update in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    /// Pre-rendered progress bar (older clients print this).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorDetail>,
    /// Auxiliary data, e.g. `{"ID": "sha256:..."}` after a build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgressDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    pub message: String,
}

impl JsonMessage {
    pub fn stream(text: impl Into<String>) -> Self {
        JsonMessage {
            stream: Some(text.into()),
            ..Default::default()
        }
    }
    pub fn status(status: impl Into<String>) -> Self {
        JsonMessage {
            status: Some(status.into()),
            ..Default::default()
        }
    }
    /// An error in the middle of a stream: the HTTP status was already sent, so the failure
    /// travels in-band, as Docker does.
    pub fn error(message: impl Into<String>) -> Self {
        let message = message.into();
        JsonMessage {
            error: Some(message.clone()),
            error_detail: Some(ErrorDetail {
                code: None,
                message,
            }),
            ..Default::default()
        }
    }
}
