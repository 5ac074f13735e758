//! Container commands: `run`, `create`, `start`, `stop`, `kill`, `restart`, `pause`,
//! `unpause`, `wait`, `rm`, `rename`, `update`, `attach`, `logs`, `top`, `diff`, `export`,
//! `commit`, `ps`, `inspect`, `exec`, `container prune` (and `cp`, `stats` in their modules).

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, Result};
use berth_api::models::container::{ContainerSummary, ExecConfig, ExecStartConfig, Port};
use berth_client::{
    AttachOptions, Client, CommitOptions, ContainerListOptions, ContainerRemoveOptions,
    LogsOptions, StreamKind,
};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::run_opts::{ContainerOptions, OptionError, RunFlags, flag_error, parse_nano_cpus};
use super::session::{
    self, DEFAULT_DETACH_KEYS, RawTerminal, ResizeTarget, SessionEnd, SessionOptions,
};
use super::{Env, confirm, fail_if, parse_filters, prune_report};
use crate::format::units::{ellipsis, human_duration, human_size_with_precision, truncate_id};
use crate::format::{Format, inspect_output};
use crate::output::{self, StatusError, describe_client_error};

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

// ---------------------------------------------------------------------------------------------
// create / run

#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    override_usage = "berth create [OPTIONS] IMAGE [COMMAND] [ARG...]"
)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: ContainerOptions,
}

#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    override_usage = "berth run [OPTIONS] IMAGE [COMMAND] [ARG...]"
)]
pub struct RunArgs {
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub opts: ContainerOptions,
}

/// `busybox` → `busybox:latest` (a tag or digest is kept), for docker's pull messages.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// `run`'s errors are prefixed `berth: ` and followed by docker's hint.
fn run_error(code: u8, message: &str) -> anyhow::Error {
    StatusError::error(
        code,
        format!("berth: {message}\n\nRun 'berth run --help' for more information"),
    )
}

/// Pulls `image` (the daemon may not support it yet), printing progress to stderr.
async fn pull(client: &Client, image: &str, platform: Option<&str>) -> Result<(), String> {
    let reference = with_default_tag(image);
    let (repo, tag) = match reference.rsplit_once('@') {
        Some((repo, digest)) => (repo.to_string(), digest.to_string()),
        None => {
            let (repo, tag) = super::image::split_tag(&reference);
            (repo.to_string(), tag.unwrap_or("latest").to_string())
        }
    };
    let mut stream = match client.image_pull(&repo, &tag, platform).await {
        Ok(s) => Box::pin(s),
        Err(e) => return Err(describe_client_error(&e)),
    };
    let mut renderer =
        crate::format::progress::ProgressRenderer::new(std::io::stderr().is_terminal());
    while let Some(message) = stream.next().await {
        let message = message.map_err(|e| describe_client_error(&e))?;
        match renderer.render(&message) {
            Ok(text) => output::err(&text),
            Err(e) => return Err(e.0),
        }
    }
    Ok(())
}

/// Creates the container as docker's CLI does: cidfile first, pull when the image is missing
/// (per `--pull`), warnings to stderr. Returns the id.
async fn create_container(
    client: &Client,
    opts: &ContainerOptions,
    detach: bool,
    in_run: bool,
) -> Result<String> {
    let command = if in_run { "run" } else { "create" };
    let mut spec = opts
        .to_spec(detach)
        .map_err(|e| decorate_option_error(e, command))?;
    // A TTY starts at the local terminal's size (docker sets ConsoleSize for `-t`).
    if opts.tty
        && let (Some(host), Some((h, w))) =
            (spec.request.host_config.as_mut(), session::terminal_size())
    {
        host.console_size = Some([u64::from(h), u64::from(w)]);
    }
    let fail = |code: u8, message: String| {
        if in_run {
            run_error(code, &message)
        } else {
            StatusError::error(code, message)
        }
    };
    let cidfile = (!opts.cidfile.is_empty()).then(|| opts.cidfile.clone());
    if let Some(path) = &cidfile {
        if std::path::Path::new(path).exists() {
            return Err(fail(
                125,
                format!(
                    "container ID file found, make sure the other container isn't running or delete {path}"
                ),
            ));
        }
        std::fs::File::create(path)
            .map_err(|e| fail(125, format!("failed to create the container ID file: {e}")))?;
    }
    let daemon_code = if in_run { 125 } else { 1 };
    let image = opts.image();
    let platform = spec.platform.as_deref();
    if opts.pull == "always" {
        pull(client, image, platform)
            .await
            .map_err(|m| fail(daemon_code, m))?;
    }
    let created = match client
        .container_create(&spec.request, spec.name.as_deref(), platform)
        .await
    {
        Err(e) if e.is_not_found() && opts.pull != "never" && is_image_missing(&e) => {
            output::err(&format!(
                "Unable to find image '{}' locally\n",
                with_default_tag(image)
            ));
            pull(client, image, platform)
                .await
                .map_err(|m| fail(daemon_code, m))?;
            client
                .container_create(&spec.request, spec.name.as_deref(), platform)
                .await
        }
        other => other,
    };
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            if let Some(path) = &cidfile {
                let _ = std::fs::remove_file(path);
            }
            return Err(if is_connect_error(&e) {
                fail(daemon_code, e.to_string())
            } else {
                fail(daemon_code, describe_client_error(&e))
            });
        }
    };
    for warning in &created.warnings {
        output::err(&format!("WARNING: {warning}\n"));
    }
    if let Some(path) = &cidfile {
        std::fs::write(path, &created.id).map_err(|e| {
            fail(
                125,
                format!("failed to write the container ID to the file: {e}"),
            )
        })?;
    }
    Ok(created.id)
}

