//! `berth stack`: compose files deployed as swarm services, computed client-side as the
//! docker CLI's `stack` does (the daemon has no stack object: a stack is the services,
//! networks, secrets and configs labelled `com.docker.stack.namespace=NAME`), so `docker
//! stack` and `berth stack` see and manage the same stacks.

mod convert;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_client::{Body, Query};
use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};

use self::convert::{FileObject, NAMESPACE, Stack};
use super::Env;
use super::service::{ListArgs, PsArgs};
use super::swarm::call;
use crate::format::Format;
use crate::output::{self, StatusError};

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Deploy a new stack or update an existing stack
    #[command(visible_alias = "up")]
    Deploy(DeployArgs),
    /// List stacks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// List the tasks in the stack
    Ps(StackPsArgs),
    /// Remove one or more stacks
    #[command(visible_aliases = ["remove", "down"])]
    Rm(RmArgs),
    /// List the services in the stack
    Services(ServicesArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Path to a Compose file, or "-" to read from stdin
    #[arg(
        short = 'c',
        long = "compose-file",
        value_name = "strings",
        value_delimiter = ','
    )]
    pub compose_file: Vec<PathBuf>,
    /// Send registry authentication details to Swarm agents
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Prune services that are no longer referenced
    #[arg(long)]
    pub prune: bool,
    /// Query the registry to resolve image digest and supported platforms ("always", "changed", "never")
    #[arg(long, value_name = "string", default_value = "always")]
    pub resolve_image: String,
    /// Exit immediately instead of waiting for the stack services to converge
    #[arg(short, long, value_name = "bool", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub detach: Option<bool>,
    /// Suppress progress output
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "STACK")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct StackPsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Do not map IDs to Names
    #[arg(long)]
    pub no_resolve: bool,
    /// Only display task IDs
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "STACK")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub list: ListArgs,
    #[arg(value_name = "STACK")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not wait for stack removal
    #[arg(short, long, value_name = "bool", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    pub detach: bool,
    #[arg(required = true, value_name = "STACK")]
    pub names: Vec<String>,
}

pub async fn run(env: &Env, command: StackCommand) -> Result<()> {
    match command {
        StackCommand::Deploy(a) => deploy(env, a).await,
        StackCommand::Ls(a) => ls(env, a).await,
        StackCommand::Ps(a) => ps(env, a).await,
        StackCommand::Rm(a) => rm(env, a).await,
        StackCommand::Services(a) => services(env, a).await,
    }
}

/// The docker CLI's check: empty, or only blanks and quotes.
fn validate_name(name: &str) -> Result<()> {
    if name
        .trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .is_empty()
    {
        bail!("invalid stack name: {name:?}");
    }
    Ok(())
}

fn label_query(namespace: &str) -> Query {
    let mut filters = berth_client::Filters::new();
    filters.add("label", format!("{NAMESPACE}={namespace}"));
    let mut q = Query::new();
    q.filters(&filters);
    q
}

/// The stack's objects of one kind (`/services`, `/networks`, `/secrets`, `/configs`).
async fn objects(env: &Env, path: &str, namespace: &str) -> Result<Vec<Value>> {
    let list = call(env, Method::GET, path, &label_query(namespace), None).await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

fn spec_name(v: &Value) -> &str {
    v["Spec"]["Name"]
        .as_str()
        .or_else(|| v["Name"].as_str())
        .unwrap_or_default()
}

/// A request with extra headers (`X-Registry-Auth`), answered with JSON.
async fn call_with_headers(
    env: &Env,
    method: Method,
    path: &str,
    query: &Query,
    body: &Value,
    headers: &[(&str, &str)],
) -> Result<Value> {
    let bytes = env
        .client()?
        .request_bytes_with_headers(
            method,
            path,
            query,
            Body::Json(serde_json::to_vec(body)?),
            headers,
        )
        .await
        .map_err(|e| anyhow::anyhow!(output::describe_client_error(&e)))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&bytes)?)
}

fn digest_warning(image: &str) -> String {
    format!(
        "image {image} could not be accessed on a registry to record\nits digest. Each node will access {image} independently,\npossibly leading to different nodes running different\nversions of the image.\n"
    )
}

