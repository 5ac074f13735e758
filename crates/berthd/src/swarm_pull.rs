//! Images for swarm tasks: a task whose image is not on this node has it pulled first (task
//! state `preparing`), with the credentials the service was created or updated with
//! (`--with-registry-auth`). Unlike dockerd, an image already here is not pulled again (no
//! registry round trip per task, and tasks of images built or loaded here start offline).

use std::sync::Arc;

use berth_registry::client::{OciRemote, Platform, PullOptions, Remote, RemoteOptions, pull_image};

use crate::imagestore::{ImageStore, Reference};

pub struct Puller {
    pub images: Arc<ImageStore>,
    pub remote: RemoteOptions,
    pub options: PullOptions,
}

impl Puller {
    /// The image is here (by `name@digest`, or by name for an image built or loaded here),
    /// or pulled now. The error is the task's: dockerd's `No such image: ...`, with why the
    /// pull failed.
    pub async fn ensure(&self, image: &str, auth: Option<&str>) -> Result<(), String> {
        let plain = image.split('@').next().unwrap_or(image);
        if self.images.get(image).is_ok() || self.images.get(plain).is_ok() {
            return Ok(());
        }
        self.pull(image, auth)
            .await
            .map_err(|cause| format!("No such image: {image}: {cause}"))
    }

    async fn pull(&self, image: &str, auth: Option<&str>) -> Result<(), String> {
        let reference = Reference::parse_normalized(image).map_err(|e| e.to_string())?;
        let reference = reference.with_default_tag();
        let mut headers = axum::http::HeaderMap::new();
        if let Some(value) = auth.and_then(|a| a.parse().ok()) {
            headers.insert("x-registry-auth", value);
        }
        let credentials = crate::router::registry_auth(&headers).map_err(|e| e.0.message)?;
        let remote = OciRemote::new(self.remote.clone()).with_credentials(credentials);
        let top = remote
            .fetch_manifest(&reference)
            .await
            .map_err(|e| e.to_string())?;
        let images = self.images.clone();
        let options = self.options.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            pull_image(
                &remote,
                &handle,
                &images,
                &reference,
                top,
                &Platform::host(),
                &options,
                &|_| {},
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("pull interrupted: {e}"))?
    }
}