fn is_connect_error(e: &berth_client::Error) -> bool {
    matches!(e, berth_client::Error::Connect { .. })
}

/// The daemon's 404 for create is about the image unless it names something else.
fn is_image_missing(e: &berth_client::Error) -> bool {
    e.api()
        .is_some_and(|a| a.message.to_lowercase().contains("image"))
}

pub async fn create(env: &Env, args: CreateArgs) -> Result<()> {
    let client = env.client()?;
    let id = create_container(&client, &args.opts, false, false).await?;
    output::out(&format!("{id}\n"));
    Ok(())
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

/// The detach sequence: the flag, else `detachKeys` from config.json, else ctrl-p,ctrl-q.
/// Returns the bytes to watch for and the spec to pass to the daemon (when not the default).
fn detach_keys(env: &Env, flag: Option<&str>) -> Result<(Vec<u8>, Option<String>)> {
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
fn stdio_attach(
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

/// docker's wording and exit status for a `run`/`create` option error.
fn decorate_option_error(e: anyhow::Error, command: &str) -> anyhow::Error {
    match e.downcast::<OptionError>() {
        Ok(option) => option.into_status(
            command,
            &format!("berth {command} [OPTIONS] IMAGE [COMMAND] [ARG...]"),
        ),
        Err(e) => e,
    }
}

pub async fn run(env: &Env, args: RunArgs) -> Result<()> {
    let RunArgs { run: flags, opts } = args;
    let client = env.client()?;
    let detach = flags.detach;
    let (keys, keys_spec) = detach_keys(env, flags.detach_keys.as_deref())
        .map_err(|e| decorate_option_error(e, "run"))?;
    let (stdin, stdout, stderr) = super::run_opts::attach_streams(&opts, detach)
        .map_err(|e| decorate_option_error(e, "run"))?;
    if opts.tty && stdin && !session::stdin_is_terminal() {
        return Err(StatusError::error(1, "the input device is not a TTY"));
    }
    let id = create_container(&client, &opts, detach, true).await?;
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
        let message = describe_client_error(&e);
        if opts.rm {
            // docker waits for the daemon to remove it; make sure it is gone either way.
            let removed =
                tokio::time::timeout(std::time::Duration::from_secs(5), waiter.result()).await;
            if !matches!(removed, Ok(Ok(_))) {
                let force = ContainerRemoveOptions {
                    force: true,
                    volumes: true,
                    link: false,
                };
                let _ = client.container_remove(&id, force).await;
            }
        }
        return Err(run_error(start_error_code(&message), &message));
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

/// Ends the command with the container's exit status (nothing more is printed).
fn exit_with(code: i64) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(StatusError::error((code & 0xff) as u8, ""))
    }
}

// ---------------------------------------------------------------------------------------------
// start / stop / kill / restart / pause / unpause / wait / rm / rename

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

// ---------------------------------------------------------------------------------------------
// update

#[derive(Debug, Args)]
#[command(override_usage = "berth update [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct UpdateArgs {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight", value_name = "uint16")]
    pub blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "int")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", value_name = "int", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Limit the CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period", value_name = "int")]
    pub cpu_rt_period: Option<i64>,
    /// Limit the CPU real-time runtime in microseconds
    #[arg(long = "cpu-rt-runtime", value_name = "int")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "int")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long, value_name = "decimal")]
    pub cpus: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "string")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "string")]
    pub cpuset_mems: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "bytes")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "int", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long, value_name = "string")]
    pub restart: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

