//! `stats`: resource usage per container, computed from the daemon's stats objects as docker's
//! CLI does (CPU % from the delta against `precpu_stats`, memory without the inactive page
//! cache), as a table redrawn each second or once with `--no-stream`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use berth_client::ContainerListOptions;
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::Env;
use crate::format::Format;
use crate::format::units::{bytes_size, human_size_with_precision, truncate_id};
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

const HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

const DEFAULT_FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_f64().unwrap_or(0.0)
}

/// One table row from a stats object (`given` is the name the user typed, if any).
pub fn stats_row(stats: &Value, given: &str, trunc: bool) -> Value {
    let cpu_delta = num(stats, &["cpu_stats", "cpu_usage", "total_usage"])
        - num(stats, &["precpu_stats", "cpu_usage", "total_usage"]);
    let system_delta = num(stats, &["cpu_stats", "system_cpu_usage"])
        - num(stats, &["precpu_stats", "system_cpu_usage"]);
    let mut online = num(stats, &["cpu_stats", "online_cpus"]);
    if online == 0.0 {
        online = stats["cpu_stats"]["cpu_usage"]["percpu_usage"]
            .as_array()
            .map_or(0, Vec::len) as f64;
    }
    let cpu = if system_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / system_delta * online * 100.0
    } else {
        0.0
    };
    let usage = num(stats, &["memory_stats", "usage"]);
    let memory_stats = &stats["memory_stats"]["stats"];
    let cache = memory_stats["total_inactive_file"]
        .as_f64()
        .or_else(|| memory_stats["inactive_file"].as_f64())
        .unwrap_or(0.0);
    let memory = if cache < usage { usage - cache } else { usage };
    let limit = num(stats, &["memory_stats", "limit"]);
    let mem_percent = if limit > 0.0 {
        memory / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(networks) = stats["networks"].as_object() {
        for n in networks.values() {
            rx += n["rx_bytes"].as_f64().unwrap_or(0.0);
            tx += n["tx_bytes"].as_f64().unwrap_or(0.0);
        }
    }
    let (mut read, mut write) = (0.0, 0.0);
    if let Some(entries) = stats["blkio_stats"]["io_service_bytes_recursive"].as_array() {
        for e in entries {
            let value = e["value"].as_f64().unwrap_or(0.0);
            match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("read") => read += value,
                Some("write") => write += value,
                _ => {}
            }
        }
    }
    let id = stats["id"].as_str().unwrap_or_default();
    let name = stats["name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/');
    let pair = |a: f64, b: f64| {
        format!(
            "{} / {}",
            human_size_with_precision(a as i64, 3),
            human_size_with_precision(b as i64, 3)
        )
    };
    json!({
        "Container": if given.is_empty() { id.to_string() } else { given.to_string() },
        "ID": if trunc { truncate_id(id) } else { id.to_string() },
        "Name": if name.is_empty() { "--".to_string() } else { name.to_string() },
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(memory as i64), bytes_size(limit as i64)),
        "MemPerc": format!("{mem_percent:.2}%"),
        "NetIO": pair(rx, tx),
        "BlockIO": pair(read, write),
        "PIDs": num(stats, &["pids_stats", "current"]).to_string(),
    })
}

pub async fn stats(env: &Env, args: StatsArgs) -> Result<()> {
    let client = env.client()?;
    let targets: Vec<(String, String)> = if args.containers.is_empty() {
        client
            .containers_list(&ContainerListOptions {
                all: args.all,
                ..Default::default()
            })
            .await?
            .into_iter()
            .map(|c| (c.id, String::new()))
            .collect()
    } else {
        args.containers
            .iter()
            .map(|c| (c.clone(), c.clone()))
            .collect()
    };
    let format = Format::parse(args.format.as_deref(), DEFAULT_FORMAT);
    let trunc = !args.no_trunc;
    if args.no_stream {
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for (id, given) in &targets {
            match client.container_stats(id, false, false).await {
                Ok(stream) => {
                    let mut stream = Box::pin(stream);
                    if let Some(stats) = stream.next().await {
                        rows.push(stats_row(&stats?, given, trunc));
                    }
                }
                Err(e) => errors.push(describe_client_error(&e)),
            }
        }
        if !errors.is_empty() {
            return Err(StatusError::error(1, errors.join("\n")));
        }
        let text = format
            .render(&rows, HEADERS)
            .map_err(|e| StatusError::error(1, e.to_string()))?;
        output::out(&text);
        return Ok(());
    }
    let latest: Arc<Mutex<BTreeMap<usize, Value>>> = Default::default();
    let mut tasks = Vec::new();
    for (i, (id, given)) in targets.iter().enumerate() {
        let stream = client
            .container_stats(id, true, false)
            .await
            .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
        let latest = latest.clone();
        let given = given.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = Box::pin(stream);
            while let Some(Ok(stats)) = stream.next().await {
                latest
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(i, stats_row(&stats, &given, trunc));
            }
        }));
    }
    let terminal = std::io::stdout().is_terminal();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let rows: Vec<Value> = latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let text = format
            .render(&rows, HEADERS)
            .map_err(|e| StatusError::error(1, e.to_string()))?;
        if terminal {
            output::out(&format!("\x1b[2J\x1b[H{text}"));
        } else {
            output::out(&text);
        }
        if tasks.iter().all(|t| t.is_finished()) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_docker_percentages() {
        let stats = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 3145728, "limit": 104857600, "stats": {"inactive_file": 1048576}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 4096}]},
            "pids_stats": {"current": 3}
        });
        let row = stats_row(&stats, "", true);
        assert_eq!(row["CPUPerc"], "40.00%");
        assert_eq!(row["MemUsage"], "2MiB / 100MiB");
        assert_eq!(row["MemPerc"], "2.00%");
        assert_eq!(row["NetIO"], "1.5kB / 0B");
        assert_eq!(row["BlockIO"], "4.1kB / 0B");
        assert_eq!(row["PIDs"], "3");
        assert_eq!(row["Name"], "web");
        assert_eq!(row["ID"], "0123456789ab");
    }
}
