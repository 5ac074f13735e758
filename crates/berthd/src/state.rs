//! The daemon's shared state: configuration, the image store, the event bus, the container
//! service, and the seam through which image endpoints ask about containers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_api::ApiError;
use berth_api::models::container::{NetworkSettings, Port};
use berth_container::network::{
    NetFuture, NetworkAttacher, NetworkHandle, NetworkRequest, NetworkStart,
};
use berth_container::{Containers, EventSink, Options};
use berth_network::{NetworkEvents, NetworkOptions, Networks};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::EventBus;
use crate::imagestore::{ContainerUse, Digest, ImageError, ImageStore};

/// What the image endpoints need to know about containers. [`NoContainers`] answers "nothing
/// uses anything" (for tests of the image endpoints alone).
pub trait ContainerUsage: Send + Sync {
    /// A container that keeps the image from being deleted (its id or name), if any.
    fn using_image(&self, image: &Digest) -> Option<String> {
        self.image_use(image).map(|u| match u {
            ContainerUse::Running(id) | ContainerUse::Stopped(id) => id,
        })
    }
    /// How a container uses the image (running or stopped), if any.
    fn image_use(&self, image: &Digest) -> Option<ContainerUse>;
    /// How many containers use the image.
    fn count_using(&self, image: &Digest) -> i64;
    /// `(total, running, paused, stopped)` for `/info`.
    fn counts(&self) -> (i64, i64, i64, i64);
}

pub struct NoContainers;

impl ContainerUsage for NoContainers {
    fn image_use(&self, _image: &Digest) -> Option<ContainerUse> {
        None
    }
    fn count_using(&self, _image: &Digest) -> i64 {
        0
    }
    fn counts(&self) -> (i64, i64, i64, i64) {
        (0, 0, 0, 0)
    }
}

impl ContainerUsage for Containers {
    fn image_use(&self, image: &Digest) -> Option<ContainerUse> {
        Containers::image_use(self, image)
    }
    fn count_using(&self, image: &Digest) -> i64 {
        Containers::count_using(self, image)
    }
    fn counts(&self) -> (i64, i64, i64, i64) {
        Containers::counts(self)
    }
}

/// Container events onto the daemon's bus.
struct BusSink(Arc<EventBus>);

impl EventSink for BusSink {
    fn container_event(&self, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        self.0.publish(crate::events::new_event(
            "container",
            action,
            id,
            attributes,
        ));
    }
    fn volume_event(&self, action: &str, name: &str, attributes: BTreeMap<String, String>) {
        self.0
            .publish(crate::events::new_event("volume", action, name, attributes));
    }
}

impl NetworkEvents for BusSink {
    fn network_event(&self, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        self.0
            .publish(crate::events::new_event("network", action, id, attributes));
    }
}

/// The container manager's view of the network service (with the attachable swarm networks
/// of plain containers: `overlay::plain`).
struct Attacher(Networks, Arc<crate::overlay::plain::Plain>);

