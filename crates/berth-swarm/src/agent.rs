//! A node's agent: runs the tasks assigned to this node through the engine
//! ([`TaskExecutor`], swarmkit's `exec.Executor`), and reports their states back to the store.
//! Each pass compares the store's tasks for this node with the engine's containers, so a
//! daemon restart (or a report lost to a conflict) is recovered from on the next pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::store::{Command, Op, State};
use crate::types::{ContainerStatus, Object, Secret, Task, TaskState, TaskStatus};
use crate::{BoxFuture, ProposeError, Proposer};

/// A file a task gets in memory: a secret (under `/run/secrets`) or a config.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFile {
    /// Absolute path in the container.
    pub target: String,
    pub data: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// What the engine needs to run one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRun {
    pub task_id: String,
    /// `SERVICE.SLOT.TASKID` (`SERVICE.NODEID.TASKID` for global services), as Docker names them.
    pub name: String,
    /// The container's create body, in the Engine API's shape.
    pub config: Value,
    pub files: Vec<TaskFile>,
    /// `X-Registry-Auth` of the service's last create or update with `--with-registry-auth`:
    /// the credentials to pull the image with.
    pub registry_auth: Option<String>,
}

/// A task's container as the engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Running {
        container_id: String,
        pid: i64,
    },
    Exited {
        container_id: String,
        exit_code: i64,
        error: String,
    },
    Missing,
}

/// The engine side of the agent, implemented by berthd over its container manager.
pub trait TaskExecutor: Send + Sync {
    /// Creates and starts the task's container; answers its id and pid, or why not.
    fn start(&self, run: TaskRun) -> BoxFuture<'_, Result<(String, i64), String>>;
    fn observe<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Observed>;
    /// Stops the task's container (it stays, for `service ps` and logs, until removed).
    fn stop<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, ()>;
    /// Removes the task's container and its in-memory files.
    fn remove<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, ()>;
    /// The task ids of every task container the engine has.
    fn list(&self) -> BoxFuture<'_, Vec<String>>;
    /// Gets what the task needs before it can start: its image, pulled if missing (task
    /// state `preparing`). `Ok(false)`: not yet (a pull runs in the background, and the pass
    /// must not wait for it); an error rejects the task.
    fn prepare<'a>(&'a self, _run: &'a TaskRun) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async { Ok(true) })
    }
    /// The health of the task's running container (`starting`, `healthy`, `unhealthy`), or
    /// `None` without a health check: a task with one runs, for the orchestrator and for
    /// updates, once healthy.
    fn health<'a>(&'a self, _task_id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
    /// The logs of this node's task containers (served to managers asking for them).
    fn task_logs(&self) -> Option<std::sync::Arc<dyn crate::logs::TaskLogSource>> {
        None
    }
    /// Called at the start of every pass: an engine can read its containers once here and
    /// answer the pass's `observe`/`list` calls from that.
    fn begin_pass(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// Resolves when a task container's health status changes or it dies (an engine that
    /// cannot tell never resolves: the agent's one-second poll still sees it), so that an
    /// unhealthy or dead task leaves the rotation without waiting for the poll (on a worker,
    /// without waiting for its session's next round either).
    fn health_changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
    /// Whether the task's container has its interfaces on the task's overlay networks: a
    /// task is reported `running` (and so enters every node's VIP and mesh rotation) only
    /// then; until then it is `starting` (an engine that attaches networks before the
    /// container starts answers true).
    fn networks_ready<'a>(
        &'a self,
        _task: &'a Task,
        _container_id: &'a str,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }
    /// The host ports the task's running container published, as the API's `PortStatus`.
    fn ports<'a>(&'a self, _task_id: &'a str) -> BoxFuture<'a, Option<Value>> {
        Box::pin(async { None })
    }
}

/// dockerd's error for a task whose container turned unhealthy.
pub const UNHEALTHY: &str = "dockerexec: unhealthy container";

