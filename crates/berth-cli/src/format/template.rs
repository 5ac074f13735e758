//! The Go-template engine of `--format`: the `berth-template` crate, shared with the daemon
//! (swarm's templated configs and secrets).

pub use berth_template::*;
