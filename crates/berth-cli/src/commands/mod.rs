//! One module per command group. Each command parses into a clap struct, talks to the daemon
//! through `berth-client`, and formats with `crate::format`.

pub mod container;
pub mod context;
pub mod cp;
pub mod image;
pub mod network;
pub mod run_opts;
pub mod session;
pub mod stats;
pub mod system;
pub mod volume;

use anyhow::{Result, bail};
use berth_client::{ApiVersion, Client, Host};

use crate::cli::GlobalOptions;
use crate::config::{self, ConfigDir, HostInputs, Resolved};

/// What every command gets: the global options and access to the config dir and the daemon.
pub struct Env {
    pub global: GlobalOptions,
    pub config: ConfigDir,
}

impl Env {
    pub fn new(global: GlobalOptions) -> Env {
        let dir = global
            .config
            .clone()
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(config::default_config_dir);
        Env {
            global,
            config: ConfigDir::new(dir),
        }
    }

    pub fn host_inputs(&self) -> Result<HostInputs> {
        if self.global.host.len() > 1 {
            bail!("Specify only one -H");
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(HostInputs {
            flag_host: self.global.host.first().cloned(),
            env_host: env("BERTH_HOST"),
            context: self.global.context.clone(),
            env_context: env("BERTH_CONTEXT"),
        })
    }

    /// The daemon address and context in effect.
    pub fn resolve(&self) -> Result<Resolved> {
        config::resolve_host(&self.config, &self.host_inputs()?)
    }

    /// A client for the resolved daemon; `BERTH_API_VERSION` pins the API version.
    pub fn client(&self) -> Result<Client> {
        let resolved = self.resolve()?;
        let host = Host::parse(&resolved.host)?;
        match std::env::var("BERTH_API_VERSION")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(v) => {
                let Some(version) = ApiVersion::parse(v.trim_start_matches('v')) else {
                    bail!("invalid BERTH_API_VERSION {v:?}: expected a version such as 1.51");
                };
                Ok(Client::with_version(host, version))
            }
            None => Ok(Client::new(host)),
        }
    }
}

/// Builds a filter set from `--filter key=value` flags, with docker's message for bad ones.
pub fn parse_filters(flags: &[String]) -> Result<berth_client::Filters> {
    let mut filters = berth_client::Filters::new();
    for flag in flags {
        let Some((key, value)) = flag.split_once('=') else {
            bail!("bad format of filter (expected name=value)");
        };
        filters.add(key.trim().to_lowercase(), value.trim());
    }
    Ok(filters)
}

/// An OS error as Go prints it: `no such file or directory` (no `(os error 2)`, lower case).
pub fn os_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
