//! `POST /build` (the legacy builder's API, as the docker CLI calls it when BuildKit is not
//! used), `POST /build/prune` and `POST /build/cancel`.

use std::collections::BTreeMap;

use berth_api::Filters;
use berth_api::models::JsonMessage;
use futures_util::Stream;
use http::Method;
use serde::Deserialize;

use crate::images::UploadStream;
use crate::query::Query;
use crate::transport::Body;
use crate::{Client, Result, stream};

/// What `docker build` puts in the `/build` query. Zero and empty values are sent as the
/// docker CLI sends them (it always sends the numeric limits and the JSON maps).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildOptions {
    pub tags: Vec<String>,
    /// Path of the Dockerfile inside the context (`dockerfile`).
    pub dockerfile: String,
    pub quiet: bool,
    pub no_cache: bool,
    pub pull: bool,
    /// `rm` (the CLI's default is true).
    pub remove: bool,
    pub force_remove: bool,
    /// `--build-arg K=V` (`Some`) or `--build-arg K` with K unset in the environment (`None`).
    pub build_args: BTreeMap<String, Option<String>>,
    pub labels: BTreeMap<String, String>,
    pub target: String,
    pub network_mode: String,
    pub extra_hosts: Vec<String>,
    pub shm_size: i64,
    pub memory: i64,
    pub memory_swap: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub cgroup_parent: String,
    pub cache_from: Vec<String>,
    pub security_opt: Vec<String>,
    pub platform: String,
    /// `remote`: a URL the daemon fetches the context from (then no body is sent).
    pub remote: String,
    pub squash: bool,
    pub isolation: String,
    /// `ulimits` as the JSON array the CLI sends (`[]` when none).
    pub ulimits_json: String,
    /// `session`: the id of a session opened with [`Client::build_session`] (secrets, ssh).
    pub session: String,
}

impl BuildOptions {
    /// The query string parameters, in the docker CLI's order.
    pub fn to_query(&self) -> Query {
        let mut q = Query::new();
        for t in &self.tags {
            q.push("t", t.clone());
        }
        for s in &self.security_opt {
            q.push("securityopt", s.clone());
        }
        for h in &self.extra_hosts {
            q.push("extrahosts", h.clone());
        }
        q.flag("q", self.quiet)
            .non_empty("remote", &self.remote)
            .flag("nocache", self.no_cache)
            .push("rm", if self.remove { "1" } else { "0" })
            .flag("forcerm", self.force_remove)
            .flag("pull", self.pull)
            .flag("squash", self.squash)
            .non_empty("isolation", &self.isolation)
            .push("cpusetcpus", self.cpuset_cpus.clone())
            .push("networkmode", self.network_mode.clone())
            .push("cpusetmems", self.cpuset_mems.clone())
            .push("cpushares", self.cpu_shares.to_string())
            .push("cpuquota", self.cpu_quota.to_string())
            .push("cpuperiod", self.cpu_period.to_string())
            .push("memory", self.memory.to_string())
            .push("memswap", self.memory_swap.to_string())
            .push("cgroupparent", self.cgroup_parent.clone())
            .push("shmsize", self.shm_size.to_string())
            .push("dockerfile", self.dockerfile.clone())
            .push("target", self.target.clone())
            .push(
                "ulimits",
                if self.ulimits_json.is_empty() {
                    "null".to_string()
                } else {
                    self.ulimits_json.clone()
                },
            )
            .push("buildargs", json(&self.build_args))
            .push("labels", json(&self.labels))
            .push("cachefrom", json(&self.cache_from))
            .non_empty("platform", &self.platform.to_lowercase())
            .non_empty("session", &self.session)
            .push("version", "1");
        q
    }
}

/// JSON of the maps and lists the query carries.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

/// `POST /build/prune`'s answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BuildPruneReport {
    #[serde(rename = "CachesDeleted", default)]
    pub caches_deleted: Option<Vec<String>>,
    #[serde(rename = "SpaceReclaimed", default)]
    pub space_reclaimed: i64,
}

