//! The daemon's shared state: configuration, the image store, the event bus, and the seam a
//! container store will fill.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::EventBus;
use crate::imagestore::{Digest, ImageError, ImageStore};

/// What the image endpoints need to know about containers. Until a container store exists,
/// [`NoContainers`] answers "nothing uses anything".
pub trait ContainerUsage: Send + Sync {
    /// A container that keeps the image from being deleted (its id or name), if any.
    fn using_image(&self, image: &Digest) -> Option<String>;
    /// How many containers use the image.
    fn count_using(&self, image: &Digest) -> i64;
    /// `(total, running, paused, stopped)` for `/info`.
    fn counts(&self) -> (i64, i64, i64, i64);
}

pub struct NoContainers;

impl ContainerUsage for NoContainers {
    fn using_image(&self, _image: &Digest) -> Option<String> {
        None
    }
    fn count_using(&self, _image: &Digest) -> i64 {
        0
    }
    fn counts(&self) -> (i64, i64, i64, i64) {
        (0, 0, 0, 0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open image store in {root}: {source}")]
    ImageStore { root: String, source: ImageError },
    #[error("cannot read or create the daemon id in {path}: {source}")]
    EngineId {
        path: String,
        source: std::io::Error,
    },
}

/// Everything the API handlers share.
pub struct Daemon {
    pub config: Config,
    /// Stable across restarts; stored in `<data-root>/engine-id`.
    pub id: String,
    pub images: Arc<ImageStore>,
    pub events: EventBus,
    pub containers: Arc<dyn ContainerUsage>,
    /// Cancelled when the daemon shuts down; long streams (events) end on it.
    pub shutdown: CancellationToken,
}

pub type AppState = Arc<Daemon>;

impl Daemon {
    /// Opens the data root's stores. The caller holds the data-root lock.
    pub fn open(config: Config) -> Result<Daemon, DaemonError> {
        let images =
            ImageStore::open(&config.data_root).map_err(|source| DaemonError::ImageStore {
                root: config.data_root.display().to_string(),
                source,
            })?;
        let id = engine_id(&config.data_root)?;
        Ok(Daemon {
            config,
            id,
            images: Arc::new(images),
            events: EventBus::new(),
            containers: Arc::new(NoContainers),
            shutdown: CancellationToken::new(),
        })
    }
}

/// Reads the daemon id, creating a random UUID-shaped one on first start.
fn engine_id(root: &Path) -> Result<String, DaemonError> {
    let path = root.join("engine-id");
    let err = |source| DaemonError::EngineId {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(root).map_err(err)?;
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let tmp = root.join("engine-id.tmp");
    std::fs::write(&tmp, format!("{id}\n")).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(id)
}
