//! The cluster store: every object by kind and id, changed only by applying committed
//! [`Command`]s (from the Raft state machine, or directly in tests), in swarmkit's
//! `store.MemoryStore` role. Readers take consistent snapshots; watchers wake on every change.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::types::{Cluster, Kind, Network, Node, Object, Secret, Service, Task};

/// One change inside a [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Adds an object; refused when its id, or its name for named kinds, is taken.
    Create(Object),
    /// Replaces an object. With `expect`, refused unless the stored version is that one.
    Update { object: Object, expect: Option<u64> },
    /// Removes an object; removing a missing one is refused.
    Delete { kind: Kind, id: String },
}

/// The state machine's command: a batch of changes applied all or nothing, at one version
/// (the Raft index of its entry). One enum so that every replica applies the same thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub ops: Vec<Op>,
}

impl Command {
    pub fn one(op: Op) -> Command {
        Command { ops: vec![op] }
    }

    /// The objects this command may change.
    pub fn keys(&self) -> Vec<(Kind, String)> {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Create(o) | Op::Update { object: o, .. } => (o.kind(), o.meta().id.clone()),
                Op::Delete { kind, id } => (*kind, id.clone()),
            })
            .collect()
    }
}

/// Why a command was refused; the whole batch then changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Conflict {
    #[error("{kind} {id} already exists")]
    Exists { kind: String, id: String },
    #[error("{kind} {name} already exists")]
    NameTaken { kind: String, name: String },
    #[error("{kind} {id} not found")]
    Missing { kind: String, id: String },
    /// swarmkit's `ErrSequenceConflict`, which dockerd shows as this text.
    #[error("update out of sequence")]
    Sequence,
}

/// Objects of one kind by id. Persistent maps of shared objects: a copy of the state (every
/// reader's snapshot) is a pointer, and a change copies only the few map nodes on its path
/// and the objects it replaces. With plain maps every change of a 1,000-task state meant a
/// deep copy for the readers that woke on it, megabytes each time.
pub type Objects<T> = imbl::OrdMap<String, Arc<T>>;

/// The whole cluster state at one index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub index: u64,
    pub clusters: Objects<Cluster>,
    pub nodes: Objects<Node>,
    pub services: Objects<Service>,
    pub tasks: Objects<Task>,
    pub secrets: Objects<Secret>,
    pub configs: Objects<Secret>,
    /// Swarm-scoped networks (absent from states written before they existed).
    #[serde(default)]
    pub networks: Objects<Network>,
    /// Each service's task template as the tasks made from it share it (not stored: rebuilt
    /// as tasks are put). Without it every task, and so every copy of the state, holds its
    /// own copy of the same JSON tree: 1,000 tasks of a service were 1,000 trees.
    #[serde(skip)]
    pub templates: Templates,
}

/// Service id → the shared task template. Equal whatever it holds: it only says which copy
/// of equal trees the tasks point to, not what the state is.
#[derive(Debug, Clone, Default)]
pub struct Templates(BTreeMap<String, Arc<serde_json::Value>>);

impl PartialEq for Templates {
    fn eq(&self, _: &Templates) -> bool {
        true
    }
}

impl State {
    pub fn get(&self, kind: Kind, id: &str) -> Option<Object> {
        Some(match kind {
            Kind::Cluster => Object::Cluster((**self.clusters.get(id)?).clone()),
            Kind::Node => Object::Node((**self.nodes.get(id)?).clone()),
            Kind::Service => Object::Service((**self.services.get(id)?).clone()),
            Kind::Task => Object::Task((**self.tasks.get(id)?).clone()),
            Kind::Secret => Object::Secret((**self.secrets.get(id)?).clone()),
            Kind::Config => Object::Config((**self.configs.get(id)?).clone()),
            Kind::Network => Object::Network((**self.networks.get(id)?).clone()),
        })
    }

    fn version_of(&self, kind: Kind, id: &str) -> Option<u64> {
        self.get(kind, id).map(|o| o.meta().version.index)
    }

    fn name_taken(&self, object: &Object) -> bool {
        let Some(name) = object.unique_name() else {
            return false;
        };
        let id = &object.meta().id;
        match object {
            Object::Service(_) => self
                .services
                .values()
                .any(|s| s.name() == name && &s.meta.id != id),
            Object::Secret(_) => self
                .secrets
                .values()
                .any(|s| s.name() == name && &s.meta.id != id),
            Object::Config(_) => self
                .configs
                .values()
                .any(|s| s.name() == name && &s.meta.id != id),
            Object::Network(_) => self
                .networks
                .values()
                .any(|n| n.name() == name && &n.meta.id != id),
            _ => false,
        }
    }

