//! `/services` (create, list, inspect, update with the version index, remove) and `/tasks`.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use berth_api::{ApiError, ErrorKind};
use berth_swarm::store::{Op, State as ClusterState};
use berth_swarm::types::{Kind, Meta, Mode, Object, Service, Task, TaskState, new_id};
use serde_json::{Value, json};

use super::{
    Error, Query, Result, commit, json_body, json_response, manager, ok_json, version_param,
};
use crate::state::AppState;

fn find(h: &berth_swarm::manager::Handle, key: &str) -> Result<Service> {
    h.store()
        .view(|s| s.find_service(key).cloned())
        .ok_or_else(|| Error(ApiError::not_found(format!("service {key} not found"))))
}

/// Checks a spec as swarmkit's `validateServiceSpec` does, and fills dockerd's defaults.
fn normalize(mut spec: Value) -> Result<Value> {
    let invalid = |m: &str| {
        Error(ApiError::invalid(format!(
            "rpc error: code = InvalidArgument desc = {m}"
        )))
    };
    if !spec.is_object() {
        return Err(invalid("service spec must be an object"));
    }
    let image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or_default();
    if image.is_empty() {
        return Err(invalid("ContainerSpec: image reference must be provided"));
    }
    let name = spec["Name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        spec["Name"] = json!(format!("svc-{}", &new_id()[..10]));
    } else if name.len() > 63 {
        return Err(invalid("name must be 63 characters or fewer"));
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        // swarmkit's `^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`: `_` too, as in stacks' `STACK_SVC`.
        return Err(invalid("name must be valid as a DNS name component"));
    }
    let mode = &spec["Mode"];
    let modes = ["Replicated", "Global", "ReplicatedJob", "GlobalJob"];
    if modes.iter().filter(|m| !mode[**m].is_null()).count() > 1 {
        // dockerd's conversion refuses it before swarmkit sees it.
        return Err(Error(ApiError::invalid(
            "must specify only one service mode",
        )));
    }
    if let Some(job) = mode.get("ReplicatedJob").filter(|j| !j.is_null()) {
        // dockerd's defaults: one at a time, as many completions as concurrent tasks.
        let max = job["MaxConcurrent"].as_u64().unwrap_or(1);
        let total = job["TotalCompletions"].as_u64().unwrap_or(max);
        spec["Mode"] = json!({"ReplicatedJob": {"MaxConcurrent": max, "TotalCompletions": total}});
    } else if !mode["GlobalJob"].is_null() {
        spec["Mode"] = json!({"GlobalJob": {}});
    } else if mode.get("Global").is_none() {
        let replicas = mode["Replicated"]["Replicas"].as_u64().unwrap_or(1);
        spec["Mode"] = json!({"Replicated": {"Replicas": replicas}});
    }
    for c in spec["TaskTemplate"]["Placement"]["Constraints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let c = c.as_str().unwrap_or_default();
        berth_swarm::controllers::Constraint::parse(c).map_err(|e| invalid(&e))?;
    }
    berth_swarm::task_privileges::validate(&spec["TaskTemplate"]["ContainerSpec"])
        .map_err(|e| invalid(&e))?;
    if spec["Labels"].is_null() {
        spec["Labels"] = json!({});
    }
    Ok(spec)
}

