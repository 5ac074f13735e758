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

/// The whole cluster state at one index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub index: u64,
    pub clusters: BTreeMap<String, Cluster>,
    pub nodes: BTreeMap<String, Node>,
    pub services: BTreeMap<String, Service>,
    pub tasks: BTreeMap<String, Task>,
    pub secrets: BTreeMap<String, Secret>,
    pub configs: BTreeMap<String, Secret>,
    /// Swarm-scoped networks (absent from states written before they existed).
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
}

impl State {
    pub fn get(&self, kind: Kind, id: &str) -> Option<Object> {
        Some(match kind {
            Kind::Cluster => Object::Cluster(self.clusters.get(id)?.clone()),
            Kind::Node => Object::Node(self.nodes.get(id)?.clone()),
            Kind::Service => Object::Service(self.services.get(id)?.clone()),
            Kind::Task => Object::Task(self.tasks.get(id)?.clone()),
            Kind::Secret => Object::Secret(self.secrets.get(id)?.clone()),
            Kind::Config => Object::Config(self.configs.get(id)?.clone()),
            Kind::Network => Object::Network(self.networks.get(id)?.clone()),
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
            Object::Cluster(o) => drop(self.clusters.insert(o.meta.id.clone(), o)),
            Object::Node(o) => drop(self.nodes.insert(o.meta.id.clone(), o)),
            Object::Service(o) => drop(self.services.insert(o.meta.id.clone(), o)),
            Object::Task(o) => drop(self.tasks.insert(o.meta.id.clone(), o)),
            Object::Secret(o) => drop(self.secrets.insert(o.meta.id.clone(), o)),
            Object::Config(o) => drop(self.configs.insert(o.meta.id.clone(), o)),
            Object::Network(o) => drop(self.networks.insert(o.meta.id.clone(), o)),
        }
    }

    fn remove(&mut self, kind: Kind, id: &str) -> Option<Object> {
        let old = self.get(kind, id)?;
        match kind {
            Kind::Cluster => drop(self.clusters.remove(id)),
            Kind::Node => drop(self.nodes.remove(id)),
            Kind::Service => drop(self.services.remove(id)),
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
        self.clusters.values().next()
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

fn find<'a, T>(
    map: &'a BTreeMap<String, T>,
    key: &str,
    name: impl Fn(&T) -> &str,
) -> Option<&'a T> {
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
    pub fn new(state: State) -> Store {
        let (index, _) = watch::channel(state.index);
        let (changes, _) = broadcast::channel(1024);
        Store {
            state: Arc::new(RwLock::new(state)),
            index,
            changes,
        }
    }

    /// A consistent copy of the whole state (cheap enough at swarm sizes: thousands of tasks).
    pub fn snapshot(&self) -> State {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
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
    pub fn replace(&self, state: State) {
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
    use crate::types::{Meta, Service};

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
