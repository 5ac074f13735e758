//! Compose for Berth: the compose file loader and the reconciler that converges a project's
//! containers, networks and volumes through the Engine API (so it also drives a real dockerd).
//!
//! Client-side, as Docker Compose is: it depends only on berth-api and berth-client. Resource
//! names and labels are Compose v2's, so a project created by either tool is managed by the
//! other.

pub mod build;
pub mod error;
pub mod hash;
pub mod loader;
pub mod model;

pub use error::LoadError;
pub use loader::{LoadOptions, load};
pub use model::{Project, Service};
pub mod labels;
pub mod reconcile;
