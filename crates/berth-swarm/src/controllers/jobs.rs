//! Jobs (`replicated-job`, `global-job`), as swarmkit's jobs orchestrator: tasks run to
//! completion (desired state `complete`) and a completed task is never restarted. Each
//! service update starts a new iteration (`JobStatus.JobIteration`): the tasks of older
//! iterations are removed and the job runs again.

use std::collections::BTreeSet;

use super::{eligible, is_live, new_task, should_restart, shut_down};
use crate::store::{Op, State};
use crate::types::{Kind, Service, Task, TaskState, Version};

/// A job's task: wanted until it completes, for the service's current iteration.
fn job_task(service: &Service, slot: u64, node: &str) -> Op {
    let mut op = new_task(service, slot, node);
    if let Op::Create(crate::types::Object::Task(t)) = &mut op {
        t.desired_state = TaskState::Complete;
        t.job_iteration = Some(Version {
            index: service.job_iteration(),
        });
    }
    op
}

fn current(service: &Service, t: &Task) -> bool {
    t.job_iteration.map(|v| v.index) == Some(service.job_iteration())
}

/// Tasks of earlier iterations: still-running ones are told to go (desired `remove`), and
/// once stopped they are deleted.
fn retire(service: &Service, tasks: &[&Task], ops: &mut Vec<Op>) {
    for t in tasks.iter().filter(|t| !current(service, t)) {
        if t.desired_state != TaskState::Remove && t.status.state <= TaskState::Running {
            let mut t = (*t).clone();
            t.desired_state = TaskState::Remove;
            t.meta.updated_at = crate::types::now();
            ops.push(super::update(&t));
        } else if t.desired_state == TaskState::Remove
            && (t.status.state.is_terminal() || t.node_id.is_empty())
        {
            ops.push(Op::Delete {
                kind: Kind::Task,
                id: t.meta.id.clone(),
            });
        }
    }
}

/// A failed task of the current iteration: restarted in its slot (or on its node) as the
/// restart policy says; `any` counts as `on-failure`, since a completed job is done.
fn restart(
    service: &Service,
    t: &Task,
    attempts: usize,
    now: chrono::DateTime<chrono::Utc>,
    ops: &mut Vec<Op>,
) {
    if should_restart(service, t, attempts, now) == Some(true) {
        ops.push(shut_down(t));
        ops.push(job_task(
            service,
            t.slot,
            if t.slot == 0 { &t.node_id } else { "" },
        ));
    }
}

/// At most `max_concurrent` tasks at once, until `total` have completed; each task has a
/// slot of its own in `0..total`.
pub(super) fn replicated(
    service: &Service,
    max_concurrent: u64,
    total: u64,
    tasks: &[&Task],
    now: chrono::DateTime<chrono::Utc>,
    ops: &mut Vec<Op>,
) {
    retire(service, tasks, ops);
    let mine: Vec<&Task> = tasks
        .iter()
        .copied()
        .filter(|t| current(service, t))
        .collect();
    let mut running = 0u64;
    let mut complete = 0u64;
    let mut used = BTreeSet::new();
    for t in &mine {
        if t.status.state == TaskState::Complete {
            complete += 1;
            used.insert(t.slot);
        } else if is_live(t) {
            running += 1;
            used.insert(t.slot);
            if t.status.state > TaskState::Complete {
                let attempts = mine.iter().filter(|o| o.slot == t.slot).count();
                restart(service, t, attempts, now, ops);
            }
        }
    }
    let new = max_concurrent
        .saturating_sub(running)
        .min(total.saturating_sub(complete + running));
    let mut free = (0..total).filter(|s| !used.contains(s));
    for _ in 0..new {
        let Some(slot) = free.next() else { break };
        ops.push(job_task(service, slot, ""));
    }
}

/// One task per eligible node that has none of this iteration yet.
pub(super) fn global(
    state: &State,
    service: &Service,
    tasks: &[&Task],
    now: chrono::DateTime<chrono::Utc>,
    ops: &mut Vec<Op>,
) {
    retire(service, tasks, ops);
    for node in state.nodes.values() {
        let on_node: Vec<&Task> = tasks
            .iter()
            .copied()
            .filter(|t| t.node_id == node.meta.id && current(service, t))
            .collect();
        let live: Vec<&Task> = on_node.iter().copied().filter(|t| is_live(t)).collect();
        if !eligible(service, node) {
            for t in live
                .iter()
                .filter(|t| t.status.state != TaskState::Complete)
            {
                ops.push(shut_down(t));
            }
            continue;
        }
        match live.last() {
            None if node.spec.availability == "active" => {
                ops.push(job_task(service, 0, &node.meta.id))
            }
            Some(t) if t.status.state > TaskState::Complete => {
                restart(service, t, on_node.len(), now, ops)
            }
            _ => {}
        }
    }
}

/// `ServiceStatus` of a job: running and completed tasks of the current iteration; desired
/// is `MaxConcurrent` (replicated) or the tasks not yet complete (global), as swarmkit counts.
pub fn status(service: &Service, tasks: &[&Task]) -> (u64, u64, u64) {
    let (mut running, mut desired, mut complete) = (0, 0, 0);
    for t in tasks.iter().filter(|t| current(service, t)) {
        if t.status.state == TaskState::Complete {
            complete += 1;
        }
        if t.status.state == TaskState::Running {
            running += 1;
        }
        if t.status.state != TaskState::Complete && t.desired_state == TaskState::Complete {
            desired += 1;
        }
    }
    if let crate::types::Mode::ReplicatedJob { max_concurrent, .. } = service.mode() {
        desired = max_concurrent;
    }
    (running, desired, complete)
}
