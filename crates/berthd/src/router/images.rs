//! Image endpoints. Image names contain slashes and colons, so `/images/{name...}/json`,
//! `/history`, `/get`, `/tag` and `/push` arrive through one catch-all and are told apart by
//! their suffix. Every store call is blocking and runs on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::models::{
    DriverData, HistoryItem, ImageDeleteItem, ImageInspect, ImageMetadata, ImagePruneResponse,
    ImageRootFs, ImageSummary, JsonMessage, ProgressDetail,
};
use berth_api::{ApiError, ApiVersion, Filters};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Error, Query, RequestVersion, Result, channel_body, image_error, join_error, ok_json};
use crate::events::parse_timestamp;
use crate::imagestore::{DeleteItem, DeleteOptions, Image, ImportOptions, LoadProgress, Reference};
use crate::state::AppState;

/// A malformed reference or digest answers as the image store's error would (same class, same
/// text), so `Reference::parse_normalized(..)?` works in every handler. It lives here, with the
/// image endpoints, rather than beside `From<ImageError>` in the router's shared module.
impl From<berth_image::ReferenceError> for Error {
    fn from(e: berth_image::ReferenceError) -> Self {
        Error(image_error(&e.into()))
    }
}

/// Runs a blocking closure on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(join_error)
}

/// Publishes an image event with Docker's attributes: the image's labels (so `events --filter
/// label=...` matches images) and `name`.
pub(super) fn image_event(
    state: &AppState,
    action: &str,
    actor: &str,
    labels: &BTreeMap<String, String>,
    name: &str,
) {
    let mut attributes = labels.clone();
    attributes.insert("name".to_string(), name.to_string());
    state.events.image_event(action, actor, attributes);
}

/// The labels of an image that may already be gone (events after a delete race nothing, but a
/// lookup failure must not stop the event).
fn labels_of(state: &AppState, id: &str) -> BTreeMap<String, String> {
    state
        .images
        .get(id)
        .map(|image| image.config.labels())
        .unwrap_or_default()
}

fn created_unix(image: &Image) -> i64 {
    image.created.map_or(0, |t| t.timestamp())
}

/// A `GET /images/json` row for an image, showing `tags` (all of them, or those a `reference`
/// filter kept).
pub(crate) fn summary(image: &Image, tags: &[String]) -> ImageSummary {
    ImageSummary {
        id: image.id.to_string(),
        parent_id: String::new(),
        repo_tags: tags.to_vec(),
        repo_digests: image.repo_digests.clone(),
        created: created_unix(image),
        size: image.size as i64,
        shared_size: -1,
        virtual_size: None,
        labels: image.config.labels(),
        containers: -1,
    }
}

const LIST_FILTERS: &[&str] = &["before", "dangling", "label", "reference", "since", "until"];

/// `GET /images/json`.
pub async fn list(
    State(state): State<AppState>,
    Extension(RequestVersion(version)): Extension<RequestVersion>,
    query: Query,
) -> Result<Response> {
    let filters = query.filters()?;
    filters.validate(LIST_FILTERS)?;
    let all = query.bool("all", false);
    let rows = blocking(move || list_images(&state, &filters, version, all)).await??;
    Ok(ok_json(&rows))
}

