//! Container and exec endpoints. Attach and exec start are hijacked connections: see
//! [`crate::hijack`].

use berth_api::models::ContainerConfig;
use berth_api::models::container::{
    ContainerCreateRequest, ContainerCreateResponse, ContainerInspect, ContainerPruneResponse,
    ContainerSummary, ContainerTopResponse, ContainerUpdateResponse, ContainerWaitResponse,
    ExecConfig, ExecInspect, ExecStartConfig, FilesystemChange, Resources, RestartPolicy,
};
use berth_api::stream::{FrameDecoder, StreamKind};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http::Method;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::hijack::{HijackOptions, Hijacked};
use crate::images::UploadStream;
use crate::query::encode_path;
use crate::{Body, Client, Error, Filters, Query, Result};

/// `GET /containers/json` parameters.
#[derive(Debug, Clone, Default)]
pub struct ContainerListOptions {
    pub all: bool,
    /// The `n` most recently created containers (`-n`); `-l` is `limit: Some(1)`.
    pub limit: Option<i64>,
    pub size: bool,
    pub filters: Filters,
}

/// `DELETE /containers/{id}` parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContainerRemoveOptions {
    pub force: bool,
    /// Remove anonymous volumes (`-v`).
    pub volumes: bool,
    /// Remove a link, not the container (`--link`).
    pub link: bool,
}

/// `GET /containers/{id}/logs` parameters.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    /// Unix timestamp text (`1700000000.000000000`), as docker's CLI sends it.
    pub since: Option<String>,
    pub until: Option<String>,
    pub timestamps: bool,
    /// `all` or a number.
    pub tail: Option<String>,
    pub stdout: bool,
    pub stderr: bool,
    /// Extra attributes (labels, env) the log driver recorded (`--details`).
    pub details: bool,
}

/// `POST /containers/{id}/attach` parameters.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub stream: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Replay the log first (`logs=1`).
    pub logs: bool,
    pub detach_keys: Option<String>,
}

/// `POST /commit` parameters.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub container: String,
    pub repo: String,
    pub tag: String,
    pub comment: String,
    pub author: String,
    pub pause: bool,
    pub changes: Vec<String>,
}

/// `GET/PUT /containers/{id}/archive` file stat, decoded from the base64 JSON
/// `X-Docker-Container-Path-Stat` header.
pub use berth_api::models::PathStat;

/// `PUT /containers/{id}/archive` parameters.
#[derive(Debug, Clone, Default)]
pub struct CopyToOptions {
    pub no_overwrite_dir_non_dir: bool,
    pub copy_uid_gid: bool,
}

/// The answer to `POST /containers/{id}/wait`, whose body only arrives when the condition is
/// met: the request is sent (and its head read) first, so that a later `start` cannot race it.
pub struct WaitHandle {
    body: Incoming,
}

impl WaitHandle {
    /// Waits for the container to reach the condition.
    pub async fn result(self) -> Result<ContainerWaitResponse> {
        let bytes = crate::read_body(self.body).await?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
                what: "container wait".to_string(),
                source,
            })?;
        crate::decode_value(value, "container wait")
    }
}

/// `{"Id": ...}` answers (commit, exec create).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct IdResponse {
    #[serde(rename = "Id")]
    id: String,
}

fn container_path(id: &str, rest: &str) -> String {
    format!("/containers/{}{rest}", encode_path(id))
}

pub(crate) fn json_body<T: Serialize>(value: &T) -> Result<Body> {
    serde_json::to_vec(value)
        .map(Body::Json)
        .map_err(|source| Error::Decode {
            what: "request body".to_string(),
            source,
        })
}

impl Client {
    /// `POST /containers/create?name=&platform=`.
    pub async fn container_create(
        &self,
        request: &ContainerCreateRequest,
        name: Option<&str>,
        platform: Option<&str>,
    ) -> Result<ContainerCreateResponse> {
        let mut query = Query::new();
        query
            .non_empty("name", name.unwrap_or_default())
            .non_empty("platform", platform.unwrap_or_default());
        self.request_json(
            Method::POST,
            "/containers/create",
            &query,
            json_body(request)?,
            "container create",
        )
        .await
    }

    async fn post_empty(&self, path: &str, query: &Query) -> Result<()> {
        self.request_bytes(Method::POST, path, query, Body::Empty)
            .await?;
        Ok(())
    }