pub const LABEL_SERVICE_NAME: &str = "com.docker.swarm.service.name";
pub const LABEL_SERVICE_ID: &str = "com.docker.swarm.service.id";
pub const LABEL_TASK_ID: &str = "com.docker.swarm.task.id";
pub const LABEL_TASK_NAME: &str = "com.docker.swarm.task.name";
pub const LABEL_NODE_ID: &str = "com.docker.swarm.node.id";
pub const LABEL_TASK: &str = "com.docker.swarm.task";

/// Docker's task name: `SERVICE.SLOT.TASKID`, or `SERVICE.NODEID.TASKID` for global tasks.
pub fn task_name(service_name: &str, task: &Task) -> String {
    if task.slot > 0 {
        format!("{service_name}.{}.{}", task.slot, task.meta.id)
    } else {
        format!("{service_name}.{}.{}", task.node_id, task.meta.id)
    }
}

/// A secret (`config` false) or config by id, from the cluster state.
pub(crate) fn stored<'a>(state: &'a State, config: bool, id: &str) -> Option<&'a Arc<Secret>> {
    if config {
        state.configs.get(id)
    } else {
        state.secrets.get(id)
    }
}

/// A secret's or config's payload (`Data`, base64 in the API).
pub(crate) fn secret_bytes(spec: &Value) -> Vec<u8> {
    spec["Data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .unwrap_or_default()
}

/// The files a task's secrets and configs become, or the first reference that is missing.
/// One per reference, secrets first, in the spec's order: `templated::expand_files` relies on it.
fn task_files(state: &State, spec: &Value) -> Result<Vec<TaskFile>, String> {
    let mut files = Vec::new();
    for (key, dir, config) in [("Secrets", "/run/secrets/", false), ("Configs", "/", true)] {
        for r in spec[key].as_array().into_iter().flatten() {
            let (id_key, name_key) = if config {
                ("ConfigID", "ConfigName")
            } else {
                ("SecretID", "SecretName")
            };
            let id = r[id_key].as_str().unwrap_or_default();
            let name = r[name_key].as_str().unwrap_or_default();
            let Some(stored) = stored(state, config, id) else {
                return Err(format!(
                    "{} {name} ({id}) not found",
                    &key[..key.len() - 1].to_lowercase()
                ));
            };
            let file = &r["File"];
            let target = file["Name"].as_str().unwrap_or(name);
            let target = if target.starts_with('/') {
                target.to_string()
            } else {
                format!("{dir}{target}")
            };
            let num = |v: &Value, d: u32| {
                v.as_str()
                    .and_then(|s| s.parse().ok())
                    .or(v.as_u64().map(|n| n as u32))
                    .unwrap_or(d)
            };
            files.push(TaskFile {
                target,
                data: secret_bytes(&stored.spec),
                uid: num(&file["UID"], 0),
                gid: num(&file["GID"], 0),
                mode: num(&file["Mode"], 0o444),
            });
        }
    }
    Ok(files)
}

/// The container a task runs as, from its `ContainerSpec`.
pub fn task_run(state: &State, task: &Task, node_id: &str) -> Result<TaskRun, String> {
    let service_name = state
        .services
        .get(&task.service_id)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let cs = &task.spec["ContainerSpec"];
    let name = task_name(&service_name, task);
    let mut labels: BTreeMap<String, Value> = cs["Labels"]
        .as_object()
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    for (k, v) in [
        (LABEL_SERVICE_NAME, service_name.as_str()),
        (LABEL_SERVICE_ID, task.service_id.as_str()),
        (LABEL_TASK_ID, task.meta.id.as_str()),
        (LABEL_TASK_NAME, name.as_str()),
        (LABEL_NODE_ID, node_id),
        (LABEL_TASK, ""),
    ] {
        labels.insert(k.to_string(), json!(v));
    }
    let mut config = json!({
        "Image": cs["Image"],
        "Labels": labels,
        "HostConfig": {"RestartPolicy": {"Name": "no"}},
    });
    let copy = [
        ("Env", "Env"),
        ("Args", "Cmd"),
        ("Command", "Entrypoint"),
        ("Hostname", "Hostname"),
        ("User", "User"),
        ("Dir", "WorkingDir"),
        ("TTY", "Tty"),
        ("OpenStdin", "OpenStdin"),
        ("StopSignal", "StopSignal"),
        ("Healthcheck", "Healthcheck"),
    ];
    for (from, to) in copy {
        if !cs[from].is_null() {
            config[to] = cs[from].clone();
        }
    }
    if let Some(ns) = cs["StopGracePeriod"].as_u64() {
        config["StopTimeout"] = json!(ns / 1_000_000_000);
    }
    let host = &mut config["HostConfig"];
    for (from, to) in [
        ("Mounts", "Mounts"),
        ("Init", "Init"),
        ("ReadOnly", "ReadonlyRootfs"),
        ("CapabilityAdd", "CapAdd"),
        ("CapabilityDrop", "CapDrop"),
        ("Sysctls", "Sysctls"),
    ] {
        if !cs[from].is_null() {
            host[to] = cs[from].clone();
        }
    }
    let limits = &task.spec["Resources"]["Limits"];
    if let Some(m) = limits["MemoryBytes"].as_i64().filter(|m| *m > 0) {
        host["Memory"] = json!(m);
    }
    if let Some(c) = limits["NanoCPUs"].as_i64().filter(|c| *c > 0) {
        host["NanoCpus"] = json!(c);
    }
    crate::task_config::extend(state, task, &mut config);
    crate::task_privileges::apply(cs, &mut config);
    crate::allocator::task_networking(task, &mut config);
    let files = task_files(state, cs)?;
    let registry_auth = state
        .services
        .get(&task.service_id)
        .and_then(|s| s.registry_auth.clone());
    Ok(TaskRun {
        task_id: task.meta.id.clone(),
        name,
        config,
        files,
        registry_auth,
    })
}

fn report(
    task: &Task,
    state: TaskState,
    message: &str,
    err: &str,
    cs: Option<ContainerStatus>,
) -> Op {
    let mut t = task.clone();
    t.status = TaskStatus::new(state, message);
    t.status.err = err.to_string();
    t.status.container_status = cs.or(task.status.container_status.clone());
    t.status.port_status = task.status.port_status.clone();
    Op::Update {
        expect: Some(task.meta.version.index),
        object: Object::Task(t),
    }
}

/// How many of a node's tasks are being started at once. A start holds blocking threads
/// (mounts, the shim's spawn) and gains nothing past a few per core; a service scaled to 1,000
/// started ~330 at once per node, and the threads' stacks and allocator caches were the
/// node's memory peak. Stops are not limited: each may wait out a grace period.
const STARTS_AT_ONCE: usize = 16;
static STARTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(STARTS_AT_ONCE);

/// What one task needs from the engine now, if anything.
async fn step(
    state: &State,
    task: &Task,
    node_id: &str,
    executor: &dyn TaskExecutor,
) -> Option<Op> {
    // Jobs want their tasks complete, services running.
    let wanted = task.desired_state <= TaskState::Complete;
    let status = task.status.state;
    if wanted && (TaskState::Assigned..TaskState::Preparing).contains(&status) {
        // Said first, so that `service ps` shows what a long pull is waiting for.
        return Some(report(task, TaskState::Preparing, "preparing", "", None));
    }
    if wanted && (TaskState::Preparing..TaskState::Running).contains(&status) {
        // Started on a previous pass whose report was lost, or waiting to be healthy?
        if let Observed::Running { container_id, pid } = executor.observe(&task.meta.id).await {
            return running(task, executor, container_id, pid).await;
        }
        if status == TaskState::Starting {
            // It ran, and ended before it was healthy: the running branch's verdict.
            return ended(task, executor).await;
        }
        let mut run = match task_run(state, task, node_id) {
            Ok(run) => run,
            Err(e) => return Some(report(task, TaskState::Rejected, "preparing", &e, None)),
        };
        match executor.prepare(&run).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(report(task, TaskState::Rejected, "preparing", &e, None)),
        }
        // Templated payloads expand at the container's start, as dockerd's: a bad one fails it.
        if let Err(e) = crate::templated::expand_files(state, task, &mut run.files) {
            return Some(report(task, TaskState::Failed, "starting", &e, None));
        }
        let started = {
            let _turn = STARTS.acquire().await;
            executor.start(run).await
        };
        return Some(match started {
            Ok((container_id, pid)) => running(task, executor, container_id, pid)
                .await
                .unwrap_or_else(|| report(task, TaskState::Running, "started", "", None)),
            Err(e) => report(task, TaskState::Rejected, "starting", &e, None),
        });
    }
    if wanted && status == TaskState::Running {
        if let Observed::Running { .. } = executor.observe(&task.meta.id).await {
            if executor.health(&task.meta.id).await.as_deref() == Some("unhealthy") {
                return Some(unhealthy(task, executor).await);
            }
            return None;
        }
        return ended(task, executor).await;
    }
    if status == TaskState::Failed && task.status.err == UNHEALTHY {
        // Out of rotation since the last pass: now the stop, and dockerd's final words.
        return Some(stop_unhealthy(task, executor).await);
    }
    if !wanted && !status.is_terminal() {
        executor.stop(&task.meta.id).await;
        let cs = match executor.observe(&task.meta.id).await {
            Observed::Exited {
                container_id,
                exit_code,
                ..
            } => Some(ContainerStatus {
                container_id,
                pid: 0,
                exit_code,
            }),
            _ => None,
        };
        return Some(report(task, TaskState::Shutdown, "shutdown", "", cs));
    }
    None
}

