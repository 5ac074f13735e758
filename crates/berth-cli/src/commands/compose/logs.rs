//! `compose logs` and `up`'s attached mode: every container's output, line by line, prefixed
//! with its name (`web-1  | `) in a colour per service, as Compose v2 prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};

use anyhow::Result;
use berth_client::{Client, LogsOptions};
use berth_compose::Project;
use berth_compose::labels;
use clap::Args;
use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::{Ctx, containers, short_name};
use crate::output::{self, StatusError};

#[derive(Debug, Args)]
#[command(override_usage = "berth compose logs [OPTIONS] [SERVICE...]")]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs for each container
    #[arg(short = 'n', long, value_name = "string", default_value = "all")]
    pub tail: String,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't print prefix in logs
    #[arg(long)]
    pub no_log_prefix: bool,
    /// index of the container if service has multiple replicas
    #[arg(long, value_name = "int", default_value_t = 0)]
    pub index: u32,
    pub services: Vec<String>,
}

/// Compose's palette, one colour per service in order.
const COLOURS: [u8; 10] = [36, 33, 32, 35, 34, 96, 93, 92, 95, 94];

/// How each container's lines are introduced.
#[derive(Clone)]
struct Prefix {
    text: String,
}

impl Prefix {
    fn new(name: &str, width: usize, colour: Option<u8>, none: bool) -> Prefix {
        if none {
            return Prefix {
                text: String::new(),
            };
        }
        let padded = format!("{name:<width$} | ");
        let text = match colour {
            Some(c) => format!("\x1b[{c}m{padded}\x1b[0m"),
            None => padded,
        };
        Prefix { text }
    }
}

fn colours_wanted(ctx: &Ctx<'_>, no_color: bool) -> bool {
    match ctx.args.ansi.as_str() {
        "never" => false,
        "always" => true,
        _ => !no_color && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Streams one container's logs to stdout with a prefix on every line.
async fn pump(client: Client, id: String, prefix: Prefix, options: LogsOptions) {
    let tty = client
        .container_inspect(&id)
        .await
        .map(|c| c.config.tty)
        .unwrap_or(false);
    let stream = match client.container_logs(&id, &options, tty).await {
        Ok(s) => s,
        Err(e) => {
            output::err(&format!("{}: {e}\n", prefix.text));
            return;
        }
    };
    let mut stream = Box::pin(stream);
    let mut partial: Vec<u8> = Vec::new();
    while let Some(Ok((_, chunk))) = stream.next().await {
        partial.extend_from_slice(&chunk);
        let mut text = Vec::new();
        while let Some(i) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=i).collect();
            text.extend_from_slice(prefix.text.as_bytes());
            text.extend_from_slice(&line);
        }
        if !text.is_empty() {
            output::write_or_exit(&mut std::io::stdout().lock(), &text);
        }
    }
    if !partial.is_empty() {
        let mut text = prefix.text.as_bytes().to_vec();
        text.extend_from_slice(&partial);
        text.push(b'\n');
        output::write_or_exit(&mut std::io::stdout().lock(), &text);
    }
}

/// Prefixes for the containers, padded to the longest name plus one; colours by service order.
fn prefixes(
    project: &str,
    list: &[berth_api::models::ContainerSummary],
    colour: bool,
    none: bool,
) -> Vec<Prefix> {
    let names: Vec<String> = list.iter().map(|c| short_name(c, project)).collect();
    // Compose pads to the longest name plus one (`app-1  | `).
    let width = names.iter().map(String::len).max().unwrap_or(0) + 1;
    let mut services: Vec<String> = Vec::new();
    list.iter()
        .zip(&names)
        .map(|(c, name)| {
            let service = c.labels.get(labels::SERVICE).cloned().unwrap_or_default();
            let index = match services.iter().position(|s| s == &service) {
                Some(i) => i,
                None => {
                    services.push(service);
                    services.len() - 1
                }
            };
            Prefix::new(
                name,
                width,
                colour.then_some(COLOURS[index % COLOURS.len()]),
                none,
            )
        })
        .collect()
}

pub async fn logs(ctx: &Ctx<'_>, args: &LogsArgs) -> Result<()> {
    let target = ctx.target()?;
    let client = ctx.client()?;
    let mut list = containers(&client, target.name(), &args.services, true, false).await?;
    if args.index > 0 {
        list.retain(|c| c.labels.get(labels::NUMBER) == Some(&args.index.to_string()));
    }
    let options = LogsOptions {
        follow: args.follow,
        since: args.since.clone(),
        until: args.until.clone(),
        timestamps: args.timestamps,
        tail: Some(args.tail.clone()),
        stdout: true,
        stderr: true,
        details: false,
    };
    let colour = colours_wanted(ctx, args.no_color);
    let prefixes = prefixes(target.name(), &list, colour, args.no_log_prefix);
    let tasks = list.iter().zip(prefixes).map(|(c, prefix)| {
        tokio::spawn(pump(client.clone(), c.id.clone(), prefix, options.clone()))
    });
    join_all(tasks).await;
    Ok(())
}