    /// `POST /containers/{id}/start`.
    pub async fn container_start(&self, id: &str, detach_keys: Option<&str>) -> Result<()> {
        let mut query = Query::new();
        query.non_empty("detachKeys", detach_keys.unwrap_or_default());
        self.post_empty(&container_path(id, "/start"), &query).await
    }

    /// `POST /containers/{id}/stop?t=&signal=`.
    pub async fn container_stop(
        &self,
        id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        self.stop_or_restart(id, "/stop", timeout, signal).await
    }

    /// `POST /containers/{id}/restart?t=&signal=`.
    pub async fn container_restart(
        &self,
        id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        self.stop_or_restart(id, "/restart", timeout, signal).await
    }

    /// Stop and restart take the same grace period and signal.
    async fn stop_or_restart(
        &self,
        id: &str,
        action: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let mut query = Query::new();
        if let Some(t) = timeout {
            query.push("t", t.to_string());
        }
        query.non_empty("signal", signal.unwrap_or_default());
        self.post_empty(&container_path(id, action), &query).await
    }

    /// `POST /containers/{id}/kill?signal=`.
    pub async fn container_kill(&self, id: &str, signal: Option<&str>) -> Result<()> {
        let mut query = Query::new();
        query.non_empty("signal", signal.unwrap_or_default());
        self.post_empty(&container_path(id, "/kill"), &query).await
    }

    /// `POST /containers/{id}/pause`.
    pub async fn container_pause(&self, id: &str) -> Result<()> {
        self.post_empty(&container_path(id, "/pause"), &Query::new())
            .await
    }

    /// `POST /containers/{id}/unpause`.
    pub async fn container_unpause(&self, id: &str) -> Result<()> {
        self.post_empty(&container_path(id, "/unpause"), &Query::new())
            .await
    }

    /// `POST /containers/{id}/wait?condition=` (`not-running`, `next-exit`, `removed`). Returns
    /// once the daemon has accepted the wait; [`WaitHandle::result`] gives the exit status.
    pub async fn container_wait(&self, id: &str, condition: Option<&str>) -> Result<WaitHandle> {
        let mut query = Query::new();
        query.non_empty("condition", condition.unwrap_or_default());
        let response = self
            .request(
                Method::POST,
                &container_path(id, "/wait"),
                &query,
                Body::Empty,
            )
            .await?;
        Ok(WaitHandle {
            body: response.into_body(),
        })
    }

    /// `DELETE /containers/{id}?force=&v=&link=`.
    pub async fn container_remove(&self, id: &str, options: ContainerRemoveOptions) -> Result<()> {
        let mut query = Query::new();
        query
            .flag("v", options.volumes)
            .flag("link", options.link)
            .flag("force", options.force);
        self.request_bytes(Method::DELETE, &container_path(id, ""), &query, Body::Empty)
            .await?;
        Ok(())
    }

    /// `POST /containers/{id}/rename?name=`.
    pub async fn container_rename(&self, id: &str, name: &str) -> Result<()> {
        let mut query = Query::new();
        query.push("name", name);
        self.post_empty(&container_path(id, "/rename"), &query)
            .await
    }

    /// `POST /containers/{id}/update`: resources and the restart policy.
    pub async fn container_update(
        &self,
        id: &str,
        resources: &Resources,
        restart_policy: Option<&RestartPolicy>,
    ) -> Result<ContainerUpdateResponse> {
        let mut body = serde_json::to_value(resources).map_err(|source| Error::Decode {
            what: "update body".to_string(),
            source,
        })?;
        if let (Some(policy), Some(map)) = (restart_policy, body.as_object_mut()) {
            map.insert(
                "RestartPolicy".to_string(),
                serde_json::to_value(policy).unwrap_or_default(),
            );
        }
        self.request_json(
            Method::POST,
            &container_path(id, "/update"),
            &Query::new(),
            json_body(&body)?,
            "container update",
        )
        .await
    }

