//! Wire types of the Engine API, written from `specs/docker-engine-api-v1.51.yaml` and checked
//! against what the docker CLI actually sends and reads. Field names follow Docker's JSON.

pub mod container_config;
pub mod strslice;

pub use container_config::{ContainerConfig, HealthConfig};
