//! The flag groups of `service update` that have no create counterpart: `--args`,
//! `--label-add/-rm`, `--container-label-add/-rm`, `--mount-add/-rm`.

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};

use super::container::{CommonFlags, mount};
use super::{TaskResourceFlags, UpdateNetworkFlags, UpdateResourceFlags, shlex, update_map};
use crate::commands::Env;

#[derive(Debug, Args)]
pub struct UpdateContainerFlags {
    /// Service command args
    #[arg(long, value_name = "command", allow_hyphen_values = true)]
    pub args: Option<String>,
    /// Add or update a service label
    #[arg(long, value_name = "list")]
    pub label_add: Vec<String>,
    /// Remove a label by its key
    #[arg(long, value_name = "list")]
    pub label_rm: Vec<String>,
    /// Add or update a container label
    #[arg(long, value_name = "list")]
    pub container_label_add: Vec<String>,
    /// Remove a container label by its key
    #[arg(long, value_name = "list")]
    pub container_label_rm: Vec<String>,
    /// Add or update a mount on a service
    #[arg(long, value_name = "mount")]
    pub mount_add: Vec<String>,
    /// Remove a mount by its target path
    #[arg(long, value_name = "list")]
    pub mount_rm: Vec<String>,
    /// Send registry authentication details to swarm agents
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Do not query the registry to resolve image digest and supported platforms (berth's
    /// CLI never does: the spec keeps the image as given)
    #[arg(long)]
    pub no_resolve_image: bool,
    /// Suppress progress output (berth's update prints none but the service's name)
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    pub lists: super::update_lists::UpdateListFlags,
}

impl UpdateContainerFlags {
    pub fn apply(&self, spec: &mut Value) -> Result<()> {
        update_map(&mut spec["Labels"], &self.label_add, &self.label_rm);
        let task = &mut spec["TaskTemplate"];
        let mut cs = task["ContainerSpec"].take();
        update_map(
            &mut cs["Labels"],
            &self.container_label_add,
            &self.container_label_rm,
        );
        if let Some(a) = &self.args {
            cs["Args"] = json!(shlex(a));
        }
        if !self.mount_add.is_empty() || !self.mount_rm.is_empty() {
            let mut mounts: Vec<Value> = cs["Mounts"].as_array().cloned().unwrap_or_default();
            mounts.retain(|m| !self.mount_rm.iter().any(|t| m["Target"] == t.as_str()));
            for text in &self.mount_add {
                let new = mount(text, "--mount-add")?;
                mounts.retain(|m| m["Target"] != new["Target"]);
                mounts.push(new);
            }
            cs["Mounts"] = json!(mounts);
        }
        let outcome = self
            .common
            .apply(&mut cs, task)
            .and_then(|()| self.lists.apply(&mut cs));
        task["ContainerSpec"] = cs;
        outcome
    }
}

/// Everything `service update` takes beyond the flags in `service.rs`.
#[derive(Debug, Args)]
pub struct ServiceUpdateFlags {
    #[command(flatten)]
    pub container: UpdateContainerFlags,
    #[command(flatten)]
    pub network: UpdateNetworkFlags,
    #[command(flatten)]
    pub resources: TaskResourceFlags,
    #[command(flatten)]
    pub update_resources: UpdateResourceFlags,
}

impl ServiceUpdateFlags {
    /// Looks up what the change needs from the daemon (network IDs), before the spec is read.
    pub async fn prepare(&self, env: &Env) -> Result<(Vec<Value>, Vec<String>)> {
        self.network.resolve(env).await
    }

    pub fn apply(&self, spec: &mut Value, networks: (Vec<Value>, Vec<String>)) -> Result<()> {
        self.container.apply(spec)?;
        self.network.apply(spec, networks)?;
        self.resources.apply(spec)?;
        self.update_resources.apply(spec)
    }
}
