//! Registry credentials kept as the docker CLI keeps them, so either CLI reads the other's:
//! in `config.json` (`auths`, `auth` = base64 `user:password`, `identitytoken`), or in a
//! credential helper named by `credHelpers` (per registry) or `credsStore` (all registries).
//! A helper is the program `docker-credential-<name>`, run with `get`, `store`, `erase` or
//! `list`, a request on its stdin and the answer (JSON) on its stdout; when a helper keeps a
//! registry's credentials, `config.json` keeps an empty entry for it.
//!
//! The keys are docker's: `https://index.docker.io/v1/` for Docker Hub, the registry's
//! `host[:port]` otherwise.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigDir, ConfigFile};

/// Docker Hub's key in `config.json` (and the server docker logs in to by default).
pub const INDEX_SERVER: &str = "https://index.docker.io/v1/";

/// What a helper answers `get` with, and is given to `store`.
#[derive(Debug, Serialize, Deserialize)]
struct HelperCredentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The `Username` a helper stores an identity token under.
const TOKEN_USERNAME: &str = "<token>";

/// Docker's `AuthConfig`: what `POST /auth` takes and `X-Registry-Auth` carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serveraddress: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
}

impl AuthConfig {
    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.password.is_empty() && self.identitytoken.is_empty()
    }

    /// The `X-Registry-Auth` header's value: the JSON, base64url-encoded.
    pub fn header(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE.encode(json)
    }
}

/// `https://host:5000/v2/` → `host:5000`, as docker's `ConvertToHostname`.
pub fn to_hostname(server: &str) -> &str {
    let rest = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("https://"))
        .unwrap_or(server);
    rest.split('/').next().unwrap_or(rest)
}

/// The `config.json` key for an image reference's registry: Docker Hub's, or `host[:port]`.
pub fn key_for_image(image: &str) -> Option<String> {
    let reference = berth_reference::Reference::parse_normalized(image).ok()?;
    Some(match reference.domain() {
        berth_reference::reference::DEFAULT_DOMAIN => INDEX_SERVER.to_string(),
        domain => domain.to_string(),
    })
}

/// The `X-Registry-Auth` value for pulling or pushing `image`, when credentials are stored for
/// its registry. As docker's CLI, a store that cannot be read means no credentials.
pub fn registry_auth_for(config: &ConfigDir, image: &str) -> Option<String> {
    let key = key_for_image(image)?;
    let auth = get(config, &key).ok()?;
    (!auth.is_empty()).then(|| auth.header())
}

/// The helper that keeps `server`'s credentials, if any (docker's `getConfiguredCredentialStore`).
fn helper_for<'a>(file: &'a ConfigFile, server: &str) -> Option<&'a str> {
    file.cred_helpers
        .get(server)
        .map(String::as_str)
        .or(Some(file.creds_store.as_str()))
        .filter(|h| !h.is_empty())
}

/// The credentials stored for `server` (empty when there are none).
pub fn get(config: &ConfigDir, server: &str) -> Result<AuthConfig> {
    let file = config.load()?;
    if let Some(helper) = helper_for(&file, server) {
        return helper_get(helper, server);
    }
    // An exact key first, then one written with a scheme or path (`https://host/v2/`).
    let entry = file.auths.get(server).or_else(|| {
        file.auths
            .iter()
            .find(|(key, _)| to_hostname(key) == server)
            .map(|(_, entry)| entry)
    });
    let Some(entry) = entry else {
        return Ok(AuthConfig::default());
    };
    let (username, password) = decode_auth(&entry.auth)
        .with_context(|| format!("invalid auth configuration file {}", config.dir.display()))?;
    Ok(AuthConfig {
        username,
        password,
        serveraddress: server.to_string(),
        identitytoken: entry.identitytoken.clone(),
    })
}

/// Every stored credential, keyed by registry (what `docker build` sends the daemon in
/// `X-Registry-Config` so `FROM` can pull private images). Registries whose helper fails
/// are left out, as docker leaves them out.
pub fn all(config: &ConfigDir) -> std::collections::BTreeMap<String, AuthConfig> {
    let Ok(file) = config.load() else {
        return Default::default();
    };
    file.auths
        .keys()
        .chain(file.cred_helpers.keys())
        .filter_map(|server| {
            let auth = get(config, server).ok()?;
            (!auth.is_empty()).then(|| (server.clone(), auth))
        })
        .collect()
}

/// Stores `auth` for `server`. Returns whether it went to `config.json` in plain text (docker
/// then warns).
pub fn store(config: &ConfigDir, server: &str, auth: &AuthConfig) -> Result<bool> {
    let mut file = config.load()?;
    let helper = helper_for(&file, server).map(str::to_string);
    let entry = file.auths.entry(server.to_string()).or_default();
    match &helper {
        Some(helper) => {
            helper_store(helper, server, auth)?;
            // The helper has the secrets; the file remembers the registry.
            entry.auth.clear();
            entry.identitytoken.clear();
        }
        None => {
            entry.auth = if auth.username.is_empty() && auth.password.is_empty() {
                String::new()
            } else {
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", auth.username, auth.password))
            };
            entry.identitytoken = auth.identitytoken.clone();
        }
    }
    config.save(&file)?;
    Ok(helper.is_none())
}

