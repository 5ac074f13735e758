//! Berth's container registry: the OCI distribution spec v1.1 over a [`driver::StorageDriver`].
//!
//! - [`driver`]: the storage seam, with `filesystem` and `inmemory` drivers and one suite;
//! - [`paths`]: the storage layout; [`store`]: repositories, manifests, tags, referrers;
//! - [`uploads`]: resumable upload sessions; [`gc`]: online mark-and-sweep;
//! - [`http`]: the HTTP edge (routes, errors as the spec's codes); [`auth`]: basic and token
//!   auth; [`proxy`]: pull-through cache; [`server`]: the listener, TLS, shutdown.

pub mod auth;
pub mod config;
pub mod digest;
pub mod driver;
pub mod error;
pub mod gc;
pub mod http;
pub mod manifest;
pub mod metrics;
pub mod names;
pub mod paths;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod store;
pub mod uploads;

pub use config::Config;
pub use error::RegistryError;
pub use registry::Registry;
