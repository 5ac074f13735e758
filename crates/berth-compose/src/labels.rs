//! Compose v2's labels and resource names, which make a project created by Docker Compose
//! manageable by `berth compose` and the reverse.

use crate::model::Service;

pub const PROJECT: &str = "com.docker.compose.project";
pub const SERVICE: &str = "com.docker.compose.service";
pub const NUMBER: &str = "com.docker.compose.container-number";
pub const ONEOFF: &str = "com.docker.compose.oneoff";
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const ENVIRONMENT_FILE: &str = "com.docker.compose.project.environment_file";
pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const IMAGE: &str = "com.docker.compose.image";
/// On images Compose builds with the Engine API's builder: `classic`.
pub const IMAGE_BUILDER: &str = "com.docker.compose.image.builder";
pub const VERSION: &str = "com.docker.compose.version";
pub const NETWORK: &str = "com.docker.compose.network";
pub const VOLUME: &str = "com.docker.compose.volume";
pub const REPLACE: &str = "com.docker.compose.replace";

/// The Compose version these labels claim (Compose v2's label format).
pub const COMPOSE_VERSION: &str = "2.40.3";

/// `PROJECT-SERVICE-N`, Compose v2's container name (or the service's `container_name`).
pub fn container_name(project: &str, service: &Service, number: u32) -> String {
    match &service.config.container_name {
        Some(name) => name.clone(),
        None => format!("{project}-{}-{number}", service.name),
    }
}

/// The config hash, as Docker Compose v2 computes it ([`crate::hash`]): scaling or
/// rebuilding alone never recreates a container, and either tool recognises the other's
/// unchanged containers.
pub fn config_hash(service: &Service) -> String {
    crate::hash::digest(&service.hash_view)
}

/// `db:service_healthy:false,cache:service_started:false`, as Compose v2 writes it.
pub fn depends_on_label(service: &Service) -> String {
    service
        .config
        .depends_on
        .iter()
        .map(|(name, d)| format!("{name}:{}:{}", d.condition, d.restart))
        .collect::<Vec<_>>()
        .join(",")
}
