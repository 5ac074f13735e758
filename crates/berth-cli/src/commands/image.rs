//! Image commands: `images`/`image ls`, `inspect`, `history`, `tag`, `rmi`, `load`, `save`,
//! `import`, `image prune`.

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, Result, bail};
use berth_api::models::{HistoryItem, ImageSummary, JsonMessage};
use berth_client::{ImageImportOptions, ImageListOptions, ImageRemoveOptions, UploadStream};
use clap::{Args, Subcommand};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use super::{Env, confirm, each_name, fail_if, inspect_each, parse_filters, prune_report};
use crate::format::Format;
use crate::format::progress::ProgressRenderer;
use crate::format::units::{
    ellipsis, human_duration, human_size, human_size_with_precision, truncate_id,
};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RemoveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Download an image from a registry
    Pull(super::pull::PullArgs),
    /// Upload an image to a registry
    Push(super::push::PushArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Build an image from a Dockerfile
    Build(Box<super::build::BuildArgs>),
}

pub async fn run(env: &Env, command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Ls(args) => list(env, args).await,
        ImageCommand::Build(args) => super::build::build(env, *args).await,
        ImageCommand::Inspect(args) => inspect(env, args).await,
        ImageCommand::History(args) => history(env, args).await,
        ImageCommand::Tag(args) => tag(env, args).await,
        ImageCommand::Rm(args) => remove(env, args).await,
        ImageCommand::Load(args) => load(env, args).await,
        ImageCommand::Pull(args) => super::pull::pull(env, args).await,
        ImageCommand::Push(args) => super::push::push(env, args).await,
        ImageCommand::Save(args) => save(env, args).await,
        ImageCommand::Import(args) => import(env, args).await,
        ImageCommand::Prune(args) => prune(env, args).await,
    }
}

// ---------------------------------------------------------------------------------------------
// images

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
    ("Containers", "CONTAINERS"),
];

/// `docker.io/library/busybox` → `busybox`, as docker's `FamiliarName`.
pub fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

/// Splits `repo:tag` at the tag's colon (not a registry port's).
pub fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], Some(&reference[slash + i + 1..])),
        None => (reference, None),
    }
}

/// Go's `time.Time.String()` for a Unix time in the local zone: `2024-09-26 21:31:42 +0000 UTC`.
pub fn go_time_string(unix: i64) -> String {
    use chrono::{Local, TimeZone};
    match Local.timestamp_opt(unix, 0).single() {
        Some(t) => {
            let offset = t.format("%z").to_string();
            let zone = if offset == "+0000" {
                "UTC".to_string()
            } else {
                offset.clone()
            };
            format!("{} {offset} {zone}", t.format("%Y-%m-%d %H:%M:%S"))
        }
        None => unix.to_string(),
    }
}

/// RFC 3339 in the local zone (`2024-09-26T21:31:42Z`), Go's `time.RFC3339`.
pub fn go_rfc3339(unix: i64) -> String {
    use chrono::{Local, SecondsFormat, TimeZone};
    match Local.timestamp_opt(unix, 0).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => unix.to_string(),
    }
}