    pub fn put_object(&mut self, object: Object) {
        match object {
            Object::Cluster(o) => drop(self.clusters.insert(o.meta.id.clone(), Arc::new(o))),
            Object::Node(o) => drop(self.nodes.insert(o.meta.id.clone(), Arc::new(o))),
            Object::Service(o) => drop(self.services.insert(o.meta.id.clone(), Arc::new(o))),
            Object::Task(mut o) => {
                self.share_spec(&mut o);
                drop(self.tasks.insert(o.meta.id.clone(), Arc::new(o)))
            }
            Object::Secret(o) => drop(self.secrets.insert(o.meta.id.clone(), Arc::new(o))),
            Object::Config(o) => drop(self.configs.insert(o.meta.id.clone(), Arc::new(o))),
            Object::Network(o) => drop(self.networks.insert(o.meta.id.clone(), Arc::new(o))),
        }
    }

    /// Points `task`'s spec at its service's shared template when they are equal.
    fn share_spec(&mut self, task: &mut Task) {
        if let Some(shared) = self.templates.0.get(&task.service_id) {
            if Arc::ptr_eq(shared, &task.spec) {
                return;
            }
            if **shared == *task.spec {
                task.spec = shared.clone();
                return;
            }
        }
        let Some(service) = self.services.get(&task.service_id) else {
            return;
        };
        if *service.task_template() == *task.spec {
            self.templates
                .0
                .insert(task.service_id.clone(), task.spec.clone());
        }
    }

    /// Shares the specs of a state built without `put_object` (deserialized).
    fn share_specs(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for (id, task) in tasks {
            let mut task = Arc::unwrap_or_clone(task);
            self.share_spec(&mut task);
            self.tasks.insert(id, Arc::new(task));
        }
    }

    fn remove(&mut self, kind: Kind, id: &str) -> Option<Object> {
        let old = self.get(kind, id)?;
        match kind {
            Kind::Cluster => drop(self.clusters.remove(id)),
            Kind::Node => drop(self.nodes.remove(id)),
            Kind::Service => {
                self.services.remove(id);
                self.templates.0.remove(id);
            }
            Kind::Task => drop(self.tasks.remove(id)),
            Kind::Secret => drop(self.secrets.remove(id)),
            Kind::Config => drop(self.configs.remove(id)),
            Kind::Network => drop(self.networks.remove(id)),
        }
        Some(old)
    }

