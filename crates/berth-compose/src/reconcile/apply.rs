//! `apply`: carries out a plan through an [`Engine`]. Networks and volumes first, then the
//! services in dependency order: services whose dependencies are done run concurrently, and
//! a service waits for its dependencies' conditions (`service_healthy`,
//! `service_completed_successfully`) before its containers start.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use berth_api::models::{NetworkCreateRequest, VolumeCreateOptions};
use futures_util::future::{join_all, try_join_all};

use super::convert::{ReplicaSpec, create_request, endpoint, ordered_networks};
use super::engine::{ContainerStatus, Engine};
use super::plan::{Action, Observed};
use crate::labels;
use crate::model::{Project, Service};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{what}: {source}")]
    Engine {
        what: String,
        source: berth_client::Error,
    },
    #[error("dependency failed to start: container {container} is unhealthy")]
    Unhealthy { container: String },
    #[error("dependency failed to start: container {container} exited ({code})")]
    Exited { container: String, code: i64 },
    #[error("service {dependency:?} didn't complete successfully: exit {code}")]
    NotCompleted { dependency: String, code: i64 },
    #[error("timeout waiting for {container} to be {want}")]
    Timeout {
        container: String,
        want: &'static str,
    },
    #[error(
        "service {service:?} has no image {image}: it is built from its build section, and --no-build was given; run `berth compose build {service}` or `up` without --no-build"
    )]
    NotBuilt { service: String, image: String },
    #[error("image {image} of service {service:?} is not present and the pull policy is never")]
    ImageMissing { service: String, image: String },
    #[error("{kind} {name}: environment variable {var} is not set")]
    SecretEnv {
        kind: &'static str,
        name: String,
        var: String,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn engine_err(what: impl Into<String>) -> impl FnOnce(berth_client::Error) -> ApplyError {
    let what = what.into();
    move |source| ApplyError::Engine { what, source }
}

/// `--pull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    #[default]
    Missing,
    Never,
}

/// How `apply` reports what it does (`Container app-web-1  Started`).
pub trait Progress {
    fn event(&self, kind: &str, name: &str, status: &str);
}

