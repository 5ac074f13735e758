//! `exec`.

use std::io::IsTerminal;

use anyhow::Result;
use berth_api::models::container::{ExecConfig, ExecStartConfig};
use clap::Args;

use super::Env;
use super::attach::detach_keys;
use super::run::exit_with;
use crate::commands::session::{self, RawTerminal, ResizeTarget, SessionEnd, SessionOptions};
use crate::output::{StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(override_usage = "berth exec [OPTIONS] CONTAINER COMMAND [ARG...]")]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short, long, value_name = "list")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long, value_name = "string", default_value = "")]
    pub user: String,
    /// Working directory inside the container
    #[arg(short, long, value_name = "string", default_value = "")]
    pub workdir: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(
        value_name = "COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub command: Vec<String>,
}

pub async fn exec(env: &Env, args: ExecArgs) -> Result<()> {
    let client = env.client()?;
    let (keys, keys_spec) = detach_keys(env, args.detach_keys.as_deref())?;
    let mut env_list = Vec::new();
    for file in &args.env_file {
        env_list.extend(crate::commands::run_opts::read_kv_file(file, true)?);
    }
    for e in &args.env {
        env_list.push(if e.contains('=') {
            e.clone()
        } else {
            match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => e.clone(),
            }
        });
    }
    let stdin = args.interactive && !args.detach;
    if args.tty && stdin && !session::stdin_is_terminal() {
        return Err(StatusError::error(1, "the input device is not a TTY"));
    }
    let console_size = args
        .tty
        .then(session::terminal_size)
        .flatten()
        .map(|(h, w)| [u64::from(h), u64::from(w)]);
    let config = ExecConfig {
        attach_stdin: stdin,
        attach_stdout: !args.detach,
        attach_stderr: !args.detach,
        console_size,
        detach_keys: keys_spec.clone().unwrap_or_default(),
        tty: args.tty,
        env: (!env_list.is_empty()).then_some(env_list),
        cmd: Some(args.command.clone()),
        privileged: args.privileged,
        user: args.user.clone(),
        working_dir: args.workdir.clone(),
    };
    let id = client
        .exec_create(&args.container, &config)
        .await
        .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
    let start = ExecStartConfig {
        detach: args.detach,
        tty: args.tty,
        console_size,
    };
    if args.detach {
        return client
            .exec_start_detached(&id, &start)
            .await
            .map_err(|e| StatusError::error(1, describe_client_error(&e)));
    }
    let raw = if args.tty && stdin && std::io::stdin().is_terminal() {
        Some(RawTerminal::enable()?)
    } else {
        None
    };
    let hijacked = match client.exec_start(&id, &start).await {
        Ok(h) => h,
        Err(e) => {
            drop(raw);
            return Err(StatusError::error(1, describe_client_error(&e)));
        }
    };
    let end = session::interact(
        &client,
        ResizeTarget::Exec(id.clone()),
        hijacked,
        SessionOptions {
            stdin,
            tty: args.tty,
            detach_keys: if stdin { keys } else { Vec::new() },
        },
        None,
        raw,
    )
    .await;
    if end? == SessionEnd::Detached {
        return Ok(());
    }
    // The exit code is recorded just after the stream ends; poll briefly.
    for _ in 0..50 {
        let info = client.exec_inspect(&id).await?;
        if !info.running {
            return exit_with(info.exit_code.unwrap_or(0));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}
