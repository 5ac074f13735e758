//! The client configuration directory (`--config`, `BERTH_CONFIG`, else docker's own:
//! `DOCKER_CONFIG`, else `~/.docker`, so that one directory serves both CLIs): `config.json`
//! with `currentContext` and registry credentials (`auths`, `credsStore`, `credHelpers`, see
//! `crate::credentials`), and docker's context store under `contexts/meta/<sha256(name)>/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use berth_client::DEFAULT_HOST;

/// The built-in context's name; it always exists and points at `BERTH_HOST` or the default.
pub const DEFAULT_CONTEXT: &str = "default";

/// The default configuration directory: the docker CLI's (`$DOCKER_CONFIG`, else
/// `$HOME/.docker`), so that `docker login` and `berth login` keep one set of credentials.
/// (`--config` and `BERTH_CONFIG` come first; see `commands::Env::new`.)
pub fn default_config_dir() -> PathBuf {
    config_dir_from(std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME"))
}

fn config_dir_from(
    docker_config: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    match docker_config.filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => home
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".docker"),
    }
}

/// `config.json`: `currentContext` and the credential keys are interpreted; other keys are
/// kept as they are.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(
        rename = "currentContext",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub current_context: String,
    /// Credentials per registry (`https://index.docker.io/v1/`, `host:port`), or empty
    /// entries for the registries whose credentials a helper keeps.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auths: BTreeMap<String, AuthEntry>,
    /// The credential helper for every registry (`docker-credential-<credsStore>`).
    #[serde(
        rename = "credsStore",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub creds_store: String,
    /// Credential helpers per registry, over `credsStore`.
    #[serde(
        rename = "credHelpers",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub cred_helpers: BTreeMap<String, String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One `auths` entry: `auth` is base64 `user:password`; `identitytoken` a registry's refresh
/// token. Other keys (`email`) are kept.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthEntry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A stored context, in docker's `meta.json` shape.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextMeta {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Metadata", default)]
    pub metadata: ContextMetadata,
    #[serde(rename = "Endpoints", default)]
    pub endpoints: BTreeMap<String, Endpoint>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextMetadata {
    #[serde(
        rename = "Description",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    #[serde(rename = "Host", default)]
    pub host: String,
    #[serde(rename = "SkipTLSVerify", default)]
    pub skip_tls_verify: bool,
}

impl ContextMeta {
    /// The `docker` endpoint's host (empty when the context has none).
    pub fn host(&self) -> &str {
        self.endpoints.get("docker").map_or("", |e| e.host.as_str())
    }
}

/// The configuration directory and its files.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    pub dir: PathBuf,
}

