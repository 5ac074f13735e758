//! `top`.

use anyhow::Result;
use clap::Args;

use super::Env;
use crate::output;

#[derive(Debug, Args)]
#[command(override_usage = "berth top CONTAINER [ps OPTIONS]")]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// ps options
    #[arg(
        value_name = "ps OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub ps_args: Vec<String>,
}

pub async fn top(env: &Env, args: TopArgs) -> Result<()> {
    let client = env.client()?;
    let top = client
        .container_top(&args.container, &args.ps_args.join(" "))
        .await?;
    let mut text = top.titles.join("\t");
    text.push('\n');
    for row in &top.processes {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    // docker's top writer: minimum width 20, padding 3.
    output::out(&crate::format::table::align_with(&text, 20, 3));
    Ok(())
}