    /// `POST /containers/{id}/resize?h=&w=`.
    pub async fn container_resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let mut query = Query::new();
        query
            .push("h", height.to_string())
            .push("w", width.to_string());
        self.post_empty(&container_path(id, "/resize"), &query)
            .await
    }

    /// `GET /containers/{id}/logs`: demultiplexed frames, or raw bytes (as stdout) for a TTY
    /// container.
    pub async fn container_logs(
        &self,
        id: &str,
        options: &LogsOptions,
        tty: bool,
    ) -> Result<impl Stream<Item = Result<(StreamKind, Bytes)>> + Send + use<>> {
        self.logs_at(&container_path(id, "/logs"), options, tty)
            .await
    }

    /// A logs endpoint of that shape (`/containers/{id}/logs`, `/services/{id}/logs`,
    /// `/tasks/{id}/logs`), demultiplexed unless `tty`.
    pub async fn logs_at(
        &self,
        path: &str,
        options: &LogsOptions,
        tty: bool,
    ) -> Result<impl Stream<Item = Result<(StreamKind, Bytes)>> + Send + use<>> {
        let mut query = Query::new();
        query
            .flag("stdout", options.stdout)
            .flag("stderr", options.stderr);
        if let Some(since) = &options.since {
            query.push("since", since.clone());
        }
        if let Some(until) = &options.until {
            query.push("until", until.clone());
        }
        query
            .flag("timestamps", options.timestamps)
            .flag("follow", options.follow)
            .flag("details", options.details);
        if let Some(tail) = &options.tail {
            query.push("tail", tail.clone());
        }
        let response = self.request(Method::GET, path, &query, Body::Empty).await?;
        let multiplexed = !tty
            && response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v != "application/vnd.docker.raw-stream");
        let chunks = crate::stream::bytes_stream(response.into_body());
        Ok(if multiplexed {
            demux_stream(chunks).boxed()
        } else {
            chunks.map(|c| c.map(|b| (StreamKind::Stdout, b))).boxed()
        })
    }

    /// `GET /containers/{id}/top?ps_args=`.
    pub async fn container_top(&self, id: &str, ps_args: &str) -> Result<ContainerTopResponse> {
        let mut query = Query::new();
        query.non_empty("ps_args", ps_args);
        self.request_json(
            Method::GET,
            &container_path(id, "/top"),
            &query,
            Body::Empty,
            "container top",
        )
        .await
    }

    /// `GET /containers/{id}/stats?stream=&one-shot=`: one JSON object per interval (or one).
    pub async fn container_stats(
        &self,
        id: &str,
        stream: bool,
        one_shot: bool,
    ) -> Result<impl Stream<Item = Result<serde_json::Value>> + Send + use<>> {
        let mut query = Query::new();
        query.push("stream", if stream { "1" } else { "0" });
        query.flag("one-shot", one_shot);
        let response = self
            .request(
                Method::GET,
                &container_path(id, "/stats"),
                &query,
                Body::Empty,
            )
            .await?;
        Ok(crate::stream::json_stream(
            response.into_body(),
            "container stats",
        ))
    }

    /// `GET /containers/{id}/changes`.
    pub async fn container_changes(&self, id: &str) -> Result<Vec<FilesystemChange>> {
        self.request_json(
            Method::GET,
            &container_path(id, "/changes"),
            &Query::new(),
            Body::Empty,
            "container changes",
        )
        .await
    }

    /// `GET /containers/{id}/export`: the root filesystem as a tar stream.
    pub async fn container_export(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + use<>> {
        let response = self
            .request(
                Method::GET,
                &container_path(id, "/export"),
                &Query::new(),
                Body::Empty,
            )
            .await?;
        Ok(crate::stream::bytes_stream(response.into_body()))
    }

    /// `HEAD /containers/{id}/archive?path=`: the stat of a path in the container.
    pub async fn container_stat_path(&self, id: &str, path: &str) -> Result<PathStat> {
        let mut query = Query::new();
        query.push("path", path);
        let response = self
            .request(
                Method::HEAD,
                &container_path(id, "/archive"),
                &query,
                Body::Empty,
            )
            .await?;
        path_stat(response.headers())
    }

    /// `GET /containers/{id}/archive?path=`: the stat and a tar stream of the path.
    pub async fn container_archive_get(
        &self,
        id: &str,
        path: &str,
    ) -> Result<(PathStat, impl Stream<Item = Result<Bytes>> + Send + use<>)> {
        let mut query = Query::new();
        query.push("path", path);
        let response = self
            .request(
                Method::GET,
                &container_path(id, "/archive"),
                &query,
                Body::Empty,
            )
            .await?;
        let stat = path_stat(response.headers())?;
        Ok((stat, crate::stream::bytes_stream(response.into_body())))
    }

    /// `PUT /containers/{id}/archive?path=`: extracts a tar stream into a directory.
    pub async fn container_archive_put(
        &self,
        id: &str,
        path: &str,
        tar: UploadStream,
        options: CopyToOptions,
    ) -> Result<()> {
        let mut query = Query::new();
        query.push("path", path);
        query
            .flag("noOverwriteDirNonDir", options.no_overwrite_dir_non_dir)
            .flag("copyUIDGID", options.copy_uid_gid);
        let body = Body::Stream {
            content_type: "application/x-tar",
            stream: tar,
        };
        self.request_bytes(Method::PUT, &container_path(id, "/archive"), &query, body)
            .await?;
        Ok(())
    }

    /// `POST /commit`: a new image from a container; returns the image id.
    pub async fn container_commit(
        &self,
        options: &CommitOptions,
        config: Option<&ContainerConfig>,
    ) -> Result<String> {
        let mut query = Query::new();
        query
            .push("container", options.container.clone())
            .non_empty("repo", &options.repo)
            .non_empty("tag", &options.tag)
            .non_empty("comment", &options.comment)
            .non_empty("author", &options.author);
        for change in &options.changes {
            query.push("changes", change.clone());
        }
        query.push("pause", if options.pause { "1" } else { "0" });
        let body = match config {
            Some(config) => json_body(config)?,
            None => Body::Empty,
        };
        let id: IdResponse = self
            .request_json(Method::POST, "/commit", &query, body, "commit")
            .await?;
        Ok(id.id)
    }

    /// `GET /containers/json`.
    pub async fn containers_list(
        &self,
        options: &ContainerListOptions,
    ) -> Result<Vec<ContainerSummary>> {
        let mut query = Query::new();
        query.flag("all", options.all);
        if let Some(limit) = options.limit {
            query.push("limit", limit.to_string());
        }
        query.flag("size", options.size).filters(&options.filters);
        self.request_json(
            Method::GET,
            "/containers/json",
            &query,
            Body::Empty,
            "container list",
        )
        .await
    }

    /// `GET /containers/json`, undecoded (for `ps --format` over fields the model lacks).
    pub async fn containers_list_raw(
        &self,
        options: &ContainerListOptions,
    ) -> Result<Vec<serde_json::Value>> {
        let mut query = Query::new();
        query.flag("all", options.all);
        if let Some(limit) = options.limit {
            query.push("limit", limit.to_string());
        }
        query.flag("size", options.size).filters(&options.filters);
        self.request_json(
            Method::GET,
            "/containers/json",
            &query,
            Body::Empty,
            "container list",
        )
        .await
    }

    /// `GET /containers/{id}/json`, typed.
    pub async fn container_inspect(&self, id: &str) -> Result<ContainerInspect> {
        let raw = self.container_inspect_raw(id, false).await?;
        crate::decode_value(raw, "container inspect")
    }

    /// `GET /containers/{id}/json?size=` as the daemon sent it.
    pub async fn container_inspect_raw(&self, id: &str, size: bool) -> Result<serde_json::Value> {
        let mut query = Query::new();
        query.flag("size", size);
        self.request_value(
            Method::GET,
            &container_path(id, "/json"),
            &query,
            Body::Empty,
            "container inspect",
        )
        .await
    }

    /// `GET /containers/{id}/json`, the exact bytes (docker's inspect keeps the key order).
    pub async fn container_inspect_bytes(&self, id: &str, size: bool) -> Result<Bytes> {
        let mut query = Query::new();
        query.flag("size", size);
        self.request_bytes(
            Method::GET,
            &container_path(id, "/json"),
            &query,
            Body::Empty,
        )
        .await
    }

    /// `POST /containers/prune`.
    pub async fn containers_prune(&self, filters: &Filters) -> Result<ContainerPruneResponse> {
        let mut query = Query::new();
        query.filters(filters);
        self.request_json(
            Method::POST,
            "/containers/prune",
            &query,
            Body::Empty,
            "container prune",
        )
        .await
    }

    /// `POST /containers/{id}/attach`, hijacked: the raw bidirectional stream.
    pub async fn container_attach(&self, id: &str, options: &AttachOptions) -> Result<Hijacked> {
        let mut query = Query::new();
        query
            .flag("stream", options.stream)
            .flag("stdin", options.stdin)
            .flag("stdout", options.stdout)
            .flag("stderr", options.stderr)
            .flag("logs", options.logs);
        if let Some(keys) = &options.detach_keys {
            query.push("detachKeys", keys.clone());
        }
        let version = self.api_version().await?;
        let uri = format!(
            "/v{version}{}{}",
            container_path(id, "/attach"),
            query.to_query_string()
        );
        crate::hijack::hijack(
            &self.endpoint,
            HijackOptions {
                method: "POST",
                path_and_query: &uri,
                body: None,
                upgrade: "tcp",
                headers: &[],
            },
        )
        .await
    }

    /// `POST /containers/{id}/exec`: returns the exec id.
    pub async fn exec_create(&self, container: &str, config: &ExecConfig) -> Result<String> {
        let id: IdResponse = self
            .request_json(
                Method::POST,
                &container_path(container, "/exec"),
                &Query::new(),
                json_body(config)?,
                "exec create",
            )
            .await?;
        Ok(id.id)
    }

    /// `POST /exec/{id}/start` with `Detach: true`: returns once the process started.
    pub async fn exec_start_detached(&self, id: &str, config: &ExecStartConfig) -> Result<()> {
        let mut config = config.clone();
        config.detach = true;
        self.request_bytes(
            Method::POST,
            &format!("/exec/{}/start", encode_path(id)),
            &Query::new(),
            json_body(&config)?,
        )
        .await?;
        Ok(())
    }

    /// `POST /exec/{id}/start`, hijacked.
    pub async fn exec_start(&self, id: &str, config: &ExecStartConfig) -> Result<Hijacked> {
        let version = self.api_version().await?;
        let uri = format!("/v{version}/exec/{}/start", encode_path(id));
        let body = serde_json::to_vec(config).map_err(|source| Error::Decode {
            what: "exec start body".to_string(),
            source,
        })?;
        crate::hijack::hijack(
            &self.endpoint,
            HijackOptions {
                method: "POST",
                path_and_query: &uri,
                body: Some(&body),
                upgrade: "tcp",
                headers: &[],
            },
        )
        .await
    }

    /// `POST /exec/{id}/resize?h=&w=`.
    pub async fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let mut query = Query::new();
        query
            .push("h", height.to_string())
            .push("w", width.to_string());
        self.post_empty(&format!("/exec/{}/resize", encode_path(id)), &query)
            .await
    }

    /// `GET /exec/{id}/json`.
    pub async fn exec_inspect(&self, id: &str) -> Result<ExecInspect> {
        self.request_json(
            Method::GET,
            &format!("/exec/{}/json", encode_path(id)),
            &Query::new(),
            Body::Empty,
            "exec inspect",
        )
        .await
    }
}

