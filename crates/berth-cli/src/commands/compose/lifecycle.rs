//! `compose down`, `start`, `stop`, `restart`, `kill`, `rm`, `pause`, `unpause`, `wait`: the
//! project's existing containers, found by their labels (so these also work on a project that
//! Docker Compose created, and with `-p NAME` alone when there is no file).

use std::collections::BTreeSet;

use anyhow::Result;
use berth_api::models::ContainerSummary;
use berth_client::{Client, ContainerRemoveOptions, Filters, ImageRemoveOptions};
use berth_compose::labels;
use clap::Args;
use futures_util::future::join_all;

use super::{Ctx, Target, container_name, containers, progress_printer};
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(override_usage = "berth compose down [OPTIONS] [SERVICES]")]
pub struct DownArgs {
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Remove images used by services. "local" remove only images that don't have a custom tag ("local"|"all")
    #[arg(long, value_name = "string")]
    pub rmi: Option<String>,
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long, value_name = "int")]
    pub timeout: Option<i64>,
    /// Remove named volumes declared in the "volumes" section of the Compose file and anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long, value_name = "int")]
    pub timeout: Option<i64>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// SIGNAL to send to the container
    #[arg(short, long, value_name = "string", default_value = "SIGKILL")]
    pub signal: String,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Don't ask to confirm removal
    #[arg(short, long)]
    pub force: bool,
    /// Stop the containers, if required, before removing
    #[arg(short, long)]
    pub stop: bool,
    /// Remove any anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

