//! Endpoints of features Berth does not have, answered as dockerd answers them on a node that
//! is not in a swarm, so that clients which probe them (`docker
//! system prune`, `docker info`, tools listing services) work instead of failing on a 404.

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use axum::routing::{any, post};
use berth_api::{ApiError, ErrorKind};

use super::body::{MAX_JSON_BODY, check_content_type, read_limited};
use super::{Error, Result};
use crate::state::AppState;

/// dockerd's `errNoManager` for a node that never joined a swarm.
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \
                                 \"docker swarm join\" to connect this node to swarm and try again.";

/// dockerd's `errNoSwarm`.
pub const NOT_IN_A_SWARM: &str = "This node is not part of a swarm";

/// Berth's answer to `swarm init` and `swarm join`, which dockerd would carry out.
pub const NO_SWARM_MODE: &str =
    "Berth does not support swarm mode: this node cannot init or join a swarm";

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/swarm/leave", post(leave))
        .route("/swarm/init", post(init_or_join))
        .route("/swarm/join", post(init_or_join));
    for prefix in [
        "/swarm",
        "/nodes",
        "/services",
        "/tasks",
        "/secrets",
        "/configs",
    ] {
        router = router
            .route(prefix, any(not_a_manager))
            .route(&format!("{prefix}/{{*rest}}"), any(not_a_manager));
    }
    router
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

async fn not_a_manager(req: Request) -> Result<Response> {
    refuse(req, NOT_A_MANAGER).await
}

async fn leave(req: Request) -> Result<Response> {
    refuse(req, NOT_IN_A_SWARM).await
}

async fn init_or_join(req: Request) -> Result<Response> {
    refuse(req, NO_SWARM_MODE).await
}
