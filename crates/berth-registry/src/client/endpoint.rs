//! Where a registry's content is fetched from, and how: its mirrors (tried in order, then
//! the registry itself), the scheme of each, and the HTTP clients with the registry's own TLS
//! roots from dockerd's `certs.d/<host[:port]>/`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};

use super::oci::RemoteOptions;
use super::{RegistryError, Result};

/// One place to fetch a registry's content from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host[:port]` requests go to.
    pub host: String,
    pub scheme: &'static str,
    /// A mirror (not the registry the reference names): no credentials are sent to it.
    pub mirror: bool,
}

/// The HTTP clients for one host and scheme: oci-client's (its token auth), and a plain one
/// for manifests (read with a size cap) and blobs, which presents the registry's client
/// certificate (oci-client can do neither).
#[derive(Clone)]
pub(crate) struct Clients {
    pub oci: oci_client::Client,
    pub http: reqwest::Client,
}

/// Whether `registry` (`host[:port]`) is spoken to over plain HTTP: named insecure, or on
/// loopback (127.0.0.0/8, ::1 and `localhost` are insecure by default, as in dockerd).
pub(crate) fn is_insecure(registry: &str, options: &RemoteOptions) -> bool {
    if options.insecure_registries.iter().any(|r| r == registry) {
        return true;
    }
    let host = match registry.rsplit_once(':') {
        // `[::1]:5000` or `127.0.0.1:5000` (an IPv6 address without port has several colons).
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Whether `registry` is spoken to over verified HTTPS (what `/info` reports as `Secure`).
pub fn is_secure(registry: &str, options: &RemoteOptions) -> bool {
    scheme_of(registry, options) == "https"
}

/// The `certs.d` directory of `host`, when there is one.
fn certs_dir(options: &RemoteOptions, host: &str) -> Option<PathBuf> {
    let dir = options.certs_dir.as_ref()?.join(host);
    dir.is_dir().then_some(dir)
}

/// The scheme of the registry `host`: HTTPS, or plain HTTP for an insecure one. A registry with
/// a `certs.d` directory declares it serves TLS: it gets verified HTTPS even on loopback.
pub(crate) fn scheme_of(host: &str, options: &RemoteOptions) -> &'static str {
    if is_insecure(host, options) && certs_dir(options, host).is_none() {
        "http"
    } else {
        "https"
    }
}

/// Where `registry`'s content is fetched from: its mirrors in order, then itself.
pub(crate) fn endpoints(registry: &str, options: &RemoteOptions) -> Vec<Endpoint> {
    let mut list: Vec<Endpoint> = options
        .mirrors
        .get(registry)
        .into_iter()
        .flatten()
        .filter_map(|url| {
            let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
                ("https", r)
            } else {
                ("http", url.strip_prefix("http://")?)
            };
            let host = rest.trim_end_matches('/');
            (!host.is_empty()).then(|| Endpoint {
                host: host.to_string(),
                scheme,
                mirror: true,
            })
        })
        .collect();
    list.push(Endpoint {
        host: registry.to_string(),
        scheme: scheme_of(registry, options),
        mirror: false,
    });
    list
}

/// What a `certs.d/<host>` directory holds, as dockerd reads it: every `*.crt` is a CA
/// root; `NAME.cert` with `NAME.key` is a client certificate (one is used, the first by name).
#[derive(Default)]
struct TlsFiles {
    roots: Vec<Vec<u8>>,
    /// The client certificate and its key, PEM, concatenated.
    identity: Option<Vec<u8>>,
}