/// The rows docker's image formatter shows: one per repository:tag (and per digest with
/// `--digests`), `<none>` for dangling images.
pub fn image_rows(images: &[ImageSummary], digests: bool, trunc: bool, now: i64) -> Vec<Value> {
    let mut rows = Vec::new();
    for image in images {
        let row = |repo: &str, tag: &str, digest: &str| {
            let na =
                |v: i64, f: &dyn Fn(i64) -> String| if v == -1 { "N/A".to_string() } else { f(v) };
            json!({
                "ID": if trunc { truncate_id(&image.id) } else { image.id.clone() },
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": format!("{} ago", human_duration(now - image.created)),
                "CreatedAt": go_time_string(image.created),
                "Size": human_size_with_precision(image.size, 3),
                "VirtualSize": human_size(image.size),
                "SharedSize": na(image.shared_size, &human_size),
                "UniqueSize": na(image.shared_size, &|s| human_size(image.size - s)),
                "Containers": na(image.containers, &|c| c.to_string()),
            })
        };
        let dangling = (image.repo_tags.is_empty() && image.repo_digests.is_empty())
            || (image.repo_tags == ["<none>:<none>"] && image.repo_digests == ["<none>@<none>"]);
        if dangling {
            rows.push(row("<none>", "<none>", "<none>"));
            continue;
        }
        let mut tags: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for reference in &image.repo_tags {
            if let (repo, Some(tag)) = split_tag(reference) {
                tags.entry(familiar(repo)).or_default().push(tag);
            }
        }
        let mut repo_digests: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for reference in &image.repo_digests {
            if let Some((repo, digest)) = reference.split_once('@') {
                repo_digests.entry(familiar(repo)).or_default().push(digest);
            }
        }
        for (repo, repo_tags) in &tags {
            let ds = repo_digests.remove(repo).unwrap_or_default();
            for tag in repo_tags {
                if !digests || ds.is_empty() {
                    rows.push(row(repo, tag, "<none>"));
                } else {
                    for d in &ds {
                        rows.push(row(repo, tag, d));
                    }
                }
            }
        }
        for (repo, ds) in &repo_digests {
            if digests {
                for d in ds {
                    rows.push(row(repo, "<none>", d));
                }
            } else {
                rows.push(row(repo, "<none>", "<none>"));
            }
        }
    }
    rows
}

pub async fn list(env: &Env, args: ListArgs) -> Result<()> {
    let client = env.client()?;
    let mut filters = parse_filters(&args.filter)?;
    if let Some(reference) = &args.reference {
        filters.add("reference", reference.clone());
    }
    let images = client
        .images_list(&ImageListOptions {
            all: args.all,
            digests: args.digests,
            filters,
        })
        .await?;
    let default = if args.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let format = Format::for_list(args.quiet, "ID", args.format.as_deref(), default);
    let rows = image_rows(
        &images,
        args.digests,
        !args.no_trunc,
        chrono::Utc::now().timestamp(),
    );
    output::out(&format.render(&rows, IMAGE_HEADERS)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// inspect

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

/// `image inspect`: a JSON array indented like docker's, or one template rendering per image.
/// (The top-level `inspect`, which looks at containers first, is `container::inspect`.)
pub async fn inspect(env: &Env, args: InspectArgs) -> Result<()> {
    let client = env.client()?;
    inspect_each(&args.names, args.format.as_deref(), async |name| {
        client.image_inspect_bytes(name).await
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// history

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, value_name = "bool", default_value = "true", num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Show history for the given platform
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

pub fn history_rows(items: &[HistoryItem], human: bool, trunc: bool, now: i64) -> Vec<Value> {
    items
        .iter()
        .map(|h| {
            let created_by = h.created_by.replace('\t', " ");
            json!({
                "ID": if trunc && h.id != "<missing>" { truncate_id(&h.id) } else { h.id.clone() },
                "CreatedSince": if human {
                    format!("{} ago", human_duration(now - h.created))
                } else {
                    go_rfc3339(h.created)
                },
                "CreatedAt": go_rfc3339(h.created),
                "CreatedBy": if trunc { ellipsis(&created_by, 45) } else { created_by },
                "Size": if human { human_size_with_precision(h.size, 3) } else { h.size.to_string() },
                "Comment": h.comment,
            })
        })
        .collect()
}

pub async fn history(env: &Env, args: HistoryArgs) -> Result<()> {
    let client = env.client()?;
    let items = client.image_history(&args.image).await?;
    let format = Format::for_list(
        args.quiet,
        "ID",
        args.format.as_deref(),
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
    );
    let rows = history_rows(
        &items,
        args.human,
        !args.no_trunc,
        chrono::Utc::now().timestamp(),
    );
    let mut headers = HISTORY_HEADERS.to_vec();
    if !args.human {
        // Without -H the CREATED column shows absolute times, and docker titles it so.
        headers[1] = ("CreatedSince", "CREATED AT");
    }
    output::out(&format.render(&rows, &headers)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tag, rmi

#[derive(Debug, Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

pub async fn tag(env: &Env, args: TagArgs) -> Result<()> {
    if args.target.contains('@') {
        bail!("refusing to create a tag with a digest reference");
    }
    let (repo, tag) = split_tag(&args.target);
    if repo.is_empty() || repo.chars().any(|c| c.is_ascii_uppercase()) {
        bail!(
            "invalid reference format{}",
            if repo.chars().any(|c| c.is_ascii_uppercase()) {
                ": repository name (library/".to_string() + repo + ") must be lowercase"
            } else {
                String::new()
            }
        );
    }
    let client = env.client()?;
    client
        .image_tag(&args.source, repo, tag.unwrap_or("latest"))
        .await?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    pub no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub async fn remove(env: &Env, args: RemoveArgs) -> Result<()> {
    let client = env.client()?;
    let options = ImageRemoveOptions {
        force: args.force,
        no_prune: args.no_prune,
    };
    let (_, errors) = each_name(&args.images, async |name| {
        let items = client.image_remove(name, options).await?;
        let mut text = String::new();
        for item in items {
            if let Some(u) = item.untagged {
                text.push_str(&format!("Untagged: {u}\n"));
            }
            if let Some(d) = item.deleted {
                text.push_str(&format!("Deleted: {d}\n"));
            }
        }
        output::out(&text);
        Ok(())
    })
    .await?;
    fail_if(errors)
}

// ---------------------------------------------------------------------------------------------
// load, save, import

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long, value_name = "string")]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
    /// Load only the given platform(s)
    #[arg(long, value_name = "stringSlice")]
    pub platform: Vec<String>,
}

/// A file or stdin as a request body stream.
async fn upload(path: Option<&str>) -> Result<UploadStream> {
    match path.filter(|p| *p != "-") {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("open {path}"))?;
            Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                file,
                256 * 1024,
            )))
        }
        None => Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            tokio::io::stdin(),
            256 * 1024,
        ))),
    }
}

