//! Container commands, one module per verb (or tight group of verbs): `run`, `create`,
//! `start`, `stop`, `kill`, `restart`, `pause`, `unpause`, `wait`, `rm`, `rename`, `update`,
//! `attach`, `logs`, `top`, `diff`, `export`, `commit`, `ps`, `inspect`, `exec`,
//! `container prune` (and `cp`, `stats` in their own modules). The flags `run` and `create`
//! share, and their translation into a create request, are in `super::run_opts`.

mod attach;
mod create;
mod exec;
mod fs;
mod inspect;
mod lifecycle;
mod logs;
mod prune;
pub mod ps;
mod run;
mod start;
mod top;
mod update;

use anyhow::Result;
use clap::Subcommand;

use super::Env;
use crate::output::{self, describe_client_error};

pub use attach::{AttachArgs, attach};
pub use create::{CreateArgs, create};
pub use exec::{ExecArgs, exec};
pub use fs::{CommitArgs, ExportArgs, IdArg, commit, diff, export};
pub use inspect::{InspectArgs, inspect};
pub use lifecycle::{
    KillArgs, NamesArg, RenameArgs, RmArgs, Simple, StopArgs, kill, rename, rm, simple, stop,
};
pub use logs::{LogsArgs, logs};
pub use prune::{PruneArgs, prune};
pub use ps::{PsArgs, ps};
pub use run::{RunArgs, run};
pub use start::{StartArgs, start};
pub use top::{TopArgs, top};
pub use update::{UpdateArgs, update};

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(super::cp::CpArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(IdArg),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// List containers
    #[command(visible_aliases = ["list", "ps"])]
    Ls(PsArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArg),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(super::stats::StatsArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArg),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArg),
}

pub async fn run_command(env: &Env, command: ContainerCommand) -> Result<()> {
    match command {
        ContainerCommand::Attach(a) => attach(env, a).await,
        ContainerCommand::Commit(a) => commit(env, a).await,
        ContainerCommand::Cp(a) => super::cp::cp(env, a).await,
        ContainerCommand::Create(a) => create(env, a).await,
        ContainerCommand::Diff(a) => diff(env, a).await,
        ContainerCommand::Exec(a) => exec(env, a).await,
        ContainerCommand::Export(a) => export(env, a).await,
        ContainerCommand::Inspect(a) => inspect(env, a, false).await,
        ContainerCommand::Kill(a) => kill(env, a).await,
        ContainerCommand::Logs(a) => logs(env, a).await,
        ContainerCommand::Ls(a) => ps(env, a).await,
        ContainerCommand::Pause(a) => simple(env, a, Simple::Pause).await,
        ContainerCommand::Prune(a) => prune(env, a).await,
        ContainerCommand::Rename(a) => rename(env, a).await,
        ContainerCommand::Restart(a) => stop(env, a, true).await,
        ContainerCommand::Rm(a) => rm(env, a).await,
        ContainerCommand::Run(a) => run(env, a).await,
        ContainerCommand::Start(a) => start(env, a).await,
        ContainerCommand::Stats(a) => super::stats::stats(env, a).await,
        ContainerCommand::Stop(a) => stop(env, a, false).await,
        ContainerCommand::Top(a) => top(env, a).await,
        ContainerCommand::Unpause(a) => simple(env, a, Simple::Unpause).await,
        ContainerCommand::Update(a) => update(env, a).await,
        ContainerCommand::Wait(a) => simple(env, a, Simple::Wait).await,
    }
}

/// Runs one operation per container: successes print the name as given, failures are
/// collected and reported together (exit 1), as docker's multi-container commands do.
async fn for_each<F, Fut>(names: &[String], mut op: F) -> Result<Vec<String>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let mut errors = Vec::new();
    for name in names {
        match op(name.clone()).await {
            Ok(Some(line)) => output::out(&format!("{line}\n")),
            Ok(None) => {}
            Err(e) => errors.push(error_text(&e)),
        }
    }
    Ok(errors)
}

fn error_text(e: &anyhow::Error) -> String {
    match e.downcast_ref::<berth_client::Error>() {
        Some(c) => describe_client_error(c),
        None => format!("{e:#}"),
    }
}

#[cfg(test)]
pub(crate) mod flow_tests;
#[cfg(test)]
mod pull_tests;
