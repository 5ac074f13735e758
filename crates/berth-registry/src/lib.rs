//! Berth's registry side. `client` pulls images from OCI/Docker registries into the image
//! store: the [`client::Remote`] trait is the narrow seam to a registry (implemented over the
//! `oci-client` crate by [`client::OciRemote`]), and [`client::pull`] orchestrates a pull
//! through `berth_image::Ingest` (berth-image itself knows nothing of registries).

pub mod client;
mod pool;
pub mod push;
