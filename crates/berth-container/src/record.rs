//! The container record (`containers/<id>/config.v2.json`), written atomically on every change.

use std::path::{Path, PathBuf};

use berth_api::models::container::Health;
use berth_api::models::{ContainerConfig, HostConfig};
use berth_api::vocab::{LogDriver, NamespaceMode, NetworkMode, RestartPolicy};
use berth_runtime::shim::LogDriverConfig;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ContainerError, Result};

/// File name of the record inside the container directory.
pub const RECORD_FILE: &str = "config.v2.json";

/// Docker's container statuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    /// The lowercase name Docker uses (`State.Status`, the `status` filter).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// A process exists (running or paused).
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// The mutable run-time state of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub oom_killed: bool,
    /// Stopped by a user (`stop`, `kill`): restart policies leave it alone
    /// (`unless-stopped` also across daemon restarts).
    pub manually_stopped: bool,
    /// Health check status and recent results (`State.Health`), for containers with one.
    pub health: Option<Health>,
}

/// Everything the daemon keeps about one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    pub id: String,
    /// Without the leading slash.
    pub name: String,
    pub created: DateTime<Utc>,
    /// The image as the user named it (`Config.Image`).
    pub image: String,
    /// The image id (`sha256:...`).
    pub image_id: String,
    /// The command: entrypoint and cmd, split into path and arguments.
    pub path: String,
    pub args: Vec<String>,
    /// The configuration with the image's merged in.
    pub config: ContainerConfig,
    /// The host configuration as given, with Docker's defaults filled in.
    pub host_config: HostConfig,
    pub state: State,
    pub restart_count: i64,
    /// The mounts resolved at create (volumes named, binds checked), Docker's `MountPoints`.
    pub mounts: Vec<berth_volume::MountEntry>,
    /// The log driver and its options, checked and parsed once at create (`HostConfig.LogConfig`
    /// cannot change afterwards); every start hands it to the shim as it is. `None` in records
    /// of daemons before it was kept: derived from `HostConfig.LogConfig` then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogDriverConfig>,
}

impl Record {
    /// The restart policy, checked when the container was created (or updated).
    pub fn restart_policy(&self) -> RestartPolicy {
        RestartPolicy::of_record(&self.host_config.restart_policy)
    }

    /// The network mode.
    pub fn network_mode(&self) -> &NetworkMode {
        &self.host_config.network_mode
    }

    /// The IPC mode, checked at create (a record's unknown one reads as the default).
    pub fn ipc_mode(&self) -> NamespaceMode {
        NamespaceMode::parse(&self.host_config.ipc_mode).unwrap_or_default()
    }

    /// The PID mode; a word that is not a mode runs private, as under dockerd.
    pub fn pid_mode(&self) -> NamespaceMode {
        NamespaceMode::parse(&self.host_config.pid_mode).unwrap_or_default()
    }

    /// The log driver; one that is not known (a record from another daemon) is read as
    /// `json-file`, whose files are then simply not there.
    pub fn log_driver(&self) -> LogDriver {
        LogDriver::parse(&self.host_config.log_config.kind).unwrap_or_default()
    }

    /// The log driver with its options, checked at create (a record from before that check
    /// fails at start with the runtime's error).
    pub fn log_config(&self) -> std::result::Result<LogDriverConfig, berth_runtime::RuntimeError> {
        match &self.log {
            Some(log) => Ok(log.clone()),
            None => crate::merge::log_driver_config(&self.host_config),
        }
    }

    /// Reads a record.
    pub fn load(dir: &Path) -> Result<Record> {
        let path = dir.join(RECORD_FILE);
        let bytes = std::fs::read(&path).map_err(|e| ContainerError::io("read", &path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ContainerError::io("parse", &path, std::io::Error::other(e)))
    }

    /// Writes the record atomically (temp file, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_as(dir, true)
    }

    /// Writes the record atomically; waits for the disk only when `durable`. Readers (and a
    /// restarted daemon) never see a partial record either way; what a machine crash can undo
    /// without the fsync is only the last process state, which the crash ended anyway.
    pub fn save_as(&self, dir: &Path, durable: bool) -> Result<()> {
        let path = dir.join(RECORD_FILE);
        let bytes = serde_json::to_vec(self)
            .map_err(|e| ContainerError::io("encode", &path, std::io::Error::other(e)))?;
        if durable {
            berth_runtime::bundle::write_atomic(&path, &bytes)?;
        } else {
            berth_runtime::bundle::replace_file(&path, &bytes)?;
        }
        Ok(())
    }

