//! The bundle directory a shim serves: `config.json` (the OCI spec), `shim.json` (how the shim
//! should run it), and the files the shim leaves behind (`shim.pid`, `init.pid`, `exit.json`,
//! `shim.sock`, `shim.log`, libcontainer's state). Every file is written atomically.
//!
//! Everything in a bundle describes processes, which a reboot ends: the daemon keeps bundles
//! under its exec root (a tmpfs), apart from the container's lasting files in the data root,
//! where the container's log goes ([`Bundle::with_log_dir`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::config::{ContainerRunConfig, OciRuntime};
use crate::error::{Result, RuntimeError};
use crate::seccomp_bpf;
use crate::shim::LogDriverConfig;
use crate::spec::{self, HostProbe};

/// How the shim runs the container in a bundle (`shim.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// Container id (the libcontainer id).
    pub id: String,
    /// Allocate a pty (`process.terminal` in the spec must agree).
    pub tty: bool,
    /// Keep stdin open for clients; otherwise the container reads EOF.
    pub open_stdin: bool,
    /// `StdinOnce`: close stdin when the attached client that sends it closes its side.
    #[serde(default)]
    pub stdin_once: bool,
    /// The log file; `None` means `<bundle>/<id>-json.log` (`local-logs/container.log` for
    /// the `local` driver).
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The log driver.
    #[serde(default)]
    pub log: LogDriverConfig,
    /// Initial pty size (rows, columns), set before the process starts.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Drive this OCI runtime's command line instead of the embedded libcontainer.
    #[serde(default)]
    pub runtime: Option<OciRuntime>,
}

/// How a container ended (`exit.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code as Docker reports it: the status, or 128 + signal for a signal death.
    pub exit_code: i32,
    /// The signal that killed the process, if any.
    #[serde(default)]
    pub signal: Option<i32>,
    /// When the shim saw the exit (RFC 3339 with nanoseconds, UTC).
    pub finished_at: String,
    /// The memory cgroup's OOM killer fired while the container ran.
    #[serde(default)]
    pub oom_killed: bool,
    /// How the execs the shim still knew of ended, by the daemon's exec id: an exec that
    /// ends the container (it makes init exit) ends the shim too, often before the daemon
    /// asked for the exec's status, which it then reads here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub execs: BTreeMap<String, i32>,
}

/// A bundle directory and the paths of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    dir: PathBuf,
    /// Where the container's log is written (the bundle directory unless set).
    log_dir: Option<PathBuf>,
}

