//! Rolling updates and rollbacks, as swarmkit's updater, but as part of each stateless pass:
//! everything the updater remembers is read back from the store (the service's
//! `UpdateStatus`, the tasks' specs, creation times and status timestamps).
//!
//! - Outdated tasks are replaced `Parallelism` at a time (0: all at once), `stop-first` (the
//!   old task stops as its replacement is made) or `start-first` (the old task stops once the
//!   replacement runs). The next batch starts when the previous one runs (a task with a health
//!   check runs once healthy: the agent reports it `starting` until then) and `Delay` has
//!   passed since.
//! - A replacement that ends (fails, is rejected, or exits) while the update is in progress
//!   is a failure; past `MaxFailureRatio` of the slots the `FailureAction` applies: `pause`
//!   (`paused`), `rollback` (the previous spec comes back, `rollback_started`; a failing
//!   rollback pauses) or `continue`.
//! - Once nothing is outdated and the last replacement has run for `Monitor` (5 s by
//!   default), the update is `completed` (or `rollback_completed`).
//!
//! Not as swarmkit: a replacement's failure counts for as long as the update is in progress,
//! not only during the `Monitor` after that task started (the store does not keep when a task
//! started running).

use std::time::Duration;

use serde_json::{Value, json};

use super::{new_task, shut_down};
use crate::store::Op;
use crate::types::{Object, Service, Task, TaskState};

/// swarmkit's default `Monitor` of updates and rollbacks.
const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

/// What the orchestrator found in a service's slots.
#[derive(Debug, Default)]
pub struct Progress<'a> {
    /// The live outdated task of every slot that has no up-to-date one.
    pub dirty: Vec<&'a Task>,
    /// Up-to-date tasks not running yet (a batch, a restart or a new slot in flight).
    pub starting: usize,
    /// Slots (nodes for global services): what the failure ratio is measured against.
    pub slots: usize,
}

/// `UpdateStatus.State` values, as the Engine API names them.
pub const UPDATING: &str = "updating";
pub const PAUSED: &str = "paused";
pub const COMPLETED: &str = "completed";
pub const ROLLBACK_STARTED: &str = "rollback_started";
pub const ROLLBACK_PAUSED: &str = "rollback_paused";
pub const ROLLBACK_COMPLETED: &str = "rollback_completed";

/// A service's `UpdateConfig` (or `RollbackConfig`) with swarmkit's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub parallelism: usize,
    pub delay: Duration,
    pub failure_action: String,
    pub monitor: Duration,
    pub max_failure_ratio: f64,
    pub start_first: bool,
}

impl Config {
    pub fn of(v: &Value) -> Config {
        let ns = |v: &Value| v.as_u64().map(Duration::from_nanos);
        Config {
            parallelism: v["Parallelism"].as_u64().unwrap_or(1) as usize,
            delay: ns(&v["Delay"]).unwrap_or_default(),
            failure_action: v["FailureAction"].as_str().unwrap_or("pause").to_string(),
            monitor: ns(&v["Monitor"])
                .filter(|m| !m.is_zero())
                .unwrap_or(DEFAULT_MONITOR),
            max_failure_ratio: v["MaxFailureRatio"].as_f64().unwrap_or(0.0),
            start_first: v["Order"].as_str() == Some("start-first"),
        }
    }
}

