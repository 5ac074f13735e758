//! `ContainerSpec` flags of `service create`: `--mount`, `--env-file`, `--dns*`, `--host`,
//! `--sysctl`, `--ulimit`, `--group`, and (in [`CommonFlags`], shared with `service update`)
//! `--hostname`, `--entrypoint`, `--init`, `--read-only`, `-t`, `--stop-signal`, `--health-*`,
//! `--log-driver/--log-opt`.

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::{duration, flag_error, kv_map, shlex, strings};

#[derive(Debug, Args)]
pub struct ContainerFlags {
    /// Attach a filesystem mount to the service
    #[arg(long, value_name = "mount")]
    pub mount: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long, value_name = "list")]
    pub env_file: Vec<String>,
    /// Set custom DNS servers
    #[arg(long, value_name = "list")]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long, value_name = "list")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long, value_name = "list")]
    pub dns_search: Vec<String>,
    /// Set one or more custom host-to-IP mappings (host:ip)
    #[arg(long, value_name = "list")]
    pub host: Vec<String>,
    /// Sysctl options
    #[arg(long, value_name = "list")]
    pub sysctl: Vec<String>,
    /// Ulimit options
    #[arg(long, value_name = "ulimit")]
    pub ulimit: Vec<String>,
    /// Set one or more supplementary user groups for the container
    #[arg(long, value_name = "list")]
    pub group: Vec<String>,
    /// Send registry authentication details to swarm agents
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Do not query the registry to resolve image digest and supported platforms (berth's
    /// CLI never does: the spec keeps the image as given)
    #[arg(long)]
    pub no_resolve_image: bool,
    #[command(flatten)]
    pub common: CommonFlags,
}

pub fn mount(text: &str, flag: &str) -> Result<Value> {
    let m = crate::commands::run_opts::parse_mount(text).map_err(|e| flag_error(text, flag, e))?;
    let mut m = json!(m);
    // docker's `MountOpt` gives any volume options an (empty) driver config.
    if let Some(v) = m.get_mut("VolumeOptions")
        && v.get("DriverConfig").is_none()
    {
        v["DriverConfig"] = json!({});
    }
    Ok(m)
}

/// `--host name:ip` (or `name=ip`) as the `/etc/hosts` line swarm takes, `ip name`.
pub fn host_line(text: &str, flag: &str) -> Result<String> {
    let (name, ip) = text
        .split_once('=')
        .or_else(|| text.split_once(':'))
        .filter(|(n, ip)| !n.is_empty() && !ip.is_empty())
        .ok_or_else(|| flag_error(text, flag, format!("bad format for add-host: \"{text}\"")))?;
    let bare = ip.trim_start_matches('[').trim_end_matches(']');
    if ip != "host-gateway" && bare.parse::<std::net::IpAddr>().is_err() {
        return Err(flag_error(
            text,
            flag,
            format!("invalid IP address in add-host: \"{ip}\""),
        ));
    }
    Ok(format!("{bare} {name}"))
}

/// docker's create: a variable given again is removed from where it was and appended.
fn dedup_env(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in items {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        out.retain(|c| c == &e || !c.starts_with(&format!("{key}=")));
        out.push(e);
    }
    out
}

impl ContainerFlags {
    pub fn apply(&self, cs: &mut Value, task: &mut Value) -> Result<()> {
        if !self.mount.is_empty() {
            let mounts = self
                .mount
                .iter()
                .map(|m| mount(m, "--mount"))
                .collect::<Result<Vec<_>>>()?;
            cs["Mounts"] = json!(mounts);
        }
        if !self.env_file.is_empty() {
            // docker reads the files first, then the `--env` flags override them.
            let mut env = Vec::new();
            for f in &self.env_file {
                env.extend(crate::commands::run_opts::read_kv_file(f, true)?);
            }
            env.extend(strings(&cs["Env"]));
            cs["Env"] = json!(env);
        }
        if cs["Env"].is_array() {
            cs["Env"] = json!(dedup_env(strings(&cs["Env"])));
        }
        if !self.dns.is_empty() || !self.dns_option.is_empty() || !self.dns_search.is_empty() {
            for d in &self.dns {
                if d.parse::<std::net::IpAddr>().is_err() {
                    return Err(flag_error(
                        d,
                        "--dns",
                        format!("IP address is not correctly formatted: {d}"),
                    ));
                }
            }
            let mut dns = json!({});
            for (key, items) in [
                ("Nameservers", &self.dns),
                ("Search", &self.dns_search),
                ("Options", &self.dns_option),
            ] {
                if !items.is_empty() {
                    dns[key] = json!(items);
                }
            }
            cs["DNSConfig"] = dns;
        }
        if !self.host.is_empty() {
            let hosts = self
                .host
                .iter()
                .map(|h| host_line(h, "--host"))
                .collect::<Result<Vec<_>>>()?;
            cs["Hosts"] = json!(hosts);
        }
        if !self.sysctl.is_empty() {
            cs["Sysctls"] = Value::Object(kv_map(&self.sysctl));
        }
        if !self.ulimit.is_empty() {
            let mut limits = self
                .ulimit
                .iter()
                .map(|u| {
                    crate::commands::run_opts::parse_ulimit(u)
                        .map_err(|e| flag_error(u, "--ulimit", e))
                })
                .collect::<Result<Vec<_>>>()?;
            limits.sort_by(|a, b| a.name.cmp(&b.name));
            cs["Ulimits"] = json!(limits);
        }
        if !self.group.is_empty() {
            cs["Groups"] = json!(self.group);
        }
        self.common.apply(cs, task)
    }
}

