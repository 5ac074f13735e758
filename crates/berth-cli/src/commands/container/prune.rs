//! `container prune`.

use anyhow::Result;
use clap::Args;

use super::Env;
use crate::commands::{confirm, parse_filters, prune_report};
use crate::output;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub async fn prune(env: &Env, args: PruneArgs) -> Result<()> {
    let filters = parse_filters(&args.filter)?;
    let client = env.client()?;
    if !args.force && !confirm("WARNING! This will remove all stopped containers.") {
        return Ok(());
    }
    let report = client.containers_prune(&filters).await?;
    let deleted = report.containers_deleted.unwrap_or_default();
    output::out(&prune_report(
        "Deleted Containers:",
        &deleted,
        report.space_reclaimed,
    ));
    Ok(())
}
