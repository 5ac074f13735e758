//! docker's `service create`/`service update` flags beyond the basic ones in `service.rs`, in
//! groups flattened into `CreateArgs`/`UpdateArgs`. Each group turns its flags into the
//! `ServiceSpec` JSON the docker CLI sends (`cli/command/service/opts.go`, `update.go`):
//! `apply` for create, `apply_update` (or an `Update*` group) to change a read spec in place.

pub mod container;
pub mod network;
pub mod resources;
pub mod update;
pub mod update_lists;

use anyhow::{Result, anyhow};
use serde_json::{Map, Value, json};

pub use container::ContainerFlags;
pub use network::{NetworkFlags, UpdateNetworkFlags};
pub use resources::{TaskResourceFlags, UpdateResourceFlags};
pub use update::ServiceUpdateFlags;

/// pflag's wording for a value a flag's parser refused.
pub(crate) fn flag_error(value: &str, flag: &str, reason: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("invalid argument \"{value}\" for \"{flag}\" flag: {reason}")
}

/// A Go duration flag in nanoseconds (docker's `PositiveDurationOpt` for the health flags).
pub(crate) fn duration(text: &str, flag: &str) -> Result<i64> {
    let n = berth_api::duration::parse_go_duration(text)
        .ok_or_else(|| flag_error(text, flag, format!("time: invalid duration \"{text}\"")))?;
    Ok(n as i64)
}

/// `--limit-memory 512m`: docker's `MemBytes`.
pub(crate) fn mem_bytes(text: &str, flag: &str) -> Result<i64> {
    berth_api::units::ram_in_bytes(text).map_err(|e| flag_error(text, flag, e))
}

/// `--limit-cpu 1.5`: docker's `NanoCPUs`.
pub(crate) fn nano_cpus(text: &str, flag: &str) -> Result<i64> {
    super::run_opts::parse_nano_cpus(text).map_err(|e| flag_error(text, flag, e))
}

/// A shell-quoted flag value split into words (docker's `ShlexOpt`).
pub(crate) fn shlex(text: &str) -> Vec<String> {
    berth_compose::loader::canonical::shell_split(text)
}

/// `KEY=VALUE` items as a JSON object (a bare `KEY` maps to "").
pub(crate) fn kv_map(items: &[String]) -> Map<String, Value> {
    items
        .iter()
        .map(|i| {
            let (k, v) = i.split_once('=').unwrap_or((i, ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

/// The strings of a JSON array (missing or null: none).
pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// `--label-add`/`--label-rm` on a JSON object of labels (removals first, as docker does).
pub(crate) fn update_map(target: &mut Value, add: &[String], rm: &[String]) {
    if add.is_empty() && rm.is_empty() {
        return;
    }
    let mut map = target.as_object().cloned().unwrap_or_default();
    for k in rm {
        map.remove(k.split_once('=').map_or(k.as_str(), |(k, _)| k));
    }
    map.extend(kv_map(add));
    *target = Value::Object(map);
}

/// Everything `service create` takes beyond the flags in `service.rs`.
#[derive(Debug, clap::Args)]
pub struct ServiceCreateFlags {
    #[command(flatten)]
    pub container: ContainerFlags,
    #[command(flatten)]
    pub network: NetworkFlags,
    #[command(flatten)]
    pub resources: TaskResourceFlags,
    #[command(flatten)]
    pub placement: resources::PlacementFlags,
}

impl ServiceCreateFlags {
    pub async fn apply(&self, env: &crate::commands::Env, spec: &mut Value) -> Result<()> {
        let task = &mut spec["TaskTemplate"];
        let mut cs = task["ContainerSpec"].take();
        let outcome = self.container.apply(&mut cs, task);
        task["ContainerSpec"] = cs;
        outcome?;
        self.resources.apply(spec)?;
        self.placement.apply(spec)?;
        self.network.apply(env, spec).await
    }
}

/// A swarm API call with `X-Registry-Auth` when `--with-registry-auth` found credentials.
pub(crate) async fn call_with_auth(
    env: &crate::commands::Env,
    method: http::Method,
    path: &str,
    query: &berth_client::Query,
    body: &Value,
    auth: Option<&str>,
) -> Result<Value> {
    let Some(auth) = auth else {
        return crate::commands::swarm::call(env, method, path, query, Some(body)).await;
    };
    let bytes = env
        .client()?
        .request_bytes_with_headers(
            method,
            path,
            query,
            berth_client::Body::Json(serde_json::to_vec(body)?),
            &[("X-Registry-Auth", auth)],
        )
        .await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// `service update --with-registry-auth`: the credentials for the new image, or else for the
/// service's current one.
pub(crate) async fn update_auth(
    env: &crate::commands::Env,
    service: &str,
    image: Option<&str>,
) -> Result<Option<String>> {
    let image = match image {
        Some(i) => i.to_string(),
        None => {
            let s = crate::commands::swarm::call(
                env,
                http::Method::GET,
                &format!("/services/{service}"),
                &berth_client::Query::new(),
                None,
            )
            .await?;
            let image = &s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"];
            image.as_str().unwrap_or_default().to_string()
        }
    };
    Ok(crate::credentials::registry_auth_for(&env.config, &image))
}

#[cfg(test)]
mod tests;
