//! Service commands: `service create`, `ls`, `ps`, `inspect`, `scale`, `update`, `rm`, with
//! docker's flags for what Berth's swarm does.

use anyhow::{Result, bail};
use berth_client::Query;
use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};

use super::swarm::{call, inspect_objects};
use super::{Env, fail_if, parse_filters};
use crate::format::Format;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a new service
    Create(Box<CreateArgs>),
    /// List services
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// List the tasks of one or more services
    Ps(PsArgs),
    /// Display detailed information on one or more services
    Inspect(InspectArgs),
    /// Scale one or multiple replicated services
    Scale(ScaleArgs),
    /// Update a service
    Update(Box<UpdateArgs>),
    /// Remove one or more services
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Fetch the logs of a service or task
    Logs(super::service_more::LogsArgs),
    /// Revert changes to a service's configuration
    Rollback(super::service_more::RollbackArgs),
}

pub async fn run(env: &Env, command: ServiceCommand) -> Result<()> {
    match command {
        ServiceCommand::Create(a) => create(env, *a).await,
        ServiceCommand::Ls(a) => list(env, a).await,
        ServiceCommand::Ps(a) => ps(env, a).await,
        ServiceCommand::Inspect(a) => {
            inspect_objects(env, "/services", &a.names, a.format.as_deref()).await
        }
        ServiceCommand::Scale(a) => scale(env, a).await,
        ServiceCommand::Update(a) => update(env, *a).await,
        ServiceCommand::Rm(a) => remove(env, a).await,
        ServiceCommand::Logs(a) => super::service_more::logs(env, a).await,
        ServiceCommand::Rollback(a) => super::service_more::rollback(env, a).await,
    }
}

pub(super) fn duration_ns(text: &str, flag: &str) -> Result<u64> {
    berth_api::duration::parse_go_duration(text)
        .map(|n| n as u64)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "invalid argument \"{text}\" for \"{flag}\" flag: time: invalid duration \"{text}\""
            )
        })
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Service name
    #[arg(long, value_name = "string")]
    pub name: Option<String>,
    /// Number of tasks
    #[arg(long, value_name = "uint")]
    pub replicas: Option<u64>,
    /// Service mode ("replicated", "global", "replicated-job", "global-job")
    #[arg(long, value_name = "string", default_value = "replicated")]
    pub mode: String,
    /// Number of job tasks to run concurrently (default equal to --replicas)
    #[arg(long, value_name = "uint")]
    pub max_concurrent: Option<u64>,
    #[command(flatten)]
    pub update_config: super::service_more::UpdateConfigFlags,
    #[command(flatten)]
    pub privileges: super::service_privileges::CreateFlags,
    #[command(flatten)]
    pub flags: super::service_flags::ServiceCreateFlags,
    /// Set environment variables
    #[arg(short, long, value_name = "list")]
    pub env: Vec<String>,
    /// Service labels
    #[arg(short, long, value_name = "list")]
    pub label: Vec<String>,
    /// Container labels
    #[arg(long, value_name = "list")]
    pub container_label: Vec<String>,
    /// Placement constraints
    #[arg(long, value_name = "list")]
    pub constraint: Vec<String>,
    /// Specify secrets to expose to the service
    #[arg(long, value_name = "secret")]
    pub secret: Vec<String>,
    /// Specify configurations to expose to the service
    #[arg(long, value_name = "config")]
    pub config: Vec<String>,
    /// Maximum number of tasks updated simultaneously (0 to update all at once)
    #[arg(long, value_name = "uint", default_value_t = 1)]
    pub update_parallelism: u64,
    /// Restart when condition is met ("none", "on-failure", "any")
    #[arg(long, value_name = "string")]
    pub restart_condition: Option<String>,
    /// Delay between restart attempts (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub restart_delay: Option<String>,
    /// Maximum number of restarts before giving up
    #[arg(long, value_name = "uint")]
    pub restart_max_attempts: Option<u64>,
    /// Time to wait before force killing a container (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub stop_grace_period: Option<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "string")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long, value_name = "string")]
    pub user: Option<String>,
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    pub detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "IMAGE")]
    pub image: String,
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

fn labels(items: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for i in items {
        let (k, v) = i.split_once('=').unwrap_or((i, ""));
        m.insert(k.to_string(), json!(v));
    }
    Value::Object(m)
}

