//! `compose ps`, `ls`, `images`, `top`, `port`, `version`, `events`: views of what the
//! project has on the daemon, found by Compose's labels.

use std::collections::BTreeMap;

use anyhow::Result;
use berth_client::{ContainerListOptions, EventsOptions, Filters};
use berth_compose::labels;
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Ctx, container_name, containers};
use crate::commands::container::ps::{displayable_ports, ps_row};
use crate::format::table::align;
use crate::format::units::human_size;
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(override_usage = "berth compose ps [OPTIONS] [SERVICE...]")]
pub struct PsArgs {
    /// Show all stopped containers (including those created by the run command)
    #[arg(short, long)]
    pub all: bool,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display services
    #[arg(long)]
    pub services: bool,
    /// Filter services by status. Values: [paused | restarting | removing | running | dead | created | exited]
    #[arg(long, value_name = "stringArray")]
    pub status: Vec<String>,
    /// Filter services by a property (supported filters: status)
    #[arg(long, value_name = "string")]
    pub filter: Option<String>,
    /// Format output using a custom template: 'table', 'json' or a Go template
    #[arg(long, value_name = "string", default_value = "table")]
    pub format: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Include orphaned services (not declared by project)
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    pub orphans: bool,
    pub service: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show all stopped Compose projects
    #[arg(short, long)]
    pub all: bool,
    /// Only display project names
    #[arg(short, long)]
    pub quiet: bool,
    /// Format the output. Values: [table | json]
    #[arg(long, value_name = "string", default_value = "table")]
    pub format: String,
    /// Filter output based on conditions provided
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// tcp or udp
    #[arg(long, value_name = "string", default_value = "tcp")]
    pub protocol: String,
    /// Index of the container if service has multiple replicas
    #[arg(long, value_name = "int", default_value_t = 1)]
    pub index: u32,
    pub service: String,
    pub private_port: u16,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format the output. Values: [pretty | json]
    #[arg(short, long, value_name = "string", default_value = "pretty")]
    pub format: String,
    /// Shows only Compose's version number
    #[arg(long)]
    pub short: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Output events as a stream of json objects
    #[arg(long)]
    pub json: bool,
    /// Show all events created since timestamp
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    pub services: Vec<String>,
}

fn client_err(e: berth_client::Error) -> anyhow::Error {
    StatusError::error(1, describe_client_error(&e))
}

pub async fn ps(ctx: &Ctx<'_>, args: &PsArgs) -> Result<()> {
    let target = ctx.target()?;
    let client = ctx.client()?;
    let mut status = args.status.clone();
    if let Some(f) = &args.filter {
        match f.split_once('=') {
            Some(("status", v)) => status.push(v.to_string()),
            _ => return Err(StatusError::error(1, format!("invalid filter {f:?}"))),
        }
    }
    let all = args.all || !status.is_empty();
    let mut services = args.service.clone();
    if let Some(project) = target.project() {
        for s in &args.service {
            if !project.services.contains_key(s) && !project.disabled.contains_key(s) {
                return Err(StatusError::error(1, format!("no such service: {s}")));
            }
        }
        // --orphans=false: only the services the project declares.
        if services.is_empty() && !args.orphans {
            services = project.services.keys().cloned().collect();
        }
    }
    let mut list = containers(&client, target.name(), &services, all, args.all).await?;
    if !status.is_empty() {
        list.retain(|c| status.contains(&c.state));
    }
    if args.services {
        let mut names: Vec<String> = list
            .iter()
            .filter_map(|c| c.labels.get(labels::SERVICE).cloned())
            .collect();
        names.dedup();
        output::out(&names.iter().map(|n| format!("{n}\n")).collect::<String>());
        return Ok(());
    }
    if args.quiet {
        let ids: String = list
            .iter()
            .map(|c| {
                if args.no_trunc {
                    format!("{}\n", c.id)
                } else {
                    format!("{}\n", &c.id[..12.min(c.id.len())])
                }
            })
            .collect();
        output::out(&ids);
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<Value> = list
        .iter()
        .map(|c| {
            let mut row = ps_row(c, !args.no_trunc, now);
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            row["Name"] = json!(container_name(c));
            row["Service"] = json!(label(labels::SERVICE));
            row["Project"] = json!(label(labels::PROJECT));
            row["Health"] = json!(health_of(&c.status));
            row["ExitCode"] = json!(exit_code_of(&c.status));
            row["Publishers"] = json!(
                c.ports
                    .iter()
                    .map(|p| json!({
                        "URL": p.ip.clone().unwrap_or_default(),
                        "TargetPort": p.private_port,
                        "PublishedPort": p.public_port.unwrap_or(0),
                        "Protocol": p.kind,
                    }))
                    .collect::<Vec<_>>()
            );
            row
        })
        .collect();
    let text = match args.format.as_str() {
        "json" => rows.iter().map(|r| format!("{r}\n")).collect(),
        "table" => {
            let mut t = String::from("NAME\tIMAGE\tCOMMAND\tSERVICE\tCREATED\tSTATUS\tPORTS\n");
            for (r, c) in rows.iter().zip(&list) {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                t.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    s("Name"),
                    s("Image"),
                    s("Command"),
                    s("Service"),
                    s("RunningFor"),
                    s("Status"),
                    displayable_ports(&c.ports)
                ));
            }
            align(&t)
        }
        template => {
            let template = template.strip_prefix("table ").unwrap_or(template);
            let mut out = String::new();
            for r in &rows {
                // render_one ends each rendering with a newline already.
                out.push_str(
                    &crate::format::render_one(template, r)
                        .map_err(|e| StatusError::error(1, e.to_string()))?,
                );
            }
            out
        }
    };
    output::out(&text);
    Ok(())
}

