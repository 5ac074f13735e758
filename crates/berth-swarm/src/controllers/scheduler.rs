//! The scheduler, as swarmkit's: every node a new task could go to passes a pipeline of
//! filters (ready and active, resources reserved by its tasks, placement constraints, max
//! replicas of the service per node); among the nodes that pass, placement preferences
//! (`spread=KEY`, nested in the order given) balance the service's tasks over the groups of
//! nodes sharing a value, then the service's tasks and all tasks are spread over nodes. When no
//! node passes, the task stays pending with swarmkit's explanation: each node counted against
//! the first filter it fails, the filters with the most failures first.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Constraint, constraints_of, is_live, node_attribute, update};
use crate::store::{Op, State};
use crate::types::{Node, Service, Task, TaskState, TaskStatus};

/// CPU (nano) and memory (bytes) a task reserves, from its own spec (a task of an older
/// version of its service keeps what it was made with).
fn reservation(task: &Task) -> (i64, i64) {
    let r = &task.spec["Resources"]["Reservations"];
    (
        r["NanoCPUs"].as_i64().unwrap_or(0).max(0),
        r["MemoryBytes"].as_i64().unwrap_or(0).max(0),
    )
}

fn capacity(node: &Node) -> (i64, i64) {
    let r = &node.description["Resources"];
    (
        r["NanoCPUs"].as_i64().unwrap_or(0),
        r["MemoryBytes"].as_i64().unwrap_or(0),
    )
}

/// What the live tasks on one node hold.
#[derive(Default)]
struct Load<'a> {
    per_service: BTreeMap<&'a str, usize>,
    total: usize,
    cpu: i64,
    memory: i64,
}

impl<'a> Load<'a> {
    fn add(&mut self, service: &'a str, task: &Task) {
        *self.per_service.entry(service).or_default() += 1;
        self.total += 1;
        let (cpu, memory) = reservation(task);
        self.cpu += cpu;
        self.memory += memory;
    }
    fn of(&self, service: &str) -> usize {
        self.per_service.get(service).copied().unwrap_or(0)
    }
}

/// The filters in swarmkit's pipeline order; a node is counted against the first it fails.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Filter {
    Ready,
    Resources,
    Constraints,
    MaxReplicas,
}

impl Filter {
    const ALL: [Filter; 4] = [
        Filter::Ready,
        Filter::Resources,
        Filter::Constraints,
        Filter::MaxReplicas,
    ];

    fn explain(self, nodes: usize) -> String {
        let n = if nodes == 1 {
            "1 node".to_string()
        } else {
            format!("{nodes} nodes")
        };
        match self {
            Filter::Ready => format!("{n} not available for new tasks"),
            Filter::Resources => format!("insufficient resources on {n}"),
            Filter::Constraints => format!("scheduling constraints not satisfied on {n}"),
            Filter::MaxReplicas => "max replicas per node limit exceed".to_string(),
        }
    }
}

/// What a task asks of its node.
struct Needs<'s> {
    service: &'s str,
    cpu: i64,
    memory: i64,
    constraints: Vec<Constraint>,
    max_replicas: usize,
    spread: Vec<String>,
}

impl<'s> Needs<'s> {
    fn of(service: &'s Service, task: &Task) -> Needs<'s> {
        let placement = &service.task_template()["Placement"];
        let (cpu, memory) = reservation(task);
        Needs {
            service: service.meta.id.as_str(),
            cpu,
            memory,
            constraints: constraints_of(service),
            max_replicas: placement["MaxReplicas"].as_u64().unwrap_or(0) as usize,
            spread: spread_keys(&placement["Preferences"]),
        }
    }

    /// The first filter `node` fails, if any.
    fn fails(&self, node: &Node, load: Option<&Load>, check_replicas: bool) -> Option<Filter> {
        if !node.schedulable() {
            return Some(Filter::Ready);
        }
        let (cpu_cap, mem_cap) = capacity(node);
        let (cpu_used, mem_used) = load.map(|l| (l.cpu, l.memory)).unwrap_or((0, 0));
        if (self.cpu > 0 && cpu_used + self.cpu > cpu_cap)
            || (self.memory > 0 && mem_used + self.memory > mem_cap)
        {
            return Some(Filter::Resources);
        }
        if !self.constraints.iter().all(|c| c.matches(node)) {
            return Some(Filter::Constraints);
        }
        if check_replicas
            && self.max_replicas > 0
            && load.map(|l| l.of(self.service)).unwrap_or(0) >= self.max_replicas
        {
            return Some(Filter::MaxReplicas);
        }
        None
    }
}

/// `[{"Spread": {"SpreadDescriptor": "node.labels.zone"}}, ...]` → the keys, in order.
fn spread_keys(preferences: &Value) -> Vec<String> {
    preferences
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["Spread"]["SpreadDescriptor"].as_str())
        .map(str::to_string)
        .collect()
}