fn list_images(
    state: &AppState,
    filters: &Filters,
    version: ApiVersion,
    all: bool,
) -> Result<Vec<ImageSummary>> {
    let dangling = filters.get_bool("dangling")?;
    // A build's intermediate images (its cached steps) are listed with `all` only, as the
    // legacy builder's children images are.
    let intermediate = if all {
        Default::default()
    } else {
        state.builds.cached_images()
    };
    let store = &state.images;
    let created_of = |name: &str| -> Result<Option<DateTime<Utc>>> { Ok(store.get(name)?.created) };
    let before = filters
        .get("before")
        .iter()
        .map(|n| created_of(n))
        .collect::<Result<Vec<_>>>()?;
    let since = filters
        .get("since")
        .iter()
        .map(|n| created_of(n))
        .collect::<Result<Vec<_>>>()?;
    let now = Utc::now();
    let until = filters
        .get("until")
        .iter()
        .map(|v| parse_timestamp(v, now))
        .collect::<Result<Vec<_>, _>>()?;
    let patterns = filters.get("reference");

    let mut images = store.images();
    images.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| a.id.hex().cmp(b.id.hex()))
    });
    let mut rows = Vec::new();
    for image in &images {
        let is_dangling = image.repo_tags.is_empty() && image.repo_digests.is_empty();
        if dangling.is_some_and(|d| d != is_dangling) {
            continue;
        }
        if is_dangling && intermediate.contains(&image.id.to_string()) {
            continue;
        }
        if !filters.match_labels("label", &image.config.labels()) {
            continue;
        }
        let created = image.created;
        if before.iter().any(|b| created >= *b) || since.iter().any(|s| created <= *s) {
            continue;
        }
        if until.iter().any(|(s, _)| {
            image.created.is_some_and(|c| c.timestamp() >= *s) || image.created.is_none()
        }) {
            continue;
        }
        let tags: Vec<String> = if patterns.is_empty() {
            image.repo_tags.clone()
        } else {
            image
                .repo_tags
                .iter()
                .filter(|t| patterns.iter().any(|p| reference_matches(p, t)))
                .cloned()
                .collect()
        };
        if !patterns.is_empty() && tags.is_empty() {
            continue;
        }
        let mut row = summary(image, &tags);
        // API 1.51 counts the containers using each image; older versions say -1.
        row.containers = if version.at_least(1, 51) {
            state.containers.count_using(&image.id)
        } else {
            -1
        };
        if !version.at_least(1, 44) {
            row.virtual_size = Some(row.size);
        }
        if !version.at_least(1, 43) && row.repo_tags.is_empty() && row.repo_digests.is_empty() {
            row.repo_tags = vec!["<none>:<none>".into()];
            row.repo_digests = vec!["<none>@<none>".into()];
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Docker's `reference` filter: a `path.Match` glob against the familiar `name:tag`, or failing
/// that against the familiar name.
pub fn reference_matches(pattern: &str, familiar: &str) -> bool {
    if glob_match(pattern, familiar) {
        return true;
    }
    let name = familiar.split('@').next().unwrap_or(familiar);
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    glob_match(pattern, name)
}

/// Go's `path.Match`: `*` (no `/`), `?`, `[...]` classes with ranges and `^` negation, `\`
/// escapes. A malformed pattern matches nothing.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => {
            let rest = &p[1..];
            for i in 0..=t.len() {
                if glob_at(rest, &t[i..]) {
                    return true;
                }
                if i < t.len() && t[i] == '/' {
                    break;
                }
            }
            false
        }
        Some('?') => !t.is_empty() && t[0] != '/' && glob_at(&p[1..], &t[1..]),
        Some('[') => {
            let Some(&c) = t.first() else { return false };
            let mut i = 1;
            let negate = p.get(i) == Some(&'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let Some(&lo) = p.get(i) else { return false };
                if lo == ']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let lo = if lo == '\\' {
                    i += 1;
                    match p.get(i) {
                        Some(&e) => e,
                        None => return false,
                    }
                } else {
                    lo
                };
                i += 1;
                let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&h| h != ']') {
                    let h = p[i + 1];
                    i += 2;
                    h
                } else {
                    lo
                };
                if lo <= c && c <= hi {
                    matched = true;
                }
            }
            matched != negate && c != '/' && glob_at(&p[i..], &t[1..])
        }
        Some('\\') => match p.get(1) {
            Some(&e) => !t.is_empty() && t[0] == e && glob_at(&p[2..], &t[1..]),
            None => false,
        },
        Some(&c) => !t.is_empty() && t[0] == c && glob_at(&p[1..], &t[1..]),
    }
}

/// Rejects a name that is neither an id nor a valid reference, with Docker's 400, before the
/// store is asked (which would only say "No such image").
fn check_name(name: &str) -> Result<()> {
    let is_hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if name.strip_prefix("sha256:").is_some_and(is_hex) || (name.len() == 64 && is_hex(name)) {
        return Ok(());
    }
    Reference::parse_normalized(name)?;
    Ok(())
}

