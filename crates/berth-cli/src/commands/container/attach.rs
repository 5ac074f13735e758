//! `attach`, and the attach options and detach keys `start -a`, `run` and `exec` share.

use std::io::IsTerminal;

use anyhow::Result;
use berth_client::AttachOptions;
use clap::Args;

use super::Env;
use super::run::exit_with;
use crate::commands::run_opts::flag_error;
use crate::commands::session::{
    self, DEFAULT_DETACH_KEYS, RawTerminal, ResizeTarget, SessionEnd, SessionOptions,
};
use crate::output::{StatusError, describe_client_error};

/// The detach sequence: the flag, else `detachKeys` from config.json, else ctrl-p,ctrl-q.
/// Returns the bytes to watch for and the spec to pass to the daemon (when not the default).
pub(super) fn detach_keys(env: &Env, flag: Option<&str>) -> Result<(Vec<u8>, Option<String>)> {
    let configured = env.config.load().ok().and_then(|c| {
        c.other
            .get("detachKeys")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    });
    let chosen = flag.map(str::to_string).or(configured);
    let spec = chosen.as_deref().unwrap_or(DEFAULT_DETACH_KEYS);
    let keys =
        session::parse_detach_keys(spec).map_err(|e| flag_error(spec, "--detach-keys", e))?;
    Ok((keys, chosen))
}

/// What `start -a` and `attach` connect to: all output, stdin when asked for and kept open by
/// the container (a TTY then needs a terminal here, as docker checks), and the detach keys
/// (the bytes to watch for, passed on to the daemon too).
pub(super) fn stdio_attach(
    env: &Env,
    tty: bool,
    stdin: bool,
    detach_keys_flag: Option<&str>,
) -> Result<(Vec<u8>, AttachOptions)> {
    if tty && stdin && !session::stdin_is_terminal() {
        return Err(StatusError::error(1, "the input device is not a TTY"));
    }
    let (keys, spec) = detach_keys(env, detach_keys_flag)?;
    let options = AttachOptions {
        stream: true,
        stdin,
        stdout: true,
        stderr: true,
        logs: false,
        detach_keys: spec,
    };
    Ok((keys, options))
}

#[derive(Debug, Args)]
#[command(override_usage = "berth attach [OPTIONS] CONTAINER")]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(
        long = "sig-proxy",
        value_name = "bool",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub sig_proxy: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn attach(env: &Env, args: AttachArgs) -> Result<()> {
    let client = env.client()?;
    let info = client
        .container_inspect(&args.container)
        .await
        .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
    if !info.state.running {
        return Err(StatusError::error(
            1,
            "You cannot attach to a stopped container, start it first",
        ));
    }
    if info.state.paused {
        return Err(StatusError::error(
            1,
            "You cannot attach to a paused container, unpause it first",
        ));
    }
    if info.state.restarting {
        return Err(StatusError::error(
            1,
            "You cannot attach to a restarting container, wait until it is running",
        ));
    }
    let tty = info.config.tty;
    let stdin = !args.no_stdin && info.config.open_stdin;
    let (keys, options) = stdio_attach(env, tty, stdin, args.detach_keys.as_deref())?;
    let waiter = client.container_wait(&info.id, None).await;
    let hijacked = client
        .container_attach(&info.id, &options)
        .await
        .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
    let raw = if tty && stdin && std::io::stdin().is_terminal() {
        Some(RawTerminal::enable()?)
    } else {
        None
    };
    let end = session::interact(
        &client,
        ResizeTarget::Container(info.id.clone()),
        hijacked,
        SessionOptions {
            stdin,
            tty,
            detach_keys: if stdin { keys } else { Vec::new() },
        },
        (args.sig_proxy && !tty).then(|| info.id.clone()),
        raw,
    )
    .await;
    match end? {
        // docker attach reports a detach as its escape proxy's error, and exits 1.
        SessionEnd::Detached => Err(StatusError::error(1, "read escape sequence")),
        SessionEnd::Ended => match waiter {
            Ok(w) => exit_with(w.result().await?.status_code),
            Err(_) => {
                let info = client.container_inspect(&info.id).await?;
                exit_with(info.state.exit_code)
            }
        },
    }
}