pub async fn update(env: &Env, args: UpdateArgs) -> Result<()> {
    use berth_api::models::container::Resources;
    let size = |v: &Option<String>, flag: &str| -> Result<i64> {
        match v {
            None => Ok(0),
            Some(s) if s == "-1" && flag == "--memory-swap" => Ok(-1),
            Some(s) => berth_api::units::ram_in_bytes(s).map_err(|e| flag_error(s, flag, e)),
        }
    };
    let nothing = args.blkio_weight.is_none()
        && args.cpu_period.is_none()
        && args.cpu_quota.is_none()
        && args.cpu_rt_period.is_none()
        && args.cpu_rt_runtime.is_none()
        && args.cpu_shares.is_none()
        && args.cpus.is_none()
        && args.cpuset_cpus.is_none()
        && args.cpuset_mems.is_none()
        && args.memory.is_none()
        && args.memory_reservation.is_none()
        && args.memory_swap.is_none()
        && args.pids_limit.is_none()
        && args.restart.is_none();
    if nothing {
        return Err(StatusError::error(
            1,
            "you must provide one or more flags when using this command",
        ));
    }
    let resources = Resources {
        blkio_weight: args.blkio_weight.unwrap_or(0),
        cpu_period: args.cpu_period.unwrap_or(0),
        cpu_quota: args.cpu_quota.unwrap_or(0),
        cpu_realtime_period: args.cpu_rt_period.unwrap_or(0),
        cpu_realtime_runtime: args.cpu_rt_runtime.unwrap_or(0),
        cpu_shares: args.cpu_shares.unwrap_or(0),
        nano_cpus: match &args.cpus {
            Some(v) => parse_nano_cpus(v).map_err(|e| flag_error(v, "--cpus", e))?,
            None => 0,
        },
        cpuset_cpus: args.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: args.cpuset_mems.clone().unwrap_or_default(),
        memory: size(&args.memory, "-m, --memory")?,
        memory_reservation: size(&args.memory_reservation, "--memory-reservation")?,
        memory_swap: size(&args.memory_swap, "--memory-swap")?,
        pids_limit: args.pids_limit,
        ..Default::default()
    };
    let restart = match &args.restart {
        Some(r) => Some(super::run_opts::parse_restart(r).map_err(|e| StatusError::error(1, e))?),
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

// ---------------------------------------------------------------------------------------------
// attach

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

// ---------------------------------------------------------------------------------------------
// logs

#[derive(Debug, Args)]
#[command(override_usage = "berth logs [OPTIONS] CONTAINER")]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42
    /// minutes)
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, value_name = "string", default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for
    /// 42 minutes)
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn logs(env: &Env, args: LogsArgs) -> Result<()> {
    let client = env.client()?;
    let info = client
        .container_inspect(&args.container)
        .await
        .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
    let now = chrono::Local::now();
    let timestamp = |v: &Option<String>| -> Result<Option<String>> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => super::system::get_timestamp(s, now).map(Some),
        }
    };
    let options = LogsOptions {
        follow: args.follow,
        since: timestamp(&args.since)?,
        until: timestamp(&args.until)?,
        timestamps: args.timestamps,
        tail: Some(args.tail.clone()),
        stdout: true,
        stderr: true,
        details: args.details,
    };
    let mut stream = Box::pin(
        client
            .container_logs(&info.id, &options, info.config.tty)
            .await
            .map_err(|e| StatusError::error(1, describe_client_error(&e)))?,
    );
    while let Some(frame) = stream.next().await {
        let (kind, bytes) = frame?;
        match kind {
            StreamKind::Stderr | StreamKind::SystemError => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&bytes);
                let _ = err.flush();
            }
            _ => output::write_or_exit(&mut std::io::stdout().lock(), &bytes),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// top / diff / export / commit

#[derive(Debug, Args)]
#[command(override_usage = "berth top CONTAINER [ps OPTIONS]")]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// ps options
    #[arg(
        value_name = "ps OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub ps_args: Vec<String>,
}