/// `GET /images/{name}/json|history|get`.
pub async fn get_dispatch(
    State(state): State<AppState>,
    Extension(RequestVersion(version)): Extension<RequestVersion>,
    Path(rest): Path<String>,
    query: Query,
) -> Result<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        return inspect(state, name.to_string(), version).await;
    }
    if let Some(name) = rest.strip_suffix("/history") {
        return history(state, name.to_string()).await;
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save(state, vec![name.to_string()]).await;
    }
    let _ = query;
    Err(Error(ApiError::not_found("page not found")))
}

/// `POST /images/{name}/tag|push` (push: [`super::push`]).
pub async fn post_dispatch(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    query: Query,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    if let Some(name) = rest.strip_suffix("/tag") {
        return tag(state, name.to_string(), query).await;
    }
    if let Some(name) = rest.strip_suffix("/push") {
        return super::push::push_image(state, name, &query, &headers).await;
    }
    Err(Error(ApiError::not_found("page not found")))
}

async fn inspect(state: AppState, name: String, version: ApiVersion) -> Result<Response> {
    check_name(&name)?;
    let inspect = blocking(move || -> Result<ImageInspect> {
        let image = state.images.get(&name)?;
        let dirs = state.images.layer_dirs(&image.id).unwrap_or_default();
        Ok(inspect_of(&image, &dirs))
    })
    .await??;
    Ok(ok_json(&inspect_for_version(inspect, version)))
}

/// Shapes an inspect body as the requested API version has it: `Container` and
/// `ContainerConfig` are gone from 1.45, a missing `Created` is omitted from 1.44, and
/// `VirtualSize` exists before 1.44.
fn inspect_for_version(mut inspect: ImageInspect, version: ApiVersion) -> serde_json::Value {
    if !version.at_least(1, 44) {
        inspect.virtual_size = Some(inspect.size);
    }
    let created_missing = inspect.created.is_empty();
    let mut value = serde_json::to_value(&inspect).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        if version.at_least(1, 45) {
            map.remove("Container");
            map.remove("ContainerConfig");
        }
        if version.at_least(1, 44) && created_missing {
            map.remove("Created");
        }
    }
    value
}

fn inspect_of(image: &Image, layer_dirs: &[std::path::PathBuf]) -> ImageInspect {
    let cfg = &image.config;
    let mut driver = BTreeMap::new();
    if !layer_dirs.is_empty() {
        // The store lists layers bottom first; overlay wants the top first.
        let lower: Vec<String> = layer_dirs
            .iter()
            .rev()
            .map(|d| d.display().to_string())
            .collect();
        driver.insert("LowerDir".to_string(), lower.join(":"));
    }
    let last_tag_time = if image.repo_tags.is_empty() {
        "0001-01-01T00:00:00Z".to_string()
    } else {
        image.loaded_at.to_rfc3339_opts(SecondsFormat::Nanos, true)
    };
    ImageInspect {
        id: image.id.to_string(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        parent: String::new(),
        comment: cfg.comment.clone().unwrap_or_default(),
        created: cfg.created.clone().unwrap_or_default(),
        container: String::new(),
        container_config: Default::default(),
        docker_version: cfg.docker_version.clone().unwrap_or_default(),
        author: cfg.author.clone().unwrap_or_default(),
        config: cfg.config.clone().unwrap_or_default(),
        architecture: cfg.architecture.clone().to_string(),
        variant: cfg.variant.clone(),
        os: cfg.os.clone().to_string(),
        os_version: None,
        size: image.size as i64,
        virtual_size: None,
        graph_driver: DriverData {
            name: "overlayfs".into(),
            data: driver,
        },
        root_fs: ImageRootFs {
            kind: "layers".into(),
            layers: cfg
                .rootfs
                .diff_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
        },
        metadata: ImageMetadata { last_tag_time },
    }
}

async fn history(state: AppState, name: String) -> Result<Response> {
    check_name(&name)?;
    let rows = blocking(move || -> Result<Vec<HistoryItem>> {
        let image = state.images.get(&name)?;
        Ok(history_of(&image))
    })
    .await??;
    Ok(ok_json(&rows))
}

/// History rows, newest first; only the top row names the image.
fn history_of(image: &Image) -> Vec<HistoryItem> {
    let mut layers = image.layers.iter();
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp())
    };
    let mut rows: Vec<HistoryItem> = if image.config.history.is_empty() {
        image
            .layers
            .iter()
            .map(|l| HistoryItem {
                id: "<missing>".into(),
                created: created_unix(image),
                size: l.size as i64,
                ..Default::default()
            })
            .collect()
    } else {
        image
            .config
            .history
            .iter()
            .map(|h| HistoryItem {
                id: "<missing>".into(),
                created: parse(&h.created),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size: if h.empty_layer {
                    0
                } else {
                    layers.next().map_or(0, |l| l.size as i64)
                },
                comment: h.comment.clone().unwrap_or_default(),
            })
            .collect()
    };
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = image.id.to_string();
        top.tags = image.repo_tags.clone();
    } else {
        rows.push(HistoryItem {
            id: image.id.to_string(),
            created: created_unix(image),
            tags: image.repo_tags.clone(),
            ..Default::default()
        });
    }
    rows
}

