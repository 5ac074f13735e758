//! Names of content: image references parsed and normalised as Docker does
//! (`busybox` → `docker.io/library/busybox:latest`) and sha256 content digests, with readers
//! and writers that hash what flows through them.
//!
//! A leaf crate (serde, sha2, hex, thiserror): the image store, the registry client and server,
//! the builder and compose all name content, and only the store unpacks it. As in
//! distribution, whose reference grammar is its own `distribution/reference` module.

pub mod digest;
pub mod error;
pub mod reference;

pub use digest::{Digest, Hasher, HashingReader, HashingWriter};
pub use error::{ReferenceError, Result};
pub use reference::Reference;
