//! `service update`'s list flags for what `service create` sets once: `--dns-add/-rm`,
//! `--dns-search-add/-rm`, `--dns-option-add/-rm`, `--host-add/-rm`, `--group-add/-rm`,
//! `--sysctl-add/-rm`, `--ulimit-add/-rm` (docker's `update.go` semantics).

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};

use super::container::host_line;
use super::{flag_error, strings, update_map};

#[derive(Debug, Args)]
pub struct UpdateListFlags {
    /// Add or update a custom DNS server
    #[arg(long, value_name = "list")]
    pub dns_add: Vec<String>,
    /// Remove a custom DNS server
    #[arg(long, value_name = "list")]
    pub dns_rm: Vec<String>,
    /// Add or update a DNS option
    #[arg(long, value_name = "list")]
    pub dns_option_add: Vec<String>,
    /// Remove a DNS option
    #[arg(long, value_name = "list")]
    pub dns_option_rm: Vec<String>,
    /// Add or update a custom DNS search domain
    #[arg(long, value_name = "list")]
    pub dns_search_add: Vec<String>,
    /// Remove a DNS search domain
    #[arg(long, value_name = "list")]
    pub dns_search_rm: Vec<String>,
    /// Add a custom host-to-IP mapping ("host:ip")
    #[arg(long, value_name = "list")]
    pub host_add: Vec<String>,
    /// Remove a custom host-to-IP mapping ("host:ip")
    #[arg(long, value_name = "list")]
    pub host_rm: Vec<String>,
    /// Add an additional supplementary user group to the container
    #[arg(long, value_name = "list")]
    pub group_add: Vec<String>,
    /// Remove a previously added supplementary user group from the container
    #[arg(long, value_name = "list")]
    pub group_rm: Vec<String>,
    /// Add or update a Sysctl option
    #[arg(long, value_name = "list")]
    pub sysctl_add: Vec<String>,
    /// Remove a Sysctl option
    #[arg(long, value_name = "list")]
    pub sysctl_rm: Vec<String>,
    /// Add or update a ulimit option
    #[arg(long, value_name = "ulimit")]
    pub ulimit_add: Vec<String>,
    /// Remove a ulimit option
    #[arg(long, value_name = "list")]
    pub ulimit_rm: Vec<String>,
}

/// docker's `updateDNSConfig` for one list: added, duplicates dropped, then removed.
fn add_rm(current: &Value, add: &[String], rm: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in strings(current).into_iter().chain(add.iter().cloned()) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out.retain(|v| !rm.contains(v));
    out
}

impl UpdateListFlags {
    pub fn apply(&self, cs: &mut Value) -> Result<()> {
        let dns = [
            ("Nameservers", &self.dns_add, &self.dns_rm),
            ("Search", &self.dns_search_add, &self.dns_search_rm),
            ("Options", &self.dns_option_add, &self.dns_option_rm),
        ];
        if dns.iter().any(|(_, a, r)| !a.is_empty() || !r.is_empty()) {
            for d in &self.dns_add {
                if d.parse::<std::net::IpAddr>().is_err() {
                    return Err(flag_error(
                        d,
                        "--dns-add",
                        format!("IP address is not correctly formatted: {d}"),
                    ));
                }
            }
            let mut config = cs["DNSConfig"].as_object().cloned().unwrap_or_default();
            for (key, add, rm) in dns {
                let list = add_rm(config.get(key).unwrap_or(&Value::Null), add, rm);
                if list.is_empty() {
                    config.remove(key);
                } else {
                    config.insert(key.into(), json!(list));
                }
            }
            cs["DNSConfig"] = Value::Object(config);
        }
        if !self.host_add.is_empty() || !self.host_rm.is_empty() {
            let mut hosts = strings(&cs["Hosts"]);
            for rm in &self.host_rm {
                // `name:ip` removes that mapping; a bare name every mapping of that name.
                match host_line(rm, "--host-rm") {
                    Ok(line) => hosts.retain(|h| h != &line),
                    Err(_) => hosts.retain(|h| !h.split_whitespace().skip(1).any(|n| n == rm)),
                }
            }
            for add in &self.host_add {
                let line = host_line(add, "--host-add")?;
                if !hosts.contains(&line) {
                    hosts.push(line);
                }
            }
            cs["Hosts"] = json!(hosts);
        }
        if !self.group_add.is_empty() || !self.group_rm.is_empty() {
            let mut groups = add_rm(&cs["Groups"], &self.group_add, &self.group_rm);
            // docker sorts them so that the result is predictable.
            groups.sort();
            cs["Groups"] = json!(groups);
        }
        update_map(&mut cs["Sysctls"], &self.sysctl_add, &self.sysctl_rm);
        if !self.ulimit_add.is_empty() || !self.ulimit_rm.is_empty() {
            let mut limits: Vec<Value> = cs["Ulimits"].as_array().cloned().unwrap_or_default();
            limits.retain(|l| {
                !self
                    .ulimit_rm
                    .iter()
                    .any(|r| l["Name"] == r.split('=').next().unwrap_or(r))
            });
            for u in &self.ulimit_add {
                let new = crate::commands::run_opts::parse_ulimit(u)
                    .map_err(|e| flag_error(u, "--ulimit-add", e))?;
                limits.retain(|l| l["Name"] != new.name.as_str());
                limits.push(json!(new));
            }
            limits.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
            cs["Ulimits"] = json!(limits);
        }
        Ok(())
    }
}
