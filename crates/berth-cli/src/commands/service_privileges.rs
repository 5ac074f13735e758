//! `--privileged`, `--device` and `--cap-add`/`--cap-drop` of `berth service create/update`.
//! `Privileged` and `Devices` are Berth's extension of `ContainerSpec` (the docker CLI has no
//! such flags; see `berth_swarm::task_privileges`).

use anyhow::{Result, anyhow};
use clap::Args;
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct CreateFlags {
    /// Give extended privileges to the service's tasks (Berth extension)
    #[arg(long)]
    pub privileged: bool,
    /// Add a host device to the tasks, SRC[:DST[:PERMS]] (Berth extension)
    #[arg(long, value_name = "list")]
    pub device: Vec<String>,
    /// Add Linux capabilities
    #[arg(long, value_name = "list")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long, value_name = "list")]
    pub cap_drop: Vec<String>,
}

fn device(text: &str, flag: &str) -> Result<Value> {
    let d = super::run_opts::parse_device(text)
        .map_err(|e| anyhow!("invalid argument \"{text}\" for \"{flag}\" flag: {e}"))?;
    Ok(json!(d))
}

impl CreateFlags {
    pub fn apply(&self, cs: &mut Value) -> Result<()> {
        if self.privileged {
            cs["Privileged"] = json!(true);
        }
        if !self.device.is_empty() {
            let devices = self
                .device
                .iter()
                .map(|d| device(d, "--device"))
                .collect::<Result<Vec<_>>>()?;
            cs["Devices"] = json!(devices);
        }
        if !self.cap_add.is_empty() {
            cs["CapabilityAdd"] = json!(self.cap_add);
        }
        if !self.cap_drop.is_empty() {
            cs["CapabilityDrop"] = json!(self.cap_drop);
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct UpdateFlags {
    /// Give extended privileges to the tasks, or take them back with --privileged=false
    /// (Berth extension)
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub privileged: Option<bool>,
    /// Add or replace a host device, SRC[:DST[:PERMS]] (Berth extension)
    #[arg(long, value_name = "list")]
    pub device_add: Vec<String>,
    /// Remove a device by its path in the container (or on the host)
    #[arg(long, value_name = "list")]
    pub device_rm: Vec<String>,
}

impl UpdateFlags {
    pub fn apply(&self, cs: &mut Value) -> Result<()> {
        if let Some(p) = self.privileged {
            cs["Privileged"] = json!(p);
        }
        if self.device_add.is_empty() && self.device_rm.is_empty() {
            return Ok(());
        }
        let mut devices: Vec<Value> = cs["Devices"].as_array().cloned().unwrap_or_default();
        let named = |d: &Value, path: &str| d["PathInContainer"] == path || d["PathOnHost"] == path;
        devices.retain(|d| !self.device_rm.iter().any(|p| named(d, p)));
        for text in &self.device_add {
            let new = device(text, "--device-add")?;
            devices.retain(|d| d["PathInContainer"] != new["PathInContainer"]);
            devices.push(new);
        }
        cs["Devices"] = json!(devices);
        Ok(())
    }
}
