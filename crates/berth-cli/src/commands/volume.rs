//! Volume commands: `volume create`, `ls`, `inspect`, `rm`, `prune`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::{Result, bail};
use berth_api::models::{Volume, VolumeCreateOptions};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Env, confirm, each_name, fail_if, inspect_each, parse_filters, prune_report};
use crate::format::Format;
use crate::format::units::human_size;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RemoveArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

pub async fn run(env: &Env, command: VolumeCommand) -> Result<()> {
    match command {
        VolumeCommand::Create(args) => create(env, args).await,
        VolumeCommand::Ls(args) => list(env, args).await,
        VolumeCommand::Inspect(args) => inspect(env, args).await,
        VolumeCommand::Rm(args) => remove(env, args).await,
        VolumeCommand::Prune(args) => prune(env, args).await,
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, value_name = "string", default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long, value_name = "list")]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long, value_name = "map")]
    pub opt: Vec<String>,
    /// Specify volume name
    #[arg(long, value_name = "string", hide = true)]
    pub name: Option<String>,
    #[arg(value_name = "VOLUME")]
    pub volume: Option<String>,
}

fn key_values(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) => map.insert(k.to_string(), v.to_string()),
            None if what == "label" => map.insert(item.clone(), String::new()),
            None => bail!(
                "invalid argument {item:?} for \"-o, --opt\" flag: invalid key value pair format: {item}"
            ),
        };
    }
    Ok(map)
}

pub async fn create(env: &Env, args: CreateArgs) -> Result<()> {
    let name = match (&args.name, &args.volume) {
        (Some(a), Some(b)) if a != b => {
            bail!(
                "conflicting options: cannot specify a volume-name through both --name and as a positional arg"
            )
        }
        (Some(n), _) | (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    };
    let options = VolumeCreateOptions {
        name,
        driver: args.driver,
        // Absent rather than empty, as docker sends them (inspect then shows null).
        driver_opts: Some(key_values(&args.opt, "opt")?).filter(|m| !m.is_empty()),
        labels: Some(key_values(&args.label, "label")?).filter(|m| !m.is_empty()),
    };
    let volume = env.client()?.volume_create(&options).await?;
    output::out(&format!("{}\n", volume.name));
    Ok(())
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Display only cluster volumes, and use cluster volume list formatting
    #[arg(long)]
    pub cluster: bool,
}

const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
    ("CreatedAt", "CREATED"),
    ("Availability", "AVAILABILITY"),
    ("Group", "GROUP"),
    ("Status", "STATUS"),
];

/// Go's "natural" order docker sorts volume names in: digit runs compare as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let na = std::str::from_utf8(&a[..da])
                    .unwrap_or("0")
                    .trim_start_matches('0');
                let nb = std::str::from_utf8(&b[..db])
                    .unwrap_or("0")
                    .trim_start_matches('0');
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

/// Template rows for volumes, with docker's fields.
pub fn volume_rows(volumes: &[Volume]) -> Vec<Value> {
    volumes
        .iter()
        .map(|v| {
            let labels = v
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let size = v
                .usage_data
                .filter(|u| u.size >= 0)
                .map_or("N/A".to_string(), |u| human_size(u.size));
            let links = v
                .usage_data
                .filter(|u| u.ref_count >= 0)
                .map_or("N/A".to_string(), |u| u.ref_count.to_string());
            json!({
                "Name": v.name,
                "Driver": v.driver,
                "Scope": v.scope,
                "Mountpoint": v.mountpoint,
                "Labels": labels,
                "Links": links,
                "Size": size,
                "CreatedAt": v.created_at,
                "Availability": "N/A",
                "Group": "N/A",
                "Status": "N/A",
            })
        })
        .collect()
}

pub async fn list(env: &Env, args: ListArgs) -> Result<()> {
    let filters = parse_filters(&args.filter)?;
    let mut volumes = env.client()?.volumes_list(&filters).await?.volumes;
    volumes.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    let format = Format::for_list(
        args.quiet,
        "Name",
        args.format.as_deref(),
        "table {{.Driver}}\t{{.Name}}",
    );
    output::out(&format.render(&volume_rows(&volumes), VOLUME_HEADERS)?);
    Ok(())
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

pub async fn inspect(env: &Env, args: InspectArgs) -> Result<()> {
    let client = env.client()?;
    inspect_each(&args.names, args.format.as_deref(), async |name| {
        client.volume_inspect_bytes(name).await
    })
    .await
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

pub async fn remove(env: &Env, args: RemoveArgs) -> Result<()> {
    let client = env.client()?;
    let (_, errors) = each_name(&args.names, async |name| {
        client.volume_remove(name, args.force).await?;
        output::out(&format!("{name}\n"));
        Ok(())
    })
    .await?;
    fail_if(errors)
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub async fn prune(env: &Env, args: PruneArgs) -> Result<()> {
    let mut filters = parse_filters(&args.filter)?;
    if args.all {
        filters.add("all", "true");
    }
    let client = env.client()?;
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all local volumes not used by at least one container."
        } else {
            "WARNING! This will remove anonymous local volumes not used by at least one container."
        };
        if !confirm(warning) {
            return Ok(());
        }
    }
    let report = client.volumes_prune(&filters).await?;
    let deleted = report.volumes_deleted.unwrap_or_default();
    output::out(&prune_report(
        "Deleted Volumes:",
        &deleted,
        report.space_reclaimed as i64,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn names_sort_naturally() {
        let mut names = vec!["f0", "3b", "08c", "nm", "070", "7961"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["3b", "08c", "070", "7961", "f0", "nm"]);
    }

    #[test]
    fn default_table_and_rows() {
        let v = Volume {
            name: "data".into(),
            driver: "local".into(),
            scope: "local".into(),
            labels: Some([("a".to_string(), "b".to_string())].into()),
            ..Default::default()
        };
        let rows = volume_rows(&[v]);
        let out = Format::parse(None, "table {{.Driver}}\t{{.Name}}")
            .render(&rows, VOLUME_HEADERS)
            .unwrap();
        assert_eq!(out, "DRIVER    VOLUME NAME\nlocal     data\n");
        assert_eq!(rows[0]["Labels"], "a=b");
        assert_eq!(rows[0]["Size"], "N/A");
    }

    #[test]
    fn parses_volume_commands() {
        let cli = Cli::try_parse_from([
            "berth",
            "volume",
            "create",
            "--opt",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "--label",
            "k",
            "data",
        ])
        .unwrap();
        let Some(Command::Volume {
            command: VolumeCommand::Create(args),
        }) = cli.command
        else {
            panic!("not volume create");
        };
        assert_eq!(args.volume.as_deref(), Some("data"));
        assert_eq!(key_values(&args.label, "label").unwrap()["k"], "");
        assert_eq!(key_values(&args.opt, "opt").unwrap()["device"], "tmpfs");
        assert!(Cli::try_parse_from(["berth", "volume", "rm"]).is_err());
        assert!(Cli::try_parse_from(["berth", "volume", "prune", "-a", "-f"]).is_ok());
    }
}
