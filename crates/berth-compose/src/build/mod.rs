//! A service's `build:` section as the legacy builder's `POST /build` request, as Docker
//! Compose v2 makes it when it builds through the Engine API (its "classic" builder, used
//! where buildx is absent or `DOCKER_BUILDKIT=0`): the section's `tags` and the image named
//! `PROJECT-SERVICE` unless `image:` names it, build args from the file (a bare `ARG`
//! resolved from the project's environment) overridden by `--build-arg`, and the section's
//! labels plus `com.docker.compose.image.builder=classic`. The same request as Compose's
//! gives the same image id from the same cache, so a project built by either tool is not
//! rebuilt or recreated by the other. Pure, so the mapping is unit-tested; the CLI sends it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_client::BuildOptions;
use serde_json::Value;

use crate::labels;
use crate::model::{BuildConfig, Project, Service};

pub mod bake;
mod session;

pub use session::{SessionSpecs, session_specs};

/// Where the context comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildContext {
    /// A local directory (absolute) and the Dockerfile: a path (absolute, resolved against
    /// the context as Compose does) or the text of `dockerfile_inline`.
    Dir {
        root: PathBuf,
        dockerfile: Dockerfile,
    },
    /// A URL the daemon fetches (`remote=`): git or a tarball.
    Remote(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dockerfile {
    Path(PathBuf),
    Inline(String),
}

/// What a build needs: the request and its context.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub service: String,
    pub image: String,
    pub options: BuildOptions,
    pub context: BuildContext,
}

/// `compose build` / `up --build` flags that apply to every service.
#[derive(Debug, Clone, Default)]
pub struct BuildFlags {
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
    /// `--build-arg K=V` or `K` (then from the environment; left out when unset there, as
    /// Compose does).
    pub build_args: Vec<String>,
    /// `--ssh` values, added to every service's `build.ssh`.
    pub ssh: Vec<String>,
}

/// A YAML boolean that interpolation may have left as a string.
fn truthy(v: &Option<Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        _ => false,
    }
}

fn shm_bytes(v: &Option<Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => berth_api::units::ram_in_bytes(s).unwrap_or(0),
        _ => 0,
    }
}

/// `host:ip` entries, whichever of the spec's forms the file used.
fn extra_hosts(v: &Option<Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            // `host=ip` is the spec's other list form; the API wants `host:ip`.
            .map(|h| h.replacen('=', ":", 1))
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .flat_map(|(host, ips)| match ips {
                Value::Array(list) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|ip| format!("{host}:{ip}"))
                    .collect::<Vec<_>>(),
                Value::String(ip) => vec![format!("{host}:{ip}")],
                _ => Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The file's args over which `--build-arg` wins; an arg without a value takes the
/// environment's, and stays null (the Dockerfile's default applies) when it has none.
fn build_args(
    build: &BuildConfig,
    flags: &BuildFlags,
    env: &BTreeMap<String, String>,
) -> BTreeMap<String, Option<String>> {
    let mut args: BTreeMap<String, Option<String>> = build.args.clone();
    for a in &flags.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                args.insert(k.to_string(), Some(v.to_string()));
            }
            None => {
                if let Some(v) = env.get(a) {
                    args.insert(a.clone(), Some(v.clone()));
                }
            }
        }
    }
    for (k, v) in args.iter_mut() {
        if v.is_none() {
            *v = env.get(k).cloned();
        }
    }
    args
}

/// The `/build` request for `service`, or `None` when it has no `build:` section.
pub fn build_request(
    project: &Project,
    service: &Service,
    flags: &BuildFlags,
) -> Option<BuildRequest> {
    let build = service.config.build.as_ref()?;
    let image = service.image_name(&project.name);
    // Compose's order: the section's tags, then the image's name.
    let mut tags: Vec<String> = build
        .tags
        .iter()
        .filter(|t| **t != image)
        .cloned()
        .collect();
    tags.push(image.clone());
    let mut label_map = build.labels.clone();
    label_map.insert(labels::IMAGE_BUILDER.into(), "classic".into());
    let is_remote = build.context.contains("://") || build.context.starts_with("git@");
    let context = if is_remote {
        BuildContext::Remote(build.context.clone())
    } else {
        let root = PathBuf::from(&build.context);
        let dockerfile = match &build.dockerfile_inline {
            Some(text) => Dockerfile::Inline(text.clone()),
            // Relative to the context, as Compose resolves it (an absolute path stays).
            None => {
                Dockerfile::Path(root.join(build.dockerfile.as_deref().unwrap_or("Dockerfile")))
            }
        };
        BuildContext::Dir { root, dockerfile }
    };
    // One platform per build on the legacy API: the first listed, else the service's.
    let platform = build
        .platforms
        .first()
        .cloned()
        .or_else(|| service.config.platform.clone())
        .unwrap_or_default();
    let options = BuildOptions {
        tags,
        dockerfile: match &context {
            BuildContext::Remote(_) => build.dockerfile.clone().unwrap_or_default(),
            // Set once the context tar is made (an inline or outside Dockerfile is renamed).
            BuildContext::Dir { .. } => String::new(),
        },
        quiet: flags.quiet,
        no_cache: flags.no_cache || truthy(&build.no_cache),
        pull: flags.pull || truthy(&build.pull),
        remove: true,
        build_args: build_args(build, flags, &project.environment),
        labels: label_map,
        target: build.target.clone().unwrap_or_default(),
        network_mode: build.network.clone().unwrap_or_default(),
        extra_hosts: extra_hosts(&build.extra_hosts),
        shm_size: shm_bytes(&build.shm_size),
        cache_from: build.cache_from.clone(),
        platform,
        remote: match &context {
            BuildContext::Remote(url) => url.clone(),
            BuildContext::Dir { .. } => String::new(),
        },
        ..Default::default()
    };
    Some(BuildRequest {
        service: service.name.clone(),
        image,
        options,
        context,
    })
}

#[cfg(test)]
mod tests;