/// A started task's report: `running`, or `starting` while its health check has not passed
/// yet (dockerd's executor waits for `healthy` the same way); `None` when nothing changed.
async fn running(
    task: &Task,
    executor: &dyn TaskExecutor,
    container_id: String,
    pid: i64,
) -> Option<Op> {
    let cs = ContainerStatus {
        container_id,
        pid,
        exit_code: 0,
    };
    let ports = executor.ports(&task.meta.id).await;
    let with_ports = |op: Op| match op {
        Op::Update {
            expect,
            object: Object::Task(mut t),
        } => {
            t.status.port_status = ports.clone().or(t.status.port_status);
            Op::Update {
                expect,
                object: Object::Task(t),
            }
        }
        other => other,
    };
    let op = match executor.health(&task.meta.id).await.as_deref() {
        Some("unhealthy") => Some(unhealthy(task, executor).await),
        Some("starting") | Some("") if task.status.state == TaskState::Starting => None,
        Some("starting") | Some("") => {
            Some(report(task, TaskState::Starting, "starting", "", Some(cs)))
        }
        _ if !executor.networks_ready(task, &cs.container_id).await => (task.status.state
            != TaskState::Starting)
            .then(|| report(task, TaskState::Starting, "starting", "", Some(cs))),
        _ => Some(report(task, TaskState::Running, "started", "", Some(cs))),
    };
    op.map(with_ports)
}

