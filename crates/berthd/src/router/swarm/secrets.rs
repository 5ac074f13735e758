//! `/secrets` and `/configs`: create, list, inspect, update (labels only) and remove. A
//! secret's data never comes back out of the API; a config's does.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use berth_api::ApiError;
use berth_swarm::store::Op;
use berth_swarm::types::{Kind, Meta, Object, Secret, new_id};
use serde_json::{Value, json};

use super::{
    Error, Query, Result, commit, json_body, json_response, manager, ok_json, version_param,
};
use crate::state::AppState;

/// Docker's limit for secret and config data.
const MAX_DATA: usize = 500 * 1024;

fn object(kind: Kind, s: Secret) -> Object {
    if kind == Kind::Config {
        Object::Config(s)
    } else {
        Object::Secret(s)
    }
}

fn shown(kind: Kind, s: &Secret) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if kind == Kind::Secret
        && let Some(spec) = v["Spec"].as_object_mut()
    {
        spec.remove("Data");
    }
    v
}

fn find(h: &berth_swarm::manager::Handle, kind: Kind, key: &str) -> Result<Secret> {
    h.store()
        .view(|s| s.find_secret(kind, key).cloned())
        .ok_or_else(|| {
            Error(ApiError::not_found(format!(
                "{} {key} not found",
                kind.as_str()
            )))
        })
}

async fn create(state: AppState, kind: Kind, req: Request) -> Result<Response> {
    let version = req
        .extensions()
        .get::<crate::router::RequestVersion>()
        .map_or(berth_api::MAX_API_VERSION, |v| v.0);
    let mut spec = json_body(req).await?;
    // dockerd's check: templated payloads came with API 1.37.
    if !spec["Templating"].is_null() && !version.at_least(1, 37) {
        return Err(Error(ApiError::invalid(format!(
            "{} templating is not supported on the specified API version: {version}",
            kind.as_str()
        ))));
    }
    let h = manager(&state).await?;
    let name = spec["Name"].as_str().unwrap_or_default().to_string();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !valid {
        return Err(Error(ApiError::invalid(
            "rpc error: code = InvalidArgument desc = invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]",
        )));
    }
    let data = spec["Data"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| Error(ApiError::invalid(format!("invalid Data: {e}"))))?;
    if bytes.is_empty() && spec["Driver"].is_null() && kind == Kind::Secret {
        return Err(Error(ApiError::invalid(
            "rpc error: code = InvalidArgument desc = secret data must be larger than 0 and less than 500 KiB",
        )));
    }
    if bytes.len() > MAX_DATA {
        return Err(Error(ApiError::invalid(format!(
            "rpc error: code = InvalidArgument desc = {} data must be larger than 0 and less than 500 KiB",
            kind.as_str()
        ))));
    }
    if spec["Labels"].is_null() {
        spec["Labels"] = json!({});
    }
    let taken = h.store().view(|s| {
        let map = if kind == Kind::Config {
            &s.configs
        } else {
            &s.secrets
        };
        map.values().any(|x| x.name() == name)
    });
    if taken {
        return Err(Error(ApiError::conflict(format!(
            "rpc error: code = AlreadyExists desc = {} {name} already exists",
            kind.as_str()
        ))));
    }
    let id = new_id();
    let s = Secret {
        meta: Meta::new(id.clone()),
        spec,
    };
    commit(&h, vec![Op::Create(object(kind, s))]).await?;
    Ok(json_response(StatusCode::CREATED, &json!({"ID": id})))
}

