//! `berth compose`: Compose v2's commands over berth-compose. One file per group of verbs:
//! `config`, `up` (up, create), `lifecycle` (down, start, stop, restart, kill, rm, pause,
//! unpause, wait), `show` (ps, ls, images, top, port, version, events), `logs` (logs and the
//! attached mode of `up`), `exec` (exec, run, cp), `images` (pull, push, build).

mod build;
mod config;
mod exec;
mod images;
mod lifecycle;
mod logs;
mod show;
mod up;

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_client::{Client, ContainerListOptions, Filters};
use berth_compose::labels;
use berth_compose::reconcile::ClientEngine;
use berth_compose::{LoadError, LoadOptions, Project};
use clap::{Args, Subcommand};

use super::Env;
use crate::output::StatusError;

/// Define and run multi-container applications
#[derive(Debug, Args)]
#[command(override_usage = "berth compose [OPTIONS] COMMAND")]
pub struct ComposeArgs {
    /// Compose configuration files
    #[arg(short = 'f', long = "file", value_name = "stringArray")]
    pub files: Vec<PathBuf>,
    /// Project name
    #[arg(short = 'p', long = "project-name", value_name = "string")]
    pub project_name: Option<String>,
    /// Specify an alternate working directory (default: the path of the first Compose file)
    #[arg(long, value_name = "string")]
    pub project_directory: Option<PathBuf>,
    /// Specify an alternate environment file
    #[arg(long, value_name = "stringArray")]
    pub env_file: Vec<PathBuf>,
    /// Specify a profile to enable
    #[arg(long = "profile", value_name = "stringArray")]
    pub profiles: Vec<String>,
    /// Control max parallelism, -1 for unlimited
    #[arg(long, value_name = "int", default_value_t = -1, allow_hyphen_values = true)]
    pub parallel: i64,
    /// Control when to print ANSI control characters ("never"|"always"|"auto")
    #[arg(long, value_name = "string", default_value = "auto")]
    pub ansi: String,
    /// Set type of progress output (auto, tty, plain, json, quiet)
    #[arg(long, value_name = "string", default_value = "auto")]
    pub progress: String,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Parse, resolve and render compose file in canonical format
    Config(config::ConfigArgs),
    /// Create and start containers
    Up(up::UpArgs),
    /// Creates containers for a service
    Create(up::CreateArgs),
    /// Stop and remove containers, networks
    Down(lifecycle::DownArgs),
    /// Start services
    Start(lifecycle::ServicesArgs),
    /// Stop services
    Stop(lifecycle::StopArgs),
    /// Restart service containers
    Restart(lifecycle::StopArgs),
    /// Force stop service containers
    Kill(lifecycle::KillArgs),
    /// Removes stopped service containers
    Rm(lifecycle::RmArgs),
    /// Pause services
    Pause(lifecycle::ServicesArgs),
    /// Unpause services
    Unpause(lifecycle::ServicesArgs),
    /// Block until containers of all (or specified) services stop.
    Wait(lifecycle::ServicesArgs),
    /// List containers
    Ps(show::PsArgs),
    /// List running compose projects
    Ls(show::LsArgs),
    /// List images used by the created containers
    Images(show::ServicesArgs),
    /// Display the running processes
    Top(show::ServicesArgs),
    /// Print the public port for a port binding
    Port(show::PortArgs),
    /// Show the Berth Compose version information
    Version(show::VersionArgs),
    /// Receive real time events from containers
    Events(show::EventsArgs),
    /// View output from containers
    Logs(logs::LogsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Run a one-off command on a service
    Run(exec::RunArgs),
    /// Copy files/folders between a service container and the local filesystem
    Cp(exec::CpArgs),
    /// Pull service images
    Pull(images::PullArgs),
    /// Push service images
    Push(images::PushArgs),
    /// Build or rebuild services
    Build(images::BuildArgs),
}

pub async fn run(env: &Env, args: ComposeArgs) -> Result<()> {
    let ctx = Ctx { env, args: &args };
    match &args.command {
        ComposeCommand::Config(a) => config::config(&ctx, a).await,
        ComposeCommand::Up(a) => up::up(&ctx, a).await,
        ComposeCommand::Create(a) => up::create(&ctx, a).await,
        ComposeCommand::Down(a) => lifecycle::down(&ctx, a).await,
        ComposeCommand::Start(a) => lifecycle::start(&ctx, a).await,
        ComposeCommand::Stop(a) => lifecycle::stop(&ctx, a, false).await,
        ComposeCommand::Restart(a) => lifecycle::stop(&ctx, a, true).await,
        ComposeCommand::Kill(a) => lifecycle::kill(&ctx, a).await,
        ComposeCommand::Rm(a) => lifecycle::rm(&ctx, a).await,
        ComposeCommand::Pause(a) => lifecycle::pause(&ctx, a, true).await,
        ComposeCommand::Unpause(a) => lifecycle::pause(&ctx, a, false).await,
        ComposeCommand::Wait(a) => lifecycle::wait(&ctx, a).await,
        ComposeCommand::Ps(a) => show::ps(&ctx, a).await,
        ComposeCommand::Ls(a) => show::ls(&ctx, a).await,
        ComposeCommand::Images(a) => show::images(&ctx, a).await,
        ComposeCommand::Top(a) => show::top(&ctx, a).await,
        ComposeCommand::Port(a) => show::port(&ctx, a).await,
        ComposeCommand::Version(a) => show::version(a),
        ComposeCommand::Events(a) => show::events(&ctx, a).await,
        ComposeCommand::Logs(a) => logs::logs(&ctx, a).await,
        ComposeCommand::Exec(a) => exec::exec(&ctx, a).await,
        ComposeCommand::Run(a) => exec::run(&ctx, a).await,
        ComposeCommand::Cp(a) => exec::cp(&ctx, a).await,
        ComposeCommand::Pull(a) => images::pull(&ctx, a).await,
        ComposeCommand::Push(a) => images::push(&ctx, a).await,
        ComposeCommand::Build(a) => images::build(&ctx, a).await,
    }
}

/// What every compose command gets.
pub struct Ctx<'a> {
    pub env: &'a Env,
    pub args: &'a ComposeArgs,
}

