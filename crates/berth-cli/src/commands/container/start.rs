//! `start`, with `-a`/`-i` attaching to the container it starts.

use std::io::IsTerminal;

use anyhow::Result;
use clap::Args;

use super::Env;
use super::attach::stdio_attach;
use super::run::exit_with;
use crate::commands::session::{self, RawTerminal, ResizeTarget, SessionEnd, SessionOptions};
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(override_usage = "berth start [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

pub async fn start(env: &Env, args: StartArgs) -> Result<()> {
    let client = env.client()?;
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            return Err(StatusError::error(
                1,
                "you cannot start and attach multiple containers at once",
            ));
        }
        let name = &args.containers[0];
        let info = client
            .container_inspect(name)
            .await
            .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
        let tty = info.config.tty;
        let stdin = args.interactive && info.config.open_stdin;
        let (keys, options) = stdio_attach(env, tty, stdin, args.detach_keys.as_deref())?;
        let hijacked = client
            .container_attach(&info.id, &options)
            .await
            .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
        let condition = if info.host_config.auto_remove {
            "removed"
        } else {
            "next-exit"
        };
        let waiter = client.container_wait(&info.id, Some(condition)).await?;
        let raw = if tty && stdin && std::io::stdin().is_terminal() {
            Some(RawTerminal::enable()?)
        } else {
            None
        };
        if let Err(e) = client.container_start(&info.id, None).await {
            drop(raw);
            return Err(StatusError::error(1, describe_client_error(&e)));
        }
        let end = session::interact(
            &client,
            ResizeTarget::Container(info.id.clone()),
            hijacked,
            SessionOptions {
                stdin,
                tty,
                detach_keys: if stdin { keys } else { Vec::new() },
            },
            (!tty).then(|| info.id.clone()),
            raw,
        )
        .await;
        return match end? {
            SessionEnd::Detached => Ok(()),
            SessionEnd::Ended => exit_with(waiter.result().await?.status_code),
        };
    }
    let mut failed = Vec::new();
    let mut errors = Vec::new();
    for name in &args.containers {
        match client.container_start(name, None).await {
            Ok(()) => output::out(&format!("{name}\n")),
            Err(e @ berth_client::Error::Connect { .. }) => return Err(e.into()),
            Err(e) => {
                errors.push(describe_client_error(&e));
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    for e in errors {
        output::err(&format!("{e}\n"));
    }
    Err(StatusError::error(
        1,
        format!("Error: failed to start containers: {}", failed.join(", ")),
    ))
}
