//! The seam between reconciliation and the daemon: [`Engine`] is what `apply` needs, and
//! [`ClientEngine`] implements it over berth-client (tests use a recording fake).

use std::collections::BTreeMap;

use berth_api::Filters;
use berth_api::models::{
    ContainerCreateRequest, EndpointSettings, NetworkCreateRequest, VolumeCreateOptions,
};
use berth_client::{Client, ContainerListOptions, ContainerRemoveOptions};
use futures_util::StreamExt;

use super::plan::{Observed, ObservedContainer};
use crate::labels;

pub type EngineResult<T> = Result<T, berth_client::Error>;

/// A container's state as `apply` waits on it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStatus {
    /// `running`, `exited`, ...
    pub status: String,
    /// `healthy`, `unhealthy`, `starting`; `None` without a health check.
    pub health: Option<String>,
    pub exit_code: i64,
}

/// What reconciliation asks of a daemon.
#[allow(async_fn_in_trait)]
pub trait Engine {
    async fn observe(&self, project: &str) -> EngineResult<Observed>;
    async fn create_network(&self, request: &NetworkCreateRequest) -> EngineResult<()>;
    async fn create_volume(&self, request: &VolumeCreateOptions) -> EngineResult<()>;
    async fn create_container(
        &self,
        name: &str,
        request: &ContainerCreateRequest,
    ) -> EngineResult<String>;
    async fn connect(
        &self,
        network: &str,
        container: &str,
        endpoint: &EndpointSettings,
    ) -> EngineResult<()>;
    async fn start(&self, id: &str) -> EngineResult<()>;
    async fn stop(&self, id: &str, timeout: Option<i64>) -> EngineResult<()>;
    /// Removes a container; `volumes` removes its anonymous volumes too.
    async fn remove(&self, id: &str, volumes: bool) -> EngineResult<()>;
    async fn rename(&self, id: &str, name: &str) -> EngineResult<()>;
    /// A container's anonymous volumes (name, mount point): a recreated container takes them
    /// over, as in Compose, so their data survives a configuration change.
    async fn anonymous_volumes(&self, id: &str) -> EngineResult<Vec<(String, String)>>;
    async fn status(&self, id: &str) -> EngineResult<ContainerStatus>;
    /// The image's id, or `None` when the daemon does not have it.
    async fn image_id(&self, image: &str) -> EngineResult<Option<String>>;
    async fn pull(&self, image: &str) -> EngineResult<()>;
}

/// The `X-Registry-Auth` value for an image's registry, when the user has logged in to it.
/// The CLI supplies it (credentials live in its config dir, which this crate does not read).
pub type RegistryAuth = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// [`Engine`] over a berth-client [`Client`].
pub struct ClientEngine {
    pub client: Client,
    /// `--parallel N`: at most N container operations and pulls at once (none: no limit).
    pub limit: Option<tokio::sync::Semaphore>,
    /// Credentials sent with pulls.
    pub registry_auth: Option<RegistryAuth>,
}

impl ClientEngine {
    pub fn new(client: Client, parallel: i64) -> ClientEngine {
        ClientEngine {
            client,
            limit: (parallel > 0).then(|| tokio::sync::Semaphore::new(parallel as usize)),
            registry_auth: None,
        }
    }

    /// Sends `auth(image)` as `X-Registry-Auth` with every pull.
    pub fn with_registry_auth(mut self, auth: RegistryAuth) -> ClientEngine {
        self.registry_auth = Some(auth);
        self
    }

    async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match &self.limit {
            Some(s) => s.acquire().await.ok(),
            None => None,
        }
    }
}

fn project_filter(project: &str) -> Filters {
    let mut f = Filters::new();
    f.add("label", format!("{}={project}", labels::PROJECT));
    f
}

/// A project's containers as `plan` sees them.
pub async fn observe_containers(
    client: &Client,
    project: &str,
) -> EngineResult<Vec<ObservedContainer>> {
    let list = client
        .containers_list(&ContainerListOptions {
            all: true,
            filters: project_filter(project),
            ..Default::default()
        })
        .await?;
    Ok(list
        .into_iter()
        .map(|c| {
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            ObservedContainer {
                id: c.id.clone(),
                name: c
                    .names
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                service: label(labels::SERVICE),
                number: label(labels::NUMBER).parse().unwrap_or(0),
                config_hash: label(labels::CONFIG_HASH),
                state: c.state.clone(),
                oneoff: label(labels::ONEOFF).eq_ignore_ascii_case("true"),
                image: c.image.clone(),
                labels: c.labels.clone(),
            }
        })
        .collect())
}

