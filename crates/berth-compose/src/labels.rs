//! Compose v2's labels and resource names, which make a project created by Docker Compose
//! manageable by `berth compose` and the reverse.

use serde_json::Value;
use sha2::{Digest, Sha256};

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

/// The config hash: a digest of the service's normalised configuration, leaving out what does
/// not change a container (build, pull policy, replica count, dependencies, profiles), so that
/// scaling or rebuilding alone never recreates a container.
pub fn config_hash(service: &Service) -> String {
    let mut raw = service.raw.clone();
    if let Some(o) = raw.as_object_mut() {
        for key in ["build", "pull_policy", "scale", "depends_on", "profiles"] {
            o.remove(key);
        }
        if let Some(Value::Object(deploy)) = o.get_mut("deploy") {
            deploy.remove("replicas");
        }
    }
    // serde_json's maps are sorted: the text is canonical.
    let text = serde_json::to_vec(&raw).unwrap_or_default();
    hex::encode(Sha256::digest(&text))
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
