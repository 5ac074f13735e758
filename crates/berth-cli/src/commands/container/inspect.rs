//! `container inspect` and the top-level `inspect`.

use anyhow::Result;
use clap::Args;

use super::Env;
use crate::commands::fail_if;
use crate::format::inspect_output;
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Only inspect objects of the given type (generic inspect)
    #[arg(long = "type", value_name = "string", hide = true)]
    pub kind: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    pub names: Vec<String>,
}

/// `container inspect` (`generic` = false) and the top-level `inspect`: containers first, then
/// images, as docker does; `--type` limits the search.
pub async fn inspect(env: &Env, args: InspectArgs, generic: bool) -> Result<()> {
    const TYPES: &[&str] = &[
        "config",
        "container",
        "image",
        "network",
        "node",
        "plugin",
        "secret",
        "service",
        "task",
        "volume",
    ];
    let kind = args.kind.as_deref().filter(|k| !k.is_empty());
    if let Some(kind) = kind
        && !TYPES.contains(&kind)
    {
        return Err(StatusError::error(
            1,
            format!("{kind:?} is not a valid value for --type"),
        ));
    }
    let try_containers = !generic || kind.is_none_or(|k| k == "container");
    let try_images = generic && kind.is_none_or(|k| k == "image");
    let client = env.client()?;
    let mut raws = Vec::new();
    let mut errors = Vec::new();
    for name in &args.names {
        let mut found = None;
        let mut last_error = None;
        if try_containers {
            match client.container_inspect_bytes(name, args.size).await {
                Ok(bytes) => found = Some(bytes),
                Err(e) if e.is_not_found() => last_error = Some(e),
                Err(e @ berth_client::Error::Api(_)) => last_error = Some(e),
                Err(e) => {
                    output::out("[]\n");
                    return Err(e.into());
                }
            }
        }
        if found.is_none() && try_images {
            match client.image_inspect_bytes(name).await {
                Ok(bytes) => found = Some(bytes),
                Err(e) if e.is_not_found() => last_error = Some(e),
                Err(e @ berth_client::Error::Api(_)) => last_error = Some(e),
                Err(e) => {
                    output::out("[]\n");
                    return Err(e.into());
                }
            }
        }
        match found {
            Some(bytes) => raws.push(bytes),
            None => {
                let e = last_error.map(|e| (e.is_not_found(), describe_client_error(&e)));
                errors.push(match (generic, e) {
                    (true, Some((true, _))) | (true, None) => {
                        format!("Error: No such object: {name}")
                    }
                    (_, Some((_, text))) => text,
                    (false, None) => format!("Error: No such container: {name}"),
                });
            }
        }
    }
    let text = inspect_output(&raws, args.format.as_deref())
        .map_err(|e| StatusError::error(1, e.to_string()))?;
    output::out(&text);
    fail_if(errors)
}
