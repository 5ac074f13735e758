//! The command line as clap structures: docker's global options and command tree.

use clap::{Args, Parser, Subcommand};

use crate::commands::{
    build, builder, compose, container, context::ContextCommand, cp, image, login, network, pull,
    push, registry, stats, system, volume,
};

/// A self-sufficient runtime for containers
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    disable_version_flag = true,
    override_usage = "berth [OPTIONS] COMMAND",
    subcommand_required = false,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses the command line. clap builds the arguments of every command before it parses
    /// (~0.8 ms here, a third of the CLI's start-up); `run`, the command whose start-up
    /// counts most, is parsed with a tree that holds only it. Anything that tree does not
    /// accept (help, errors, another command) is parsed again with the whole tree, so
    /// messages are the same.
    pub fn parse_args() -> Result<Cli, clap::Error> {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if first_command(&args) == Some("run")
            && let Ok(RunOnly { global, command }) = RunOnly::try_parse_from(&args)
        {
            return Ok(Cli {
                global,
                command: command.map(|RunCommand::Run(a)| Command::Run(a)),
            });
        }
        Cli::try_parse_from(&args)
    }
}

/// The first argument that is not a global option (or a global option's value).
fn first_command(args: &[std::ffi::OsString]) -> Option<&str> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        match a {
            "-H" | "--host" | "-c" | "--context" | "--config" | "-l" | "--log-level"
            | "--tlscacert" | "--tlscert" | "--tlskey" => {
                it.next();
            }
            _ if a.starts_with('-') => {}
            _ => return Some(a),
        }
    }
    None
}

/// [`Cli`] with only the `run` command (see [`Cli::parse_args`]); same attributes.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    disable_version_flag = true,
    override_usage = "berth [OPTIONS] COMMAND",
    subcommand_required = false,
    arg_required_else_help = true
)]
struct RunOnly {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Option<RunCommand>,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    /// Create and run a new container from an image
    Run(container::RunArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct GlobalOptions {
    /// Location of client config files
    #[arg(long, value_name = "string", env = "BERTH_CONFIG")]
    pub config: Option<String>,
    /// Name of the context to use to connect to the daemon (overrides BERTH_HOST env var and
    /// default context set with "berth context use")
    #[arg(short = 'c', long, value_name = "string")]
    pub context: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    pub debug: bool,
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host", value_name = "list")]
    pub host: Vec<String>,
    /// Set the logging level ("debug", "info", "warn", "error", "fatal")
    #[arg(short = 'l', long, value_name = "string", default_value = "info")]
    pub log_level: String,
    /// Print version information and quit
    #[arg(short = 'v', long)]
    pub version: bool,
    /// Use TLS; implied by --tlsverify
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls: Option<bool>,
    /// Use TLS and verify the remote
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tlsverify: Option<bool>,
    /// Trust certs signed only by this CA (default "~/.docker/ca.pem")
    #[arg(long, value_name = "string")]
    pub tlscacert: Option<String>,
    /// Path to TLS certificate file (default "~/.docker/cert.pem")
    #[arg(long, value_name = "string")]
    pub tlscert: Option<String>,
    /// Path to TLS key file (default "~/.docker/key.pem")
    #[arg(long, value_name = "string")]
    pub tlskey: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage builds
    Builder {
        #[command(subcommand)]
        command: builder::BuilderCommand,
    },
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Manage containers
    Container {
        #[command(subcommand)]
        command: container::ContainerCommand,
    },
    /// Define and run multi-container applications (Compose)
    Compose(compose::ComposeArgs),
    /// Manage contexts
    Context {
        #[command(subcommand)]
        command: ContextCommand,
    },
    /// Manage images
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Manage networks
    Network {
        #[command(subcommand)]
        command: network::NetworkCommand,
    },
    /// Manage Berth
    System {
        #[command(subcommand)]
        command: system::SystemCommand,
    },
    /// Run Berth's own registry, or collect its garbage
    Registry {
        #[command(subcommand)]
        command: registry::RegistryCommand,
    },
    /// Manage Swarm
    Swarm {
        #[command(subcommand)]
        command: crate::commands::swarm::SwarmCommand,
    },
    /// Manage Swarm nodes
    Node {
        #[command(subcommand)]
        command: crate::commands::node::NodeCommand,
    },
    /// Manage Swarm services
    Service {
        #[command(subcommand)]
        command: crate::commands::service::ServiceCommand,
    },
    /// Manage Swarm stacks
    Stack {
        #[command(subcommand)]
        command: crate::commands::stack::StackCommand,
    },
    /// Manage Swarm secrets
    Secret {
        #[command(subcommand)]
        command: crate::commands::secret::ObjectCommand,
    },
    /// Manage Swarm configs
    Config {
        #[command(subcommand)]
        command: crate::commands::secret::ObjectCommand,
    },
    /// Manage volumes
    Volume {
        #[command(subcommand)]
        command: volume::VolumeCommand,
    },
    /// List images
    Images(image::ListArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(image::ImportArgs),
    /// Return low-level information on Berth objects
    Inspect(container::InspectArgs),
    /// Create and run a new container from an image
    Run(container::RunArgs),
    /// Create a new container
    Create(container::CreateArgs),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Restart one or more containers
    Restart(container::StopArgs),
    /// Pause all processes within one or more containers
    Pause(container::NamesArg),
    /// Unpause all processes within one or more containers
    Unpause(container::NamesArg),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::NamesArg),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Update configuration of one or more containers
    Update(container::UpdateArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(container::AttachArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Display the running processes of a container
    Top(container::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(container::IdArg),
    /// Export a container's filesystem as a tar archive
    Export(container::ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Create a new image from a container's changes
    Commit(container::CommitArgs),
    /// List containers
    Ps(container::PsArgs),
    /// List port mappings or a specific mapping for the container
    Port(network::PortArgs),
    /// Execute a command in a running container
    Exec(container::ExecArgs),
    /// Load an image from a tar archive or STDIN
    Load(image::LoadArgs),
    /// Authenticate to a registry (Docker Hub when no server is named)
    Login(login::LoginArgs),
    /// Log out from a registry (Docker Hub when no server is named)
    Logout(login::LogoutArgs),
    /// Download an image from a registry
    Pull(pull::PullArgs),
    /// Upload an image to a registry
    Push(push::PushArgs),
    /// Remove one or more images
    Rmi(image::RemoveArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(image::SaveArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Show the Berth version information
    Version(system::VersionArgs),
}
