//! Node commands: `node ls`, `inspect`, `update`, `promote`, `demote`, `rm`.

use anyhow::Result;
use berth_client::Query;
use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};

use super::Env;
use super::parse_filters;
use super::swarm::{call, inspect_objects};
use crate::format::Format;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes in the swarm
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more nodes
    Inspect(InspectArgs),
    /// Update a node
    Update(UpdateArgs),
    /// Promote one or more nodes to manager in the swarm
    Promote(RoleArgs),
    /// Demote one or more nodes from manager in the swarm
    Demote(RoleArgs),
    /// Remove one or more nodes from the swarm
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct RoleArgs {
    #[arg(required = true, value_name = "NODE")]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force remove a node from the swarm
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "NODE")]
    pub nodes: Vec<String>,
}

/// `node promote`/`demote`: the spec's role, with docker's messages.
async fn set_role(env: &Env, nodes: Vec<String>, role: &str) -> Result<()> {
    for name in nodes {
        let id = resolve_self(env, vec![name.clone()]).await?.remove(0);
        let node = call(
            env,
            Method::GET,
            &format!("/nodes/{id}"),
            &Query::new(),
            None,
        )
        .await?;
        if node["Spec"]["Role"] == role {
            output::out(&format!("Node {name} is already a {role}.\n"));
            continue;
        }
        let mut spec = node["Spec"].clone();
        spec["Role"] = json!(role);
        let mut q = Query::new();
        q.push("version", node["Version"]["Index"].to_string());
        let path = format!("/nodes/{}/update", node["ID"].as_str().unwrap_or_default());
        call(env, Method::POST, &path, &q, Some(&spec)).await?;
        if role == "manager" {
            output::out(&format!(
                "Node {name} promoted to a manager in the swarm.\n"
            ));
        } else {
            output::out(&format!("Manager {name} demoted in the swarm.\n"));
        }
    }
    Ok(())
}

async fn remove(env: &Env, a: RmArgs) -> Result<()> {
    let mut q = Query::new();
    if a.force {
        q.push("force", "1");
    }
    let mut failed = Vec::new();
    for name in a.nodes {
        match call(env, Method::DELETE, &format!("/nodes/{name}"), &q, None).await {
            Ok(_) => output::out(&format!("{name}\n")),
            Err(e) => failed.push(format!("{e}")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(failed.join("\n")))
    }
}

pub async fn run(env: &Env, command: NodeCommand) -> Result<()> {
    match command {
        NodeCommand::Ls(a) => list(env, a).await,
        NodeCommand::Inspect(a) => {
            let names = resolve_self(env, a.names).await?;
            inspect_objects(env, "/nodes", &names, a.format.as_deref()).await
        }
        NodeCommand::Update(a) => update(env, a).await,
        NodeCommand::Promote(a) => set_role(env, a.nodes, "manager").await,
        NodeCommand::Demote(a) => set_role(env, a.nodes, "worker").await,
        NodeCommand::Rm(a) => remove(env, a).await,
    }
}

/// `self` names the node the CLI talks to, as in docker.
async fn resolve_self(env: &Env, names: Vec<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in names {
        if n == "self" {
            let info = call(env, Method::GET, "/info", &Query::new(), None).await?;
            out.push(
                info["Swarm"]["NodeID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        } else {
            out.push(n);
        }
    }
    Ok(out)
}

pub use super::swarm_list::ListArgs;

const HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Hostname", "HOSTNAME"),
    ("Status", "STATUS"),
    ("Availability", "AVAILABILITY"),
    ("ManagerStatus", "MANAGER STATUS"),
    ("EngineVersion", "ENGINE VERSION"),
    ("Self", "SELF"),
];

fn title(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

async fn list(env: &Env, a: ListArgs) -> Result<()> {
    let mut q = Query::new();
    q.filters(&parse_filters(&a.filter)?);
    let nodes = call(env, Method::GET, "/nodes", &q, None).await?;
    let info = call(env, Method::GET, "/info", &Query::new(), None).await?;
    let me = info["Swarm"]["NodeID"].as_str().unwrap_or_default();
    let rows: Vec<Value> = nodes
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let is_self = n["ID"] == me;
            let manager = match &n["ManagerStatus"] {
                Value::Null => String::new(),
                m if m["Leader"] == true => "Leader".into(),
                m => title(m["Reachability"].as_str().unwrap_or_default()),
            };
            json!({
                "ID": format!("{}{}", n["ID"].as_str().unwrap_or_default(), if is_self { " *" } else { "" }),
                "Hostname": n["Description"]["Hostname"],
                "Status": title(n["Status"]["State"].as_str().unwrap_or_default()),
                "Availability": title(n["Spec"]["Availability"].as_str().unwrap_or_default()),
                "ManagerStatus": manager,
                "EngineVersion": n["Description"]["Engine"]["EngineVersion"],
                "Self": is_self,
            })
        })
        .collect();
    let format = Format::for_list(
        a.quiet,
        "ID",
        a.format.as_deref(),
        "table {{.ID}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}",
    );
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
    #[arg(required = true, value_name = "NODE")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long, value_name = "string")]
    pub availability: Option<String>,
    /// Role of the node ("worker", "manager")
    #[arg(long, value_name = "string")]
    pub role: Option<String>,
    /// Add or update a node label (key=value)
    #[arg(long, value_name = "list")]
    pub label_add: Vec<String>,
    /// Remove a node label if exists
    #[arg(long, value_name = "list")]
    pub label_rm: Vec<String>,
    #[arg(value_name = "NODE")]
    pub node: String,
}

async fn update(env: &Env, a: UpdateArgs) -> Result<()> {
    let id = resolve_self(env, vec![a.node.clone()]).await?.remove(0);
    let node = call(
        env,
        Method::GET,
        &format!("/nodes/{id}"),
        &Query::new(),
        None,
    )
    .await?;
    let mut spec = node["Spec"].clone();
    if let Some(v) = a.availability {
        spec["Availability"] = json!(v.to_lowercase());
    }
    if let Some(r) = a.role {
        spec["Role"] = json!(r.to_lowercase());
    }
    if !spec["Labels"].is_object() {
        spec["Labels"] = json!({});
    }
    for l in &a.label_add {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        spec["Labels"][k] = json!(v);
    }
    for k in &a.label_rm {
        if let Some(m) = spec["Labels"].as_object_mut() {
            m.remove(k);
        }
    }
    let mut q = Query::new();
    q.push("version", node["Version"]["Index"].to_string());
    let path = format!("/nodes/{}/update", node["ID"].as_str().unwrap_or_default());
    call(env, Method::POST, &path, &q, Some(&spec)).await?;
    output::out(&format!("{}\n", a.node));
    Ok(())
}
