//! The controllers on an in-memory store: passes are applied until nothing changes, with an
//! agent that "runs" every assigned task at once.

use super::*;
use crate::MemoryProposer;
use crate::store::Store;
use crate::types::{NodeSpec, NodeStatus};
use serde_json::json;

fn node(id: &str, hostname: &str, labels: &[(&str, &str)]) -> Object {
    Object::Node(Node {
        meta: Meta::new(id.into()),
        spec: NodeSpec {
            role: "manager".into(),
            availability: "active".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            name: None,
        },
        description: json!({"Hostname": hostname}),
        status: NodeStatus {
            state: "ready".into(),
            ..Default::default()
        },
        manager_status: None,
    })
}

fn service(id: &str, spec: Value) -> Object {
    let mut spec = spec;
    spec["Name"] = json!(id);
    Object::Service(Service {
        meta: Meta::new(id.into()),
        spec,
        ..Default::default()
    })
}

fn replicated(n: u64, env: &str) -> Value {
    json!({"Mode": {"Replicated": {"Replicas": n}}, "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Env": [env]}, "RestartPolicy": {"Delay": 0}}})
}

struct World {
    p: MemoryProposer,
}

impl World {
    fn new(nodes: Vec<Object>) -> World {
        let p = MemoryProposer {
            store: Store::default(),
            ..Default::default()
        };
        let w = World { p };
        w.put(nodes.into_iter().map(Op::Create).collect());
        w
    }
    fn put(&self, ops: Vec<Op>) {
        futures_lite(self.p.propose(Command { ops })).unwrap();
    }
    /// Controller passes, each followed by the fake agent, until the state settles.
    fn settle(&self) {
        self.settle_failing("")
    }
    /// As `settle`, the fake agent failing the tasks whose first env entry is `fail`.
    fn settle_failing(&self, fail: &str) {
        for _ in 0..50 {
            let state = self.p.store.snapshot();
            let mut ops = reconcile(&state, chrono::Utc::now());
            let next = {
                let mut s = State::clone(&state);
                s.apply(u64::MAX, &Command { ops: ops.clone() }).unwrap();
                s
            };
            for t in next.tasks.values() {
                let want = t.desired_state <= TaskState::Complete;
                let new_state = match t.status.state {
                    TaskState::Assigned if want && t.spec["ContainerSpec"]["Env"][0] == fail => {
                        TaskState::Failed
                    }
                    TaskState::Assigned if want => TaskState::Running,
                    s if !want && !s.is_terminal() => TaskState::Shutdown,
                    _ => continue,
                };
                let mut t = Task::clone(t);
                t.status = TaskStatus::new(new_state, "fake agent");
                ops.push(Op::Update {
                    object: Object::Task(t),
                    expect: None,
                });
            }
            let ops = merge(ops);
            if ops.is_empty() {
                return;
            }
            self.put(ops);
        }
        panic!("controllers did not settle");
    }
    fn running(&self, service: &str) -> Vec<Task> {
        self.p.store.view(|s| {
            s.tasks
                .values()
                .filter(|t| {
                    t.service_id == service
                        && t.desired_state == TaskState::Running
                        && t.status.state == TaskState::Running
                })
                .map(|t| Task::clone(t))
                .collect()
        })
    }
    fn service(&self, id: &str) -> Service {
        self.p.store.view(|s| Service::clone(&s.services[id]))
    }
    fn update_service(&self, id: &str, f: impl FnOnce(&mut Value)) {
        let mut s = self.service(id);
        f(&mut s.spec);
        self.put(vec![Op::Update {
            object: Object::Service(s),
            expect: None,
        }]);
    }
}

/// The memory proposer's future completes at once.
fn futures_lite<T>(f: crate::BoxFuture<'_, T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn replicas_spread_over_nodes_and_scale() {
    let w = World::new(vec![
        node("n1", "a", &[]),
        node("n2", "b", &[]),
        node("n3", "c", &[]),
    ]);
    w.put(vec![Op::Create(service("web", replicated(6, "A=1")))]);
    w.settle();
    let tasks = w.running("web");
    assert_eq!(tasks.len(), 6);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(
            tasks.iter().filter(|t| t.node_id == n).count(),
            2,
            "spread on {n}"
        );
    }
    let mut slots: Vec<u64> = tasks.iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, vec![1, 2, 3, 4, 5, 6]);
    w.update_service("web", |s| s["Mode"]["Replicated"]["Replicas"] = json!(2));
    w.settle();
    let mut slots: Vec<u64> = w.running("web").iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, vec![1, 2]);
}

