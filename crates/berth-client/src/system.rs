//! System endpoints: ping, version, info, events, disk usage, registry login (`/auth`).

use berth_api::models::{DiskUsage, EventMessage, SystemInfo, SystemVersion};
use futures_util::Stream;
use http::Method;

use crate::{Body, Client, Filters, Query, Result, stream, transport};

/// What `GET /_ping` tells about the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PingInfo {
    /// The `Api-Version` header: the newest version the daemon speaks.
    pub api_version: Option<String>,
    /// The `OSType` header.
    pub os_type: Option<String>,
    /// The `Docker-Experimental` header.
    pub experimental: bool,
    /// The `Builder-Version` header.
    pub builder_version: Option<String>,
}

/// `GET /events` parameters. `since`/`until` are what the API takes: Unix timestamps
/// (`1700000000` or `1700000000.000000001`) or RFC 3339 dates.
#[derive(Debug, Clone, Default)]
pub struct EventsOptions {
    pub since: Option<String>,
    pub until: Option<String>,
    pub filters: Filters,
}

impl Client {
    /// `POST /auth`: the daemon checks registry credentials (docker's `AuthConfig` JSON, as
    /// `docker login` sends it). Returns the identity token the registry gave, if any.
    pub async fn registry_login(&self, auth_config: Vec<u8>) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "IdentityToken", default)]
            identity_token: Option<String>,
        }
        let answer: Answer = self
            .request_json(
                Method::POST,
                "/auth",
                &Query::new(),
                Body::Json(auth_config),
                "auth",
            )
            .await?;
        Ok(answer.identity_token.unwrap_or_default())
    }

    /// `GET /_ping`, unversioned. An error status still yields the version headers when the
    /// daemon sent them (docker reads them off a failing ping too).
    pub async fn ping(&self) -> Result<PingInfo> {
        let response = transport::send(&self.endpoint, Method::GET, "/_ping", Body::Empty).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let info = PingInfo {
            api_version: header("api-version"),
            os_type: header("ostype"),
            experimental: header("docker-experimental").is_some_and(|v| v == "true"),
            builder_version: header("builder-version"),
        };
        if !response.status().is_success() && info.api_version.is_none() {
            crate::check_status(response).await?;
        }
        Ok(info)
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<SystemVersion> {
        self.request_json(
            Method::GET,
            "/version",
            &Query::new(),
            Body::Empty,
            "version",
        )
        .await
    }

    /// `GET /info`.
    pub async fn info(&self) -> Result<SystemInfo> {
        self.request_json(Method::GET, "/info", &Query::new(), Body::Empty, "info")
            .await
    }

    /// `GET /info`, undecoded (for `info --format` over fields the model does not carry).
    pub async fn info_raw(&self) -> Result<serde_json::Value> {
        self.request_value(Method::GET, "/info", &Query::new(), Body::Empty, "info")
            .await
    }

    /// `GET /system/df`.
    pub async fn system_df(&self) -> Result<DiskUsage> {
        self.request_json(
            Method::GET,
            "/system/df",
            &Query::new(),
            Body::Empty,
            "system df",
        )
        .await
    }

    /// `GET /events`: a stream of events as the daemon sends them; it ends when `until` is
    /// reached (or never, without `until`).
    pub async fn events(
        &self,
        options: &EventsOptions,
    ) -> Result<impl Stream<Item = Result<EventMessage>> + Send + use<>> {
        let mut query = Query::new();
        if let Some(since) = &options.since {
            query.push("since", since.clone());
        }
        if let Some(until) = &options.until {
            query.push("until", until.clone());
        }
        query.filters(&options.filters);
        let response = self
            .request(Method::GET, "/events", &query, Body::Empty)
            .await?;
        Ok(stream::json_stream(response.into_body(), "events"))
    }
}