fn time(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn elapsed(since: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

/// The service with a new `UpdateStatus` (and spec, for a rollback), as one update.
fn set_status(service: &Service, state: &str, message: &str, now: &str, ops: &mut Vec<Op>) {
    let mut s = service.clone();
    let started = service
        .update_status
        .as_ref()
        .map(|u| u["StartedAt"].clone())
        .filter(|v| !v.is_null() && state != UPDATING)
        .unwrap_or(json!(now));
    let mut status = json!({"State": state, "StartedAt": started, "Message": message});
    if state == COMPLETED || state == ROLLBACK_COMPLETED {
        status["CompletedAt"] = json!(now);
    }
    s.update_status = Some(status);
    if state == ROLLBACK_STARTED {
        // swarmkit: the previous spec comes back and is forgotten (no rollback of a rollback).
        if let Some(prev) = s.previous_spec.take() {
            s.endpoint["Spec"] = prev.get("EndpointSpec").cloned().unwrap_or(json!({}));
            s.spec = prev;
        }
    }
    s.meta.updated_at = now.to_string();
    ops.push(Op::Update {
        expect: Some(service.meta.version.index),
        object: Object::Service(s),
    });
}

/// Moves the service's update on by one step, if it can.
pub(super) fn advance(
    service: &Service,
    tasks: &[&Task],
    progress: Progress<'_>,
    now: chrono::DateTime<chrono::Utc>,
    ops: &mut Vec<Op>,
) {
    let status = service.update_status.clone().unwrap_or(Value::Null);
    let state = status["State"].as_str().unwrap_or_default();
    if state == PAUSED || state == ROLLBACK_PAUSED {
        return;
    }
    let rolling_back = state == ROLLBACK_STARTED;
    let config = Config::of(if rolling_back {
        &service.spec["RollbackConfig"]
    } else {
        &service.spec["UpdateConfig"]
    });
    let stamp = crate::types::now();
    let in_progress = state == UPDATING || rolling_back;
    let started = time(&status["StartedAt"]);
    // The replacements this update made: up to date, and created since it started.
    let replacements: Vec<&Task> = match started.filter(|_| in_progress) {
        Some(started) => tasks
            .iter()
            .copied()
            .filter(|t| {
                *t.spec == *service.task_template()
                    && time(&json!(t.meta.created_at)).is_some_and(|c| c >= started)
            })
            .collect(),
        None => Vec::new(),
    };
    if in_progress && config.failure_action != "continue" {
        let failed: Vec<&&Task> = replacements
            .iter()
            .filter(|t| {
                matches!(
                    t.status.state,
                    TaskState::Complete | TaskState::Failed | TaskState::Rejected
                )
            })
            .collect();
        if let Some(last) = failed.iter().max_by_key(|t| t.status.timestamp.clone())
            && failed.len() as f64 / progress.slots.max(1) as f64 > config.max_failure_ratio
        {
            let id = &last.meta.id;
            if rolling_back || config.failure_action != "rollback" {
                let (state, what) = if rolling_back {
                    (ROLLBACK_PAUSED, "rollback")
                } else {
                    (PAUSED, "update")
                };
                let msg = format!("{what} paused due to failure or early termination of task {id}");
                set_status(service, state, &msg, &stamp, ops);
            } else if service.previous_spec.is_some() {
                let msg =
                    format!("update rolled back due to failure or early termination of task {id}");
                set_status(service, ROLLBACK_STARTED, &msg, &stamp, ops);
            }
            return;
        }
    }
    // When the last replacement started running (its status' time).
    let last_ran = replacements
        .iter()
        .filter(|t| t.status.state == TaskState::Running)
        .filter_map(|t| time(&json!(t.status.timestamp)))
        .max();
    if progress.dirty.is_empty() {
        if in_progress && progress.starting == 0 {
            let mut wait = config.monitor;
            if config.delay >= wait {
                wait = config.delay + Duration::from_secs(1);
            }
            if last_ran.is_none_or(|t| elapsed(t, now) >= wait) {
                let (state, msg) = if rolling_back {
                    (ROLLBACK_COMPLETED, "rollback completed")
                } else {
                    (COMPLETED, "update completed")
                };
                set_status(service, state, msg, &stamp, ops);
            }
        }
        return;
    }
    if status.is_null() {
        set_status(service, UPDATING, "update in progress", &stamp, ops);
    }
    if progress.starting > 0 || last_ran.is_some_and(|t| elapsed(t, now) < config.delay) {
        return;
    }
    let batch = match config.parallelism {
        0 => progress.dirty.len(),
        n => n,
    };
    for t in progress.dirty.iter().take(batch) {
        if !config.start_first {
            ops.push(shut_down(t));
        }
        let node = if t.slot == 0 { t.node_id.as_str() } else { "" };
        ops.push(new_task(service, t.slot, node));
    }
}