#[test]
fn failed_tasks_are_replaced_unless_the_policy_says_none() {
    let w = World::new(vec![node("n1", "a", &[])]);
    w.put(vec![Op::Create(service("web", replicated(1, "A=1")))]);
    w.settle();
    let mut t = w.running("web").remove(0);
    t.status = TaskStatus::new(TaskState::Failed, "boom");
    w.put(vec![Op::Update {
        object: Object::Task(t.clone()),
        expect: None,
    }]);
    w.settle();
    let now = w.running("web");
    assert_eq!(now.len(), 1);
    assert_ne!(now[0].meta.id, t.meta.id, "a new task");
    assert_eq!(now[0].slot, 1);
    w.update_service("web", |s| {
        s["TaskTemplate"]["RestartPolicy"]["Condition"] = json!("none")
    });
    w.settle();
    let mut t = w.running("web").remove(0);
    t.status = TaskStatus::new(TaskState::Failed, "boom");
    w.put(vec![Op::Update {
        object: Object::Task(t),
        expect: None,
    }]);
    w.settle();
    assert!(w.running("web").is_empty());
}

#[test]
fn rolling_update_replaces_all_tasks_with_the_new_spec() {
    let w = World::new(vec![node("n1", "a", &[]), node("n2", "b", &[])]);
    w.put(vec![Op::Create(service("web", replicated(3, "A=1")))]);
    w.settle();
    let before: Vec<String> = w.running("web").iter().map(|t| t.meta.id.clone()).collect();
    w.update_service("web", |s| {
        s["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["A=2"])
    });
    // One pass replaces one task only (parallelism 1 is the default).
    let ops = orchestrate(&w.p.store.snapshot(), chrono::Utc::now());
    assert_eq!(ops.iter().filter(|o| matches!(o, Op::Create(_))).count(), 1);
    w.settle();
    let after = w.running("web");
    assert_eq!(after.len(), 3);
    assert!(
        after
            .iter()
            .all(|t| t.spec["ContainerSpec"]["Env"] == json!(["A=2"])
                && !before.contains(&t.meta.id))
    );
}

#[test]
fn constraints_place_tasks_or_leave_them_pending() {
    let w = World::new(vec![
        node("n1", "a", &[("zone", "eu")]),
        node("n2", "b", &[]),
    ]);
    let mut spec = replicated(2, "A=1");
    spec["TaskTemplate"]["Placement"] = json!({"Constraints": ["node.labels.zone==eu"]});
    w.put(vec![Op::Create(service("eu", spec))]);
    let mut spec = replicated(1, "A=1");
    spec["TaskTemplate"]["Placement"] = json!({"Constraints": ["node.hostname==nowhere"]});
    w.put(vec![Op::Create(service("lost", spec))]);
    w.settle();
    assert!(w.running("eu").iter().all(|t| t.node_id == "n1"));
    assert_eq!(w.running("eu").len(), 2);
    let pending = w.p.store.view(|s| {
        s.tasks
            .values()
            .find(|t| t.service_id == "lost")
            .cloned()
            .unwrap()
    });
    assert_eq!(pending.status.state, TaskState::Pending);
    assert_eq!(
        pending.status.err,
        "no suitable node (scheduling constraints not satisfied on 2 nodes)"
    );
}

#[test]
fn global_services_run_once_per_node_and_drain_moves_tasks() {
    let w = World::new(vec![node("n1", "a", &[]), node("n2", "b", &[])]);
    w.put(vec![Op::Create(service(
        "g",
        json!({"Mode": {"Global": {}}, "TaskTemplate": {"ContainerSpec": {"Image": "x"}}}),
    ))]);
    w.put(vec![Op::Create(service("r", replicated(2, "A=1")))]);
    w.settle();
    assert_eq!(w.running("g").len(), 2);
    let mut n2 = w.p.store.view(|s| Node::clone(&s.nodes["n2"]));
    n2.spec.availability = "drain".into();
    w.put(vec![Op::Update {
        object: Object::Node(n2),
        expect: None,
    }]);
    w.settle();
    assert_eq!(w.running("g").len(), 1);
    assert!(w.running("r").iter().all(|t| t.node_id == "n1"));
    assert_eq!(w.running("r").len(), 2);
}

#[test]
fn removed_services_lose_their_tasks() {
    let w = World::new(vec![node("n1", "a", &[])]);
    w.put(vec![Op::Create(service("web", replicated(2, "A=1")))]);
    w.settle();
    w.put(vec![Op::Delete {
        kind: crate::types::Kind::Service,
        id: "web".into(),
    }]);
    w.settle();
    assert!(w.p.store.view(|s| s.tasks.is_empty()));
}

/// What the API does on `service update` (and `service rollback`).
fn api_update(w: &World, id: &str, f: impl FnOnce(&mut Value)) {
    let mut s = w.service(id);
    let mut spec = s.spec.clone();
    f(&mut spec);
    s.previous_spec = Some(std::mem::replace(&mut s.spec, spec));
    s.update_status = None;
    if let Some(job) = s.job_status.as_mut() {
        let next = job["JobIteration"]["Index"].as_u64().unwrap() + 1;
        job["JobIteration"] = json!({"Index": next});
    }
    w.put(vec![Op::Update {
        object: Object::Service(s),
        expect: None,
    }]);
}

fn tasks_of(w: &World, service: &str) -> Vec<Task> {
    w.p.store.view(|s| {
        s.tasks
            .values()
            .filter(|t| t.service_id == service)
            .map(|t| Task::clone(t))
            .collect()
    })
}

/// Marks the service's running tasks as ended with `state`.
fn end_running(w: &World, service: &str, state: TaskState) {
    let ops = tasks_of(w, service)
        .into_iter()
        .filter(|t| t.status.state == TaskState::Running)
        .map(|mut t| {
            t.status = TaskStatus::new(state, "ended");
            Op::Update {
                object: Object::Task(t),
                expect: None,
            }
        })
        .collect();
    w.put(ops);
}

fn job_service(id: &str, mode: Value) -> Object {
    let mut o = service(
        id,
        json!({"Mode": mode, "TaskTemplate": {"ContainerSpec": {"Image": "x"}, "RestartPolicy": {"Delay": 0}}}),
    );
    if let Object::Service(s) = &mut o {
        s.job_status = Some(json!({"JobIteration": {"Index": 0}}));
    }
    o
}

#[test]
fn replicated_jobs_run_max_concurrent_tasks_until_total_completions() {
    let w = World::new(vec![node("n1", "a", &[]), node("n2", "b", &[])]);
    w.put(vec![Op::Create(job_service(
        "job",
        json!({"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 5}}),
    ))]);
    let status = |w: &World| {
        let tasks = tasks_of(w, "job");
        jobs::status(&w.service("job"), &tasks.iter().collect::<Vec<_>>())
    };
    for round in 0..3 {
        w.settle();
        let running = tasks_of(&w, "job")
            .into_iter()
            .filter(|t| t.status.state == TaskState::Running)
            .count();
        assert_eq!(running, if round < 2 { 2 } else { 1 }, "round {round}");
        assert!(
            tasks_of(&w, "job")
                .iter()
                .all(|t| t.desired_state == TaskState::Complete)
        );
        end_running(&w, "job", TaskState::Complete);
    }
    w.settle();
    assert_eq!(status(&w), (0, 2, 5));
    let mut slots: Vec<u64> = tasks_of(&w, "job").iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, vec![0, 1, 2, 3, 4], "one slot per completion");
    // A failed task is restarted in its slot; a completed one never.
    api_update(&w, "job", |_| {});
    w.settle();
    assert_eq!(status(&w), (2, 2, 0), "an update runs the job again");
    end_running(&w, "job", TaskState::Failed);
    w.settle();
    assert_eq!(status(&w).0, 2, "failed tasks restarted");
}

#[test]
fn global_jobs_complete_once_per_node() {
    let w = World::new(vec![node("n1", "a", &[]), node("n2", "b", &[])]);
    w.put(vec![Op::Create(job_service(
        "gj",
        json!({"GlobalJob": {}}),
    ))]);
    w.settle();
    assert_eq!(tasks_of(&w, "gj").len(), 2);
    end_running(&w, "gj", TaskState::Complete);
    w.settle();
    let tasks = tasks_of(&w, "gj");
    assert_eq!(tasks.len(), 2, "completed tasks are not restarted");
    let status = jobs::status(&w.service("gj"), &tasks.iter().collect::<Vec<_>>());
    assert_eq!(status, (0, 0, 2));
}

fn updatable(n: u64, update: Value) -> Object {
    let mut spec = replicated(n, "A=1");
    spec["TaskTemplate"]["RestartPolicy"]["Condition"] = json!("none");
    spec["UpdateConfig"] = update;
    spec["RollbackConfig"] = json!({"Parallelism": 0, "Monitor": 1});
    service("web", spec)
}

fn update_state(w: &World) -> (String, String) {
    let s = w.service("web").update_status.unwrap_or_default();
    (
        s["State"].as_str().unwrap_or_default().to_string(),
        s["Message"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn a_failing_update_pauses_or_rolls_back() {
    let w = World::new(vec![node("n1", "a", &[])]);
    w.put(vec![Op::Create(updatable(
        3,
        json!({"Parallelism": 1, "FailureAction": "pause"}),
    ))]);
    w.settle();
    api_update(&w, "web", |s| {
        s["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["BAD"])
    });
    w.settle_failing("BAD");
    let (state, message) = update_state(&w);
    assert_eq!(state, "paused");
    assert!(
        message.starts_with("update paused due to failure or early termination of task "),
        "{message}"
    );
    assert_eq!(
        w.running("web").len(),
        2,
        "the other slots keep the old spec: {:#?}",
        tasks_of(&w, "web")
            .iter()
            .map(|t| (
                t.slot,
                t.spec["ContainerSpec"]["Env"].clone(),
                t.desired_state,
                t.status.state
            ))
            .collect::<Vec<_>>()
    );

    let w = World::new(vec![node("n1", "a", &[])]);
    w.put(vec![Op::Create(updatable(
        3,
        json!({"Parallelism": 1, "FailureAction": "rollback", "Monitor": 1}),
    ))]);
    w.settle();
    api_update(&w, "web", |s| {
        s["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["BAD"])
    });
    w.settle_failing("BAD");
    w.settle();
    let (state, message) = update_state(&w);
    assert_eq!(state, "rollback_completed", "{message}");
    assert_eq!(message, "rollback completed");
    let running = w.running("web");
    assert_eq!(running.len(), 3);
    assert!(
        running
            .iter()
            .all(|t| t.spec["ContainerSpec"]["Env"] == json!(["A=1"]))
    );
    assert!(w.service("web").previous_spec.is_none());
}

#[test]
fn start_first_updates_start_the_new_task_before_stopping_the_old() {
    let w = World::new(vec![node("n1", "a", &[])]);
    w.put(vec![Op::Create(updatable(
        2,
        json!({"Parallelism": 1, "Order": "start-first", "Monitor": 1}),
    ))]);
    w.settle();
    api_update(&w, "web", |s| {
        s["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["A=2"])
    });
    let ops = reconcile(&w.p.store.snapshot(), chrono::Utc::now());
    assert_eq!(ops.iter().filter(|o| matches!(o, Op::Create(_))).count(), 1);
    let stopped = ops.iter().any(|o| {
        matches!(o, Op::Update { object: Object::Task(t), .. } if t.desired_state == TaskState::Shutdown)
    });
    assert!(!stopped, "the old task runs on: {ops:?}");
    w.settle();
    let running = w.running("web");
    assert_eq!(running.len(), 2);
    assert!(
        running
            .iter()
            .all(|t| t.spec["ContainerSpec"]["Env"] == json!(["A=2"]))
    );
    assert_eq!(update_state(&w).0, "completed");
}

#[test]
fn update_delay_holds_the_next_batch() {
    let w = World::new(vec![node("n1", "a", &[])]);
    w.put(vec![Op::Create(updatable(
        3,
        json!({"Parallelism": 1, "Delay": 3_600_000_000_000u64}),
    ))]);
    w.settle();
    api_update(&w, "web", |s| {
        s["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["A=2"])
    });
    w.settle();
    let updated = w
        .running("web")
        .iter()
        .filter(|t| t.spec["ContainerSpec"]["Env"] == json!(["A=2"]))
        .count();
    assert_eq!(updated, 1);
    assert_eq!(update_state(&w).0, "updating");
}

#[test]
fn global_services_update_node_by_node() {
    let w = World::new(vec![node("n1", "a", &[]), node("n2", "b", &[])]);
    w.put(vec![Op::Create(service(
        "g",
        json!({"Mode": {"Global": {}}, "UpdateConfig": {"Parallelism": 1, "Monitor": 1},
               "TaskTemplate": {"ContainerSpec": {"Image": "x", "Env": ["A=1"]}}}),
    ))]);
    w.settle();
    api_update(&w, "g", |s| {
        s["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["A=2"])
    });
    let ops = reconcile(&w.p.store.snapshot(), chrono::Utc::now());
    let created: Vec<&Task> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Create(Object::Task(t)) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "one node at a time");
    assert!(!created[0].node_id.is_empty(), "on the node it replaces");
    w.settle();
    let running = w.running("g");
    assert_eq!(running.len(), 2);
    assert!(
        running
            .iter()
            .all(|t| t.spec["ContainerSpec"]["Env"] == json!(["A=2"]))
    );
    let mut nodes: Vec<&str> = running.iter().map(|t| t.node_id.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2"]);
}

fn sized_node(id: &str, labels: &[(&str, &str)], cpus: i64, memory: i64) -> Object {
    let mut n = node(id, id, labels);
    if let Object::Node(n) = &mut n {
        n.description["Resources"] =
            json!({"NanoCPUs": cpus * 1_000_000_000, "MemoryBytes": memory});
    }
    n
}

fn pending_errors(w: &World, service: &str) -> Vec<String> {
    w.p.store.view(|s| {
        s.tasks
            .values()
            .filter(|t| t.service_id == service && t.status.state == TaskState::Pending)
            .map(|t| t.status.err.clone())
            .collect()
    })
}

fn per_node(w: &World, service: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in w.running(service) {
        *m.entry(t.node_id.clone()).or_default() += 1;
    }
    m
}

#[test]
fn max_replicas_per_node_leaves_the_rest_pending() {
    let w = World::new(vec![node("n1", "a", &[]), node("n2", "b", &[])]);
    let mut spec = replicated(5, "A=1");
    spec["TaskTemplate"]["Placement"] = json!({"MaxReplicas": 2});
    w.put(vec![Op::Create(service("m", spec))]);
    w.settle();
    assert_eq!(
        per_node(&w, "m"),
        BTreeMap::from([("n1".to_string(), 2), ("n2".to_string(), 2)])
    );
    assert_eq!(
        pending_errors(&w, "m"),
        ["no suitable node (max replicas per node limit exceed)"]
    );
}

#[test]
fn reservations_must_fit_what_the_nodes_tasks_left() {
    const MIB: i64 = 1 << 20;
    let w = World::new(vec![
        sized_node("n1", &[], 2, 1024 * MIB),
        sized_node("n2", &[], 2, 1024 * MIB),
    ]);
    let mut spec = replicated(5, "A=1");
    spec["TaskTemplate"]["Resources"] = json!({"Reservations": {"MemoryBytes": 400 * MIB}});
    w.put(vec![Op::Create(service("mem", spec))]);
    // CPUs are counted too: 3 CPUs fit on no node of 2.
    let mut spec = replicated(1, "A=1");
    spec["TaskTemplate"]["Resources"] = json!({"Reservations": {"NanoCPUs": 3_000_000_000i64}});
    w.put(vec![Op::Create(service("cpu", spec))]);
    w.settle();
    assert_eq!(
        per_node(&w, "mem"),
        BTreeMap::from([("n1".to_string(), 2), ("n2".to_string(), 2)])
    );
    assert_eq!(
        pending_errors(&w, "mem"),
        ["no suitable node (insufficient resources on 2 nodes)"]
    );
    assert_eq!(
        pending_errors(&w, "cpu"),
        ["no suitable node (insufficient resources on 2 nodes)"]
    );
}

#[test]
fn spread_preferences_balance_the_groups_not_the_nodes() {
    let w = World::new(vec![
        node("n1", "a", &[("zone", "eu")]),
        node("n2", "b", &[("zone", "eu")]),
        node("n3", "c", &[("zone", "us")]),
        // No zone label: a group of its own.
        node("n4", "d", &[]),
    ]);
    let mut spec = replicated(6, "A=1");
    spec["TaskTemplate"]["Placement"] =
        json!({"Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]});
    w.put(vec![Op::Create(service("s", spec))]);
    w.settle();
    let placed = per_node(&w, "s");
    assert_eq!(
        placed.get("n1").copied().unwrap_or(0) + placed.get("n2").copied().unwrap_or(0),
        2,
        "{placed:?}"
    );
    assert_eq!(placed.get("n3"), Some(&2), "{placed:?}");
    assert_eq!(placed.get("n4"), Some(&2), "{placed:?}");
    // Within the eu group, its two nodes share.
    assert_eq!(placed.get("n1"), Some(&1), "{placed:?}");
}

#[test]
fn no_suitable_node_names_each_filter_most_failures_first() {
    let w = World::new(vec![
        node("n1", "a", &[]),
        node("n2", "b", &[]),
        node("n3", "c", &[("zone", "eu")]),
    ]);
    // Drain the eu node: it fails the first filter (ready), the others the constraint.
    let mut drained = w.p.store.view(|s| Node::clone(&s.nodes["n3"]));
    drained.spec.availability = "drain".into();
    w.put(vec![Op::Update {
        object: Object::Node(drained),
        expect: None,
    }]);
    let mut spec = replicated(1, "A=1");
    spec["TaskTemplate"]["Placement"] = json!({"Constraints": ["node.labels.zone==eu"]});
    w.put(vec![Op::Create(service("z", spec))]);
    w.settle();
    assert_eq!(
        pending_errors(&w, "z"),
        [
            "no suitable node (scheduling constraints not satisfied on 2 nodes; 1 node not available for new tasks)"
        ]
    );
}