/// A project as far as a command needs it: loaded from its files, or (for commands that only
/// touch what exists, `down -p NAME` without a file) just its name.
pub enum Target {
    Loaded(Box<Project>),
    NameOnly(String),
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Loaded(p) => &p.name,
            Target::NameOnly(n) => n,
        }
    }

    pub fn project(&self) -> Option<&Project> {
        match self {
            Target::Loaded(p) => Some(p),
            Target::NameOnly(_) => None,
        }
    }
}

impl Ctx<'_> {
    pub fn load_options(&self, services: &[String]) -> Result<LoadOptions> {
        let working_dir = std::env::current_dir().context("cannot read the current directory")?;
        let stdin = if self.args.files.iter().any(|f| f.as_os_str() == "-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the compose file from standard input")?;
            Some(text)
        } else {
            None
        };
        Ok(LoadOptions {
            files: self.args.files.clone(),
            project_name: self.args.project_name.clone(),
            project_directory: self.args.project_directory.clone(),
            env_files: self.args.env_file.clone(),
            profiles: self.args.profiles.clone(),
            services: services.to_vec(),
            environment: std::env::vars().collect(),
            working_dir,
            stdin,
        })
    }

    /// Loads the project; `services` named on the command line are enabled whatever their
    /// profiles.
    pub fn project(&self, services: &[String]) -> Result<Project> {
        let options = self.load_options(services)?;
        berth_compose::load(&options).map_err(|e| StatusError::error(1, e.to_string()))
    }

    /// The project, or only its name when there is no file and `-p` (or
    /// COMPOSE_PROJECT_NAME) names it.
    pub fn target(&self) -> Result<Target> {
        let options = self.load_options(&[])?;
        match berth_compose::load(&options) {
            Ok(p) => Ok(Target::Loaded(Box::new(p))),
            Err(LoadError::NoFile) => {
                let name = self
                    .args
                    .project_name
                    .clone()
                    .or_else(|| std::env::var("COMPOSE_PROJECT_NAME").ok())
                    .filter(|n| !n.is_empty());
                match name {
                    Some(n) => Ok(Target::NameOnly(n)),
                    None => Err(StatusError::error(1, LoadError::NoFile.to_string())),
                }
            }
            Err(e) => Err(StatusError::error(1, e.to_string())),
        }
    }

    pub fn client(&self) -> Result<Client> {
        self.env.client()
    }

    pub fn engine(&self) -> Result<ClientEngine> {
        let config = self.env.config.clone();
        Ok(
            ClientEngine::new(self.client()?, self.args.parallel).with_registry_auth(Box::new(
                move |image| crate::credentials::registry_auth_for(&config, image),
            )),
        )
    }

    /// Whether progress lines are printed.
    pub fn quiet_progress(&self) -> bool {
        self.args.progress == "quiet"
    }
}

/// The project's containers (one-off ones too when `oneoff`), filtered by service, sorted by
/// service and number.
pub async fn containers(
    client: &Client,
    project: &str,
    services: &[String],
    all: bool,
    oneoff: bool,
) -> Result<Vec<berth_api::models::ContainerSummary>> {
    let mut filters = Filters::new();
    filters.add("label", format!("{}={project}", labels::PROJECT));
    let mut list = client
        .containers_list(&ContainerListOptions {
            all,
            filters,
            ..Default::default()
        })
        .await?;
    list.retain(|c| {
        let service = c
            .labels
            .get(labels::SERVICE)
            .map(String::as_str)
            .unwrap_or("");
        let is_oneoff = c
            .labels
            .get(labels::ONEOFF)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        (services.is_empty() || services.iter().any(|s| s == service)) && (oneoff || !is_oneoff)
    });
    list.sort_by_key(|c| {
        (
            c.labels.get(labels::SERVICE).cloned().unwrap_or_default(),
            c.labels
                .get(labels::NUMBER)
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    Ok(list)
}

/// `web-1` for `app-web-1`: the name without the project prefix, as Compose shows it.
pub fn short_name(c: &berth_api::models::ContainerSummary, project: &str) -> String {
    let name = c
        .names
        .first()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    name.strip_prefix(&format!("{project}-"))
        .map(str::to_string)
        .unwrap_or(name)
}

pub fn container_name(c: &berth_api::models::ContainerSummary) -> String {
    c.names
        .first()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

/// Prints a progress line as Compose v2 does in plain mode (` ✔ Container app-web-1  Started`),
/// on stderr; intermediate states are left out unless the progress mode is `plain`.
pub fn progress_printer(quiet: bool, plain: bool) -> impl Fn(&str, &str, &str) {
    move |kind: &str, name: &str, status: &str| {
        if quiet {
            return;
        }
        let final_state = matches!(
            status,
            "Created"
                | "Started"
                | "Recreated"
                | "Removed"
                | "Stopped"
                | "Healthy"
                | "Pulled"
                | "Exited"
                | "Running"
                | "Killed"
                | "Paused"
                | "Unpaused"
                | "Restarted"
                | "Built"
                | "Pushed"
        );
        if final_state || plain {
            crate::output::err(&format!(" ✔ {kind} {name}  {status}\n"));
        }
    }
}
