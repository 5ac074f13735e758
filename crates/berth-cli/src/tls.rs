//! Which TLS material a command uses, as the docker CLI decides it.
//!
//! For the default context (`-H`, `BERTH_HOST`): `--tlsverify` (or `BERTH_TLS_VERIFY` /
//! `DOCKER_TLS_VERIFY` non-empty) checks the daemon against a CA; `--tls` alone encrypts
//! without checking; `--tlsverify` given at all turns TLS on. With no CA file at all (where
//! docker stops), the daemon is checked against the system's trust store. The files default to `ca.pem`,
//! `cert.pem` and `key.pem` in `BERTH_CERT_PATH` / `DOCKER_CERT_PATH`, else the config dir
//! when it holds them, else `~/.docker` (where docker users keep them); a default client
//! certificate or key that does not exist is not used, as docker does.
//!
//! A named context carries its own material, stored as docker stores it:
//! `contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem`, with `SkipTLSVerify` in its
//! endpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use berth_client::TlsOptions;

use crate::cli::GlobalOptions;
use crate::config::{ConfigDir, Endpoint};

/// The files of a TLS endpoint, by docker's names.
pub const CA: &str = "ca.pem";
pub const CERT: &str = "cert.pem";
pub const KEY: &str = "key.pem";

/// The directory of the default TLS files.
fn default_cert_dir(config_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = env("BERTH_CERT_PATH").or_else(|| env("DOCKER_CERT_PATH")) {
        return PathBuf::from(dir);
    }
    if [CA, CERT, KEY].iter().any(|f| config_dir.join(f).exists()) {
        return config_dir.to_path_buf();
    }
    env("DOCKER_CONFIG").map(PathBuf::from).unwrap_or_else(|| {
        env("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".docker")
    })
}

/// The TLS of the default context, from the flags and the environment; `None` for plain.
pub fn from_flags(
    global: &GlobalOptions,
    config_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<TlsOptions> {
    let verify_env = env("BERTH_TLS_VERIFY")
        .or_else(|| env("DOCKER_TLS_VERIFY"))
        .is_some();
    let verify = global.tlsverify.unwrap_or(verify_env);
    let tls = global.tls.unwrap_or(false) || global.tlsverify.is_some() || verify;
    if !tls {
        return None;
    }
    let dir = default_cert_dir(config_dir, env);
    // A default file that is not there is not used; a named one is (and must be there).
    let file = |flag: &Option<String>, name: &str| match flag {
        Some(path) => Some(PathBuf::from(path)),
        None => Some(dir.join(name)).filter(|p| p.exists()),
    };
    let ca = file(&global.tlscacert, CA);
    Some(TlsOptions {
        // No CA at all: the docker CLI stops ("open ~/.docker/ca.pem: no such file"); berth
        // checks the daemon against the system's trust store instead (a daemon behind a
        // publicly trusted certificate), which never checks less than `--tls` alone. An
        // explicit `--tlsverify=false` is the user's opt-out of any check.
        verify: verify || (ca.is_none() && global.tlsverify != Some(false)),
        ca,
        cert: file(&global.tlscert, CERT),
        key: file(&global.tlskey, KEY),
    })
}

/// The TLS of a stored context: its files, if it has any.
pub fn from_context(config: &ConfigDir, name: &str, endpoint: &Endpoint) -> Option<TlsOptions> {
    let dir = config.tls_dir(name).join("docker");
    let file = |f: &str| Some(dir.join(f)).filter(|p| p.exists());
    let (ca, cert, key) = (file(CA), file(CERT), file(KEY));
    if ca.is_none() && cert.is_none() && key.is_none() {
        // A context with `skip-tls-verify=true` and no files still speaks TLS (docker's
        // `--tls` without material).
        return endpoint.skip_tls_verify.then(TlsOptions::default);
    }
    // As docker: a context that does not skip verification checks the daemon, against its
    // CA, else the system's trust store.
    Some(TlsOptions {
        verify: !endpoint.skip_tls_verify,
        ca,
        cert,
        key,
    })
}

/// Stores a context's TLS files (read from where the user has them) in docker's layout,
/// readable by their owner only (a key is a secret). Returns the names stored.
pub fn store(config: &ConfigDir, name: &str, files: &[(&str, PathBuf)]) -> Result<Vec<String>> {
    let dir = config.tls_dir(name).join("docker");
    let mut stored = Vec::new();
    for (target, source) in files {
        let bytes = std::fs::read(source)
            .with_context(|| format!("unable to read {}", source.display()))?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::config::write_private(&dir.join(target), &bytes)?;
        stored.push(target.to_string());
    }
    Ok(stored)
}

/// The TLS files a stored context has (`context inspect`'s `TLSMaterial`).
pub fn material(config: &ConfigDir, name: &str) -> Vec<String> {
    let dir = config.tls_dir(name).join("docker");
    [CA, CERT, KEY]
        .iter()
        .filter(|f| dir.join(f).exists())
        .map(|f| f.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_and_environment_as_docker() {
        let dir = tempfile::tempdir().unwrap();
        let global = GlobalOptions::default();
        assert_eq!(from_flags(&global, dir.path(), &env(&[])), None);
        // DOCKER_TLS_VERIFY alone: verify with ~/.docker's CA.
        let t = from_flags(
            &global,
            dir.path(),
            &env(&[("DOCKER_TLS_VERIFY", "1"), ("HOME", "/h")]),
        )
        .unwrap();
        assert!(t.verify);
        assert_eq!(t.ca, None, "no ca.pem there: the system's trust store");
        assert_eq!(t.cert, None, "a missing default certificate is not used");
        // --tls only encrypts; BERTH_CERT_PATH wins over DOCKER_CERT_PATH.
        std::fs::write(dir.path().join(CERT), "x").unwrap();
        let tls_only = GlobalOptions {
            tls: Some(true),
            ..Default::default()
        };
        let b = dir.path().join("b");
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join(CA), "x").unwrap();
        let t = from_flags(&tls_only, dir.path(), &|name| match name {
            "BERTH_CERT_PATH" => Some(b.display().to_string()),
            "DOCKER_CERT_PATH" => Some("/d".into()),
            _ => None,
        })
        .unwrap();
        assert!(!t.verify);
        assert_eq!(t.ca, Some(b.join(CA)));
        // --tls with no CA anywhere: checked against the system's trust store.
        let t = from_flags(&tls_only, dir.path(), &env(&[("DOCKER_CERT_PATH", "/d")])).unwrap();
        assert!(t.verify && t.ca.is_none());
        // Files in the config dir are found there.
        let t = from_flags(&tls_only, dir.path(), &env(&[("HOME", "/h")])).unwrap();
        assert_eq!(t.cert, Some(dir.path().join(CERT)));
        // --tlsverify=false still means TLS.
        let no_verify = GlobalOptions {
            tlsverify: Some(false),
            ..Default::default()
        };
        let t = from_flags(&no_verify, dir.path(), &env(&[("DOCKER_TLS_VERIFY", "1")])).unwrap();
        assert!(!t.verify);
    }

    #[test]
    fn contexts_keep_their_material() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::new(dir.path());
        let src = dir.path().join("src.pem");
        std::fs::write(&src, "pem").unwrap();
        let endpoint = Endpoint {
            host: "tcp://h:2376".into(),
            skip_tls_verify: false,
        };
        assert_eq!(from_context(&config, "c", &endpoint), None);
        store(&config, "c", &[(CA, src.clone()), (KEY, src.clone())]).unwrap();
        assert_eq!(material(&config, "c"), vec!["ca.pem", "key.pem"]);
        let t = from_context(&config, "c", &endpoint).unwrap();
        assert!(t.verify && t.cert.is_none());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(config.tls_dir("c").join("docker").join(KEY))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
