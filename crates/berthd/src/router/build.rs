//! `POST /build` (the legacy builder's API, which the docker CLI uses without buildx or with
//! `DOCKER_BUILDKIT=0`), `POST /build/prune` and `POST /build/cancel`.
//!
//! The context arrives as a tar (plain, gzip or zstd; bzip2 and xz through the system's
//! `bzip2`/`xz`), is extracted under the data root's `tmp/`, and the Dockerfile is read and
//! parsed before the response starts: a bad context or Dockerfile is an HTTP error, as
//! dockerd's. Then the engine runs in its own task and the legacy JSON stream flows; a client
//! that goes away cancels the build.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::models::{ErrorDetail, JsonMessage};
use berth_api::{ApiError, ErrorKind};
use berth_build::cache::PruneOptions;
use berth_build::engine::{self, BuildError, BuildOptions, BuildOutput, Platform, short_id};
use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Error, Query, Result, ok_json};
use crate::build::tar_end::TarEnd;
use crate::build::{DaemonExecutor, RunHost};
use crate::state::AppState;

/// Removes a build's scratch directory (context, here-documents) when the build ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove a build directory");
        }
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error(ApiError::invalid(message))
}

fn json_map(query: &Query, key: &str) -> Result<BTreeMap<String, Option<String>>> {
    match query.non_empty(key) {
        None => Ok(BTreeMap::new()),
        Some(text) => {
            serde_json::from_str(text).map_err(|e| bad(format!("invalid {key} parameter: {e}")))
        }
    }
}

fn int(query: &Query, key: &str) -> Result<i64> {
    match query.non_empty(key) {
        None => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("invalid {key} parameter: {v:?} is not a number"))),
    }
}

/// A reader over the context, decompressed as its first bytes say.
fn context_reader(body: Body) -> io::Result<Box<dyn Read>> {
    let stream = body
        .into_data_stream()
        .map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e));
    context_reader_of(BufReader::with_capacity(
        1 << 16,
        SyncIoBridge::new(StreamReader::new(stream)),
    ))
}

/// [`context_reader`] over any buffered source.
/// The result is the plain tar, its end completed as Go's reader would ([`TarEnd`]).
fn context_reader_of<R: BufRead + Send + 'static>(mut reader: R) -> io::Result<Box<dyn Read>> {
    let magic = reader.fill_buf()?.to_vec();
    let external = if magic.starts_with(b"BZh") {
        Some("bzip2")
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else {
        None
    };
    let Some(tool) = external else {
        let (_, plain) = berth_image::unpack::decompress(reader)?;
        return Ok(Box::new(TarEnd::new(plain)));
    };
    // No bzip2/xz decoder is linked in: the system's tool decompresses (as dockerd does for
    // xz, which it runs as `xz -d -c -q`).
    let mut child = std::process::Command::new(tool)
        .args(["-d", "-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::other(format!("cannot run {tool} to decompress the context: {e}"))
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        let _ = io::copy(&mut reader, &mut stdin);
        drop(stdin);
        let _ = child.wait();
    });
    Ok(Box::new(TarEnd::new(stdout)))
}

/// Extracts a context tar into `ctx`, with dockerd's words for a bad one.
fn extract(reader: &mut dyn Read, ctx: &Path) -> Result<()> {
    berth_image::unpack::extract_into_root(
        reader,
        ctx,
        "/",
        &berth_image::unpack::ExtractOptions::default(),
    )
    .map_err(|e| {
        let text = e.to_string();
        let text = text
            .strip_prefix("cannot extract archive: ")
            .unwrap_or(&text);
        bad(format!("Error processing tar file(exit status 1): {text}"))
    })
}

