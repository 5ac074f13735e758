//! Reconciliation: [`plan`] compares the project with what the daemon has and lists actions;
//! [`apply`] carries them out through an [`Engine`], walking the dependency graph so that
//! independent services are handled concurrently and dependents wait for their conditions.

pub mod apply;
pub mod convert;
pub mod engine;
pub mod plan;

use std::path::PathBuf;

pub use apply::{ApplyError, Progress, apply};
pub use engine::{ClientEngine, Engine};
pub use plan::{Action, Observed, ObservedContainer, PlanError, UpOptions, orphans, plan};

use crate::model::Project;

/// Where a secret or config given by `environment` or `content` is written before it is
/// bind-mounted (Compose v2 copies it into the container instead; a file is simpler and
/// works with any daemon on this host).
pub fn materialised_path(project: &Project, kind: &str, name: &str) -> PathBuf {
    materialised_dir(&project.name).join(kind).join(name)
}

/// The directory of one project's materialised secrets and configs: private to the user who
/// runs compose (it holds secrets' values), removed by `down`.
pub fn materialised_dir(project: &str) -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join("berth-compose").join(project)
}
