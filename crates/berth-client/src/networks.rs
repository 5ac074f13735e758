//! Network endpoints.

use berth_api::models::container::EndpointSettings;
use berth_api::models::network::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest,
    NetworkPruneResponse, NetworkResource,
};
use bytes::Bytes;
use http::Method;

use crate::containers::json_body;
use crate::query::encode_path;
use crate::{Body, Client, Filters, Query, Result};

impl Client {
    /// `GET /networks`.
    pub async fn networks_list(&self, filters: &Filters) -> Result<Vec<NetworkResource>> {
        let mut query = Query::new();
        query.filters(filters);
        self.request_json(
            Method::GET,
            "/networks",
            &query,
            Body::Empty,
            "network list",
        )
        .await
    }

    /// `GET /networks/{id}` as the daemon sent it.
    pub async fn network_inspect_bytes(&self, name: &str) -> Result<Bytes> {
        let path = format!("/networks/{}", encode_path(name));
        self.request_bytes(Method::GET, &path, &Query::new(), Body::Empty)
            .await
    }

    /// `POST /networks/create`.
    pub async fn network_create(
        &self,
        req: &NetworkCreateRequest,
    ) -> Result<NetworkCreateResponse> {
        self.request_json(
            Method::POST,
            "/networks/create",
            &Query::new(),
            json_body(req)?,
            "network create",
        )
        .await
    }

    /// `DELETE /networks/{id}`.
    pub async fn network_remove(&self, name: &str) -> Result<()> {
        let path = format!("/networks/{}", encode_path(name));
        self.request(Method::DELETE, &path, &Query::new(), Body::Empty)
            .await?;
        Ok(())
    }

    /// `POST /networks/{id}/connect`.
    pub async fn network_connect(
        &self,
        network: &str,
        container: &str,
        endpoint: Option<EndpointSettings>,
    ) -> Result<()> {
        let path = format!("/networks/{}/connect", encode_path(network));
        let body = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: endpoint,
        };
        self.request(Method::POST, &path, &Query::new(), json_body(&body)?)
            .await?;
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn network_disconnect(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<()> {
        let path = format!("/networks/{}/disconnect", encode_path(network));
        let body = NetworkDisconnectRequest {
            container: container.to_string(),
            force,
        };
        self.request(Method::POST, &path, &Query::new(), json_body(&body)?)
            .await?;
        Ok(())
    }

    /// `POST /networks/prune`.
    pub async fn networks_prune(&self, filters: &Filters) -> Result<NetworkPruneResponse> {
        let mut query = Query::new();
        query.filters(filters);
        self.request_json(
            Method::POST,
            "/networks/prune",
            &query,
            Body::Empty,
            "network prune",
        )
        .await
    }
}
