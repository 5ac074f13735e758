//! `service logs`, `service rollback`, the job modes of `service create` and the
//! update/rollback config flags of `create` and `update`, as the docker CLI has them.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Result, bail};
use berth_client::{LogsOptions, Query, StreamKind};
use clap::Args;
use futures_util::StreamExt;
use http::Method;
use serde_json::{Value, json};

use super::Env;
use super::swarm::call;
use crate::output::{self, StatusError, describe_client_error};

/// `--update-*` and `--rollback-*` (docker's flags; unset ones keep the spec's values).
#[derive(Debug, Args, Default)]
pub struct UpdateConfigFlags {
    /// Delay between updates (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub update_delay: Option<String>,
    /// Action on update failure ("pause", "continue", "rollback")
    #[arg(long, value_name = "string")]
    pub update_failure_action: Option<String>,
    /// Failure rate to tolerate during an update
    #[arg(long, value_name = "float")]
    pub update_max_failure_ratio: Option<f64>,
    /// Duration after each task update to monitor for failure (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub update_monitor: Option<String>,
    /// Update order ("start-first", "stop-first")
    #[arg(long, value_name = "string")]
    pub update_order: Option<String>,
    /// Delay between task rollbacks (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub rollback_delay: Option<String>,
    /// Action on rollback failure ("pause", "continue")
    #[arg(long, value_name = "string")]
    pub rollback_failure_action: Option<String>,
    /// Failure rate to tolerate during a rollback
    #[arg(long, value_name = "float")]
    pub rollback_max_failure_ratio: Option<f64>,
    /// Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub rollback_monitor: Option<String>,
    /// Rollback order ("start-first", "stop-first")
    #[arg(long, value_name = "string")]
    pub rollback_order: Option<String>,
    /// Maximum number of tasks rolled back simultaneously (0 to roll back all at once)
    #[arg(long, value_name = "uint")]
    pub rollback_parallelism: Option<u64>,
}

fn duration_ns(text: &str, flag: &str) -> Result<u64> {
    super::service::duration_ns(text, flag)
}

impl UpdateConfigFlags {
    /// Writes the flags given into `spec`'s `UpdateConfig` and `RollbackConfig`.
    pub fn apply(&self, spec: &mut Value) -> Result<()> {
        let sections = [
            (
                "UpdateConfig",
                "update",
                &self.update_delay,
                &self.update_failure_action,
                self.update_max_failure_ratio,
                &self.update_monitor,
                &self.update_order,
                None,
            ),
            (
                "RollbackConfig",
                "rollback",
                &self.rollback_delay,
                &self.rollback_failure_action,
                self.rollback_max_failure_ratio,
                &self.rollback_monitor,
                &self.rollback_order,
                self.rollback_parallelism,
            ),
        ];
        for (key, flag, delay, action, ratio, monitor, order, parallelism) in sections {
            let c = &mut spec[key];
            if !c.is_object() {
                *c = json!({});
            }
            if let Some(d) = delay {
                c["Delay"] = json!(duration_ns(d, &format!("--{flag}-delay"))?);
            }
            if let Some(a) = action {
                let allowed: &[&str] = if flag == "update" {
                    &["pause", "continue", "rollback"]
                } else {
                    &["pause", "continue"]
                };
                if !allowed.contains(&a.as_str()) {
                    bail!(
                        "invalid argument \"{a}\" for \"--{flag}-failure-action\" flag: value must be one of {}",
                        allowed.join(", ")
                    );
                }
                c["FailureAction"] = json!(a);
            }
            if let Some(r) = ratio {
                c["MaxFailureRatio"] = json!(r);
            }
            if let Some(m) = monitor {
                c["Monitor"] = json!(duration_ns(m, &format!("--{flag}-monitor"))?);
            }
            if let Some(o) = order {
                if o != "start-first" && o != "stop-first" {
                    bail!(
                        "invalid argument \"{o}\" for \"--{flag}-order\" flag: value must be one of start-first, stop-first"
                    );
                }
                c["Order"] = json!(o);
            }
            if let Some(p) = parallelism {
                c["Parallelism"] = json!(p);
            }
        }
        Ok(())
    }
}

