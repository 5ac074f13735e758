//! Support for Berth's end-to-end tests: start a real `berthd` on a temporary data root and
//! socket, drive it with the `berth` binary, the raw Engine API and (where installed) the docker
//! CLI, and build test images from Debian's `busybox-static` — nothing is downloaded.
//!
//! Every [`Daemon`] owns its temporary directory and its process: dropping it stops the daemon
//! by the PID it started and removes the directory, also when the test panics.

pub mod api;
pub mod cluster;
pub mod containers;
pub mod daemon;
pub mod dockerd;
pub mod fault_proxy;
pub mod fixtures;
pub mod overlay;
pub mod pki;
pub mod pty;
pub mod registry;
pub mod subids;
pub mod swarm_setup;
pub mod token_auth;
pub mod upload_proxy;

pub use api::{ApiResponse, RawApi};
pub use cluster::{Cluster, Node};
pub use daemon::{Daemon, Output, docker_cli, run as run_command};
pub use fixtures::{ImageSpec, busybox_archive};
