//! Where a registry's content is fetched from, and how: its mirrors (tried in order, then
//! the registry itself), the scheme of each, and the HTTP clients with the registry's own TLS
//! files from dockerd's `certs.d/<host[:port]>/`.
//!
//! As in dockerd, a secure registry is spoken to over verified HTTPS only; an insecure one
//! (named in `insecure-registries`, by name or CIDR, or on loopback) over HTTPS without
//! verifying the certificate first, then over plain HTTP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::oci::RemoteOptions;
use super::{RegistryError, Result};

/// One place to fetch a registry's content from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host[:port]` requests go to.
    pub host: String,
    pub scheme: &'static str,
    /// Whether an HTTPS endpoint's certificate is verified (not for insecure registries).
    pub verify: bool,
    /// A mirror (not the registry the reference names): no credentials are sent to it.
    pub mirror: bool,
}

impl Endpoint {
    /// `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    pub fn base(&self) -> String {
        let host = match self.host.as_str() {
            // Docker Hub's API lives on its own host.
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            h => h,
        };
        format!("{}://{host}", self.scheme)
    }
}

/// The HTTP clients for one endpoint: `http` follows redirects (blobs are often served from
/// elsewhere); `upload` does not (upload locations carry the session state and are followed
/// by hand). Both present the registry's client certificate and trust its CA.
#[derive(Clone)]
pub(crate) struct Clients {
    pub http: reqwest::Client,
    pub upload: reqwest::Client,
}