/// `Mode` for `--mode` (with `--replicas`, `--max-concurrent`), docker's rules and texts.
pub fn mode(mode: &str, replicas: Option<u64>, max_concurrent: Option<u64>) -> Result<Value> {
    if max_concurrent.is_some() && mode != "replicated-job" {
        bail!("max-concurrent can only be used with replicated-job mode");
    }
    Ok(match mode {
        "replicated" => json!({"Replicated": {"Replicas": replicas.unwrap_or(1)}}),
        "global" | "global-job" if replicas.is_some() => {
            bail!("replicas can only be used with replicated or replicated-job mode")
        }
        "global" => json!({"Global": {}}),
        "global-job" => json!({"GlobalJob": {}}),
        "replicated-job" => {
            let total = replicas.unwrap_or(1);
            json!({"ReplicatedJob": {"MaxConcurrent": max_concurrent.unwrap_or(total), "TotalCompletions": total}})
        }
        other => bail!("invalid argument \"{other}\" for \"--mode\" flag: unsupported mode"),
    })
}

/// The `Replicas` column of `service ls`, as the docker CLI writes it.
pub fn replicas_column(service: &Value) -> String {
    let st = &service["ServiceStatus"];
    let n = |k: &str| st[k].as_u64().unwrap_or(0);
    let (running, desired, completed) = (n("RunningTasks"), n("DesiredTasks"), n("CompletedTasks"));
    let mode = &service["Spec"]["Mode"];
    if let Some(job) = mode.get("ReplicatedJob") {
        let total = job["TotalCompletions"].as_u64().unwrap_or(0);
        return format!("{running}/{desired} ({completed}/{total} completed)");
    }
    if mode.get("GlobalJob").is_some() {
        return format!(
            "{running}/{desired} ({completed}/{} completed)",
            desired + completed
        );
    }
    format!("{running}/{desired}")
}

/// The `Mode` column: `replicated`, `global`, `replicated job`, `global job`.
pub fn mode_column(service: &Value) -> &'static str {
    let mode = &service["Spec"]["Mode"];
    if mode.get("Global").is_some() {
        "global"
    } else if mode.get("ReplicatedJob").is_some() {
        "replicated job"
    } else if mode.get("GlobalJob").is_some() {
        "global job"
    } else {
        "replicated"
    }
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    pub detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

/// `service rollback`: the previous spec comes back (the service's `RollbackConfig` applies).
pub async fn rollback(env: &Env, a: RollbackArgs) -> Result<()> {
    let s = call(
        env,
        Method::GET,
        &format!("/services/{}", a.service),
        &Query::new(),
        None,
    )
    .await?;
    let mut q = Query::new();
    q.push("version", s["Version"]["Index"].to_string());
    q.push("rollback", "previous");
    let path = format!("/services/{}/update", s["ID"].as_str().unwrap_or_default());
    call(env, Method::POST, &path, &q, Some(&s["Spec"])).await?;
    output::out(&format!("{}\n", a.service));
    Ok(())
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Do not map IDs to Names in output
    #[arg(long)]
    pub no_resolve: bool,
    /// Do not include task IDs in output
    #[arg(long)]
    pub no_task_ids: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Do not neatly format logs
    #[arg(long)]
    pub raw: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42
    /// minutes)
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, value_name = "string", default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    #[arg(value_name = "SERVICE|TASK")]
    pub target: String,
}

