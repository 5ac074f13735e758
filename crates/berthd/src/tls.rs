//! TLS on the API's tcp listeners: dockerd's flags (`--tls`, `--tlsverify`, `--tlscacert`,
//! `--tlscert`, `--tlskey`) and daemon.json keys, their defaults and precedence, the rustls
//! server configuration, and the rule that refuses unauthenticated tcp on a non-loopback
//! address.
//!
//! dockerd's semantics, kept here: `--tlsverify` given at all (true or false) turns TLS on;
//! `--tls` without `--tlsverify` verifies clients too; the default files are `ca.pem`,
//! `cert.pem` and `key.pem` in `$DOCKER_CERT_PATH`, else `$DOCKER_CONFIG`, else `~/.docker`;
//! `DOCKER_TLS_VERIFY` (non-empty) makes `--tlsverify` the default. Berth goes further than
//! dockerd, which only slows its start down: a non-loopback tcp host without client
//! verification is refused unless the operator opted out explicitly (`--tls=false` or
//! `--tlsverify=false`).

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, FileConfig, Host};

/// The TLS flags of `berthd` (flattened into [`crate::config::Flags`]).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsFlags {
    /// Use TLS; implied by --tlsverify
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls: Option<bool>,
    /// Use TLS and verify the remote (clients need a certificate signed by --tlscacert)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tlsverify: Option<bool>,
    /// Trust certs signed only by this CA [default: ~/.docker/ca.pem]
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// Path to TLS certificate file [default: ~/.docker/cert.pem]
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// Path to TLS key file [default: ~/.docker/key.pem]
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
}

/// The default host when TLS is on and no host is configured (dockerd's `DefaultTLSHost`).
pub const DEFAULT_TLS_HOST: &str = "tcp://localhost:2376";

/// How the API's tcp listeners are secured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiTls {
    /// TLS on tcp listeners, or `None` for plain HTTP.
    pub server: Option<ServerTls>,
    /// The operator turned authentication off on purpose (`--tls=false`, `--tlsverify=false`).
    pub opted_out: bool,
}

/// The files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by this CA (`--tlsverify`).
    pub client_ca: Option<PathBuf>,
}

impl ApiTls {
    /// Clients must prove who they are.
    pub fn authenticates(&self) -> bool {
        self.server.as_ref().is_some_and(|s| s.client_ca.is_some())
    }

    /// `true` when TLS is on (the default host then is [`DEFAULT_TLS_HOST`]).
    pub fn enabled(&self) -> bool {
        self.server.is_some()
    }
}

/// Adds the keys given both as a flag and in daemon.json to `conflicts`.
pub fn conflicts(flags: &TlsFlags, file: &FileConfig, conflicts: &mut Vec<String>) {
    let mut check = |key: &str, flag: Option<String>, from_file: Option<String>| {
        if let (Some(a), Some(b)) = (flag, from_file) {
            conflicts.push(format!("{key}: (from flag: {a}, from file: {b})"));
        }
    };
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    check(
        "tls",
        flags.tls.map(|b| b.to_string()),
        file.tls.map(|b| b.to_string()),
    );
    check(
        "tlsverify",
        flags.tlsverify.map(|b| b.to_string()),
        file.tlsverify.map(|b| b.to_string()),
    );
    check("tlscacert", path(&flags.tlscacert), path(&file.tlscacert));
    check("tlscert", path(&flags.tlscert), path(&file.tlscert));
    check("tlskey", path(&flags.tlskey), path(&file.tlskey));
}

/// The directory of the default TLS files, as dockerd finds it.
fn default_cert_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = env("DOCKER_CERT_PATH") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env("DOCKER_CONFIG") {
        return PathBuf::from(dir);
    }
    env("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".docker")
}