fn health_of(status: &str) -> &'static str {
    if status.contains("(healthy)") {
        "healthy"
    } else if status.contains("(unhealthy)") {
        "unhealthy"
    } else if status.contains("(health: starting)") {
        "starting"
    } else {
        ""
    }
}

fn exit_code_of(status: &str) -> i64 {
    status
        .strip_prefix("Exited (")
        .and_then(|r| r.split(')').next())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

pub async fn ls(ctx: &Ctx<'_>, args: &LsArgs) -> Result<()> {
    let client = ctx.client()?;
    let mut filters = Filters::new();
    filters.add("label", labels::PROJECT);
    let list = client
        .containers_list(&ContainerListOptions {
            all: args.all,
            filters,
            ..Default::default()
        })
        .await
        .map_err(client_err)?;
    // project -> (state counts, config files)
    let mut projects: BTreeMap<String, (BTreeMap<String, usize>, String)> = BTreeMap::new();
    for c in &list {
        let project = c.labels.get(labels::PROJECT).cloned().unwrap_or_default();
        let entry = projects.entry(project).or_default();
        *entry.0.entry(c.state.clone()).or_default() += 1;
        if let Some(f) = c.labels.get(labels::CONFIG_FILES) {
            entry.1 = f.clone();
        }
    }
    for f in &args.filter {
        if let Some(("name", n)) = f.split_once('=') {
            projects.retain(|p, _| p.contains(n));
        }
    }
    if args.quiet {
        output::out(
            &projects
                .keys()
                .map(|p| format!("{p}\n"))
                .collect::<String>(),
        );
        return Ok(());
    }
    let status = |counts: &BTreeMap<String, usize>| {
        counts
            .iter()
            .map(|(s, n)| format!("{s}({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if args.format == "json" {
        let rows: Vec<Value> = projects
            .iter()
            .map(|(name, (counts, files))| json!({"Name": name, "Status": status(counts), "ConfigFiles": files}))
            .collect();
        output::out(&format!("{}\n", serde_json::to_string(&rows)?));
        return Ok(());
    }
    let mut t = String::from("NAME\tSTATUS\tCONFIG FILES\n");
    for (name, (counts, files)) in &projects {
        t.push_str(&format!("{name}\t{}\t{files}\n", status(counts)));
    }
    output::out(&align(&t));
    Ok(())
}

pub async fn images(ctx: &Ctx<'_>, args: &ServicesArgs) -> Result<()> {
    let target = ctx.target()?;
    let client = ctx.client()?;
    let list = containers(&client, target.name(), &args.services, true, false).await?;
    let mut t = String::from("CONTAINER\tREPOSITORY\tTAG\tIMAGE ID\tSIZE\n");
    for c in &list {
        let image = client.image_inspect(&c.image).await.map_err(client_err)?;
        let (repo, tag) = match c.image.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (c.image.clone(), "latest".to_string()),
        };
        let id = image.id.trim_start_matches("sha256:");
        t.push_str(&format!(
            "{}\t{repo}\t{tag}\t{}\t{}\n",
            container_name(c),
            &id[..12.min(id.len())],
            human_size(image.size)
        ));
    }
    output::out(&align(&t));
    Ok(())
}

pub async fn top(ctx: &Ctx<'_>, args: &ServicesArgs) -> Result<()> {
    let target = ctx.target()?;
    let client = ctx.client()?;
    let list = containers(&client, target.name(), &args.services, false, false).await?;
    let mut out = String::new();
    for c in &list {
        let top = client.container_top(&c.id, "").await.map_err(client_err)?;
        out.push_str(&format!("{}\n", container_name(c)));
        let mut t = top.titles.join("\t");
        t.push('\n');
        for p in &top.processes {
            t.push_str(&p.join("\t"));
            t.push('\n');
        }
        out.push_str(&align(&t));
        out.push('\n');
    }
    output::out(&out);
    Ok(())
}

pub async fn port(ctx: &Ctx<'_>, args: &PortArgs) -> Result<()> {
    let target = ctx.target()?;
    let client = ctx.client()?;
    let list = containers(
        &client,
        target.name(),
        std::slice::from_ref(&args.service),
        false,
        false,
    )
    .await?;
    let Some(c) = list
        .iter()
        .find(|c| c.labels.get(labels::NUMBER) == Some(&args.index.to_string()))
    else {
        return Err(StatusError::error(
            1,
            format!("service {:?} is not running", args.service),
        ));
    };
    let inspect = client.container_inspect(&c.id).await.map_err(client_err)?;
    let key = format!("{}/{}", args.private_port, args.protocol);
    let binding = inspect
        .network_settings
        .ports
        .get(&key)
        .and_then(|b| b.as_ref())
        .and_then(|b| b.first())
        .ok_or_else(|| {
            StatusError::error(
                1,
                format!("no port {key} for container {}", container_name(c)),
            )
        })?;
    let ip = if binding.host_ip.is_empty() {
        "0.0.0.0"
    } else {
        &binding.host_ip
    };
    output::out(&format!("{ip}:{}\n", binding.host_port));
    Ok(())
}

pub fn version(args: &VersionArgs) -> Result<()> {
    let v = env!("CARGO_PKG_VERSION");
    if args.short {
        output::out(&format!("{v}\n"));
    } else if args.format == "json" {
        output::out(&format!("{}\n", json!({"version": format!("v{v}")})));
    } else {
        output::out(&format!(
            "Berth Compose version v{v} (Compose v{} labels)\n",
            labels::COMPOSE_VERSION
        ));
    }
    Ok(())
}

pub async fn events(ctx: &Ctx<'_>, args: &EventsArgs) -> Result<()> {
    let target = ctx.target()?;
    let client = ctx.client()?;
    let mut filters = Filters::new();
    filters.add("label", format!("{}={}", labels::PROJECT, target.name()));
    filters.add("type", "container");
    let options = EventsOptions {
        since: args.since.clone(),
        until: args.until.clone(),
        filters,
    };
    let mut stream = Box::pin(client.events(&options).await.map_err(client_err)?);
    while let Some(event) = stream.next().await {
        let event = event.map_err(client_err)?;
        let service = event
            .actor
            .attributes
            .get(labels::SERVICE)
            .cloned()
            .unwrap_or_default();
        if !args.services.is_empty() && !args.services.contains(&service) {
            continue;
        }
        let time =
            chrono::DateTime::from_timestamp_nanos(event.time_nano).with_timezone(&chrono::Local);
        let attributes: BTreeMap<&String, &String> = event
            .actor
            .attributes
            .iter()
            .filter(|(k, _)| !k.starts_with("com.docker.compose."))
            .collect();
        let line = if args.json {
            json!({
                "time": time.to_rfc3339(),
                "type": "container",
                "action": event.action,
                "id": event.actor.id,
                "service": service,
                "attributes": attributes,
            })
            .to_string()
        } else {
            let attrs: Vec<String> = attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "{} container {} {} ({})",
                time.format("%Y-%m-%d %H:%M:%S%.6f"),
                event.action,
                event.actor.id,
                attrs.join(", ")
            )
        };
        output::out(&format!("{line}\n"));
    }
    Ok(())
}