pub async fn top(env: &Env, args: TopArgs) -> Result<()> {
    let client = env.client()?;
    let top = client
        .container_top(&args.container, &args.ps_args.join(" "))
        .await?;
    let mut text = top.titles.join("\t");
    text.push('\n');
    for row in &top.processes {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    // docker's top writer: minimum width 20, padding 3.
    output::out(&crate::format::table::align_with(&text, 20, 3));
    Ok(())
}

#[derive(Debug, Args)]
pub struct IdArg {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn diff(env: &Env, args: IdArg) -> Result<()> {
    let client = env.client()?;
    let changes = client.container_changes(&args.container).await?;
    let mut text = String::new();
    for change in changes {
        let kind = match change.kind {
            0 => "C",
            1 => "A",
            2 => "D",
            _ => "?",
        };
        text.push_str(&format!("{kind} {}\n", change.path));
    }
    output::out(&text);
    Ok(())
}

#[derive(Debug, Args)]
#[command(override_usage = "berth export [OPTIONS] CONTAINER")]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "string")]
    pub output: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn export(env: &Env, args: ExportArgs) -> Result<()> {
    let to_file = args.output.as_deref().filter(|o| !o.is_empty());
    if to_file.is_none() && std::io::stdout().is_terminal() {
        return Err(StatusError::error(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let client = env.client()?;
    let mut stream = Box::pin(client.container_export(&args.container).await?);
    let mut sink: Box<dyn Write> = match to_file {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("failed to export container: {path}"))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    while let Some(chunk) = stream.next().await {
        sink.write_all(&chunk?)?;
    }
    sink.flush()?;
    Ok(())
}

#[derive(Debug, Args)]
#[command(override_usage = "berth commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long, value_name = "string", default_value = "")]
    pub author: String,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long, value_name = "list")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long, value_name = "string", default_value = "")]
    pub message: String,
    /// Pause container during commit
    #[arg(
        short,
        long,
        value_name = "bool",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub pause: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "[REPOSITORY[:TAG]]")]
    pub reference: Option<String>,
}

pub async fn commit(env: &Env, args: CommitArgs) -> Result<()> {
    let client = env.client()?;
    let (repo, tag) = match args.reference.as_deref() {
        Some(r) => {
            let (repo, tag) = super::image::split_tag(r);
            (repo.to_string(), tag.unwrap_or_default().to_string())
        }
        None => (String::new(), String::new()),
    };
    let options = CommitOptions {
        container: args.container.clone(),
        repo,
        tag,
        comment: args.message.clone(),
        author: args.author.clone(),
        pause: args.pause,
        changes: args.change.clone(),
    };
    let id = client.container_commit(&options, None).await?;
    output::out(&format!("{id}\n"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// exec

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
        env_list.extend(super::run_opts::read_kv_file(file, true)?);
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

// ---------------------------------------------------------------------------------------------
// ps

#[derive(Debug, Args)]
#[command(override_usage = "berth ps [OPTIONS]")]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, value_name = "int", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Platform", "PLATFORM"),
];

/// Go's `strconv.Quote` for the text docker shows (`"sh -c 'echo hi'"`).
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// docker's `DisplayablePorts`: ports sorted by private port; ports published on the same
/// number are grouped into ranges per ip and protocol (`0.0.0.0:9000-9001->9000-9001/tcp`,
/// `53/udp`); ports published on another number are listed one by one at the end.
pub fn displayable_ports(ports: &[Port]) -> String {
    let mut ports: Vec<&Port> = ports.iter().collect();
    ports.sort_by(|a, b| {
        let ip = |p: &Port| p.ip.clone().unwrap_or_default();
        (
            a.private_port,
            ip(a),
            a.public_port.unwrap_or(0),
            a.kind.clone(),
        )
            .cmp(&(
                b.private_port,
                ip(b),
                b.public_port.unwrap_or(0),
                b.kind.clone(),
            ))
    });
    let form = |key: &str, first: u16, last: u16| {
        let range = if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        };
        match key.split_once('/') {
            Some((ip, kind)) => {
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                format!("{host}:{range}->{range}/{kind}")
            }
            None => format!("{range}/{key}"),
        }
    };
    let mut groups: Vec<(String, u16, u16)> = Vec::new();
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    for p in ports {
        let current = p.private_port;
        let ip = p.ip.clone().unwrap_or_default();
        let mut key = p.kind.clone();
        if !ip.is_empty() {
            let public = p.public_port.unwrap_or(0);
            if public != current {
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.clone()
                };
                host_mappings.push(format!("{host}:{public}->{current}/{}", p.kind));
                continue;
            }
            key = format!("{ip}/{}", p.kind);
        }
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            None => groups.push((key, current, current)),
            Some(group) if group.2.checked_add(1) == Some(current) => group.2 = current,
            Some(group) => {
                result.push(form(&group.0, group.1, group.2));
                group.1 = current;
                group.2 = current;
            }
        }
    }
    for (key, first, last) in &groups {
        result.push(form(key, *first, *last));
    }
    result.extend(host_mappings);
    result.join(", ")
}