/// `POST /images/{name}/tag?repo=&tag=`.
async fn tag(state: AppState, name: String, query: Query) -> Result<Response> {
    let repo = query.get("repo").unwrap_or_default().to_string();
    let tag = query.get("tag").unwrap_or_default().to_string();
    if repo.is_empty() {
        return Err(Error(ApiError::invalid(
            "repository name must have at least one component",
        )));
    }
    let target = if tag.is_empty() {
        repo
    } else {
        format!("{repo}:{tag}")
    };
    let st = state.clone();
    let (id, reference) = blocking(move || -> Result<_> {
        // Validate the target first, so a bad reference is 400 even for an unknown source.
        Reference::parse_normalized(&target)?;
        check_name(&name)?;
        let image = st.images.get(&name)?;
        let reference = st.images.tag(&name, &target)?;
        Ok(((image.id, image.config.labels()), reference))
    })
    .await??;
    let (id, labels) = id;
    image_event(
        &state,
        "tag",
        &id.to_string(),
        &labels,
        &reference.familiar_string(),
    );
    Ok(StatusCode::CREATED.into_response())
}

/// `DELETE /images/{name}?force=&noprune=`.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Query,
) -> Result<Response> {
    let opts = DeleteOptions {
        force: query.bool("force", false),
        noprune: query.bool("noprune", false),
    };
    check_name(&name)?;
    let st = state.clone();
    let (image, items) = blocking(move || -> Result<_> {
        let image = st.images.get(&name)?;
        let containers = st.containers.clone();
        let in_use = move |d: &_| containers.image_use(d);
        let items = st.images.delete_with_usage(&name, opts, &in_use)?;
        Ok((image, items))
    })
    .await??;
    publish_deletions(
        &state,
        &image.id.to_string(),
        &image.config.labels(),
        &items,
    );
    Ok(ok_json(&delete_items(&items)))
}

fn delete_items(items: &[DeleteItem]) -> Vec<ImageDeleteItem> {
    items
        .iter()
        .map(|item| match item {
            DeleteItem::Untagged(r) => ImageDeleteItem {
                untagged: Some(r.clone()),
                deleted: None,
            },
            DeleteItem::Deleted(d) => ImageDeleteItem {
                untagged: None,
                deleted: Some(d.clone()),
            },
        })
        .collect()
}

/// `untag` events (actor: the image id, `name`: the reference removed) and a `delete` event
/// (actor and `name`: the image id).
fn publish_deletions(
    state: &AppState,
    image_id: &str,
    labels: &BTreeMap<String, String>,
    items: &[DeleteItem],
) {
    for item in items {
        match item {
            DeleteItem::Untagged(reference) => {
                image_event(state, "untag", image_id, labels, reference)
            }
            // Layers are reported as deleted too; events are only about the image.
            DeleteItem::Deleted(d) if d == image_id => image_event(state, "delete", d, labels, d),
            DeleteItem::Deleted(_) => {}
        }
    }
}