/// `--secret NAME` or `--secret source=NAME,target=FILE,mode=0400`, resolved to ids.
async fn references(env: &Env, items: &[String], kind: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for item in items {
        let mut source = item.as_str();
        let mut target = None;
        let mut mode = 0o444u64;
        if item.contains('=') {
            for part in item.split(',') {
                match part.split_once('=') {
                    Some(("source" | "src", v)) => source = v,
                    Some(("target", v)) => target = Some(v.to_string()),
                    Some(("mode", v)) => mode = u64::from_str_radix(v, 8).unwrap_or(0o444),
                    _ => {}
                }
            }
        }
        let obj = call(
            env,
            Method::GET,
            &format!("/{kind}s/{source}"),
            &Query::new(),
            None,
        )
        .await?;
        let target = target.unwrap_or_else(|| {
            if kind == "config" {
                format!("/{source}")
            } else {
                source.to_string()
            }
        });
        let (id_key, name_key) = if kind == "config" {
            ("ConfigID", "ConfigName")
        } else {
            ("SecretID", "SecretName")
        };
        out.push(json!({
            id_key: obj["ID"],
            name_key: source,
            "File": {"Name": target, "UID": "0", "GID": "0", "Mode": mode},
        }));
    }
    Ok(out)
}

async fn create(env: &Env, a: CreateArgs) -> Result<()> {
    let mut cs = json!({"Image": a.image, "Labels": labels(&a.container_label)});
    if !a.args.is_empty() {
        cs["Args"] = json!(a.args);
    }
    if !a.env.is_empty() {
        cs["Env"] = json!(a.env);
    }
    if let Some(w) = a.workdir {
        cs["Dir"] = json!(w);
    }
    if let Some(u) = a.user {
        cs["User"] = json!(u);
    }
    if let Some(g) = &a.stop_grace_period {
        cs["StopGracePeriod"] = json!(duration_ns(g, "--stop-grace-period")?);
    }
    if !a.secret.is_empty() {
        cs["Secrets"] = json!(references(env, &a.secret, "secret").await?);
    }
    if !a.config.is_empty() {
        cs["Configs"] = json!(references(env, &a.config, "config").await?);
    }
    a.privileges.apply(&mut cs)?;
    let mut restart = json!({});
    if let Some(c) = &a.restart_condition {
        restart["Condition"] = json!(c);
    }
    if let Some(d) = &a.restart_delay {
        restart["Delay"] = json!(duration_ns(d, "--restart-delay")?);
    }
    if let Some(m) = a.restart_max_attempts {
        restart["MaxAttempts"] = json!(m);
    }
    let mode = super::service_more::mode(&a.mode, a.replicas, a.max_concurrent)?;
    let mut spec = json!({
        "Name": a.name.unwrap_or_default(),
        "Labels": labels(&a.label),
        "TaskTemplate": {
            "ContainerSpec": cs,
            "RestartPolicy": restart,
            "Placement": {"Constraints": a.constraint},
        },
        "Mode": mode,
        "UpdateConfig": {"Parallelism": a.update_parallelism, "Order": "stop-first", "FailureAction": "pause"},
        "RollbackConfig": {"Parallelism": 1, "Order": "stop-first", "FailureAction": "pause"},
    });
    a.flags.apply(env, &mut spec).await?;
    a.update_config.apply(&mut spec)?;
    let auth = a
        .flags
        .container
        .with_registry_auth
        .then(|| crate::credentials::registry_auth_for(&env.config, &a.image))
        .flatten();
    let r = super::service_flags::call_with_auth(
        env,
        Method::POST,
        "/services/create",
        &Query::new(),
        &spec,
        auth.as_deref(),
    )
    .await?;
    output::out(&format!("{}\n", r["ID"].as_str().unwrap_or_default()));
    Ok(())
}

pub use super::swarm_list::ListArgs;

const LS_HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Mode", "MODE"),
    ("Replicas", "REPLICAS"),
    ("Image", "IMAGE"),
    ("Ports", "PORTS"),
];

pub(crate) async fn list(env: &Env, a: ListArgs) -> Result<()> {
    let mut q = Query::new();
    q.filters(&parse_filters(&a.filter)?);
    q.flag("status", true);
    let services = call(env, Method::GET, "/services", &q, None).await?;
    // Sorted by name, as the docker CLI lists them.
    let mut sorted: Vec<&Value> = services.as_array().into_iter().flatten().collect();
    sorted.sort_by(|a, b| a["Spec"]["Name"].as_str().cmp(&b["Spec"]["Name"].as_str()));
    let rows: Vec<Value> = sorted
        .into_iter()
        .map(|s| {
            json!({
                "ID": s["ID"].as_str().unwrap_or_default().chars().take(12).collect::<String>(),
                "Name": s["Spec"]["Name"],
                "Mode": super::service_more::mode_column(s),
                "Replicas": super::service_more::replicas_column(s),
                "Image": s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].as_str().unwrap_or_default().split('@').next(),
                "Ports": "",
            })
        })
        .collect();
    let format = Format::for_list(
        a.quiet,
        "ID",
        a.format.as_deref(),
        "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}",
    );
    output::out(&format.render(&rows, LS_HEADERS)?);
    Ok(())
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Only display task IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(required = true, value_name = "SERVICE")]
    pub services: Vec<String>,
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Image", "IMAGE"),
    ("Node", "NODE"),
    ("DesiredState", "DESIRED STATE"),
    ("CurrentState", "CURRENT STATE"),
    ("Error", "ERROR"),
    ("Ports", "PORTS"),
];

