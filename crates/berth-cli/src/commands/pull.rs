//! `berth pull` / `berth image pull`, as docker's: the daemon's progress stream (bars on a
//! terminal, plain lines when piped), then the full reference; `-q` prints only the latter.

use std::io::IsTerminal;

use anyhow::Result;
use clap::Args;
use futures_util::StreamExt;

use super::Env;
use crate::format::progress::ProgressRenderer;
use crate::output;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string", env = "DOCKER_DEFAULT_PLATFORM")]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Skip image verification (accepted for compatibility; there is no content trust)
    #[arg(long)]
    pub disable_content_trust: bool,
    /// Image reference (NAME[:TAG|@DIGEST])
    pub image: String,
}

/// Docker's normalisation for display: `busybox` → `docker.io/library/busybox:latest`.
pub fn full_reference(image: &str) -> String {
    let (first, rest) = match image.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (image, None),
    };
    let has_domain =
        rest.is_some() && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut name = match (has_domain, rest) {
        (true, _) => image.to_string(),
        (false, Some(_)) => format!("docker.io/{image}"),
        (false, None) => format!("docker.io/library/{image}"),
    };
    let last = name.rsplit('/').next().unwrap_or_default();
    if !name.contains('@') && !last.contains(':') {
        name.push_str(":latest");
    }
    name
}

/// `fromImage` and `tag` for the API, as the docker CLI splits them (a digest goes in `tag`).
fn api_parts(image: &str) -> (String, String) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (
            image[..slash + i].to_string(),
            image[slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// Whether `image` names neither a tag nor a digest.
fn is_name_only(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or_default();
    !image.contains('@') && !last.contains(':')
}

pub async fn pull(env: &Env, args: PullArgs) -> Result<()> {
    let client = env.client()?;
    let (repo, tag) = if args.all_tags {
        if !is_name_only(&args.image) {
            return Err(output::StatusError::error(
                1,
                "tag can't be used with --all-tags/-a",
            ));
        }
        // No tag: the daemon pulls every tag.
        (args.image.clone(), String::new())
    } else {
        if is_name_only(&args.image) && !args.quiet {
            output::out("Using default tag: latest\n");
        }
        api_parts(&args.image)
    };
    let auth = crate::credentials::registry_auth_for(&env.config, &args.image);
    let stream = client
        .image_pull(&repo, &tag, args.platform.as_deref(), auth.as_deref())
        .await?;
    let mut stream = std::pin::pin!(stream);
    let mut renderer = ProgressRenderer::new(std::io::stdout().is_terminal());
    while let Some(message) = stream.next().await {
        let text = renderer.render(&message?)?;
        if !args.quiet && !text.is_empty() {
            output::out(&text);
        }
    }
    let shown = if args.all_tags {
        // The repository, fully qualified, as docker prints it.
        full_reference(&args.image)
            .trim_end_matches(":latest")
            .to_string()
    } else {
        full_reference(&args.image)
    };
    output::out(&format!("{shown}\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_as_docker_prints_them() {
        assert_eq!(
            full_reference("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full_reference("a/b:1"), "docker.io/a/b:1");
        assert_eq!(
            full_reference("127.0.0.1:5000/x"),
            "127.0.0.1:5000/x:latest"
        );
        assert_eq!(
            full_reference("localhost/x@sha256:ab"),
            "localhost/x@sha256:ab"
        );
        assert_eq!(
            api_parts("127.0.0.1:5000/x:2"),
            ("127.0.0.1:5000/x".into(), "2".into())
        );
        assert_eq!(
            api_parts("127.0.0.1:5000/x"),
            ("127.0.0.1:5000/x".into(), "latest".into())
        );
        assert_eq!(api_parts("x@sha256:ab"), ("x".into(), "sha256:ab".into()));
        assert!(is_name_only("127.0.0.1:5000/x"));
        assert!(!is_name_only("127.0.0.1:5000/x:1"));
        assert!(!is_name_only("x@sha256:ab"));
    }
}
