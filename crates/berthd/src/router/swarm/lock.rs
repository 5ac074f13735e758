//! Autolock's endpoints: `POST /swarm/unlock`, `GET /swarm/unlockkey`, and what
//! `POST /swarm/update` does with `EncryptionConfig.AutoLockManagers` and
//! `rotateManagerUnlockKey` (see `berth_swarm::autolock`).

use axum::extract::{Request, State};
use axum::response::Response;
use berth_api::{ApiError, ErrorKind};
use berth_swarm::manager::SwarmError;
use berth_swarm::types::Cluster;
use serde_json::json;

use super::{Error, Result, json_body, manager, ok_json};
use crate::state::AppState;

/// `POST /swarm/unlock` with `{"UnlockKey": "SWMKEY-1-…"}`.
pub(super) async fn unlock(State(state): State<AppState>, req: Request) -> Result<Response> {
    let body = json_body(req).await?;
    let key = body["UnlockKey"].as_str().unwrap_or_default();
    match state.swarm.unlock(key).await {
        Ok(()) => {
            crate::swarm_events::forward(&state).await;
            Ok(super::super::empty_ok())
        }
        Err(SwarmError::Invalid(m)) if m == berth_swarm::autolock::NOT_LOCKED => {
            // dockerd: "not locked" only from an active manager; any other node outside a
            // locked swarm gets the not-a-manager answer (503).
            manager(&state).await?;
            Err(Error(ApiError::invalid(m)))
        }
        Err(SwarmError::Invalid(m)) => Err(Error(ApiError::invalid(m))),
        Err(SwarmError::WrongKey(m)) => Err(Error(ApiError::new(ErrorKind::Unauthorized, m))),
        Err(e) => Err(Error(ApiError::new(ErrorKind::Internal, e.to_string()))),
    }
}

/// `GET /swarm/unlockkey`: the key, empty while autolock is off (as dockerd).
pub(super) async fn unlock_key(State(state): State<AppState>) -> Result<Response> {
    let h = manager(&state).await?;
    let key = h
        .store()
        .view(|s| s.cluster().and_then(berth_swarm::autolock::wanted));
    Ok(ok_json(&json!({"UnlockKey": key.unwrap_or_default()})))
}

/// swarmkit's check of `CAConfig.NodeCertExpiry` (`swarm init/update --cert-expiry`).
pub(super) fn check_cert_expiry(spec: &serde_json::Value) -> Result<()> {
    let expiry = berth_swarm::pki::cert_expiry(spec);
    if expiry < berth_swarm::pki::MIN_CERT_EXPIRY {
        return Err(Error(ApiError::invalid(
            "rpc error: code = InvalidArgument desc = minimum certificate expiry time is: 1h0m0s",
        )));
    }
    Ok(())
}

/// The unlock key an update leaves the cluster with: made when autolock is turned on, new on
/// `rotateManagerUnlockKey`, dropped when autolock is turned off.
pub(super) fn update_key(cluster: &mut Cluster, rotate: bool) {
    let on = cluster.spec["EncryptionConfig"]["AutoLockManagers"] == true;
    if !on {
        cluster.unlock_key.clear();
    } else if rotate || cluster.unlock_key.is_empty() {
        cluster.unlock_key = berth_swarm::autolock::new_key();
    }
}
