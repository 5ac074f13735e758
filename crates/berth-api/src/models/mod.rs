//! Wire types of the Engine API, written from `specs/docker-engine-api-v1.51.yaml` and checked
//! against what the docker CLI actually sends and reads. Field names follow Docker's JSON.

pub mod container;
pub mod container_config;
pub mod events;
pub mod image;
mod mac_compat;
pub mod network;
pub mod progress;
pub mod stats;
pub mod strslice;
pub mod system;
pub mod volume;

pub use container::{
    ContainerCreateRequest, ContainerCreateResponse, ContainerInspect, ContainerState,
    ContainerSummary, ContainerWaitResponse, EndpointIpamConfig, EndpointSettings, ExecConfig,
    ExecInspect, ExecStartConfig, HostConfig, Mount, MountPoint, NetworkSettings, NetworkingConfig,
    Port, PortBinding, Resources, RestartPolicy,
};
pub use container_config::{ContainerConfig, HealthConfig};
pub use events::{EventActor, EventMessage};
pub use image::{
    DriverData, HistoryItem, IdResponse, ImageDeleteItem, ImageInspect, ImageMetadata,
    ImagePruneResponse, ImageRootFs, ImageSummary,
};
pub use network::{
    Ipam, IpamConfig, NetworkConnectRequest, NetworkContainer, NetworkCreateRequest,
    NetworkCreateResponse, NetworkDisconnectRequest, NetworkPruneResponse, NetworkResource,
};
pub use progress::{ErrorDetail, JsonMessage, ProgressDetail};
pub use system::{DiskUsage, SystemInfo, SystemVersion};
pub use volume::{
    Volume, VolumeCreateOptions, VolumeListResponse, VolumePruneResponse, VolumeUsageData,
};