/// Prints a progress stream as docker does; an in-band error fails the command.
async fn display_stream(
    stream: impl Stream<Item = berth_client::Result<JsonMessage>>,
    terminal: bool,
) -> Result<()> {
    let mut renderer = ProgressRenderer::new(terminal);
    let mut stream = std::pin::pin!(stream);
    while let Some(message) = stream.next().await {
        let text = renderer.render(&message?)?;
        if !text.is_empty() {
            output::out(&text);
        }
    }
    Ok(())
}

pub async fn load(env: &Env, args: LoadArgs) -> Result<()> {
    if args.input.is_none() && std::io::stdin().is_terminal() {
        bail!("requested load from stdin, but stdin is empty");
    }
    let client = env.client()?;
    let body = upload(args.input.as_deref()).await?;
    let terminal = std::io::stdout().is_terminal();
    let stream = client.image_load(body, args.quiet || !terminal).await?;
    display_stream(stream, terminal).await
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "string")]
    pub output: Option<String>,
    /// Save only the given platform(s)
    #[arg(long, value_name = "stringSlice")]
    pub platform: Vec<String>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub async fn save(env: &Env, args: SaveArgs) -> Result<()> {
    let to_file = args
        .output
        .as_deref()
        .filter(|o| !o.is_empty() && *o != "-");
    if to_file.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let client = env.client()?;
    let mut stream = std::pin::pin!(client.image_save(&args.images).await?);
    let show_progress = std::io::stderr().is_terminal();
    let mut written: i64 = 0;
    match to_file {
        Some(path) => {
            // Write beside the target and rename, so a failed save leaves no partial file.
            let path = std::path::Path::new(path);
            let tmp = path.with_file_name(format!(
                ".{}.berth-save-tmp",
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("image.tar")
            ));
            let result: Result<()> = async {
                let mut file = std::fs::File::create(&tmp)
                    .with_context(|| format!("failed to save image: {}", tmp.display()))?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    file.write_all(&chunk)?;
                    written += chunk.len() as i64;
                    if show_progress {
                        output::err(&format!("\r\x1b[2KWritten {}", human_size(written)));
                    }
                }
                file.sync_all()?;
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("failed to save image: {}", path.display()))?;
                Ok(())
            }
            .await;
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                output::write_or_exit(&mut stdout, &chunk);
                written += chunk.len() as i64;
                if show_progress {
                    output::err(&format!("\r\x1b[2KWritten {}", human_size(written)));
                }
            }
        }
    }
    if show_progress {
        output::err("\n");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long, value_name = "list")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long, value_name = "string", default_value = "")]
    pub message: String,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string", default_value = "")]
    pub platform: String,
    #[arg(value_name = "file|URL|-")]
    pub source: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

