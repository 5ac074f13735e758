//! `berthd`: configuration, wiring and the Engine API server. The binary in `main.rs` only
//! parses flags and calls [`server::run`].

pub mod config;
pub mod events;
pub mod image_contract;
pub mod lock;
pub mod router;
pub mod server;
pub mod state;
pub mod sysinfo;

/// The image store the daemon uses. Points at a stand-in with `berth-image`'s agreed API until
/// that crate compiles; then this becomes `pub use berth_image as imagestore;`.
pub use image_contract as imagestore;

/// `Berth/<version> (linux)`, the `Server` header.
pub const SERVER_HEADER: &str = concat!("Berth/", env!("CARGO_PKG_VERSION"), " (linux)");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