/// `remote=<url>`: a git repository (dockerd's `IsGitURL`: cloned here, `#ref:subdir`); else
/// a download: a tarball (any compression) is the context; any other file is the Dockerfile
/// of an otherwise empty context (dockerd's rule).
async fn remote_context(
    url: &str,
    context: &Path,
    dir: &Path,
    dockerfile: &str,
    certs_dir: &Path,
) -> Result<()> {
    if berth_build::git::is_git_url(url) {
        let repo = berth_build::git::parse_remote(url).map_err(bad)?;
        let (ctx, clone_dir) = (context.to_path_buf(), dir.join("git"));
        return tokio::task::spawn_blocking(move || {
            let checkout = berth_build::git::clone_into(&repo, &clone_dir, false).map_err(bad)?;
            // The checkout (or its subdirectory) becomes the context; `.git` is not part of it.
            let _ = std::fs::remove_dir_all(&ctx);
            std::fs::rename(&checkout.context, &ctx)
                .map_err(|e| bad(format!("unable to prepare context: {e}")))?;
            let _ = std::fs::remove_dir_all(ctx.join(".git"));
            Ok(())
        })
        .await
        .map_err(super::join_error)?;
    }
    let file = dir.join("remote");
    crate::build::fetch::get_to_file(url, &file, Some(certs_dir))
        .await
        .map_err(|e| bad(format!("unable to prepare context: {e}")))?;
    let ctx = context.to_path_buf();
    let dockerfile = dockerfile.to_string();
    tokio::task::spawn_blocking(move || {
        if berth_build::engine::sources::is_archive(&file) {
            let f = std::fs::File::open(&file)
                .map_err(|e| bad(format!("unable to prepare context: {e}")))?;
            let mut reader = context_reader_of(BufReader::new(f))
                .map_err(|e| bad(format!("Error processing tar file: {e}")))?;
            extract(&mut reader, &ctx)
        } else {
            std::fs::rename(&file, ctx.join(dockerfile.trim_start_matches('/')))
                .map_err(|e| bad(format!("unable to prepare context: {e}")))
        }
    })
    .await
    .map_err(super::join_error)?
}