/// swarmkit's explanation of why no node fits: "insufficient resources on 2 nodes; ...".
fn explain(failures: &BTreeMap<Filter, usize>) -> String {
    let mut sorted: Vec<(Filter, usize)> = Filter::ALL
        .iter()
        .filter_map(|f| failures.get(f).map(|n| (*f, *n)))
        .filter(|(_, n)| *n > 0)
        .collect();
    // Most failures first; the pipeline's order among equals.
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sorted
        .iter()
        .map(|(f, n)| f.explain(*n))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Places new tasks; returns the task updates (assigned, or pending with the reason).
pub fn schedule(state: &State) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut loads: BTreeMap<&str, Load> = BTreeMap::new();
    for t in state
        .tasks
        .values()
        .filter(|t| is_live(t) && !t.node_id.is_empty())
    {
        loads
            .entry(t.node_id.as_str())
            .or_default()
            .add(t.service_id.as_str(), t);
    }
    for task in state.tasks.values() {
        if !is_live(task) || task.status.state > TaskState::Pending {
            continue;
        }
        let Some(service) = state.services.get(&task.service_id) else {
            continue;
        };
        let needs = Needs::of(service, task);
        let mut t = Task::clone(task);
        let mut failures: BTreeMap<Filter, usize> = BTreeMap::new();
        let chosen: Option<&Node> = if !t.node_id.is_empty() {
            // Global tasks come with their node (the orchestrator checked its constraints):
            // they wait there until it has the resources they reserve.
            match state.nodes.get(&t.node_id) {
                Some(node)
                    if needs.fails(node, loads.get(node.meta.id.as_str()), false)
                        == Some(Filter::Resources) =>
                {
                    failures.insert(Filter::Resources, 1);
                    None
                }
                Some(node) => Some(node.as_ref()),
                // Its node is gone: the orchestrator removes the task.
                None => continue,
            }
        } else {
            let mut candidates = Vec::new();
            for node in state.nodes.values() {
                match needs.fails(node, loads.get(node.meta.id.as_str()), true) {
                    Some(f) => *failures.entry(f).or_default() += 1,
                    None => candidates.push(node.as_ref()),
                }
            }
            pick(state, &needs, &candidates, &loads)
        };
        match chosen {
            Some(node) => {
                loads
                    .entry(node.meta.id.as_str())
                    .or_default()
                    .add(service.meta.id.as_str(), task);
                if t.node_id.is_empty() {
                    t.node_id = node.meta.id.clone();
                }
                t.status = TaskStatus::new(TaskState::Assigned, "scheduler assigned task to node");
            }
            None => {
                let msg = format!("no suitable node ({})", explain(&failures));
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

/// Among the nodes that passed: the group (per spread level) holding the fewest of the
/// service's tasks, then the node with the fewest of them, then the fewest tasks overall.
/// Nodes without a spread key's value form a group of their own, as in swarmkit.
fn pick<'n>(
    state: &State,
    needs: &Needs,
    candidates: &[&'n Node],
    loads: &BTreeMap<&str, Load>,
) -> Option<&'n Node> {
    let of = |id: &str| loads.get(id).map(|l| l.of(needs.service)).unwrap_or(0);
    let path = |node: &Node| -> Vec<String> {
        needs
            .spread
            .iter()
            .map(|k| node_attribute(node, k).unwrap_or_default())
            .collect()
    };
    // The service's tasks in each group, at each level (a group is a prefix of values).
    let mut groups: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    if !needs.spread.is_empty() {
        for node in state.nodes.values() {
            let n = of(&node.meta.id);
            if n == 0 {
                continue;
            }
            let p = path(node);
            for level in 1..=p.len() {
                *groups.entry(p[..level].to_vec()).or_default() += n;
            }
        }
    }
    candidates.iter().copied().min_by_key(|node| {
        let p = path(node);
        let spread: Vec<usize> = (1..=p.len())
            .map(|level| groups.get(&p[..level]).copied().unwrap_or(0))
            .collect();
        let l = loads.get(node.meta.id.as_str());
        (
            spread,
            of(&node.meta.id),
            l.map(|l| l.total).unwrap_or(0),
            node.meta.id.clone(),
        )
    })
}