/// `POST /images/prune?filters=`.
pub async fn prune(State(state): State<AppState>, query: Query) -> Result<Response> {
    let filters = query.filters()?;
    filters.validate(&["dangling", "label", "label!", "until"])?;
    let all = filters.get_bool("dangling")? == Some(false);
    let now = Utc::now();
    let until = filters
        .get("until")
        .iter()
        .map(|v| parse_timestamp(v, now))
        .collect::<Result<Vec<_>, _>>()?;
    let st = state.clone();
    let (report, before) = blocking(move || -> Result<_> {
        // Who had which name before (and its labels), to describe the image in its events.
        let before: BTreeMap<String, (String, BTreeMap<String, String>)> = st
            .images
            .images()
            .into_iter()
            .flat_map(|image| {
                let id = image.id.to_string();
                let labels = image.config.labels();
                let mut names: Vec<_> = image
                    .repo_tags
                    .iter()
                    .chain(&image.repo_digests)
                    .map(|t| (t.clone(), (id.clone(), labels.clone())))
                    .collect();
                names.push((id.clone(), (id, labels)));
                names
            })
            .collect();
        // Dangling-only prunes keep the build cache's images (the legacy builder's have
        // children, which such a prune keeps too); `docker builder prune` removes them.
        let cached = if all {
            Default::default()
        } else {
            st.builds.cached_images()
        };
        let keep = |image: &Image| {
            if cached.contains(&image.id.to_string()) {
                return false;
            }
            let labels = image.config.labels();
            let negated = filters.get("label!");
            filters.match_labels("label", &labels)
                && (negated.is_empty()
                    || !negated.iter().any(|w| match w.split_once('=') {
                        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                        None => labels.contains_key(*w),
                    }))
                && until
                    .iter()
                    .all(|(s, _)| image.created.is_some_and(|c| c.timestamp() < *s))
        };
        let containers = st.containers.clone();
        let in_use = move |d: &_| containers.using_image(d);
        Ok((st.images.prune(all, &keep, &in_use)?, before))
    })
    .await??;
    // Layer chain ids are reported as deleted too; events are only about images.
    for item in &report.deleted {
        match item {
            DeleteItem::Untagged(r) => {
                if let Some((id, labels)) = before.get(r) {
                    image_event(&state, "untag", id, labels, r);
                }
            }
            DeleteItem::Deleted(d) => {
                if let Some((_, labels)) = before.get(d) {
                    image_event(&state, "delete", d, labels, d);
                }
            }
        }
    }
    let reclaimed = BTreeMap::from([("reclaimed".to_string(), report.space_reclaimed.to_string())]);
    state.events.image_event("prune", "", reclaimed);
    let deleted = delete_items(&report.deleted);
    Ok(ok_json(&ImagePruneResponse {
        images_deleted: if deleted.is_empty() {
            None
        } else {
            Some(deleted)
        },
        space_reclaimed: report.space_reclaimed as i64,
    }))
}

/// Turns a request body into a blocking reader for the store.
fn body_reader(body: Body) -> impl Read + Send + 'static {
    let stream = body
        .into_data_stream()
        .map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e));
    SyncIoBridge::new(StreamReader::new(stream))
}

/// Reads and discards what is left of a request body after the store gave up on it. Closing a
/// connection with unread request bytes makes the kernel reset it, and the client would then
/// see "connection reset" instead of the error message we are about to stream (Docker reads
/// the whole archive too). A client that went away ends the drain at once.
fn drain(reader: &mut impl Read) {
    let _ = io::copy(reader, &mut io::sink());
}

/// Sends JSON messages from a blocking task into a streaming response.
#[derive(Clone)]
struct MessageSink(mpsc::Sender<Bytes>);

impl MessageSink {
    fn send(&self, message: &JsonMessage) {
        let mut line = serde_json::to_vec(message).unwrap_or_default();
        line.push(b'\n');
        // A client that went away is noticed by the body reader; nothing to do here.
        let _ = self.0.blocking_send(Bytes::from(line));
    }
}

pub(super) fn json_stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        channel_body(rx),
    )
        .into_response()
}

