//! One module per command group. Each command parses into a clap struct, talks to the daemon
//! through `berth-client`, and formats with `crate::format`.

pub mod build;
pub mod builder;
pub mod compose;
pub mod container;
pub mod context;
pub mod cp;
pub mod dial_stdio;
pub mod image;
pub mod login;
pub mod network;
pub mod node;
pub mod pull;
pub mod push;
pub mod registry;
pub mod run_opts;
pub mod secret;
pub mod service;
pub mod service_flags;
pub mod service_more;
pub mod service_privileges;
pub mod session;
pub mod stack;
pub mod stats;
pub mod swarm;
pub mod swarm_ca;
pub mod swarm_list;
pub mod swarm_lock;
pub mod system;
pub mod volume;

use anyhow::{Result, bail};
use berth_client::{ApiVersion, Client, Host};
use bytes::Bytes;

use crate::cli::GlobalOptions;
use crate::config::{self, ConfigDir, HostInputs, Resolved};
use crate::format::inspect_output;
use crate::format::units::human_size;
use crate::output::{self, StatusError, describe_client_error};

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
        let (env_host, env_context) = config::env_endpoint(&env);
        Ok(HostInputs {
            flag_host: self.global.host.first().cloned(),
            env_host,
            context: self.global.context.clone(),
            env_context,
        })
    }

    /// The daemon address and context in effect.
    pub fn resolve(&self) -> Result<Resolved> {
        config::resolve_host(&self.config, &self.host_inputs()?)
    }

    /// The TLS material of the resolved daemon (see `crate::tls`): the flags' for the
    /// default context, a named context's own otherwise.
    pub fn tls_options(&self, resolved: &Resolved) -> Result<Option<berth_client::TlsOptions>> {
        if resolved.context == config::DEFAULT_CONTEXT {
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            return Ok(crate::tls::from_flags(&self.global, &self.config.dir, &env));
        }
        let meta = self.config.context(&resolved.context)?;
        let endpoint = meta
            .and_then(|m| m.endpoints.get("docker").cloned())
            .unwrap_or_default();
        Ok(crate::tls::from_context(
            &self.config,
            &resolved.context,
            &endpoint,
        ))
    }

    /// A client for the resolved daemon; `BERTH_API_VERSION` pins the API version.
    pub fn client(&self) -> Result<Client> {
        let resolved = self.resolve()?;
        let tls = self.tls_options(&resolved)?;
        let host = Host::parse_for(&resolved.host, tls.is_some())?;
        let client = match std::env::var("BERTH_API_VERSION")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(v) => {
                let Some(version) = ApiVersion::parse(v.trim_start_matches('v')) else {
                    bail!("invalid BERTH_API_VERSION {v:?}: expected a version such as 1.51");
                };
                Client::with_version(host, version)
            }
            None => Client::new(host),
        };
        // TLS is for tcp; a unix socket or ssh ignores the flags, as docker does.
        match (tls, client.host()) {
            (Some(tls), Host::Tcp(_)) => Ok(client.with_tls(tls.load()?)),
            _ => Ok(client),
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

/// Runs `op` on each named object as docker's multi-object commands (`rm`, `inspect`) do: an
/// error from the daemon is kept and the rest go on; an error reaching the daemon at all stops
/// at once. Returns what succeeded and the messages of what did not.
pub async fn each_name<T>(
    names: &[String],
    op: impl AsyncFn(&str) -> berth_client::Result<T>,
) -> berth_client::Result<(Vec<T>, Vec<String>)> {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match op(name).await {
            Ok(value) => done.push(value),
            Err(e @ berth_client::Error::Api(_)) => errors.push(describe_client_error(&e)),
            Err(e) => return Err(e),
        }
    }
    Ok((done, errors))
}

/// Fails with status 1 and all the messages, one a line, when there are any.
pub fn fail_if(errors: Vec<String>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StatusError::error(1, errors.join("\n")))
    }
}

/// `<object> inspect`: the raw JSON of each name (a JSON array indented like docker's, or one
/// template rendering per object), then the errors of the names that failed.
pub async fn inspect_each(
    names: &[String],
    template: Option<&str>,
    fetch: impl AsyncFn(&str) -> berth_client::Result<Bytes>,
) -> Result<()> {
    let (raws, errors) = match each_name(names, fetch).await {
        Ok(outcome) => outcome,
        // A daemon that cannot be reached fails the whole command at once, after docker's `[]`.
        Err(e) => {
            output::out("[]\n");
            return Err(e.into());
        }
    };
    output::out(&inspect_output(&raws, template)?);
    fail_if(errors)
}

/// Asks docker's question on stdout and reads the answer from stdin.
pub fn confirm(warning: &str) -> bool {
    output::out(&format!(
        "{warning}\nAre you sure you want to continue? [y/N] "
    ));
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// The list a prune prints, `Deleted Volumes:` and one line per object; nothing when none went.
pub fn deleted_list(heading: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut text = format!("{heading}\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// A prune's whole report: the deleted list, a blank line after it, then the space freed.
pub fn prune_report(heading: &str, lines: &[String], space_reclaimed: i64) -> String {
    let mut text = deleted_list(heading, lines);
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(space_reclaimed)
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_reports_read_like_dockers() {
        let deleted = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            prune_report("Deleted Containers:", &deleted, 2048),
            "Deleted Containers:\na\nb\n\nTotal reclaimed space: 2.048kB\n"
        );
        assert_eq!(
            prune_report("Deleted Volumes:", &[], 0),
            "Total reclaimed space: 0B\n"
        );
        assert_eq!(
            deleted_list("Deleted Networks:", &deleted),
            "Deleted Networks:\na\nb\n"
        );
        assert_eq!(deleted_list("Deleted Networks:", &[]), "");
    }
}