/// `X-Registry-Auth` as sent (`--with-registry-auth`), passed on to the nodes unread.
fn registry_auth(req: &Request) -> Option<String> {
    req.headers()
        .get("x-registry-auth")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

pub async fn create(State(state): State<AppState>, req: Request) -> Result<Response> {
    let auth = registry_auth(&req);
    let body = json_body(req).await?;
    let h = manager(&state).await?;
    let spec = normalize(body)?;
    let name = spec["Name"].as_str().unwrap_or_default().to_string();
    if h.store()
        .view(|s| s.services.values().any(|x| x.name() == name))
    {
        return Err(Error(ApiError::conflict(format!(
            "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {name} already exists"
        ))));
    }
    missing_references(&h, &spec)?;
    crate::router::swarm_networks::check_service_networks(&h, &spec)?;
    let id = new_id();
    let endpoint = json!({"Spec": spec.get("EndpointSpec").cloned().unwrap_or(json!({}))});
    let mut service = Service {
        meta: Meta::new(id.clone()),
        spec,
        endpoint,
        registry_auth: auth,
        ..Default::default()
    };
    if service.mode().is_job() {
        service.job_status = Some(json!({
            "JobIteration": {"Index": 0},
            "LastExecution": berth_swarm::types::now(),
        }));
    }
    commit(&h, vec![Op::Create(Object::Service(service))]).await?;
    Ok(json_response(StatusCode::CREATED, &json!({"ID": id})))
}

/// swarmkit refuses services that name secrets or configs it does not have.
fn missing_references(h: &berth_swarm::manager::Handle, spec: &Value) -> Result<()> {
    let cs = &spec["TaskTemplate"]["ContainerSpec"];
    h.store().view(|s| {
        for (key, id_key, kind) in [
            ("Secrets", "SecretID", Kind::Secret),
            ("Configs", "ConfigID", Kind::Config),
        ] {
            for r in cs[key].as_array().into_iter().flatten() {
                let id = r[id_key].as_str().unwrap_or_default();
                if s.find_secret(kind, id).is_none() {
                    return Err(Error(ApiError::invalid(format!(
                        "rpc error: code = InvalidArgument desc = {} reference not found: {id}",
                        kind.as_str()
                    ))));
                }
            }
        }
        Ok(())
    })
}

/// `ServiceStatus` (`?status=true`): running and desired task counts.
fn service_status(s: &ClusterState, service: &Service) -> Value {
    let running = s
        .tasks
        .values()
        .filter(|t| {
            t.service_id == service.meta.id
                && t.status.state == TaskState::Running
                && t.desired_state == TaskState::Running
        })
        .count();
    let desired = match service.mode() {
        Mode::Replicated(n) => n as usize,
        Mode::Global => s
            .tasks
            .values()
            .filter(|t| t.service_id == service.meta.id && t.desired_state == TaskState::Running)
            .count(),
        Mode::ReplicatedJob { .. } | Mode::GlobalJob => {
            let tasks: Vec<&Task> = s
                .tasks
                .values()
                .filter(|t| t.service_id == service.meta.id)
                .map(|t| &**t)
                .collect();
            let (running, desired, complete) =
                berth_swarm::controllers::jobs::status(service, &tasks);
            return json!({"RunningTasks": running, "DesiredTasks": desired, "CompletedTasks": complete});
        }
    };
    json!({"RunningTasks": running, "DesiredTasks": desired, "CompletedTasks": 0})
}

pub async fn list(State(state): State<AppState>, q: Query) -> Result<Response> {
    let h = manager(&state).await?;
    let filters = q.filters()?;
    let with_status = q.bool("status", false);
    let rows: Vec<Value> = h.store().view(|s| {
        s.services
            .values()
            .filter(|svc| {
                let ids = filters.get("id");
                let names = filters.get("name");
                let modes = filters.get("mode");
                let mode = svc.mode().as_str();
                (ids.is_empty() || ids.iter().any(|i| svc.meta.id.starts_with(i)))
                    && (names.is_empty() || names.iter().any(|n| svc.name().starts_with(n)))
                    && (modes.is_empty() || modes.contains(&mode))
                    && filters
                        .get("label")
                        .iter()
                        .all(|l| match l.split_once('=') {
                            Some((k, v)) => svc.spec["Labels"][k] == v,
                            None => !svc.spec["Labels"][*l].is_null(),
                        })
            })
            .map(|svc| {
                let mut v = serde_json::to_value(svc.public()).unwrap_or_default();
                if with_status {
                    v["ServiceStatus"] = service_status(s, svc);
                }
                v
            })
            .collect()
    });
    Ok(ok_json(&rows))
}

pub async fn inspect(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let h = manager(&state).await?;
    Ok(ok_json(&find(&h, &id)?.public()))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    req: Request,
) -> Result<Response> {
    let auth = registry_auth(&req);
    let body = json_body(req).await?;
    let h = manager(&state).await?;
    let version = version_param(&q, "service")?;
    let mut service = find(&h, &id)?;
    let rollback = q.get("rollback") == Some("previous");
    let spec = if rollback {
        service.previous_spec.clone().ok_or_else(|| {
            Error(ApiError::new(
                ErrorKind::Internal,
                format!("rpc error: code = FailedPrecondition desc = service {} does not have a previous spec", service.meta.id),
            ))
        })?
    } else {
        let mut spec = normalize(body)?;
        // Berth's `Privileged`/`Devices`, which a docker CLI update cannot carry.
        berth_swarm::task_privileges::carry_over(&service.spec, &mut spec);
        spec
    };
    let mode_of = |spec: &Value| {
        let s = Service {
            spec: spec.clone(),
            ..Default::default()
        };
        std::mem::discriminant(&s.mode())
    };
    if mode_of(&spec) != mode_of(&service.spec) {
        return Err(Error(ApiError::new(
            ErrorKind::NotImplemented,
            "rpc error: code = Unimplemented desc = service mode change is not allowed",
        )));
    }
    if spec["Name"] != service.spec["Name"] {
        return Err(Error(ApiError::new(
            ErrorKind::Internal,
            "rpc error: code = Unimplemented desc = renaming services is not supported",
        )));
    }
    missing_references(&h, &spec)?;
    crate::router::swarm_networks::check_service_networks(&h, &spec)?;
    if auth.is_some() {
        // dockerd keeps the previous credentials when an update sends none.
        service.registry_auth = auth;
    }
    service.previous_spec = Some(std::mem::replace(&mut service.spec, spec));
    // swarmkit: a rollback is an update of its own; any other update starts afresh.
    service.update_status = rollback.then(|| {
        json!({
            "State": berth_swarm::controllers::update::ROLLBACK_STARTED,
            "StartedAt": berth_swarm::types::now(),
            "Message": "manually requested rollback",
        })
    });
    if let Some(job) = service.job_status.as_mut() {
        // Every update of a job runs it again.
        let next = job["JobIteration"]["Index"].as_u64().unwrap_or(0) + 1;
        job["JobIteration"] = json!({"Index": next});
        job["LastExecution"] = json!(berth_swarm::types::now());
    }
    // The allocator's VIPs and ports stay until it recomputes them from the new spec (a
    // published port must not stop answering meanwhile).
    service.endpoint["Spec"] = service
        .spec
        .get("EndpointSpec")
        .cloned()
        .unwrap_or(json!({}));
    service.meta.updated_at = berth_swarm::types::now();
    commit(
        &h,
        vec![Op::Update {
            object: Object::Service(service),
            expect: Some(version),
        }],
    )
    .await?;
    Ok(ok_json(&json!({"Warnings": null})))
}

pub async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let h = manager(&state).await?;
    let service = find(&h, &id)?;
    commit(
        &h,
        vec![Op::Delete {
            kind: Kind::Service,
            id: service.meta.id,
        }],
    )
    .await?;
    Ok(super::super::empty_ok())
}

