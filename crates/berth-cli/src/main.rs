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
            let _ = e.print();
            return ExitCode::from(usage_exit_code(&e));
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

/// docker's exit codes for command-line mistakes: 125 for bad flags, 1 for a wrong number of
/// positional arguments, 0 for help.
fn usage_exit_code(e: &clap::Error) -> u8 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
        ErrorKind::MissingRequiredArgument | ErrorKind::TooFewValues => 1,
        ErrorKind::UnknownArgument => match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) if !arg.starts_with('-') => 1,
            _ => 125,
        },
        _ => 125,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn usage_errors_exit_like_docker() {
        let code = |args: &[&str]| {
            usage_exit_code(&Cli::try_parse_from(args.iter().copied()).unwrap_err())
        };
        assert_eq!(code(&["berth", "images", "--bogus"]), 125);
        assert_eq!(code(&["berth", "history"]), 1);
        assert_eq!(code(&["berth", "history", "a", "b"]), 1);
        assert_eq!(code(&["berth", "--help"]), 0);
    }
}
