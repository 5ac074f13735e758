//! The Docker Engine API as Berth speaks it: wire types (requests, responses, stream messages),
//! the engine-wide error classes and their HTTP status codes, API version rules, and the parsing
//! helpers Docker's query strings need.
//!
//! This crate is deliberately free of any HTTP server or client so that both `berthd` and
//! `berth-client` can share it without pulling in each other's stacks.

pub mod duration;
pub mod error;
pub mod json;
pub mod models;
pub mod networking;
pub mod query;
pub mod stream;
pub mod units;
pub mod version;
pub mod vocab;

pub use error::{ApiError, ErrorKind, PathIoError};
pub use query::{Filters, parse_bool};
pub use version::{ApiVersion, MAX_API_VERSION, MIN_API_VERSION};