/// `builder prune`'s options.
#[derive(Debug, Clone, Default)]
pub struct BuildPruneOptions {
    pub all: bool,
    /// Bytes of cache to keep (`keep-storage`, renamed `reserved-space` in API 1.48).
    pub keep_storage: i64,
    pub filters: Filters,
}

impl Client {
    /// `POST /build`: sends the context (a tar, possibly compressed; `None` with `remote`)
    /// and streams the build's messages. `registry_config` is the `X-Registry-Config`
    /// header: base64url JSON of every stored credential, keyed by registry.
    pub async fn image_build(
        &self,
        options: &BuildOptions,
        context: Option<UploadStream>,
        registry_config: Option<&str>,
    ) -> Result<impl Stream<Item = Result<JsonMessage>> + Send + use<>> {
        let body = match context {
            Some(stream) => Body::Stream {
                content_type: "application/x-tar",
                stream,
            },
            None => Body::Empty,
        };
        let headers: Vec<(&str, &str)> = registry_config
            .map(|c| ("X-Registry-Config", c))
            .into_iter()
            .collect();
        let response = self
            .request_with_headers(Method::POST, "/build", &options.to_query(), body, &headers)
            .await?;
        Ok(stream::json_stream(response.into_body(), "build"))
    }

    /// `POST /session` with `Upgrade: h2c`: the hijacked connection that carries a build
    /// session (`berth_build::session`); the caller serves HTTP/2 on it.
    pub async fn build_session(&self, id: &str) -> Result<crate::Hijacked> {
        let version = self.api_version().await?;
        let uri = format!("/v{version}/session");
        crate::hijack::hijack(
            &self.endpoint,
            crate::hijack::HijackOptions {
                method: "POST",
                path_and_query: &uri,
                body: None,
                upgrade: "h2c",
                headers: &[("X-Docker-Expose-Session-Uuid", id)],
            },
        )
        .await
    }

    /// `POST /build/prune`.
    pub async fn build_prune(&self, options: &BuildPruneOptions) -> Result<BuildPruneReport> {
        let mut q = Query::new();
        q.flag("all", options.all);
        if options.keep_storage != 0 {
            let v = options.keep_storage.to_string();
            // Both spellings: older daemons know only the first, newer ones prefer the second.
            q.push("keep-storage", v.clone()).push("reserved-space", v);
        }
        q.filters(&options.filters);
        self.request_json(Method::POST, "/build/prune", &q, Body::Empty, "build prune")
            .await
    }

    /// `POST /build/cancel?id=`: stops the build started with `buildid=id`.
    pub async fn build_cancel(&self, id: &str) -> Result<()> {
        let mut q = Query::new();
        q.push("id", id);
        self.request(Method::POST, "/build/cancel", &q, Body::Empty)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_as_the_docker_cli_sends_it() {
        let mut o = BuildOptions {
            tags: vec!["a:1".into(), "b".into()],
            dockerfile: "docker/Dockerfile".into(),
            remove: true,
            no_cache: true,
            network_mode: "default".into(),
            extra_hosts: vec!["h:1.2.3.4".into()],
            shm_size: 67108864,
            platform: "Linux/AMD64".into(),
            ..BuildOptions::default()
        };
        o.build_args.insert("V".into(), Some("2".into()));
        o.build_args.insert("FROM_ENV".into(), None);
        o.labels.insert("k".into(), "v".into());
        let q = o.to_query().to_query_string();
        for want in [
            "?t=a%3A1&t=b&extrahosts=h%3A1.2.3.4&nocache=1&rm=1&",
            "networkmode=default",
            "shmsize=67108864",
            "dockerfile=docker%2FDockerfile",
            "buildargs=%7B%22FROM_ENV%22%3Anull%2C%22V%22%3A%222%22%7D",
            "labels=%7B%22k%22%3A%22v%22%7D",
            "cachefrom=%5B%5D",
            "platform=linux%2Famd64",
            "version=1",
        ] {
            assert!(q.contains(want), "{want} not in {q}");
        }
        assert!(!q.contains("forcerm") && !q.contains("&q=") && !q.contains("remote"));
    }
}