/// The service order for stopping: dependents before what they depend on (reverse of the
/// start order); services the project does not know (orphans, or no file) first.
fn stop_order(target: &Target, list: &[ContainerSummary]) -> Vec<Vec<ContainerSummary>> {
    let service_of =
        |c: &ContainerSummary| c.labels.get(labels::SERVICE).cloned().unwrap_or_default();
    let known: Vec<String> = match target.project() {
        Some(p) => p
            .ordered_services()
            .iter()
            .rev()
            .map(|s| s.name.clone())
            .collect(),
        None => Vec::new(),
    };
    let mut groups = vec![
        list.iter()
            .filter(|c| !known.contains(&service_of(c)))
            .cloned()
            .collect::<Vec<_>>(),
    ];
    for name in known {
        groups.push(
            list.iter()
                .filter(|c| service_of(c) == name)
                .cloned()
                .collect(),
        );
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// Runs `op` on each container of each group, the groups one after the other.
async fn each<F, Fut>(groups: Vec<Vec<ContainerSummary>>, op: F) -> Result<()>
where
    F: Fn(ContainerSummary) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    for group in groups {
        for r in join_all(group.into_iter().map(&op)).await {
            r?;
        }
    }
    Ok(())
}

fn client_err(e: berth_client::Error) -> anyhow::Error {
    StatusError::error(1, describe_client_error(&e))
}

pub async fn down(ctx: &Ctx<'_>, args: &DownArgs) -> Result<()> {
    let target = ctx.target()?;
    let client = ctx.client()?;
    let name = target.name().to_string();
    let progress = progress_printer(ctx.quiet_progress(), ctx.args.progress == "plain");
    let mut list = containers(&client, &name, &args.services, true, true).await?;
    if let Some(p) = target.project() {
        let orphans: Vec<String> = list
            .iter()
            .filter(|c| {
                let s = c.labels.get(labels::SERVICE).cloned().unwrap_or_default();
                let oneoff = c
                    .labels
                    .get(labels::ONEOFF)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                !oneoff && !p.services.contains_key(&s) && !p.disabled.contains_key(&s)
            })
            .map(container_name)
            .collect();
        if !orphans.is_empty() && !args.remove_orphans {
            output::err(&format!(
                "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.\n",
                orphans.join(" ")
            ));
            list.retain(|c| !orphans.contains(&container_name(c)));
        }
    }
    let images: BTreeSet<String> = list.iter().map(|c| c.image.clone()).collect();
    // Anonymous volumes the containers mount: a recreated container mounts its predecessor's
    // by name (so the daemon does not count it as the container's own), and `-v` must still
    // take them.
    let anonymous: BTreeSet<String> = list
        .iter()
        .flat_map(|c| c.mounts.iter())
        .filter(|m| {
            m.kind == "volume"
                && m.name.len() == 64
                && m.name.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|m| m.name.clone())
        .collect();
    each(stop_order(&target, &list), |c| {
        let client = client.clone();
        let progress = &progress;
        async move {
            let n = container_name(&c);
            progress("Container", &n, "Stopping");
            client
                .container_stop(&c.id, args.timeout, None)
                .await
                .map_err(client_err)?;
            client
                .container_remove(
                    &c.id,
                    ContainerRemoveOptions {
                        force: true,
                        volumes: args.volumes,
                        link: false,
                    },
                )
                .await
                .map_err(client_err)?;
            progress("Container", &n, "Removed");
            Ok(())
        }
    })
    .await?;
    if args.volumes {
        for v in &anonymous {
            match client.volume_remove(v, false).await {
                Ok(()) => progress("Volume", v, "Removed"),
                Err(e) if e.is_not_found() => {}
                Err(e) => output::err(&format!(
                    "WARN[0000] volume {v}: {}\n",
                    describe_client_error(&e)
                )),
            }
        }
    }
    if !args.services.is_empty() {
        return Ok(());
    }
    // The secrets and configs written for the project's containers go with them.
    let files = berth_compose::reconcile::materialised_dir(&name);
    if let Err(e) = std::fs::remove_dir_all(&files)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        output::err(&format!("WARN[0000] {}: {e}\n", files.display()));
    }
    if let Some(base) = files.parent() {
        // Only when no other project has files there.
        let _ = std::fs::remove_dir(base);
    }
    let mut filters = Filters::new();
    filters.add("label", format!("{}={name}", labels::PROJECT));
    let networks = client.networks_list(&filters).await.map_err(client_err)?;
    for r in join_all(networks.iter().map(|n| {
        let client = client.clone();
        let progress = &progress;
        async move {
            progress("Network", &n.name, "Removing");
            client.network_remove(&n.id).await.map_err(client_err)?;
            progress("Network", &n.name, "Removed");
            Ok::<_, anyhow::Error>(())
        }
    }))
    .await
    {
        r?;
    }
    if args.volumes {
        let volumes = client
            .volumes_list(&filters)
            .await
            .map_err(client_err)?
            .volumes;
        for v in volumes {
            // An external volume is never the project's to remove.
            if let Some(p) = target.project()
                && p.volumes
                    .values()
                    .any(|pv| pv.external && pv.name == v.name)
            {
                continue;
            }
            client
                .volume_remove(&v.name, false)
                .await
                .map_err(client_err)?;
            progress("Volume", &v.name, "Removed");
        }
    }
    if let Some(mode) = &args.rmi {
        let wanted: Vec<String> = match (mode.as_str(), target.project()) {
            ("all", Some(p)) => p.services.values().map(|s| s.image_name(&p.name)).collect(),
            ("local", Some(p)) => p
                .services
                .values()
                .filter(|s| s.config.image.is_none())
                .map(|s| s.image_name(&p.name))
                .collect(),
            ("all", None) => images.into_iter().collect(),
            ("local", None) => Vec::new(),
            (other, _) => {
                return Err(StatusError::error(
                    1,
                    format!("invalid --rmi option {other:?}"),
                ));
            }
        };
        for image in wanted {
            match client
                .image_remove(&image, ImageRemoveOptions::default())
                .await
            {
                Ok(_) => progress("Image", &image, "Removed"),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(client_err(e)),
            }
        }
    }
    Ok(())
}

async fn list_for(
    ctx: &Ctx<'_>,
    services: &[String],
    all: bool,
) -> Result<(Target, Client, Vec<ContainerSummary>)> {
    let target = ctx.target()?;
    let client = ctx.client()?;
    let list = containers(&client, target.name(), services, all, false).await?;
    Ok((target, client, list))
}

pub async fn start(ctx: &Ctx<'_>, args: &ServicesArgs) -> Result<()> {
    let (target, client, list) = list_for(ctx, &args.services, true).await?;
    let progress = progress_printer(ctx.quiet_progress(), false);
    let mut groups = stop_order(&target, &list);
    groups.reverse();
    each(groups, |c| {
        let client = client.clone();
        let progress = &progress;
        async move {
            if c.state != "running" {
                client
                    .container_start(&c.id, None)
                    .await
                    .map_err(client_err)?;
                progress("Container", &container_name(&c), "Started");
            }
            Ok(())
        }
    })
    .await
}

pub async fn stop(ctx: &Ctx<'_>, args: &StopArgs, restart: bool) -> Result<()> {
    let (target, client, list) = list_for(ctx, &args.services, restart).await?;
    let progress = progress_printer(ctx.quiet_progress(), false);
    let mut groups = stop_order(&target, &list);
    if restart {
        groups.reverse();
    }
    each(groups, |c| {
        let client = client.clone();
        let progress = &progress;
        async move {
            if restart {
                client
                    .container_restart(&c.id, args.timeout, None)
                    .await
                    .map_err(client_err)?;
                progress("Container", &container_name(&c), "Restarted");
            } else {
                client
                    .container_stop(&c.id, args.timeout, None)
                    .await
                    .map_err(client_err)?;
                progress("Container", &container_name(&c), "Stopped");
            }
            Ok(())
        }
    })
    .await
}

pub async fn kill(ctx: &Ctx<'_>, args: &KillArgs) -> Result<()> {
    let (_, client, list) = list_for(ctx, &args.services, false).await?;
    let progress = progress_printer(ctx.quiet_progress(), false);
    if list.is_empty() {
        return Err(StatusError::error(1, "no container to kill"));
    }
    each(vec![list], |c| {
        let client = client.clone();
        let progress = &progress;
        async move {
            client
                .container_kill(&c.id, Some(&args.signal))
                .await
                .map_err(client_err)?;
            progress("Container", &container_name(&c), "Killed");
            Ok(())
        }
    })
    .await
}

pub async fn rm(ctx: &Ctx<'_>, args: &RmArgs) -> Result<()> {
    let (_, client, mut list) = list_for(ctx, &args.services, true).await?;
    let progress = progress_printer(ctx.quiet_progress(), false);
    if args.stop {
        for c in list.iter_mut().filter(|c| c.state == "running") {
            client
                .container_stop(&c.id, None, None)
                .await
                .map_err(client_err)?;
            progress("Container", &container_name(c), "Stopped");
            c.state = "exited".into();
        }
    }
    list.retain(|c| c.state != "running" && c.state != "paused" && c.state != "restarting");
    if list.is_empty() {
        output::err("No stopped containers\n");
        return Ok(());
    }
    let names: Vec<String> = list.iter().map(container_name).collect();
    output::err(&format!("Going to remove {}\n", names.join(", ")));
    if !args.force && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        output::err("Are you sure? [yN] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            return Ok(());
        }
    }
    each(vec![list], |c| {
        let client = client.clone();
        let progress = &progress;
        async move {
            client
                .container_remove(
                    &c.id,
                    ContainerRemoveOptions {
                        force: true,
                        volumes: args.volumes,
                        link: false,
                    },
                )
                .await
                .map_err(client_err)?;
            progress("Container", &container_name(&c), "Removed");
            Ok(())
        }
    })
    .await
}

