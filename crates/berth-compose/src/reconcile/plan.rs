//! `plan`: what must change for the daemon's state to match the project, as a list of actions;
//! pure, so the convergence rules are tested without a daemon (golden tests below).
//!
//! Compose v2's rules: a replica is recreated only when its config hash changed (or with
//! `--force-recreate`; never with `--no-recreate`); a stopped replica is started; scaling
//! down removes the highest-numbered replicas; containers of services no longer in the
//! project are orphans (reported, removed with `--remove-orphans`).

use std::collections::{BTreeMap, BTreeSet};

use crate::labels;
use crate::model::Project;

/// A container of the project as the daemon reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub service: String,
    pub number: u32,
    pub config_hash: String,
    /// `running`, `exited`, `created`, `paused`, ...
    pub state: String,
    pub oneoff: bool,
    pub image: String,
    pub labels: BTreeMap<String, String>,
}

/// The project's resources on the daemon.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub containers: Vec<ObservedContainer>,
    /// Networks by name, with their labels.
    pub networks: BTreeMap<String, BTreeMap<String, String>>,
    /// Volumes by name.
    pub volumes: BTreeSet<String>,
}

/// `up`'s choices.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Services to converge (empty: all); their dependencies too unless `no_deps`.
    pub services: Vec<String>,
    pub no_deps: bool,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub remove_orphans: bool,
    /// `--scale SERVICE=N`.
    pub scale: BTreeMap<String, u32>,
    /// `create`: make containers, start nothing.
    pub no_start: bool,
    /// Image ids of built services: a container made from another image (its
    /// `com.docker.compose.image` label) is recreated, as Compose v2 does after a rebuild
    /// (the config hash leaves `build:` out).
    pub image_ids: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateNetwork {
        key: String,
    },
    CreateVolume {
        key: String,
    },
    /// Stop and remove a container (scale down, orphan, or before its replacement).
    Remove {
        service: String,
        id: String,
        name: String,
    },
    /// Create replica `number` (and start it unless `no_start`); `replaces` is removed first.
    Create {
        service: String,
        number: u32,
        name: String,
        replaces: Option<(String, String)>,
    },
    /// Start an existing, stopped, up-to-date replica.
    Start {
        service: String,
        id: String,
        name: String,
    },
    /// Restart a running, up-to-date replica whose dependency (with `restart: true`) was
    /// recreated.
    Restart {
        service: String,
        id: String,
        name: String,
    },
}

impl Action {
    /// The service an action belongs to (none for networks and volumes).
    pub fn service(&self) -> Option<&str> {
        match self {
            Action::CreateNetwork { .. } | Action::CreateVolume { .. } => None,
            Action::Remove { service, .. }
            | Action::Create { service, .. }
            | Action::Start { service, .. }
            | Action::Restart { service, .. } => Some(service),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::CreateNetwork { key } => write!(f, "create network {key}"),
            Action::CreateVolume { key } => write!(f, "create volume {key}"),
            Action::Remove { name, .. } => write!(f, "remove {name}"),
            Action::Create {
                name,
                replaces: Some(_),
                ..
            } => write!(f, "recreate {name}"),
            Action::Create { name, .. } => write!(f, "create {name}"),
            Action::Start { name, .. } => write!(f, "start {name}"),
            Action::Restart { name, .. } => write!(f, "restart {name}"),
        }
    }
}

/// Why a plan cannot be made (nothing has been changed).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("network {0} declared as external, but could not be found")]
    ExternalNetwork(String),
    #[error("volume {0} declared as external, but could not be found")]
    ExternalVolume(String),
    #[error(
        "network {name} was found but has incorrect label {label} set to {found:?} (expected: {expected:?})"
    )]
    ForeignNetwork {
        name: String,
        label: &'static str,
        found: String,
        expected: String,
    },
    #[error("no such service: {0}")]
    NoSuchService(String),
}

/// The services `up SERVICES` touches: those named and (unless `no_deps`) what they depend on.
pub fn selected_services(
    project: &Project,
    names: &[String],
    no_deps: bool,
) -> Result<BTreeSet<String>, PlanError> {
    if names.is_empty() {
        return Ok(project.services.keys().cloned().collect());
    }
    let mut out = BTreeSet::new();
    let mut queue: Vec<String> = names.to_vec();
    while let Some(n) = queue.pop() {
        let Some(s) = project.services.get(&n) else {
            return Err(PlanError::NoSuchService(n));
        };
        if out.insert(n.clone()) && !no_deps {
            queue.extend(s.config.depends_on.keys().cloned());
        }
    }
    Ok(out)
}

