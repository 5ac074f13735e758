//! The image store of Berth: the
//! content store (`blobs/sha256/<hex>`), unpacked layers in overlayfs format
//! (`layers/<chain-id>/diff`), image configs, docker-archive and OCI-layout load/save, import,
//! deletion with Docker's semantics, and garbage collection derived from the image records.

// References and digests live in the leaf crate `berth-reference`; these re-exports keep the
// paths `berth_image::Digest`, `berth_image::digest::…` and `crate::reference::…` working.
pub use berth_reference::{Digest, Reference, ReferenceError, digest, reference};

pub mod archive;
pub mod changes;
pub mod commit;
pub mod config;
pub mod error;
pub mod ingest;
mod layers;
pub mod pack;
mod publish;
pub mod push_source;
pub mod store;
pub mod unpack;

pub use commit::CommitRequest;
pub use config::{HistoryEntry, ImageConfig, RootFs};
pub use error::{ImageError, Result};
pub use ingest::Ingest;
pub use push_source::{PushSource, StoredLayer};
pub use store::{
    ContainerUse, DeleteItem, DeleteOptions, Image, ImageStore, ImportOptions, LayerInfo,
    LoadProgress, LoadedImage, PruneReport,
};

#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
