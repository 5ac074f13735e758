//! The command line as clap structures: docker's global options and command tree.

use clap::{Args, Parser, Subcommand};

use crate::commands::{context::ContextCommand, image, system};

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
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Manage Berth
    System {
        #[command(subcommand)]
        command: system::SystemCommand,
    },
    /// List images
    Images(image::ListArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(image::ImportArgs),
    /// Return low-level information on Berth objects
    Inspect(image::InspectArgs),
    /// Load an image from a tar archive or STDIN
    Load(image::LoadArgs),
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
