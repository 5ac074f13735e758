//! `berth builder prune` (and `berth builder build`, the same as `berth build`).

use anyhow::Result;
use berth_client::BuildPruneOptions;
use clap::{Args, Subcommand};

use super::{Env, parse_filters, prune_report};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Build an image from a Dockerfile
    Build(Box<super::build::BuildArgs>),
    /// Remove build cache
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=24h")
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Amount of disk space to keep for cache
    #[arg(long = "keep-storage", alias = "reserved-space", value_name = "bytes")]
    pub keep_storage: Option<String>,
}

pub async fn run(env: &Env, command: BuilderCommand) -> Result<()> {
    match command {
        BuilderCommand::Build(args) => super::build::build(env, *args).await,
        BuilderCommand::Prune(args) => prune(env, args).await,
    }
}

/// docker's prompt: the question on the warning's line.
fn confirm(warning: &str) -> bool {
    output::out(&format!("{warning} [y/N] "));
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

pub async fn prune(env: &Env, args: PruneArgs) -> Result<()> {
    let keep_storage = match args.keep_storage.as_deref() {
        None => 0,
        Some(v) => berth_api::units::ram_in_bytes(v).map_err(|e| {
            output::StatusError::error(
                125,
                format!("invalid argument {v:?} for \"--keep-storage\" flag: {e}\nSee 'berth builder prune --help'."),
            )
        })?,
    };
    let options = BuildPruneOptions {
        all: args.all,
        keep_storage,
        filters: parse_filters(&args.filter)?,
    };
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all build cache. Are you sure you want to continue?"
        } else {
            "WARNING! This will remove all dangling build cache. Are you sure you want to continue?"
        };
        if !confirm(warning) {
            return Ok(());
        }
    }
    let report = env.client()?.build_prune(&options).await?;
    output::out(&prune_report(
        "Deleted build cache objects:",
        &report.caches_deleted.unwrap_or_default(),
        report.space_reclaimed,
    ));
    Ok(())
}