/// One `ps` row keyed by docker's formatter field names.
pub fn ps_row(c: &ContainerSummary, trunc: bool, now: i64) -> Value {
    let names: Vec<&str> = c.names.iter().map(|n| n.trim_start_matches('/')).collect();
    let names = if trunc {
        names
            .iter()
            .find(|n| !n.contains('/'))
            .map(|n| vec![*n])
            .unwrap_or(names.clone())
    } else {
        names
    };
    let command = if trunc {
        ellipsis(&c.command, 20)
    } else {
        c.command.clone()
    };
    let image = if trunc && c.image.starts_with("sha256:") {
        truncate_id(&c.image)
    } else {
        c.image.clone()
    };
    let size = {
        let rw = human_size_with_precision(c.size_rw.unwrap_or(0), 3);
        match c.size_root_fs {
            Some(v) if v > 0 => format!("{rw} (virtual {})", human_size_with_precision(v, 3)),
            _ => rw,
        }
    };
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .map(|m| {
            let name = if m.name.is_empty() {
                &m.source
            } else {
                &m.name
            };
            if trunc {
                ellipsis(name, 15)
            } else {
                name.clone()
            }
        })
        .collect();
    let local_volumes = c
        .mounts
        .iter()
        .filter(|m| m.kind == "volume" && (m.driver.is_empty() || m.driver == "local"))
        .count();
    let networks: Vec<&str> = c
        .network_settings
        .networks
        .keys()
        .map(String::as_str)
        .collect();
    json!({
        "Command": go_quote(&command),
        "CreatedAt": super::image::go_time_string(c.created),
        "ID": if trunc { truncate_id(&c.id) } else { c.id.clone() },
        "Image": image,
        "Labels": labels.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mounts.join(","),
        "Names": names.join(","),
        "Networks": networks.join(","),
        "Platform": Value::Null,
        "Ports": displayable_ports(&c.ports),
        "RunningFor": format!("{} ago", human_duration(now - c.created)),
        "Size": size,
        "State": c.state,
        "Status": c.status,
    })
}

