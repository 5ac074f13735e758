//! Berth's container runtime: OCI spec generation ([`spec`]), the overlay root filesystem
//! ([`rootfs`]), bundles ([`bundle`]) and the per-container shim ([`shim`]).
//!
//! The OCI runtime itself is youki's `libcontainer`, which forks its caller with a raw
//! `clone3`: it only ever runs inside the single-threaded `berth-shim` process. Everything the
//! daemon calls here (spec generation, mounts, [`Shim::spawn`], [`ShimHandle`]) is plain
//! system calls, process spawning and blocking socket I/O, safe in a multi-threaded process
//! (call it from `spawn_blocking`).
//!
//! # Running a container (what the daemon does)
//!
//! ```text
//! dir    = <data-root>/containers/<id>                 the bundle and container dir
//! rootfs = rootfs::mount_overlay(&layer_dirs, &dir)?    host mount namespace; idempotent dirs
//! cfg    = ContainerRunConfig { id, rootfs, args, env, user, ..}   (stored with the record)
//! Bundle::new(&dir).write(&cfg, &RealHost)?             config.json + shim.json, atomically
//! h      = Shim::spawn(&dir, &shim_binary)?             returns once the process runs
//!          Err(ExecutableNotFound) → exit 127, Err(ExecutableNotRunnable) → 126
//! h.wait()? → ExitRecord { exit_code, signal, finished_at, oom_killed }
//! rootfs::unmount(&rootfs)?                             when the container stops / is removed
//! ```
//!
//! Docker's `run` (attach, then start) and `--init`, `exec`, log drivers:
//!
//! ```text
//! init::install(&<data-root>/bin/docker-init)?          once at daemon start (static binary)
//! cfg.init = true; cfg.init_path = Some(that path)     spec runs ["/sbin/docker-init", "--", args..]
//! cfg.log = LogDriverConfig::from_docker(&LogConfig { driver, opts })?
//!                                                       json-file (max-size, max-file) | none |
//!                                                       local (local-logs/container.log); others:
//!                                                       Err(LogDriverNotSupported)
//! h = Shim::create(&dir, &shim_binary)?                 created, not started; same errors as spawn
//! a = h.attach(stdin, stdout, stderr)?                  AttachStream { stream, tty }, per client
//! h.start()?                                            the command runs; `a` sees all its output
//! x = h.exec_start(&ExecConfig { exec_id, args, .. })?  ExecProcess { pid, tty, stream }
//!          Err(NotRunning) → 409, Err(ExecutableNotFound) → 127 / oci_exec_message()
//! h.exec_resize(id, h, w)?  h.exec_state(id)?  h.exec_wait(id)? → ExecState { exit_code, .. }
//! ```
//!
//! After a daemon restart, [`ShimHandle::connect`] adopts a bundle's shim from its pid files;
//! once the shim is gone, [`ShimHandle::wait`] and [`ShimHandle::state`] answer from
//! `exit.json`. The shim itself never unmounts the rootfs: the daemon owns it.

pub mod bundle;
pub mod cgroup_apply;
pub mod cgroup_warmup;
pub mod cgroups;
pub mod config;
pub mod error;
pub mod idmap;
pub mod init;
pub mod rootfs;
pub mod sealed;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod shim;
pub mod spec;

pub use bundle::{Bundle, ExitRecord, ShimConfig};
pub use config::ContainerRunConfig;
pub use error::{Result, RuntimeError};
pub use shim::{Shim, ShimHandle, ShimState};
