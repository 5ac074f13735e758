//! `logs`.

use std::io::Write;

use anyhow::Result;
use berth_client::{LogsOptions, StreamKind};
use clap::Args;
use futures_util::StreamExt;

use super::Env;
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(override_usage = "berth logs [OPTIONS] CONTAINER")]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42
    /// minutes)
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, value_name = "string", default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for
    /// 42 minutes)
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn logs(env: &Env, args: LogsArgs) -> Result<()> {
    let client = env.client()?;
    let info = client
        .container_inspect(&args.container)
        .await
        .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
    let now = chrono::Local::now();
    let timestamp = |v: &Option<String>| -> Result<Option<String>> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => crate::commands::system::get_timestamp(s, now).map(Some),
        }
    };
    let options = LogsOptions {
        follow: args.follow,
        since: timestamp(&args.since)?,
        until: timestamp(&args.until)?,
        timestamps: args.timestamps,
        tail: Some(args.tail.clone()),
        stdout: true,
        stderr: true,
        details: args.details,
    };
    let mut stream = Box::pin(
        client
            .container_logs(&info.id, &options, info.config.tty)
            .await
            .map_err(|e| StatusError::error(1, describe_client_error(&e)))?,
    );
    while let Some(frame) = stream.next().await {
        let (kind, bytes) = frame?;
        match kind {
            StreamKind::Stderr | StreamKind::SystemError => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&bytes);
                let _ = err.flush();
            }
            _ => output::write_or_exit(&mut std::io::stdout().lock(), &bytes),
        }
    }
    Ok(())
}