/// Decodes the `X-Docker-Container-Path-Stat` header.
fn path_stat(headers: &http::HeaderMap) -> Result<PathStat> {
    let Some(value) = headers
        .get("x-docker-container-path-stat")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(PathStat::default());
    };
    let bytes = decode_base64(value.trim()).ok_or_else(|| {
        Error::Io(std::io::Error::other(
            "invalid X-Docker-Container-Path-Stat header: not base64",
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
        what: "container path stat".to_string(),
        source,
    })
}

/// Docker sends standard base64 with padding; unpadded text, stray trailing bits and the
/// URL-safe alphabet are accepted too, so a lenient server's header still decodes.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    GeneralPurpose::new(&STANDARD, LENIENT)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&URL_SAFE, LENIENT).decode(text))
        .ok()
}

#[cfg(test)]
pub(crate) fn decode_base64_for_test(text: &str) -> Option<Vec<u8>> {
    decode_base64(text)
}

#[cfg(test)]
pub(crate) fn path_stat_for_test(headers: &http::HeaderMap) -> Result<PathStat> {
    path_stat(headers)
}

/// Encodes a path stat as the daemon sends it (for tests and fakes).
pub fn encode_path_stat(stat: &PathStat) -> String {
    stat.header_value()
}

/// Splits multiplexed frames out of a chunk stream. A stream type the decoder does not know
/// ends the stream with an error.
pub fn demux_stream<S>(chunks: S) -> impl Stream<Item = Result<(StreamKind, Bytes)>> + Send
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    let chunks = Box::pin(chunks);
    stream::unfold(Some((chunks, FrameDecoder::new())), |state| async move {
        let (mut chunks, mut decoder) = state?;
        loop {
            match decoder.next_frame() {
                Ok(Some((kind, payload))) => {
                    return Some((Ok((kind, Bytes::from(payload))), Some((chunks, decoder))));
                }
                Ok(None) => {}
                Err(e) => return Some((Err(Error::Io(std::io::Error::other(e))), None)),
            }
            match chunks.next().await {
                Some(Ok(data)) => decoder.push(&data),
                Some(Err(e)) => return Some((Err(e), None)),
                None => return None,
            }
        }
    })
}
