//! `/nodes`: list (with filters), inspect, update (availability, role, labels) and remove.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use berth_api::ApiError;
use berth_swarm::store::Op;
use berth_swarm::types::{Kind, Node, NodeSpec, Object};

use super::{Error, Query, Result, commit, json_body, manager, ok_json, version_param};
use crate::state::AppState;

fn find(h: &berth_swarm::manager::Handle, key: &str) -> Result<Node> {
    h.store()
        .view(|s| s.find_node(key).cloned())
        .ok_or_else(|| Error(ApiError::not_found(format!("node {key} not found"))))
}

pub async fn list(State(state): State<AppState>, q: Query) -> Result<Response> {
    let h = manager(&state).await?;
    let filters = q.filters()?;
    let nodes: Vec<Node> = h
        .store()
        .view(|s| s.nodes.values().map(|n| Node::clone(n)).collect());
    let keep = |n: &Node| {
        let any = |key: &str, value: &str| {
            let wanted = filters.get(key);
            wanted.is_empty() || wanted.iter().any(|w| value.starts_with(w) || *w == value)
        };
        any("id", &n.meta.id)
            && any("name", n.hostname())
            && any("role", &n.spec.role)
            && any("membership", "accepted")
            && filters
                .get("label")
                .iter()
                .all(|l| match l.split_once('=') {
                    Some((k, v)) => n.spec.labels.get(k).is_some_and(|x| x == v),
                    None => n.spec.labels.contains_key(*l),
                })
    };
    let rows: Vec<Node> = nodes.into_iter().filter(|n| keep(n)).collect();
    Ok(ok_json(&rows))
}

pub async fn inspect(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let h = manager(&state).await?;
    Ok(ok_json(&find(&h, &id)?))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    req: Request,
) -> Result<Response> {
    let body = json_body(req).await?;
    let h = manager(&state).await?;
    let version = version_param(&q, "node")?;
    let spec: NodeSpec = serde_json::from_value(body)
        .map_err(|e| Error(ApiError::invalid(format!("invalid JSON: {e}"))))?;
    let availability = if spec.availability.is_empty() {
        "active"
    } else {
        spec.availability.as_str()
    };
    if !["active", "pause", "drain"].contains(&availability) {
        return Err(Error(ApiError::invalid(format!(
            "invalid Availability: \"{availability}\""
        ))));
    }
    let role = if spec.role.is_empty() {
        "worker"
    } else {
        spec.role.as_str()
    };
    if !["worker", "manager"].contains(&role) {
        return Err(Error(ApiError::invalid(format!(
            "invalid Role: \"{role}\""
        ))));
    }
    let mut node = find(&h, &id)?;
    if role == "worker" && node.spec.role == "manager" {
        let managers = h.store().view(|s| {
            s.nodes
                .values()
                .filter(|n| n.spec.role == "manager")
                .count()
        });
        if managers <= 1 {
            return Err(Error(ApiError::new(
                berth_api::ErrorKind::Internal,
                "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm",
            )));
        }
    }
    node.spec = NodeSpec {
        availability: availability.into(),
        role: role.into(),
        ..spec
    };
    node.meta.updated_at = berth_swarm::types::now();
    commit(
        &h,
        vec![Op::Update {
            object: Object::Node(node),
            expect: Some(version),
        }],
    )
    .await?;
    Ok(super::super::empty_ok())
}

pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response> {
    let h = manager(&state).await?;
    let node = find(&h, &id)?;
    if node
        .manager_status
        .as_ref()
        .is_some_and(|m| h.is_raft_member(m.raft_id))
    {
        return Err(Error(ApiError::new(
            berth_api::ErrorKind::Internal,
            format!(
                "rpc error: code = FailedPrecondition desc = node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                node.meta.id
            ),
        )));
    }
    if node.status.state != "down" && !q.bool("force", false) {
        return Err(Error(ApiError::new(
            berth_api::ErrorKind::Internal,
            format!(
                "rpc error: code = FailedPrecondition desc = node {} is not down and can't be removed",
                node.meta.id
            ),
        )));
    }
    commit(
        &h,
        vec![Op::Delete {
            kind: Kind::Node,
            id: node.meta.id,
        }],
    )
    .await?;
    Ok(super::super::empty_ok())
}
