//! Wire types of the Engine API, written from `specs/docker-engine-api-v1.51.yaml` and checked
//! against what the docker CLI actually sends and reads. Field names follow Docker's JSON.

/// `Serialize` and `Deserialize` for a struct that flattens one part: the struct derives both
/// with `#[serde(remote = "Self")]` (inherent functions) and marks the part
/// `#[serde(flatten, skip_deserializing)]`; deserialization goes through
/// [`crate::json::flattened`] so that the part's fields are read as leniently as the struct's.
macro_rules! flattened_part {
    ($ty:ident, $part:ident: $part_ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // The inherent function derived through `remote = "Self"`.
                $ty::serialize(self, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                static FIELDS: std::sync::OnceLock<&'static [&'static str]> =
                    std::sync::OnceLock::new();
                let fields = FIELDS.get_or_init(|| {
                    crate::json::join_fields(&[
                        crate::json::struct_fields($ty::deserialize),
                        crate::json::struct_fields(<$part_ty as serde::Deserialize>::deserialize),
                    ])
                });
                let (mut own, part): ($ty, $part_ty) =
                    crate::json::flattened(deserializer, stringify!($ty), fields, |lenient| {
                        $ty::deserialize(lenient)
                    })?;
                own.$part = part;
                Ok(own)
            }
        }
    };
}
pub(crate) use flattened_part;

pub mod container;
pub mod container_config;
pub mod events;
pub mod image;
mod mac_compat;
pub mod network;
pub mod path_stat;
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
pub use path_stat::PathStat;
pub use progress::{ErrorDetail, JsonMessage, ProgressDetail};
pub use system::{DiskUsage, SystemInfo, SystemVersion};
pub use volume::{
    Volume, VolumeCreateOptions, VolumeListResponse, VolumePruneResponse, VolumeUsageData,
};