impl Engine for ClientEngine {
    async fn observe(&self, project: &str) -> EngineResult<Observed> {
        let all = Filters::new();
        let (containers, networks, volumes) = futures_util::join!(
            observe_containers(&self.client, project),
            self.client.networks_list(&all),
            self.client.volumes_list(&all),
        );
        Ok(Observed {
            containers: containers?,
            networks: networks?
                .into_iter()
                .map(|n| (n.name, n.labels))
                .collect::<BTreeMap<_, _>>(),
            volumes: volumes?.volumes.into_iter().map(|v| v.name).collect(),
        })
    }

    async fn create_network(&self, request: &NetworkCreateRequest) -> EngineResult<()> {
        self.client.network_create(request).await.map(|_| ())
    }

    async fn create_volume(&self, request: &VolumeCreateOptions) -> EngineResult<()> {
        self.client.volume_create(request).await.map(|_| ())
    }

    async fn create_container(
        &self,
        name: &str,
        request: &ContainerCreateRequest,
    ) -> EngineResult<String> {
        let _permit = self.permit().await;
        Ok(self
            .client
            .container_create(request, Some(name), None)
            .await?
            .id)
    }

    async fn connect(
        &self,
        network: &str,
        container: &str,
        endpoint: &EndpointSettings,
    ) -> EngineResult<()> {
        self.client
            .network_connect(network, container, Some(endpoint.clone()))
            .await
    }

    async fn start(&self, id: &str) -> EngineResult<()> {
        let _permit = self.permit().await;
        self.client.container_start(id, None).await
    }

    async fn stop(&self, id: &str, timeout: Option<i64>) -> EngineResult<()> {
        let _permit = self.permit().await;
        self.client.container_stop(id, timeout, None).await
    }

    async fn remove(&self, id: &str, volumes: bool) -> EngineResult<()> {
        let _permit = self.permit().await;
        self.client
            .container_remove(
                id,
                ContainerRemoveOptions {
                    force: true,
                    volumes,
                    link: false,
                },
            )
            .await
    }

    async fn rename(&self, id: &str, name: &str) -> EngineResult<()> {
        let _permit = self.permit().await;
        self.client.container_rename(id, name).await
    }

    async fn anonymous_volumes(&self, id: &str) -> EngineResult<Vec<(String, String)>> {
        let c = self.client.container_inspect(id).await?;
        Ok(c.mounts
            .into_iter()
            .filter(|m| m.kind == "volume" && is_anonymous(&m.name))
            .map(|m| (m.name, m.destination))
            .collect())
    }

    async fn status(&self, id: &str) -> EngineResult<ContainerStatus> {
        let c = self.client.container_inspect(id).await?;
        let state = c.state;
        Ok(ContainerStatus {
            status: state.status.clone(),
            health: state.health.map(|h| h.status),
            exit_code: state.exit_code,
        })
    }

    async fn image_id(&self, image: &str) -> EngineResult<Option<String>> {
        match self.client.image_inspect(image).await {
            Ok(i) => Ok(Some(i.id)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn pull(&self, image: &str) -> EngineResult<()> {
        let _permit = self.permit().await;
        let (repo, tag) = split_tag(image);
        let auth = self.registry_auth.as_ref().and_then(|f| f(image));
        let mut stream = Box::pin(
            self.client
                .image_pull(repo, tag, None, auth.as_deref())
                .await?,
        );
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if let Some(err) = msg.error_detail.map(|d| d.message).or(msg.error) {
                return Err(berth_client::Error::Api(berth_api::ApiError::new(
                    berth_api::ErrorKind::NotFound,
                    err,
                )));
            }
        }
        Ok(())
    }
}

/// `repo:tag` (a port in the registry host is not a tag; a digest stays in the name).
fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

/// Anonymous volumes are named by 64 hex digits (named ones by their users).
fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}
