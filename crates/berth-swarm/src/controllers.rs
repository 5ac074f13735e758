//! The manager's controllers, as swarmkit's orchestrator and scheduler: each pass reads one
//! snapshot of the store and describes the changes that move it toward the services' specs
//! ([`reconcile`], pure and tested on in-memory state); [`run`] proposes them and repeats on
//! every change. Every change names the version it was based on, so a pass that raced with an
//! agent's report is refused whole and simply redone on the next snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::store::{Command, Op, State};
use crate::types::{Meta, Mode, Node, Object, Service, Task, TaskState, TaskStatus, new_id};
use crate::{ProposeError, Proposer};

pub mod jobs;
pub mod scheduler;
pub mod update;

/// How many finished tasks per slot stay visible (`service ps`), Docker's default.
pub const DEFAULT_HISTORY: usize = 5;
/// Docker's default `--restart-delay`.
const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(5);

/// One pass: the orchestrator's changes, then the scheduler's over the result.
pub fn reconcile(state: &State, now: chrono::DateTime<chrono::Utc>) -> Vec<Op> {
    let mut ops = orchestrate(state, now);
    // Schedule the tasks just made too: apply the orchestrator's ops to a scratch copy (a
    // pointer copy: it shares the state's maps, see `store::Objects`).
    let mut next = state.clone();
    if next.apply(u64::MAX, &Command { ops: ops.clone() }).is_err() {
        return ops;
    }
    let scheduled = scheduler::schedule(&next);
    // Address the tasks just placed in the same command (see `crate::allocator`).
    let placed = next
        .apply(
            u64::MAX,
            &Command {
                ops: scheduled.clone(),
            },
        )
        .is_ok();
    ops.extend(scheduled);
    if placed {
        ops.extend(crate::allocator::allocate(&next));
    }
    merge(ops)
}

/// Folds several updates of one object into the last one (the scheduler updates tasks the
/// orchestrator just created or changed).
fn merge(ops: Vec<Op>) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::new();
    for op in ops {
        if let Op::Update { object, .. } = &op {
            let key = (object.kind(), object.meta().id.clone());
            if let Some(prev) = out.iter_mut().find(|o| match o {
                Op::Create(p) | Op::Update { object: p, .. } => {
                    (p.kind(), p.meta().id.clone()) == key
                }
                Op::Delete { .. } => false,
            }) {
                match prev {
                    Op::Create(p) | Op::Update { object: p, .. } => {
                        let version = p.meta().version;
                        *p = object.clone();
                        p.meta_mut().version = version;
                    }
                    Op::Delete { .. } => {}
                }
                continue;
            }
        }
        out.push(op);
    }
    out
}

fn update(task: &Task) -> Op {
    Op::Update {
        expect: Some(task.meta.version.index),
        object: Object::Task(task.clone()),
    }
}

fn shut_down(task: &Task) -> Op {
    let mut t = task.clone();
    t.desired_state = TaskState::Shutdown;
    t.meta.updated_at = crate::types::now();
    update(&t)
}

fn new_task(service: &Service, slot: u64, node_id: &str) -> Op {
    let mut task = Task {
        meta: Meta::new(new_id()),
        spec: std::sync::Arc::new(service.task_template().clone()),
        service_id: service.meta.id.clone(),
        slot,
        node_id: node_id.to_string(),
        status: TaskStatus::new(TaskState::New, "created"),
        desired_state: TaskState::Running,
        ..Default::default()
    };
    task.labels = BTreeMap::new();
    Op::Create(Object::Task(task))
}

/// A task the orchestrator still wants (desired running, or complete for jobs): it holds its
/// slot.
fn is_live(t: &Task) -> bool {
    t.desired_state <= TaskState::Complete
}

fn is_dirty(t: &Task, s: &Service) -> bool {
    *t.spec != *s.task_template()
}

fn parse_duration_ns(v: &Value, default: Duration) -> Duration {
    v.as_u64().map(Duration::from_nanos).unwrap_or(default)
}

