//! Swarm mode's endpoints (`/swarm`, `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs`)
//! over berth-swarm. Outside a swarm they answer as dockerd does on such a node (503 with its
//! texts, after reading the body), so that clients which probe them keep working.

mod lock;
mod logs;
mod logs_follow;
mod nodes;
mod secrets;
mod services;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use berth_api::{ApiError, ErrorKind};
use berth_swarm::ProposeError;
use berth_swarm::manager::{Handle, InitRequest, SwarmError};
use berth_swarm::store::{Command, Conflict, Op};
use berth_swarm::types::Object;
use serde_json::{Value, json};

use super::body::{MAX_JSON_BODY, check_content_type, read_limited};
use super::{Error, Query, Result, json_response, ok_json};
use crate::state::AppState;

/// dockerd's `errNoManager` for a node that never joined a swarm.
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \
                                 \"docker swarm join\" to connect this node to swarm and try again.";

/// dockerd's `errNoSwarm`.
pub const NOT_IN_A_SWARM: &str = "This node is not part of a swarm";

/// dockerd's `errNoManager` on a worker.
pub const WORKER_NOT_A_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

pub fn routes(state: AppState) -> Router<AppState> {
    let cluster = Router::new()
        .route("/swarm", get(inspect_swarm))
        .route("/swarm/update", post(update_swarm))
        .route("/swarm/unlockkey", get(lock::unlock_key))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}", get(nodes::inspect).delete(nodes::remove))
        .route("/nodes/{id}/update", post(nodes::update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/update", post(services::update))
        .route("/tasks", get(services::tasks))
        .route("/tasks/{id}", get(services::task))
        .route("/secrets", get(secrets::list_secrets))
        .route("/secrets/create", post(secrets::create_secret))
        .route(
            "/secrets/{id}",
            get(secrets::inspect_secret).delete(secrets::remove_secret),
        )
        .route("/secrets/{id}/update", post(secrets::update_secret))
        .route("/configs", get(secrets::list_configs))
        .route("/configs/create", post(secrets::create_config))
        .route(
            "/configs/{id}",
            get(secrets::inspect_config).delete(secrets::remove_config),
        )
        .route("/configs/{id}/update", post(secrets::update_config))
        .route("/services/{id}/logs", get(logs::service_logs))
        .route("/tasks/{id}/logs", get(logs::task_logs));
    let cluster = cluster.route_layer(axum::middleware::from_fn_with_state(state, require_manager));
    Router::new()
        .route("/swarm/leave", post(leave))
        .route("/swarm/init", post(init))
        .route("/swarm/join", post(join))
        .route("/swarm/unlock", post(lock::unlock))
        .merge(cluster)
}

/// Outside a swarm every cluster endpoint is refused with dockerd's text.
async fn require_manager(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.swarm.handle().await.is_some() {
        return next.run(req).await;
    }
    let message = if state.swarm.locked().await.is_some() {
        berth_swarm::autolock::SWARM_LOCKED
    } else if state.swarm.worker_info().await.is_some() {
        WORKER_NOT_A_MANAGER
    } else {
        NOT_A_MANAGER
    };
    match refuse(req, message).await {
        Ok(r) => r,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

/// Reads the body first: dockerd validates a POST's JSON body before it looks at the swarm, and
/// a refused request must still be read for its answer to reach the client.
async fn refuse(req: Request, message: &str) -> Result<Response> {
    let is_post = req.method() == Method::POST;
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, MAX_JSON_BODY).await?;
    if is_post {
        check_content_type(&parts.headers, &bytes)?;
    }
    Err(Error(ApiError::new(ErrorKind::Unavailable, message)))
}

/// A POST's JSON body (`{}` when empty).
pub(super) async fn json_body(req: Request) -> Result<Value> {
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, MAX_JSON_BODY).await?;
    Ok(super::body::parse::<Value>(&parts.headers, &bytes)?.unwrap_or_else(|| json!({})))
}

pub(super) async fn manager(state: &AppState) -> Result<Handle> {
    state
        .swarm
        .handle()
        .await
        .ok_or_else(|| Error(ApiError::new(ErrorKind::Unavailable, NOT_A_MANAGER)))
}

/// Commits a change, with swarmkit's error texts as dockerd relays them.
pub(super) async fn commit(h: &Handle, ops: Vec<Op>) -> Result<()> {
    h.propose(Command { ops }).await.map_err(|e| {
        Error(match e {
            ProposeError::Conflict(Conflict::Sequence) => ApiError::new(
                ErrorKind::Internal,
                "rpc error: code = Unknown desc = update out of sequence",
            ),
            ProposeError::Conflict(Conflict::NameTaken { kind, name }) => ApiError::conflict(
                format!("rpc error: code = AlreadyExists desc = {kind} {name} already exists"),
            ),
            ProposeError::Conflict(Conflict::Missing { kind, id }) => {
                ApiError::not_found(format!("{kind} {id} not found"))
            }
            ProposeError::Conflict(c) => ApiError::conflict(c.to_string()),
            ProposeError::Unavailable(m) => ApiError::new(ErrorKind::Unavailable, m),
        })
    })
}

/// `?version=N`, required by every update (dockerd's message when it is not a number).
pub(super) fn version_param(q: &Query, what: &str) -> Result<u64> {
    let raw = q.get("version").unwrap_or_default();
    raw.parse().map_err(|e| {
        Error(ApiError::invalid(format!(
            "invalid {what} version '{raw}': {e}"
        )))
    })
}

fn init_request(body: &Value) -> Result<InitRequest> {
    let listen = body["ListenAddr"].as_str().unwrap_or("0.0.0.0:2377");
    let listen = if listen.is_empty() {
        "0.0.0.0:2377"
    } else {
        listen
    };
    let port = listen.rsplit_once(':').map(|(_, p)| p).unwrap_or("2377");
    let advertise = body["AdvertiseAddr"].as_str().unwrap_or_default();
    let advertise = if advertise.is_empty() {
        let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or(listen);
        if host == "0.0.0.0" || host.is_empty() {
            "127.0.0.1".to_string()
        } else {
            host.to_string()
        }
    } else {
        advertise.to_string()
    };
    let advertise = if advertise.contains(':') && !advertise.starts_with('[') {
        advertise
    } else {
        format!("{advertise}:{port}")
    };
    let pool: Vec<String> = body["DefaultAddrPool"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .filter(|v: &Vec<String>| !v.is_empty())
        .unwrap_or_else(|| vec!["10.0.0.0/8".into()]);
    Ok(InitRequest {
        listen_addr: listen.to_string(),
        advertise_addr: advertise,
        spec: {
            let mut spec = berth_swarm::manager::default_cluster_spec(&body["Spec"]);
            // `swarm init --autolock` sends the request's own field, as dockerd reads it.
            if body["AutoLockManagers"] == true {
                spec["EncryptionConfig"]["AutoLockManagers"] = json!(true);
            }
            spec
        },
        default_addr_pool: pool,
        subnet_size: body["SubnetSize"].as_u64().filter(|n| *n > 0).unwrap_or(24) as u32,
        data_path_port: body["DataPathPort"]
            .as_u64()
            .filter(|n| *n > 0)
            .unwrap_or(4789) as u32,
    })
}

/// `POST /swarm/init`: answers the new node's id as a JSON string.
async fn init(State(state): State<AppState>, req: Request) -> Result<Response> {
    let body = json_body(req).await?;
    // `--force-new-cluster` on a manager keeps its state and makes it the only manager.
    if body["ForceNewCluster"] == true && state.swarm.handle().await.is_some() {
        return match state.swarm.force_new_cluster().await {
            Ok(id) => {
                // The store is a new one: events follow it.
                crate::swarm_events::forward(&state).await;
                Ok(ok_json(&id))
            }
            Err(e) => Err(Error(ApiError::new(ErrorKind::Internal, e.to_string()))),
        };
    }
    let init = init_request(&body)?;
    lock::check_cert_expiry(&init.spec)?;
    match state.swarm.init(init).await {
        Ok(node_id) => {
            crate::swarm_events::forward(&state).await;
            Ok(ok_json(&node_id))
        }
        Err(SwarmError::AlreadyInSwarm) => Err(Error(ApiError::new(
            ErrorKind::Unavailable,
            SwarmError::AlreadyInSwarm.to_string(),
        ))),
        Err(e) => Err(Error(ApiError::new(ErrorKind::Internal, e.to_string()))),
    }
}

/// `POST /swarm/join`.
async fn join(State(state): State<AppState>, req: Request) -> Result<Response> {
    let body = json_body(req).await?;
    let strings = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let listen = body["ListenAddr"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("0.0.0.0:2377");
    let join = berth_swarm::manager::JoinRequest {
        listen_addr: listen.to_string(),
        advertise_addr: body["AdvertiseAddr"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        remote_addrs: strings("RemoteAddrs"),
        join_token: body["JoinToken"].as_str().unwrap_or_default().to_string(),
    };
    match state.swarm.join(join).await {
        Ok(()) => {
            crate::swarm_events::forward(&state).await;
            Ok(super::empty_ok())
        }
        Err(SwarmError::AlreadyInSwarm) => Err(Error(ApiError::new(
            ErrorKind::Unavailable,
            SwarmError::AlreadyInSwarm.to_string(),
        ))),
        Err(SwarmError::Invalid(m)) => Err(Error(ApiError::invalid(m))),
        Err(SwarmError::Unavailable(m)) => Err(Error(ApiError::new(ErrorKind::Unavailable, m))),
        Err(e) => Err(Error(ApiError::new(ErrorKind::Internal, e.to_string()))),
    }
}

async fn leave(State(state): State<AppState>, q: Query, req: Request) -> Result<Response> {
    read_limited(req.into_body(), MAX_JSON_BODY).await?;
    match state.swarm.leave(q.bool("force", false)).await {
        Ok(()) => Ok(super::empty_ok()),
        Err(SwarmError::NotInSwarm) => {
            Err(Error(ApiError::new(ErrorKind::Unavailable, NOT_IN_A_SWARM)))
        }
        Err(SwarmError::LastManager) => Err(Error(ApiError::new(
            ErrorKind::Unavailable,
            SwarmError::LastManager.to_string(),
        ))),
        Err(SwarmError::Unavailable(m)) => Err(Error(ApiError::new(ErrorKind::Unavailable, m))),
        Err(e) => Err(Error(ApiError::new(ErrorKind::Internal, e.to_string()))),
    }
}

/// The cluster as `GET /swarm` and `/info` show it.
pub(crate) fn cluster_json(c: &berth_swarm::types::Cluster, tokens: bool) -> Value {
    let mut v = json!({
        "ID": c.meta.id,
        "Version": c.meta.version,
        "CreatedAt": c.meta.created_at,
        "UpdatedAt": c.meta.updated_at,
        "Spec": c.spec,
        "TLSInfo": berth_swarm::certs::root_tls_info(&c.root_ca.cert_pem),
        "RootRotationInProgress": c.root_rotation.is_some(),
        "DefaultAddrPool": c.default_addr_pool,
        "SubnetSize": c.subnet_size,
        "DataPathPort": c.data_path_port,
    });
    if tokens {
        v["JoinTokens"] = json!({"Worker": c.join_tokens.worker, "Manager": c.join_tokens.manager});
    }
    v
}

async fn inspect_swarm(State(state): State<AppState>) -> Result<Response> {
    let h = manager(&state).await?;
    let cluster = h.store().view(|s| s.cluster().cloned());
    let cluster =
        cluster.ok_or_else(|| Error(ApiError::new(ErrorKind::Unavailable, NOT_A_MANAGER)))?;
    Ok(ok_json(&cluster_json(&cluster, true)))
}

/// `POST /swarm/update`: the spec, and token rotation (`swarm join-token --rotate`).
async fn update_swarm(State(state): State<AppState>, q: Query, req: Request) -> Result<Response> {
    let body = json_body(req).await?;
    let h = manager(&state).await?;
    let version = version_param(&q, "swarm")?;
    let Some(mut cluster) = h.store().view(|s| s.cluster().cloned()) else {
        return Err(Error(ApiError::new(ErrorKind::Unavailable, NOT_A_MANAGER)));
    };
    if body.as_object().is_some_and(|o| !o.is_empty()) {
        cluster.spec = berth_swarm::manager::default_cluster_spec(&body);
        lock::check_cert_expiry(&cluster.spec)?;
        // `swarm ca --rotate`: maybe a root rotation (`berth_swarm::rotation`).
        berth_swarm::rotation::apply_ca_config(&mut cluster).map_err(|m| {
            Error(ApiError::invalid(format!(
                "rpc error: code = InvalidArgument desc = {m}"
            )))
        })?;
    }
    lock::update_key(&mut cluster, q.bool("rotateManagerUnlockKey", false));
    if q.bool("rotateWorkerToken", false) {
        cluster.join_tokens.worker = berth_swarm::ca::join_token(&cluster.root_ca);
    }
    if q.bool("rotateManagerToken", false) {
        cluster.join_tokens.manager = berth_swarm::ca::join_token(&cluster.root_ca);
    }
    cluster.meta.updated_at = berth_swarm::types::now();
    commit(
        &h,
        vec![Op::Update {
            object: Object::Cluster(cluster),
            expect: Some(version),
        }],
    )
    .await?;
    // This manager's key is resealed now (the others follow within a second).
    state.swarm.reseal().await.map_err(|e| {
        Error(ApiError::new(
            ErrorKind::Internal,
            format!("resealing the manager key: {e}"),
        ))
    })?;
    Ok(super::empty_ok())
}

/// The `/info` Swarm section.
pub async fn info_section(state: &AppState) -> berth_api::models::system::SwarmInfo {
    let Some(h) = state.swarm.handle().await else {
        if let Some(local) = state.swarm.locked().await {
            return berth_api::models::system::SwarmInfo {
                node_id: local.node_id,
                node_addr: berth_swarm::manager::host_of(&local.advertise_addr),
                local_node_state: "locked".into(),
                ..Default::default()
            };
        }
        if let Some(w) = state.swarm.worker_info().await {
            return berth_api::models::system::SwarmInfo {
                node_id: w.node_id,
                node_addr: w.addr,
                local_node_state: "active".into(),
                control_available: false,
                error: w.session.error,
                remote_managers: Some(
                    w.session
                        .managers
                        .iter()
                        .map(|a| json!({"NodeID": "", "Addr": a}))
                        .collect(),
                ),
                ..Default::default()
            };
        }
        return berth_api::models::system::SwarmInfo {
            local_node_state: "inactive".into(),
            ..Default::default()
        };
    };
    let (nodes, managers, cluster) = h.store().view(|s| {
        (
            s.nodes.len() as i64,
            s.nodes
                .values()
                .filter(|n| n.manager_status.is_some())
                .count() as i64,
            s.cluster().map(|c| cluster_json(c, false)),
        )
    });
    berth_api::models::system::SwarmInfo {
        node_id: h.node_id().to_string(),
        node_addr: h
            .local()
            .advertise_addr
            .rsplit_once(':')
            .map(|(a, _)| a.to_string())
            .unwrap_or_default(),
        local_node_state: "active".into(),
        control_available: true,
        error: String::new(),
        remote_managers: Some(h.store().view(|s| {
            s.nodes
                .values()
                .filter_map(|n| {
                    n.manager_status
                        .as_ref()
                        .map(|m| json!({"NodeID": n.meta.id, "Addr": m.addr}))
                })
                .collect()
        })),
        nodes: Some(nodes),
        managers: Some(managers),
        cluster,
    }
}