/// Docker's text progress bar: `[=====>        ]  1.2MB/3.4MB`.
pub(super) fn progress_bar(current: u64, total: Option<u64>) -> String {
    let human = |n: u64| {
        let units = ["B", "kB", "MB", "GB", "TB"];
        let mut value = n as f64;
        let mut unit = 0;
        while value >= 1000.0 && unit < units.len() - 1 {
            value /= 1000.0;
            unit += 1;
        }
        if unit == 0 {
            format!("{n}B")
        } else {
            format!("{value:.3}{}", units[unit])
                .replace(".000", "")
                .to_string()
        }
    };
    match total {
        Some(total) if total > 0 => {
            let width = 50;
            let filled = ((current.min(total) as f64 / total as f64) * width as f64) as usize;
            let bar = if filled >= width {
                "=".repeat(width)
            } else {
                format!("{}>{}", "=".repeat(filled), " ".repeat(width - filled - 1))
            };
            format!("[{bar}]  {}/{}", human(current), human(total))
        }
        _ => human(current),
    }
}

/// `POST /images/load?quiet=`.
pub async fn load(State(state): State<AppState>, query: Query, body: Body) -> Result<Response> {
    let quiet = query.bool("quiet", false);
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let sink = MessageSink(tx);
    let mut reader = body_reader(body);
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut last = Instant::now() - Duration::from_secs(1);
        // Each layer's size as last reported, so its final line can show a full bar even when
        // the whole layer went by between two throttled updates (as Docker's does).
        let mut sizes: HashMap<String, u64> = HashMap::new();
        let progress_sink = sink.clone();
        let mut progress = |p: LoadProgress| {
            if quiet {
                return;
            }
            let (id, current, total) = match p {
                LoadProgress::Layer {
                    digest,
                    current,
                    total,
                } => {
                    let id = digest.short().to_string();
                    sizes.insert(id.clone(), total.unwrap_or(current));
                    if last.elapsed() < Duration::from_millis(100) {
                        return;
                    }
                    (id, current, total)
                }
                LoadProgress::LayerDone { digest } => {
                    let id = digest.short().to_string();
                    match sizes.get(&id) {
                        Some(&size) => (id, size, Some(size)),
                        // Already stored: nothing was read, so there is no bar to draw.
                        None => (id, 0, None),
                    }
                }
            };
            last = Instant::now();
            let message = JsonMessage {
                status: Some("Loading layer".into()),
                id: Some(id),
                progress_detail: Some(if total.is_some() {
                    ProgressDetail {
                        current: Some(current as i64),
                        total: total.map(|t| t as i64),
                    }
                } else {
                    ProgressDetail::default()
                }),
                progress: total.map(|_| progress_bar(current, total)),
                ..Default::default()
            };
            progress_sink.send(&message);
        };
        match st.images.load(&mut reader, &mut progress) {
            Ok(loaded) => {
                for image in loaded {
                    if image.tags.is_empty() {
                        let id = image.id.to_string();
                        sink.send(&JsonMessage::stream(format!("Loaded image ID: {id}\n")));
                        image_event(&st, "load", &id, &labels_of(&st, &id), &id);
                    }
                    for tag in &image.tags {
                        sink.send(&JsonMessage::stream(format!("Loaded image: {tag}\n")));
                        image_event(&st, "load", tag, &labels_of(&st, tag), tag);
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "image load failed");
                drain(&mut reader);
                sink.send(&JsonMessage::error(image_error(&e).message));
            }
        }
    });
    // The answer starts with its first message, not before: with `quiet` that is once the whole
    // archive has been read, as with dockerd. Clients rely on it: skopeo's `docker-daemon:`
    // transport stops writing the archive as soon as the answer begins.
    let mut rx = rx;
    let first = rx.recv().await;
    let rest = channel_body(rx).into_data_stream();
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::iter(first.map(Ok::<_, axum::Error>)),
        rest,
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A blocking writer whose bytes become chunks of a streaming response body.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// `GET /images/get?names=a&names=b`.
pub async fn save_many(State(state): State<AppState>, query: Query) -> Result<Response> {
    let names: Vec<String> = query
        .all("names")
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(Error(ApiError::invalid("no images given: use names=IMAGE")));
    }
    save(state, names).await
}