fn title(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn ago(timestamp: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
        return String::new();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    let text = match secs {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".to_string(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s => format!("{} hours", s / 3600),
    };
    format!("{text} ago")
}

pub(crate) async fn ps(env: &Env, a: PsArgs) -> Result<()> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for name in &a.services {
        let service = match call(
            env,
            Method::GET,
            &format!("/services/{name}"),
            &Query::new(),
            None,
        )
        .await
        {
            Ok(s) => s,
            Err(_) => {
                errors.push(format!("no such service: {name}"));
                continue;
            }
        };
        let mut filters = parse_filters(&a.filter)?;
        filters.add(
            "service".to_string(),
            service["ID"].as_str().unwrap_or_default(),
        );
        let mut q = Query::new();
        q.filters(&filters);
        let tasks = call(env, Method::GET, "/tasks", &q, None).await?;
        let mut tasks: Vec<Value> = tasks.as_array().cloned().unwrap_or_default();
        tasks.sort_by(|x, y| {
            (x["Slot"].as_u64(), y["Status"]["Timestamp"].as_str())
                .cmp(&(y["Slot"].as_u64(), x["Status"]["Timestamp"].as_str()))
        });
        let sname = service["Spec"]["Name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut last_slot = None;
        for t in tasks {
            let node_id = t["NodeID"].as_str().unwrap_or_default();
            let node = if node_id.is_empty() {
                String::new()
            } else {
                call(
                    env,
                    Method::GET,
                    &format!("/nodes/{node_id}"),
                    &Query::new(),
                    None,
                )
                .await
                .map(|n| {
                    n["Description"]["Hostname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .unwrap_or_else(|_| node_id.to_string())
            };
            let slot = t["Slot"].as_u64();
            let key = slot
                .map(|s| s.to_string())
                .unwrap_or_else(|| node_id.to_string());
            let prefix = if last_slot.as_ref() == Some(&key) {
                " \\_ "
            } else {
                ""
            };
            last_slot = Some(key.clone());
            let id = t["ID"].as_str().unwrap_or_default();
            rows.push(json!({
                "ID": if a.no_trunc { id.to_string() } else { id.chars().take(12).collect() },
                "Name": format!("{prefix}{sname}.{key}"),
                "Image": t["Spec"]["ContainerSpec"]["Image"].as_str().unwrap_or_default().split('@').next(),
                "Node": node,
                "DesiredState": title(t["DesiredState"].as_str().unwrap_or_default()),
                "CurrentState": format!("{} {}", title(t["Status"]["State"].as_str().unwrap_or_default()), ago(t["Status"]["Timestamp"].as_str().unwrap_or_default())),
                "Error": t["Status"]["Err"].as_str().map(|e| format!("\"{e}\"")).unwrap_or_default(),
                "Ports": "",
            }));
        }
    }
    let format = Format::for_list(
        a.quiet,
        "ID",
        a.format.as_deref(),
        "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}",
    );
    if !rows.is_empty() || errors.is_empty() {
        output::out(&format.render(&rows, PS_HEADERS)?);
    }
    fail_if(errors)
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    /// Print the information in a human friendly format
    #[arg(long)]
    pub pretty: bool,
    #[arg(required = true, value_name = "SERVICE")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    pub detach: bool,
    #[arg(required = true, value_name = "SERVICE=REPLICAS")]
    pub pairs: Vec<String>,
}

/// Reads a service, changes its spec, and writes it back naming the version it read.
async fn change(
    env: &Env,
    name: &str,
    auth: Option<&str>,
    f: impl FnOnce(&mut Value) -> Result<()>,
) -> Result<()> {
    let s = call(
        env,
        Method::GET,
        &format!("/services/{name}"),
        &Query::new(),
        None,
    )
    .await?;
    let mut spec = s["Spec"].clone();
    f(&mut spec)?;
    let mut q = Query::new();
    q.push("version", s["Version"]["Index"].to_string());
    let path = format!("/services/{}/update", s["ID"].as_str().unwrap_or_default());
    super::service_flags::call_with_auth(env, Method::POST, &path, &q, &spec, auth).await?;
    Ok(())
}

async fn scale(env: &Env, a: ScaleArgs) -> Result<()> {
    let mut errors = Vec::new();
    for pair in &a.pairs {
        let Some((name, n)) = pair.split_once('=') else {
            bail!("invalid scale specifier '{pair}'.\nSee 'berth service scale --help'.");
        };
        let n: u64 = n
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid replicas value {n}: invalid syntax"))?;
        let outcome = change(env, name, None, |spec| {
            if spec["Mode"].get("Replicated").is_none() {
                bail!("scale can only be used with replicated or replicated-job mode");
            }
            spec["Mode"]["Replicated"]["Replicas"] = json!(n);
            Ok(())
        })
        .await;
        match outcome {
            Ok(()) => output::out(&format!("{name} scaled to {n}\n")),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    fail_if(errors)
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Service image tag
    #[arg(long, value_name = "string")]
    pub image: Option<String>,
    /// Number of tasks
    #[arg(long, value_name = "uint")]
    pub replicas: Option<u64>,
    /// Add or update an environment variable
    #[arg(long, value_name = "list")]
    pub env_add: Vec<String>,
    /// Remove an environment variable
    #[arg(long, value_name = "list")]
    pub env_rm: Vec<String>,
    /// Add or update a placement constraint
    #[arg(long, value_name = "list")]
    pub constraint_add: Vec<String>,
    /// Remove a constraint
    #[arg(long, value_name = "list")]
    pub constraint_rm: Vec<String>,
    /// Maximum number of tasks updated simultaneously (0 to update all at once)
    #[arg(long, value_name = "uint")]
    pub update_parallelism: Option<u64>,
    /// Force update even if no changes require it
    #[arg(long)]
    pub force: bool,
    /// Rollback to previous specification
    #[arg(long)]
    pub rollback: bool,
    #[command(flatten)]
    pub update_config: super::service_more::UpdateConfigFlags,
    #[command(flatten)]
    pub privileges: super::service_privileges::UpdateFlags,
    #[command(flatten)]
    pub flags: super::service_flags::ServiceUpdateFlags,
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    pub detach: bool,
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

async fn update(env: &Env, a: UpdateArgs) -> Result<()> {
    if a.rollback {
        let s = call(
            env,
            Method::GET,
            &format!("/services/{}", a.service),
            &Query::new(),
            None,
        )
        .await?;
        let mut q = Query::new();
        q.push("version", s["Version"]["Index"].to_string());
        q.push("rollback", "previous");
        let path = format!("/services/{}/update", s["ID"].as_str().unwrap_or_default());
        call(env, Method::POST, &path, &q, Some(&s["Spec"])).await?;
        output::out(&format!("{}\n", a.service));
        return Ok(());
    }
    let networks = a.flags.prepare(env).await?;
    let auth = if a.flags.container.with_registry_auth {
        super::service_flags::update_auth(env, &a.service, a.image.as_deref()).await?
    } else {
        None
    };
    change(env, &a.service, auth.as_deref(), |spec| {
        a.flags.apply(spec, networks)?;
        let cs = &mut spec["TaskTemplate"]["ContainerSpec"];
        if let Some(i) = &a.image {
            cs["Image"] = json!(i);
        }
        a.privileges.apply(cs)?;
        let mut envs: Vec<String> = cs["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        for add in &a.env_add {
            let key = add.split('=').next().unwrap_or_default();
            envs.retain(|e| e.split('=').next() != Some(key));
            envs.push(add.clone());
        }
        envs.retain(|e| {
            !a.env_rm
                .iter()
                .any(|k| e.split('=').next() == Some(k.as_str()))
        });
        // Untouched unless asked, as docker leaves a spec without `Env` without one.
        if !a.env_add.is_empty() || !a.env_rm.is_empty() {
            cs["Env"] = json!(envs);
        }
        let mut constraints: Vec<String> = spec["TaskTemplate"]["Placement"]["Constraints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        constraints.extend(a.constraint_add.iter().cloned());
        constraints.retain(|c| !a.constraint_rm.contains(c));
        if !a.constraint_add.is_empty() || !a.constraint_rm.is_empty() {
            spec["TaskTemplate"]["Placement"]["Constraints"] = json!(constraints);
        }
        if let Some(n) = a.replicas {
            if spec["Mode"].get("Replicated").is_none() {
                bail!("replicas can only be used with replicated or replicated-job mode");
            }
            spec["Mode"]["Replicated"]["Replicas"] = json!(n);
        }
        if let Some(p) = a.update_parallelism {
            spec["UpdateConfig"]["Parallelism"] = json!(p);
        }
        a.update_config.apply(spec)?;
        if a.force {
            let n = spec["TaskTemplate"]["ForceUpdate"].as_u64().unwrap_or(0);
            spec["TaskTemplate"]["ForceUpdate"] = json!(n + 1);
        }
        Ok(())
    })
    .await?;
    output::out(&format!("{}\n", a.service));
    Ok(())
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true, value_name = "SERVICE")]
    pub services: Vec<String>,
}

async fn remove(env: &Env, a: RmArgs) -> Result<()> {
    let mut errors = Vec::new();
    for name in &a.services {
        match call(
            env,
            Method::DELETE,
            &format!("/services/{name}"),
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