pub struct AttachedOptions {
    pub abort: bool,
    pub exit_code_from: Option<String>,
    pub no_color: bool,
    pub no_prefix: bool,
    pub timestamps: bool,
    pub stop_timeout: Option<i64>,
}

/// `up` without `-d`: follows the attached services' logs until every container has stopped;
/// Ctrl-C (or, with `abort`, a container's exit) stops them all.
pub async fn attached(
    ctx: &Ctx<'_>,
    project: &Project,
    current: &BTreeMap<String, Vec<(String, String)>>,
    attach: &BTreeSet<String>,
    options: AttachedOptions,
) -> Result<()> {
    let client = ctx.client()?;
    let list = containers(&client, &project.name, &[], true, false).await?;
    let watched: Vec<_> = list
        .iter()
        .filter(|c| {
            let service = c.labels.get(labels::SERVICE).cloned().unwrap_or_default();
            current.contains_key(&service) && attach.contains(&service)
        })
        .cloned()
        .collect();
    let names: Vec<String> = watched
        .iter()
        .map(|c| short_name(c, &project.name))
        .collect();
    output::out(&format!("Attaching to {}\n", names.join(", ")));
    let colour = colours_wanted(ctx, options.no_color);
    let prefixes = prefixes(&project.name, &watched, colour, options.no_prefix);
    let (tx, mut rx) = mpsc::channel::<usize>(watched.len().max(1));
    let follow = LogsOptions {
        follow: true,
        timestamps: options.timestamps,
        stdout: true,
        stderr: true,
        tail: Some("all".into()),
        ..Default::default()
    };
    let mut pumps = Vec::new();
    for (i, (c, prefix)) in watched.iter().zip(prefixes).enumerate() {
        let client = client.clone();
        let tx = tx.clone();
        let id = c.id.clone();
        let follow = follow.clone();
        pumps.push(tokio::spawn(async move {
            pump(client, id, prefix, follow).await;
            let _ = tx.send(i).await;
        }));
    }
    drop(tx);
    // Init jobs (what another service waits on with service_completed_successfully) are
    // expected to exit: their exit does not abort the others.
    let jobs: BTreeSet<&String> = project
        .services
        .values()
        .flat_map(|s| s.config.depends_on.iter())
        .filter(|(_, d)| d.condition == "service_completed_successfully")
        .map(|(name, _)| name)
        .collect();
    let all: Vec<(String, String)> = current.values().flatten().cloned().collect();
    let stop_all = || async {
        let engine = ctx.engine()?;
        let progress = super::progress_printer(ctx.quiet_progress(), false);
        let jobs = all.iter().map(|(id, name)| {
            let engine = &engine;
            let progress = &progress;
            async move {
                use berth_compose::reconcile::Engine;
                if engine.stop(id, options.stop_timeout).await.is_ok() {
                    progress("Container", name, "Stopped");
                }
            }
        });
        join_all(jobs).await;
        Ok::<_, anyhow::Error>(())
    };
    let mut remaining = watched.len();
    let mut code: Option<i64> = None;
    while remaining > 0 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                output::err("Gracefully stopping... (press Ctrl+C again to force)\n");
                stop_all().await?;
                return Err(StatusError::error(130, ""));
            }
            done = rx.recv() => {
                let Some(i) = done else { break };
                remaining -= 1;
                let c = &watched[i];
                let exit = client.container_inspect(&c.id).await.map(|i| i.state.exit_code).unwrap_or(0);
                let service = c.labels.get(labels::SERVICE).cloned().unwrap_or_default();
                output::out(&format!("{} exited with code {exit}\n", short_name(c, &project.name)));
                let _ = std::io::stdout().flush();
                if options.exit_code_from.as_deref() == Some(service.as_str()) {
                    code = Some(exit);
                }
                if options.abort && !(jobs.contains(&service) && exit == 0) {
                    if code.is_none() && options.exit_code_from.is_none() {
                        code = Some(exit);
                    }
                    output::out("Aborting on container exit...\n");
                    stop_all().await?;
                    // The others' last lines are still on their way: their streams end now
                    // that the containers are stopped.
                    join_all(pumps.drain(..)).await;
                    break;
                }
            }
        }
    }
    if let Some(from) = &options.exit_code_from
        && code.is_none()
    {
        // The service whose code was asked for was stopped by the abort: read it now.
        if let Some((id, _)) = current.get(from).and_then(|c| c.first()) {
            code = client
                .container_inspect(id)
                .await
                .ok()
                .map(|i| i.state.exit_code);
        }
    }
    match code {
        Some(c) if c != 0 => Err(StatusError::error(c.clamp(0, 255) as u8, "")),
        _ => Ok(()),
    }
}