/// The restart policy's verdict on a task that ended while wanted running.
fn should_restart(
    service: &Service,
    task: &Task,
    tasks_in_slot: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<bool> {
    let policy = &service.task_template()["RestartPolicy"];
    let condition = policy["Condition"].as_str().unwrap_or("any");
    let failed = matches!(task.status.state, TaskState::Failed | TaskState::Rejected);
    let wanted = match condition {
        "none" => false,
        "on-failure" => failed,
        _ => true,
    };
    if !wanted {
        return Some(false);
    }
    if let Some(max) = policy["MaxAttempts"].as_u64().filter(|m| *m > 0)
        && tasks_in_slot as u64 > max
    {
        return Some(false);
    }
    let delay = parse_duration_ns(&policy["Delay"], DEFAULT_RESTART_DELAY);
    let ended = chrono::DateTime::parse_from_rfc3339(&task.status.timestamp)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or(now);
    // None: not yet (the delay runs from when the task ended).
    (now - ended >= chrono::Duration::from_std(delay).unwrap_or_default()).then_some(true)
}

/// The orchestrator: desired tasks per slot (replicated) or per node (global), restarts,
/// rolling updates, and the removal of tasks whose service is gone.
pub fn orchestrate(state: &State, now: chrono::DateTime<chrono::Utc>) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut by_service: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in state.tasks.values() {
        by_service.entry(t.service_id.as_str()).or_default().push(t);
    }
    for (service_id, tasks) in &by_service {
        if !state.services.contains_key(*service_id) {
            for t in tasks {
                if is_live(t) {
                    ops.push(shut_down(t));
                } else if t.status.state.is_terminal() || t.node_id.is_empty() {
                    ops.push(Op::Delete {
                        kind: crate::types::Kind::Task,
                        id: t.meta.id.clone(),
                    });
                }
            }
        }
    }
    let history = state
        .cluster()
        .and_then(|c| c.spec["Orchestration"]["TaskHistoryRetentionLimit"].as_u64())
        .map(|n| n as usize)
        .unwrap_or(DEFAULT_HISTORY);
    for service in state.services.values() {
        let tasks = by_service
            .remove(service.meta.id.as_str())
            .unwrap_or_default();
        match service.mode() {
            Mode::Replicated(replicas) => {
                replicated(state, service, replicas, &tasks, now, &mut ops)
            }
            Mode::Global => global(state, service, &tasks, now, &mut ops),
            Mode::ReplicatedJob {
                max_concurrent,
                total,
            } => jobs::replicated(service, max_concurrent, total, &tasks, now, &mut ops),
            Mode::GlobalJob => jobs::global(state, service, &tasks, now, &mut ops),
        }
        collect_history(&tasks, history, &mut ops);
    }
    ops
}

fn node_lost(state: &State, t: &Task) -> bool {
    !t.node_id.is_empty()
        && state
            .nodes
            .get(&t.node_id)
            .is_none_or(|n| n.status.state == "down" || n.spec.availability == "drain")
}

/// What one slot (or one node of a global service) needs: a first task, a restart, the end
/// of a start-first replacement, or nothing; outdated tasks are collected for the update.
fn slot<'a>(
    state: &State,
    service: &Service,
    in_slot: &[&'a Task],
    now: chrono::DateTime<chrono::Utc>,
    progress: &mut update::Progress<'a>,
    ops: &mut Vec<Op>,
) -> bool {
    let live: Vec<&'a Task> = in_slot.iter().copied().filter(|t| is_live(t)).collect();
    let clean: Vec<&'a Task> = live
        .iter()
        .copied()
        .filter(|t| !is_dirty(t, service))
        .collect();
    let Some(current) = clean.last().or(live.last()).copied() else {
        return false;
    };
    if current.status.state.is_terminal() || node_lost(state, current) {
        let restart = if node_lost(state, current) {
            Some(true)
        } else {
            should_restart(service, current, in_slot.len(), now)
        };
        if restart == Some(true) {
            // The replacement takes the service's spec: an outdated task that failed is
            // updated by its restart.
            for t in &live {
                ops.push(shut_down(t));
            }
            let node = if current.slot == 0 {
                &current.node_id
            } else {
                ""
            };
            ops.push(new_task(service, current.slot, node));
        } else if is_dirty(current, service) {
            // Not restarted (yet), but outdated: the update replaces it, as swarmkit's
            // updater replaces every outdated slot whatever its state.
            progress.dirty.push(current);
        }
        return true;
    }
    if is_dirty(current, service) {
        progress.dirty.push(current);
    } else if current.status.state < TaskState::Running {
        progress.starting += 1;
    } else {
        // Start-first: the replacement runs, so the task it replaces goes.
        for t in live.iter().filter(|t| is_dirty(t, service)) {
            ops.push(shut_down(t));
        }
    }
    true
}

fn replicated(
    state: &State,
    service: &Service,
    replicas: u64,
    tasks: &[&Task],
    now: chrono::DateTime<chrono::Utc>,
    ops: &mut Vec<Op>,
) {
    let mut slots: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        slots.entry(t.slot).or_default().push(t);
    }
    let mut progress = update::Progress {
        slots: replicas as usize,
        ..Default::default()
    };
    for n in 1..=replicas {
        let in_slot = slots.get(&n).cloned().unwrap_or_default();
        if !slot(state, service, &in_slot, now, &mut progress, ops) {
            ops.push(new_task(service, n, ""));
        }
    }
    // Scale down: the highest slots go.
    for (_, in_slot) in slots.range(replicas + 1..) {
        for t in in_slot.iter().filter(|t| is_live(t)) {
            ops.push(shut_down(t));
        }
    }
    update::advance(service, tasks, progress, now, ops);
}