impl NetworkAttacher for Attacher {
    fn create(&self, req: NetworkRequest) -> Result<String, ApiError> {
        self.0.container_create(&req).map_err(ApiError::from)
    }
    fn start<'a>(&'a self, id: &'a str) -> NetFuture<'a, Result<NetworkStart, ApiError>> {
        Box::pin(async move {
            let info = self.0.container_start(id).await.map_err(ApiError::from)?;
            // A refusal fails the start; the container manager then calls `stop`.
            self.1.on_start(id).await?;
            Ok(NetworkStart {
                netns: info.netns,
                addresses: info.addresses,
                embedded_dns: info.embedded_dns,
                host_gateway: info.host_gateway,
                ..Default::default()
            })
        })
    }
    fn stop<'a>(&'a self, id: &'a str) -> NetFuture<'a, ()> {
        Box::pin(async move {
            self.0.container_stop(id).await;
            self.1.on_stop(id).await;
        })
    }
    fn remove<'a>(&'a self, id: &'a str) -> NetFuture<'a, ()> {
        Box::pin(async move {
            self.0.container_remove(id).await;
            self.1.forget(id);
        })
    }
    fn rename(&self, id: &str, name: &str) {
        self.0.container_rename(id, name)
    }
    fn persist(&self, id: &str) {
        self.0.container_persist(id)
    }
    fn netns_of(&self, id: &str) -> Option<std::path::PathBuf> {
        self.0.netns_of(id)
    }
    fn settings(&self, id: &str) -> NetworkSettings {
        let mut settings = self.0.settings(id);
        crate::overlay::endpoints::extend(id, &mut settings);
        self.1.extend(id, &mut settings);
        settings
    }
    fn ports(&self, id: &str) -> Vec<Port> {
        self.0.ports(id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the container store in {root}: {source}")]
    Containers {
        root: String,
        source: berth_container::ContainerError,
    },
    #[error("cannot set up networking: {0}")]
    Networks(berth_network::ControlError),
    #[error("cannot open the build cache in {root}: {source}")]
    BuildCache {
        root: String,
        source: std::io::Error,
    },
    #[error("cannot open image store in {root}: {source}")]
    ImageStore { root: String, source: ImageError },
    #[error("cannot open the swarm state: {0:#}")]
    Swarm(anyhow::Error),
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
    pub events: Arc<EventBus>,
    /// The image endpoints' view of container usage (the container service).
    pub containers: Arc<dyn ContainerUsage>,
    /// The container service.
    pub ctrs: Containers,
    /// The network service.
    pub networks: Networks,
    /// Swarm mode: this node's membership, cluster store and task agent.
    pub swarm: Arc<berth_swarm::manager::Swarm>,
    /// Cancelled when the daemon shuts down; long streams (events) end on it.
    pub shutdown: CancellationToken,
    /// The build cache and the builds running.
    pub builds: Arc<crate::build::Builds>,
    /// Task containers with their overlay interfaces (`crate::overlay::ready`).
    pub overlay_ready: Arc<crate::overlay::ready::Ready>,
    /// Plain containers' attachable swarm networks (`crate::overlay::plain`).
    pub plain: Arc<crate::overlay::plain::Plain>,
}

pub type AppState = Arc<Daemon>;

impl Daemon {
    /// Opens the data root's stores. The caller holds the data-root lock.
    pub async fn open(config: Config) -> Result<Daemon, DaemonError> {
        crate::build::unmount_leftover_views(&config.data_root);
        crate::build::secrets::remove_leftovers(&config.exec_root);
        let images =
            ImageStore::open(&config.data_root).map_err(|source| DaemonError::ImageStore {
                root: config.data_root.display().to_string(),
                source,
            })?;
        // Partial downloads abandoned long ago go; recent ones stay for the next pull to resume.
        berth_registry::client::sweep_partial_downloads(
            &config.data_root,
            &crate::config::partial_downloads_dir(&config.data_root),
        );
        let id = engine_id(&config.data_root)?;
        let images = Arc::new(images);
        let events = Arc::new(EventBus::new());
        let net = &config.network;
        let networks = Networks::open(
            NetworkOptions {
                data_root: config.data_root.clone(),
                exec_root: config.exec_root.clone(),
                bridge: net.bridge.clone(),
                bip: net.bip,
                fixed_cidr: net.fixed_cidr,
                default_pools: net.default_address_pools.clone(),
                firewall_table: net.iptables.then(|| config.firewall_table()),
                mtu: net.mtu,
            },
            Arc::new(BusSink(events.clone())),
        )
        .await
        .map_err(DaemonError::Networks)?;
        let plain = Arc::new(crate::overlay::plain::Plain::open(&config.data_root));
        let ctrs = Containers::open(
            Options {
                data_root: config.data_root.clone(),
                shim_binary: sealed_shim(&config.shim_binary()),
                cgroup_parent: config.cgroup_parent.clone(),
                runtimes: config
                    .runtimes
                    .iter()
                    .map(|(name, rt)| {
                        let oci = berth_runtime::config::OciRuntime {
                            name: name.clone(),
                            path: rt.path.clone(),
                            args: rt.runtime_args.clone(),
                        };
                        (name.clone(), oci)
                    })
                    .collect(),
                default_runtime: config.default_runtime.clone(),
                network: Some(NetworkHandle(Arc::new(Attacher(
                    networks.clone(),
                    plain.clone(),
                )))),
                run_root: config.exec_root.join("containers"),
                remap: config.remap,
            },
            images.clone(),
            Arc::new(BusSink(events.clone())),
        )
        .map_err(|source| DaemonError::Containers {
            root: config.data_root.display().to_string(),
            source,
        })?;
        let containers_dir = config.data_root.join("containers");
        networks
            .forget_unknown_containers(|id| containers_dir.join(id).is_dir())
            .await;
        // A build a crash interrupted left its container; its steps' images are whole (or
        // were never published), so only the containers need to go.
        crate::build::remove_leftover_containers(&ctrs, &config.data_root).await;
        let builds =
            crate::build::Builds::open(&config).map_err(|source| DaemonError::BuildCache {
                root: config.data_root.display().to_string(),
                source,
            })?;
        let overlay_ready = Arc::new(crate::overlay::ready::Ready::default());
        let executor = crate::swarm_exec::Executor::new(
            ctrs.clone(),
            config.exec_root.join("swarm").join("tasks"),
            crate::swarm_pull::Puller::new(
                images.clone(),
                config.registry.remote_options(),
                config.registry.pull_options(&config.data_root),
            ),
            networks.clone(),
        )
        .with_events(events.clone())
        .with_overlay_ready(overlay_ready.clone());
        let swarm = berth_swarm::manager::Swarm::open(
            &config.data_root.join("swarm"),
            Arc::new(executor),
            crate::sysinfo::node_description(&config),
        )
        .await
        .map_err(DaemonError::Swarm)?;
        let swarm = Arc::new(swarm);
        swarm.watch_role();
        Ok(Daemon {
            swarm,
            overlay_ready,
            plain,
            config,
            id,
            images,
            events,
            containers: Arc::new(ctrs.clone()),
            ctrs,
            networks,
            shutdown: CancellationToken::new(),
            builds: Arc::new(builds),
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

/// Shims run from one sealed in-memory copy of their binary ([`berth_runtime::sealed`]), so
/// that no container can reach the host's file through `/proc/self/exe`. The copy lives as
/// long as the daemon. Without memfd sealing (very old kernels) the file itself is used.
fn sealed_shim(binary: &std::path::Path) -> std::path::PathBuf {
    match berth_runtime::sealed::SealedBinary::new(binary) {
        Ok(sealed) => {
            let path = sealed.exec_path();
            tracing::debug!(binary = %binary.display(), exec = %path.display(), "sealed shim copy");
            // Daemon-lifetime: the descriptor must stay open for every later shim.
            std::mem::forget(sealed);
            path
        }
        Err(e) => {
            tracing::warn!(error = %e, "shims run from their binary file (no sealed copy)");
            binary.to_path_buf()
        }
    }
}
