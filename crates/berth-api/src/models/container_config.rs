//! `ContainerConfig`: the portable part of a container's configuration. Docker stores the same
//! structure as the `config` section of an image config, so images and containers share it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An empty JSON object, the value type Docker uses for sets such as `ExposedPorts` and `Volumes`.
pub type EmptyObject = BTreeMap<String, serde_json::Value>;

/// Docker's `container.Config`. Fields Docker always emits are always serialised (as `null` when
/// unset), because Python clients index the keys directly; Docker's `omitempty` fields are skipped
/// when unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    #[serde(rename = "Hostname")]
    pub hostname: String,
    #[serde(rename = "Domainname")]
    pub domainname: String,
    #[serde(rename = "User")]
    pub user: String,
    #[serde(rename = "AttachStdin")]
    pub attach_stdin: bool,
    #[serde(rename = "AttachStdout")]
    pub attach_stdout: bool,
    #[serde(rename = "AttachStderr")]
    pub attach_stderr: bool,
    #[serde(rename = "ExposedPorts", skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, EmptyObject>>,
    #[serde(rename = "Tty")]
    pub tty: bool,
    #[serde(rename = "OpenStdin")]
    pub open_stdin: bool,
    #[serde(rename = "StdinOnce")]
    pub stdin_once: bool,
    #[serde(rename = "Env")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Cmd",
        deserialize_with = "crate::models::strslice::deserialize"
    )]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Healthcheck", skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(rename = "ArgsEscaped", skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "Volumes")]
    pub volumes: Option<BTreeMap<String, EmptyObject>>,
    #[serde(rename = "WorkingDir")]
    pub working_dir: String,
    #[serde(
        rename = "Entrypoint",
        deserialize_with = "crate::models::strslice::deserialize"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "NetworkDisabled", skip_serializing_if = "std::ops::Not::not")]
    pub network_disabled: bool,
    #[serde(rename = "MacAddress", skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(rename = "OnBuild")]
    pub on_build: Option<Vec<String>>,
    #[serde(rename = "Labels")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "StopSignal", skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(rename = "StopTimeout", skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(
        rename = "Shell",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::models::strslice::deserialize"
    )]
    pub shell: Option<Vec<String>>,
}

/// A health check, from HEALTHCHECK or `--health-*`. Durations are nanoseconds, as in Docker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    #[serde(
        rename = "Test",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::models::strslice::deserialize"
    )]
    pub test: Option<Vec<String>>,
    #[serde(rename = "Interval", skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(rename = "Timeout", skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(rename = "StartPeriod", skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(rename = "StartInterval", skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(rename = "Retries", skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_image_config_section_with_string_cmd() {
        let config: ContainerConfig = serde_json::from_str(
            r#"{"Cmd":"sh","Env":["PATH=/bin"],"Labels":{"a":"b"},"ExposedPorts":{"80/tcp":{}}}"#,
        )
        .unwrap();
        assert_eq!(config.cmd, Some(vec!["sh".into()]));
        assert_eq!(config.env, Some(vec!["PATH=/bin".into()]));
        assert!(config.exposed_ports.unwrap().contains_key("80/tcp"));
    }

    #[test]
    fn always_emits_the_keys_docker_always_emits() {
        let json = serde_json::to_value(ContainerConfig::default()).unwrap();
        for key in [
            "Cmd",
            "Entrypoint",
            "Env",
            "Volumes",
            "Labels",
            "OnBuild",
            "WorkingDir",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert!(json.get("Healthcheck").is_none());
    }
}
