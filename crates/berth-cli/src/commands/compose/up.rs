//! `compose up` and `compose create`: load, observe, plan, apply; then `--wait` or the
//! attached mode (logs of every container until they stop or Ctrl-C).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use berth_compose::reconcile::apply::{ApplyOptions, PullPolicy, wait_ready};
use berth_compose::reconcile::plan::selected_services;
use berth_compose::reconcile::{Engine, UpOptions, apply, orphans, plan};
use clap::Args;

use berth_compose::build::BuildFlags;

use super::{Ctx, build, progress_printer};
use crate::output::{self, StatusError};

#[derive(Debug, Args)]
#[command(override_usage = "berth compose up [OPTIONS] [SERVICE...]")]
pub struct UpArgs {
    /// Detached mode: Run containers in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Build images before starting containers
    #[arg(long)]
    pub build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long)]
    pub no_build: bool,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long, value_name = "string", default_value = "policy")]
    pub pull: String,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long)]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long)]
    pub no_recreate: bool,
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    /// Don't start the services after creating them
    #[arg(long)]
    pub no_start: bool,
    /// Scale SERVICE to NUM instances. Overrides the `scale` setting in the Compose file if present.
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Wait for services to be running|healthy. Implies detached mode.
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long, value_name = "int", default_value_t = 0)]
    pub wait_timeout: u64,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Stops all containers if any container was stopped. Incompatible with -d
    #[arg(long)]
    pub abort_on_container_exit: bool,
    /// Return the exit code of the selected service container. Implies --abort-on-container-exit
    #[arg(long, value_name = "string")]
    pub exit_code_from: Option<String>,
    /// Restrict attaching to the specified services
    #[arg(long, value_name = "stringArray")]
    pub attach: Vec<String>,
    /// Do not attach (stream logs) to the specified services
    #[arg(long, value_name = "stringArray")]
    pub no_attach: Vec<String>,
    /// Automatically attach to log output of dependent services
    #[arg(long)]
    pub attach_dependencies: bool,
    /// Show timestamps
    #[arg(long)]
    pub timestamps: bool,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't print prefix in logs
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Pull without printing progress information
    #[arg(long)]
    pub quiet_pull: bool,
    /// Use this timeout in seconds for container shutdown when attached or when containers
    /// are already running
    #[arg(short = 't', long, value_name = "int")]
    pub timeout: Option<i64>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "berth compose create [OPTIONS] [SERVICE...]")]
pub struct CreateArgs {
    /// Build images before starting containers
    #[arg(long)]
    pub build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long)]
    pub no_build: bool,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long, value_name = "string", default_value = "policy")]
    pub pull: String,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long)]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long)]
    pub no_recreate: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Scale SERVICE to NUM instances
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    pub services: Vec<String>,
}

fn parse_scale(list: &[String]) -> Result<BTreeMap<String, u32>> {
    list.iter()
        .map(|s| {
            let (name, n) = s.split_once('=').ok_or_else(|| {
                StatusError::error(1, format!("invalid --scale {s:?}: expected SERVICE=NUM"))
            })?;
            let n: u32 = n.parse().map_err(|_| {
                StatusError::error(1, format!("invalid --scale {s:?}: {n:?} is not a number"))
            })?;
            Ok((name.to_string(), n))
        })
        .collect()
}

fn pull_policy(text: &str) -> Result<PullPolicy> {
    match text {
        "always" => Ok(PullPolicy::Always),
        "missing" | "policy" | "" => Ok(PullPolicy::Missing),
        "never" => Ok(PullPolicy::Never),
        other => Err(StatusError::error(
            1,
            format!("invalid --pull option {other:?}"),
        )),
    }
}

/// Options shared by `up` and `create`.
struct Converge<'a> {
    services: &'a [String],
    options: UpOptions,
    pull: PullPolicy,
    build: bool,
    no_build: bool,
    stop_timeout: Option<i64>,
}

/// Plans and applies; returns the project and each selected service's containers.
async fn converge(
    ctx: &Ctx<'_>,
    c: Converge<'_>,
) -> Result<(
    berth_compose::Project,
    BTreeMap<String, Vec<(String, String)>>,
)> {
    let project = ctx.project(c.services)?;
    for name in c.options.scale.keys() {
        if !project.services.contains_key(name) {
            return Err(StatusError::error(1, format!("no such service: {name}")));
        }
    }
    let engine = ctx.engine()?;
    let selected = selected_services(&project, &c.options.services, c.options.no_deps)
        .map_err(|e| StatusError::error(1, e.to_string()))?;
    // Images are built before anything is planned, so a failing build leaves the project
    // as it was (nothing created, nothing stopped).
    let to_build =
        build::services_to_build(&engine, &project, &selected, c.build, c.no_build).await?;
    build::build_services(ctx, &project, &to_build, &BuildFlags::default()).await?;
    let mut up_options = c.options;
    up_options.image_ids = build::built_image_ids(&engine, &project, &selected).await?;
    let observed = engine.observe(&project.name).await?;
    let actions =
        plan(&project, &observed, &up_options).map_err(|e| StatusError::error(1, e.to_string()))?;
    let found = orphans(&project, &observed);
    if !found.is_empty() && !up_options.remove_orphans {
        let names: Vec<&str> = found.iter().map(|o| o.name.as_str()).collect();
        output::err(&format!(
            "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.\n",
            names.join(" ")
        ));
    }
    let progress = progress_printer(ctx.quiet_progress(), ctx.args.progress == "plain");
    let options = ApplyOptions {
        pull: c.pull,
        stop_timeout: c.stop_timeout,
        no_start: up_options.no_start,
        services: selected.clone(),
    };
    let mut current = apply(&project, &observed, &actions, &engine, &options, &progress)
        .await
        .map_err(|e| StatusError::error(1, e.to_string()))?;
    // What was left alone is reported as Compose does.
    let touched: BTreeSet<String> = actions.iter().map(|a| a.to_string()).collect();
    for c in &observed.containers {
        let acted = ["start", "restart", "recreate", "remove"]
            .iter()
            .any(|verb| touched.contains(&format!("{verb} {}", c.name)));
        if selected.contains(&c.service) && !c.oneoff && c.state == "running" && !acted {
            progress("Container", &c.name, "Running");
        }
    }
    current.retain(|s, _| selected.contains(s));
    Ok((project, current))
}

