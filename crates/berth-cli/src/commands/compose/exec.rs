//! `compose exec`, `run` and `cp`: a service's container resolved by its labels, then the
//! same code paths as `berth exec`, `berth start -a` and `berth cp`.

use std::io::IsTerminal;

use anyhow::Result;
use berth_client::ContainerRemoveOptions;
use berth_compose::labels;
use berth_compose::reconcile::apply::ApplyOptions;
use berth_compose::reconcile::convert::{ReplicaSpec, create_request, endpoint, ordered_networks};
use berth_compose::reconcile::{Engine, UpOptions, apply, plan};
use clap::Args;

use super::{Ctx, container_name, containers, progress_printer};
use crate::commands::{container, cp as berth_cp};
use crate::output::{StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(override_usage = "berth compose exec [OPTIONS] SERVICE COMMAND [ARGS...]")]
pub struct ExecArgs {
    /// Detached mode: Run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short, long, value_name = "stringArray")]
    pub env: Vec<String>,
    /// Index of the container if service has multiple replicas
    #[arg(long, value_name = "int", default_value_t = 1)]
    pub index: u32,
    /// Disable pseudo-TTY allocation. By default `docker compose exec` allocates a TTY
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Give extended privileges to the process
    #[arg(long)]
    pub privileged: bool,
    /// Run the command as this user
    #[arg(short, long, value_name = "string")]
    pub user: Option<String>,
    /// Path to workdir directory for this command
    #[arg(short, long, value_name = "string")]
    pub workdir: Option<String>,
    pub service: String,
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "berth compose run [OPTIONS] SERVICE [COMMAND] [ARGS...]")]
pub struct RunArgs {
    /// Build image before starting container
    #[arg(long)]
    pub build: bool,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short, long, value_name = "stringArray")]
    pub env: Vec<String>,
    /// Override the entrypoint of the image
    #[arg(long, value_name = "string")]
    pub entrypoint: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long, default_value_t = true)]
    pub interactive: bool,
    /// Add or override a label
    #[arg(short, long, value_name = "stringArray")]
    pub label: Vec<String>,
    /// Assign a name to the container
    #[arg(long, value_name = "string")]
    pub name: Option<String>,
    /// Disable pseudo-TTY allocation (default: auto-detected)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    /// Publish a container's port(s) to the host
    #[arg(short, long, value_name = "stringArray")]
    pub publish: Vec<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run command with all service's ports enabled and mapped to the host
    #[arg(short = 'P', long)]
    pub service_ports: bool,
    /// Run as specified username or uid
    #[arg(short, long, value_name = "string")]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "string")]
    pub workdir: Option<String>,
    pub service: String,
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    override_usage = "berth compose cp [OPTIONS] SERVICE:SRC_PATH DEST_PATH|-\n       berth compose cp [OPTIONS] SRC_PATH|- SERVICE:DEST_PATH"
)]
pub struct CpArgs {
    /// Index of the container if service has multiple replicas
    #[arg(long, value_name = "int", default_value_t = 1)]
    pub index: u32,
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    pub source: String,
    pub destination: String,
}

/// The running container of `service` with number `index`.
async fn service_container(ctx: &Ctx<'_>, service: &str, index: u32) -> Result<String> {
    let target = ctx.target()?;
    let client = ctx.client()?;
    let list = containers(&client, target.name(), &[service.to_string()], false, false).await?;
    list.iter()
        .find(|c| c.labels.get(labels::NUMBER) == Some(&index.to_string()))
        .map(container_name)
        .ok_or_else(|| StatusError::error(1, format!("service {service:?} is not running")))
}

pub async fn exec(ctx: &Ctx<'_>, args: &ExecArgs) -> Result<()> {
    let name = service_container(ctx, &args.service, args.index).await?;
    let tty = !args.no_tty && std::io::stdin().is_terminal();
    container::exec(
        ctx.env,
        container::ExecArgs {
            detach: args.detach,
            detach_keys: None,
            env: args.env.clone(),
            env_file: Vec::new(),
            interactive: !args.detach,
            privileged: args.privileged,
            tty,
            user: args.user.clone().unwrap_or_default(),
            workdir: args.workdir.clone().unwrap_or_default(),
            container: name,
            command: args.command.clone(),
        },
    )
    .await
}