/// An unhealthy container's task fails at once, before its container is stopped: the
/// failure takes it out of every node's VIP and routing-mesh rotation (Docker deactivates
/// the service binding first too), while the stop may wait out a grace period of seconds.
/// The next pass stops the container ([`stop_unhealthy`]).
async fn unhealthy(task: &Task, executor: &dyn TaskExecutor) -> Op {
    let cs = match executor.observe(&task.meta.id).await {
        Observed::Running { container_id, pid } => Some(ContainerStatus {
            container_id,
            pid,
            exit_code: 0,
        }),
        _ => None,
    };
    report(task, TaskState::Failed, "started", UNHEALTHY, cs)
}

/// Stops a task failed as unhealthy and reports its exit as dockerd words it.
async fn stop_unhealthy(task: &Task, executor: &dyn TaskExecutor) -> Op {
    executor.stop(&task.meta.id).await;
    let (cs, code) = match executor.observe(&task.meta.id).await {
        Observed::Exited {
            container_id,
            exit_code,
            ..
        } => (
            Some(ContainerStatus {
                container_id,
                pid: 0,
                exit_code,
            }),
            exit_code,
        ),
        _ => (None, 0),
    };
    let err = format!("task: non-zero exit ({code}): {UNHEALTHY}");
    report(task, TaskState::Failed, "started", &err, cs)
}