/// `--resolve-image`: the image pinned to the digest its registry reports (as the docker
/// client does through `GET /distribution/NAME/json`), or a warning when it cannot be had.
async fn resolve_digest(env: &Env, image: &str, auth: Option<&str>) -> Result<String, String> {
    let client = env.client().map_err(|_| digest_warning(image))?;
    let headers: Vec<(&str, &str)> = auth.map(|a| ("X-Registry-Auth", a)).into_iter().collect();
    let bytes = client
        .request_bytes_with_headers(
            Method::GET,
            &format!("/distribution/{image}/json"),
            &Query::new(),
            Body::Empty,
            &headers,
        )
        .await
        .map_err(|_| digest_warning(image))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| digest_warning(image))?;
    let digest = v["Descriptor"]["digest"]
        .as_str()
        .ok_or_else(|| digest_warning(image))?;
    let name = image.split('@').next().unwrap_or(image);
    Ok(format!("{name}@{digest}"))
}

async fn deploy(env: &Env, a: DeployArgs) -> Result<()> {
    validate_name(&a.name)?;
    if !matches!(a.resolve_image.as_str(), "always" | "changed" | "never") {
        bail!(
            "invalid option {} for flag --resolve-image",
            a.resolve_image
        );
    }
    if a.compose_file.is_empty() {
        bail!("Specify a Compose file (with --compose-file)");
    }
    let detach = a.detach.unwrap_or(true);
    if a.detach.is_none() {
        output::err(
            "Since --detach=false was not specified, tasks will be created in the background.\nIn a future release, --detach=false will become the default.\n",
        );
    }
    let info = call(env, Method::GET, "/info", &Query::new(), None).await?;
    if info["Swarm"]["ControlAvailable"].as_bool() != Some(true) {
        bail!(
            "this node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again"
        );
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let stdin = if a.compose_file.iter().any(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the compose file from standard input")?;
        Some(text)
    } else {
        None
    };
    // The stack's name is the project name, so the loader's resource names are the stack's
    // (`STACK_KEY`).
    let project = berth_compose::load(&berth_compose::LoadOptions {
        files: a.compose_file.clone(),
        project_name: Some(a.name.clone()),
        environment: std::env::vars().collect(),
        working_dir: cwd,
        stdin,
        ..Default::default()
    })
    .map_err(|e| StatusError::error(1, e.to_string()))?;
    let ns = a.name.as_str();
    let stack = convert::convert(ns, &project)?;

    if a.prune {
        let existing = objects(env, "/services", ns).await?;
        let mut stale: Vec<&Value> = existing
            .iter()
            .filter(|s| {
                let short = spec_name(s).strip_prefix(&format!("{ns}_")).unwrap_or("");
                !stack.services.contains_key(short)
            })
            .collect();
        stale.sort_by_key(|s| spec_name(s).to_string());
        remove_services(env, &stale).await;
    }
    create_networks(env, ns, &stack).await?;
    let secret_ids = create_objects(env, "secret", &stack.secrets).await?;
    let config_ids = create_objects(env, "config", &stack.configs).await?;
    let ids = deploy_services(env, ns, &a, stack, &secret_ids, &config_ids).await?;
    if !detach {
        wait_converged(env, &ids, a.quiet).await?;
    }
    Ok(())
}

async fn create_networks(env: &Env, ns: &str, stack: &Stack) -> Result<()> {
    for name in &stack.external_networks {
        let found = call(
            env,
            Method::GET,
            &format!("/networks/{name}"),
            &Query::new(),
            None,
        )
        .await;
        match found {
            Err(_) => bail!(
                "network {name:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed"
            ),
            Ok(n) if n["Scope"] != "swarm" => bail!(
                "network {name:?} is declared as external, but it is not in the right scope: {:?} instead of \"swarm\"",
                n["Scope"].as_str().unwrap_or_default()
            ),
            Ok(_) => {}
        }
    }
    let existing: Vec<String> = objects(env, "/networks", ns)
        .await?
        .iter()
        .map(|n| n["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    for (name, body) in &stack.networks {
        if existing.contains(name) {
            continue;
        }
        output::out(&format!("Creating network {name}\n"));
        let mut body = body.clone();
        body["Name"] = json!(name);
        call(
            env,
            Method::POST,
            "/networks/create",
            &Query::new(),
            Some(&body),
        )
        .await
        .with_context(|| format!("failed to create network {name}"))?;
    }
    Ok(())
}

/// Creates (or updates) secrets or configs; returns name -> id.
async fn create_objects(
    env: &Env,
    kind: &str,
    list: &[FileObject],
) -> Result<BTreeMap<String, String>> {
    use base64::Engine as _;
    let mut ids = BTreeMap::new();
    for obj in list {
        let spec = json!({
            "Name": obj.name,
            "Labels": obj.labels,
            "Data": base64::engine::general_purpose::STANDARD.encode(&obj.data),
        });
        let path = format!("/{kind}s/{}", obj.name);
        match call(env, Method::GET, &path, &Query::new(), None).await {
            Ok(existing) => {
                let id = existing["ID"].as_str().unwrap_or_default().to_string();
                let mut q = Query::new();
                q.push("version", existing["Version"]["Index"].to_string());
                call(
                    env,
                    Method::POST,
                    &format!("/{kind}s/{id}/update"),
                    &q,
                    Some(&spec),
                )
                .await
                .with_context(|| format!("failed to update {kind} {}", obj.name))?;
                ids.insert(obj.name.clone(), id);
            }
            Err(_) => {
                output::out(&format!("Creating {kind} {}\n", obj.name));
                let r = call(
                    env,
                    Method::POST,
                    &format!("/{kind}s/create"),
                    &Query::new(),
                    Some(&spec),
                )
                .await
                .with_context(|| format!("failed to create {kind} {}", obj.name))?;
                ids.insert(
                    obj.name.clone(),
                    r["ID"].as_str().unwrap_or_default().to_string(),
                );
            }
        }
    }
    Ok(ids)
}

/// An id for each secret or config reference, looked up by name when the stack did not
/// create it (external ones).
async fn fill_ids(
    env: &Env,
    refs: &mut Value,
    kind: &str,
    known: &BTreeMap<String, String>,
) -> Result<()> {
    let Some(list) = refs.as_array_mut() else {
        return Ok(());
    };
    let (name_key, id_key) = if kind == "secret" {
        ("SecretName", "SecretID")
    } else {
        ("ConfigName", "ConfigID")
    };
    for r in list {
        let name = r[name_key].as_str().unwrap_or_default().to_string();
        let id = match known.get(&name) {
            Some(id) => id.clone(),
            None => call(
                env,
                Method::GET,
                &format!("/{kind}s/{name}"),
                &Query::new(),
                None,
            )
            .await
            .map_err(|_| anyhow::anyhow!("{kind} not found: {name}"))?["ID"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        r[id_key] = json!(id);
    }
    Ok(())
}

async fn deploy_services(
    env: &Env,
    ns: &str,
    a: &DeployArgs,
    stack: Stack,
    secret_ids: &BTreeMap<String, String>,
    config_ids: &BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let existing: BTreeMap<String, Value> = objects(env, "/services", ns)
        .await?
        .into_iter()
        .map(|s| (spec_name(&s).to_string(), s))
        .collect();
    let mut ids = Vec::new();
    for (_, mut spec) in stack.services {
        let name = spec["Name"].as_str().unwrap_or_default().to_string();
        let image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let cs = &mut spec["TaskTemplate"]["ContainerSpec"];
        fill_ids(env, &mut cs["Secrets"], "secret", secret_ids).await?;
        fill_ids(env, &mut cs["Configs"], "config", config_ids).await?;
        let auth = if a.with_registry_auth {
            crate::credentials::registry_auth_for(&env.config, &image)
        } else {
            None
        };
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|v| ("X-Registry-Auth", v))
            .into_iter()
            .collect();
        let mut warnings: Vec<String> = Vec::new();
        if let Some(svc) = existing.get(&name) {
            let id = svc["ID"].as_str().unwrap_or_default().to_string();
            output::out(&format!("Updating service {name} (id: {id})\n"));
            let previous = &svc["Spec"];
            let query_registry = match a.resolve_image.as_str() {
                "always" => true,
                "changed" => previous["Labels"][convert::IMAGE].as_str() != Some(&image),
                _ => false,
            };
            if query_registry {
                match resolve_digest(env, &image, auth.as_deref()).await {
                    Ok(pinned) => spec["TaskTemplate"]["ContainerSpec"]["Image"] = json!(pinned),
                    Err(w) => warnings.push(w),
                }
            } else if previous["Labels"][convert::IMAGE].as_str() == Some(&image) {
                // Unchanged: keep the digest an earlier deploy pinned.
                spec["TaskTemplate"]["ContainerSpec"]["Image"] =
                    previous["TaskTemplate"]["ContainerSpec"]["Image"].clone();
            }
            // No --force in stack deploy: the service's ForceUpdate is kept.
            spec["TaskTemplate"]["ForceUpdate"] = previous["TaskTemplate"]["ForceUpdate"].clone();
            let mut q = Query::new();
            q.push("version", svc["Version"]["Index"].to_string());
            let r = call_with_headers(
                env,
                Method::POST,
                &format!("/services/{id}/update"),
                &q,
                &spec,
                &headers,
            )
            .await
            .with_context(|| format!("failed to update service {name}"))?;
            warnings.extend(strings(&r["Warnings"]));
            ids.push(id);
        } else {
            output::out(&format!("Creating service {name}\n"));
            if a.resolve_image != "never" {
                match resolve_digest(env, &image, auth.as_deref()).await {
                    Ok(pinned) => spec["TaskTemplate"]["ContainerSpec"]["Image"] = json!(pinned),
                    Err(w) => warnings.push(w),
                }
            }
            let r = call_with_headers(
                env,
                Method::POST,
                "/services/create",
                &Query::new(),
                &spec,
                &headers,
            )
            .await
            .with_context(|| format!("failed to create service {name}"))?;
            warnings.extend(strings(&r["Warnings"]));
            ids.push(r["ID"].as_str().unwrap_or_default().to_string());
        }
        for w in warnings {
            output::err(&format!("{}\n", w.trim_end_matches('\n')));
        }
    }
    Ok(ids)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// `--detach=false`: until every service runs its desired number of tasks.
async fn wait_converged(env: &Env, ids: &[String], quiet: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    for id in ids {
        loop {
            let mut q = Query::new();
            q.flag("status", true);
            let list = call(env, Method::GET, "/services", &q, None).await?;
            let status = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["ID"] == id.as_str())
                .map(|s| s["ServiceStatus"].clone())
                .unwrap_or_default();
            let (running, desired) = (
                status["RunningTasks"].as_u64().unwrap_or(0),
                status["DesiredTasks"].as_u64().unwrap_or(0),
            );
            if desired > 0 && running >= desired {
                if !quiet {
                    output::out(&format!("{id}: {running}/{desired} running\n"));
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("{id}: service did not converge ({running}/{desired} running)");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

async fn ls(env: &Env, a: LsArgs) -> Result<()> {
    let mut filters = berth_client::Filters::new();
    filters.add("label", NAMESPACE);
    let mut q = Query::new();
    q.filters(&filters);
    let services = call(env, Method::GET, "/services", &q, None).await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in services.as_array().into_iter().flatten() {
        let Some(ns) = s["Spec"]["Labels"][NAMESPACE].as_str() else {
            bail!(
                "cannot get label {NAMESPACE} for service {}",
                s["ID"].as_str().unwrap_or_default()
            );
        };
        *counts.entry(ns.to_string()).or_default() += 1;
    }
    let rows: Vec<Value> = counts
        .into_iter()
        .map(|(name, n)| json!({"Name": name, "Services": n.to_string()}))
        .collect();
    let format = Format::for_list(
        false,
        "Name",
        a.format.as_deref(),
        "table {{.Name}}\t{{.Services}}",
    );
    output::out(&format.render(&rows, &[("Name", "NAME"), ("Services", "SERVICES")])?);
    Ok(())
}

async fn services(env: &Env, a: ServicesArgs) -> Result<()> {
    validate_name(&a.name)?;
    let mut list = a.list;
    list.filter.push(format!("label={NAMESPACE}={}", a.name));
    let mut q = Query::new();
    q.filters(&super::parse_filters(&list.filter)?);
    let found = call(env, Method::GET, "/services", &q, None).await?;
    if found.as_array().is_none_or(Vec::is_empty) {
        output::err(&format!("Nothing found in stack: {}\n", a.name));
        return Ok(());
    }
    super::service::list(env, list).await
}

async fn ps(env: &Env, a: StackPsArgs) -> Result<()> {
    validate_name(&a.name)?;
    let mut filter = a.filter.clone();
    filter.push(format!("label={NAMESPACE}={}", a.name));
    let mut q = Query::new();
    q.filters(&super::parse_filters(&filter)?);
    let tasks = call(env, Method::GET, "/tasks", &q, None).await?;
    if tasks.as_array().is_none_or(Vec::is_empty) {
        bail!("nothing found in stack: {}", a.name);
    }
    let mut names: Vec<String> = objects(env, "/services", &a.name)
        .await?
        .iter()
        .map(|s| spec_name(s).to_string())
        .collect();
    names.sort();
    super::service::ps(
        env,
        PsArgs {
            filter: a.filter,
            format: a.format,
            quiet: a.quiet,
            no_trunc: a.no_trunc,
            services: names,
        },
    )
    .await
}

async fn remove_services(env: &Env, list: &[&Value]) -> bool {
    let mut failed = false;
    for s in list {
        output::out(&format!("Removing service {}\n", spec_name(s)));
        let id = s["ID"].as_str().unwrap_or_default();
        if let Err(e) = call(
            env,
            Method::DELETE,
            &format!("/services/{id}"),
            &Query::new(),
            None,
        )
        .await
        {
            output::err(&format!("Failed to remove service {id}: {e}"));
            failed = true;
        }
    }
    failed
}

async fn rm(env: &Env, a: RmArgs) -> Result<()> {
    for name in &a.names {
        validate_name(name)?;
    }
    let mut errors = Vec::new();
    for ns in &a.names {
        let mut sorted = Vec::new();
        for path in ["/services", "/networks", "/secrets", "/configs"] {
            let mut list = objects(env, path, ns).await?;
            list.sort_by_key(|v| spec_name(v).to_string());
            sorted.push(list);
        }
        if sorted.iter().all(Vec::is_empty) {
            output::err(&format!("Nothing found in stack: {ns}\n"));
            continue;
        }
        let services: Vec<&Value> = sorted[0].iter().collect();
        let mut failed = remove_services(env, &services).await;
        for (kind, list) in [
            ("secret", &sorted[2]),
            ("config", &sorted[3]),
            ("network", &sorted[1]),
        ] {
            for obj in list {
                let id = obj["ID"]
                    .as_str()
                    .or_else(|| obj["Id"].as_str())
                    .unwrap_or_default();
                output::out(&format!("Removing {kind} {}\n", spec_name(obj)));
                if let Err(e) = call(
                    env,
                    Method::DELETE,
                    &format!("/{kind}s/{id}"),
                    &Query::new(),
                    None,
                )
                .await
                {
                    output::err(&format!("Failed to remove {kind} {id}: {e}"));
                    failed = true;
                }
            }
        }
        if failed {
            errors.push(format!("failed to remove some resources from stack: {ns}"));
            continue;
        }
        if !a.detach {
            // Until the stack's tasks are gone.
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let mut q = Query::new();
                let mut filters = berth_client::Filters::new();
                filters.add("label", format!("{NAMESPACE}={ns}"));
                q.filters(&filters);
                let tasks = call(env, Method::GET, "/tasks", &q, None).await?;
                if tasks.as_array().is_none_or(Vec::is_empty) {
                    break;
                }
                if Instant::now() > deadline {
                    errors.push(format!("failed to wait on tasks of stack: {ns}"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    super::fail_if(errors)
}
