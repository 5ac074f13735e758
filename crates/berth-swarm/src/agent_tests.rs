//! The agent's steps against a fake engine: preparing (and waiting for a pull), health
//! gating, unhealthy containers.

use std::sync::Mutex;

use super::*;
use crate::types::{Meta, Service};

#[derive(Default)]
struct Fake {
    /// Whether `prepare` says the image is here.
    image_ready: Mutex<bool>,
    health: Mutex<Option<String>>,
    running: Mutex<bool>,
    stopped: Mutex<bool>,
    /// Whether the container's overlay interfaces are in place (`None`: the default, yes).
    networks_ready: Mutex<Option<bool>>,
}

impl TaskExecutor for Fake {
    fn start(&self, _run: TaskRun) -> BoxFuture<'_, Result<(String, i64), String>> {
        *self.running.lock().unwrap() = true;
        Box::pin(async { Ok(("c1".to_string(), 42)) })
    }
    fn observe<'a>(&'a self, _task_id: &'a str) -> BoxFuture<'a, Observed> {
        let running = *self.running.lock().unwrap();
        Box::pin(async move {
            if running {
                Observed::Running {
                    container_id: "c1".into(),
                    pid: 42,
                }
            } else {
                Observed::Exited {
                    container_id: "c1".into(),
                    exit_code: 137,
                    error: String::new(),
                }
            }
        })
    }
    fn stop<'a>(&'a self, _task_id: &'a str) -> BoxFuture<'a, ()> {
        *self.running.lock().unwrap() = false;
        *self.stopped.lock().unwrap() = true;
        Box::pin(async {})
    }
    fn remove<'a>(&'a self, _task_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
    fn list(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async { vec!["t1".to_string()] })
    }
    fn prepare<'a>(&'a self, _run: &'a TaskRun) -> BoxFuture<'a, Result<bool, String>> {
        let ready = *self.image_ready.lock().unwrap();
        Box::pin(async move { Ok(ready) })
    }
    fn health<'a>(&'a self, _task_id: &'a str) -> BoxFuture<'a, Option<String>> {
        let h = self.health.lock().unwrap().clone();
        Box::pin(async move { h })
    }
    fn networks_ready<'a>(&'a self, _task: &'a Task, _container: &'a str) -> BoxFuture<'a, bool> {
        let ready = self.networks_ready.lock().unwrap().unwrap_or(true);
        Box::pin(async move { ready })
    }
}

fn state_with(task_state: TaskState) -> State {
    let mut state = State::default();
    state.put_object(Object::Service(Service {
        meta: Meta::new("s1".into()),
        spec: json!({"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}}),
        ..Default::default()
    }));
    state.put_object(Object::Task(Task {
        meta: Meta::new("t1".into()),
        spec: json!({"ContainerSpec": {"Image": "busybox"}}).into(),
        service_id: "s1".into(),
        slot: 1,
        node_id: "n1".into(),
        status: TaskStatus::new(task_state, "x"),
        desired_state: TaskState::Running,
        ..Default::default()
    }));
    state
}

/// One pass; answers the task's reported state and error, if it reported.
fn step_once(fake: &Fake, state: TaskState) -> Option<(TaskState, String)> {
    let st = state_with(state);
    let ops = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(pass(&st, "n1", fake));
    ops.into_iter().find_map(|op| match op {
        Op::Update {
            object: Object::Task(t),
            ..
        } => Some((t.status.state, t.status.err)),
        _ => None,
    })
}

#[test]
fn tasks_prepare_then_wait_for_their_image() {
    let fake = Fake::default();
    assert_eq!(
        step_once(&fake, TaskState::Assigned),
        Some((TaskState::Preparing, String::new()))
    );
    // The pull runs: nothing to say, nothing started.
    assert_eq!(step_once(&fake, TaskState::Preparing), None);
    assert!(!*fake.running.lock().unwrap());
    *fake.image_ready.lock().unwrap() = true;
    assert_eq!(
        step_once(&fake, TaskState::Preparing),
        Some((TaskState::Running, String::new()))
    );
}

#[test]
fn a_health_check_holds_tasks_in_starting_until_healthy() {
    let fake = Fake {
        image_ready: Mutex::new(true),
        health: Mutex::new(Some("starting".into())),
        ..Default::default()
    };
    assert_eq!(
        step_once(&fake, TaskState::Preparing),
        Some((TaskState::Starting, String::new()))
    );
    assert_eq!(
        step_once(&fake, TaskState::Starting),
        None,
        "still starting"
    );
    *fake.health.lock().unwrap() = Some("healthy".into());
    assert_eq!(
        step_once(&fake, TaskState::Starting),
        Some((TaskState::Running, String::new()))
    );
    // Unhealthy later: failed at once (out of rotation), still running.
    *fake.health.lock().unwrap() = Some("unhealthy".into());
    let (state, err) = step_once(&fake, TaskState::Running).unwrap();
    assert_eq!(state, TaskState::Failed);
    assert_eq!(err, UNHEALTHY);
    assert!(!*fake.stopped.lock().unwrap());
    // The next pass stops it and says so with dockerd's words.
    let mut st = state_with(TaskState::Failed);
    if let Some(t) = st.tasks.get_mut("t1") {
        std::sync::Arc::make_mut(t).status.err = UNHEALTHY.into();
    }
    let ops = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(pass(&st, "n1", &fake));
    let err = ops.into_iter().find_map(|op| match op {
        Op::Update {
            object: Object::Task(t),
            ..
        } => Some((t.status.state, t.status.err)),
        _ => None,
    });
    assert_eq!(
        err,
        Some((
            TaskState::Failed,
            "task: non-zero exit (137): dockerexec: unhealthy container".to_string()
        ))
    );
    assert!(*fake.stopped.lock().unwrap());
}

#[test]
fn a_task_runs_once_its_overlay_interfaces_are_in_place() {
    let fake = Fake {
        image_ready: Mutex::new(true),
        networks_ready: Mutex::new(Some(false)),
        ..Default::default()
    };
    // Started, but not reachable on its overlays yet: starting (out of rotation).
    assert_eq!(
        step_once(&fake, TaskState::Preparing),
        Some((TaskState::Starting, String::new()))
    );
    assert_eq!(step_once(&fake, TaskState::Starting), None);
    *fake.networks_ready.lock().unwrap() = Some(true);
    assert_eq!(
        step_once(&fake, TaskState::Starting),
        Some((TaskState::Running, String::new()))
    );
}
