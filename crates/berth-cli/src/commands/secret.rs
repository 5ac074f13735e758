//! Secret and config commands (one shape, two kinds): `create NAME FILE|-`, `ls`, `inspect`,
//! `rm`.

use std::io::Read;

use anyhow::{Context, Result};
use base64::Engine as _;
use berth_client::Query;
use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};

use super::swarm::{call, inspect_objects};
use super::{Env, fail_if, parse_filters};
use crate::format::Format;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// Create from a file or STDIN as content
    Create(CreateArgs),
    /// List them
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more of them
    Inspect(InspectArgs),
    /// Remove one or more of them
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

/// `kind` is `secret` or `config`.
pub async fn run(env: &Env, kind: &str, command: ObjectCommand) -> Result<()> {
    let prefix = format!("/{kind}s");
    match command {
        ObjectCommand::Create(a) => create(env, &prefix, a).await,
        ObjectCommand::Ls(a) => list(env, &prefix, a).await,
        ObjectCommand::Inspect(a) => {
            inspect_objects(env, &prefix, &a.names, a.format.as_deref()).await
        }
        ObjectCommand::Rm(a) => {
            let mut errors = Vec::new();
            for name in &a.names {
                match call(
                    env,
                    Method::DELETE,
                    &format!("{prefix}/{name}"),
                    &Query::new(),
                    None,
                )
                .await
                {
                    Ok(_) => output::out(&format!("{name}\n")),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            fail_if(errors)
        }
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Labels
    #[arg(short, long, value_name = "list")]
    pub label: Vec<String>,
    /// Template driver (`golang`: the content is a Go template, expanded for each task)
    #[arg(long, value_name = "string")]
    pub template_driver: Option<String>,
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The file with the content, or `-` for standard input
    #[arg(value_name = "FILE")]
    pub file: String,
}

async fn create(env: &Env, prefix: &str, a: CreateArgs) -> Result<()> {
    let data = if a.file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        buf
    } else {
        std::fs::read(&a.file).with_context(|| format!("open {}", a.file))?
    };
    let mut labels = serde_json::Map::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.into(), json!(v));
    }
    let mut body = json!({
        "Name": a.name,
        "Labels": labels,
        "Data": base64::engine::general_purpose::STANDARD.encode(&data),
    });
    // As the docker CLI: `Templating` only with the flag, naming the driver.
    if let Some(driver) = a.template_driver.filter(|d| !d.is_empty()) {
        body["Templating"] = json!({"Name": driver});
    }
    let r = call(
        env,
        Method::POST,
        &format!("{prefix}/create"),
        &Query::new(),
        Some(&body),
    )
    .await?;
    output::out(&format!("{}\n", r["ID"].as_str().unwrap_or_default()));
    Ok(())
}

pub use super::swarm_list::ListArgs;

const HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("CreatedAt", "CREATED"),
    ("UpdatedAt", "UPDATED"),
];

async fn list(env: &Env, prefix: &str, a: ListArgs) -> Result<()> {
    let mut q = Query::new();
    q.filters(&parse_filters(&a.filter)?);
    let all = call(env, Method::GET, prefix, &q, None).await?;
    let rows: Vec<Value> = all
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            json!({
                "ID": s["ID"],
                "Name": s["Spec"]["Name"],
                "Driver": s["Spec"]["Driver"]["Name"].as_str().unwrap_or_default(),
                "CreatedAt": s["CreatedAt"],
                "UpdatedAt": s["UpdatedAt"],
            })
        })
        .collect();
    let default = if prefix == "/secrets" {
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}"
    } else {
        "table {{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}"
    };
    let format = Format::for_list(a.quiet, "ID", a.format.as_deref(), default);
    output::out(&format.render(&rows, HEADERS)?);
    Ok(())
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    /// Print the information in a human friendly format
    #[arg(long)]
    pub pretty: bool,
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}