/// Merges flags, file and environment into the listeners' TLS settings (dockerd's rules, see
/// the module comment). `env` reads the process environment (a parameter for tests).
pub fn resolve(
    flags: &TlsFlags,
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> ApiTls {
    let verify_default = env("DOCKER_TLS_VERIFY").is_some();
    let explicit_verify = flags.tlsverify.or(file.tlsverify);
    let explicit_tls = flags.tls.or(file.tls);
    let verify = explicit_verify.unwrap_or(verify_default);
    // `--tlsverify` given at all (even `=false`) means TLS; `--tls` alone verifies too.
    let tls = explicit_verify.is_some() || verify || explicit_tls.unwrap_or(false);
    let verify = match explicit_verify {
        Some(v) => v,
        None => tls,
    };
    let opted_out = explicit_tls == Some(false) || explicit_verify == Some(false);
    if !tls {
        return ApiTls {
            server: None,
            opted_out,
        };
    }
    let dir = default_cert_dir(env);
    let pick = |flag: &Option<PathBuf>, from_file: &Option<PathBuf>, name: &str| {
        flag.clone()
            .or_else(|| from_file.clone())
            .unwrap_or_else(|| dir.join(name))
    };
    ApiTls {
        server: Some(ServerTls {
            cert: pick(&flags.tlscert, &file.tlscert, "cert.pem"),
            key: pick(&flags.tlskey, &file.tlskey, "key.pem"),
            client_ca: verify.then(|| pick(&flags.tlscacert, &file.tlscacert, "ca.pem")),
        }),
        opted_out,
    }
}

/// Refuses a tcp host that anyone on the network could use as root: not loopback, and no
/// client verification, unless the operator opted out explicitly. Loopback ones, and the
/// opted-out, get a warning (logging is not set up yet when this runs: the caller logs).
pub fn check_hosts(hosts: &[Host], tls: &ApiTls) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    if tls.authenticates() {
        return Ok(warnings);
    }
    for host in hosts {
        let Host::Tcp(addr) = host else { continue };
        if tls.opted_out || is_loopback(addr) {
            warnings.push(format!(
                "listening on {host} without TLS client verification: anyone who can reach it is root on this host (and scripts in a local browser can reach loopback); use --tlsverify (see docs/remote-access.md)"
            ));
            continue;
        }
        return Err(ConfigError::InsecureHost(format!(
            "refusing to listen on {host} without TLS: anyone who can reach that address would be root on this host. \
             Enable TLS with client verification: --tlsverify --tlscacert=ca.pem --tlscert=server-cert.pem --tlskey=server-key.pem \
             (daemon.json: \"tlsverify\": true, \"tlscacert\", \"tlscert\", \"tlskey\"; see docs/remote-access.md), \
             listen on a loopback address (tcp://127.0.0.1:2375), \
             or accept the risk explicitly with --tls=false"
        )));
    }
    Ok(warnings)
}