impl<F: Fn(&str, &str, &str)> Progress for F {
    fn event(&self, kind: &str, name: &str, status: &str) {
        self(kind, name, status)
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub pull: PullPolicy,
    /// `-t`: seconds before a stopped container is killed.
    pub stop_timeout: Option<i64>,
    /// `create`: nothing is started.
    pub no_start: bool,
    /// The services the plan covers (others' conditions are not waited on).
    pub services: BTreeSet<String>,
}

/// The images the services of `actions` need, pulled (or refused) by the policy; returns
/// their ids for the `com.docker.compose.image` label.
pub async fn ensure_images<E: Engine>(
    project: &Project,
    services: &BTreeSet<String>,
    engine: &E,
    policy: PullPolicy,
    progress: &dyn Progress,
) -> Result<BTreeMap<String, String>, ApplyError> {
    let jobs = services
        .iter()
        .filter_map(|s| project.services.get(s))
        .map(|service| async move {
            let image = service.image_name(&project.name);
            let policy = match service.config.pull_policy.as_deref() {
                // A service with `build:` gets its image from the build (done before `apply`),
                // never from a registry, as Compose pulls only what it cannot build.
                _ if service.config.build.is_some() => PullPolicy::Missing,
                Some("always") => PullPolicy::Always,
                Some("never") => PullPolicy::Never,
                _ => policy,
            };
            let have = if policy == PullPolicy::Always {
                None
            } else {
                engine
                    .image_id(&image)
                    .await
                    .map_err(engine_err(format!("image {image}")))?
            };
            let id = match have {
                Some(id) => id,
                None if service.config.build.is_some() => {
                    return Err(ApplyError::NotBuilt {
                        service: service.name.clone(),
                        image,
                    });
                }
                None if policy == PullPolicy::Never => {
                    return Err(ApplyError::ImageMissing {
                        service: service.name.clone(),
                        image,
                    });
                }
                None => {
                    progress.event("Image", &image, "Pulling");
                    engine
                        .pull(&image)
                        .await
                        .map_err(engine_err(format!("pull {image}")))?;
                    progress.event("Image", &image, "Pulled");
                    engine
                        .image_id(&image)
                        .await
                        .map_err(engine_err(format!("image {image}")))?
                        .unwrap_or_default()
                }
            };
            Ok::<_, ApplyError>((service.name.clone(), id))
        });
    Ok(try_join_all(jobs).await?.into_iter().collect())
}

/// Writes the secrets and configs given by `environment` or `content` that `services` use to
/// files to mount (an unused one needs no variable set).
pub fn materialise_files(project: &Project, services: &BTreeSet<String>) -> Result<(), ApplyError> {
    let used = |kind: &str, name: &str| {
        services
            .iter()
            .filter_map(|s| project.services.get(s))
            .any(|s| {
                let refs = if kind == "secrets" {
                    &s.config.secrets
                } else {
                    &s.config.configs
                };
                refs.iter().any(|r| r.source == name)
            })
    };
    for (kind, objects) in [("secrets", &project.secrets), ("configs", &project.configs)] {
        for (name, obj) in objects {
            if obj.file.is_some() || obj.external || !used(kind, name) {
                continue;
            }
            let content = match (&obj.environment, &obj.content) {
                (Some(var), _) => std::env::var(var).map_err(|_| ApplyError::SecretEnv {
                    kind: if kind == "secrets" {
                        "secret"
                    } else {
                        "config"
                    },
                    name: name.clone(),
                    var: var.clone(),
                })?,
                (None, Some(c)) => c.clone(),
                (None, None) => continue,
            };
            let dir = super::materialised_dir(&project.name);
            private_dir(&dir).map_err(|source| ApplyError::Write {
                path: dir.clone(),
                source,
            })?;
            let path = super::materialised_path(project, kind, name);
            write_readable(&path, content.as_bytes()).map_err(|source| ApplyError::Write {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Makes `dir` (and its parents) and checks that it is this user's own directory, readable
/// by nobody else: in a shared temporary directory another user could have made it first, or
/// put a symbolic link there.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a directory of this user",
        ));
    }
    // Made by an earlier version with the default mode.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes a materialised file whole (a temporary file renamed over the last one, which may be
/// read-only), mode 0444 as Compose's default: the container's user may be anyone.
fn write_readable(path: &std::path::Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = path.parent().unwrap_or(path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, content)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444))?;
    std::fs::rename(&tmp, path)
}

fn network_request(project: &Project, key: &str) -> NetworkCreateRequest {
    let net = &project.networks[key];
    let mut labels_map = net.labels.clone();
    labels_map.insert(labels::PROJECT.into(), project.name.clone());
    labels_map.insert(labels::NETWORK.into(), key.to_string());
    labels_map.insert(labels::VERSION.into(), labels::COMPOSE_VERSION.into());
    NetworkCreateRequest {
        name: net.name.clone(),
        driver: net.driver.clone().unwrap_or_else(|| "bridge".into()),
        internal: net.internal,
        attachable: net.attachable,
        enable_ipv6: net.enable_ipv6,
        enable_ipv4: net.enable_ipv4,
        options: (!net.driver_opts.is_empty()).then(|| net.driver_opts.clone()),
        labels: Some(labels_map),
        ipam: net.ipam.as_ref().map(|i| berth_api::models::Ipam {
            driver: i.driver.clone().unwrap_or_else(|| "default".into()),
            config: Some(
                i.config
                    .iter()
                    .map(|p| berth_api::models::IpamConfig {
                        subnet: p.subnet.clone().unwrap_or_default(),
                        ip_range: p.ip_range.clone().unwrap_or_default(),
                        gateway: p.gateway.clone().unwrap_or_default(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            options: (!i.options.is_empty()).then(|| i.options.clone()),
        }),
        ..Default::default()
    }
}

fn volume_request(project: &Project, key: &str) -> VolumeCreateOptions {
    let vol = &project.volumes[key];
    let mut labels_map = vol.labels.clone();
    labels_map.insert(labels::PROJECT.into(), project.name.clone());
    labels_map.insert(labels::VOLUME.into(), key.to_string());
    labels_map.insert(labels::VERSION.into(), labels::COMPOSE_VERSION.into());
    VolumeCreateOptions {
        name: vol.name.clone(),
        driver: vol.driver.clone().unwrap_or_else(|| "local".into()),
        driver_opts: (!vol.driver_opts.is_empty()).then(|| vol.driver_opts.clone()),
        labels: Some(labels_map),
    }
}

/// What the walk over services shares.
struct Walk<'a, E> {
    project: &'a Project,
    image_ids: &'a BTreeMap<String, String>,
    engine: &'a E,
    options: &'a ApplyOptions,
    progress: &'a dyn Progress,
}

/// Creates (and starts) one replica. A replacement is made as Compose v2 makes it: created
/// under a temporary name (`OLDID12_NAME`) beside the old container, then the old one is
/// stopped and removed and the new one renamed; so a create that fails (a bad option, a
/// missing image) leaves the old container as it was.
async fn create_replica<E: Engine>(
    w: &Walk<'_, E>,
    service: &Service,
    number: u32,
    name: &str,
    replaces: Option<&(String, String)>,
) -> Result<String, ApplyError> {
    let Walk {
        project,
        image_ids,
        engine,
        options,
        progress,
    } = *w;
    let mut inherited = Vec::new();
    if let Some((old_id, old_name)) = replaces {
        progress.event("Container", old_name, "Recreate");
        inherited = engine
            .anonymous_volumes(old_id)
            .await
            .map_err(engine_err(format!("inspect {old_name}")))?;
    }
    let spec = ReplicaSpec {
        number,
        oneoff: false,
        image_id: image_ids.get(&service.name).cloned(),
    };
    let mut request = create_request(project, service, &spec);
    if let Some(host) = request.host_config.as_mut() {
        let mounts = host.mounts.get_or_insert_with(Vec::new);
        for (volume, target) in inherited {
            match mounts.iter_mut().find(|m| m.target == target) {
                // The service's own anonymous volume at that path: the old one's data.
                Some(m) if m.kind == "volume" && m.source.is_empty() => m.source = volume,
                Some(_) => {}
                // An image VOLUME: mounted by name so the daemon does not make a new one.
                None => mounts.push(berth_api::models::Mount {
                    target,
                    source: volume,
                    kind: "volume".into(),
                    ..Default::default()
                }),
            }
        }
    }
    progress.event("Container", name, "Creating");
    let create_name = match replaces {
        Some((old_id, _)) => format!("{}_{name}", &old_id[..old_id.len().min(12)]),
        None => name.to_string(),
    };
    let id = engine
        .create_container(&create_name, &request)
        .await
        .map_err(engine_err(format!("create {name}")))?;
    if service.config.network_mode.is_none() {
        for (key, net) in ordered_networks(service).into_iter().skip(1) {
            let net_name = project
                .networks
                .get(key)
                .map_or(key.as_str(), |n| n.name.as_str());
            if let Err(e) = engine.connect(net_name, &id, &endpoint(service, net)).await {
                // The half-made container goes; the one it was to replace stays.
                let _ = engine.remove(&id, false).await;
                return Err(engine_err(format!("connect {name} to {net_name}"))(e));
            }
        }
    }
    if let Some((old_id, old_name)) = replaces {
        engine
            .stop(old_id, options.stop_timeout)
            .await
            .map_err(engine_err(format!("stop {old_name}")))?;
        engine
            .remove(old_id, false)
            .await
            .map_err(engine_err(format!("remove {old_name}")))?;
        engine
            .rename(&id, name)
            .await
            .map_err(engine_err(format!("rename {create_name} to {name}")))?;
    }
    progress.event(
        "Container",
        name,
        if replaces.is_some() {
            "Recreated"
        } else {
            "Created"
        },
    );
    if !options.no_start {
        engine
            .start(&id)
            .await
            .map_err(engine_err(format!("start {name}")))?;
        progress.event("Container", name, "Started");
    }
    Ok(id)
}

/// Waits until every container of `dependency` meets `condition`.
async fn wait_condition<E: Engine>(
    engine: &E,
    containers: &[(String, String)],
    dependency: &str,
    condition: &str,
    progress: &dyn Progress,
) -> Result<(), ApplyError> {
    if condition == "service_started" {
        return Ok(());
    }
    for (id, name) in containers {
        progress.event("Container", name, "Waiting");
        loop {
            let s = engine
                .status(id)
                .await
                .map_err(engine_err(format!("inspect {name}")))?;
            if condition == "service_healthy" {
                match s.health.as_deref() {
                    Some("healthy") | None if s.status == "running" => break,
                    Some("unhealthy") => {
                        return Err(ApplyError::Unhealthy {
                            container: name.clone(),
                        });
                    }
                    _ if s.status == "exited" || s.status == "dead" => {
                        return Err(ApplyError::Exited {
                            container: name.clone(),
                            code: s.exit_code,
                        });
                    }
                    _ => {}
                }
            } else if s.status == "exited" || s.status == "dead" {
                if s.exit_code != 0 {
                    return Err(ApplyError::NotCompleted {
                        dependency: dependency.to_string(),
                        code: s.exit_code,
                    });
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        progress.event(
            "Container",
            name,
            if condition == "service_healthy" {
                "Healthy"
            } else {
                "Exited"
            },
        );
    }
    Ok(())
}

/// `--wait`: every container running (and healthy when it has a health check), or a
/// container that exited for good; errors after `timeout`.
pub async fn wait_ready<E: Engine>(
    engine: &E,
    containers: &[(String, String)],
    timeout: Option<Duration>,
    progress: &dyn Progress,
) -> Result<(), ApplyError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let checks = containers.iter().map(|(id, name)| async move {
        loop {
            let s: ContainerStatus = engine
                .status(id)
                .await
                .map_err(engine_err(format!("inspect {name}")))?;
            match (s.status.as_str(), s.health.as_deref()) {
                ("running", None | Some("healthy")) => break,
                (_, Some("unhealthy")) => {
                    return Err(ApplyError::Unhealthy {
                        container: name.clone(),
                    });
                }
                ("exited" | "dead", _) => {
                    return Err(ApplyError::Exited {
                        container: name.clone(),
                        code: s.exit_code,
                    });
                }
                _ => {}
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err(ApplyError::Timeout {
                    container: name.clone(),
                    want: "healthy",
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        progress.event("Container", name, "Healthy");
        Ok(())
    });
    try_join_all(checks).await.map(|_| ())
}

/// Carries out `actions`; returns each service's containers afterwards (id, name).
pub async fn apply<E: Engine>(
    project: &Project,
    observed: &Observed,
    actions: &[Action],
    engine: &E,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<BTreeMap<String, Vec<(String, String)>>, ApplyError> {
    let creating: BTreeSet<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { service, .. } => Some(service.clone()),
            _ => None,
        })
        .collect();
    let image_ids = ensure_images(project, &creating, engine, options.pull, progress).await?;
    materialise_files(project, &creating)?;

    // Networks and volumes, concurrently.
    let resources = actions.iter().filter_map(|a| match a {
        Action::CreateNetwork { key } => Some(Box::pin(async move {
            let request = network_request(project, key);
            engine
                .create_network(&request)
                .await
                .map_err(engine_err(format!("create network {}", request.name)))?;
            progress.event("Network", &request.name, "Created");
            Ok::<_, ApplyError>(())
        })
            as std::pin::Pin<Box<dyn Future<Output = Result<(), ApplyError>>>>),
        Action::CreateVolume { key } => Some(Box::pin(async move {
            let request = volume_request(project, key);
            engine
                .create_volume(&request)
                .await
                .map_err(engine_err(format!("create volume {}", request.name)))?;
            progress.event("Volume", &request.name, "Created");
            Ok(())
        })),
        _ => None,
    });
    try_join_all(resources).await?;

    // Removals of containers whose service is gone (orphans), concurrently.
    let orphans = actions.iter().filter_map(|a| match a {
        Action::Remove { service, id, name } if !project.services.contains_key(service) => {
            Some(remove_one(engine, id, name, options, progress))
        }
        _ => None,
    });
    try_join_all(orphans).await?;

    // The containers each service has now, updated as the walk goes.
    let mut current: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for c in &observed.containers {
        if !c.oneoff {
            current
                .entry(c.service.clone())
                .or_default()
                .push((c.id.clone(), c.name.clone()));
        }
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    let ordered: Vec<&Service> = project.ordered_services();
    while done.len() < ordered.len() {
        let level: Vec<&Service> = ordered
            .iter()
            .copied()
            .filter(|s| !done.contains(&s.name))
            .filter(|s| {
                s.config
                    .depends_on
                    .keys()
                    .all(|d| done.contains(d) || !project.services.contains_key(d))
            })
            .collect();
        let level = if level.is_empty() {
            ordered
                .iter()
                .copied()
                .filter(|s| !done.contains(&s.name))
                .collect()
        } else {
            level
        };
        let snapshot = current.clone();
        let walk = Walk {
            project,
            image_ids: &image_ids,
            engine,
            options,
            progress,
        };
        let results = join_all(
            level
                .iter()
                .map(|service| run_service(&walk, service, actions, &snapshot)),
        )
        .await;
        for (service, result) in level.iter().zip(results) {
            current.insert(service.name.clone(), result?);
            done.insert(service.name.clone());
        }
    }
    Ok(current)
}

async fn remove_one<E: Engine>(
    engine: &E,
    id: &str,
    name: &str,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<(), ApplyError> {
    progress.event("Container", name, "Stopping");
    engine
        .stop(id, options.stop_timeout)
        .await
        .map_err(engine_err(format!("stop {name}")))?;
    // A replica scaled away (or an orphan) takes its anonymous volumes with it: nothing could
    // ever mount them again. A recreated one hands them over instead (`create_replica`).
    engine
        .remove(id, true)
        .await
        .map_err(engine_err(format!("remove {name}")))?;
    progress.event("Container", name, "Removed");
    Ok(())
}

async fn run_service<E: Engine>(
    w: &Walk<'_, E>,
    service: &Service,
    actions: &[Action],
    current: &BTreeMap<String, Vec<(String, String)>>,
) -> Result<Vec<(String, String)>, ApplyError> {
    let Walk {
        engine,
        options,
        progress,
        ..
    } = *w;
    let mine: Vec<&Action> = actions
        .iter()
        .filter(|a| a.service() == Some(service.name.as_str()))
        .collect();
    let mut containers = current.get(&service.name).cloned().unwrap_or_default();
    if mine.is_empty() {
        return Ok(containers);
    }
    if !options.no_start {
        for (dep, d) in &service.config.depends_on {
            if !options.services.contains(dep) && !current.contains_key(dep) {
                continue;
            }
            let theirs = current.get(dep).cloned().unwrap_or_default();
            wait_condition(engine, &theirs, dep, &d.condition, progress).await?;
        }
    }
    let removes = mine.iter().filter_map(|a| match a {
        Action::Remove { id, name, .. } => Some(async move {
            remove_one(engine, id, name, options, progress)
                .await
                .map(|_| id.clone())
        }),
        _ => None,
    });
    let removed: Vec<String> = try_join_all(removes).await?;
    containers.retain(|(id, _)| !removed.contains(id));
    let work = mine.iter().filter_map(|a| match a {
        Action::Create {
            number,
            name,
            replaces,
            ..
        } => Some(Box::pin(async move {
            let id = create_replica(w, service, *number, name, replaces.as_ref()).await?;
            Ok::<_, ApplyError>((replaces.as_ref().map(|r| r.0.clone()), (id, name.clone())))
        })
            as std::pin::Pin<
                Box<dyn Future<Output = Result<(Option<String>, (String, String)), ApplyError>>>,
            >),
        Action::Start { id, name, .. } => Some(Box::pin(async move {
            engine
                .start(id)
                .await
                .map_err(engine_err(format!("start {name}")))?;
            progress.event("Container", name, "Started");
            Ok((Some(id.clone()), (id.clone(), name.clone())))
        })),
        Action::Restart { id, name, .. } => Some(Box::pin(async move {
            engine
                .stop(id, options.stop_timeout)
                .await
                .map_err(engine_err(format!("stop {name}")))?;
            engine
                .start(id)
                .await
                .map_err(engine_err(format!("start {name}")))?;
            progress.event("Container", name, "Restarted");
            Ok((Some(id.clone()), (id.clone(), name.clone())))
        })),
        _ => None,
    });
    for (old, new) in try_join_all(work).await? {
        if let Some(old) = old {
            containers.retain(|(id, _)| id != &old);
        }
        containers.push(new);
    }
    containers.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(containers)
}
