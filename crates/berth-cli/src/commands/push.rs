//! `berth push` / `berth image push`, as docker's: the daemon's progress stream (bars on a
//! terminal, plain lines when piped); `-q` prints only the reference pushed. Without a tag,
//! docker pushes `latest` (`-a` pushes every tag of the repository).

use std::io::IsTerminal;

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;

use super::Env;
use crate::format::progress::ProgressRenderer;
use crate::output;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short, long)]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Skip image signing (accepted for compatibility; there is no content trust)
    #[arg(long)]
    pub disable_content_trust: bool,
    /// Image reference (NAME[:TAG])
    pub image: String,
}

/// `name` and `tag` for the API (`tag` empty for all tags).
fn api_parts(image: &str, all_tags: bool) -> Result<(String, String)> {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    };
    match (tag, all_tags) {
        (Some(_), true) => bail!("tag can't be used with --all-tags/-a"),
        (Some(t), false) => Ok((name.to_string(), t.to_string())),
        (None, true) => Ok((name.to_string(), String::new())),
        (None, false) => Ok((name.to_string(), "latest".to_string())),
    }
}

pub async fn push(env: &Env, args: PushArgs) -> Result<()> {
    if args.image.contains('@') {
        bail!("invalid reference format: cannot push a digest reference");
    }
    let client = env.client()?;
    let (name, tag) = api_parts(&args.image, args.all_tags)?;
    // The credentials `berth login` stored for the image's registry, as docker's CLI sends.
    let auth = crate::credentials::registry_auth_for(&env.config, &args.image);
    let stream = client.image_push(&name, &tag, auth.as_deref()).await?;
    let mut stream = std::pin::pin!(stream);
    let terminal = std::io::stdout().is_terminal() && !args.quiet;
    let mut renderer = ProgressRenderer::new(terminal);
    while let Some(message) = stream.next().await {
        let message = message?;
        // The aux `{Tag, Digest, Size}` message is for programs; its status line says it.
        if message.aux.is_some() && message.status.is_none() {
            continue;
        }
        let text = renderer.render(&message)?;
        if !args.quiet && !text.is_empty() {
            output::out(&text);
        }
    }
    if args.quiet {
        output::out(&format!("{}\n", super::pull::full_reference(&args.image)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags_as_docker_sends_them() {
        assert_eq!(
            api_parts("127.0.0.1:5000/x:2", false).unwrap(),
            ("127.0.0.1:5000/x".into(), "2".into())
        );
        assert_eq!(
            api_parts("127.0.0.1:5000/x", false).unwrap(),
            ("127.0.0.1:5000/x".into(), "latest".into())
        );
        assert_eq!(
            api_parts("127.0.0.1:5000/x", true).unwrap(),
            ("127.0.0.1:5000/x".into(), String::new())
        );
        assert!(api_parts("x:1", true).is_err());
    }
}