/// Flags that `service create` and `service update` share: each given one is set.
#[derive(Debug, Args)]
pub struct CommonFlags {
    /// Container hostname
    #[arg(long, value_name = "string")]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, value_name = "command")]
    pub entrypoint: Option<String>,
    /// Use an init inside each service container to forward signals and reap processes
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub init: Option<bool>,
    /// Mount the container's root filesystem as read only
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub read_only: Option<bool>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tty: Option<bool>,
    /// Signal to stop the container
    #[arg(long, value_name = "string")]
    pub stop_signal: Option<String>,
    /// Logging driver for service
    #[arg(long, value_name = "string")]
    pub log_driver: Option<String>,
    /// Logging driver options
    #[arg(long, value_name = "list")]
    pub log_opt: Vec<String>,
    #[command(flatten)]
    pub health: HealthFlags,
}

impl CommonFlags {
    pub fn apply(&self, cs: &mut Value, task: &mut Value) -> Result<()> {
        if let Some(h) = &self.hostname {
            cs["Hostname"] = json!(h);
        }
        if let Some(e) = &self.entrypoint {
            cs["Command"] = json!(shlex(e));
        }
        if let Some(i) = self.init {
            cs["Init"] = json!(i);
        }
        if let Some(r) = self.read_only {
            cs["ReadOnly"] = json!(r);
        }
        if let Some(t) = self.tty {
            cs["TTY"] = json!(t);
        }
        if let Some(s) = &self.stop_signal {
            cs["StopSignal"] = json!(s);
        }
        if let Some(d) = &self.log_driver {
            let mut driver = json!({"Name": d});
            if !self.log_opt.is_empty() {
                driver["Options"] = Value::Object(kv_map(&self.log_opt));
            }
            task["LogDriver"] = driver;
        }
        self.health.apply(cs)
    }
}

#[derive(Debug, Args)]
pub struct HealthFlags {
    /// Command to run to check health
    #[arg(long, value_name = "string")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, value_name = "int")]
    pub health_retries: Option<String>,
    /// Start period for the container to initialize before counting retries towards unstable (ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub health_start_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub health_timeout: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub no_healthcheck: Option<bool>,
}

impl HealthFlags {
    /// docker's `toHealthConfig` on create and `updateHealthcheck` on update: the given
    /// settings merged into the spec's `Healthcheck` (zero values dropped, as Go's omitempty).
    pub fn apply(&self, cs: &mut Value) -> Result<()> {
        let durations = [
            ("Interval", &self.health_interval, "--health-interval"),
            ("Timeout", &self.health_timeout, "--health-timeout"),
            (
                "StartPeriod",
                &self.health_start_period,
                "--health-start-period",
            ),
            (
                "StartInterval",
                &self.health_start_interval,
                "--health-start-interval",
            ),
        ];
        let any = self.health_cmd.is_some()
            || self.health_retries.is_some()
            || durations.iter().any(|(_, v, _)| v.is_some());
        match self.no_healthcheck {
            Some(true) if any => bail!("--no-healthcheck conflicts with --health-* options"),
            Some(true) => {
                cs["Healthcheck"] = json!({"Test": ["NONE"]});
                return Ok(());
            }
            _ => {}
        }
        if !any && self.no_healthcheck.is_none() {
            return Ok(());
        }
        let mut hc = cs["Healthcheck"].as_object().cloned().unwrap_or_default();
        let disabled = hc.get("Test").and_then(|t| t[0].as_str()) == Some("NONE");
        for (key, value, flag) in durations {
            if let Some(v) = value {
                let n = duration(v, flag)?;
                if n < 0 {
                    return Err(flag_error(v, flag, "duration cannot be negative"));
                }
                hc.insert(key.into(), json!(n));
                if n == 0 {
                    hc.remove(key);
                }
            }
        }
        if let Some(r) = &self.health_retries {
            let n: i64 = r.parse().map_err(|_| {
                flag_error(
                    r,
                    "--health-retries",
                    format!("strconv.ParseInt: parsing \"{r}\": invalid syntax"),
                )
            })?;
            hc.insert("Retries".into(), json!(n));
            if n == 0 {
                hc.remove("Retries");
            }
        }
        match &self.health_cmd {
            Some(c) if !c.is_empty() => {
                hc.insert("Test".into(), json!(["CMD-SHELL", c]));
            }
            Some(_) => {
                hc.remove("Test");
            }
            None if disabled => {
                hc.remove("Test");
            }
            None => {}
        }
        cs["Healthcheck"] = Value::Object(hc);
        Ok(())
    }
}