/// `host:port` names only loopback addresses. A name that does not resolve is not loopback
/// (the listener would fail anyway).
fn is_loopback(addr: &str) -> bool {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// What is wrong with the TLS files; printed before the daemon exits.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid TLS configuration: cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TLS configuration: {what} {path}: {reason}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "invalid TLS configuration: the key {key} does not go with the certificate {cert}: {reason}"
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// rustls needs a process-wide crypto provider; Berth builds with ring (see berth-registry).
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The listeners' rustls configuration: TLS 1.2 and 1.3, the server's certificate, and with
/// a client CA, mandatory client certificates signed by it (only by it: the system's roots do
/// not count, as dockerd's `ExclusiveRootPools`).
pub fn server_config(tls: &ServerTls) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    install_crypto_provider();
    let chain = certificates("certificate", &tls.cert)?;
    let key_pem = read("key", &tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
        what: "key",
        path: tls.key.clone(),
        reason: format!("no PEM private key in the file ({e})"),
    })?;
    let builder = rustls::ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ]);
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("CA certificate", ca)? {
                roots.add(cert).map_err(|e| TlsError::Invalid {
                    what: "CA certificate",
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| TlsError::Invalid {
                    what: "CA certificate",
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Mismatch {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            reason: e.to_string(),
        })?;
    Ok(Arc::new(config))
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

    fn flags(tls: Option<bool>, tlsverify: Option<bool>) -> TlsFlags {
        TlsFlags {
            tls,
            tlsverify,
            ..Default::default()
        }
    }

    #[test]
    fn dockerd_precedence() {
        let none = FileConfig::default();
        let home = env(&[("HOME", "/h")]);
        // Nothing: plain.
        let t = resolve(&TlsFlags::default(), &none, &home);
        assert_eq!(t, ApiTls::default());
        // --tls alone verifies clients, with the files in ~/.docker.
        let t = resolve(&flags(Some(true), None), &none, &home);
        let server = t.server.clone().unwrap();
        assert_eq!(server.client_ca, Some(PathBuf::from("/h/.docker/ca.pem")));
        assert_eq!(server.cert, PathBuf::from("/h/.docker/cert.pem"));
        assert!(t.authenticates() && !t.opted_out);
        // --tlsverify=false still means TLS, without client verification, on purpose.
        let t = resolve(&flags(None, Some(false)), &none, &home);
        assert!(t.enabled() && !t.authenticates() && t.opted_out);
        // --tls=false: plain, on purpose.
        let t = resolve(&flags(Some(false), None), &none, &home);
        assert!(!t.enabled() && t.opted_out);
        // DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
        let t = resolve(
            &TlsFlags::default(),
            &none,
            &env(&[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/c")]),
        );
        assert_eq!(t.server.unwrap().key, PathBuf::from("/c/key.pem"));
        // daemon.json keys.
        let file = crate::config::parse_file(
            Path::new("daemon.json"),
            r#"{"tlsverify": true, "tlscacert": "/x/ca", "tlscert": "/x/c", "tlskey": "/x/k"}"#,
        )
        .unwrap();
        let t = resolve(&TlsFlags::default(), &file, &home);
        assert_eq!(
            t.server,
            Some(ServerTls {
                cert: "/x/c".into(),
                key: "/x/k".into(),
                client_ca: Some("/x/ca".into())
            })
        );
        let mut found = Vec::new();
        conflicts(&flags(None, Some(true)), &file, &mut found);
        assert_eq!(found, vec!["tlsverify: (from flag: true, from file: true)"]);
    }

    #[test]
    fn the_daemon_configuration_carries_tls() {
        use crate::config::{Config, Flags};
        use clap::Parser;
        let flags = |args: &[&str]| {
            let mut argv = vec!["berthd"];
            argv.extend_from_slice(args);
            Flags::try_parse_from(argv).unwrap()
        };
        // TLS on and no host: dockerd's tcp://localhost:2376 (loopback, so allowed).
        let c = Config::merge(
            &flags(&["--tlsverify", "--tlscacert", "/p/ca.pem"]),
            &FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.hosts, vec![Host::Tcp("localhost:2376".into())]);
        assert!(c.tls.authenticates() && c.host_warnings.is_empty());
        // The refusal and the explicit opt-out, through the whole merge.
        let open = Config::merge(
            &flags(&["-H", "tcp://0.0.0.0:2375"]),
            &FileConfig::default(),
        );
        assert!(matches!(open, Err(ConfigError::InsecureHost(_))));
        let c = Config::merge(
            &flags(&["-H", "tcp://0.0.0.0:2375", "--tls=false"]),
            &FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.host_warnings.len(), 1);
        // A key given both ways is refused as the others are.
        let file =
            crate::config::parse_file(Path::new("daemon.json"), r#"{"tlskey": "/k"}"#).unwrap();
        let err = Config::merge(&flags(&["--tlskey", "/j"]), &file).unwrap_err();
        assert!(err.to_string().contains("tlskey"), "{err}");
    }

    #[test]
    fn unauthenticated_tcp_is_refused_off_loopback() {
        let plain = ApiTls::default();
        let tcp = |a: &str| Host::Tcp(a.to_string());
        let err = check_hosts(&[tcp("0.0.0.0:2375")], &plain).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--tlsverify") && text.contains("--tls=false"),
            "{text}"
        );
        assert!(check_hosts(&[tcp("192.0.2.1:2375")], &plain).is_err());
        assert_eq!(
            check_hosts(&[tcp("127.0.0.1:2375")], &plain).unwrap().len(),
            1
        );
        assert_eq!(check_hosts(&[tcp("[::1]:2375")], &plain).unwrap().len(), 1);
        assert_eq!(
            check_hosts(&[tcp("localhost:2375")], &plain).unwrap().len(),
            1
        );
        let opted_out = ApiTls {
            server: None,
            opted_out: true,
        };
        assert_eq!(
            check_hosts(&[tcp("0.0.0.0:2375")], &opted_out)
                .unwrap()
                .len(),
            1
        );
        let verified = ApiTls {
            server: Some(ServerTls {
                cert: "c".into(),
                key: "k".into(),
                client_ca: Some("ca".into()),
            }),
            opted_out: false,
        };
        assert!(
            check_hosts(&[tcp("0.0.0.0:2376")], &verified)
                .unwrap()
                .is_empty()
        );
        // Unix sockets are not concerned.
        assert!(
            check_hosts(&[Host::Unix("/run/x.sock".into())], &plain)
                .unwrap()
                .is_empty()
        );
    }
}
