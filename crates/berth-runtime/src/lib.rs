//! Berth's container runtime: OCI spec generation ([`spec`]), the overlay root filesystem
//! ([`rootfs`]), bundles ([`bundle`]) and the per-container shim ([`shim`]).
//!
//! The OCI runtime itself is youki's `libcontainer`, which forks its caller with a raw
//! `clone3`: it only ever runs inside the single-threaded `berth-shim` process. Everything the
//! daemon calls here (spec generation, mounts, [`shim::Shim::spawn`], [`shim::ShimHandle`]) is
//! plain system calls, process spawning and socket I/O, safe in a multi-threaded process.

pub mod bundle;
pub mod config;
pub mod error;
pub mod rootfs;
pub mod seccomp;
pub mod shim;
pub mod spec;

pub use bundle::{Bundle, ExitRecord, ShimConfig};
pub use config::ContainerRunConfig;
pub use error::{Result, RuntimeError};
pub use shim::{Shim, ShimHandle, ShimState};
