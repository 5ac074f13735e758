//! The registry as one value: configuration, storage, upload sessions, auth, metrics, quota
//! accounting and the optional upstream (proxy mode). Shared by every request as
//! `Arc<Registry>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::auth::Auth;
use crate::config::{Config, StorageKind};
use crate::digest::Digest;
use crate::driver::{FilesystemDriver, InMemoryDriver, StorageDriver};
use crate::error::{RegistryError, Result};
use crate::http::blocking;
use crate::metrics::Metrics;
use crate::paths;
use crate::store::Store;
use crate::uploads::Uploads;

pub struct Registry {
    pub config: Config,
    pub store: Arc<Store>,
    pub uploads: Uploads,
    pub auth: Auth,
    pub metrics: Metrics,
    /// The upstream of a pull-through cache.
    pub proxy: Option<crate::proxy::Upstream>,
    /// Slots for upload requests (`max_concurrent_uploads`).
    pub upload_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Bytes each repository holds, counted when a quota first needs it.
    usage: Mutex<HashMap<String, u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("registry storage: {0}")]
    Storage(#[from] crate::driver::DriverError),
    #[error("registry setup: {0}")]
    Auth(String),
    #[error("the filesystem storage needs a root directory (--root or `root:`)")]
    NoRoot,
}

impl Registry {
    pub fn new(config: Config) -> Result<Registry, SetupError> {
        let driver: Arc<dyn StorageDriver> = match config.storage {
            StorageKind::Inmemory => Arc::new(InMemoryDriver::new()),
            StorageKind::Filesystem => Arc::new(FilesystemDriver::new(
                config.root.clone().ok_or(SetupError::NoRoot)?,
            )?),
        };
        Registry::with_driver(config, driver)
    }

    pub fn with_driver(
        config: Config,
        driver: Arc<dyn StorageDriver>,
    ) -> Result<Registry, SetupError> {
        let auth = Auth::from_config(config.auth.as_ref()).map_err(SetupError::Auth)?;
        let upload_slots = config
            .max_concurrent_uploads
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
        Ok(Registry {
            proxy: config
                .proxy
                .as_ref()
                .map(crate::proxy::Upstream::new)
                .transpose()
                .map_err(SetupError::Auth)?,
            config,
            store: Arc::new(Store::new(driver)),
            uploads: Uploads::default(),
            auth,
            upload_slots,
            metrics: Metrics::default(),
            usage: Mutex::new(HashMap::new()),
        })
    }

    pub async fn blob_size(&self, name: &str, d: &Digest) -> Result<u64> {
        let (s, n, d) = (self.store.clone(), name.to_string(), d.clone());
        blocking(move || s.blob_size(&n, &d)).await
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses `adding` more bytes to a repository at its quota (`DENIED`).
    pub async fn check_quota(&self, name: &str, adding: u64) -> Result<()> {
        let Some(limit) = self.config.quota_of(name) else {
            return Ok(());
        };
        let cached = self.usage().get(name).copied();
        let used = match cached {
            Some(u) => u,
            None => {
                let (s, n) = (self.store.clone(), name.to_string());
                let u = blocking(move || repository_bytes(&s, &n)).await?;
                self.usage().insert(name.to_string(), u);
                u
            }
        };
        if used + adding > limit {
            return Err(RegistryError::Denied(format!(
                "repository {name} holds {used} bytes; {adding} more would pass its quota of {limit}"
            )));
        }
        Ok(())
    }

    pub fn quota_add(&self, name: &str, n: u64) {
        if let Some(u) = self.usage().get_mut(name) {
            *u += n;
        }
    }

    /// Forgets a repository's count (after a delete or mount): recounted when next needed.
    pub fn quota_forget(&self, name: &str) {
        self.usage().remove(name);
    }

    pub async fn metrics_response(&self) -> Response {
        let s = self.store.clone();
        let storage = blocking(move || {
            s.driver
                .walk(paths::BLOBS)
                .map(|files| (files.len() as u64, files.iter().map(|f| f.size).sum()))
                .unwrap_or((0, 0))
        })
        .await;
        let mut r = (StatusCode::OK, self.metrics.render(storage)).into_response();
        crate::http::set(&mut r, "content-type", "text/plain; version=0.0.4");
        r
    }

    /// `/healthz`: 200 when storage answers, 503 otherwise.
    pub async fn health(&self) -> Response {
        let s = self.store.clone();
        let ok = blocking(move || {
            let probe = "/health/probe";
            s.driver.put_content(probe, b"ok").is_ok() || s.driver.stat(paths::BLOBS).is_ok()
        })
        .await;
        if ok {
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({"status": "ok"})),
            )
                .into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "storage unavailable"})),
            )
                .into_response()
        }
    }
}

/// Bytes of the blobs and manifests a repository links.
fn repository_bytes(store: &Store, name: &str) -> Result<u64> {
    let mut total = 0;
    for f in store.driver.walk(&paths::layers(name))? {
        let parts: Vec<&str> = f.path.rsplit('/').take(3).collect();
        if let [_, hex, alg] = parts[..]
            && let Some(d) = paths::digest_from(alg, hex)
        {
            total += store.blob_size_anywhere(&d).unwrap_or(0);
        }
    }
    for d in store.revisions(name)? {
        total += store.blob_size_anywhere(&d).unwrap_or(0);
    }
    Ok(total)
}