pub async fn import(env: &Env, args: ImportArgs) -> Result<()> {
    if args.source.starts_with("http://") || args.source.starts_with("https://") {
        bail!("importing from a URL is not supported yet: download the file and import it");
    }
    let (repo, tag) = match args.reference.as_deref() {
        Some(reference) => {
            let (repo, tag) = split_tag(reference);
            (repo.to_string(), tag.unwrap_or("").to_string())
        }
        None => (String::new(), String::new()),
    };
    let client = env.client()?;
    let body = upload(Some(&args.source)).await?;
    let options = ImageImportOptions {
        repo,
        tag,
        changes: args.change.clone(),
        message: args.message.clone(),
        platform: args.platform.clone(),
    };
    let stream = client.image_import(body, &options).await?;
    display_stream(stream, std::io::stdout().is_terminal()).await
}

// ---------------------------------------------------------------------------------------------
// prune

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub async fn prune(env: &Env, args: PruneArgs) -> Result<()> {
    let mut filters = parse_filters(&args.filter)?;
    filters.add("dangling", if args.all { "false" } else { "true" });
    let client = env.client()?;
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        if !confirm(warning) {
            return Ok(());
        }
    }
    let report = client.images_prune(&filters).await?;
    let lines: Vec<String> = report
        .images_deleted
        .unwrap_or_default()
        .into_iter()
        .flat_map(|item| {
            let untagged = item.untagged.map(|u| format!("untagged: {u}"));
            untagged
                .into_iter()
                .chain(item.deleted.map(|d| format!("deleted: {d}")))
        })
        .collect();
    output::out(&prune_report(
        "Deleted Images:",
        &lines,
        report.space_reclaimed,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn summary(id: &str, tags: &[&str], digests: &[&str]) -> ImageSummary {
        ImageSummary {
            id: id.to_string(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            created: 1000,
            size: 4261376,
            shared_size: -1,
            containers: -1,
            ..Default::default()
        }
    }

    #[test]
    fn rows_per_tag_and_dangling() {
        let images = vec![
            summary(
                "sha256:0123456789abcdef0123",
                &["busybox:latest", "busybox:1.36", "localhost:5000/x:y"],
                &["busybox@sha256:dd"],
            ),
            summary("sha256:fedcba9876543210", &[], &[]),
        ];
        let rows = image_rows(&images, false, true, 1000 + 7200);
        let pairs: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["Repository"].as_str().unwrap().into(),
                    r["Tag"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("busybox".into(), "latest".into()),
                ("busybox".into(), "1.36".into()),
                ("localhost:5000/x".into(), "y".into()),
                ("<none>".into(), "<none>".into()),
            ]
        );
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "4.26MB");
        assert_eq!(rows[0]["CreatedSince"], "2 hours ago");
        assert_eq!(rows[0]["SharedSize"], "N/A");
        assert_eq!(rows[0]["Digest"], "<none>");
        let with_digests = image_rows(&images, true, false, 0);
        assert_eq!(with_digests[0]["Digest"], "sha256:dd");
        assert_eq!(with_digests[0]["ID"], "sha256:0123456789abcdef0123");
    }

    #[test]
    fn default_images_table() {
        let images = vec![summary("sha256:0123456789abcdef", &["busybox:latest"], &[])];
        let rows = image_rows(&images, false, true, 1000 + 3 * 7 * 86400);
        let format = Format::parse(
            None,
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
        );
        assert_eq!(
            format.render(&rows, IMAGE_HEADERS).unwrap(),
            "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n\
             busybox      latest    0123456789ab   3 weeks ago   4.26MB\n"
        );
        let json = Format::parse(Some("json"), "")
            .render(&rows, IMAGE_HEADERS)
            .unwrap();
        assert!(
            json.starts_with(r#"{"Containers":"N/A","CreatedAt":"#),
            "{json}"
        );
        assert!(json.contains(r#""Digest":"\u003cnone\u003e""#));
    }

    #[test]
    fn tags_split_at_the_right_colon() {
        assert_eq!(split_tag("busybox:latest"), ("busybox", Some("latest")));
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", None)
        );
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", Some("v1"))
        );
        assert_eq!(familiar("docker.io/library/busybox"), "busybox");
        assert_eq!(familiar("docker.io/me/app"), "me/app");
    }

    #[test]
    fn history_rows_follow_docker() {
        let items = vec![HistoryItem {
            id: "<missing>".into(),
            created: 0,
            created_by: "/bin/sh -c #(nop) ADD file:abcdef0123456789abcdef in / ".into(),
            size: 4261376,
            ..Default::default()
        }];
        let rows = history_rows(&items, true, true, 3600 * 5);
        assert_eq!(rows[0]["ID"], "<missing>");
        assert_eq!(rows[0]["CreatedSince"], "5 hours ago");
        assert_eq!(
            rows[0]["CreatedBy"],
            "/bin/sh -c #(nop) ADD file:abcdef0123456789a…"
        );
        assert_eq!(rows[0]["CreatedBy"].as_str().unwrap().chars().count(), 45);
        assert_eq!(rows[0]["Size"], "4.26MB");
        let raw = history_rows(&items, false, false, 0);
        assert_eq!(raw[0]["Size"], "4261376");
    }

    #[test]
    fn parses_image_commands() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let cli = parse(&[
            "berth",
            "images",
            "-a",
            "-q",
            "--digests",
            "--no-trunc",
            "-f",
            "dangling=true",
            "--format",
            "{{.ID}}",
            "busybox",
        ])
        .unwrap();
        let Some(Command::Images(args)) = cli.command else {
            panic!()
        };
        assert!(args.all && args.quiet && args.digests && args.no_trunc);
        assert_eq!(args.filter, vec!["dangling=true"]);
        assert_eq!(args.reference.as_deref(), Some("busybox"));
        assert!(parse(&["berth", "image", "ls"]).is_ok());
        assert!(parse(&["berth", "image", "list", "--filter", "a=b"]).is_ok());
        assert!(parse(&["berth", "image", "inspect", "-f", "{{.Id}}", "a", "b"]).is_ok());
        assert!(parse(&["berth", "inspect", "--type", "image", "a"]).is_ok());
        assert!(parse(&["berth", "inspect"]).is_err());
        let cli = parse(&["berth", "history", "-H=false", "--no-trunc", "x"]).unwrap();
        let Some(Command::History(h)) = cli.command else {
            panic!()
        };
        assert!(!h.human && h.no_trunc);
        let cli = parse(&["berth", "history", "x"]).unwrap();
        let Some(Command::History(h)) = cli.command else {
            panic!()
        };
        assert!(h.human);
        assert!(parse(&["berth", "tag", "a", "b:c"]).is_ok());
        assert!(parse(&["berth", "tag", "a"]).is_err());
        let cli = parse(&["berth", "rmi", "-f", "--no-prune", "a", "b"]).unwrap();
        let Some(Command::Rmi(r)) = cli.command else {
            panic!()
        };
        assert!(r.force && r.no_prune && r.images.len() == 2);
        assert!(parse(&["berth", "image", "rm", "a"]).is_ok());
        assert!(parse(&["berth", "image", "remove", "a"]).is_ok());
        assert!(parse(&["berth", "load", "-i", "x.tar", "-q"]).is_ok());
        assert!(parse(&["berth", "save", "-o", "x.tar", "a", "b"]).is_ok());
        assert!(parse(&["berth", "save"]).is_err());
        let cli = parse(&[
            "berth",
            "import",
            "-c",
            "CMD [\"sh\"]",
            "--change",
            "ENV A=b",
            "-m",
            "msg",
            "x.tar",
            "repo:tag",
        ])
        .unwrap();
        let Some(Command::Import(i)) = cli.command else {
            panic!()
        };
        assert_eq!(i.change.len(), 2);
        assert_eq!(i.reference.as_deref(), Some("repo:tag"));
        assert!(
            parse(&[
                "berth", "image", "prune", "-a", "-f", "--filter", "until=1h"
            ])
            .is_ok()
        );
    }
}
