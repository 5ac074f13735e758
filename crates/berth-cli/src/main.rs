//! `berth`: docker's command syntax and output, over the Engine API.

mod cli;
mod commands;
mod config;
mod credentials;
mod format;
mod output;
mod tls;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::commands::Env;

fn main() -> ExitCode {
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(e) => {
            match docker_usage_error(&e, &std::env::args().collect::<Vec<_>>()) {
                Some(text) => output::err(&text),
                None => {
                    let _ = e.print();
                }
            }
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
    // The registry server runs on a runtime of its own, not the CLI's single thread.
    if let Command::Registry { command } = command {
        return match commands::registry::main(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                output::err(&format!("{e:#}\n"));
                ExitCode::from(1)
            }
        };
    }
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
            // Option errors are worded for the command that was typed.
            let e = match e.downcast::<commands::run_opts::OptionError>() {
                Ok(option) => {
                    let (path, usage) = command_path(&std::env::args().collect::<Vec<_>>());
                    let usage = usage.trim_start_matches("Usage:").trim().to_string();
                    option.into_status(&path.join(" "), &usage)
                }
                Err(e) => e,
            };
            let (code, message) = output::describe_error(&e);
            if !message.is_empty() {
                output::err(&format!("{message}\n"));
            }
            ExitCode::from(code)
        }
    }
}

