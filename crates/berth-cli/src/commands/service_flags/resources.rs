//! `--limit-*`/`--reserve-*` (`TaskTemplate.Resources`), `--placement-pref`,
//! `--replicas-max-per-node` (`Placement`), `--restart-window` (`RestartPolicy`), and the
//! update-only `--placement-pref-add/-rm` and `--restart-*`.

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};

use super::{duration, flag_error, mem_bytes, nano_cpus};

/// Flags with the same name and meaning on create and update: each given one is set.
#[derive(Debug, Args)]
pub struct TaskResourceFlags {
    /// Limit CPUs
    #[arg(long, value_name = "decimal")]
    pub limit_cpu: Option<String>,
    /// Limit Memory
    #[arg(long, value_name = "bytes")]
    pub limit_memory: Option<String>,
    /// Limit maximum number of processes (default 0 = unlimited)
    #[arg(long, value_name = "int")]
    pub limit_pids: Option<String>,
    /// Reserve CPUs
    #[arg(long, value_name = "decimal")]
    pub reserve_cpu: Option<String>,
    /// Reserve Memory
    #[arg(long, value_name = "bytes")]
    pub reserve_memory: Option<String>,
    /// Maximum number of tasks per node (default 0 = unlimited)
    #[arg(long, value_name = "uint")]
    pub replicas_max_per_node: Option<String>,
    /// Window used to evaluate the restart policy (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub restart_window: Option<String>,
}

fn preference(text: &str, flag: &str) -> Result<Value> {
    let Some((strategy, arg)) = text.split_once('=').filter(|(s, _)| !s.is_empty()) else {
        return Err(flag_error(
            text,
            flag,
            "placement preference must be of the format \"<strategy>=<arg>\"",
        ));
    };
    if strategy != "spread" {
        return Err(flag_error(
            text,
            flag,
            format!("unsupported placement preference {strategy} (only spread is supported)"),
        ));
    }
    Ok(json!({"Spread": {"SpreadDescriptor": arg}}))
}

fn integer<T: std::str::FromStr>(text: &str, flag: &str, go_fn: &str) -> Result<T> {
    text.parse().map_err(|_| {
        flag_error(
            text,
            flag,
            format!("strconv.{go_fn}: parsing \"{text}\": invalid syntax"),
        )
    })
}

impl TaskResourceFlags {
    pub fn apply(&self, spec: &mut Value) -> Result<()> {
        let task = &mut spec["TaskTemplate"];
        if let Some(v) = &self.limit_cpu {
            task["Resources"]["Limits"]["NanoCPUs"] = json!(nano_cpus(v, "--limit-cpu")?);
        }
        if let Some(v) = &self.limit_memory {
            task["Resources"]["Limits"]["MemoryBytes"] = json!(mem_bytes(v, "--limit-memory")?);
        }
        if let Some(v) = &self.limit_pids {
            task["Resources"]["Limits"]["Pids"] =
                json!(integer::<i64>(v, "--limit-pids", "ParseInt")?);
        }
        if let Some(v) = &self.reserve_cpu {
            task["Resources"]["Reservations"]["NanoCPUs"] = json!(nano_cpus(v, "--reserve-cpu")?);
        }
        if let Some(v) = &self.reserve_memory {
            task["Resources"]["Reservations"]["MemoryBytes"] =
                json!(mem_bytes(v, "--reserve-memory")?);
        }
        if let Some(v) = &self.replicas_max_per_node {
            task["Placement"]["MaxReplicas"] =
                json!(integer::<u64>(v, "--replicas-max-per-node", "ParseUint")?);
        }
        if let Some(v) = &self.restart_window {
            task["RestartPolicy"]["Window"] = json!(duration(v, "--restart-window")?);
        }
        Ok(())
    }
}

/// `--placement-pref` of `service create`.
#[derive(Debug, Args)]
pub struct PlacementFlags {
    /// Add a placement preference
    #[arg(long, value_name = "pref")]
    pub placement_pref: Vec<String>,
}

impl PlacementFlags {
    pub fn apply(&self, spec: &mut Value) -> Result<()> {
        if !self.placement_pref.is_empty() {
            let prefs = self
                .placement_pref
                .iter()
                .map(|p| preference(p, "--placement-pref"))
                .collect::<Result<Vec<_>>>()?;
            spec["TaskTemplate"]["Placement"]["Preferences"] = json!(prefs);
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct UpdateResourceFlags {
    /// Add a placement preference
    #[arg(long, value_name = "pref")]
    pub placement_pref_add: Vec<String>,
    /// Remove a placement preference
    #[arg(long, value_name = "pref")]
    pub placement_pref_rm: Vec<String>,
    /// Restart when condition is met ("none", "on-failure", "any")
    #[arg(long, value_name = "string")]
    pub restart_condition: Option<String>,
    /// Delay between restart attempts (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub restart_delay: Option<String>,
    /// Maximum number of restarts before giving up
    #[arg(long, value_name = "uint")]
    pub restart_max_attempts: Option<String>,
}

impl UpdateResourceFlags {
    pub fn apply(&self, spec: &mut Value) -> Result<()> {
        let task = &mut spec["TaskTemplate"];
        if !self.placement_pref_add.is_empty() || !self.placement_pref_rm.is_empty() {
            let rm = self
                .placement_pref_rm
                .iter()
                .map(|p| preference(p, "--placement-pref-rm"))
                .collect::<Result<Vec<_>>>()?;
            let mut prefs: Vec<Value> = task["Placement"]["Preferences"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            prefs.retain(|p| !rm.contains(p));
            for p in &self.placement_pref_add {
                prefs.push(preference(p, "--placement-pref-add")?);
            }
            task["Placement"]["Preferences"] = json!(prefs);
        }
        if let Some(c) = &self.restart_condition {
            if !["none", "on-failure", "any"].contains(&c.as_str()) {
                return Err(flag_error(
                    c,
                    "--restart-condition",
                    "invalid restart condition: must be one of \"none\", \"on-failure\", or \"any\"",
                ));
            }
            task["RestartPolicy"]["Condition"] = json!(c);
        }
        if let Some(d) = &self.restart_delay {
            task["RestartPolicy"]["Delay"] = json!(duration(d, "--restart-delay")?);
        }
        if let Some(m) = &self.restart_max_attempts {
            task["RestartPolicy"]["MaxAttempts"] =
                json!(integer::<u64>(m, "--restart-max-attempts", "ParseUint")?);
        }
        Ok(())
    }
}
