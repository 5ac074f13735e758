//! `compose config`: the project after loading (interpolated, merged, normalised), as YAML or
//! JSON, or one list of names.

use anyhow::{Context, Result};
use berth_compose::labels;
use clap::Args;
use serde_json::Value;

use super::Ctx;
use crate::output;

#[derive(Debug, Args)]
#[command(override_usage = "berth compose config [OPTIONS] [SERVICE...]")]
pub struct ConfigArgs {
    /// Format the output. Values: [yaml | json]
    #[arg(long, value_name = "string", default_value = "yaml")]
    pub format: String,
    /// Only validate the configuration, don't print anything
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the service names, one per line
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    pub volumes: bool,
    /// Print the network names, one per line
    #[arg(long)]
    pub networks: bool,
    /// Print the profile names, one per line
    #[arg(long)]
    pub profiles: bool,
    /// Print the image names, one per line
    #[arg(long)]
    pub images: bool,
    /// Print the service config hash, one per line ("*" for all)
    #[arg(long, value_name = "string")]
    pub hash: Option<String>,
    /// Save to file (default to stdout)
    #[arg(short, long, value_name = "string")]
    pub output: Option<String>,
    /// Don't interpolate environment variables
    #[arg(long)]
    pub no_interpolate: bool,
    pub service: Vec<String>,
}

/// `--no-interpolate`: the files merged as written, keys in order (a Go map's).
fn uninterpolated(ctx: &Ctx<'_>, args: &ConfigArgs) -> Result<String> {
    if !args.service.is_empty() {
        output::err(
            "WARN[0000] service filtering is not applied when --no-interpolate is set, the full model will be rendered\n",
        );
    }
    let options = ctx.load_options(&args.service)?;
    let model = berth_compose::loader::load_uninterpolated(&options)
        .map_err(|e| crate::output::StatusError::error(1, e.to_string()))?;
    Ok(if args.format == "json" {
        format!("{}\n", serde_json::to_string_pretty(&model)?)
    } else {
        serde_yaml_ng::to_string(&model)?
    })
}

/// The model as YAML with Compose's top-level order (name, services, networks, volumes,
/// secrets, configs, then extensions).
fn to_yaml(model: &Value) -> Result<String> {
    let mut ordered = serde_yaml_ng::Mapping::new();
    let map = model.as_object().cloned().unwrap_or_default();
    let order = [
        "name", "services", "networks", "volumes", "secrets", "configs",
    ];
    for key in order {
        if let Some(v) = map.get(key) {
            ordered.insert(key.into(), serde_yaml_ng::to_value(v)?);
        }
    }
    for (k, v) in &map {
        if !order.contains(&k.as_str()) {
            ordered.insert(k.as_str().into(), serde_yaml_ng::to_value(v)?);
        }
    }
    Ok(serde_yaml_ng::to_string(&ordered)?)
}

pub async fn config(ctx: &Ctx<'_>, args: &ConfigArgs) -> Result<()> {
    let listing = args.services
        || args.volumes
        || args.networks
        || args.profiles
        || args.images
        || args.hash.is_some();
    if args.no_interpolate && !args.quiet && !listing {
        let text = uninterpolated(ctx, args)?;
        return write_out(args, text);
    }
    let mut project = ctx.project(&args.service)?;
    if !args.service.is_empty() {
        project
            .services
            .retain(|name, _| args.service.contains(name));
        if let Some(Value::Object(services)) = project.model.get_mut("services") {
            services.retain(|name, _| args.service.contains(name));
        }
    }
    if args.quiet {
        return Ok(());
    }
    let lines = |items: Vec<String>| {
        items
            .into_iter()
            .map(|i| format!("{i}\n"))
            .collect::<String>()
    };
    let text = if args.services {
        lines(
            project
                .ordered_services()
                .iter()
                .map(|s| s.name.clone())
                .collect(),
        )
    } else if args.volumes {
        lines(project.volumes.keys().cloned().collect())
    } else if args.networks {
        lines(project.networks.keys().cloned().collect())
    } else if args.profiles {
        let mut all: Vec<String> = project
            .services
            .values()
            .chain(project.disabled.values())
            .flat_map(|s| s.config.profiles.clone())
            .collect();
        all.sort();
        all.dedup();
        lines(all)
    } else if args.images {
        lines(
            project
                .services
                .values()
                .map(|s| s.image_name(&project.name))
                .collect(),
        )
    } else if let Some(which) = &args.hash {
        let wanted: Vec<&str> = which.split(',').map(str::trim).collect();
        lines(
            project
                .services
                .values()
                .filter(|s| wanted.contains(&"*") || wanted.contains(&s.name.as_str()))
                .map(|s| format!("{} {}", s.name, labels::config_hash(s)))
                .collect(),
        )
    } else if args.format == "json" {
        format!("{}\n", serde_json::to_string_pretty(&project.model)?)
    } else {
        to_yaml(&project.model)?
    };
    write_out(args, text)
}

fn write_out(args: &ConfigArgs, text: String) -> Result<()> {
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {path}")),
        None => {
            output::out(&text);
            Ok(())
        }
    }
}
