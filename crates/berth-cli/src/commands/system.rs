//! `version`, `info`, `events`, `system df` (and their `system ...` spellings).

use std::io::IsTerminal as _;

use anyhow::{Result, bail};
use berth_api::models::{DiskUsage, EventMessage, SystemInfo};
use berth_client::EventsOptions;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Env, parse_filters};
use crate::format::units::{bytes_size, human_size};
use crate::format::{Format, render_one};
use crate::output::{self, describe_client_error};

/// The build's commit, when the build recorded one.
pub const GIT_COMMIT: &str = match option_env!("BERTH_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show berth disk usage
    Df(DfArgs),
    /// Get real time events from the server
    Events(EventsArgs),
    /// Display system-wide information
    Info(InfoArgs),
    /// Proxy the stdio stream to the daemon connection. Should not be invoked manually.
    #[command(name = "dial-stdio", hide = true)]
    DialStdio,
}

pub async fn run(env: &Env, command: SystemCommand) -> Result<()> {
    match command {
        SystemCommand::DialStdio => super::dial_stdio::dial_stdio(env).await,
        SystemCommand::Df(args) => df(env, args).await,
        SystemCommand::Events(args) => events(env, args).await,
        SystemCommand::Info(args) => info(env, args).await,
    }
}

// ---------------------------------------------------------------------------------------------
// version

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
}

fn client_version_value(env: &Env, api_version: &str) -> Value {
    let context = env
        .resolve()
        .map(|r| r.context)
        .unwrap_or_else(|_| "default".into());
    json!({
        "Platform": {"Name": ""},
        "Version": env!("CARGO_PKG_VERSION"),
        "APIVersion": api_version,
        "DefaultAPIVersion": berth_api::MAX_API_VERSION.to_string(),
        "GitCommit": GIT_COMMIT,
        "GoVersion": "rust",
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "BuildTime": "",
        "Context": context,
    })
}

/// Go's name for this machine's architecture (`amd64`, `arm64`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn render_client_version(c: &Value) -> String {
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    let mut api = s("APIVersion");
    if api != s("DefaultAPIVersion") {
        api = format!("{api} (downgraded from {})", s("DefaultAPIVersion"));
    }
    format!(
        "Client:\n Version:           {}\n API version:       {api}\n Go version:        {}\n Git commit:        {}\n Built:             {}\n OS/Arch:           {}/{}\n Context:           {}\n",
        s("Version"),
        s("GoVersion"),
        s("GitCommit"),
        s("BuildTime"),
        s("Os"),
        s("Arch"),
        s("Context")
    )
}

fn render_server_version(server: &Value) -> String {
    let s = |v: &Value, k: &str| match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let platform = server["Platform"]["Name"].as_str().unwrap_or_default();
    let mut out = String::from("\nServer:");
    if !platform.is_empty() {
        out.push(' ');
        out.push_str(platform);
    }
    out.push('\n');
    let components = server["Components"].as_array().cloned().unwrap_or_default();
    for component in &components {
        let name = s(component, "Name");
        let details = &component["Details"];
        out.push_str(&format!(" {name}:\n"));
        if name == "Engine" {
            out.push_str(&format!(
                "  Version:          {}\n",
                s(component, "Version")
            ));
            out.push_str(&format!(
                "  API version:      {} (minimum version {})\n",
                s(details, "ApiVersion"),
                s(details, "MinAPIVersion")
            ));
            for (label, key) in [
                ("Go version", "GoVersion"),
                ("Git commit", "GitCommit"),
                ("Built", "BuildTime"),
            ] {
                out.push_str(&format!(
                    "  {:<18}{}\n",
                    format!("{label}:"),
                    s(details, key)
                ));
            }
            out.push_str(&format!(
                "  OS/Arch:          {}/{}\n",
                s(details, "Os"),
                s(details, "Arch")
            ));
            out.push_str(&format!(
                "  Experimental:     {}\n",
                s(details, "Experimental")
            ));
        } else {
            out.push_str(&format!(
                "  Version:          {}\n",
                s(component, "Version")
            ));
            if let Some(map) = details.as_object() {
                for (key, value) in map {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_string);
                    out.push_str(&format!("  {:<18}{value}\n", format!("{key}:")));
                }
            }
        }
    }
    if components.is_empty() {
        out.push_str(&format!(
            " Engine:\n  Version:          {}\n",
            s(server, "Version")
        ));
        out.push_str(&format!(
            "  API version:      {} (minimum version {})\n",
            s(server, "APIVersion"),
            s(server, "MinAPIVersion")
        ));
        out.push_str(&format!(
            "  OS/Arch:          {}/{}\n",
            s(server, "Os"),
            s(server, "Arch")
        ));
    }
    out
}