    /// Checks one change against the state as it is now (after the batch's earlier changes).
    fn check(&self, op: &Op) -> Result<(), Conflict> {
        match op {
            Op::Create(o) => {
                let (kind, id) = (o.kind(), &o.meta().id);
                if self.get(kind, id).is_some() {
                    return Err(Conflict::Exists {
                        kind: kind.as_str().into(),
                        id: id.clone(),
                    });
                }
                if self.name_taken(o) {
                    return Err(Conflict::NameTaken {
                        kind: kind.as_str().into(),
                        name: o.unique_name().unwrap_or_default().into(),
                    });
                }
            }
            Op::Update { object, expect } => {
                let (kind, id) = (object.kind(), &object.meta().id);
                let Some(current) = self.version_of(kind, id) else {
                    return Err(Conflict::Missing {
                        kind: kind.as_str().into(),
                        id: id.clone(),
                    });
                };
                if expect.is_some_and(|v| v != current) {
                    return Err(Conflict::Sequence);
                }
                if self.name_taken(object) {
                    return Err(Conflict::NameTaken {
                        kind: kind.as_str().into(),
                        name: object.unique_name().unwrap_or_default().into(),
                    });
                }
            }
            Op::Delete { kind, id } => {
                if self.get(*kind, id).is_none() {
                    return Err(Conflict::Missing {
                        kind: kind.as_str().into(),
                        id: id.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Applies a command at `index`: all of it, or (on a conflict) none of it, undoing the
    /// changes made before the one refused. Returns what changed, for watchers.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<Vec<Change>, Conflict> {
        self.index = self.index.max(index);
        let mut changes = Vec::new();
        let mut undo: Vec<(Kind, String, Option<Object>)> = Vec::new();
        for op in &cmd.ops {
            if let Err(e) = self.check(op) {
                for (kind, id, old) in undo.into_iter().rev() {
                    self.remove(kind, &id);
                    if let Some(old) = old {
                        self.put_object(old);
                    }
                }
                return Err(e);
            }
            match op {
                Op::Create(o) | Op::Update { object: o, .. } => {
                    let mut o = o.clone();
                    o.meta_mut().version.index = index;
                    let action = if matches!(op, Op::Create(_)) {
                        "create"
                    } else {
                        "update"
                    };
                    changes.push(Change::of(action, &o));
                    let (kind, id) = (o.kind(), o.meta().id.clone());
                    undo.push((kind, id.clone(), self.get(kind, &id)));
                    self.put_object(o);
                }
                Op::Delete { kind, id } => {
                    if let Some(old) = self.remove(*kind, id) {
                        changes.push(Change::of("remove", &old));
                        undo.push((*kind, id.clone(), Some(old)));
                    }
                }
            }
        }
        Ok(changes)
    }

    /// Every object's kind and id (for writing a whole state out).
    pub fn all_keys(&self) -> Vec<(Kind, String)> {
        let mut keys = Vec::new();
        keys.extend(self.clusters.keys().map(|k| (Kind::Cluster, k.clone())));
        keys.extend(self.nodes.keys().map(|k| (Kind::Node, k.clone())));
        keys.extend(self.services.keys().map(|k| (Kind::Service, k.clone())));
        keys.extend(self.tasks.keys().map(|k| (Kind::Task, k.clone())));
        keys.extend(self.secrets.keys().map(|k| (Kind::Secret, k.clone())));
        keys.extend(self.configs.keys().map(|k| (Kind::Config, k.clone())));
        keys.extend(self.networks.keys().map(|k| (Kind::Network, k.clone())));
        keys
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.clusters.values().next().map(|c| &**c)
    }

    /// A service by full id, unique id prefix, or name (Docker's lookup order).
    pub fn find_service(&self, key: &str) -> Option<&Service> {
        find(&self.services, key, |s| s.name())
    }
    pub fn find_node(&self, key: &str) -> Option<&Node> {
        find(&self.nodes, key, |n| n.hostname())
    }
    pub fn find_task(&self, key: &str) -> Option<&Task> {
        find(&self.tasks, key, |_| "")
    }
    /// A swarm network by full id, name, or unique id prefix.
    pub fn find_network(&self, key: &str) -> Option<&Network> {
        find(&self.networks, key, |n| n.name())
    }
    pub fn find_secret(&self, kind: Kind, key: &str) -> Option<&Secret> {
        let map = if kind == Kind::Config {
            &self.configs
        } else {
            &self.secrets
        };
        find(map, key, |s| s.name())
    }
}

fn find<'a, T>(map: &'a Objects<T>, key: &str, name: impl Fn(&T) -> &str) -> Option<&'a T> {
    if key.is_empty() {
        return None;
    }
    if let Some(o) = map.get(key) {
        return Some(o);
    }
    if let Some(o) = map.values().find(|o| name(o) == key) {
        return Some(o);
    }
    let mut prefixed = map.iter().filter(|(id, _)| id.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some((_, o)), None) => Some(o),
        _ => None,
    }
}

/// What one applied command changed: the API's events and the controllers' wake-ups.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub action: &'static str,
    pub kind: Kind,
    pub id: String,
    pub name: String,
}

impl Change {
    fn of(action: &'static str, o: &Object) -> Change {
        let name = match o {
            Object::Node(n) => n.hostname().to_string(),
            other => other.unique_name().unwrap_or_default().to_string(),
        };
        Change {
            action,
            kind: o.kind(),
            id: o.meta().id.clone(),
            name,
        }
    }
}

/// The shared store: state, a watch of the applied index, and a feed of changes.
#[derive(Clone)]
pub struct Store {
    state: Arc<RwLock<State>>,
    index: watch::Sender<u64>,
    changes: broadcast::Sender<Change>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(State::default())
    }
}

impl Store {
    pub fn new(mut state: State) -> Store {
        state.share_specs();
        let (index, _) = watch::channel(state.index);
        let (changes, _) = broadcast::channel(1024);
        Store {
            state: Arc::new(RwLock::new(state)),
            index,
            changes,
        }
    }