/// `service logs`: every task's lines, each as `web.1.xyz@node    | line` (docker's shape).
pub async fn logs(env: &Env, a: LogsArgs) -> Result<()> {
    let client = env.client()?;
    let get =
        |path: String| async move { call(env, Method::GET, &path, &Query::new(), None).await };
    let (path, tty, width) = match get(format!("/services/{}", a.target)).await {
        Ok(s) => {
            let width = s["Spec"]["Mode"]["Replicated"]["Replicas"]
                .as_u64()
                .map(|n| n.to_string().len())
                .unwrap_or(1);
            let id = s["ID"].as_str().unwrap_or_default().to_string();
            let tty = s["Spec"]["TaskTemplate"]["ContainerSpec"]["TTY"] == true;
            (format!("/services/{id}/logs"), tty, width)
        }
        Err(_) => match get(format!("/tasks/{}", a.target)).await {
            Ok(t) => {
                let id = t["ID"].as_str().unwrap_or_default().to_string();
                let tty = t["Spec"]["ContainerSpec"]["TTY"] == true;
                let width = t["Slot"].as_u64().unwrap_or(0).to_string().len();
                (format!("/tasks/{id}/logs"), tty, width)
            }
            Err(_) => bail!("no such task or service: {}", a.target),
        },
    };
    if tty && !a.raw {
        bail!("tty service logs only supported with --raw");
    }
    let now = chrono::Local::now();
    let since = match a.since.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(crate::commands::system::get_timestamp(s, now)?),
        None => None,
    };
    let options = LogsOptions {
        follow: a.follow,
        since,
        until: None,
        timestamps: a.timestamps,
        tail: Some(a.tail.clone()),
        stdout: true,
        stderr: true,
        details: a.details || !a.raw,
    };
    let mut stream = Box::pin(
        client
            .logs_at(&path, &options, tty)
            .await
            .map_err(|e| StatusError::error(1, describe_client_error(&e)))?,
    );
    let mut names = Names::default();
    while let Some(frame) = stream.next().await {
        let (kind, bytes) = frame?;
        let line = if a.raw || tty {
            bytes.to_vec()
        } else {
            names.format(env, &a, width, &bytes).await?
        };
        match kind {
            StreamKind::Stderr | StreamKind::SystemError => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&line);
                let _ = err.flush();
            }
            _ => output::write_or_exit(&mut std::io::stdout().lock(), &line),
        }
    }
    Ok(())
}

/// Task, service and node names for the line prefixes, looked up once each.
#[derive(Default)]
struct Names {
    cache: HashMap<(String, String, String), String>,
}

impl Names {
    async fn format(
        &mut self,
        env: &Env,
        a: &LogsArgs,
        width: usize,
        line: &[u8],
    ) -> Result<Vec<u8>> {
        let text = String::from_utf8_lossy(line);
        let mut parts = text.splitn(if a.timestamps { 3 } else { 2 }, ' ');
        let ts = if a.timestamps { parts.next() } else { None };
        let (Some(details), Some(rest)) = (parts.next(), parts.next()) else {
            bail!("invalid context in log message: {text}");
        };
        let attrs: HashMap<String, String> =
            form_urlencoded::parse(details.replace(',', "&").as_bytes())
                .into_owned()
                .collect();
        let attr = |k: &str| {
            attrs
                .get(&format!("com.docker.swarm.{k}"))
                .cloned()
                .unwrap_or_default()
        };
        let key = (attr("node.id"), attr("service.id"), attr("task.id"));
        if !self.cache.contains_key(&key) {
            let get = |path: String| async move {
                call(env, Method::GET, &path, &Query::new(), None).await
            };
            let (node, service) = if a.no_resolve {
                (key.0.clone(), key.1.clone())
            } else {
                let n = get(format!("/nodes/{}", key.0)).await.unwrap_or_default();
                let s = get(format!("/services/{}", key.1))
                    .await
                    .unwrap_or_default();
                (
                    n["Description"]["Hostname"]
                        .as_str()
                        .unwrap_or(&key.0)
                        .to_string(),
                    s["Spec"]["Name"].as_str().unwrap_or(&key.1).to_string(),
                )
            };
            let t = get(format!("/tasks/{}", key.2)).await.unwrap_or_default();
            let slot = t["Slot"].as_u64().unwrap_or(0);
            let mut name = format!("{service}.{slot}");
            if !a.no_task_ids {
                let id: String = if a.no_trunc {
                    key.2.clone()
                } else {
                    key.2.chars().take(12).collect()
                };
                name = format!("{name}.{id}");
            }
            let pad = width.saturating_sub(slot.to_string().len());
            self.cache
                .insert(key.clone(), format!("{name}@{node}{}", " ".repeat(pad)));
        }
        let mut out = String::new();
        if let Some(ts) = ts {
            out.push_str(ts);
            out.push(' ');
        }
        out.push_str(&self.cache[&key]);
        out.push_str("    | ");
        if a.details {
            let mut d: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            d.sort();
            out.push_str(&d.join(","));
            out.push(' ');
        }
        out.push_str(rest);
        Ok(out.into_bytes())
    }
}