pub async fn version(env: &Env, args: VersionArgs) -> Result<()> {
    let client = env.client()?;
    let server = client.version().await;
    let api_version = match &server {
        Ok(_) => client
            .api_version()
            .await
            .map(|v| v.to_string())
            .unwrap_or_default(),
        Err(_) => client.client_version().to_string(),
    };
    let client_value = client_version_value(env, &api_version);
    let server_value = match &server {
        Ok(v) => {
            let mut value = serde_json::to_value(v)?;
            // Templates see Go's field names: the JSON key `ApiVersion` is `.APIVersion`.
            if let Some(map) = value.as_object_mut()
                && let Some(api) = map.remove("ApiVersion")
            {
                map.insert("APIVersion".to_string(), api);
            }
            Some(value)
        }
        Err(_) => None,
    };
    match args.format.as_deref().filter(|f| !f.is_empty()) {
        Some(f) => {
            let template = if f == "json" { "{{json .}}" } else { f };
            let data = json!({"Client": client_value, "Server": server_value});
            output::out(&render_one(template, &data)?);
        }
        None => {
            let mut text = render_client_version(&client_value);
            if let Some(server) = &server_value {
                text.push_str(&render_server_version(server));
            }
            output::out(&text);
        }
    }
    match server {
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// info

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
}

pub fn render_info(info: &SystemInfo, raw: &Value) -> String {
    let mut o = String::new();
    let mut line = |text: String| {
        o.push_str(&text);
        o.push('\n');
    };
    line(format!(" Containers: {}", info.containers));
    line(format!("  Running: {}", info.containers_running));
    line(format!("  Paused: {}", info.containers_paused));
    line(format!("  Stopped: {}", info.containers_stopped));
    line(format!(" Images: {}", info.images));
    line(format!(" Server Version: {}", info.server_version));
    line(format!(" Storage Driver: {}", info.driver));
    for [k, v] in &info.driver_status {
        line(format!("  {k}: {v}"));
    }
    line(format!(" Logging Driver: {}", info.logging_driver));
    line(format!(" Cgroup Driver: {}", info.cgroup_driver));
    line(format!(" Cgroup Version: {}", info.cgroup_version));
    line(" Plugins:".to_string());
    line(format!("  Volume: {}", info.plugins.volume.join(" ")));
    line(format!("  Network: {}", info.plugins.network.join(" ")));
    if let Some(auth) = &info.plugins.authorization {
        line(format!("  Authorization: {}", auth.join(" ")));
    }
    line(format!("  Log: {}", info.plugins.log.join(" ")));
    line(format!(
        " Swarm: {}",
        if info.swarm.local_node_state.is_empty() {
            "inactive"
        } else {
            &info.swarm.local_node_state
        }
    ));
    let runtimes: Vec<&str> = info.runtimes.keys().map(String::as_str).collect();
    line(format!(" Runtimes: {}", runtimes.join(" ")));
    line(format!(" Default Runtime: {}", info.default_runtime));
    line(format!(" Init Binary: {}", info.init_binary));
    line(format!(
        " containerd version: {}",
        info.containerd_commit.id
    ));
    line(format!(" runc version: {}", info.runc_commit.id));
    line(format!(" init version: {}", info.init_commit.id));
    if !info.security_options.is_empty() {
        line(" Security Options:".to_string());
        for option in &info.security_options {
            // `name=seccomp,profile=builtin` → `seccomp` / `Profile: builtin`.
            let mut name = option.as_str();
            let mut extras = Vec::new();
            for part in option.split(',') {
                match part.split_once('=') {
                    Some(("name", n)) => name = n,
                    Some((k, v)) => extras.push((k, v)),
                    None => {}
                }
            }
            line(format!("  {name}"));
            for (k, v) in extras {
                let mut key = k.to_string();
                if let Some(first) = key.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                line(format!("   {key}: {v}"));
            }
        }
    }
    line(format!(" Kernel Version: {}", info.kernel_version));
    line(format!(" Operating System: {}", info.operating_system));
    line(format!(" OSType: {}", info.os_type));
    line(format!(" Architecture: {}", info.architecture));
    line(format!(" CPUs: {}", info.ncpu));
    line(format!(" Total Memory: {}", bytes_size(info.mem_total)));
    line(format!(" Name: {}", info.name));
    line(format!(" ID: {}", info.id));
    line(format!(" Docker Root Dir: {}", info.docker_root_dir));
    line(format!(" Debug Mode: {}", info.debug));
    if info.debug {
        line(format!("  File Descriptors: {}", info.nfd));
        line(format!("  Goroutines: {}", info.ngoroutines));
        line(format!("  System Time: {}", info.system_time));
        line(format!("  EventsListeners: {}", info.nevents_listener));
    }
    for (label, value) in [
        ("HTTP Proxy", &info.http_proxy),
        ("HTTPS Proxy", &info.https_proxy),
        ("No Proxy", &info.no_proxy),
    ] {
        if !value.is_empty() {
            line(format!(" {label}: {value}"));
        }
    }
    if !info.labels.is_empty() {
        line(" Labels:".to_string());
        for label in &info.labels {
            line(format!("  {label}"));
        }
    }
    line(format!(" Experimental: {}", info.experimental_build));
    let cidrs = &info.registry_config.insecure_registry_cidrs;
    let insecure: Vec<&String> = info
        .registry_config
        .index_configs
        .values()
        .filter(|i| !i.secure)
        .map(|i| &i.name)
        .collect();
    if !cidrs.is_empty() || !insecure.is_empty() {
        line(" Insecure Registries:".to_string());
        for name in insecure {
            line(format!("  {name}"));
        }
        for cidr in cidrs {
            line(format!("  {cidr}"));
        }
    }
    if !info.registry_config.mirrors.is_empty() {
        line(" Registry Mirrors:".to_string());
        for mirror in &info.registry_config.mirrors {
            line(format!("  {mirror}"));
        }
    }
    line(format!(
        " Live Restore Enabled: {}",
        info.live_restore_enabled
    ));
    let _ = raw;
    o
}

pub async fn info(env: &Env, args: InfoArgs) -> Result<()> {
    let client = env.client()?;
    let context = env
        .resolve()
        .map(|r| r.context)
        .unwrap_or_else(|_| "default".into());
    let debug = env.global.debug;
    let client_info = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Context": context,
        "Debug": debug,
        "Plugins": [],
        "Warnings": null,
    });
    let raw = client.info_raw().await;
    if let Some(f) = args.format.as_deref().filter(|f| !f.is_empty()) {
        let mut data = match &raw {
            Ok(Value::Object(map)) => Value::Object(map.clone()),
            _ => json!({}),
        };
        data["ClientInfo"] = client_info;
        let errors: Vec<String> = raw
            .as_ref()
            .err()
            .map(describe_client_error)
            .into_iter()
            .collect();
        data["ServerErrors"] = json!(errors);
        let template = if f == "json" { "{{json .}}" } else { f };
        output::out(&render_one(template, &data)?);
        return match raw {
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    let mut text = format!(
        "Client:\n Version:    {}\n Context:    {context}\n Debug Mode: {debug}\n\nServer:\n",
        env!("CARGO_PKG_VERSION")
    );
    match raw {
        Ok(raw) => {
            let info: SystemInfo = serde_json::from_value(berth_client::strip_nulls(raw.clone()))?;
            text.push_str(&render_info(&info, &raw));
            output::out(&text);
            if !info.warnings.is_empty() {
                let mut warnings = String::from("\n");
                for w in &info.warnings {
                    warnings.push_str(w);
                    warnings.push('\n');
                }
                output::err(&warnings);
            }
            Ok(())
        }
        Err(e) => {
            output::out(&text);
            Err(e.into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// system df

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
}

fn with_percent(reclaimable: i64, total: i64) -> String {
    if total > 0 {
        format!(
            "{} ({}%)",
            human_size(reclaimable),
            reclaimable * 100 / total
        )
    } else {
        human_size(reclaimable)
    }
}

/// The four summary rows of `system df`, with docker's formatter fields.
pub fn df_rows(usage: &DiskUsage) -> Vec<Value> {
    let int = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    // Images.
    let total = usage.layers_size;
    let active = usage.images.iter().filter(|i| i.containers > 0).count();
    let used: i64 = usage
        .images
        .iter()
        .filter(|i| i.containers != 0 && i.size != -1 && i.shared_size != -1)
        .map(|i| i.size - i.shared_size)
        .sum();
    let images = json!({
        "Type": "Images",
        "TotalCount": usage.images.len().to_string(),
        "Active": active.to_string(),
        "Size": human_size(total),
        "Reclaimable": with_percent(total - used, total),
    });
    // Containers.
    let size: i64 = usage.containers.iter().map(|c| int(c, "SizeRw")).sum();
    let running = |c: &Value| c["State"].as_str() == Some("running");
    let reclaim: i64 = usage
        .containers
        .iter()
        .filter(|c| !running(c))
        .map(|c| int(c, "SizeRw"))
        .sum();
    let containers = json!({
        "Type": "Containers",
        "TotalCount": usage.containers.len().to_string(),
        "Active": usage.containers.iter().filter(|c| running(c)).count().to_string(),
        "Size": human_size(size),
        "Reclaimable": with_percent(reclaim, size),
    });
    // Volumes.
    let usage_of = |v: &Value, k: &str| v["UsageData"][k].as_i64().unwrap_or(-1);
    let size: i64 = usage
        .volumes
        .iter()
        .map(|v| usage_of(v, "Size"))
        .filter(|s| *s > 0)
        .sum();
    let reclaim: i64 = usage
        .volumes
        .iter()
        .filter(|v| usage_of(v, "RefCount") == 0)
        .map(|v| usage_of(v, "Size"))
        .filter(|s| *s > 0)
        .sum();
    let volumes = json!({
        "Type": "Local Volumes",
        "TotalCount": usage.volumes.len().to_string(),
        "Active": usage.volumes.iter().filter(|v| usage_of(v, "RefCount") > 0).count().to_string(),
        "Size": human_size(size),
        "Reclaimable": with_percent(reclaim, size),
    });
    // Build cache.
    let flag = |v: &Value, k: &str| v[k].as_bool().unwrap_or(false);
    let size: i64 = usage
        .build_cache
        .iter()
        .filter(|b| !flag(b, "Shared"))
        .map(|b| int(b, "Size"))
        .sum();
    let reclaim: i64 = usage
        .build_cache
        .iter()
        .filter(|b| !flag(b, "Shared") && !flag(b, "InUse"))
        .map(|b| int(b, "Size"))
        .sum();
    let cache = json!({
        "Type": "Build Cache",
        "TotalCount": usage.build_cache.len().to_string(),
        "Active": usage.build_cache.iter().filter(|b| flag(b, "InUse")).count().to_string(),
        "Size": human_size(size),
        "Reclaimable": human_size(reclaim),
    });
    vec![images, containers, volumes, cache]
}

/// `system df -v`'s build cache part: the total of the records not shared with images, then
/// one row per record (`*` after the ID of one in use), as docker prints it.
pub fn build_cache_section(records: &[Value], now: i64) -> String {
    let int = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    let flag = |v: &Value, k: &str| v[k].as_bool().unwrap_or(false);
    let since = |v: &Value, k: &str| -> String {
        match v[k]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            Some(t) => format!(
                "{} ago",
                crate::format::units::human_duration(now - t.timestamp())
            ),
            None => String::new(),
        }
    };
    let total: i64 = records
        .iter()
        .filter(|b| !flag(b, "Shared"))
        .map(|b| int(b, "Size"))
        .sum();
    let mut text = format!("\nBuild cache usage: {}\n\n", human_size(total));
    let rows: Vec<Value> = records
        .iter()
        .map(|b| {
            let id = b["ID"].as_str().unwrap_or_default();
            let mut id: String = id.chars().take(12).collect();
            if flag(b, "InUse") {
                id.push('*');
            }
            json!({
                "ID": id,
                "CacheType": b["Type"].as_str().unwrap_or_default(),
                "Size": human_size(int(b, "Size")),
                "CreatedSince": since(b, "CreatedAt"),
                "LastUsedSince": since(b, "LastUsedAt"),
                "UsageCount": int(b, "UsageCount").to_string(),
                "Shared": flag(b, "Shared").to_string(),
            })
        })
        .collect();
    let table = Format::Table(
        "{{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}"
            .to_string(),
    )
    .render(
        &rows,
        &[
            ("ID", "CACHE ID"),
            ("CacheType", "CACHE TYPE"),
            ("Size", "SIZE"),
            ("CreatedSince", "CREATED"),
            ("LastUsedSince", "LAST USED"),
            ("UsageCount", "USAGE"),
            ("Shared", "SHARED"),
        ],
    );
    text.push_str(&table.unwrap_or_default());
    text
}

const DF_HEADERS: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

pub async fn df(env: &Env, args: DfArgs) -> Result<()> {
    let client = env.client()?;
    let usage = client.system_df().await?;
    if args.verbose {
        let now = chrono::Utc::now().timestamp();
        // One row per image, named by its first tag, as docker's verbose df shows.
        let firsts: Vec<_> = usage
            .images
            .iter()
            .map(|i| {
                let mut first = i.clone();
                first.repo_tags.truncate(1);
                first.repo_digests.truncate(1);
                first
            })
            .collect();
        let rows = super::image::image_rows(&firsts, false, true, now);
        let format = Format::Table(
            "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}"
                .to_string(),
        );
        let mut text = String::from("Images space usage:\n\n");
        text.push_str(&format.render(
            &rows,
            &[
                ("Repository", "REPOSITORY"),
                ("Tag", "TAG"),
                ("ID", "IMAGE ID"),
                ("CreatedSince", "CREATED"),
                ("Size", "SIZE"),
                ("SharedSize", "SHARED SIZE"),
                ("UniqueSize", "UNIQUE SIZE"),
                ("Containers", "CONTAINERS"),
            ],
        )?);
        text.push_str("\nContainers space usage:\n\nCONTAINER ID   IMAGE     COMMAND   LOCAL VOLUMES   SIZE      CREATED   STATUS    NAMES\n");
        text.push_str("\nLocal Volumes space usage:\n\n");
        let mut volumes: Vec<berth_api::models::Volume> = usage
            .volumes
            .iter()
            .filter_map(|v| serde_json::from_value(v.clone()).ok())
            .collect();
        volumes.sort_by(|a, b| super::volume::natural_cmp(&a.name, &b.name));
        text.push_str(
            &Format::Table("{{.Name}}\t{{.Links}}\t{{.Size}}".to_string()).render(
                &super::volume::volume_rows(&volumes),
                &[
                    ("Name", "VOLUME NAME"),
                    ("Links", "LINKS"),
                    ("Size", "SIZE"),
                ],
            )?,
        );
        text.push_str(&build_cache_section(&usage.build_cache, now));
        output::out(&text);
        return Ok(());
    }
    let format = Format::parse(
        args.format.as_deref(),
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
    );
    output::out(&format.render(&df_rows(&usage), DF_HEADERS)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// events

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
}

/// Go's `time.ParseDuration` in seconds; `None` when not a duration.
pub fn parse_go_duration(text: &str) -> Option<f64> {
    berth_api::duration::parse_go_duration(text).map(|nanos| nanos as f64 / 1e9)
}

/// docker's `timetypes.GetTimestamp`: a duration (`10m` → now − 10 minutes), an RFC 3339 date
/// or date-time (local when no zone is given), or a Unix timestamp passed through. Returns what
/// the API's `since`/`until` take: `seconds[.nanoseconds]`.
pub fn get_timestamp(value: &str, now: chrono::DateTime<chrono::Local>) -> Result<String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
    if value != "0"
        && let Some(seconds) = parse_go_duration(value)
    {
        let t = now.timestamp_nanos_opt().unwrap_or(0) - (seconds * 1e9) as i64;
        return Ok((t.div_euclid(1_000_000_000)).to_string());
    }
    let fmt = |t: i64, nanos: u32| format!("{t}.{nanos:09}");
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(fmt(t.timestamp(), t.timestamp_subsec_nanos()));
    }
    let local_formats = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ];
    for f in local_formats {
        if let Ok(naive) = NaiveDateTime::parse_from_str(value, f)
            && let Some(t) = now.timezone().from_local_datetime(&naive).single()
        {
            return Ok(fmt(t.timestamp(), t.timestamp_subsec_nanos()));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        if let Some(t) = now.timezone().from_local_datetime(&naive).single() {
            return Ok(fmt(t.timestamp(), 0));
        }
    }
    if value.contains('-') && !value.starts_with('-') {
        bail!("failed to parse value as time or duration: {value:?}");
    }
    // A Unix timestamp, `seconds` or `seconds.nanoseconds`, is passed through.
    let (secs, nanos) = value.split_once('.').unwrap_or((value, "0"));
    if secs.parse::<i64>().is_ok() && nanos.parse::<u64>().is_ok() {
        return Ok(value.to_string());
    }
    bail!("failed to parse value as time or duration: {value:?}")
}

/// Go's `RFC3339NanoFixed` in the local zone: `2026-11-22T19:00:00.000000000Z`.
pub fn rfc3339_nano_fixed(nanos: i64) -> String {
    use chrono::{Local, SecondsFormat, TimeZone};
    let t = Local.timestamp_nanos(nanos);
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// docker's default event line.
pub fn pretty_event(event: &EventMessage) -> String {
    let mut line = String::new();
    if event.time_nano != 0 {
        line.push_str(&rfc3339_nano_fixed(event.time_nano));
        line.push(' ');
    } else if event.time != 0 {
        line.push_str(&rfc3339_nano_fixed(event.time * 1_000_000_000));
        line.push(' ');
    }
    line.push_str(&format!(
        "{} {} {}",
        event.kind, event.action, event.actor.id
    ));
    if !event.actor.attributes.is_empty() {
        let attrs: Vec<String> = event
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line.push('\n');
    line
}

/// The template data for an event: Go's field names (`.Type`, `.Actor.ID`, `.TimeNano`).
fn event_template_value(event: &EventMessage) -> Value {
    json!({
        "Status": event.status.clone().unwrap_or_default(),
        "ID": event.id.clone().unwrap_or_default(),
        "From": event.from.clone().unwrap_or_default(),
        "Type": event.kind,
        "Action": event.action,
        "Actor": {"ID": event.actor.id, "Attributes": event.actor.attributes},
        "Scope": event.scope,
        "Time": event.time,
        "TimeNano": event.time_nano,
    })
}

pub async fn events(env: &Env, args: EventsArgs) -> Result<()> {
    let now = chrono::Local::now();
    let options = EventsOptions {
        since: args
            .since
            .as_deref()
            .map(|s| get_timestamp(s, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| get_timestamp(s, now))
            .transpose()?,
        filters: parse_filters(&args.filter)?,
    };
    let template = match args.format.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("json") | Some("{{json .}}") => Some(None),
        Some(f) => Some(Some(crate::format::Template::parse(
            &f.replace("\\t", "\t").replace("\\n", "\n"),
            false,
        )?)),
    };
    let client = env.client()?;
    let stream = client.events(&options).await?;
    let mut stream = std::pin::pin!(stream);
    let _ = std::io::stdout().is_terminal();
    while let Some(event) = stream.next().await {
        let event = event?;
        let text = match &template {
            None => pretty_event(&event),
            Some(None) => format!(
                "{}\n",
                crate::format::template::go_json(&serde_json::to_value(&event)?)
            ),
            Some(Some(t)) => format!("{}\n", t.render(&event_template_value(&event))?),
        };
        output::out(&text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn durations_and_timestamps() {
        use chrono::TimeZone;
        assert_eq!(parse_go_duration("10m"), Some(600.0));
        assert_eq!(parse_go_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_go_duration("1.5h"), Some(5400.0));
        assert_eq!(parse_go_duration("300ms"), Some(0.3));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("abc"), None);
        let now = chrono::Local.timestamp_opt(1_700_000_000, 0).unwrap();
        assert_eq!(get_timestamp("10m", now).unwrap(), "1699999400");
        assert_eq!(get_timestamp("1700000000", now).unwrap(), "1700000000");
        assert_eq!(get_timestamp("1700000000.5", now).unwrap(), "1700000000.5");
        assert_eq!(
            get_timestamp("2023-11-14T22:13:20Z", now).unwrap(),
            "1700000000.000000000"
        );
        assert_eq!(
            get_timestamp("2023-11-14T22:13:20.5+00:00", now).unwrap(),
            "1700000000.500000000"
        );
        assert!(get_timestamp("yesterday", now).is_err());
        assert!(get_timestamp("2023-13-99", now).is_err());
    }

    #[test]
    fn event_lines_like_docker() {
        let mut event = EventMessage {
            kind: "image".into(),
            action: "tag".into(),
            time: 1_700_000_000,
            time_nano: 1_700_000_000_000_000_001,
            ..Default::default()
        };
        event.actor.id = "sha256:abc".into();
        event
            .actor
            .attributes
            .insert("name".into(), "busybox:latest".into());
        let line = pretty_event(&event);
        // The zone depends on the machine; the rest is fixed.
        assert!(
            line.contains(" image tag sha256:abc (name=busybox:latest)\n"),
            "{line}"
        );
        assert!(line.contains(".000000001"), "{line}");
        let t =
            crate::format::Template::parse("{{.Type}} {{.Actor.Attributes.name}}", false).unwrap();
        assert_eq!(
            t.render(&event_template_value(&event)).unwrap(),
            "image busybox:latest"
        );
    }

    #[test]
    fn df_summary() {
        let usage = DiskUsage {
            layers_size: 1_200_000,
            images: vec![berth_api::models::ImageSummary {
                size: 1_200_000,
                shared_size: 0,
                containers: 0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let rows = df_rows(&usage);
        let text = Format::parse(
            None,
            "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        )
        .render(&rows, DF_HEADERS)
        .unwrap();
        assert_eq!(
            text,
            "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
             Images          1         0         1.2MB     1.2MB (100%)\n\
             Containers      0         0         0B        0B\n\
             Local Volumes   0         0         0B        0B\n\
             Build Cache     0         0         0B        0B\n"
        );
    }

    #[test]
    fn df_build_cache() {
        let usage = DiskUsage {
            build_cache: vec![
                json!({"ID": "0123456789abcdefgh", "Type": "regular", "Size": 2_000_000, "InUse": true,
                       "Shared": false, "UsageCount": 3, "CreatedAt": "2026-01-01T00:00:00Z",
                       "LastUsedAt": "2026-01-01T00:00:00Z"}),
                json!({"ID": "fedcba9876543210", "Type": "source.local", "Size": 500, "Shared": true}),
            ],
            ..Default::default()
        };
        let rows = df_rows(&usage);
        assert_eq!(rows[3]["TotalCount"], "2");
        assert_eq!(rows[3]["Active"], "1");
        assert_eq!(rows[3]["Size"], "2MB");
        assert_eq!(rows[3]["Reclaimable"], "0B");
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z")
            .unwrap()
            .timestamp();
        let text = build_cache_section(&usage.build_cache, now);
        assert!(
            text.starts_with("\nBuild cache usage: 2MB\n\nCACHE ID        CACHE TYPE"),
            "{text}"
        );
        assert!(text.contains("0123456789ab*   regular        2MB       10 minutes ago   10 minutes ago   3         false"), "{text}");
        assert!(
            text.contains("fedcba987654    source.local   500B"),
            "{text}"
        );
    }

    #[test]
    fn parses_system_commands() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let cli = parse(&[
            "berth",
            "events",
            "--since",
            "10m",
            "--until",
            "0s",
            "-f",
            "type=image",
            "--format",
            "{{json .}}",
        ])
        .unwrap();
        let Some(Command::Events(e)) = cli.command else {
            panic!()
        };
        assert_eq!(e.since.as_deref(), Some("10m"));
        assert!(parse(&["berth", "system", "df", "-v", "--format", "json"]).is_ok());
        assert!(parse(&["berth", "system", "info", "-f", "{{.ID}}"]).is_ok());
        assert!(parse(&["berth", "version", "--format", "{{.Server.Version}}"]).is_ok());
        assert!(parse(&["berth", "info", "--format", "json"]).is_ok());
        let cli = parse(&[
            "berth",
            "-H",
            "unix:///x.sock",
            "-D",
            "-l",
            "debug",
            "images",
        ])
        .unwrap();
        assert_eq!(cli.global.host, vec!["unix:///x.sock"]);
        assert!(cli.global.debug);
        assert!(parse(&["berth", "--config", "/tmp/c", "--context", "x", "version"]).is_ok());
        assert!(parse(&["berth", "-v"]).unwrap().global.version);
        assert!(parse(&["berth", "images", "--bogus"]).is_err());
    }
}
