//! `run`: create, attach and wait, start, then the session and the container's exit status.

use std::io::IsTerminal;

use anyhow::{Context as _, Result};
use berth_client::{AttachOptions, Client, ContainerRemoveOptions, WaitHandle};
use clap::Args;

use super::Env;
use super::attach::detach_keys;
use super::create::{create_container, decorate_option_error, run_error};
use crate::commands::run_opts::{ContainerOptions, RunFlags};
use crate::commands::session::{self, RawTerminal, ResizeTarget, SessionEnd, SessionOptions};
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    override_usage = "berth run [OPTIONS] IMAGE [COMMAND] [ARG...]"
)]
pub struct RunArgs {
    // After the shared options: they order their flags by name, `run`'s own come first.
    #[command(flatten)]
    pub opts: ContainerOptions,
    #[command(flatten)]
    pub run: RunFlags,
}

/// docker's exit code for a failed start: 127 when the command was not found, 126 when it
/// could not be invoked, 125 otherwise.
pub fn start_error_code(message: &str) -> u8 {
    let m = message.to_lowercase();
    if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("command not found")
    {
        127
    } else if m.contains("permission denied")
        || m.contains("exec format error")
        || m.contains("not executable")
    {
        126
    } else {
        125
    }
}

pub async fn run(env: &Env, args: RunArgs) -> Result<()> {
    let RunArgs { run: flags, opts } = args;
    let client = env.client()?;
    let detach = flags.detach;
    let (keys, keys_spec) = detach_keys(env, flags.detach_keys.as_deref())
        .map_err(|e| decorate_option_error(e, "run"))?;
    let (stdin, stdout, stderr) = crate::commands::run_opts::attach_streams(&opts, detach)
        .map_err(|e| decorate_option_error(e, "run"))?;
    if opts.tty && stdin && !session::stdin_is_terminal() {
        return Err(StatusError::error(1, "the input device is not a TTY"));
    }
    let id = create_container(&client, &env.config, &opts, detach, true).await?;
    if detach {
        if let Err(e) = client.container_start(&id, None).await {
            let message = describe_client_error(&e);
            return Err(run_error(start_error_code(&message), &message));
        }
        output::out(&format!("{id}\n"));
        return Ok(());
    }
    let attached = stdin || stdout || stderr;
    let attach = async {
        if !attached {
            return Ok(None);
        }
        let options = AttachOptions {
            stream: true,
            stdin,
            stdout,
            stderr,
            logs: false,
            detach_keys: keys_spec.clone(),
        };
        client.container_attach(&id, &options).await.map(Some)
    };
    let condition = if opts.rm { "removed" } else { "next-exit" };
    // Both must be in place before the start; neither waits for the other.
    let (hijacked, waiter) = tokio::join!(attach, client.container_wait(&id, Some(condition)));
    let hijacked = hijacked.map_err(|e| run_error(125, &describe_client_error(&e)))?;
    let waiter = waiter.map_err(|e| run_error(125, &describe_client_error(&e)))?;
    // The terminal goes raw before start, so no early output is cooked.
    let raw = if opts.tty && stdin && std::io::stdin().is_terminal() {
        Some(RawTerminal::enable().context("cannot set the terminal to raw mode")?)
    } else {
        None
    };
    if let Err(e) = client.container_start(&id, None).await {
        drop(raw);
        return Err(start_failed(&client, &id, opts.rm, waiter, &e).await);
    }
    let resize = (opts.tty && std::io::stdout().is_terminal())
        .then(|| session::monitor_size(client.clone(), ResizeTarget::Container(id.clone())));
    let signals =
        (flags.sig_proxy && !opts.tty).then(|| session::proxy_signals(client.clone(), id.clone()));
    let end = match hijacked {
        Some(h) => {
            session::run_session(
                h,
                SessionOptions {
                    stdin,
                    tty: opts.tty,
                    detach_keys: if stdin { keys } else { Vec::new() },
                },
            )
            .await
        }
        None => Ok(SessionEnd::Ended),
    };
    drop(raw);
    if let Some(task) = resize {
        task.abort();
    }
    let finish = |signals: Option<tokio::task::JoinHandle<()>>| {
        if let Some(task) = signals {
            task.abort();
        }
    };
    match end? {
        SessionEnd::Detached => {
            finish(signals);
            Ok(())
        }
        SessionEnd::Ended => {
            let status = waiter.result().await;
            finish(signals);
            let status = status.map_err(|e| run_error(125, &describe_client_error(&e)))?;
            if let Some(error) = status.error.filter(|e| !e.message.is_empty()) {
                return Err(run_error(125, &error.message));
            }
            exit_with(status.status_code)
        }
    }
}

/// `run`'s error for a start that failed; with `--rm` the container is made sure to be gone.
async fn start_failed(
    client: &Client,
    id: &str,
    rm: bool,
    waiter: WaitHandle,
    e: &berth_client::Error,
) -> anyhow::Error {
    let message = describe_client_error(e);
    if rm {
        // docker waits for the daemon to remove it; make sure it is gone either way.
        let removed =
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter.result()).await;
        if !matches!(removed, Ok(Ok(_))) {
            let force = ContainerRemoveOptions {
                force: true,
                volumes: true,
                link: false,
            };
            let _ = client.container_remove(id, force).await;
        }
    }
    run_error(start_error_code(&message), &message)
}

/// Ends the command with the container's exit status (nothing more is printed).
pub(super) fn exit_with(code: i64) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(StatusError::error((code & 0xff) as u8, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_map_to_docker_exit_codes() {
        assert_eq!(
            start_error_code(
                "failed to create task: exec: \"nope\": executable file not found in $PATH"
            ),
            127
        );
        assert_eq!(start_error_code("exec /etc/passwd: permission denied"), 126);
        assert_eq!(start_error_code("cgroup failure"), 125);
    }
}