pub async fn ps(env: &Env, args: PsArgs) -> Result<()> {
    let filters = parse_filters(&args.filter)?;
    let limit = if args.latest && args.last == -1 {
        Some(1)
    } else if args.last > 0 {
        Some(args.last)
    } else {
        None
    };
    let options = ContainerListOptions {
        all: args.all || limit.is_some(),
        limit,
        size: args.size,
        filters,
    };
    let format_text = if args.quiet {
        None
    } else {
        args.format.clone()
    };
    let wants_size = args.size || format_text.as_deref().is_some_and(|f| f.contains(".Size"));
    let client = env.client()?;
    let containers = client
        .containers_list(&ContainerListOptions {
            size: wants_size,
            ..options
        })
        .await?;
    let trunc = !args.no_trunc;
    if args.quiet {
        let mut text = String::new();
        for c in &containers {
            text.push_str(&if trunc {
                truncate_id(&c.id)
            } else {
                c.id.clone()
            });
            text.push('\n');
        }
        output::out(&text);
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<Value> = containers.iter().map(|c| ps_row(c, trunc, now)).collect();
    let default = if args.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    let format = Format::parse(format_text.as_deref(), default);
    let text = format
        .render(&rows, PS_HEADERS)
        .map_err(|e| StatusError::error(1, e.to_string()))?;
    output::out(&text);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// inspect

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Only inspect objects of the given type (generic inspect)
    #[arg(long = "type", value_name = "string", hide = true)]
    pub kind: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    pub names: Vec<String>,
}

/// `container inspect` (`generic` = false) and the top-level `inspect`: containers first, then
/// images, as docker does; `--type` limits the search.
pub async fn inspect(env: &Env, args: InspectArgs, generic: bool) -> Result<()> {
    const TYPES: &[&str] = &[
        "config",
        "container",
        "image",
        "network",
        "node",
        "plugin",
        "secret",
        "service",
        "task",
        "volume",
    ];
    let kind = args.kind.as_deref().filter(|k| !k.is_empty());
    if let Some(kind) = kind
        && !TYPES.contains(&kind)
    {
        return Err(StatusError::error(
            1,
            format!("{kind:?} is not a valid value for --type"),
        ));
    }
    let try_containers = !generic || kind.is_none_or(|k| k == "container");
    let try_images = generic && kind.is_none_or(|k| k == "image");
    let client = env.client()?;
    let mut raws = Vec::new();
    let mut errors = Vec::new();
    for name in &args.names {
        let mut found = None;
        let mut last_error = None;
        if try_containers {
            match client.container_inspect_bytes(name, args.size).await {
                Ok(bytes) => found = Some(bytes),
                Err(e) if e.is_not_found() => last_error = Some(e),
                Err(e @ berth_client::Error::Api(_)) => last_error = Some(e),
                Err(e) => {
                    output::out("[]\n");
                    return Err(e.into());
                }
            }
        }
        if found.is_none() && try_images {
            match client.image_inspect_bytes(name).await {
                Ok(bytes) => found = Some(bytes),
                Err(e) if e.is_not_found() => last_error = Some(e),
                Err(e @ berth_client::Error::Api(_)) => last_error = Some(e),
                Err(e) => {
                    output::out("[]\n");
                    return Err(e.into());
                }
            }
        }
        match found {
            Some(bytes) => raws.push(bytes),
            None => {
                let e = last_error.map(|e| (e.is_not_found(), describe_client_error(&e)));
                errors.push(match (generic, e) {
                    (true, Some((true, _))) | (true, None) => {
                        format!("Error: No such object: {name}")
                    }
                    (_, Some((_, text))) => text,
                    (false, None) => format!("Error: No such container: {name}"),
                });
            }
        }
    }
    let text = inspect_output(&raws, args.format.as_deref())
        .map_err(|e| StatusError::error(1, e.to_string()))?;
    output::out(&text);
    fail_if(errors)
}

// ---------------------------------------------------------------------------------------------
// prune

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub async fn prune(env: &Env, args: PruneArgs) -> Result<()> {
    let filters = parse_filters(&args.filter)?;
    let client = env.client()?;
    if !args.force && !confirm("WARNING! This will remove all stopped containers.") {
        return Ok(());
    }
    let report = client.containers_prune(&filters).await?;
    let deleted = report.containers_deleted.unwrap_or_default();
    output::out(&prune_report(
        "Deleted Containers:",
        &deleted,
        report.space_reclaimed,
    ));
    Ok(())
}

#[cfg(test)]
mod flow_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_look_like_docker() {
        let c = ContainerSummary {
            id: "0123456789abcdef0123".into(),
            names: vec!["/web".into(), "/other/link".into()],
            image: "busybox".into(),
            command: "sh -c 'while true; do echo hi; sleep 1; done'".into(),
            created: 1000,
            ports: vec![
                Port {
                    ip: Some("0.0.0.0".into()),
                    private_port: 80,
                    public_port: Some(8080),
                    kind: "tcp".into(),
                },
                Port {
                    ip: Some("::".into()),
                    private_port: 80,
                    public_port: Some(8080),
                    kind: "tcp".into(),
                },
                Port {
                    ip: Some("0.0.0.0".into()),
                    private_port: 9000,
                    public_port: Some(9000),
                    kind: "tcp".into(),
                },
                Port {
                    ip: Some("0.0.0.0".into()),
                    private_port: 9001,
                    public_port: Some(9001),
                    kind: "tcp".into(),
                },
                Port {
                    ip: None,
                    private_port: 53,
                    public_port: None,
                    kind: "udp".into(),
                },
            ],
            state: "running".into(),
            status: "Up 5 minutes".into(),
            ..Default::default()
        };
        let row = ps_row(&c, true, 1000 + 300);
        assert_eq!(row["ID"], "0123456789ab");
        assert_eq!(row["Command"], "\"sh -c 'while true; …\"");
        assert_eq!(row["RunningFor"], "5 minutes ago");
        assert_eq!(row["Names"], "web");
        assert_eq!(
            row["Ports"],
            "53/udp, 0.0.0.0:9000-9001->9000-9001/tcp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
        let row = ps_row(&c, false, 1000);
        assert_eq!(row["Names"], "web,other/link");
        assert_eq!(
            row["Command"],
            "\"sh -c 'while true; do echo hi; sleep 1; done'\""
        );
    }

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

    #[test]
    fn default_tags() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(
            with_default_tag("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(with_default_tag("busybox:1.36"), "busybox:1.36");
        assert_eq!(with_default_tag("busybox@sha256:ab"), "busybox@sha256:ab");
    }
}
