//! Git contexts, cloned on the client as the docker CLI does (the cloning itself is
//! `berth_build::git`, shared with the daemon's `remote=` git contexts).

use anyhow::{Result, anyhow};

pub use berth_build::git::{Checkout, GitRepo, is_git_url};

/// `berth_build::git::parse_remote` with an `anyhow` error.
pub fn parse_remote(url: &str) -> Result<GitRepo> {
    berth_build::git::parse_remote(url).map_err(|e| anyhow!(e))
}

/// Clones `repo` into a new temporary directory. `allow_file` lets tests use a local remote.
pub fn clone(repo: &GitRepo, allow_file: bool) -> Result<Checkout> {
    berth_build::git::clone(repo, allow_file).map_err(|e| anyhow!(e))
}
