//! `ps` / `container ls`, in docker's columns.

use anyhow::Result;
use berth_api::models::container::{ContainerSummary, Port};
use berth_client::ContainerListOptions;
use clap::Args;
use serde_json::{Value, json};

use super::Env;
use crate::commands::parse_filters;
use crate::format::Format;
use crate::format::units::{ellipsis, human_duration, human_size_with_precision, truncate_id};
use crate::output::{self, StatusError};

#[derive(Debug, Args)]
#[command(override_usage = "berth ps [OPTIONS]")]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, value_name = "int", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Platform", "PLATFORM"),
];

/// Go's `strconv.Quote` for the text docker shows (`"sh -c 'echo hi'"`).
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// docker's `DisplayablePorts`: ports sorted by private port; ports published on the same
/// number are grouped into ranges per ip and protocol (`0.0.0.0:9000-9001->9000-9001/tcp`,
/// `53/udp`); ports published on another number are listed one by one at the end.
pub fn displayable_ports(ports: &[Port]) -> String {
    let mut ports: Vec<&Port> = ports.iter().collect();
    ports.sort_by(|a, b| {
        let ip = |p: &Port| p.ip.clone().unwrap_or_default();
        (
            a.private_port,
            ip(a),
            a.public_port.unwrap_or(0),
            a.kind.clone(),
        )
            .cmp(&(
                b.private_port,
                ip(b),
                b.public_port.unwrap_or(0),
                b.kind.clone(),
            ))
    });
    let form = |key: &str, first: u16, last: u16| {
        let range = if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        };
        match key.split_once('/') {
            Some((ip, kind)) => {
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                format!("{host}:{range}->{range}/{kind}")
            }
            None => format!("{range}/{key}"),
        }
    };
    let mut groups: Vec<(String, u16, u16)> = Vec::new();
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    for p in ports {
        let current = p.private_port;
        let ip = p.ip.clone().unwrap_or_default();
        let mut key = p.kind.clone();
        if !ip.is_empty() {
            let public = p.public_port.unwrap_or(0);
            if public != current {
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.clone()
                };
                host_mappings.push(format!("{host}:{public}->{current}/{}", p.kind));
                continue;
            }
            key = format!("{ip}/{}", p.kind);
        }
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            None => groups.push((key, current, current)),
            Some(group) if group.2.checked_add(1) == Some(current) => group.2 = current,
            Some(group) => {
                result.push(form(&group.0, group.1, group.2));
                group.1 = current;
                group.2 = current;
            }
        }
    }
    for (key, first, last) in &groups {
        result.push(form(key, *first, *last));
    }
    result.extend(host_mappings);
    result.join(", ")
}

/// One `ps` row keyed by docker's formatter field names.
pub fn ps_row(c: &ContainerSummary, trunc: bool, now: i64) -> Value {
    let names: Vec<&str> = c.names.iter().map(|n| n.trim_start_matches('/')).collect();
    let names = if trunc {
        names
            .iter()
            .find(|n| !n.contains('/'))
            .map(|n| vec![*n])
            .unwrap_or(names.clone())
    } else {
        names
    };
    let command = if trunc {
        ellipsis(&c.command, 20)
    } else {
        c.command.clone()
    };
    let image = if trunc && c.image.starts_with("sha256:") {
        truncate_id(&c.image)
    } else {
        c.image.clone()
    };
    let size = {
        let rw = human_size_with_precision(c.size_rw.unwrap_or(0), 3);
        match c.size_root_fs {
            Some(v) if v > 0 => format!("{rw} (virtual {})", human_size_with_precision(v, 3)),
            _ => rw,
        }
    };
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .map(|m| {
            let name = if m.name.is_empty() {
                &m.source
            } else {
                &m.name
            };
            if trunc {
                ellipsis(name, 15)
            } else {
                name.clone()
            }
        })
        .collect();
    let local_volumes = c
        .mounts
        .iter()
        .filter(|m| m.kind == "volume" && (m.driver.is_empty() || m.driver == "local"))
        .count();
    let networks: Vec<&str> = c
        .network_settings
        .networks
        .keys()
        .map(String::as_str)
        .collect();
    json!({
        "Command": go_quote(&command),
        "CreatedAt": crate::commands::image::go_time_string(c.created),
        "ID": if trunc { truncate_id(&c.id) } else { c.id.clone() },
        "Image": image,
        "Labels": labels.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mounts.join(","),
        "Names": names.join(","),
        "Networks": networks.join(","),
        "Platform": Value::Null,
        "Ports": displayable_ports(&c.ports),
        "RunningFor": format!("{} ago", human_duration(now - c.created)),
        "Size": size,
        "State": c.state,
        "Status": c.status,
    })
}

