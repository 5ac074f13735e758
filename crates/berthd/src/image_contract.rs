//! A stand-in for `berth-image` while that crate is being written: the same public names and
//! signatures as its agreed contract, backed by an always-empty store. The daemon imports the
//! image store through `crate::imagestore`, so switching to the real crate is one line in
//! `lib.rs`. Delete this file once `berth-image` compiles.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_api::ErrorKind;
use chrono::Utc;

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidReference(String),
    #[error("{0}")]
    NotImplemented(String),
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::InvalidReference(_) => ErrorKind::InvalidArgument,
            ImageError::NotImplemented(_) => ErrorKind::NotImplemented,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest> {
        match s.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Digest(hex.to_string()))
            }
            _ => Err(ImageError::InvalidReference(format!(
                "invalid digest {s:?}"
            ))),
        }
    }
    pub fn hex(&self) -> &str {
        &self.0
    }
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

#[derive(Clone, Debug)]
pub struct Reference {
    name: String,
    tag: Option<String>,
}

impl Reference {
    pub fn parse_normalized(s: &str) -> Result<Reference> {
        let bad = || ImageError::InvalidReference("invalid reference format".into());
        if s.is_empty()
            || s.chars()
                .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
        {
            return Err(bad());
        }
        let (name, tag) = match s.rfind(':') {
            Some(i) if !s[i..].contains('/') => (&s[..i], Some(s[i + 1..].to_string())),
            _ => (s, None),
        };
        if name.is_empty() || name.ends_with('/') || tag.as_deref() == Some("") {
            return Err(bad());
        }
        Ok(Reference {
            name: name.to_string(),
            tag,
        })
    }
    pub fn with_default_tag(mut self) -> Reference {
        self.tag.get_or_insert_with(|| "latest".into());
        self
    }
    pub fn familiar_name(&self) -> String {
        self.name.clone()
    }
    pub fn familiar_string(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{t}", self.name),
            None => self.name.clone(),
        }
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar_string())
    }
}

#[derive(Debug, Clone, Default)]
pub struct HistoryEntry {
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub author: Option<String>,
    pub comment: Option<String>,
    pub empty_layer: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RootFs {
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub created: Option<String>,
    pub author: Option<String>,
    pub comment: Option<String>,
    pub docker_version: Option<String>,
    pub config: Option<berth_api::models::ContainerConfig>,
    pub rootfs: RootFs,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone)]
pub struct LayerInfo {
    pub diff_id: Digest,
    pub chain_id: Digest,
    pub blob_digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub id: Digest,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub config: ImageConfig,
    pub created: Option<chrono::DateTime<Utc>>,
    pub size: u64,
    pub layers: Vec<LayerInfo>,
    pub manifest_digest: Option<Digest>,
    pub manifest_size: u64,
    pub config_size: u64,
    pub loaded_at: chrono::DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum DeleteItem {
    Untagged(String),
    Deleted(String),
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub force: bool,
    pub noprune: bool,
}

#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: Digest,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum LoadProgress {
    Layer {
        digest: Digest,
        current: u64,
        total: Option<u64>,
    },
    LayerDone {
        digest: Digest,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub reference: Option<String>,
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub os: Option<String>,
    pub architecture: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub deleted: Vec<DeleteItem>,
    pub space_reclaimed: u64,
}

pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    pub fn open(data_root: &Path) -> Result<ImageStore> {
        Ok(ImageStore {
            root: data_root.to_path_buf(),
        })
    }
    pub fn images(&self) -> Vec<Image> {
        Vec::new()
    }
    pub fn get(&self, name_or_id: &str) -> Result<Image> {
        Err(ImageError::NotFound(name_or_id.to_string()))
    }
    pub fn tag(&self, source: &str, target: &str) -> Result<Reference> {
        Reference::parse_normalized(target)?;
        Err(ImageError::NotFound(source.to_string()))
    }
    pub fn delete(
        &self,
        name_or_id: &str,
        _opts: DeleteOptions,
        _in_use: &dyn Fn(&Digest) -> Option<String>,
    ) -> Result<Vec<DeleteItem>> {
        Err(ImageError::NotFound(name_or_id.to_string()))
    }
    pub fn load(
        &self,
        reader: &mut dyn Read,
        _progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Vec<LoadedImage>> {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
        Err(ImageError::NotImplemented(
            "image load is not available yet".into(),
        ))
    }
    pub fn save(&self, names: &[String], _writer: &mut dyn Write) -> Result<()> {
        Err(ImageError::NotFound(names.join(", ")))
    }
    pub fn import(&self, _reader: &mut dyn Read, _opts: ImportOptions) -> Result<Image> {
        Err(ImageError::NotImplemented(
            "image import is not available yet".into(),
        ))
    }
    pub fn prune(
        &self,
        _all: bool,
        _filter: &dyn Fn(&Image) -> bool,
        _in_use: &dyn Fn(&Digest) -> Option<String>,
    ) -> Result<PruneReport> {
        Ok(PruneReport::default())
    }
    pub fn layer_dirs(&self, id: &Digest) -> Result<Vec<PathBuf>> {
        Err(ImageError::NotFound(id.to_string()))
    }
    pub fn shared_sizes(&self) -> HashMap<Digest, u64> {
        HashMap::new()
    }
}