    /// Whether `self` differs from `before` in more than the state of its process (status,
    /// pid, exit code, times, health, restart count). `manually_stopped` counts as more: it is
    /// the user's decision that restart policies must still honour after a machine crash.
    pub fn differs_beyond_process_state(&self, before: &Record) -> bool {
        let mut b = before.clone();
        let s = &self.state;
        b.state = State {
            manually_stopped: b.state.manually_stopped,
            ..s.clone()
        };
        b.restart_count = self.restart_count;
        b != *self
    }

    /// Name with Docker's leading slash.
    pub fn slash_name(&self) -> String {
        format!("/{}", self.name)
    }
}

/// Paths of one container's files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// What lasts (`<data-root>/containers/<id>`): the record, the writable layer, logs,
    /// exec records.
    pub dir: PathBuf,
    /// The bundle (`<exec-root>/containers/<id>`, a tmpfs): the spec, the shim's socket, pid
    /// files and exit record, libcontainer's state, hostname/hosts/resolv.conf; all of it
    /// describes processes a reboot ends (or is regenerated at every start), and a `run`
    /// writes and removes it each time, so it stays off the disk.
    pub run: PathBuf,
}

impl Paths {
    /// The container's bundle, its log in the lasting directory.
    pub fn bundle(&self) -> berth_runtime::bundle::Bundle {
        berth_runtime::bundle::Bundle::new(&self.run).with_log_dir(&self.dir)
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}-json.log"))
    }
    // hostname, hosts and resolv.conf are regenerated at every start (and `hosts` at every
    // network change): run-time files, kept with the bundle.
    pub fn hostname(&self) -> PathBuf {
        self.run.join("hostname")
    }
    pub fn hosts(&self) -> PathBuf {
        self.run.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.run.join("resolv.conf")
    }
    /// The host-side `/dev/shm` of a container with `--ipc shareable`, which containers
    /// joining its IPC namespace bind as well.
    pub fn shm(&self) -> PathBuf {
        self.dir.join("mounts").join("shm")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
}

/// Go's zero time, what Docker shows for a time that never happened.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 with nanoseconds, or Go's zero time.
pub fn go_time(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        None => GO_ZERO_TIME.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_process_state_changes_skip_the_fsync() {
        let before = Record {
            id: "a".repeat(64),
            name: "web".into(),
            ..Default::default()
        };
        let mut started = before.clone();
        started.state.status = Status::Running;
        started.state.pid = 42;
        started.state.started_at = Some(Utc::now());
        started.restart_count = 1;
        assert!(!started.differs_beyond_process_state(&before));

        let mut stopped = started.clone();
        stopped.state.manually_stopped = true;
        assert!(
            stopped.differs_beyond_process_state(&started),
            "a user's stop lasts"
        );
        let mut renamed = before.clone();
        renamed.name = "api".into();
        assert!(renamed.differs_beyond_process_state(&before));
    }

    /// The runtime is handed the parsed driver (with Docker's defaults for `local`), not the
    /// strings: the shim's config holds what was checked at create.
    #[test]
    fn the_log_config_is_parsed_from_the_record() {
        let mut r = Record::default();
        r.host_config.log_config.kind = "local".into();
        r.host_config.log_config.config = [("max-file".to_string(), "2".to_string())].into();
        assert_eq!(
            r.log_config().unwrap(),
            LogDriverConfig::Local {
                max_size: Some(20 << 20),
                max_file: 2,
                compress: true,
            }
        );
        r.host_config.log_config.kind = "gelf".into();
        assert!(matches!(
            r.log_config(),
            Err(berth_runtime::RuntimeError::LogDriverNotSupported { .. })
        ));
    }

    /// Kept typed in the record from create on: a start takes it as stored (here, unlike the
    /// strings beside it), and a record written before it was kept still gets one.
    #[test]
    fn the_log_config_stored_at_create_is_the_one_used() {
        let mut r = Record::default();
        r.host_config.log_config.kind = "gelf".into();
        r.log = Some(LogDriverConfig::None);
        assert_eq!(r.log_config().unwrap(), LogDriverConfig::None);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["log"], serde_json::json!({"driver": "none"}));
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("log");
        old["host_config"]["LogConfig"]["Type"] = "none".into();
        let old: Record = serde_json::from_value(old).unwrap();
        assert_eq!(old.log, None);
        assert_eq!(old.log_config().unwrap(), LogDriverConfig::None);
    }
}
