//! The values of `run`/`create` flags, parsed as docker's CLI parses them: sizes, durations,
//! restart policies, ulimits, ports, mounts, devices, env and label files, security options.

use std::collections::BTreeMap;

use anyhow::Result;
use berth_api::models::container::{
    BindOptions, DeviceMapping, Mount, PortBinding, RestartPolicy, TmpfsOptions, Ulimit,
    VolumeDriverConfig, VolumeOptions,
};
use berth_api::units::ram_in_bytes;

use super::{flag_error, usage};

pub(super) fn bytes_flag(value: &Option<String>, flag: &str) -> Result<i64> {
    match value {
        None => Ok(0),
        Some(v) => ram_in_bytes(v).map_err(|e| flag_error(v, flag, e)),
    }
}

/// `--memory-swap`: a size, or `-1` for unlimited.
pub(super) fn swap_flag(value: &Option<String>) -> Result<i64> {
    match value.as_deref() {
        Some("-1") => Ok(-1),
        _ => bytes_flag(value, "--memory-swap"),
    }
}

/// `--cpus 1.5` → 1500000000 nano CPUs.
pub fn parse_nano_cpus(text: &str) -> Result<i64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("failed to parse {text} as a rational number"))?;
    let nanos = value * 1e9;
    if nanos.fract().abs() > 1e-6 {
        return Err("value is too precise".to_string());
    }
    Ok(nanos.round() as i64)
}

