//! Swarm bring-up and the swarm queries the swarm and overlay tests share: a swarm over a
//! [`Cluster`] (init on node 0, joins, every node ready), busybox on every node, polling with
//! a deadline, and the task, node and container views the tests wait on. One-daemon swarms
//! (`swarm.rs`, `swarm_services.rs`, ...) use the [`Daemon`] helpers at the end.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{ApiResponse, Cluster, Daemon};

/// Loads busybox into a daemon (re-exported: the swarm tests load it on every node).
pub use crate::containers::load_busybox;

/// Polls `f` every `every` until it holds; past `within` the test fails naming `what`. Each
/// test file keeps its own deadline (a loaded 2-core machine runs 3-5 daemons).
pub fn poll(what: &str, within: Duration, every: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

/// `filters` as a query value (`?filters=` + this).
pub fn enc_filters(filters: &Value) -> String {
    form_urlencoded::byte_serialize(filters.to_string().as_bytes()).collect()
}

/// A swarm spec part with the dispatcher heartbeat (a node is down after three missed ones).
pub fn heartbeat(secs: u64) -> Value {
    json!({"Dispatcher": {"HeartbeatPeriod": secs * 1_000_000_000}})
}

/// The daemon's swarm node id (empty outside a swarm).
pub fn node_id(d: &Daemon) -> String {
    d.api().get("/info").json()["Swarm"]["NodeID"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `GET /nodes` as a manager sees it (empty when it answers an error).
pub fn nodes(d: &Daemon) -> Vec<Value> {
    d.api()
        .get("/nodes")
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether the manager `d` lists exactly `n` nodes, all ready.
pub fn all_ready(d: &Daemon, n: usize) -> bool {
    let ns = nodes(d);
    ns.len() == n && ns.iter().all(|n| n["Status"]["State"] == "ready")
}

/// The ids of the nodes `d` lists as ready.
pub fn ready_node_ids(d: &Daemon) -> Vec<String> {
    nodes(d)
        .iter()
        .filter(|n| n["Status"]["State"] == "ready")
        .map(|n| n["ID"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// How many managers `d` lists as reachable.
pub fn reachable_managers(d: &Daemon) -> usize {
    nodes(d)
        .iter()
        .filter(|n| n["ManagerStatus"]["Reachability"] == "reachable")
        .count()
}

/// The node's certificate chain and key as its identity file holds them.
pub fn identity(d: &Daemon) -> Value {
    let path = d.data_root().join("swarm/certificates/identity.json");
    serde_json::from_slice(&std::fs::read(&path).expect("identity file")).expect("identity JSON")
}

/// `GET /tasks` with `filters` on a manager (empty on an error).
pub fn list_tasks(d: &Daemon, filters: &Value) -> Vec<Value> {
    d.api()
        .get(&format!("/tasks?filters={}", enc_filters(filters)))
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether a task is running.
pub fn is_running(t: &Value) -> bool {
    t["Status"]["State"] == "running"
}

/// A service's tasks that should run and do (`/tasks` on a manager; empty on an error).
pub fn running_tasks(d: &Daemon, service: &str) -> Vec<Value> {
    let filters = json!({"service": [service], "desired-state": ["running"]});
    list_tasks(d, &filters)
        .into_iter()
        .filter(is_running)
        .collect()
}

/// A task's node id.
pub fn task_node(t: &Value) -> String {
    t["NodeID"].as_str().unwrap_or_default().to_string()
}

/// A task's container id.
pub fn task_container(t: &Value) -> String {
    t["Status"]["ContainerStatus"]["ContainerID"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Running tasks of a service per node id.
pub fn running_by_node(d: &Daemon, service: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in running_tasks(d, service) {
        *out.entry(task_node(&t)).or_default() += 1;
    }
    out
}

/// The ids of a service's running task containers (as the manager's `/tasks` shows them).
pub fn running_task_containers(d: &Daemon, service: &str) -> Vec<String> {
    running_tasks(d, service)
        .iter()
        .map(task_container)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The container of a service's running task of its current spec (not one that an update
/// is replacing).
pub fn current_task_container(d: &Daemon, name: &str) -> Option<String> {
    let tasks = running_tasks(d, name);
    let spec = service(d, name)["Spec"]["TaskTemplate"].clone();
    tasks
        .iter()
        .filter(|t| t["Spec"] == spec)
        .map(task_container)
        .find(|c| !c.is_empty())
}

/// Waits for [`current_task_container`] and answers it.
pub fn wait_current_task_container(d: &Daemon, name: &str) -> String {
    let mut id = None;
    crate::containers::until(&format!("a running task of {name}"), || {
        id = current_task_container(d, name);
        id.is_some()
    });
    id.unwrap()
}

/// The ids of a service's task containers running on this one daemon (by the swarm labels).
pub fn local_task_container_ids(d: &Daemon, service: &str) -> Vec<String> {
    let filters = json!({"label": [format!("com.docker.swarm.service.name={service}")], "status": ["running"]});
    d.api()
        .get(&format!(
            "/containers/json?filters={}",
            enc_filters(&filters)
        ))
        .json()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["Id"].as_str().map(str::to_string))
        .collect()
}

/// How many task containers of a service run on this one daemon.
pub fn local_task_containers(d: &Daemon, service: &str) -> usize {
    local_task_container_ids(d, service).len()
}

impl Cluster {
    /// Loads busybox into every node.
    pub fn load_busybox(&self) {
        for n in &self.nodes {
            load_busybox(n);
        }
    }

    /// `swarm init` on node 0 (listening on all its addresses, advertising its own), with
    /// `spec` as the swarm spec unless it is null; answers `GET /swarm` (the join tokens).
    pub fn init_swarm(&self, spec: Value) -> Value {
        let m = self.node(0);
        let mut body = json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": m.ip});
        if !spec.is_null() {
            body["Spec"] = spec;
        }
        let r = m
            .api()
            .post("/swarm/init", Some(body.to_string().as_bytes()));
        assert_eq!(r.status, 200, "swarm init: {}", r.text());
        m.api().get("/swarm").json()
    }

    /// `swarm join` of node `i` to node 0 with `token`, whatever the answer.
    pub fn try_join(&self, i: usize, token: &str) -> ApiResponse {
        self.join_request(i, token, false)
    }

    /// `swarm join` of node `i` to node 0 with `token`, which must succeed.
    pub fn join(&self, i: usize, token: &str) {
        let r = self.try_join(i, token);
        assert_eq!(r.status, 200, "swarm join of node {i}: {}", r.text());
    }

    /// [`Cluster::join`] with the node's own address as its advertised address.
    pub fn join_advertised(&self, i: usize, token: &str) {
        let r = self.join_request(i, token, true);
        assert_eq!(r.status, 200, "swarm join of node {i}: {}", r.text());
    }

    fn join_request(&self, i: usize, token: &str, advertise: bool) -> ApiResponse {
        let mut body = json!({"ListenAddr": "0.0.0.0:2377", "RemoteAddrs": [self.node(0).addr(2377)], "JoinToken": token});
        if advertise {
            body["AdvertiseAddr"] = json!(self.node(i).ip);
        }
        self.node(i)
            .api()
            .post("/swarm/join", Some(body.to_string().as_bytes()))
    }

    /// Joins nodes 1.. to node 0's swarm: those below `managers` as managers, the rest as
    /// workers (the tokens from `swarm`, node 0's `GET /swarm`).
    pub fn join_all(&self, swarm: &Value, managers: usize) {
        for i in 1..self.nodes.len() {
            let role = if i < managers { "Manager" } else { "Worker" };
            self.join(i, swarm["JoinTokens"][role].as_str().unwrap());
        }
    }

    /// Waits until node 0 lists every node of the cluster as ready.
    pub fn wait_all_ready(&self) {
        let n = self.nodes.len();
        poll(
            &format!("{n} ready nodes"),
            Duration::from_secs(90),
            Duration::from_millis(100),
            || all_ready(self.node(0), n),
        );
    }

    /// Node 0 initialises a swarm with a heartbeat of `heartbeat_secs`, nodes 1.. join
    /// (below `managers` as managers, the rest as workers), every node ready.
    pub fn form_swarm(&self, managers: usize, heartbeat_secs: u64) {
        let swarm = self.init_swarm(heartbeat(heartbeat_secs));
        self.join_all(&swarm, managers);
        self.wait_all_ready();
    }

    /// A swarm of `n` with busybox on every node ([`Cluster::form_swarm`]).
    pub fn swarm(n: usize, managers: usize, heartbeat_secs: u64) -> Cluster {
        let c = Cluster::new(n, &[]);
        c.load_busybox();
        c.form_swarm(managers, heartbeat_secs);
        c
    }

    /// The daemon whose swarm node id is `id` (by its own `/info`).
    pub fn daemon_of(&self, id: &str) -> &Daemon {
        self.nodes
            .iter()
            .find(|n| node_id(n) == id)
            .map(|n| &n.daemon)
            .unwrap_or_else(|| panic!("no node has the id {id}"))
    }

    /// A swarm of two as the overlay tests use it: node 0 a manager, node 1 a worker that
    /// advertises its address, a 1 s dispatcher heartbeat, busybox loaded on both, both
    /// ready. `None` (with a note) without a docker CLI, which those tests drive.
    pub fn swarm_of_two() -> Option<Cluster> {
        let c = Cluster::new(2, &[]);
        if c.node(0).docker(&["version"]).is_none() {
            eprintln!("skipped: no docker CLI");
            return None;
        }
        c.load_busybox();
        let swarm = c.init_swarm(heartbeat(1));
        c.join_advertised(1, swarm["JoinTokens"]["Worker"].as_str().unwrap());
        c.wait_all_ready();
        Some(c)
    }
}

/// `swarm init` of a one-daemon swarm on 127.0.0.1; answers the node id.
pub fn init_local(d: &Daemon) -> String {
    let r = d
        .api()
        .post("/swarm/init", Some(br#"{"ListenAddr": "127.0.0.1:2377"}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_str().unwrap().to_string()
}

/// `docker swarm init --advertise-addr 127.0.0.1`; false (with a note) without a docker CLI.
pub fn docker_init_local(d: &Daemon) -> bool {
    let Some(out) = d.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]) else {
        eprintln!("skipped: no docker CLI");
        return false;
    };
    out.success();
    true
}

/// `POST /services/create`, which must succeed; answers the service id.
pub fn create_service(d: &Daemon, spec: impl Borrow<Value>) -> String {
    let r = d.api().post(
        "/services/create",
        Some(spec.borrow().to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["ID"].as_str().unwrap().to_string()
}

/// `GET /services/{id}`, which must succeed.
pub fn service(d: &Daemon, id: &str) -> Value {
    let r = d.api().get(&format!("/services/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}