impl Bundle {
    /// The bundle at `dir` (nothing is read or created).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Bundle {
            dir: dir.into(),
            log_dir: None,
        }
    }

    /// The same bundle, with the container's log in `dir` (its lasting directory) rather than
    /// in the bundle: [`Bundle::write`] records the path in `shim.json`.
    pub fn with_log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The OCI spec.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// The shim's instructions.
    pub fn shim_config_path(&self) -> PathBuf {
        self.dir.join("shim.json")
    }
    /// The exit record.
    pub fn exit_path(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    /// The shim's control socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("shim.sock")
    }
    /// The shim's pid.
    pub fn shim_pid_path(&self) -> PathBuf {
        self.dir.join("shim.pid")
    }
    /// The container init's pid (host pid namespace).
    pub fn init_pid_path(&self) -> PathBuf {
        self.dir.join("init.pid")
    }
    /// The shim's own diagnostics (its stderr).
    pub fn shim_log_path(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
    /// The seccomp filter compiled for the embedded runtime ([`crate::seccomp_bpf`]).
    pub fn seccomp_path(&self) -> PathBuf {
        self.dir.join("seccomp.bpf")
    }
    /// libcontainer's state root (one directory per container inside).
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.join("runtime")
    }
    /// An external OCI runtime's state root (`--root`), private to this container.
    pub fn oci_state_root(&self) -> PathBuf {
        self.dir.join("runtime-state")
    }
    /// An external OCI runtime's log (`--log`, JSON lines).
    pub fn oci_log_path(&self) -> PathBuf {
        self.dir.join("runtime.log")
    }
    /// The log for a shim config: `<id>-json.log`, or `local-logs/container.log` for the
    /// `local` driver (rotated files get `.1`, `.2`, ... appended).
    pub fn log_path(&self, cfg: &ShimConfig) -> PathBuf {
        cfg.log_path
            .clone()
            .unwrap_or_else(|| self.dir.join(cfg.log.file_name(&cfg.id)))
    }

    /// Generate the spec for `cfg` and write `config.json` and `shim.json`, creating the
    /// directory if needed. Returns the spec written.
    pub fn write(&self, cfg: &ContainerRunConfig, host: &dyn HostProbe) -> Result<Spec> {
        let log = cfg.log.clone();
        let mut spec = spec::generate(cfg, host)?;
        // The embedded runtime loads a filter compiled here, once per distinct filter; an
        // external runtime (runc, crun) gets the plain spec and compiles it itself.
        let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(seccomp) if cfg.runtime.is_none() => Some(seccomp_bpf::compile(seccomp)?),
            _ => None,
        };
        if filter.is_some()
            && let Some(process) = spec.process_mut()
        {
            seccomp_bpf::keep_sys_admin_until_exec(process);
        }
        let shim = ShimConfig {
            id: cfg.id.clone(),
            tty: cfg.tty,
            open_stdin: cfg.open_stdin,
            stdin_once: cfg.stdin_once,
            log_path: self
                .log_dir
                .as_ref()
                .map(|d| d.join(log.file_name(&cfg.id))),
            log,
            console_size: cfg.console_size,
            runtime: cfg.runtime.clone(),
        };
        self.write_spec(&spec, &shim)?;
        match filter {
            Some(f) => replace_file(&self.seccomp_path(), &f.to_bytes())?,
            None => match std::fs::remove_file(self.seccomp_path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RuntimeError::io("remove", self.seccomp_path(), e));
                }
                _ => {}
            },
        }
        Ok(spec)
    }

    /// Compile and write the seccomp program of a bundle written by a daemon that did not
    /// compile filters (the shim then loaded the spec's filter itself), so that execs into its
    /// still running container find one. Nothing to do when the program is there, the spec has
    /// no filter, or an external runtime runs the container.
    pub fn ensure_seccomp_program(&self) -> Result<()> {
        if self.seccomp_path().exists() || self.read_shim_config()?.runtime.is_some() {
            return Ok(());
        }
        let spec = Spec::load(self.config_path())
            .map_err(|e| RuntimeError::io("load", self.config_path(), std::io::Error::other(e)))?;
        match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(seccomp) => replace_file(
                &self.seccomp_path(),
                &seccomp_bpf::compile(seccomp)?.to_bytes(),
            ),
            None => Ok(()),
        }
    }

    /// Write a ready-made spec and shim config.
    pub fn write_spec(&self, spec: &Spec, shim: &ShimConfig) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| RuntimeError::io("create", &self.dir, e))?;
        write_json_atomic(&self.config_path(), spec)?;
        write_json_atomic(&self.shim_config_path(), shim)
    }

    /// Read `shim.json`.
    pub fn read_shim_config(&self) -> Result<ShimConfig> {
        read_json(&self.shim_config_path())
    }

    /// Read `exit.json`, if the container has exited.
    pub fn read_exit(&self) -> Result<Option<ExitRecord>> {
        match std::fs::read(self.exit_path()) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| RuntimeError::io("parse", self.exit_path(), std::io::Error::other(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RuntimeError::io("read", self.exit_path(), e)),
        }
    }

    /// The pid recorded in `shim.pid` or `init.pid`.
    pub fn read_pid(path: &Path) -> Result<Option<i32>> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RuntimeError::io("read", path, e)),
        }
    }
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let b = std::fs::read(path).map_err(|e| RuntimeError::io("read", path, e))?;
    serde_json::from_slice(&b)
        .map_err(|e| RuntimeError::io("parse", path, std::io::Error::other(e)))
}

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        RuntimeError::io("write", path, e)
    })
}

/// Replace `path` atomically like [`write_atomic`], without waiting for the disk. For a
/// container's runtime files (bundle spec and shim config, pid files, exit record): they
/// describe processes, which a reboot ends anyway, and are rewritten at every start; the
/// daemon keeps what must last in its own records. Readers still never see a partial file.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            RuntimeError::io("write", path, e)
        })
}

/// [`replace_file`] with `v` as JSON.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec(v)
        .map_err(|e| RuntimeError::io("encode", path, std::io::Error::other(e)))?;
    replace_file(path, &bytes)
}