pub fn plan(
    project: &Project,
    observed: &Observed,
    options: &UpOptions,
) -> Result<Vec<Action>, PlanError> {
    let mut actions = Vec::new();
    let selected = selected_services(project, &options.services, options.no_deps)?;
    let used_networks: BTreeSet<&String> = project
        .services
        .values()
        .filter(|s| selected.contains(&s.name))
        .flat_map(|s| s.config.networks.keys())
        .collect();
    for (key, net) in &project.networks {
        if !used_networks.contains(key) {
            continue;
        }
        match observed.networks.get(&net.name) {
            None if net.external => return Err(PlanError::ExternalNetwork(net.name.clone())),
            None => actions.push(Action::CreateNetwork { key: key.clone() }),
            Some(found) if !net.external => {
                // Compose v2 refuses a network of the same name that another project made.
                if let Some(p) = found.get(labels::PROJECT)
                    && p != &project.name
                {
                    return Err(PlanError::ForeignNetwork {
                        name: net.name.clone(),
                        label: labels::PROJECT,
                        found: p.clone(),
                        expected: project.name.clone(),
                    });
                }
            }
            Some(_) => {}
        }
    }
    let used_volumes: BTreeSet<&String> = project
        .services
        .values()
        .filter(|s| selected.contains(&s.name))
        .flat_map(|s| s.config.volumes.iter())
        .filter(|v| v.kind == "volume")
        .filter_map(|v| v.source.as_ref())
        .collect();
    for (key, vol) in &project.volumes {
        if !used_volumes.contains(key) || observed.volumes.contains(&vol.name) {
            continue;
        }
        if vol.external {
            return Err(PlanError::ExternalVolume(vol.name.clone()));
        }
        actions.push(Action::CreateVolume { key: key.clone() });
    }
    // Orphans: containers of services the project no longer has (one-off ones are `run`'s).
    if options.remove_orphans {
        for c in &observed.containers {
            if !c.oneoff
                && !project.services.contains_key(&c.service)
                && !project.disabled.contains_key(&c.service)
            {
                actions.push(Action::Remove {
                    service: c.service.clone(),
                    id: c.id.clone(),
                    name: c.name.clone(),
                });
            }
        }
    }
    for service in project.ordered_services() {
        if !selected.contains(&service.name) {
            continue;
        }
        let want = options
            .scale
            .get(&service.name)
            .copied()
            .unwrap_or_else(|| service.replicas());
        let hash = labels::config_hash(service);
        let mut existing: Vec<&ObservedContainer> = observed
            .containers
            .iter()
            .filter(|c| c.service == service.name && !c.oneoff)
            .collect();
        existing.sort_by_key(|c| c.number);
        // Scale down: the highest numbers go.
        let keep = existing.len().min(want as usize);
        for c in existing[keep..].iter().rev() {
            actions.push(Action::Remove {
                service: service.name.clone(),
                id: c.id.clone(),
                name: c.name.clone(),
            });
        }
        for c in &existing[..keep] {
            let rebuilt = options
                .image_ids
                .get(&service.name)
                .is_some_and(|id| c.labels.get(labels::IMAGE) != Some(id));
            let stale = c.config_hash != hash || rebuilt;
            if options.force_recreate || (stale && !options.no_recreate) {
                actions.push(Action::Create {
                    service: service.name.clone(),
                    number: c.number,
                    name: crate::labels::container_name(&project.name, service, c.number),
                    replaces: Some((c.id.clone(), c.name.clone())),
                });
            } else if !options.no_start && c.state != "running" && c.state != "paused" {
                actions.push(Action::Start {
                    service: service.name.clone(),
                    id: c.id.clone(),
                    name: c.name.clone(),
                });
            }
        }
        // Scale up: the lowest free numbers.
        let used: BTreeSet<u32> = existing[..keep].iter().map(|c| c.number).collect();
        let mut number = 1;
        for _ in keep..want as usize {
            while used.contains(&number) {
                number += 1;
            }
            actions.push(Action::Create {
                service: service.name.clone(),
                number,
                name: crate::labels::container_name(&project.name, service, number),
                replaces: None,
            });
            number += 1;
        }
    }
    add_dependent_restarts(project, observed, &mut actions);
    Ok(actions)
}

/// `depends_on: {db: {restart: true}}`: when db is recreated, a running dependent that is
/// otherwise left alone is restarted (in dependency order, so after db).
fn add_dependent_restarts(project: &Project, observed: &Observed, actions: &mut Vec<Action>) {
    let mut changed: BTreeSet<String> = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Create {
                    replaces: Some(_),
                    ..
                }
            )
        })
        .filter_map(|a| a.service().map(str::to_string))
        .collect();
    for service in project.ordered_services() {
        let restarts = service
            .config
            .depends_on
            .iter()
            .any(|(dep, d)| d.restart && changed.contains(dep));
        let untouched = !actions
            .iter()
            .any(|a| a.service() == Some(service.name.as_str()));
        if !restarts || !untouched {
            continue;
        }
        for c in observed
            .containers
            .iter()
            .filter(|c| c.service == service.name && !c.oneoff && c.state == "running")
        {
            actions.push(Action::Restart {
                service: service.name.clone(),
                id: c.id.clone(),
                name: c.name.clone(),
            });
        }
        changed.insert(service.name.clone());
    }
}

/// Containers of the project that belong to no service of it.
pub fn orphans<'a>(project: &Project, observed: &'a Observed) -> Vec<&'a ObservedContainer> {
    observed
        .containers
        .iter()
        .filter(|c| {
            !c.oneoff
                && !project.services.contains_key(&c.service)
                && !project.disabled.contains_key(&c.service)
        })
        .collect()
}

#[cfg(test)]
mod tests;