    /// A consistent copy of the whole state, to hold across awaits. Cheap: it shares every
    /// map node and object with the store until a change replaces them (see [`Objects`]).
    /// Readers that only look briefly should use [`Store::view`].
    pub fn snapshot(&self) -> Arc<State> {
        Arc::new(self.state.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Reads the state without copying it.
    pub fn view<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn apply(&self, index: u64, cmd: &Command) -> Result<(), Conflict> {
        let result = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.apply(index, cmd)
        };
        self.index.send_replace(index);
        for change in result.as_ref().map(|c| c.as_slice()).unwrap_or_default() {
            let _ = self.changes.send(change.clone());
        }
        result.map(|_| ())
    }

    /// Replaces the whole state (a Raft snapshot being installed).
    pub fn replace(&self, mut state: State) {
        state.share_specs();
        let index = state.index;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        self.index.send_replace(index);
    }

    /// Wakes on every applied command.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.index.subscribe()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Meta, Service, Task, TaskState};

    fn service(id: &str, name: &str) -> Object {
        Object::Service(Service {
            meta: Meta::new(id.into()),
            spec: serde_json::json!({"Name": name}),
            ..Default::default()
        })
    }

    #[test]
    fn versions_are_the_index_and_stale_updates_are_refused() {
        let store = Store::default();
        store
            .apply(3, &Command::one(Op::Create(service("a", "web"))))
            .unwrap();
        let v = store.view(|s| s.services["a"].meta.version.index);
        assert_eq!(v, 3);
        let update = |expect| {
            Command::one(Op::Update {
                object: service("a", "web"),
                expect: Some(expect),
            })
        };
        store.apply(4, &update(3)).unwrap();
        assert_eq!(store.apply(5, &update(3)), Err(Conflict::Sequence));
        assert_eq!(store.view(|s| s.services["a"].meta.version.index), 4);
    }

    #[test]
    fn batches_are_all_or_nothing_and_names_unique() {
        let store = Store::default();
        let cmd = Command {
            ops: vec![
                Op::Create(service("a", "web")),
                Op::Create(service("b", "web")),
            ],
        };
        assert!(matches!(
            store.apply(1, &cmd),
            Err(Conflict::NameTaken { .. })
        ));
        assert!(store.view(|s| s.services.is_empty()));
        store
            .apply(2, &Command::one(Op::Create(service("abc", "web"))))
            .unwrap();
        let found = store.view(|s| s.find_service("ab").map(|s| s.meta.id.clone()));
        assert_eq!(found.as_deref(), Some("abc"));
        assert!(store.view(|s| s.find_service("web").is_some()));
    }

    fn web_task(id: &str, env: &str) -> Object {
        Object::Task(Task {
            meta: Meta::new(id.into()),
            spec: Arc::new(
                serde_json::json!({"ContainerSpec": {"Image": "busybox", "Env": [env]}}),
            ),
            service_id: "a".into(),
            ..Default::default()
        })
    }

    #[test]
    fn tasks_share_their_service_template() {
        let store = Store::default();
        let mut svc = service("a", "web");
        if let Object::Service(s) = &mut svc {
            s.spec["TaskTemplate"] =
                serde_json::json!({"ContainerSpec": {"Image": "busybox", "Env": ["A=1"]}});
        }
        store.apply(1, &Command::one(Op::Create(svc))).unwrap();
        let ops = (0..100).map(|i| Op::Create(web_task(&format!("t{i}"), "A=1")));
        store.apply(2, &Command { ops: ops.collect() }).unwrap();
        store
            .apply(3, &Command::one(Op::Create(web_task("old", "A=0"))))
            .unwrap();
        let shared = |s: &State| {
            let first = &s.tasks["t0"].spec;
            let all = (0..100).all(|i| Arc::ptr_eq(first, &s.tasks[&format!("t{i}")].spec));
            all && !Arc::ptr_eq(first, &s.tasks["old"].spec)
        };
        assert!(store.view(shared));
        // A state read back from a Raft snapshot shares them too.
        let text = serde_json::to_string(&*store.snapshot()).unwrap();
        let other = Store::default();
        other.replace(serde_json::from_str(&text).unwrap());
        assert!(other.view(shared));
        assert_eq!(*other.snapshot(), *store.snapshot());
    }

    /// A snapshot shares what later changes leave alone: 1,000 tasks held by a reader are
    /// not copied when one of them changes, and the reader still sees the old version.
    #[test]
    fn snapshots_share_what_did_not_change() {
        let store = Store::default();
        store
            .apply(1, &Command::one(Op::Create(service("a", "web"))))
            .unwrap();
        let ops = (0..1000).map(|i| Op::Create(web_task(&format!("t{i}"), "A=1")));
        store.apply(2, &Command { ops: ops.collect() }).unwrap();
        let before = store.snapshot();
        let mut t5 = Task::clone(&before.tasks["t5"]);
        t5.desired_state = TaskState::Shutdown;
        store
            .apply(
                3,
                &Command::one(Op::Update {
                    object: Object::Task(t5),
                    expect: None,
                }),
            )
            .unwrap();
        let after = store.snapshot();
        assert_ne!(before.tasks["t5"].desired_state, TaskState::Shutdown);
        assert_eq!(after.tasks["t5"].desired_state, TaskState::Shutdown);
        let shared = (0..1000)
            .filter(|i| {
                let id = format!("t{i}");
                Arc::ptr_eq(&before.tasks[&id], &after.tasks[&id])
            })
            .count();
        assert_eq!(shared, 999);
    }

    #[tokio::test]
    async fn watchers_wake_on_changes() {
        let store = Store::default();
        let mut watch = store.watch();
        let mut feed = store.subscribe();
        store
            .apply(7, &Command::one(Op::Create(service("a", "web"))))
            .unwrap();
        watch.changed().await.unwrap();
        assert_eq!(*watch.borrow(), 7);
        let change = feed.recv().await.unwrap();
        assert_eq!((change.action, change.name.as_str()), ("create", "web"));
    }
}
