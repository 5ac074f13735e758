//! Images for swarm tasks: a task whose image is not on this node has it pulled first (task
//! state `preparing`), with the credentials the service was created or updated with
//! (`--with-registry-auth`). Unlike dockerd, an image already here is not pulled again (no
//! registry round trip per task, and tasks of images built or loaded here start offline).
//! Pulls run in the background, one per image however many tasks wait for it, so that the
//! agent's pass (which reports every task of the node) never waits for a download.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_registry::client::{OciRemote, Platform, PullOptions, Remote, RemoteOptions, pull_image};

use crate::imagestore::{ImageStore, Reference};

/// A pull started for some task.
enum Pull {
    Running,
    Failed(String),
}

pub struct Puller {
    pub images: Arc<ImageStore>,
    pub remote: RemoteOptions,
    pub options: PullOptions,
    pulls: Arc<Mutex<HashMap<String, Pull>>>,
}

impl Puller {
    pub fn new(images: Arc<ImageStore>, remote: RemoteOptions, options: PullOptions) -> Puller {
        Puller {
            images,
            remote,
            options,
            pulls: Default::default(),
        }
    }

    /// `Ok(true)`: the image is here (by `name@digest`, or by name for an image built or
    /// loaded here). `Ok(false)`: its pull runs. An error is the task's: dockerd's
    /// `No such image: ...`, with why the pull failed (said once; the next ask pulls again).
    pub fn ensure(&self, image: &str, auth: Option<&str>) -> Result<bool, String> {
        let plain = image.split('@').next().unwrap_or(image);
        let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        if self.images.get(image).is_ok() || self.images.get(plain).is_ok() {
            pulls.remove(image);
            return Ok(true);
        }
        match pulls.remove(image) {
            Some(Pull::Running) => {
                pulls.insert(image.to_string(), Pull::Running);
                return Ok(false);
            }
            Some(Pull::Failed(cause)) => return Err(format!("No such image: {image}: {cause}")),
            None => {}
        }
        pulls.insert(image.to_string(), Pull::Running);
        let (images, remote, options) = (
            self.images.clone(),
            self.remote.clone(),
            self.options.clone(),
        );
        let (pulls, image, auth) = (
            self.pulls.clone(),
            image.to_string(),
            auth.map(str::to_string),
        );
        tokio::spawn(async move {
            let outcome = pull(images, remote, options, &image, auth.as_deref()).await;
            let mut pulls = pulls.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Ok(()) => {
                    pulls.remove(&image);
                }
                Err(cause) => {
                    tracing::info!(image = %image, error = %cause, "pulling a task's image failed");
                    pulls.insert(image, Pull::Failed(cause));
                }
            }
        });
        Ok(false)
    }
}

async fn pull(
    images: Arc<ImageStore>,
    remote: RemoteOptions,
    options: PullOptions,
    image: &str,
    auth: Option<&str>,
) -> Result<(), String> {
    let reference = Reference::parse_normalized(image)
        .map_err(|e| e.to_string())?
        .with_default_tag();
    let mut headers = axum::http::HeaderMap::new();
    if let Some(value) = auth.and_then(|a| a.parse().ok()) {
        headers.insert("x-registry-auth", value);
    }
    let credentials = crate::router::registry_auth(&headers).map_err(|e| e.0.message)?;
    let remote = OciRemote::new(remote).with_credentials(credentials);
    let top = remote
        .fetch_manifest(&reference)
        .await
        .map_err(|e| e.to_string())?;
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