/// A Go duration flag (`5s`, `1m30s`) in nanoseconds.
pub(super) fn duration_flag(value: &Option<String>, flag: &str) -> Result<i64> {
    match value {
        None => Ok(0),
        Some(v) => berth_api::duration::parse_go_duration(v)
            .ok_or_else(|| flag_error(v, flag, format!("time: invalid duration \"{v}\""))),
    }
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(text: &str) -> Result<RestartPolicy, String> {
    if text.is_empty() {
        return Ok(RestartPolicy {
            name: "no".into(),
            maximum_retry_count: 0,
        });
    }
    let (name, count) = match text.split_once(':') {
        Some((name, count)) => (name, Some(count)),
        None => (text, None),
    };
    let mut policy = RestartPolicy {
        name: name.to_string(),
        maximum_retry_count: 0,
    };
    if let Some(count) = count {
        if name != "on-failure" {
            return Err("maximum retry count can only be used with 'on-failure'".to_string());
        }
        policy.maximum_retry_count = count
            .parse()
            .map_err(|_| "maximum retry count must be an integer".to_string())?;
    }
    Ok(policy)
}

const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--ulimit nofile=1024:2048`.
pub fn parse_ulimit(text: &str) -> Result<Ulimit, String> {
    let Some((name, limits)) = text.split_once('=') else {
        return Err(format!("invalid ulimit argument: {text}"));
    };
    if !ULIMIT_NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let parse = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("invalid ulimit value: {v}"))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (parse(s)?, parse(h)?),
        None => {
            let v = parse(limits)?;
            (v, v)
        }
    };
    if soft > hard && hard != -1 {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// A port or range: `80`, `8000-8010`.
fn parse_range(text: &str) -> Option<(u16, u16)> {
    let parse = |s: &str| s.parse::<u16>().ok();
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            (a <= b).then_some((a, b))
        }
        None => parse(text).map(|p| (p, p)),
    }
}

/// Published ports: `(ExposedPorts keys, PortBindings)`.
pub type PortMap = BTreeMap<String, Vec<PortBinding>>;

/// docker's `nat.ParsePortSpec`: `[ip:][hostPort:]containerPort[/proto]`, with ranges.
pub fn parse_port_spec(spec: &str, out: &mut PortMap) -> Result<(), String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((rest, proto)) => (rest, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("invalid proto: {proto}"));
    }
    // The IP may be bracketed IPv6: `[::1]:80:80`.
    let (ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let Some((ip, rest)) = after.split_once("]:") else {
            return Err(format!("invalid IP address: {rest}"));
        };
        (ip.to_string(), rest.to_string())
    } else {
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        match parts.len() {
            3 => (parts[2].to_string(), format!("{}:{}", parts[1], parts[0])),
            _ => (String::new(), rest.to_string()),
        }
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest.as_str()),
    };
    if container.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (c_start, c_end) =
        parse_range(container).ok_or_else(|| format!("invalid containerPort: {container}"))?;
    let (h_start, h_end) = if host.is_empty() {
        (0, 0)
    } else {
        parse_range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?
    };
    if !host.is_empty() && (h_end - h_start) != (c_end - c_start) && c_start != c_end {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {container} and {host}"
        ));
    }
    for (i, port) in (c_start..=c_end).enumerate() {
        let host_port = if host.is_empty() {
            String::new()
        } else if c_start == c_end && h_start != h_end {
            format!("{h_start}-{h_end}")
        } else {
            (h_start as usize + i).to_string()
        };
        out.entry(format!("{port}/{proto}"))
            .or_default()
            .push(PortBinding {
                host_ip: ip.clone(),
                host_port,
            });
    }
    Ok(())
}

/// `--expose 7000-7001/udp` → port keys.
pub fn parse_expose(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto),
        None => (spec, "tcp"),
    };
    let (start, end) =
        parse_range(ports).ok_or_else(|| format!("invalid range format for --expose: {spec}"))?;
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `--mount type=...,source=...,target=...`.
pub fn parse_mount(spec: &str) -> Result<Mount, String> {
    let mut parts = MountParts::default();
    for field in spec.split(',') {
        parts.set(field)?;
    }
    parts.finish()
}

/// A `--mount` being read: the mount, and the options of each type with whether any was given
/// (docker refuses `volume-*` options on a bind, and so on).
struct MountParts {
    mount: Mount,
    volume: VolumeOptions,
    bind: BindOptions,
    tmpfs: TmpfsOptions,
    driver: VolumeDriverConfig,
    has_volume: bool,
    has_bind: bool,
    has_tmpfs: bool,
}

impl Default for MountParts {
    fn default() -> MountParts {
        MountParts {
            mount: Mount {
                kind: "volume".to_string(),
                ..Default::default()
            },
            volume: VolumeOptions::default(),
            bind: BindOptions::default(),
            tmpfs: TmpfsOptions::default(),
            driver: VolumeDriverConfig::default(),
            has_volume: false,
            has_bind: false,
            has_tmpfs: false,
        }
    }
}

fn mount_bool(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("1") | Some("true") => Ok(true),
        Some("0") | Some("false") => Ok(false),
        Some(v) => Err(format!("invalid value for {key}: {v}")),
    }
}

impl MountParts {
    /// One `key=value` (or bare `key`) field.
    fn set(&mut self, field: &str) -> Result<(), String> {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let required =
            || value.ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        let invalid = |v: &str| format!("invalid value for {key}: {v}");
        match key.as_str() {
            "readonly" | "ro" => self.mount.read_only = mount_bool(&key, value)?,
            "type" => self.mount.kind = required()?.to_ascii_lowercase(),
            "source" | "src" => self.mount.source = required()?.to_string(),
            "target" | "dst" | "destination" => self.mount.target = required()?.to_string(),
            "consistency" => self.mount.consistency = required()?.to_string(),
            "bind-nonrecursive" => self.bind.non_recursive = mount_bool(&key, value)?,
            "bind-propagation" => self.bind.propagation = required()?.to_ascii_lowercase(),
            "bind-recursive" => match required()? {
                "enabled" => {}
                "disabled" => self.bind.non_recursive = true,
                "writable" => self.bind.read_only_non_recursive = true,
                "readonly" => self.bind.read_only_force_recursive = true,
                v => return Err(invalid(v)),
            },
            "volume-nocopy" => self.volume.no_copy = mount_bool(&key, value)?,
            "volume-subpath" => self.volume.subpath = required()?.to_string(),
            "volume-driver" => self.driver.name = required()?.to_string(),
            "volume-label" => {
                let (k, v) = required()?.split_once('=').unwrap_or((required()?, ""));
                self.volume
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(k.to_string(), v.to_string());
            }
            "volume-opt" => {
                let v = required()?;
                let (k, v) = v.split_once('=').unwrap_or((v, ""));
                self.driver
                    .options
                    .get_or_insert_with(Default::default)
                    .insert(k.to_string(), v.to_string());
            }
            "tmpfs-size" => {
                let v = required()?;
                self.tmpfs.size_bytes = ram_in_bytes(v).map_err(|_| invalid(v))?;
            }
            "tmpfs-mode" => {
                let v = required()?;
                self.tmpfs.mode = u32::from_str_radix(v, 8).map_err(|_| invalid(v))?;
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
        self.has_volume |= key.starts_with("volume-");
        self.has_bind |= key.starts_with("bind-");
        self.has_tmpfs |= key.starts_with("tmpfs-");
        Ok(())
    }

    /// The mount, once every field is read and the options agree with its type.
    fn finish(mut self) -> Result<Mount, String> {
        if self.mount.target.is_empty() {
            return Err("target is required".to_string());
        }
        for (given, prefix, kind) in [
            (self.has_volume, "volume", "volume"),
            (self.has_bind, "bind", "bind"),
            (self.has_tmpfs, "tmpfs", "tmpfs"),
        ] {
            if given && self.mount.kind != kind {
                return Err(format!(
                    "cannot mix '{prefix}-*' options with mount type '{}'",
                    self.mount.kind
                ));
            }
        }
        if !self.driver.name.is_empty() || self.driver.options.is_some() {
            self.volume.driver_config = Some(self.driver);
        }
        if self.has_volume {
            self.mount.volume_options = Some(self.volume);
        }
        if self.has_bind {
            self.mount.bind_options = Some(self.bind);
        }
        if self.has_tmpfs {
            self.mount.tmpfs_options = Some(self.tmpfs);
        }
        Ok(self.mount)
    }
}

/// `--device /dev/sda[:/dev/xvda][:rwm]`.
pub fn parse_device(spec: &str) -> Result<DeviceMapping, String> {
    let valid_mode = |m: &str| !m.is_empty() && m.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, perms) = match parts.as_slice() {
        [src] => (*src, *src, "rwm"),
        [src, mode] if valid_mode(mode) => (*src, *src, *mode),
        [src, dst] => (*src, *dst, "rwm"),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => return Err(format!("invalid device specification: {spec}")),
    };
    if !valid_mode(perms) {
        return Err(format!("invalid device mode: {perms}"));
    }
    if !dst.starts_with('/') {
        return Err(format!("{dst} is not an absolute path"));
    }
    Ok(DeviceMapping {
        path_on_host: src.to_string(),
        path_in_container: dst.to_string(),
        cgroup_permissions: perms.to_string(),
    })
}

/// `-e NAME` takes the value from the local environment when it has one.
pub(super) fn expand_env(entry: &str) -> String {
    if entry.contains('=') {
        return entry.to_string();
    }
    match std::env::var(entry) {
        Ok(value) => format!("{entry}={value}"),
        Err(_) => entry.to_string(),
    }
}

/// Reads an `--env-file`/`--label-file`: `KEY=VALUE` lines; blank lines and `#` comments
/// skipped; for env files a bare `KEY` takes the local value, and is dropped when unset.
pub fn read_kv_file(path: &str, env: bool) -> Result<Vec<String>> {
    let text = std::fs::read(path).map_err(|e| {
        usage(format!(
            "open {path}: {}",
            crate::commands::os_error_text(&e)
        ))
    })?;
    let text = String::from_utf8_lossy(&text);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            if key.is_empty() {
                return Err(usage(format!(
                    "invalid environment variable: {line} (line {} in {path})",
                    n + 1
                )));
            }
            out.push(line.to_string());
        } else if env {
            let key = line.trim_end();
            if let Ok(value) = std::env::var(key) {
                out.push(format!("{key}={value}"));
            }
        } else {
            out.push(line.trim_end().to_string());
        }
    }
    Ok(out)
}