fn load_tls_files(dir: &Path) -> Result<TlsFiles> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| RegistryError::Transport(format!("cannot read {}: {e}", path.display())))
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| RegistryError::Transport(format!("cannot read {}: {e}", dir.display())))?;
    let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    let file_name = |p: &Path| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let mut files = TlsFiles::default();
    for path in &names {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => files.roots.push(read(path)?),
            Some("cert") => {
                // dockerd's rule: a certificate needs its key, and a key its certificate.
                let key = path.with_extension("key");
                if !key.exists() {
                    return Err(RegistryError::Invalid(format!(
                        "missing key {} for client certificate {}. CA certificates must use the extension .crt",
                        file_name(&key),
                        file_name(path),
                    )));
                }
                if files.identity.is_none() {
                    let mut pem = read(path)?;
                    pem.push(b'\n');
                    pem.extend(read(&key)?);
                    files.identity = Some(pem);
                }
            }
            Some("key") if !path.with_extension("cert").exists() => {
                return Err(RegistryError::Invalid(format!(
                    "missing client certificate {} for key {}",
                    file_name(&path.with_extension("cert")),
                    file_name(path),
                )));
            }
            _ => {}
        }
    }
    Ok(files)
}

/// The clients of each host and scheme, built on first use.
#[derive(Default)]
pub(crate) struct ClientCache {
    clients: Mutex<HashMap<(String, &'static str), Clients>>,
}

impl ClientCache {
    pub(crate) fn get(
        &self,
        host: &str,
        scheme: &'static str,
        options: &RemoteOptions,
    ) -> Result<Clients> {
        let key = (host.to_string(), scheme);
        if let Some(c) = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let TlsFiles { roots, identity } = match (scheme, certs_dir(options, host)) {
            ("https", Some(dir)) => load_tls_files(&dir)?,
            _ => TlsFiles::default(),
        };
        let oci = oci_client::Client::new(ClientConfig {
            protocol: if scheme == "http" {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // Berth selects the platform itself (Docker's matching, `--platform`).
            platform_resolver: None,
            extra_root_certificates: roots
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            ..Default::default()
        });
        let mut certs = Vec::new();
        for pem in &roots {
            certs.extend(reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                RegistryError::Transport(format!("invalid CA certificate for {host}: {e}"))
            })?);
        }
        let mut builder = reqwest::Client::builder()
            .tls_certs_merge(certs)
            // A registry silent this long is gone (blob downloads detect slower stalls by
            // throughput); not a limit on how long a transfer may take.
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(&pem).map_err(|e| {
                RegistryError::Invalid(format!("invalid client certificate for {host}: {e}"))
            })?);
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Transport(format!("cannot set up a client: {e}")))?;
        let c = Clients { oci, http };
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_insecure_by_default() {
        let none = RemoteOptions::default();
        assert!(is_insecure("127.0.0.1:5000", &none));
        assert!(is_insecure("127.3.2.1", &none));
        assert!(is_insecure("localhost:5000", &none));
        assert!(is_insecure("[::1]:5000", &none));
        assert!(!is_insecure("registry.example.com:5000", &none));
        assert!(!is_insecure("10.0.0.1:5000", &none));
        let some = RemoteOptions {
            insecure_registries: vec!["10.0.0.1:5000".into()],
            ..Default::default()
        };
        assert!(is_insecure("10.0.0.1:5000", &some));
    }

    #[test]
    fn mirrors_come_first_then_the_registry() {
        let mut options = RemoteOptions::default();
        options.mirrors.insert(
            "127.0.0.1:5000".into(),
            vec!["http://127.0.0.1:5001/".into(), "https://m.example/".into()],
        );
        let hosts: Vec<_> = endpoints("127.0.0.1:5000", &options)
            .into_iter()
            .map(|e| format!("{}://{} {}", e.scheme, e.host, e.mirror))
            .collect();
        assert_eq!(
            hosts,
            [
                "http://127.0.0.1:5001 true",
                "https://m.example true",
                "http://127.0.0.1:5000 false"
            ]
        );
        assert_eq!(endpoints("other:1", &options).len(), 1);
    }

    #[test]
    fn a_certs_dir_makes_a_loopback_registry_https() {
        let dir = tempfile::tempdir().unwrap();
        let options = RemoteOptions {
            certs_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(scheme_of("127.0.0.1:5000", &options), "http");
        std::fs::create_dir(dir.path().join("127.0.0.1:5000")).unwrap();
        assert_eq!(scheme_of("127.0.0.1:5000", &options), "https");
    }
}