/// The report for a task whose container is no longer running.
async fn ended(task: &Task, executor: &dyn TaskExecutor) -> Option<Op> {
    {
        match executor.observe(&task.meta.id).await {
            Observed::Running { .. } => None,
            Observed::Exited {
                container_id,
                exit_code,
                error,
            } => {
                let cs = Some(ContainerStatus {
                    container_id,
                    pid: 0,
                    exit_code,
                });
                Some(if exit_code == 0 && error.is_empty() {
                    report(task, TaskState::Complete, "finished", "", cs)
                } else {
                    let err = if error.is_empty() {
                        format!("task: non-zero exit ({exit_code})")
                    } else {
                        error
                    };
                    report(task, TaskState::Failed, "started", &err, cs)
                })
            }
            Observed::Missing => Some(report(
                task,
                TaskState::Failed,
                "started",
                "container removed",
                None,
            )),
        }
    }
}

/// One pass over this node's tasks; answers the status reports to commit. Tasks are handled
/// concurrently: stopping one waits out its grace period (10 s by default) and must not
/// hold back the others.
pub async fn pass(state: &State, node_id: &str, executor: &dyn TaskExecutor) -> Vec<Op> {
    executor.begin_pass().await;
    let steps = state
        .tasks
        .values()
        .filter(|t| t.node_id == node_id)
        .map(|task| step(state, task, node_id, executor));
    let ops: Vec<Op> = futures_util::future::join_all(steps)
        .await
        .into_iter()
        .flatten()
        .collect();
    // Containers whose task is gone from the store (or moved away) go.
    let gone: Vec<String> = executor
        .list()
        .await
        .into_iter()
        .filter(|id| state.tasks.get(id).is_none_or(|t| t.node_id != node_id))
        .collect();
    futures_util::future::join_all(gone.iter().map(|id| executor.remove(id))).await;
    ops
}

/// Runs passes until `stop`, after every store change and every second (containers exit
/// without the store knowing).
pub async fn run(
    node_id: String,
    proposer: Arc<dyn Proposer>,
    executor: Arc<dyn TaskExecutor>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut watch = proposer.store().watch();
    // Kept across rounds, so that an event during a pass is not missed.
    let mut changed = armed(executor.as_ref());
    loop {
        let state = proposer.store().snapshot();
        let ops = pass(&state, &node_id, executor.as_ref()).await;
        drop(state);
        // One report per command: a conflict on one task must not hold back the others. All
        // at once: Raft batches them into a few entries (one after the other, 1,000 task
        // starts were 1,000+ round trips to the leader).
        let reports = ops.into_iter().map(|op| proposer.propose(Command::one(op)));
        for result in futures_util::future::join_all(reports).await {
            match result {
                Ok(()) | Err(ProposeError::Conflict(_)) => {}
                Err(e) => tracing::warn!(error = %e, "agent could not report a task's state"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = watch.changed() => {}
            _ = &mut changed => changed = armed(executor.as_ref()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The executor's [`TaskExecutor::health_changed`], polled once so that it listens from now
/// on (it subscribes to the engine's events when first polled).
pub(crate) fn armed(executor: &dyn TaskExecutor) -> crate::BoxFuture<'_, ()> {
    use futures_util::FutureExt;
    let mut f = executor.health_changed();
    if (&mut f).now_or_never().is_some() {
        // Already fired: a future that resolves at once, for the next round.
        return Box::pin(std::future::ready(()));
    }
    f
}

/// Removes every task container, killing those still running (the node leaves the swarm).
pub async fn remove_all(executor: &dyn TaskExecutor) {
    executor.begin_pass().await;
    let ids = executor.list().await;
    futures_util::future::join_all(ids.iter().map(|id| executor.remove(id))).await;
}

/// The task template's references to secrets and configs, for refusing to remove one in use.
pub fn references(spec: &Value, key: &str, id: &str) -> bool {
    let id_key = if key == "Secrets" {
        "SecretID"
    } else {
        "ConfigID"
    };
    spec["TaskTemplate"]["ContainerSpec"][key]
        .as_array()
        .is_some_and(|a| a.iter().any(|r| r[id_key] == id))
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