/// The command path (`run`, `container ls`) the arguments select, and its usage line.
fn command_path(args: &[String]) -> (Vec<String>, String) {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut path = Vec::new();
    let mut i = 1;
    // Global options before the command, some with a separate value.
    while i < args.len() && args[i].starts_with('-') {
        let takes_value = matches!(
            args[i].as_str(),
            "-H" | "--host"
                | "-c"
                | "--context"
                | "--config"
                | "-l"
                | "--log-level"
                | "--tlscacert"
                | "--tlscert"
                | "--tlskey"
        );
        i += if takes_value { 2 } else { 1 };
    }
    while i < args.len() {
        let Some(sub) = cmd
            .get_subcommands()
            .find(|s| s.get_name() == args[i] || s.get_all_aliases().any(|a| a == args[i]))
            .cloned()
        else {
            break;
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
        i += 1;
    }
    // clap renders a subcommand's usage with its own name only: `update [OPTIONS] ...`.
    let rendered = cmd.render_usage().to_string();
    let rendered = rendered.trim_start_matches("Usage:").trim();
    let usage = match rendered.strip_prefix("berth ") {
        // `berth logs ...` reached as `container logs`: name the path that was typed.
        Some(rest) => {
            let rest = rest.split_once(' ').map_or("", |(_, rest)| rest);
            format!("berth {} {rest}", path.join(" "))
                .trim_end()
                .to_string()
        }
        None => {
            let rest = rendered.split_once(' ').map_or("", |(_, rest)| rest);
            format!("berth {} {rest}", path.join(" "))
                .trim_end()
                .to_string()
        }
    };
    (path, usage)
}

/// docker's wording for an unknown or invalid flag:
/// `unknown flag: --x`, the usage line and `Run 'berth run --help' for more information`.
fn docker_usage_error(e: &clap::Error, args: &[String]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let (path, usage) = command_path(args);
    if path.is_empty() {
        return None;
    }
    let first = match e.kind() {
        ErrorKind::UnknownArgument => match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) if arg.starts_with("--") => {
                format!("unknown flag: {}", arg.split('=').next().unwrap_or(arg))
            }
            Some(ContextValue::String(arg)) if arg.starts_with('-') => {
                let c = arg.chars().nth(1).unwrap_or('-');
                format!("unknown shorthand flag: '{c}' in {arg}")
            }
            _ => return None,
        },
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(a)) => a.split(' ').next().unwrap_or(a).to_string(),
                _ => return None,
            };
            let value = match e.get(ContextKind::InvalidValue) {
                Some(ContextValue::String(v)) => v.clone(),
                _ => String::new(),
            };
            if value.is_empty()
                && let Some(typed) = args.iter().rev().find(|a| a.starts_with('-'))
            {
                // `-h` at the end: the flag's value is missing.
                match typed.strip_prefix("--") {
                    Some(_) => format!("flag needs an argument: {typed}"),
                    None => {
                        let c = typed.chars().last().unwrap_or('-');
                        format!("flag needs an argument: '{c}' in {typed}")
                    }
                }
            } else {
                format!("invalid argument \"{value}\" for \"{arg}\" flag")
            }
        }
        _ => return None,
    };
    let usage = usage.trim_start_matches("Usage:").trim();
    Some(format!(
        "{first}\n\nUsage:  {usage}\n\nRun 'berth {} --help' for more information\n",
        path.join(" ")
    ))
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
    use commands::{
        build, builder, compose, container, context, cp, image, login, network, pull, push, stats,
        system, volume,
    };
    match command {
        Command::Compose(args) => compose::run(&env, args).await,
        Command::Context { command } => context::run(&env, command).await,
        Command::Image { command } => image::run(&env, command).await,
        Command::Build(args) => build::build(&env, args).await,
        Command::Builder { command } => builder::run(&env, command).await,
        Command::Volume { command } => volume::run(&env, command).await,
        Command::Registry { .. } => unreachable!("handled before the runtime starts"),
        Command::Swarm { command } => commands::swarm::run(&env, command).await,
        Command::Node { command } => commands::node::run(&env, command).await,
        Command::Service { command } => commands::service::run(&env, command).await,
        Command::Stack { command } => commands::stack::run(&env, command).await,
        Command::Secret { command } => commands::secret::run(&env, "secret", command).await,
        Command::Config { command } => commands::secret::run(&env, "config", command).await,
        Command::Network { command } => network::run(&env, command).await,
        Command::Port(args) => network::port(&env, args).await,
        Command::System { command } => system::run(&env, command).await,
        Command::Images(args) => image::list(&env, args).await,
        Command::History(args) => image::history(&env, args).await,
        Command::Import(args) => image::import(&env, args).await,
        Command::Inspect(args) => container::inspect(&env, args, true).await,
        Command::Container { command } => container::run_command(&env, command).await,
        Command::Run(args) => container::run(&env, args).await,
        Command::Create(args) => container::create(&env, args).await,
        Command::Start(args) => container::start(&env, args).await,
        Command::Stop(args) => container::stop(&env, args, false).await,
        Command::Kill(args) => container::kill(&env, args).await,
        Command::Restart(args) => container::stop(&env, args, true).await,
        Command::Pause(args) => container::simple(&env, args, container::Simple::Pause).await,
        Command::Unpause(args) => container::simple(&env, args, container::Simple::Unpause).await,
        Command::Wait(args) => container::simple(&env, args, container::Simple::Wait).await,
        Command::Rm(args) => container::rm(&env, args).await,
        Command::Rename(args) => container::rename(&env, args).await,
        Command::Update(args) => container::update(&env, args).await,
        Command::Attach(args) => container::attach(&env, args).await,
        Command::Logs(args) => container::logs(&env, args).await,
        Command::Top(args) => container::top(&env, args).await,
        Command::Stats(args) => stats::stats(&env, args).await,
        Command::Diff(args) => container::diff(&env, args).await,
        Command::Export(args) => container::export(&env, args).await,
        Command::Cp(args) => cp::cp(&env, args).await,
        Command::Commit(args) => container::commit(&env, args).await,
        Command::Ps(args) => container::ps(&env, args).await,
        Command::Exec(args) => container::exec(&env, args).await,
        Command::Load(args) => image::load(&env, args).await,
        Command::Login(args) => login::login(&env, args).await,
        Command::Logout(args) => login::logout(&env, args).await,
        Command::Pull(args) => pull::pull(&env, args).await,
        Command::Push(args) => push::push(&env, args).await,
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
        assert_eq!(code(&["berth", "run", "--bogus", "busybox"]), 125);
    }

    #[test]
    fn unknown_flags_are_worded_as_docker() {
        let args: Vec<String> = ["berth", "run", "--bogus", "busybox"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = Cli::try_parse_from(&args).unwrap_err();
        assert_eq!(
            docker_usage_error(&e, &args).unwrap(),
            "unknown flag: --bogus\n\nUsage:  berth run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\nRun 'berth run --help' for more information\n"
        );
        let args: Vec<String> = ["berth", "container", "ls", "-z"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = Cli::try_parse_from(&args).unwrap_err();
        assert!(
            docker_usage_error(&e, &args)
                .unwrap()
                .starts_with("unknown shorthand flag: 'z' in -z\n")
        );
    }
}