pub async fn run(ctx: &Ctx<'_>, args: &RunArgs) -> Result<()> {
    let project = ctx.project(std::slice::from_ref(&args.service))?;
    let Some(service) = project.services.get(&args.service) else {
        return Err(StatusError::error(
            1,
            format!("no such service: {}", args.service),
        ));
    };
    let engine = ctx.engine()?;
    // Missing images of the service (and of the dependencies it brings up) are built
    // first, as `up` builds them.
    let needed = berth_compose::reconcile::plan::selected_services(
        &project,
        std::slice::from_ref(&args.service),
        args.no_deps,
    )
    .map_err(|e| StatusError::error(1, e.to_string()))?;
    let to_build =
        super::build::services_to_build(&engine, &project, &needed, args.build, false).await?;
    super::build::build_services(ctx, &project, &to_build, &Default::default()).await?;
    let observed = engine.observe(&project.name).await?;
    // The service's dependencies are brought up first, as `up` would.
    let deps: Vec<String> = service.config.depends_on.keys().cloned().collect();
    let up = UpOptions {
        services: if args.no_deps {
            Vec::new()
        } else {
            deps.clone()
        },
        ..Default::default()
    };
    let mut actions =
        plan(&project, &observed, &up).map_err(|e| StatusError::error(1, e.to_string()))?;
    if args.no_deps || deps.is_empty() {
        // Networks and volumes only.
        actions.retain(|a| a.service().is_none());
    }
    let mut options = ApplyOptions {
        services: up.services.iter().cloned().collect(),
        ..Default::default()
    };
    options.services.insert(args.service.clone());
    let progress = progress_printer(ctx.quiet_progress(), false);
    apply(&project, &observed, &actions, &engine, &options, &progress)
        .await
        .map_err(|e| StatusError::error(1, e.to_string()))?;
    berth_compose::reconcile::apply::ensure_images(
        &project,
        &[args.service.clone()].into_iter().collect(),
        &engine,
        Default::default(),
        &progress,
    )
    .await
    .map_err(|e| StatusError::error(1, e.to_string()))?;

    berth_compose::reconcile::apply::materialise_files(
        &project,
        &[args.service.clone()].into_iter().collect(),
    )
    .map_err(|e| StatusError::error(1, e.to_string()))?;
    let mut svc = service.clone();
    if !args.service_ports {
        svc.config.ports.clear();
    }
    for p in &args.publish {
        let entries = berth_compose::loader::canonical::parse_port(p)
            .map_err(|e| StatusError::error(1, format!("invalid --publish {p:?}: {e}")))?;
        for e in entries {
            svc.config.ports.push(serde_json::from_value(e)?);
        }
    }
    let number = observed
        .containers
        .iter()
        .filter(|c| c.oneoff && c.service == svc.name)
        .count() as u32
        + 1;
    let mut request = create_request(
        &project,
        &svc,
        &ReplicaSpec {
            number,
            oneoff: true,
            image_id: None,
        },
    );
    let tty = !args.no_tty && std::io::stdin().is_terminal() && !args.detach;
    let stdin = args.interactive && !args.detach;
    let cfg = &mut request.config;
    if !args.command.is_empty() {
        cfg.cmd = Some(args.command.clone());
    }
    if let Some(e) = &args.entrypoint {
        cfg.entrypoint = Some(berth_compose::loader::canonical::shell_split(e));
        if args.command.is_empty() {
            cfg.cmd = None;
        }
    }
    let env = cfg.env.get_or_insert_with(Vec::new);
    for e in &args.env {
        let entry = if e.contains('=') {
            e.clone()
        } else {
            match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            }
        };
        let key = entry.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
    if let Some(u) = &args.user {
        cfg.user = u.clone();
    }
    if let Some(w) = &args.workdir {
        cfg.working_dir = w.clone();
    }
    cfg.tty = tty;
    cfg.open_stdin = stdin;
    cfg.attach_stdin = stdin;
    cfg.stdin_once = stdin;
    let labels_map = cfg.labels.get_or_insert_with(Default::default);
    for l in &args.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels_map.insert(k.to_string(), v.to_string());
    }
    if let Some(h) = request.host_config.as_mut() {
        // `restart` does not apply to one-off containers, as in Compose.
        h.restart_policy = Default::default();
        h.auto_remove = false;
    }
    let suffix: String = {
        use rand_like::hex12;
        hex12()
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-run-{suffix}", project.name, svc.name));
    let id = engine
        .create_container(&name, &request)
        .await
        .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
    if svc.config.network_mode.is_none() {
        for (key, net) in ordered_networks(&svc).into_iter().skip(1) {
            let net_name = project
                .networks
                .get(key)
                .map_or(key.as_str(), |n| n.name.as_str());
            engine
                .connect(net_name, &id, &endpoint(&svc, net))
                .await
                .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
        }
    }
    if args.detach {
        engine
            .start(&id)
            .await
            .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
        crate::output::out(&format!("{name}\n"));
        return Ok(());
    }
    let result = container::start(
        ctx.env,
        container::StartArgs {
            attach: true,
            detach_keys: None,
            interactive: stdin,
            containers: vec![id.clone()],
        },
    )
    .await;
    if args.rm {
        let client = ctx.client()?;
        let _ = client
            .container_remove(
                &id,
                ContainerRemoveOptions {
                    force: true,
                    volumes: true,
                    link: false,
                },
            )
            .await;
    }
    result
}

/// A short random suffix for one-off container names, from the clock and the pid (no RNG
/// dependency needed for a name that only has to be unlikely to repeat).
mod rand_like {
    pub fn hex12() -> String {
        use sha2::{Digest, Sha256};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let digest = Sha256::digest(format!("{now}-{}", std::process::id()));
        hex::encode(&digest[..6])
    }
}

pub async fn cp(ctx: &Ctx<'_>, args: &CpArgs) -> Result<()> {
    let resolve = async |arg: &str| -> Result<String> {
        match berth_cp::split_cp_arg(arg) {
            (Some(service), path) => {
                let name = service_container(ctx, service, args.index).await?;
                Ok(format!("{name}:{path}"))
            }
            (None, _) => Ok(arg.to_string()),
        }
    };
    let source = resolve(&args.source).await?;
    let destination = resolve(&args.destination).await?;
    berth_cp::cp(
        ctx.env,
        berth_cp::CpArgs {
            archive: args.archive,
            follow_link: args.follow_link,
            quiet: true,
            source,
            destination,
        },
    )
    .await
}