async fn save(state: AppState, names: Vec<String>) -> Result<Response> {
    // Every name must resolve before the first byte is sent.
    for name in &names {
        check_name(name)?;
    }
    let st = state.clone();
    let checked = names.clone();
    let ids = blocking(move || -> Result<Vec<String>> {
        checked
            .iter()
            .map(|n| Ok(st.images.get(n)?.id.to_string()))
            .collect()
    })
    .await??;
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            tx,
            buffer: Vec::with_capacity(CHUNK),
        };
        let saved = st
            .images
            .save(&names, &mut writer)
            .map_err(|e| e.to_string())
            .and_then(|()| writer.flush().map_err(|e| e.to_string()));
        match saved {
            Ok(()) => {
                for (name, id) in names.iter().zip(&ids) {
                    image_event(&st, "save", id, &labels_of(&st, id), name);
                }
            }
            // The status line is gone; dropping the channel ends the body early, which the
            // client sees as a truncated archive.
            Err(e) => tracing::warn!(error = %e, "image save failed"),
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-tar")],
        channel_body(rx),
    )
        .into_response())
}

/// `POST /images/create` without `fromImage`: import from the body (`fromSrc=-`). Pulls are
/// `distribution::create`'s.
pub async fn create(State(state): State<AppState>, query: Query, body: Body) -> Result<Response> {
    let source = query
        .non_empty("fromSrc")
        .ok_or_else(|| ApiError::invalid("either fromImage or fromSrc must be given"))?;
    if source != "-" {
        return Err(Error(ApiError::not_implemented(format!(
            "importing from a URL is not supported: {source}; pipe the archive to the request body with fromSrc=-"
        ))));
    }
    let reference = match query.non_empty("repo") {
        Some(repo) => {
            let text = match query.non_empty("tag") {
                Some(tag) => format!("{repo}:{tag}"),
                None => repo.to_string(),
            };
            let parsed = Reference::parse_normalized(&text)?.with_default_tag();
            Some(parsed.familiar_string())
        }
        None => None,
    };
    let (os, architecture) = match query.non_empty("platform") {
        Some(p) => {
            let mut parts = p.split('/');
            let os = parts.next().map(str::to_string);
            let arch = parts.next().map(str::to_string);
            if os.as_deref() != Some("linux") {
                return Err(Error(ApiError::invalid(format!(
                    "invalid platform {p:?}: only linux images are supported"
                ))));
            }
            (os, arch)
        }
        None => (None, None),
    };
    let opts = ImportOptions {
        reference: reference.clone(),
        changes: query
            .all("changes")
            .into_iter()
            .map(str::to_string)
            .collect(),
        message: query.non_empty("message").map(str::to_string),
        os,
        architecture,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let sink = MessageSink(tx);
    let mut reader = body_reader(body);
    let st = state.clone();
    tokio::task::spawn_blocking(move || match st.images.import(&mut reader, opts) {
        Ok(image) => {
            let id = image.id.to_string();
            sink.send(&JsonMessage::status(id.clone()));
            let name = reference.unwrap_or_else(|| id.clone());
            image_event(&st, "import", &id, &image.config.labels(), &name);
        }
        Err(e) => {
            tracing::info!(error = %e, "image import failed");
            drain(&mut reader);
            sink.send(&JsonMessage::error(image_error(&e).message));
        }
    });
    Ok(json_stream_response(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_path_match() {
        assert!(glob_match("busybox", "busybox"));
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(glob_match("[a-c]usybox", "busybox"));
        assert!(!glob_match("[^a-c]usybox", "busybox"));
        assert!(!glob_match("*", "library/busybox"));
        assert!(glob_match("*/*", "library/busybox"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("[", "a"));
    }

    #[test]
    fn reference_filter_matches_name_or_name_tag() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busybox:latest", "busybox:latest"));
        assert!(reference_matches("busybox:*", "busybox:1.36"));
        assert!(!reference_matches("busybox:1*", "busybox:latest"));
        assert!(reference_matches(
            "localhost:5000/a/*",
            "localhost:5000/a/b:tag"
        ));
        assert!(!reference_matches("alpine", "busybox:latest"));
    }

    #[test]
    fn progress_bars() {
        assert_eq!(progress_bar(0, None), "0B");
        assert!(progress_bar(500, Some(1000)).starts_with("[=========================>"));
        assert!(progress_bar(1000, Some(1000)).ends_with("1kB/1kB"));
    }
}