impl ConfigDir {
    pub fn new(dir: impl Into<PathBuf>) -> ConfigDir {
        ConfigDir { dir: dir.into() }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Reads `config.json`; a missing file is an empty configuration.
    pub fn load(&self) -> Result<ConfigFile> {
        let path = self.config_path();
        match fs::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(ConfigFile::default()),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("loading config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(e).with_context(|| format!("loading config file {}", path.display())),
        }
    }

    /// Writes `config.json`, readable by its owner only (it may hold credentials).
    pub fn save(&self, config: &ConfigFile) -> Result<()> {
        let mut text = serde_json::to_string_pretty(config)?;
        text.push('\n');
        write_atomic(&self.config_path(), text.as_bytes(), 0o600)
    }

    /// Where `config.json` is, for messages.
    pub fn config_file(&self) -> PathBuf {
        self.config_path()
    }

    pub fn meta_dir(&self, name: &str) -> PathBuf {
        self.dir
            .join("contexts")
            .join("meta")
            .join(context_dir_name(name))
    }

    pub fn tls_dir(&self, name: &str) -> PathBuf {
        self.dir
            .join("contexts")
            .join("tls")
            .join(context_dir_name(name))
    }

    /// A stored context, or `None` when there is none of that name.
    pub fn context(&self, name: &str) -> Result<Option<ContextMeta>> {
        let path = self.meta_dir(name).join("meta.json");
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("reading context metadata {}", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Every stored context, sorted by name (the built-in `default` is not stored).
    pub fn contexts(&self) -> Result<Vec<ContextMeta>> {
        let root = self.dir.join("contexts").join("meta");
        let entries = match fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
        };
        let mut list = Vec::new();
        for entry in entries {
            let path = entry?.path().join("meta.json");
            if let Ok(bytes) = fs::read(&path)
                && let Ok(meta) = serde_json::from_slice::<ContextMeta>(&bytes)
            {
                list.push(meta);
            }
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    pub fn save_context(&self, meta: &ContextMeta) -> Result<()> {
        let dir = self.meta_dir(&meta.name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(
            &dir.join("meta.json"),
            serde_json::to_string(meta)?.as_bytes(),
            0o644,
        )
    }

    pub fn remove_context(&self, name: &str) -> Result<()> {
        for dir in [self.meta_dir(name), self.tls_dir(name)] {
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
            }
        }
        Ok(())
    }
}

/// Docker names a context's directory by the SHA-256 of its name.
pub fn context_dir_name(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

/// Docker's rule for context names: `^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$`.
pub fn validate_context_name(name: &str) -> Result<()> {
    if name == DEFAULT_CONTEXT {
        bail!("\"default\" is a reserved context name");
    }
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if !valid {
        bail!(
            "context name {name:?} is invalid, names are validated against regexp \"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$\""
        );
    }
    Ok(())
}

/// Writes a file only its owner can read (TLS keys).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, 0o600)
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // A name of this process's own, so two commands writing at once do not share it.
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.write_all(bytes)
        })
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Where the host came from, for `-H` and the context machinery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The daemon address to use.
    pub host: String,
    /// The context in effect (`default` when -H or BERTH_HOST decided).
    pub context: String,
}

/// Inputs of host resolution, separated from the process environment for testing.
#[derive(Debug, Clone, Default)]
pub struct HostInputs {
    /// `-H/--host`.
    pub flag_host: Option<String>,
    /// `BERTH_HOST`.
    pub env_host: Option<String>,
    /// `-c/--context`.
    pub context: Option<String>,
    /// `BERTH_CONTEXT`.
    pub env_context: Option<String>,
}

/// Docker's precedence: `--context` and `-H` (which cannot be combined) > `BERTH_HOST` (the
/// default context) > `BERTH_CONTEXT` > `currentContext` in `config.json` > the default socket.
pub fn resolve_host(config: &ConfigDir, inputs: &HostInputs) -> Result<Resolved> {
    if inputs.flag_host.is_some() && inputs.context.is_some() {
        bail!("conflicting options: cannot specify both --host and --context");
    }
    if let Some(host) = &inputs.flag_host {
        return Ok(Resolved {
            host: host.clone(),
            context: DEFAULT_CONTEXT.to_string(),
        });
    }
    let name = match &inputs.context {
        Some(name) => name.clone(),
        None if inputs.env_host.as_deref().is_some_and(|h| !h.is_empty()) => {
            DEFAULT_CONTEXT.to_string()
        }
        None if inputs.env_context.as_deref().is_some_and(|c| !c.is_empty()) => {
            inputs.env_context.clone().unwrap_or_default()
        }
        None => {
            let current = config.load()?.current_context;
            if current.is_empty() {
                DEFAULT_CONTEXT.to_string()
            } else {
                current
            }
        }
    };
    if name == DEFAULT_CONTEXT {
        return Ok(Resolved {
            host: default_context_host(inputs),
            context: name,
        });
    }
    let Some(meta) = config.context(&name)? else {
        bail!("context {name:?} does not exist");
    };
    let host = meta.host();
    Ok(Resolved {
        host: if host.is_empty() {
            default_host()
        } else {
            host.to_string()
        },
        context: name,
    })
}

/// The default context's endpoint: `BERTH_HOST` (or `DOCKER_HOST`) when set, else the
/// default socket ([`default_host`]).
pub fn default_context_host(inputs: &HostInputs) -> String {
    inputs
        .env_host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(default_host)
}

/// The host and context the environment names: `BERTH_HOST` and `BERTH_CONTEXT` when either
/// is set (Berth's own settings win as a pair, so that a `BERTH_CONTEXT` is not overridden by
/// a `DOCKER_HOST` meant for the docker CLI), else `DOCKER_HOST` and `DOCKER_CONTEXT`, read as
/// the docker CLI reads them (the host over the context).
pub fn env_endpoint(env: &dyn Fn(&str) -> Option<String>) -> (Option<String>, Option<String>) {
    let (host, context) = (env("BERTH_HOST"), env("BERTH_CONTEXT"));
    if host.is_some() || context.is_some() {
        return (host, context);
    }
    (env("DOCKER_HOST"), env("DOCKER_CONTEXT"))
}

/// The daemon's socket when nothing names one: a rootless daemon's
/// (`$XDG_RUNTIME_DIR/berth.sock`) for a user other than root when it is there, else the
/// system daemon's ([`DEFAULT_HOST`]).
pub fn default_host() -> String {
    let euid = rustix::process::geteuid().as_raw();
    rootless_default_host(euid, std::env::var_os("XDG_RUNTIME_DIR"))
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

fn rootless_default_host(euid: u32, runtime_dir: Option<std::ffi::OsString>) -> Option<String> {
    if euid == 0 {
        return None;
    }
    let socket = PathBuf::from(runtime_dir.filter(|d| !d.is_empty())?).join("berth.sock");
    socket
        .exists()
        .then(|| format!("unix://{}", socket.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_dir_is_dockers() {
        let some = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            config_dir_from(some("/cfg"), some("/home/u")),
            PathBuf::from("/cfg")
        );
        assert_eq!(
            config_dir_from(None, some("/home/u")),
            PathBuf::from("/home/u/.docker")
        );
        assert_eq!(
            config_dir_from(some(""), some("/home/u")),
            PathBuf::from("/home/u/.docker")
        );
        assert_eq!(config_dir_from(None, None), PathBuf::from("/root/.docker"));
    }

    fn store_with(current: &str) -> (tempfile::TempDir, ConfigDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::new(dir.path());
        let mut meta = ContextMeta {
            name: "remote".into(),
            ..Default::default()
        };
        meta.endpoints.insert(
            "docker".into(),
            Endpoint {
                host: "tcp://10.0.0.1:2375".into(),
                skip_tls_verify: false,
            },
        );
        config.save_context(&meta).unwrap();
        let mut other = meta.clone();
        other.name = "other".into();
        other.endpoints.get_mut("docker").unwrap().host = "unix:///tmp/other.sock".into();
        config.save_context(&other).unwrap();
        config
            .save(&ConfigFile {
                current_context: current.into(),
                ..Default::default()
            })
            .unwrap();
        (dir, config)
    }

    fn inputs(flag: Option<&str>, env: Option<&str>, ctx: Option<&str>) -> HostInputs {
        HostInputs {
            flag_host: flag.map(String::from),
            env_host: env.map(String::from),
            context: ctx.map(String::from),
            env_context: None,
        }
    }

    #[test]
    fn precedence_follows_docker() {
        let (_d, config) = store_with("remote");
        // The current context applies when nothing else is given.
        let r = resolve_host(&config, &inputs(None, None, None)).unwrap();
        assert_eq!(
            (r.host.as_str(), r.context.as_str()),
            ("tcp://10.0.0.1:2375", "remote")
        );
        // --context beats the current context.
        let r = resolve_host(&config, &inputs(None, None, Some("other"))).unwrap();
        assert_eq!(r.host, "unix:///tmp/other.sock");
        // BERTH_HOST beats the current context...
        let r = resolve_host(&config, &inputs(None, Some("tcp://e:1"), None)).unwrap();
        assert_eq!(
            (r.host.as_str(), r.context.as_str()),
            ("tcp://e:1", "default")
        );
        // ...but an explicit --context beats BERTH_HOST.
        let r = resolve_host(&config, &inputs(None, Some("tcp://e:1"), Some("other"))).unwrap();
        assert_eq!(r.host, "unix:///tmp/other.sock");
        // -H beats everything but cannot be combined with --context.
        let r = resolve_host(
            &config,
            &inputs(Some("unix:///h.sock"), Some("tcp://e:1"), None),
        )
        .unwrap();
        assert_eq!(r.host, "unix:///h.sock");
        assert!(resolve_host(&config, &inputs(Some("unix:///h"), None, Some("other"))).is_err());
        // BERTH_CONTEXT ranks below BERTH_HOST but above the current context.
        let mut env_ctx = inputs(None, None, None);
        env_ctx.env_context = Some("other".into());
        assert_eq!(
            resolve_host(&config, &env_ctx).unwrap().host,
            "unix:///tmp/other.sock"
        );
        env_ctx.env_host = Some("tcp://e:1".into());
        assert_eq!(resolve_host(&config, &env_ctx).unwrap().host, "tcp://e:1");
        // The default context with nothing set.
        let r = resolve_host(&config, &inputs(None, None, Some("default"))).unwrap();
        assert_eq!(r.host, DEFAULT_HOST);
        assert!(resolve_host(&config, &inputs(None, None, Some("missing"))).is_err());
    }

    #[test]
    fn docker_variables_unless_berth_ones_are_set() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(env_endpoint(&env(&[])), (None, None));
        assert_eq!(
            env_endpoint(&env(&[
                ("DOCKER_HOST", "tcp://d:1"),
                ("DOCKER_CONTEXT", "c")
            ])),
            (s("tcp://d:1"), s("c"))
        );
        assert_eq!(
            env_endpoint(&env(&[
                ("DOCKER_HOST", "tcp://d:1"),
                ("BERTH_HOST", "tcp://b:1")
            ])),
            (s("tcp://b:1"), None)
        );
        // BERTH_CONTEXT is not overridden by DOCKER_HOST.
        assert_eq!(
            env_endpoint(&env(&[
                ("DOCKER_HOST", "tcp://d:1"),
                ("BERTH_CONTEXT", "b")
            ])),
            (None, s("b"))
        );
    }

    #[test]
    fn a_user_finds_the_rootless_socket() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Some(dir.path().as_os_str().to_owned());
        assert_eq!(rootless_default_host(1000, runtime.clone()), None);
        fs::write(dir.path().join("berth.sock"), "").unwrap();
        assert_eq!(
            rootless_default_host(1000, runtime.clone()),
            Some(format!("unix://{}/berth.sock", dir.path().display()))
        );
        assert_eq!(
            rootless_default_host(0, runtime),
            None,
            "root uses /run/berth"
        );
        assert_eq!(rootless_default_host(1000, None), None);
    }

    #[test]
    fn empty_config_uses_default_socket() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::new(dir.path().join("absent"));
        let r = resolve_host(&config, &HostInputs::default()).unwrap();
        assert_eq!(r.host, DEFAULT_HOST);
        assert_eq!(r.context, "default");
    }

    #[test]
    fn stores_contexts_like_docker() {
        let (_d, config) = store_with("");
        assert_eq!(
            context_dir_name("foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
        let names: Vec<String> = config
            .contexts()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, vec!["other", "remote"]);
        let raw = fs::read_to_string(config.meta_dir("remote").join("meta.json")).unwrap();
        assert_eq!(
            raw,
            r#"{"Name":"remote","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://10.0.0.1:2375","SkipTLSVerify":false}}}"#
        );
        config.remove_context("remote").unwrap();
        assert!(config.context("remote").unwrap().is_none());
        assert!(validate_context_name("default").is_err());
        assert!(validate_context_name("-x").is_err());
        assert!(validate_context_name("ok.name_1").is_ok());
    }
}