pub async fn up(ctx: &Ctx<'_>, args: &UpArgs) -> Result<()> {
    if args.build && args.no_build {
        return Err(StatusError::error(
            1,
            "--build and --no-build are incompatible",
        ));
    }
    // Compose's checks, in its order and words.
    let cascade = args.abort_on_container_exit || args.exit_code_from.is_some();
    if args.wait && (args.attach_dependencies || cascade || !args.attach.is_empty()) {
        return Err(StatusError::error(
            1,
            "--wait cannot be combined with --abort-on-container-exit, --attach or --attach-dependencies",
        ));
    }
    if args.detach && (args.attach_dependencies || cascade || !args.attach.is_empty()) {
        return Err(StatusError::error(
            1,
            "--detach cannot be combined with --abort-on-container-exit, --abort-on-container-failure, --attach, --attach-dependencies or --watch",
        ));
    }
    if !args.attach.is_empty() && args.attach_dependencies {
        return Err(StatusError::error(
            1,
            "cannot combine --attach and --attach-dependencies",
        ));
    }
    let (project, current) = converge(
        ctx,
        Converge {
            services: &args.services,
            options: UpOptions {
                services: args.services.clone(),
                no_deps: args.no_deps,
                force_recreate: args.force_recreate,
                no_recreate: args.no_recreate,
                remove_orphans: args.remove_orphans,
                scale: parse_scale(&args.scale)?,
                no_start: args.no_start,
                image_ids: BTreeMap::new(),
            },
            pull: pull_policy(&args.pull)?,
            build: args.build,
            no_build: args.no_build,
            stop_timeout: args.timeout,
        },
    )
    .await?;
    if args.no_start {
        return Ok(());
    }
    if args.wait {
        let engine = ctx.engine()?;
        // Jobs that others wait on to complete were checked by then; they are not expected to
        // keep running.
        let jobs: BTreeSet<&String> = project
            .services
            .values()
            .flat_map(|s| s.config.depends_on.iter())
            .filter(|(_, d)| d.condition == "service_completed_successfully")
            .map(|(name, _)| name)
            .collect();
        let all: Vec<(String, String)> = current
            .iter()
            .filter(|(service, _)| !jobs.contains(service))
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        let timeout = (args.wait_timeout > 0).then(|| Duration::from_secs(args.wait_timeout));
        let progress = progress_printer(ctx.quiet_progress(), ctx.args.progress == "plain");
        return wait_ready(&engine, &all, timeout, &progress)
            .await
            .map_err(|e| StatusError::error(1, e.to_string()));
    }
    if args.detach {
        return Ok(());
    }
    let attach: BTreeSet<String> = project
        .services
        .values()
        .filter(|s| current.contains_key(&s.name))
        .filter(|s| {
            if !args.attach.is_empty() {
                return args.attach.contains(&s.name);
            }
            // Services named on the command line are attached; their dependencies only with
            // --attach-dependencies (or when none is named: then every service is).
            (args.services.is_empty()
                || args.attach_dependencies
                || args.services.contains(&s.name))
                && s.config.attach != Some(false)
        })
        .filter(|s| !args.no_attach.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    let abort = args.abort_on_container_exit || args.exit_code_from.is_some();
    super::logs::attached(
        ctx,
        &project,
        &current,
        &attach,
        super::logs::AttachedOptions {
            abort,
            exit_code_from: args.exit_code_from.clone(),
            no_color: args.no_color,
            no_prefix: args.no_log_prefix,
            timestamps: args.timestamps,
            stop_timeout: args.timeout,
        },
    )
    .await
}

pub async fn create(ctx: &Ctx<'_>, args: &CreateArgs) -> Result<()> {
    if args.build && args.no_build {
        return Err(StatusError::error(
            1,
            "--build and --no-build are incompatible",
        ));
    }
    converge(
        ctx,
        Converge {
            services: &args.services,
            options: UpOptions {
                services: args.services.clone(),
                force_recreate: args.force_recreate,
                no_recreate: args.no_recreate,
                remove_orphans: args.remove_orphans,
                scale: parse_scale(&args.scale)?,
                no_start: true,
                ..Default::default()
            },
            pull: pull_policy(&args.pull)?,
            build: args.build,
            no_build: args.no_build,
            stop_timeout: None,
        },
    )
    .await
    .map(|_| ())
}
