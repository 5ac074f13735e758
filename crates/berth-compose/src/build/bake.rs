//! `compose build --print`: the bake file Compose v2 prints for the build (it prints it
//! whichever builder it would use, and builds nothing). Field names and order are bake's
//! (`context`, `dockerfile`, `args`, `labels`, `tags`, ...); maps sorted as Go prints them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{BuildFlags, build_args, extra_hosts, shm_bytes, truthy};
use crate::labels;
use crate::model::{Project, Service};

#[derive(Debug, Serialize)]
pub struct BakeFile {
    pub group: BTreeMap<String, BakeGroup>,
    pub target: BTreeMap<String, BakeTarget>,
}

#[derive(Debug, Serialize)]
pub struct BakeGroup {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct BakeTarget {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub context: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dockerfile: String,
    #[serde(rename = "dockerfile-inline", skip_serializing_if = "String::is_empty")]
    pub dockerfile_inline: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(rename = "cache-from", skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pull: bool,
    #[serde(rename = "no-cache", skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    #[serde(rename = "network", skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// A Go `UnitBytes`: a decimal string.
    #[serde(rename = "shm-size", skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<String>,
    #[serde(rename = "extra-hosts", skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_hosts: BTreeMap<String, String>,
    #[serde(rename = "output", skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
}

/// Bake's target name for a service: dots become underscores.
fn target_name(service: &str) -> String {
    service.replace('.', "_")
}

/// The bake file for building `services` of `project`: a target per service to build, and
/// the default group listing them.
pub fn bake_file(
    project: &Project,
    services: &[&Service],
    flags: &BuildFlags,
    push: bool,
) -> BakeFile {
    let mut target = BTreeMap::new();
    for service in services {
        let Some(build) = service.config.build.as_ref() else {
            continue;
        };
        let image = service.image_name(&project.name);
        let args = build_args(build, flags, &project.environment)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.replace("${", "$${"))))
            .collect();
        let mut label_map = build.labels.clone();
        label_map.insert(labels::PROJECT.into(), project.name.clone());
        label_map.insert(labels::SERVICE.into(), service.name.clone());
        label_map.insert(labels::VERSION.into(), labels::COMPOSE_VERSION.into());
        let mut tags = build.tags.clone();
        tags.push(image);
        let shm = shm_bytes(&build.shm_size);
        let output = if push && service.config.image.is_some() {
            "type=registry"
        } else {
            "type=docker"
        };
        let is_remote = build.context.contains("://") || build.context.starts_with("git@");
        let dockerfile = match (&build.dockerfile_inline, &build.dockerfile) {
            (Some(_), _) => String::new(),
            (None, Some(d)) if is_remote => d.clone(),
            (None, d) => std::path::Path::new(&build.context)
                .join(d.as_deref().unwrap_or("Dockerfile"))
                .display()
                .to_string(),
        };
        target.insert(
            target_name(&service.name),
            BakeTarget {
                context: build.context.clone(),
                dockerfile,
                dockerfile_inline: build
                    .dockerfile_inline
                    .clone()
                    .unwrap_or_default()
                    .replace("${", "$${"),
                args,
                labels: label_map,
                tags,
                cache_from: build.cache_from.clone(),
                target: build.target.clone().unwrap_or_default(),
                platforms: build.platforms.clone(),
                pull: flags.pull || truthy(&build.pull),
                no_cache: flags.no_cache || truthy(&build.no_cache),
                network: build.network.clone().unwrap_or_default(),
                shm_size: (shm != 0).then(|| shm.to_string()),
                extra_hosts: extra_hosts(&build.extra_hosts)
                    .into_iter()
                    .filter_map(|h| {
                        h.split_once(':')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                    })
                    .collect(),
                output: vec![output.to_string()],
            },
        );
    }
    let mut targets: Vec<String> = services
        .iter()
        .filter(|s| s.config.build.is_some())
        .map(|s| target_name(&s.name))
        .collect();
    targets.sort();
    BakeFile {
        group: [("default".to_string(), BakeGroup { targets })].into(),
        target,
    }
}
