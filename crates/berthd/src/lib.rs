//! `berthd`: configuration, wiring and the Engine API server. The binary in `main.rs` only
//! parses flags and calls [`server::run`].

pub mod allocator;
pub mod build;
pub mod config;
pub mod disk_reserve;
pub mod events;
pub mod lock;
pub mod overlay;
pub mod rootless;
pub mod router;
pub mod server;
pub mod state;
pub mod swarm_events;
pub mod swarm_exec;
pub mod swarm_logs;
pub mod swarm_pull;
pub mod sysinfo;
pub mod tls;
pub mod userns;

/// The image store the daemon uses.
pub use berth_image as imagestore;

/// `Berth/<version> (linux)`, the `Server` header.
pub const SERVER_HEADER: &str = concat!("Berth/", env!("CARGO_PKG_VERSION"), " (linux)");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
