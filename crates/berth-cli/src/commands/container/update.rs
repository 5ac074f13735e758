//! `update`: a running container's resources and restart policy.

use anyhow::Result;
use clap::Args;

use super::{Env, for_each};
use crate::commands::fail_if;
use crate::commands::run_opts::{ResourceFlags, parse_restart};
use crate::output::{self, StatusError};

#[derive(Debug, Args)]
#[command(
    override_usage = "berth update [OPTIONS] CONTAINER [CONTAINER...]",
    mut_args(ResourceFlags::for_update)
)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Restart policy to apply when a container exits
    #[arg(long, value_name = "string")]
    pub restart: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

pub async fn update(env: &Env, args: UpdateArgs) -> Result<()> {
    if args.resources.is_empty() && args.restart.is_none() {
        return Err(StatusError::error(
            1,
            "you must provide one or more flags when using this command",
        ));
    }
    let resources = args.resources.to_resources()?;
    let restart = match &args.restart {
        Some(r) => Some(parse_restart(r).map_err(|e| StatusError::error(1, e))?),
        None => None,
    };
    let client = env.client()?;
    let errors = for_each(&args.containers, |name| {
        let client = client.clone();
        let resources = resources.clone();
        let restart = restart.clone();
        async move {
            let answer = client
                .container_update(&name, &resources, restart.as_ref())
                .await?;
            for w in answer.warnings {
                output::err(&format!("{w}\n"));
            }
            Ok(Some(name))
        }
    })
    .await?;
    fail_if(errors)
}
