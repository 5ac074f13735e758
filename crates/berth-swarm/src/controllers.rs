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

/// How many finished tasks per slot stay visible (`service ps`), Docker's default.
pub const DEFAULT_HISTORY: usize = 5;
/// Docker's default `--restart-delay`.
const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(5);

/// One pass: the orchestrator's changes, then the scheduler's over the result.
pub fn reconcile(state: &State, now: chrono::DateTime<chrono::Utc>) -> Vec<Op> {
    let mut ops = orchestrate(state, now);
    let mut next = state.clone();
    // Schedule the tasks just made too: apply the orchestrator's ops to a scratch copy.
    if next.apply(u64::MAX, &Command { ops: ops.clone() }).is_err() {
        return ops;
    }
    let scheduled = schedule(&next);
    // Address the tasks just placed in the same command (see `crate::allocator`).
    if next
        .apply(
            u64::MAX,
            &Command {
                ops: scheduled.clone(),
            },
        )
        .is_ok()
    {
        ops.extend(scheduled);
        ops.extend(crate::allocator::allocate(&next));
    } else {
        ops.extend(scheduled);
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
        spec: service.task_template().clone(),
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

/// A task the orchestrator still wants (desired running): it holds its slot.
fn is_live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running
}

fn is_dirty(t: &Task, s: &Service) -> bool {
    &t.spec != s.task_template()
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
    let mut dirty = Vec::new();
    let mut in_progress = 0;
    for slot in 1..=replicas {
        let in_slot = slots.get(&slot).cloned().unwrap_or_default();
        let live: Vec<&&Task> = in_slot.iter().filter(|t| is_live(t)).collect();
        let Some(current) = live.last() else {
            ops.push(new_task(service, slot, ""));
            continue;
        };
        if current.status.state.is_terminal() || node_lost(state, current) {
            let restart = if node_lost(state, current) {
                Some(true)
            } else {
                should_restart(service, current, in_slot.len(), now)
            };
            if restart == Some(true) {
                ops.push(shut_down(current));
                ops.push(new_task(service, slot, ""));
            }
            continue;
        }
        if is_dirty(current, service) {
            dirty.push(**current);
        } else if current.status.state < TaskState::Running {
            in_progress += 1;
        }
    }
    // Scale down: the highest slots go.
    for (slot, in_slot) in slots.range(replicas + 1..) {
        let _ = slot;
        for t in in_slot.iter().filter(|t| is_live(t)) {
            ops.push(shut_down(t));
        }
    }
    rolling_update(service, &dirty, in_progress, ops);
}

/// Replaces outdated tasks `Parallelism` at a time (0: all), stopping each before starting its
/// replacement; a batch starts when the previous one's tasks run.
fn rolling_update(service: &Service, dirty: &[&Task], in_progress: usize, ops: &mut Vec<Op>) {
    if dirty.is_empty() || in_progress > 0 {
        return;
    }
    let parallelism = service.spec["UpdateConfig"]["Parallelism"]
        .as_u64()
        .unwrap_or(1) as usize;
    let batch = if parallelism == 0 {
        dirty.len()
    } else {
        parallelism
    };
    for t in dirty.iter().take(batch) {
        ops.push(shut_down(t));
        if service.mode() == Mode::Global {
            ops.push(new_task(service, 0, &t.node_id));
        } else {
            ops.push(new_task(service, t.slot, ""));
        }
    }
}

fn global(
    state: &State,
    service: &Service,
    tasks: &[&Task],
    now: chrono::DateTime<chrono::Utc>,
    ops: &mut Vec<Op>,
) {
    let constraints = constraints_of(service);
    let mut dirty = Vec::new();
    let mut in_progress = 0;
    for node in state.nodes.values() {
        let on_node: Vec<&&Task> = tasks.iter().filter(|t| t.node_id == node.meta.id).collect();
        let live: Vec<&&&Task> = on_node.iter().filter(|t| is_live(t)).collect();
        let eligible = node.status.state == "ready"
            && node.spec.availability != "drain"
            && constraints.iter().all(|c| c.matches(node));
        if !eligible {
            for t in live {
                ops.push(shut_down(t));
            }
            continue;
        }
        match live.last() {
            None if node.spec.availability == "active" => {
                ops.push(new_task(service, 0, &node.meta.id))
            }
            None => {}
            Some(t)
                if t.status.state.is_terminal()
                    && should_restart(service, t, on_node.len(), now) == Some(true) =>
            {
                ops.push(shut_down(t));
                ops.push(new_task(service, 0, &node.meta.id));
            }
            Some(t) if t.status.state.is_terminal() => {}
            Some(t) if is_dirty(t, service) => dirty.push(***t),
            Some(t) if t.status.state < TaskState::Running => in_progress += 1,
            Some(_) => {}
        }
    }
    rolling_update(service, &dirty, in_progress, ops);
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
        let d = &node.description;
        let actual: Option<String> = match self.key.to_lowercase().as_str() {
            "node.id" => Some(node.meta.id.clone()),
            "node.hostname" => Some(node.hostname().to_string()),
            "node.role" => Some(node.spec.role.clone()),
            "node.platform.os" => d["Platform"]["OS"].as_str().map(str::to_string),
            "node.platform.arch" => d["Platform"]["Architecture"].as_str().map(str::to_string),
            _ => {
                if let Some(label) = self.key.strip_prefix("node.labels.") {
                    node.spec.labels.get(label).cloned()
                } else if let Some(label) = self.key.strip_prefix("engine.labels.") {
                    d["Engine"]["Labels"][label].as_str().map(str::to_string)
                } else {
                    None
                }
            }
        };
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

/// The scheduler: puts new tasks on ready, active nodes that satisfy their service's
/// constraints, spreading them (fewest tasks of the service, then fewest tasks overall).
pub fn schedule(state: &State) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut load: BTreeMap<&str, (BTreeMap<&str, usize>, usize)> = BTreeMap::new();
    for t in state
        .tasks
        .values()
        .filter(|t| is_live(t) && !t.node_id.is_empty())
    {
        let entry = load.entry(t.node_id.as_str()).or_default();
        *entry.0.entry(t.service_id.as_str()).or_default() += 1;
        entry.1 += 1;
    }
    for task in state.tasks.values() {
        if !is_live(task) || task.status.state > TaskState::Pending {
            continue;
        }
        let Some(service) = state.services.get(&task.service_id) else {
            continue;
        };
        let mut t = task.clone();
        if !t.node_id.is_empty() {
            // Global tasks come with their node.
            t.status = TaskStatus::new(TaskState::Assigned, "scheduler assigned task to node");
            ops.push(update(&t));
            continue;
        }
        let constraints = constraints_of(service);
        let best = state
            .nodes
            .values()
            .filter(|n| n.schedulable() && constraints.iter().all(|c| c.matches(n)))
            .min_by_key(|n| {
                let l = load.get(n.meta.id.as_str());
                let same = l
                    .and_then(|l| l.0.get(service.meta.id.as_str()))
                    .copied()
                    .unwrap_or(0);
                (same, l.map(|l| l.1).unwrap_or(0), n.meta.id.clone())
            });
        match best {
            Some(node) => {
                let id = node.meta.id.as_str();
                let entry = load.entry(id).or_default();
                *entry.0.entry(service.meta.id.as_str()).or_default() += 1;
                entry.1 += 1;
                t.node_id = node.meta.id.clone();
                t.status = TaskStatus::new(TaskState::Assigned, "scheduler assigned task to node");
            }
            None => {
                let total = state.nodes.len();
                let msg = format!(
                    "no suitable node ({})",
                    unsuitable_reason(state, &constraints, total)
                );
                if t.status.state == TaskState::Pending && t.status.err == msg {
                    continue;
                }
                t.status = TaskStatus::new(TaskState::Pending, "pending task scheduling");
                t.status.err = msg;
            }
        }
        ops.push(update(&t));
    }
    ops
}

/// swarmkit's explanation, e.g. "scheduling constraints not satisfied on 1 node".
fn unsuitable_reason(state: &State, constraints: &[Constraint], total: usize) -> String {
    let unmatched = state
        .nodes
        .values()
        .filter(|n| !constraints.iter().all(|c| c.matches(n)))
        .count();
    let plural = |n: usize| if n == 1 { "node" } else { "nodes" };
    if unmatched > 0 {
        format!(
            "scheduling constraints not satisfied on {unmatched} {}",
            plural(unmatched)
        )
    } else {
        format!("{total} {} not available for new tasks", plural(total))
    }
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