/// A task as the API shows it (the container spec's own fields).
fn task_json(t: &Task) -> Value {
    serde_json::to_value(t).unwrap_or_default()
}

pub async fn tasks(State(state): State<AppState>, q: Query) -> Result<Response> {
    let h = manager(&state).await?;
    let filters = q.filters()?;
    let rows: Vec<Value> = h.store().view(|s| {
        let services: Vec<String> = filters
            .get("service")
            .iter()
            .filter_map(|k| s.find_service(k).map(|x| x.meta.id.clone()))
            .collect();
        let nodes: Vec<String> = filters
            .get("node")
            .iter()
            .map(|k| {
                s.find_node(k)
                    .map(|n| n.meta.id.clone())
                    .unwrap_or_else(|| k.to_string())
            })
            .collect();
        let desired = filters.get("desired-state");
        // The docker CLI's progress asks for the tasks of the current spec only.
        let up_to_date = !filters.get("_up-to-date").is_empty();
        let ids = filters.get("id");
        let names = filters.get("name");
        s.tasks
            .values()
            .filter(|t| {
                let name = s
                    .services
                    .get(&t.service_id)
                    .map(|svc| berth_swarm::agent::task_name(svc.name(), t))
                    .unwrap_or_default();
                (filters.get("service").is_empty() || services.contains(&t.service_id))
                    && (nodes.is_empty() || nodes.contains(&t.node_id))
                    && (desired.is_empty() || desired.contains(&t.desired_state.as_str()))
                    && (ids.is_empty() || ids.iter().any(|i| t.meta.id.starts_with(i)))
                    && (names.is_empty() || names.iter().any(|n| name.starts_with(n)))
                    && (!up_to_date
                        || s.services
                            .get(&t.service_id)
                            .is_some_and(|svc| *t.spec == *svc.task_template()))
                    // `label`: the service's labels, as swarmkit matches a task's service
                    // annotations (`docker stack ps` filters on the stack's label).
                    && filters.get("label").iter().all(|l| {
                        let labels = s
                            .services
                            .get(&t.service_id)
                            .map(|svc| svc.spec["Labels"].clone())
                            .unwrap_or_default();
                        match l.split_once('=') {
                            Some((k, v)) => labels[k] == v,
                            None => !labels[*l].is_null(),
                        }
                    })
            })
            .map(|t| task_json(t))
            .collect()
    });
    Ok(ok_json(&rows))
}

pub async fn task(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let h = manager(&state).await?;
    let t = h
        .store()
        .view(|s| s.find_task(&id).cloned())
        .ok_or_else(|| Error(ApiError::not_found(format!("task {id} not found"))))?;
    Ok(ok_json(&task_json(&t)))
}
