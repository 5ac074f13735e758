//! `berth`: docker's command syntax and output, over the Engine API.

mod cli;
mod commands;
mod config;
mod format;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::Env;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.global.version {
        output::out(&format!(
            "Berth version {}, build {}\n",
            env!("CARGO_PKG_VERSION"),
            commands::system::GIT_COMMIT
        ));
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        return ExitCode::SUCCESS;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::err(&format!("cannot start the async runtime: {e}\n"));
            return ExitCode::from(1);
        }
    };
    let env = Env::new(cli.global);
    let result = runtime.block_on(run(env, command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, message) = output::describe_error(&e);
            if !message.is_empty() {
                output::err(&format!("{message}\n"));
            }
            ExitCode::from(code)
        }
    }
}

async fn run(env: Env, command: Command) -> anyhow::Result<()> {
    use commands::{context, image, system};
    match command {
        Command::Context { command } => context::run(&env, command).await,
        Command::Image { command } => image::run(&env, command).await,
        Command::System { command } => system::run(&env, command).await,
        Command::Images(args) => image::list(&env, args).await,
        Command::History(args) => image::history(&env, args).await,
        Command::Import(args) => image::import(&env, args).await,
        Command::Inspect(args) => image::inspect(&env, args, true).await,
        Command::Load(args) => image::load(&env, args).await,
        Command::Rmi(args) => image::remove(&env, args).await,
        Command::Save(args) => image::save(&env, args).await,
        Command::Tag(args) => image::tag(&env, args).await,
        Command::Events(args) => system::events(&env, args).await,
        Command::Info(args) => system::info(&env, args).await,
        Command::Version(args) => system::version(&env, args).await,
    }
}
