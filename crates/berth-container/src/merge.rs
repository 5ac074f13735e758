//! Creation rules: merging the image's configuration into the request (Docker's rules),
//! validating the host configuration with Docker's messages and filling Docker's defaults
//! (mounts are `berth-volume`'s and `crate::volumes`').

use std::collections::BTreeMap;

use berth_api::models::{ContainerConfig, HostConfig, Resources};
use berth_api::vocab::{LogDriver, NamespaceMode, NetworkMode, RestartPolicy};
use berth_runtime::shim::LogDriverConfig;

use crate::error::{ContainerError, Result, invalid};

/// Docker's default `/dev/shm` size.
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;
const MIN_MEMORY: i64 = 6 << 20;

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// Merges the image's config into the user's, as Docker does: user values win; env keys the
/// user did not set come from the image (after the user's); labels, exposed ports and volumes
/// are unions; the image's cmd is used only when the user gave neither entrypoint nor cmd.
pub fn merge_image_config(user: &mut ContainerConfig, image: &ContainerConfig) {
    if user.user.is_empty() {
        user.user = image.user.clone();
    }
    if let Some(ports) = &image.exposed_ports {
        let mine = user.exposed_ports.get_or_insert_with(BTreeMap::new);
        for (k, v) in ports {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    match (&mut user.env, &image.env) {
        (None, Some(img)) => user.env = Some(img.clone()),
        (Some(mine), Some(img)) => {
            for e in img {
                if !mine.iter().any(|m| env_key(m) == env_key(e)) {
                    mine.push(e.clone());
                }
            }
        }
        _ => {}
    }
    if let Some(labels) = &image.labels {
        let mine = user.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in labels {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let entrypoint_reset = user
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty());
    if entrypoint_reset {
        user.entrypoint = None;
    } else if user.entrypoint.as_ref().is_none_or(Vec::is_empty) {
        if user.cmd.as_ref().is_none_or(Vec::is_empty) {
            user.cmd = image.cmd.clone();
            user.args_escaped = image.args_escaped;
        }
        if user.entrypoint.is_none() {
            user.entrypoint = image.entrypoint.clone();
        }
    }
    if user.working_dir.is_empty() {
        user.working_dir = image.working_dir.clone();
    }
    if let Some(vols) = &image.volumes {
        let mine = user.volumes.get_or_insert_with(BTreeMap::new);
        for (k, v) in vols {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if user.stop_signal.is_none() {
        user.stop_signal = image.stop_signal.clone();
    }
    if user.healthcheck.is_none() {
        user.healthcheck = image.healthcheck.clone();
    }
    if user.on_build.is_none() {
        user.on_build = image.on_build.clone();
    }
    if user.shell.is_none() {
        user.shell = image.shell.clone();
    }
}

/// The process's path and arguments: entrypoint followed by cmd.
pub fn path_and_args(config: &ContainerConfig) -> Result<(String, Vec<String>)> {
    let mut all: Vec<String> = config.entrypoint.clone().unwrap_or_default();
    all.extend(config.cmd.clone().unwrap_or_default());
    if all.is_empty() || (all.len() == 1 && all[0].is_empty()) {
        return Err(invalid("no command specified"));
    }
    let path = all.remove(0);
    Ok((path, all))
}

/// The log driver with its options, as the runtime takes it (`--log-driver`, `--log-opt`).
pub(crate) fn log_driver_config(
    h: &HostConfig,
) -> std::result::Result<LogDriverConfig, berth_runtime::RuntimeError> {
    LogDriverConfig::from_docker(&berth_runtime::config::LogConfig {
        driver: h.log_config.kind.clone(),
        opts: h.log_config.config.clone(),
    })
}

/// Validates a host configuration with Docker's messages. `ncpu` is the host's CPU count.
pub fn validate_host_config(h: &HostConfig, ncpu: usize) -> Result<()> {
    if !matches!(h.cgroupns_mode.as_str(), "" | "host" | "private") {
        return Err(invalid(format!(
            "invalid cgroup namespace mode: {}",
            h.cgroupns_mode
        )));
    }
    validate_resources(&h.resources, ncpu)?;
    if h.shm_size < 0 {
        return Err(invalid("SHM size can not be less than 0"));
    }
    if !(-1000..=1000).contains(&h.oom_score_adj) {
        return Err(invalid(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            h.oom_score_adj
        )));
    }
    let policy = RestartPolicy::parse(&h.restart_policy)?;
    if h.auto_remove && policy != RestartPolicy::No {
        return Err(invalid(
            "can't create 'AutoRemove' container with restart policy",
        ));
    }
    LogDriver::parse(&h.log_config.kind)?;
    // Options are checked at create, as Docker does, not only when the shim starts.
    log_driver_config(h).map_err(|e| match e {
        // Docker's messages, without the runtime's prefix.
        berth_runtime::RuntimeError::InvalidConfig(m) => invalid(m),
        e => e.into(),
    })?;
    // A `container:` mode needs its target. Other PID and UTS words are taken as given (they
    // run private); an IPC mode must be one dockerd knows.
    for mode in [&h.pid_mode, &h.ipc_mode, &h.uts_mode] {
        if mode == "container:" {
            return Err(invalid(format!("invalid namespace mode: {mode}")));
        }
    }
    if NamespaceMode::parse(&h.ipc_mode).is_err() {
        return Err(invalid(format!("invalid IPC mode: {}", h.ipc_mode)));
    }
    if !h.userns_mode.is_empty() && h.userns_mode != "host" {
        return Err(ContainerError::NotImplemented(format!(
            "user namespace mode {:?} is not supported yet",
            h.userns_mode
        )));
    }
    Ok(())
}

/// dockerd's checks of the resource limits (`verifyPlatformContainerResources`).
fn validate_resources(r: &Resources, ncpu: usize) -> Result<()> {
    if r.memory != 0 && r.memory < MIN_MEMORY {
        return Err(invalid("Minimum memory limit allowed is 6MB"));
    }
    if r.memory_swap > 0 && r.memory == 0 {
        return Err(invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    if r.memory > 0 && r.memory_swap > 0 && r.memory_swap < r.memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if r.kernel_memory > 0 && r.kernel_memory < MIN_MEMORY {
        return Err(invalid("Minimum kernel memory limit allowed is 6MB"));
    }
    if r.memory_reservation != 0 && r.memory_reservation < MIN_MEMORY {
        return Err(invalid("Minimum memory reservation allowed is 6MB"));
    }
    if r.memory > 0 && r.memory_reservation > 0 && r.memory < r.memory_reservation {
        return Err(invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    if let Some(s) = r.memory_swappiness
        && s != -1
        && !(0..=100).contains(&s)
    {
        return Err(invalid(format!(
            "Invalid value: {s}, valid memory swappiness range is 0-100"
        )));
    }
    if r.nano_cpus > 0 && r.cpu_period > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if r.nano_cpus > 0 && r.cpu_quota > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    if r.nano_cpus < 0 || r.nano_cpus > ncpu as i64 * 1_000_000_000 {
        return Err(invalid(format!(
            "range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    if r.cpu_period != 0 && !(1000..=1_000_000).contains(&r.cpu_period) {
        return Err(invalid(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    if r.cpu_quota > 0 && r.cpu_quota < 1000 {
        return Err(invalid(
            "CPU cfs quota can not be less than 1ms (i.e. 1000)",
        ));
    }
    if r.cpu_shares < 0 {
        return Err(invalid(format!(
            "invalid CPU shares ({}): value must be a positive integer",
            r.cpu_shares
        )));
    }
    if r.blkio_weight != 0 && !(10..=1000).contains(&r.blkio_weight) {
        return Err(invalid("Range of blkio weight is from 10 to 1000"));
    }
    Ok(())
}

/// Drops the settings this host's cgroups cannot apply, with Docker's warnings. cgroup v2 has
/// no way to disable the OOM killer (v1's `memory.oom_control`), so Docker discards
/// `OomKillDisable` there (inspect then shows `null`) rather than pretend it applies.
pub fn discard_unsupported(h: &mut HostConfig, cgroup_v1: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if !cgroup_v1 && h.resources.oom_kill_disable.take() == Some(true) {
        warnings
            .push("Your kernel does not support OomKillDisable. OomKillDisable discarded.".into());
    }
    warnings
}

/// Fills the defaults Docker stores in a new container's host configuration.
pub fn fill_host_defaults(h: &mut HostConfig, cgroup_v1: bool) {
    if h.network_mode.is_default() {
        h.network_mode = NetworkMode::Bridge;
    }
    if h.log_config.kind.is_empty() {
        h.log_config.kind = "json-file".into();
    }
    if h.restart_policy.name.is_empty() {
        h.restart_policy.name = "no".into();
    }
    if h.shm_size == 0 {
        h.shm_size = DEFAULT_SHM_SIZE;
    }
    // Docker records the swap it will apply: a memory limit without a swap limit allows as
    // much swap again.
    // (Go's arithmetic: twice a limit near 2^63 wraps, and a negative swap is not applied.)
    if h.resources.memory > 0 && h.resources.memory_swap == 0 {
        h.resources.memory_swap = h.resources.memory.wrapping_mul(2);
    }
    if h.ipc_mode.is_empty() {
        h.ipc_mode = "private".into();
    }
    if h.cgroupns_mode.is_empty() {
        h.cgroupns_mode = if cgroup_v1 { "host" } else { "private" }.into();
    }
    if h.runtime.is_empty() {
        h.runtime = "runc".into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::models::RestartPolicy;

    fn cfg(json: &str) -> ContainerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn image_config_merges_like_dockers() {
        let image = cfg(
            r#"{"Env":["PATH=/bin","A=image"],"Cmd":["sh"],"Entrypoint":["/init"],"WorkingDir":"/srv",
                "User":"www","Labels":{"a":"1","b":"1"},"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT"}"#,
        );
        let mut user = cfg(r#"{"Env":["A=user","B=2"],"Labels":{"b":"2"}}"#);
        merge_image_config(&mut user, &image);
        assert_eq!(
            user.env.clone().unwrap(),
            vec!["A=user", "B=2", "PATH=/bin"]
        );
        assert_eq!(user.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(user.entrypoint, Some(vec!["/init".to_string()]));
        assert_eq!(user.working_dir, "/srv");
        assert_eq!(user.user, "www");
        let labels = user.labels.clone().unwrap();
        assert_eq!((labels["a"].as_str(), labels["b"].as_str()), ("1", "2"));
        assert_eq!(user.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(
            path_and_args(&user).unwrap(),
            ("/init".into(), vec!["sh".into()])
        );

        // A user cmd replaces the image's cmd but keeps its entrypoint.
        let mut user = cfg(r#"{"Cmd":["echo","hi"]}"#);
        merge_image_config(&mut user, &image);
        assert_eq!(
            path_and_args(&user).unwrap(),
            ("/init".into(), vec!["echo".into(), "hi".into()])
        );

        // --entrypoint resets the image's cmd.
        let mut user = cfg(r#"{"Entrypoint":["/bin/echo"]}"#);
        merge_image_config(&mut user, &image);
        assert_eq!(path_and_args(&user).unwrap(), ("/bin/echo".into(), vec![]));

        // --entrypoint "" drops both entrypoints, cmd given by the user.
        let mut user = cfg(r#"{"Entrypoint":[""],"Cmd":["ls"]}"#);
        merge_image_config(&mut user, &image);
        assert_eq!(path_and_args(&user).unwrap(), ("ls".into(), vec![]));

        let mut nothing = ContainerConfig::default();
        merge_image_config(&mut nothing, &ContainerConfig::default());
        assert_eq!(
            path_and_args(&nothing).unwrap_err().to_string(),
            "no command specified"
        );
    }

    fn check(f: impl FnOnce(&mut HostConfig)) -> String {
        let mut h = HostConfig::default();
        f(&mut h);
        validate_host_config(&h, 2)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn oom_kill_disable_is_discarded_on_cgroup_v2() {
        let mut h = HostConfig::default();
        h.resources.oom_kill_disable = Some(true);
        assert!(discard_unsupported(&mut h.clone(), true).is_empty());
        assert_eq!(
            discard_unsupported(&mut h, false),
            ["Your kernel does not support OomKillDisable. OomKillDisable discarded."]
        );
        assert_eq!(h.resources.oom_kill_disable, None);
        h.resources.oom_kill_disable = Some(false);
        assert!(discard_unsupported(&mut h, false).is_empty());
        assert_eq!(h.resources.oom_kill_disable, None);
    }

    #[test]
    fn validation_messages() {
        assert_eq!(check(|_| {}), "");
        assert_eq!(check(|h| h.cgroupns_mode = "private".into()), "");
        assert_eq!(
            check(|h| h.cgroupns_mode = "shared".into()),
            "invalid cgroup namespace mode: shared"
        );
        assert_eq!(
            check(|h| h.resources.memory = 1 << 20),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            check(|h| h.resources.nano_cpus = 3_000_000_000),
            "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        assert_eq!(
            check(|h| {
                h.auto_remove = true;
                h.restart_policy = RestartPolicy {
                    name: "always".into(),
                    maximum_retry_count: 0,
                };
            }),
            "can't create 'AutoRemove' container with restart policy"
        );
        assert_eq!(
            check(|h| h.restart_policy.name = "bogus".into()),
            "invalid restart policy: unknown policy 'bogus'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        );
        assert_eq!(
            check(|h| {
                h.resources.memory = 64 << 20;
                h.resources.memory_swap = 32 << 20;
            }),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert_eq!(
            check(|h| h.resources.blkio_weight = 5),
            "Range of blkio weight is from 10 to 1000"
        );
        assert_eq!(
            check(|h| h.shm_size = -1),
            "SHM size can not be less than 0"
        );
    }
}