pub async fn ps(env: &Env, args: PsArgs) -> Result<()> {
    let filters = parse_filters(&args.filter)?;
    let limit = if args.latest && args.last == -1 {
        Some(1)
    } else if args.last > 0 {
        Some(args.last)
    } else {
        None
    };
    let options = ContainerListOptions {
        all: args.all || limit.is_some(),
        limit,
        size: args.size,
        filters,
    };
    let format_text = if args.quiet {
        None
    } else {
        args.format.clone()
    };
    let wants_size = args.size || format_text.as_deref().is_some_and(|f| f.contains(".Size"));
    let client = env.client()?;
    let containers = client
        .containers_list(&ContainerListOptions {
            size: wants_size,
            ..options
        })
        .await?;
    let trunc = !args.no_trunc;
    if args.quiet {
        let mut text = String::new();
        for c in &containers {
            text.push_str(&if trunc {
                truncate_id(&c.id)
            } else {
                c.id.clone()
            });
            text.push('\n');
        }
        output::out(&text);
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<Value> = containers.iter().map(|c| ps_row(c, trunc, now)).collect();
    let default = if args.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    let format = Format::parse(format_text.as_deref(), default);
    let text = format
        .render(&rows, PS_HEADERS)
        .map_err(|e| StatusError::error(1, e.to_string()))?;
    output::out(&text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_look_like_docker() {
        let c = ContainerSummary {
            id: "0123456789abcdef0123".into(),
            names: vec!["/web".into(), "/other/link".into()],
            image: "busybox".into(),
            command: "sh -c 'while true; do echo hi; sleep 1; done'".into(),
            created: 1000,
            ports: vec![
                Port {
                    ip: Some("0.0.0.0".into()),
                    private_port: 80,
                    public_port: Some(8080),
                    kind: "tcp".into(),
                },
                Port {
                    ip: Some("::".into()),
                    private_port: 80,
                    public_port: Some(8080),
                    kind: "tcp".into(),
                },
                Port {
                    ip: Some("0.0.0.0".into()),
                    private_port: 9000,
                    public_port: Some(9000),
                    kind: "tcp".into(),
                },
                Port {
                    ip: Some("0.0.0.0".into()),
                    private_port: 9001,
                    public_port: Some(9001),
                    kind: "tcp".into(),
                },
                Port {
                    ip: None,
                    private_port: 53,
                    public_port: None,
                    kind: "udp".into(),
                },
            ],
            state: "running".into(),
            status: "Up 5 minutes".into(),
            ..Default::default()
        };
        let row = ps_row(&c, true, 1000 + 300);
        assert_eq!(row["ID"], "0123456789ab");
        assert_eq!(row["Command"], "\"sh -c 'while true; …\"");
        assert_eq!(row["RunningFor"], "5 minutes ago");
        assert_eq!(row["Names"], "web");
        assert_eq!(
            row["Ports"],
            "53/udp, 0.0.0.0:9000-9001->9000-9001/tcp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
        let row = ps_row(&c, false, 1000);
        assert_eq!(row["Names"], "web,other/link");
        assert_eq!(
            row["Command"],
            "\"sh -c 'while true; do echo hi; sleep 1; done'\""
        );
    }
}