async fn list(state: AppState, kind: Kind, q: Query) -> Result<Response> {
    let h = manager(&state).await?;
    let filters = q.filters()?;
    let all: Vec<Secret> = h.store().view(|s| {
        let map = if kind == Kind::Config {
            &s.configs
        } else {
            &s.secrets
        };
        map.values().map(|s| Secret::clone(s)).collect()
    });
    let rows: Vec<Value> = all
        .iter()
        .filter(|s| {
            let names = filters.get("name");
            let ids = filters.get("id");
            (names.is_empty() || names.iter().any(|n| s.name().starts_with(n)))
                && (ids.is_empty() || ids.iter().any(|i| s.meta.id.starts_with(i)))
                && filters
                    .get("label")
                    .iter()
                    .all(|l| match l.split_once('=') {
                        Some((k, v)) => s.spec["Labels"][k] == v,
                        None => !s.spec["Labels"][*l].is_null(),
                    })
        })
        .map(|s| shown(kind, s))
        .collect();
    Ok(ok_json(&rows))
}

async fn inspect(state: AppState, kind: Kind, id: String) -> Result<Response> {
    let h = manager(&state).await?;
    Ok(ok_json(&shown(kind, &find(&h, kind, &id)?)))
}

async fn remove(state: AppState, kind: Kind, id: String) -> Result<Response> {
    let h = manager(&state).await?;
    let s = find(&h, kind, &id)?;
    let key = if kind == Kind::Config {
        "Configs"
    } else {
        "Secrets"
    };
    let users: Vec<String> = h.store().view(|st| {
        st.services
            .values()
            .filter(|svc| berth_swarm::agent::references(&svc.spec, key, &s.meta.id))
            .map(|svc| svc.name().to_string())
            .collect()
    });
    if !users.is_empty() {
        return Err(Error(ApiError::invalid(format!(
            "rpc error: code = InvalidArgument desc = {} '{}' is in use by the following service: {}",
            kind.as_str(),
            s.name(),
            users.join(", ")
        ))));
    }
    commit(
        &h,
        vec![Op::Delete {
            kind,
            id: s.meta.id,
        }],
    )
    .await?;
    Ok(super::super::no_content_response())
}

async fn update(
    state: AppState,
    kind: Kind,
    id: String,
    q: Query,
    req: Request,
) -> Result<Response> {
    let body = json_body(req).await?;
    let h = manager(&state).await?;
    let version = version_param(&q, kind.as_str())?;
    let mut s = find(&h, kind, &id)?;
    // Only labels may change (dockerd's rule): data and name are immutable.
    if body["Data"]
        .as_str()
        .is_some_and(|d| Some(d) != s.spec["Data"].as_str())
        || body["Name"] != s.spec["Name"]
    {
        return Err(Error(ApiError::invalid(
            "rpc error: code = InvalidArgument desc = only updates to Labels are allowed",
        )));
    }
    s.spec["Labels"] = body["Labels"].clone();
    s.meta.updated_at = berth_swarm::types::now();
    commit(
        &h,
        vec![Op::Update {
            object: object(kind, s),
            expect: Some(version),
        }],
    )
    .await?;
    Ok(super::super::empty_ok())
}

pub async fn create_secret(State(state): State<AppState>, req: Request) -> Result<Response> {
    create(state, Kind::Secret, req).await
}
pub async fn create_config(State(state): State<AppState>, req: Request) -> Result<Response> {
    create(state, Kind::Config, req).await
}
pub async fn list_secrets(State(state): State<AppState>, q: Query) -> Result<Response> {
    list(state, Kind::Secret, q).await
}
pub async fn list_configs(State(state): State<AppState>, q: Query) -> Result<Response> {
    list(state, Kind::Config, q).await
}
pub async fn inspect_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    inspect(state, Kind::Secret, id).await
}
pub async fn inspect_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    inspect(state, Kind::Config, id).await
}
pub async fn remove_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    remove(state, Kind::Secret, id).await
}
pub async fn remove_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    remove(state, Kind::Config, id).await
}
pub async fn update_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    req: Request,
) -> Result<Response> {
    update(state, Kind::Secret, id, q, req).await
}
pub async fn update_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    req: Request,
) -> Result<Response> {
    update(state, Kind::Config, id, q, req).await
}