/// Removes `server`'s credentials (nothing stored is not an error).
pub fn erase(config: &ConfigDir, server: &str) -> Result<()> {
    let mut file = config.load()?;
    if let Some(helper) = helper_for(&file, server).map(str::to_string) {
        helper_run(&helper, "erase", server.as_bytes())?;
    }
    if file.auths.remove(server).is_some() {
        config.save(&file)?;
    }
    Ok(())
}

fn decode_auth(auth: &str) -> Result<(String, String)> {
    if auth.is_empty() {
        return Ok((String::new(), String::new()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .context("auth is not base64")?;
    let text = String::from_utf8(bytes).context("auth is not UTF-8")?;
    match text.split_once(':') {
        Some((user, password)) => Ok((
            user.to_string(),
            password.trim_end_matches('\0').to_string(),
        )),
        None => bail!("auth is not user:password"),
    }
}

fn helper_get(helper: &str, server: &str) -> Result<AuthConfig> {
    let out = match helper_run(helper, "get", server.as_bytes()) {
        Ok(out) => out,
        Err(HelperError::NotFound) => return Ok(AuthConfig::default()),
        Err(e) => return Err(e.into()),
    };
    let creds: HelperCredentials = serde_json::from_slice(&out)
        .with_context(|| format!("docker-credential-{helper} get: unreadable answer"))?;
    let mut auth = AuthConfig {
        serveraddress: server.to_string(),
        ..Default::default()
    };
    if creds.username == TOKEN_USERNAME {
        auth.identitytoken = creds.secret;
    } else {
        auth.username = creds.username;
        auth.password = creds.secret;
    }
    Ok(auth)
}

fn helper_store(helper: &str, server: &str, auth: &AuthConfig) -> Result<()> {
    let creds = if auth.identitytoken.is_empty() {
        HelperCredentials {
            server_url: server.to_string(),
            username: auth.username.clone(),
            secret: auth.password.clone(),
        }
    } else {
        HelperCredentials {
            server_url: server.to_string(),
            username: TOKEN_USERNAME.to_string(),
            secret: auth.identitytoken.clone(),
        }
    };
    helper_run(helper, "store", &serde_json::to_vec(&creds)?)?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum HelperError {
    /// The helper's answer when it has nothing for the server.
    #[error("credentials not found in native keychain")]
    NotFound,
    #[error("docker-credential-{helper} {action}: {message}")]
    Failed {
        helper: String,
        action: String,
        message: String,
    },
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; its stdout on success.
fn helper_run(helper: &str, action: &str, input: &[u8]) -> Result<Vec<u8>, HelperError> {
    let program = format!("docker-credential-{helper}");
    let failed = |message: String| HelperError::Failed {
        helper: helper.to_string(),
        action: action.to_string(),
        message,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is answered by its status below.
        let _ = stdin.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("waiting for {program}: {e}")))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text.contains("credentials not found") {
        return Err(HelperError::NotFound);
    }
    Err(failed(format!("err: {}, out: `{text}`", out.status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_headers_are_dockers() {
        assert_eq!(key_for_image("busybox").unwrap(), INDEX_SERVER);
        assert_eq!(key_for_image("me/app:1").unwrap(), INDEX_SERVER);
        assert_eq!(
            key_for_image("127.0.0.1:5000/a/b").unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(
            to_hostname("https://reg.example:5000/v2/"),
            "reg.example:5000"
        );
        let auth = AuthConfig {
            username: "u".into(),
            password: "p".into(),
            serveraddress: "r".into(),
            identitytoken: String::new(),
        };
        let json = base64::engine::general_purpose::URL_SAFE
            .decode(auth.header())
            .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"username":"u","password":"p","serveraddress":"r"}"#
        );
    }

    #[test]
    fn every_stored_credential_for_builds() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::new(dir.path());
        assert!(all(&config).is_empty());
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"reg:1":{"auth":"YTpi"},"reg:2":{},"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let creds = all(&config);
        // The entry without credentials is left out.
        assert_eq!(
            creds.keys().collect::<Vec<_>>(),
            ["https://index.docker.io/v1/", "reg:1"]
        );
        assert_eq!(creds["reg:1"].username, "a");
        assert_eq!(creds["reg:1"].serveraddress, "reg:1");
    }

    #[test]
    fn the_file_store_round_trips_and_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::new(dir.path());
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"detachKeys":"ctrl-x","auths":{"https://reg:1/v2/":{"auth":"YTpi"}}}"#,
        )
        .unwrap();
        // A key with a scheme and path is found by host.
        let found = get(&config, "reg:1").unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("a", "b")
        );
        let auth = AuthConfig {
            username: "ci".into(),
            password: "pw".into(),
            ..Default::default()
        };
        assert!(store(&config, "reg:2", &auth).unwrap());
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(raw["auths"]["reg:2"]["auth"], "Y2k6cHc=");
        assert_eq!(raw["detachKeys"], "ctrl-x");
        assert_eq!(get(&config, "reg:2").unwrap().password, "pw");
        erase(&config, "reg:2").unwrap();
        assert!(get(&config, "reg:2").unwrap().is_empty());
        erase(&config, "reg:2").unwrap();
    }
}