/// `host[:port]` without the port (and without an IPv6 address's brackets).
fn host_part(registry: &str) -> &str {
    let host = match registry.rsplit_once(':') {
        // `[::1]:5000` or `127.0.0.1:5000` (an IPv6 address without port has several colons).
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => registry,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `registry` (`host[:port]`) is named in `insecure-registries`, by itself or by a
/// CIDR one of its addresses is in. A name is resolved for that, as dockerd does, but only
/// when a CIDR is listed (the lookup is a blocking call; names are usually in /etc/hosts or
/// the resolver's cache, and a failed lookup means "not listed").
fn listed_insecure(registry: &str, options: &RemoteOptions) -> bool {
    if options.insecure_registries.iter().any(|e| e == registry) {
        return true;
    }
    let nets: Vec<ipnet::IpNet> = options
        .insecure_registries
        .iter()
        .filter_map(|e| e.parse().ok())
        .collect();
    if nets.is_empty() {
        return false;
    }
    addresses(host_part(registry))
        .iter()
        .any(|ip| nets.iter().any(|net| net.contains(ip)))
}

/// The addresses of `host`: itself when it is one, else what the resolver says.
fn addresses(host: &str) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    use std::net::ToSocketAddrs;
    (host, 0)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

/// Whether `registry` is insecure: listed, or on loopback (127.0.0.0/8, ::1 and `localhost`
/// are insecure by default, as in dockerd).
pub(crate) fn is_insecure(registry: &str, options: &RemoteOptions) -> bool {
    if listed_insecure(registry, options) {
        return true;
    }
    let host = host_part(registry);
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Whether `registry` is spoken to over verified HTTPS only (what `/info` reports as
/// `Secure`). Besides dockerd's rule, a loopback registry with a `certs.d` directory is
/// secure: the directory says it serves TLS with that CA (a listed one stays insecure).
pub fn is_secure(registry: &str, options: &RemoteOptions) -> bool {
    if listed_insecure(registry, options) {
        return false;
    }
    !is_insecure(registry, options) || certs_dir(options, registry).is_some()
}

/// The `certs.d` directory of `host`, when there is one.
fn certs_dir(options: &RemoteOptions, host: &str) -> Option<PathBuf> {
    let dir = options.certs_dir.as_ref()?.join(host);
    dir.is_dir().then_some(dir)
}

/// The endpoints of the registry `host` itself: verified HTTPS, or for an insecure one HTTPS
/// without verification and then plain HTTP (dockerd's order).
fn own_endpoints(host: &str, mirror: bool, options: &RemoteOptions) -> Vec<Endpoint> {
    let endpoint = |scheme, verify| Endpoint {
        host: host.to_string(),
        scheme,
        verify,
        mirror,
    };
    if is_secure(host, options) {
        vec![endpoint("https", true)]
    } else {
        vec![endpoint("https", false), endpoint("http", false)]
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
                // A mirror's scheme is configured; its certificate is checked as dockerd
                // checks a mirror's: unless it is insecure.
                verify: scheme == "https" && is_secure(host, options),
                mirror: true,
            })
        })
        .collect();
    list.extend(own_endpoints(registry, false, options));
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

/// The clients of each endpoint, built on first use.
#[derive(Default)]
pub(crate) struct ClientCache {
    clients: Mutex<HashMap<(String, &'static str, bool), Clients>>,
}

impl ClientCache {
    pub(crate) fn get(&self, ep: &Endpoint, options: &RemoteOptions) -> Result<Clients> {
        let key = (ep.host.clone(), ep.scheme, ep.verify);
        if let Some(c) = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let c = Clients {
            http: build_client(ep, options, true)?,
            upload: build_client(ep, options, false)?,
        };
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, c.clone());
        Ok(c)
    }
}

/// A client for `ep`: the system roots plus `certs.d`'s CAs, `certs.d`'s client certificate,
/// and no verification at all for an insecure registry's HTTPS endpoint.
fn build_client(
    ep: &Endpoint,
    options: &RemoteOptions,
    redirects: bool,
) -> Result<reqwest::Client> {
    let host = &ep.host;
    let TlsFiles { roots, identity } = match (ep.scheme, certs_dir(options, host)) {
        ("https", Some(dir)) => load_tls_files(&dir)?,
        _ => TlsFiles::default(),
    };
    let mut certs = Vec::new();
    for pem in &roots {
        certs.extend(reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            RegistryError::Transport(format!("invalid CA certificate for {host}: {e}"))
        })?);
    }
    let mut builder = reqwest::Client::builder()
        .tls_certs_merge(certs)
        .connect_timeout(if ep.scheme == "https" && !ep.verify {
            // The first try of an insecure registry, which may not speak TLS at all: bounded
            // as dockerd bounds a TLS handshake, then plain HTTP is tried.
            Duration::from_secs(10)
        } else {
            Duration::from_secs(30)
        })
        // A registry silent this long is gone (blob downloads detect slower stalls by
        // throughput); not a limit on how long a transfer may take.
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
    if !redirects {
        builder = builder.redirect(reqwest::redirect::Policy::none());
    }
    if ep.scheme == "https" && !ep.verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(&pem).map_err(|e| {
            RegistryError::Invalid(format!("invalid client certificate for {host}: {e}"))
        })?);
    }
    builder
        .build()
        .map_err(|e| RegistryError::Transport(format!("cannot set up a client for {host}: {e}")))
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
            insecure_registries: vec!["10.0.0.1:5000".into(), "192.168.0.0/16".into()],
            ..Default::default()
        };
        assert!(is_insecure("10.0.0.1:5000", &some));
        assert!(is_insecure("192.168.3.4:5000", &some));
        assert!(!is_insecure("10.0.0.2:5000", &some));
    }

    #[test]
    fn a_listed_cidr_covers_the_names_that_resolve_into_it() {
        let cidr = RemoteOptions {
            insecure_registries: vec!["127.0.0.0/8".into()],
            ..Default::default()
        };
        // `localhost` is loopback by default too; what matters here is that it is *listed*
        // (which is what keeps a registry with a certs.d directory unverified).
        assert!(listed_insecure("localhost:5000", &cidr));
        assert!(!listed_insecure(
            "localhost:5000",
            &RemoteOptions::default()
        ));
        assert!(!listed_insecure("no-such-host.invalid:5000", &cidr));
    }

    fn list(registry: &str, options: &RemoteOptions) -> Vec<String> {
        endpoints(registry, options)
            .into_iter()
            .map(|e| format!("{} verify={} mirror={}", e.base(), e.verify, e.mirror))
            .collect()
    }

    #[test]
    fn mirrors_come_first_then_the_registry_https_first() {
        let mut options = RemoteOptions::default();
        options.mirrors.insert(
            "127.0.0.1:5000".into(),
            vec!["http://127.0.0.1:5001/".into(), "https://m.example/".into()],
        );
        assert_eq!(
            list("127.0.0.1:5000", &options),
            [
                "http://127.0.0.1:5001 verify=false mirror=true",
                "https://m.example verify=true mirror=true",
                "https://127.0.0.1:5000 verify=false mirror=false",
                "http://127.0.0.1:5000 verify=false mirror=false",
            ]
        );
        assert_eq!(
            list("reg.example", &options),
            ["https://reg.example verify=true mirror=false"]
        );
        assert_eq!(
            list("docker.io", &options),
            ["https://registry-1.docker.io verify=true mirror=false"]
        );
    }

    #[test]
    fn a_certs_dir_makes_a_loopback_registry_verified_https() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = RemoteOptions {
            certs_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        assert!(!is_secure("127.0.0.1:5000", &options));
        std::fs::create_dir(dir.path().join("127.0.0.1:5000")).unwrap();
        assert!(is_secure("127.0.0.1:5000", &options));
        assert_eq!(
            list("127.0.0.1:5000", &options),
            ["https://127.0.0.1:5000 verify=true mirror=false"]
        );
        // Named insecure, it stays insecure.
        options.insecure_registries.push("127.0.0.0/8".into());
        assert!(!is_secure("127.0.0.1:5000", &options));
    }
}
