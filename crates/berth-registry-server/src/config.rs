//! The server's configuration: a YAML or JSON file (`--config`), with `--addr` and `--root`
//! from the command line taking precedence. Every section is optional; the empty file is a
//! registry without auth on 127.0.0.1:5000. Documented in docs/registry-server.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `host:port` to listen on.
    pub addr: String,
    /// Storage directory (the filesystem driver's root).
    pub root: Option<PathBuf>,
    /// `filesystem` (default) or `inmemory` (tests, throwaway caches).
    pub storage: StorageKind,
    /// Refuse every write (pushes, deletes) with `UNSUPPORTED`.
    pub read_only: bool,
    /// Allow deleting manifests, tags and blobs.
    pub delete_enabled: bool,
    /// Manifests bigger than this are refused (413, `SIZE_INVALID`).
    pub max_manifest_bytes: u64,
    /// Upload sessions idle for this long are removed.
    pub upload_max_age_secs: u64,
    /// Upload requests (POST/PATCH/PUT of blobs) handled at once; more are answered 429
    /// `TOOMANYREQUESTS` with `Retry-After` (none: unlimited).
    pub max_concurrent_uploads: Option<usize>,
    pub tls: Option<TlsConfig>,
    pub auth: Option<AuthConfig>,
    pub gc: GcConfig,
    pub quota: QuotaConfig,
    pub proxy: Option<ProxyConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    #[default]
    Filesystem,
    Inmemory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One of the two (a map with one key, which reads the same in YAML and JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HTTP basic auth against an htpasswd file of bcrypt hashes.
    pub htpasswd: Option<HtpasswdConfig>,
    /// Bearer tokens (docker's token auth).
    pub token: Option<TokenConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtpasswdConfig {
    pub realm: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Where clients get tokens: this server's own `/token` when it issues them.
    pub realm: String,
    /// The `service` (token audience).
    pub service: String,
    /// The `iss` tokens carry.
    pub issuer: String,
    /// Issue tokens here: an ES256 (P-256) private key, PKCS#8 PEM. Users come from
    /// `htpasswd`, grants from `access`.
    pub signing_key: Option<PathBuf>,
    pub htpasswd: Option<PathBuf>,
    pub access: Option<PathBuf>,
    /// Accept tokens signed by these public keys (an external issuer's, PEM), too.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Lifetime of issued tokens.
    #[serde(default = "default_token_ttl")]
    pub ttl_secs: u64,
}

fn default_token_ttl() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// Run an online GC this often (none when absent).
    pub interval_secs: Option<u64>,
    /// Blobs and manifests younger than this at a sweep's start are never collected.
    pub grace_secs: u64,
}

impl Default for GcConfig {
    fn default() -> GcConfig {
        GcConfig {
            interval_secs: None,
            grace_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Bytes each repository may hold, unless listed in `repositories`.
    pub default_bytes: Option<u64>,
    pub repositories: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The upstream registry, e.g. `https://registry-1.docker.io` or `http://127.0.0.1:5001`.
    pub remote_url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long a cached tag is served before asking upstream again.
    #[serde(default = "default_tag_ttl")]
    pub tag_ttl_secs: u64,
}

fn default_tag_ttl() -> u64 {
    300
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addr: "127.0.0.1:5000".into(),
            root: None,
            storage: StorageKind::Filesystem,
            read_only: false,
            delete_enabled: true,
            max_manifest_bytes: 4 << 20,
            upload_max_age_secs: 24 * 3600,
            max_concurrent_uploads: None,
            tls: None,
            auth: None,
            gc: GcConfig::default(),
            quota: QuotaConfig::default(),
            proxy: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read registry config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry config {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Reads a config file: JSON when it starts with `{`, YAML otherwise.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
        }
    }

    /// The quota of a repository, if any.
    pub fn quota_of(&self, name: &str) -> Option<u64> {
        self.quota
            .repositories
            .get(name)
            .copied()
            .or(self.quota.default_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_and_defaults() {
        let c = Config::parse(
            "addr: 0.0.0.0:5000\nroot: /srv/r\nauth:\n  htpasswd:\n    realm: r\n    path: /etc/h\ngc:\n  interval_secs: 60\nquota:\n  repositories:\n    team/app: 100\n",
        )
        .unwrap();
        assert_eq!(c.addr, "0.0.0.0:5000");
        assert!(c.auth.as_ref().unwrap().htpasswd.is_some());
        assert_eq!(c.gc.interval_secs, Some(60));
        assert_eq!(c.gc.grace_secs, 3600);
        assert_eq!(c.quota_of("team/app"), Some(100));
        assert_eq!(c.quota_of("other"), None);
        let j =
            Config::parse(r#"{"read_only": true, "proxy": {"remote_url": "http://x"}}"#).unwrap();
        assert!(j.read_only && j.delete_enabled);
        assert_eq!(j.proxy.unwrap().tag_ttl_secs, 300);
        assert!(
            Config::parse("bogus: 1").is_err(),
            "unknown keys are refused"
        );
        assert_eq!(Config::parse("").unwrap().addr, "127.0.0.1:5000");
    }
}