/// Go's `json.Compact` on a seccomp profile: whitespace outside strings removed, order kept.
fn compact_json(text: &str) -> Result<String, String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    Ok(out)
}

pub(super) fn security_opts(opts: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for opt in opts {
        let (key, value) = match opt.split_once('=').or_else(|| opt.split_once(':')) {
            Some(kv) => kv,
            None if opt == "no-new-privileges" => {
                out.push(opt.clone());
                continue;
            }
            None => return Err(usage(format!("Invalid --security-opt: {opt:?}"))),
        };
        if key == "seccomp" && value != "unconfined" && value != "builtin" {
            let text = std::fs::read_to_string(value).map_err(|e| {
                usage(format!(
                    "opening seccomp profile ({value}) failed: open {value}: {}",
                    crate::commands::os_error_text(&e)
                ))
            })?;
            let compact = compact_json(&text).map_err(|e| {
                usage(format!(
                    "compacting json for seccomp profile ({value}) failed: {e}"
                ))
            })?;
            out.push(format!("seccomp={compact}"));
        } else {
            out.push(opt.clone());
        }
    }
    Ok(out)
}

pub(super) fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

/// `CAP_` prefixed and upper-cased, `ALL` kept, as docker's `opts.CapabilitiesMap`.
pub(super) fn normalize_caps(caps: &[String]) -> Option<Vec<String>> {
    if caps.is_empty() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for cap in caps {
        let upper = cap.trim().to_ascii_uppercase();
        let cap = if upper == "ALL" || upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if !out.contains(&cap) {
            out.push(cap);
        }
    }
    Some(out)
}