pub async fn pause(ctx: &Ctx<'_>, args: &ServicesArgs, pause: bool) -> Result<()> {
    let (_, client, list) = list_for(ctx, &args.services, pause).await?;
    let progress = progress_printer(ctx.quiet_progress(), false);
    each(vec![list], |c| {
        let client = client.clone();
        let progress = &progress;
        async move {
            if pause && c.state == "running" {
                client.container_pause(&c.id).await.map_err(client_err)?;
                progress("Container", &container_name(&c), "Paused");
            } else if !pause && c.state == "paused" {
                client.container_unpause(&c.id).await.map_err(client_err)?;
                progress("Container", &container_name(&c), "Unpaused");
            }
            Ok(())
        }
    })
    .await
}

pub async fn wait(ctx: &Ctx<'_>, args: &ServicesArgs) -> Result<()> {
    let (_, client, list) = list_for(ctx, &args.services, true).await?;
    let results = join_all(list.iter().map(|c| {
        let client = client.clone();
        async move {
            let handle = client.container_wait(&c.id, None).await?;
            handle.result().await
        }
    }))
    .await;
    let mut last = 0;
    for r in results {
        let code = r.map_err(client_err)?.status_code;
        output::out(&format!("{code}\n"));
        last = code;
    }
    if last != 0 {
        return Err(StatusError::error(last.clamp(0, 255) as u8, ""));
    }
    Ok(())
}
