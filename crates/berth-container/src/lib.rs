//! Berth's containers: records and names, the state machine, creation from an image and a
//! create request, start/stop/kill/restart/wait/remove, logs, pause and top, adoption of
//! running shims when the daemon starts, and restart policies. The runtime underneath is
//! `berth-runtime` (one `berth-shim` process per running container); the HTTP edge is in
//! `berthd`.

pub mod cgroup;
pub mod error;
pub mod etc;
pub mod exit;
pub mod filters;
pub mod fs;
pub mod health;
pub mod links;
pub mod logs;
pub mod manager;
pub mod merge;
pub mod names;
pub mod network;
pub mod record;
pub mod restart;
pub mod rootless_pids;
pub mod signal;
pub mod stats;
pub mod status;
pub mod update;
pub mod user;
pub mod validate;
pub mod volumes;
pub mod workdir;

pub use error::{ContainerError, Result};
pub use filters::ListFilter;
pub use logs::LogOptions;
pub use manager::{
    Container, Containers, EventSink, ExecEntry, ExecStarted, Options, WaitCondition,
};
pub use record::{Record, Status};
