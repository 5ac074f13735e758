//! `stop`, `restart`, `kill`, `pause`, `unpause`, `wait`, `rm`, `rename`.

use anyhow::Result;
use berth_client::ContainerRemoveOptions;
use clap::Args;

use super::{Env, for_each};
use crate::commands::fail_if;
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long, value_name = "string")]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "timeout",
        alias = "time",
        value_name = "int",
        allow_hyphen_values = true
    )]
    pub timeout: Option<i64>,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

pub async fn stop(env: &Env, args: StopArgs, restart: bool) -> Result<()> {
    let client = env.client()?;
    let errors = for_each(&args.containers, |name| {
        let client = client.clone();
        let signal = args.signal.clone();
        async move {
            if restart {
                client
                    .container_restart(&name, args.timeout, signal.as_deref())
                    .await
            } else {
                client
                    .container_stop(&name, args.timeout, signal.as_deref())
                    .await
            }
            .map_err(anyhow::Error::from)?;
            Ok(Some(name))
        }
    })
    .await?;
    fail_if(errors)
}

#[derive(Debug, Args)]
#[command(override_usage = "berth kill [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, value_name = "string")]
    pub signal: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

pub async fn kill(env: &Env, args: KillArgs) -> Result<()> {
    let client = env.client()?;
    let errors = for_each(&args.containers, |name| {
        let client = client.clone();
        let signal = args.signal.clone();
        async move {
            client.container_kill(&name, signal.as_deref()).await?;
            Ok(Some(name))
        }
    })
    .await?;
    fail_if(errors)
}

#[derive(Debug, Args)]
pub struct NamesArg {
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub enum Simple {
    Pause,
    Unpause,
    Wait,
}

pub async fn simple(env: &Env, args: NamesArg, op: Simple) -> Result<()> {
    let client = env.client()?;
    let errors = for_each(&args.containers, |name| {
        let client = client.clone();
        async move {
            match op {
                Simple::Pause => client.container_pause(&name).await?,
                Simple::Unpause => client.container_unpause(&name).await?,
                Simple::Wait => {
                    let status = client.container_wait(&name, None).await?.result().await?;
                    return Ok(Some(status.status_code.to_string()));
                }
            }
            Ok(Some(name))
        }
    })
    .await?;
    fail_if(errors)
}

#[derive(Debug, Args)]
#[command(override_usage = "berth rm [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove the specified link
    #[arg(short, long)]
    pub link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

pub async fn rm(env: &Env, args: RmArgs) -> Result<()> {
    let client = env.client()?;
    let options = ContainerRemoveOptions {
        force: args.force,
        volumes: args.volumes,
        link: args.link,
    };
    let errors = for_each(&args.containers, |name| {
        let client = client.clone();
        async move {
            let name = name.trim_matches('/').to_string();
            match client.container_remove(&name, options).await {
                Ok(()) => Ok(Some(name)),
                // `rm -f` of a missing container is not an error.
                Err(e) if e.is_not_found() && args.force => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await?;
    fail_if(errors)
}

#[derive(Debug, Args)]
#[command(override_usage = "berth rename CONTAINER NEW_NAME")]
pub struct RenameArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "NEW_NAME")]
    pub new_name: String,
}

pub async fn rename(env: &Env, args: RenameArgs) -> Result<()> {
    let client = env.client()?;
    let new_name = args.new_name.trim();
    if new_name.is_empty() || args.container.trim().is_empty() {
        return Err(StatusError::error(
            1,
            "Error: neither old nor new names may be empty",
        ));
    }
    if let Err(e) = client.container_rename(&args.container, new_name).await {
        output::err(&format!("{}\n", describe_client_error(&e)));
        return Err(StatusError::error(
            1,
            format!("Error: failed to rename container named {}", args.container),
        ));
    }
    Ok(())
}
