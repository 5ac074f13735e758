//! Berth's registry side. `client` pulls images from OCI/Docker registries into the image
//! store: the [`client::Remote`] trait is the narrow seam to a registry (implemented by
//! [`client::OciRemote`]), and [`client::pull`] orchestrates a pull through
//! `berth_image::Ingest` (berth-image itself knows nothing of registries). `push` uploads
//! images; `auth` authenticates both directions and logins alike.

mod auth;
pub mod client;
mod pool;
pub mod push;
