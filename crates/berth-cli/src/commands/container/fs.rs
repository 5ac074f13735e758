//! A container's filesystem: `diff`, `export`, `commit`.

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, Result};
use berth_client::CommitOptions;
use clap::Args;
use futures_util::StreamExt;

use super::Env;
use crate::output::{self, StatusError};

#[derive(Debug, Args)]
pub struct IdArg {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn diff(env: &Env, args: IdArg) -> Result<()> {
    let client = env.client()?;
    let changes = client.container_changes(&args.container).await?;
    let mut text = String::new();
    for change in changes {
        let kind = match change.kind {
            0 => "C",
            1 => "A",
            2 => "D",
            _ => "?",
        };
        text.push_str(&format!("{kind} {}\n", change.path));
    }
    output::out(&text);
    Ok(())
}

#[derive(Debug, Args)]
#[command(override_usage = "berth export [OPTIONS] CONTAINER")]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "string")]
    pub output: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn export(env: &Env, args: ExportArgs) -> Result<()> {
    let to_file = args.output.as_deref().filter(|o| !o.is_empty());
    if to_file.is_none() && std::io::stdout().is_terminal() {
        return Err(StatusError::error(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let client = env.client()?;
    let mut stream = Box::pin(client.container_export(&args.container).await?);
    let mut sink: Box<dyn Write> = match to_file {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("failed to export container: {path}"))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    while let Some(chunk) = stream.next().await {
        sink.write_all(&chunk?)?;
    }
    sink.flush()?;
    Ok(())
}

#[derive(Debug, Args)]
#[command(override_usage = "berth commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long, value_name = "string", default_value = "")]
    pub author: String,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long, value_name = "list")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long, value_name = "string", default_value = "")]
    pub message: String,
    /// Pause container during commit
    #[arg(
        short,
        long,
        value_name = "bool",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub pause: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "[REPOSITORY[:TAG]]")]
    pub reference: Option<String>,
}

pub async fn commit(env: &Env, args: CommitArgs) -> Result<()> {
    let client = env.client()?;
    let (repo, tag) = match args.reference.as_deref() {
        Some(r) => {
            let (repo, tag) = crate::commands::image::split_tag(r);
            (repo.to_string(), tag.unwrap_or_default().to_string())
        }
        None => (String::new(), String::new()),
    };
    let options = CommitOptions {
        container: args.container.clone(),
        repo,
        tag,
        comment: args.message.clone(),
        author: args.author.clone(),
        pause: args.pause,
        changes: args.change.clone(),
    };
    let id = client.container_commit(&options, None).await?;
    output::out(&format!("{id}\n"));
    Ok(())
}