fn global(
    state: &State,
    service: &Service,
    tasks: &[&Task],
    now: chrono::DateTime<chrono::Utc>,
    ops: &mut Vec<Op>,
) {
    let mut progress = update::Progress::default();
    for node in state.nodes.values() {
        if !eligible(service, node) {
            for t in tasks
                .iter()
                .filter(|t| t.node_id == node.meta.id && is_live(t))
            {
                ops.push(shut_down(t));
            }
            continue;
        }
        progress.slots += 1;
        let on_node: Vec<&Task> = tasks
            .iter()
            .copied()
            .filter(|t| t.node_id == node.meta.id)
            .collect();
        if !slot(state, service, &on_node, now, &mut progress, ops)
            && node.spec.availability == "active"
        {
            ops.push(new_task(service, 0, &node.meta.id));
        }
    }
    update::advance(service, tasks, progress, now, ops);
}

/// A node a global service (or global job) runs on.
fn eligible(service: &Service, node: &Node) -> bool {
    node.status.state == "ready"
        && node.spec.availability != "drain"
        && constraints_of(service).iter().all(|c| c.matches(node))
}

/// Deletes the oldest finished tasks beyond the history limit, per slot (or node).
fn collect_history(tasks: &[&Task], limit: usize, ops: &mut Vec<Op>) {
    let mut groups: BTreeMap<(u64, &str), Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        let key = if t.slot == 0 {
            (0, t.node_id.as_str())
        } else {
            (t.slot, "")
        };
        groups.entry(key).or_default().push(t);
    }
    for group in groups.values_mut() {
        let mut done: Vec<&&Task> = group
            .iter()
            .filter(|t| !is_live(t) && (t.status.state.is_terminal() || t.node_id.is_empty()))
            .collect();
        done.sort_by(|a, b| a.meta.created_at.cmp(&b.meta.created_at));
        let excess = done.len().saturating_sub(limit);
        for t in &done[..excess] {
            ops.push(Op::Delete {
                kind: crate::types::Kind::Task,
                id: t.meta.id.clone(),
            });
        }
    }
}

/// A placement constraint (`node.hostname==x`, `node.labels.zone!=eu`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    key: String,
    equal: bool,
    value: String,
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let (key, value, equal) = if let Some((k, v)) = text.split_once("==") {
            (k, v, true)
        } else if let Some((k, v)) = text.split_once("!=") {
            (k, v, false)
        } else {
            return Err(format!("invalid constraint: {text}"));
        };
        let key = key.trim().to_string();
        let known = [
            "node.id",
            "node.hostname",
            "node.role",
            "node.platform.os",
            "node.platform.arch",
        ];
        if !known.contains(&key.to_lowercase().as_str())
            && !key.starts_with("node.labels.")
            && !key.starts_with("engine.labels.")
        {
            return Err(format!(
                "constraint expected one operator from ==, !=: {text}"
            ));
        }
        Ok(Constraint {
            key,
            equal,
            value: value.trim().to_string(),
        })
    }

    pub fn matches(&self, node: &Node) -> bool {
        let actual = node_attribute(node, &self.key);
        // Docker compares case-insensitively for everything but labels' values.
        let same = actual.is_some_and(|a| {
            if self.key.contains(".labels.") {
                a == self.value
            } else {
                a.eq_ignore_ascii_case(&self.value)
            }
        });
        same == self.equal
    }
}

/// A node's value for a constraint's or a spread preference's key (`node.id`,
/// `node.hostname`, `node.role`, `node.platform.*`, `node.labels.*`, `engine.labels.*`).
pub fn node_attribute(node: &Node, key: &str) -> Option<String> {
    let d = &node.description;
    match key.to_lowercase().as_str() {
        "node.id" => Some(node.meta.id.clone()),
        "node.hostname" => Some(node.hostname().to_string()),
        "node.role" => Some(node.spec.role.clone()),
        "node.platform.os" => d["Platform"]["OS"].as_str().map(str::to_string),
        "node.platform.arch" => d["Platform"]["Architecture"].as_str().map(str::to_string),
        _ => {
            if let Some(label) = key.strip_prefix("node.labels.") {
                node.spec.labels.get(label).cloned()
            } else if let Some(label) = key.strip_prefix("engine.labels.") {
                d["Engine"]["Labels"][label].as_str().map(str::to_string)
            } else {
                None
            }
        }
    }
}

pub fn constraints_of(service: &Service) -> Vec<Constraint> {
    service.task_template()["Placement"]["Constraints"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str())
                .filter_map(|c| Constraint::parse(c).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs passes until `stop`: after every change of the store, and every second (restart
/// delays end without a change).
pub async fn run(
    proposer: std::sync::Arc<dyn Proposer>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut watch = proposer.store().watch();
    loop {
        let state = proposer.store().snapshot();
        let ops = reconcile(&state, chrono::Utc::now());
        if !ops.is_empty() {
            match proposer.propose(Command { ops }).await {
                Ok(()) | Err(ProposeError::Conflict(_)) => {}
                Err(e) => tracing::warn!(error = %e, "orchestrator could not commit its changes"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = watch.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
#[path = "controllers_tests.rs"]
mod tests;
