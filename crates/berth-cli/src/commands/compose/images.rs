//! `compose pull`, `push`, `build`: service images through the daemon's registry client and
//! its builder (`build` itself is in `super::build`).

use anyhow::Result;
use berth_compose::build::BuildFlags;
use berth_compose::reconcile::Engine;
use clap::Args;
use futures_util::StreamExt;
use futures_util::future::join_all;

use super::{Ctx, progress_printer};
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Ignore images that can be built
    #[arg(long)]
    pub ignore_buildable: bool,
    /// Pull what it can and ignores images with pull failures
    #[arg(long)]
    pub ignore_pull_failures: bool,
    /// Pull without printing progress information
    #[arg(short, long)]
    pub quiet: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push what it can and ignores images with push failures
    #[arg(long)]
    pub ignore_push_failures: bool,
    /// Push without printing progress information
    #[arg(short, long)]
    pub quiet: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Set build-time variables for services
    #[arg(long, value_name = "stringArray")]
    pub build_arg: Vec<String>,
    /// Don't print anything to STDOUT
    #[arg(short, long)]
    pub quiet: bool,
    /// Push service images (those named by `image:`) once built
    #[arg(long)]
    pub push: bool,
    /// Also build dependencies (transitively)
    #[arg(long)]
    pub with_dependencies: bool,
    /// Build images in parallel (the default; how many at once is the global --parallel)
    #[arg(long, hide = true)]
    pub parallel: bool,
    /// Print equivalent bake file
    #[arg(long)]
    pub print: bool,
    /// Check build configuration
    #[arg(long)]
    pub check: bool,
    /// Set SSH authentications used when building service images. (use 'default' for using your default SSH Agent)
    #[arg(long, value_name = "string", num_args = 0..=1, default_missing_value = "default")]
    pub ssh: Option<String>,
    pub services: Vec<String>,
}

pub async fn pull(ctx: &Ctx<'_>, args: &PullArgs) -> Result<()> {
    let project = ctx.project(&args.services)?;
    let engine = ctx.engine()?;
    let progress = progress_printer(args.quiet || ctx.quiet_progress(), false);
    let services: Vec<_> = project
        .services
        .values()
        .filter(|s| args.services.is_empty() || args.services.contains(&s.name))
        .filter(|s| s.config.image.is_some())
        .filter(|s| !(args.ignore_buildable && s.config.build.is_some()))
        .collect();
    let results = join_all(services.iter().map(|s| {
        let image = s.image_name(&project.name);
        let engine = &engine;
        let progress = &progress;
        async move {
            progress("Image", &image, "Pulling");
            let r = engine.pull(&image).await;
            if r.is_ok() {
                progress("Image", &image, "Pulled");
            }
            (image, s.config.build.is_some().then(|| s.name.clone()), r)
        }
    }))
    .await;
    let mut to_build = Vec::new();
    for (image, buildable, r) in results {
        if let Err(e) = r {
            let message = format!("{image}: {}", describe_client_error(&e));
            // An image that can be built is not an error to fail to pull, as in Compose.
            if let Some(service) = buildable {
                output::err(&format!("WARN[0000] {message}\n"));
                to_build.push(service);
            } else if args.ignore_pull_failures {
                output::err(&format!("WARN[0000] {message}\n"));
            } else {
                return Err(StatusError::error(1, message));
            }
        }
    }
    if !to_build.is_empty() {
        output::err(&format!(
            "WARNING: Some service image(s) must be built from source by running:\n    berth compose build {}\n",
            to_build.join(" ")
        ));
    }
    Ok(())
}

pub async fn push(ctx: &Ctx<'_>, args: &PushArgs) -> Result<()> {
    let project = ctx.project(&args.services)?;
    let client = ctx.client()?;
    let progress = progress_printer(args.quiet || ctx.quiet_progress(), false);
    for s in project.services.values() {
        if !args.services.is_empty() && !args.services.contains(&s.name) {
            continue;
        }
        // Compose pushes only what it builds or names explicitly with an image.
        let Some(image) = &s.config.image else {
            continue;
        };
        let (repo, tag) = match image.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (image.as_str(), "latest"),
        };
        progress("Image", image, "Pushing");
        let result: Result<(), String> = async {
            let mut stream = Box::pin(
                client
                    .image_push(
                        repo,
                        tag,
                        crate::credentials::registry_auth_for(&ctx.env.config, image).as_deref(),
                    )
                    .await
                    .map_err(|e| describe_client_error(&e))?,
            );
            while let Some(msg) = stream.next().await {
                let msg = msg.map_err(|e| describe_client_error(&e))?;
                if let Some(e) = msg.error_detail.map(|d| d.message).or(msg.error) {
                    return Err(e);
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => progress("Image", image, "Pushed"),
            Err(e) if args.ignore_push_failures => {
                output::err(&format!("WARN[0000] {image}: {e}\n"))
            }
            Err(e) => return Err(StatusError::error(1, format!("{image}: {e}"))),
        }
    }
    Ok(())
}

pub async fn build(ctx: &Ctx<'_>, args: &BuildArgs) -> Result<()> {
    super::build::check_build_args(&args.build_arg)
        .map_err(|e| StatusError::error(1, e.to_string()))?;
    let project = ctx.project(&args.services)?;
    for name in &args.services {
        if !project.services.contains_key(name) {
            return Err(StatusError::error(1, format!("no such service: {name}")));
        }
    }
    // Named services only, and their dependencies with --with-dependencies, as Compose.
    let wanted = if args.with_dependencies {
        berth_compose::reconcile::plan::selected_services(&project, &args.services, false)
            .map_err(|e| StatusError::error(1, e.to_string()))?
    } else {
        args.services.iter().cloned().collect()
    };
    let services: Vec<&berth_compose::Service> = project
        .services
        .values()
        .filter(|s| args.services.is_empty() || wanted.contains(&s.name))
        .filter(|s| s.config.build.is_some())
        .collect();
    let flags = BuildFlags {
        no_cache: args.no_cache,
        pull: args.pull,
        quiet: args.quiet,
        build_args: args.build_arg.clone(),
        ssh: args.ssh.iter().cloned().collect(),
    };
    if args.print {
        let file = berth_compose::build::bake::bake_file(&project, &services, &flags, args.push);
        output::out(&format!("{}\n", serde_json::to_string_pretty(&file)?));
        return Ok(());
    }
    // The daemon's builder (the Engine API's) has no BuildKit lint: refused as Compose's
    // classic builder refuses what it cannot do. (`--ssh` is served by a build session.)
    if args.check {
        return Err(StatusError::error(
            1,
            "--check: the builder (the Engine API's classic builder) doesn't support build checks (BuildKit's lint)",
        ));
    }
    if args.ssh.as_deref() == Some("") {
        return Err(StatusError::error(
            1,
            "invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set",
        ));
    }
    super::build::build_services(ctx, &project, &services, &flags).await?;
    let named: Vec<String> = services
        .iter()
        .filter(|s| s.config.image.is_some())
        .map(|s| s.name.clone())
        .collect();
    if args.push && !named.is_empty() {
        let push_args = PushArgs {
            ignore_push_failures: false,
            quiet: args.quiet,
            services: named,
        };
        return push(ctx, &push_args).await;
    }
    Ok(())
}