/// `POST /build`.
pub async fn build(
    State(state): State<AppState>,
    query: Query,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let mut tags = Vec::new();
    for t in query.all("t").into_iter().filter(|t| !t.is_empty()) {
        let r = berth_image::Reference::parse_tag_target(t)
            .map_err(|_| bad(format!("invalid reference format: {t}")))?;
        tags.push(r);
    }
    let credentials = super::distribution::registry_config_credentials(&headers);
    let dir = state
        .config
        .data_root
        .join("tmp")
        .join(format!("build-{:016x}", rand::random::<u64>()));
    let context = dir.join("context");
    let scratch = dir.join("scratch");
    for d in [&context, &scratch] {
        std::fs::create_dir_all(d).map_err(|e| {
            Error(ApiError::internal(format!(
                "cannot create {}: {e}",
                d.display()
            )))
        })?;
    }
    let guard = TempDir(dir);
    let name = query
        .non_empty("dockerfile")
        .unwrap_or("Dockerfile")
        .to_string();
    // Timings at debug level: the profile of a build (context in, then the steps) that
    // bench/build.sh's figures break down into.
    let started = std::time::Instant::now();
    match query.non_empty("remote") {
        Some(url) => {
            let certs = &state.config.registry.certs_dir;
            remote_context(url, &context, &guard.0, &name, certs).await?
        }
        None => {
            let ctx = context.clone();
            tokio::task::spawn_blocking(move || {
                let mut reader = context_reader(body)
                    .map_err(|e| bad(format!("Error processing tar file: {e}")))?;
                let result = extract(&mut reader, &ctx);
                // Read what is left so that the client sees the answer rather than a reset.
                let _ = io::copy(&mut reader, &mut io::sink());
                result
            })
            .await
            .map_err(super::join_error)??;
        }
    }
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "build context received and extracted"
    );
    let text = read_dockerfile(&context, &name)?;
    // The `-f` name goes into dockerd's messages for an empty or unparsable file.
    let (df, warnings) =
        berth_build::parse_with_warnings(&text, &name).map_err(|e| bad(e.to_string()))?;
    remove_ignored_build_files(&context, &name)?;
    let opts = BuildOptions {
        context,
        scratch,
        target: query.non_empty("target").map(str::to_string),
        build_args: json_map(&query, "buildargs")?,
        labels: json_map(&query, "labels")?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        no_cache: query.bool("nocache", false),
        pull: query.bool("pull", false),
        network_mode: query.non_empty("networkmode").map(str::to_string),
        platform: build_platform(query.non_empty("platform"))?,
        cache_from: match query.non_empty("cachefrom") {
            None => Vec::new(),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| bad(format!("invalid cachefrom parameter: {e}")))?,
        },
    };
    let host = RunHost {
        network_mode: opts.network_mode.clone(),
        // The docker CLI repeats the parameter; older clients join hosts with commas.
        extra_hosts: query
            .all("extrahosts")
            .into_iter()
            .flat_map(|h| h.split(','))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect(),
        shm_size: int(&query, "shmsize")?,
        memory: int(&query, "memory")?,
        memory_swap: int(&query, "memswap")?,
        cpu_shares: int(&query, "cpushares")?,
        cpu_period: int(&query, "cpuperiod")?,
        cpu_quota: int(&query, "cpuquota")?,
        cpuset_cpus: query.get("cpusetcpus").unwrap_or_default().to_string(),
        cpuset_mems: query.get("cpusetmems").unwrap_or_default().to_string(),
        remove: query.bool("rm", true),
        force_remove: query.bool("forcerm", false),
        session: query.non_empty("session").map(str::to_string),
    };
    let quiet = query.bool("q", false);
    let build_id = query.get("buildid").unwrap_or_default().to_string();
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let token = state.shutdown.child_token();
    state.builds.start(&build_id, token.clone());
    let exec = DaemonExecutor {
        state: state.clone(),
        cancel: token.clone(),
        host,
        credentials,
    };
    let out = Arc::new(Stream { tx, quiet });
    for warning in &warnings {
        out.stream(warning);
    }
    tokio::spawn(async move {
        // A client that goes away cancels the build.
        let watcher = {
            let out = out.clone();
            let token = token.clone();
            tokio::spawn(async move {
                out.tx.closed().await;
                token.cancel();
            })
        };
        let result = tokio::select! {
            r = engine::build(&df, &opts, &exec, &state.builds.cache, out.clone()) => r,
            _ = token.cancelled() => Err(BuildError { cancelled: true, ..BuildError::new("Build cancelled") }),
        };
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "build steps done"
        );
        match result {
            Ok(id) => finish(&state, &out, &id, &tags).await,
            Err(e) => out.error(&e),
        }
        state.builds.finish(&build_id);
        // The stream ends when the last sender goes: the watcher's first, then ours, so that
        // the client is answered before the context is removed and the budget enforced.
        watcher.abort();
        let _ = watcher.await;
        drop(out);
        drop(exec);
        tokio::task::spawn_blocking(move || drop(guard));
        state.builds.enforce_budget(&state).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// dockerd's `removeDockerfile`: the Dockerfile and the ignore file are always sent (the
/// daemon needs them) but, when `.dockerignore` excludes them, COPY must not see them; the docker
/// CLI relies on this for a Dockerfile it adds from stdin (`.dockerfile.<random>`).
fn remove_ignored_build_files(context: &Path, dockerfile: &str) -> Result<()> {
    let (ignore, file) =
        berth_build::dockerignore::Dockerignore::load(context, Some(Path::new(dockerfile)))
            .map_err(|e| bad(format!("cannot read .dockerignore: {e}")))?;
    let mut names = vec![
        dockerfile.trim_start_matches('/').to_string(),
        ".dockerignore".to_string(),
    ];
    if let Some(f) = file.as_ref().and_then(|f| f.strip_prefix(context).ok()) {
        names.push(f.to_string_lossy().into_owned());
    }
    for n in names {
        if ignore.is_excluded(&n) {
            match std::fs::remove_file(context.join(&n)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(bad(format!("cannot remove {n} from the context: {e}"))),
            }
        }
    }
    Ok(())
}

/// `platform=`: Berth builds for the platform it runs on (it runs no emulation).
fn build_platform(asked: Option<&str>) -> Result<Platform> {
    let host = Platform::host();
    let Some(text) = asked else {
        return Ok(host);
    };
    let mut parts = text.split('/');
    let os = parts.next().unwrap_or_default();
    let arch = parts.next().unwrap_or(&host.arch);
    let arch = match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    if os != host.os || arch != host.arch {
        return Err(bad(format!(
            "cannot build for platform {text}: this daemon builds for {}/{} only",
            host.os, host.arch
        )));
    }
    Ok(host)
}

/// The Dockerfile named by `dockerfile` (relative to the context; `Dockerfile` falls back to
/// `dockerfile`).
fn read_dockerfile(context: &Path, name: &str) -> Result<String> {
    let rel = name.trim_start_matches('/');
    if Path::new(rel)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad(format!(
            "The Dockerfile ({name}) must be within the build context"
        )));
    }
    let mut candidates = vec![rel.to_string()];
    if rel == "Dockerfile" {
        candidates.push("dockerfile".into());
    }
    for c in candidates {
        match crate::build::read_small(&context.join(&c)) {
            Ok(Some(text)) => return Ok(text),
            Ok(None) => {}
            Err(e) => return Err(bad(format!("Cannot read the Dockerfile {name}: {e}"))),
        }
    }
    Err(bad(format!("Cannot locate specified Dockerfile: {name}")))
}

