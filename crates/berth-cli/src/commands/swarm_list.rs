//! The flags the swarm objects' `ls` commands share (`service ls`, `node ls`, `secret ls`,
//! `config ls`, `stack services`), spelled and explained as the docker CLI's.

use clap::Args;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
}