async fn finish(state: &AppState, out: &Stream, id: &str, tags: &[berth_image::Reference]) {
    if out.quiet {
        out.send(&JsonMessage::stream(format!("{id}\n")));
    } else {
        out.send(&JsonMessage::stream(format!(
            "Successfully built {}\n",
            short_id(id)
        )));
    }
    for t in tags {
        let images = state.images.clone();
        let (id2, target) = (id.to_string(), t.to_string());
        let tagged = tokio::task::spawn_blocking(move || images.tag(&id2, &target)).await;
        match tagged {
            Ok(Ok(r)) => {
                if !out.quiet {
                    out.send(&JsonMessage::stream(format!(
                        "Successfully tagged {}\n",
                        r.familiar_string()
                    )));
                }
            }
            Ok(Err(e)) => out.send(&JsonMessage::error(e.to_string())),
            Err(e) => out.send(&JsonMessage::error(format!("internal error: {e}"))),
        }
    }
}

/// The legacy JSON stream.
struct Stream {
    tx: mpsc::UnboundedSender<Bytes>,
    quiet: bool,
}

impl Stream {
    fn send(&self, m: &JsonMessage) {
        let mut line = serde_json::to_vec(m).unwrap_or_default();
        line.push(b'\n');
        let _ = self.tx.send(Bytes::from(line));
    }

    fn error(&self, e: &BuildError) {
        self.send(&JsonMessage {
            error: Some(e.message.clone()),
            error_detail: Some(ErrorDetail {
                code: e.code,
                message: e.message.clone(),
            }),
            ..Default::default()
        });
    }
}

impl BuildOutput for Stream {
    fn stream(&self, text: &str) {
        if !self.quiet {
            self.send(&JsonMessage::stream(text));
        }
    }

    fn aux_id(&self, id: &str) {
        self.send(&JsonMessage {
            aux: Some(serde_json::json!({ "ID": id })),
            ..Default::default()
        });
    }
}

/// `POST /build/prune?all=&filters=&keep-storage=&reserved-space=`.
pub async fn prune(State(state): State<AppState>, query: Query) -> Result<Response> {
    let filters = query.filters()?;
    let mut opts = PruneOptions {
        all: query.bool("all", false),
        ..Default::default()
    };
    filters.validate(&[
        "until",
        "id",
        "type",
        "inuse",
        "shared",
        "private",
        "description",
        "parent",
    ])?;
    if let Some(v) = filters.get("until").first() {
        let nanos = berth_api::duration::parse_go_duration(v)
            .ok_or_else(|| bad(format!("invalid filter 'until={v}'")))?;
        opts.until = Some(chrono::Utc::now().timestamp() - nanos / 1_000_000_000);
    }
    opts.ids = filters.get("id").into_iter().map(str::to_string).collect();
    opts.kinds = filters
        .get("type")
        .into_iter()
        .map(str::to_string)
        .collect();
    for key in ["keep-storage", "reserved-space", "max-used-space"] {
        if let Some(v) = query.non_empty(key) {
            let n: u64 = v
                .parse()
                .map_err(|_| bad(format!("invalid {key} parameter: {v:?}")))?;
            if n > 0 {
                opts.keep_storage = Some(opts.keep_storage.map_or(n, |k| k.min(n)));
            }
        }
    }
    let all = opts.all && filters.is_empty();
    let pruned = state.builds.prune(&state, opts).await;
    if all {
        // `RUN --mount=type=cache` directories are cache too (BuildKit's exec.cachemount).
        let dir = crate::build::cache_mounts_dir(&state);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove cache mounts");
        }
    }
    Ok(ok_json(&serde_json::json!({
        "CachesDeleted": if pruned.ids.is_empty() { serde_json::Value::Null } else { pruned.ids.into() },
        "SpaceReclaimed": pruned.space,
    })))
}

/// `POST /build/cancel?id=`.
pub async fn cancel(State(state): State<AppState>, query: Query) -> Result<Response> {
    let id = query.get("id").unwrap_or_default();
    if state.builds.cancel(id) {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(Error(ApiError::new(
            ErrorKind::NotFound,
            format!("build {id} not found"),
        )))
    }
}

/// The BuildCache rows of `/system/df`.
pub fn usage(state: &AppState) -> Vec<serde_json::Value> {
    let fmt = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    state
        .builds
        .records()
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "ID": r.key,
                "Parents": serde_json::Value::Null,
                "Type": r.kind,
                "Description": r.description,
                "InUse": false,
                "Shared": false,
                "Size": r.size,
                "CreatedAt": fmt(r.created),
                "LastUsedAt": fmt(r.last_used),
                "UsageCount": r.usage_count,
            })
        })
        .collect()
}
