//! [`Remote`] over the `oci-client` crate: its token auth, media-type negotiation and ranged
//! blob reads, used through its low-level calls only (its `pull()` buffers whole layers in
//! memory). Errors are reworded as Docker words them.

use std::error::Error as _;
use std::net::IpAddr;
use std::sync::Once;

use berth_image::{Digest, Reference};
use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol, LayerDescriptor};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

use super::manifest::media_types;
use super::{BlobStream, Descriptor, Manifest, RegistryError, Remote, Result};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP, besides loopback ones
    /// (127.0.0.0/8, ::1 and `localhost` are insecure by default, as in dockerd).
    pub insecure_registries: Vec<String>,
}

/// Credentials for a registry, as a client sent them (`X-Registry-Auth`).
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    /// HTTP basic auth, or exchanged for a token where the registry asks for one.
    Basic { username: String, password: String },
    /// A registry bearer token (`registrytoken`).
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// A registry client over `oci-client`.
pub struct OciRemote {
    /// HTTPS, and plain HTTP for insecure registries: oci-client decides the scheme from its
    /// config, so there is one client (a connection pool and token cache) for each.
    https: oci_client::Client,
    http: oci_client::Client,
    options: RemoteOptions,
    auth: RegistryAuth,
}

/// rustls needs a process-wide crypto provider; Berth builds with ring (aws-lc-rs, the
/// default, costs minutes of cmake build).
pub(crate) fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Whether `registry` (`host[:port]`) is spoken to over plain HTTP.
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

impl OciRemote {
    pub fn new(options: RemoteOptions) -> OciRemote {
        install_crypto_provider();
        let client = |protocol| {
            oci_client::Client::new(ClientConfig {
                protocol,
                // Berth selects the platform itself (Docker's matching, `--platform`).
                platform_resolver: None,
                ..Default::default()
            })
        };
        OciRemote {
            https: client(ClientProtocol::Https),
            http: client(ClientProtocol::Http),
            options,
            auth: RegistryAuth::Anonymous,
        }
    }

    /// Sends `credentials` to the registries this client talks to.
    pub fn with_credentials(mut self, credentials: Credentials) -> OciRemote {
        self.auth = match credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => RegistryAuth::Basic(username, password),
            Credentials::Bearer(token) => RegistryAuth::Bearer(token),
        };
        self
    }

    /// Checks the credentials against `registry` (`host[:port]`), as `docker login` has the
    /// daemon do. dockerd asks `/v2/` with them; oci-client has no such call, so a HEAD of a
    /// manifest in a repository that need not exist is asked instead (oci-client answers the
    /// registry's challenge, exchanging the credentials for a token where it asks for one):
    /// a 401 means they are wrong, a 404 that they were accepted.
    pub async fn check_login(&self, registry: &str) -> Result<()> {
        let reference = Reference::parse_normalized(&format!("{registry}/berth-login-check"))
            .map_err(|e| RegistryError::Invalid(e.to_string()))?
            .with_default_tag();
        let scheme = self.scheme(registry);
        let client = self.client_for(registry);
        let refused = || {
            RegistryError::Unauthorized(format!(
                "login attempt to {scheme}://{registry}/v2/ failed with status: 401 Unauthorized"
            ))
        };
        match client
            .fetch_manifest_digest(&oci_reference(&reference), &self.auth)
            .await
        {
            Ok(_) | Err(OciDistributionError::ServerError { code: 404, .. }) => Ok(()),
            Err(OciDistributionError::UnauthorizedError { .. })
            | Err(OciDistributionError::AuthenticationFailure(_)) => Err(refused()),
            Err(e) => match translate(e, &reference, scheme, self.authenticated()) {
                // MANIFEST_UNKNOWN / NAME_UNKNOWN: past authentication.
                RegistryError::NotFound(_) => Ok(()),
                RegistryError::Unauthorized(_) => Err(refused()),
                other => Err(other),
            },
        }
    }

    fn authenticated(&self) -> bool {
        !matches!(self.auth, RegistryAuth::Anonymous)
    }

    fn client_for(&self, registry: &str) -> &oci_client::Client {
        if is_insecure(registry, &self.options) {
            &self.http
        } else {
            &self.https
        }
    }

    fn scheme(&self, registry: &str) -> &'static str {
        if is_insecure(registry, &self.options) {
            "http"
        } else {
            "https"
        }
    }
}

/// `127.0.0.1:5000/team/app:1.4` as oci-client's reference.
fn oci_reference(reference: &Reference) -> oci_client::Reference {
    let registry = reference.domain().to_string();
    let repository = reference.path().to_string();
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => oci_client::Reference::with_digest(registry, repository, d.to_string()),
        (None, Some(t)) => oci_client::Reference::with_tag(registry, repository, t.to_string()),
        (None, None) => oci_client::Reference::with_tag(registry, repository, "latest".into()),
    }
}

/// Rewords an oci-client error as Docker would say it (`authenticated`: credentials were sent).
fn translate(
    err: OciDistributionError,
    reference: &Reference,
    scheme: &str,
    authenticated: bool,
) -> RegistryError {
    match err {
        OciDistributionError::RegistryError { envelope, .. } => {
            let Some(first) = envelope.errors.first() else {
                return RegistryError::Transport("registry returned an empty error".into());
            };
            let code = serde_json::to_value(&first.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            // errcode.Error's text: the code in lower case with spaces, then the message.
            let cause = format!(
                "{}: {}",
                code.to_lowercase().replace('_', " "),
                first.message
            );
            let name = reference.familiar_name();
            match code.as_str() {
                "MANIFEST_UNKNOWN" => RegistryError::NotFound(format!(
                    "manifest for {} not found: {cause}",
                    reference.familiar_string()
                )),
                "NAME_UNKNOWN" => {
                    RegistryError::NotFound(format!("repository {name} not found: {cause}"))
                }
                "DENIED" => RegistryError::NotFound(format!(
                    "pull access denied for {name}, repository does not exist or may require 'docker login': {cause}"
                )),
                "UNAUTHORIZED" => RegistryError::Unauthorized(cause),
                _ => RegistryError::Transport(cause),
            }
        }
        OciDistributionError::UnauthorizedError { url } => {
            // Docker resolves a tag with a HEAD of the manifest and names it so.
            let url = manifest_url(reference, scheme).unwrap_or(url);
            RegistryError::Unauthorized(if authenticated {
                format!("Head \"{url}\": unauthorized: authentication required")
            } else {
                format!("Head \"{url}\": no basic auth credentials")
            })
        }
        OciDistributionError::ServerError { code: 404, .. } => RegistryError::NotFound(format!(
            "manifest for {} not found: manifest unknown",
            reference.familiar_string()
        )),
        OciDistributionError::RequestError(e) => {
            let registry = reference.domain();
            let url = format!("{scheme}://{registry}/v2/");
            let mut refused = false;
            let mut source = e.source();
            while let Some(s) = source {
                refused |= s
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
                source = s.source();
            }
            if refused {
                // Docker pings /v2/ first and reports Go's dial error.
                RegistryError::Transport(format!(
                    "Get \"{url}\": dial tcp {registry}: connect: connection refused"
                ))
            } else {
                RegistryError::Transport(format!("Get \"{url}\": {}", chain(&e)))
            }
        }
        other => RegistryError::Transport(other.to_string()),
    }
}

/// `http://host/v2/<path>/manifests/<tag or digest>`.
fn manifest_url(reference: &Reference, scheme: &str) -> Option<String> {
    let target = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => return None,
    };
    Some(format!(
        "{scheme}://{}/v2/{}/manifests/{target}",
        reference.domain(),
        reference.path()
    ))
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn parse_digest(text: &str) -> Result<Digest> {
    Digest::parse(text).map_err(|e| RegistryError::Transport(format!("registry sent {e}")))
}

/// The media type a manifest body declares (registries' Content-Type is not exposed by
/// oci-client's raw pull; the body says it for every schema 2 and OCI manifest that has one,
/// and an OCI manifest or index without it is told apart by its fields).
fn declared_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Versioned {
        #[serde(rename = "mediaType", default)]
        media_type: String,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Versioned>(bytes) {
        Ok(v) if !v.media_type.is_empty() => v.media_type,
        Ok(v) if v.manifests.is_some() => media_types::OCI_INDEX.to_string(),
        Ok(v) if v.layers.is_some() => media_types::OCI_MANIFEST.to_string(),
        _ => String::new(),
    }
}

impl Remote for OciRemote {
    async fn fetch_manifest(&self, reference: &Reference) -> Result<Manifest> {
        let oref = oci_reference(reference);
        let scheme = self.scheme(reference.domain());
        let client = self.client_for(reference.domain());
        let (bytes, digest) = client
            .pull_manifest_raw(&oref, &self.auth, media_types::ACCEPT)
            .await
            .map_err(|e| translate(e, reference, scheme, self.authenticated()))?;
        // oci-client checked the bytes against the reference's digest or the registry's
        // Docker-Content-Digest header; a manifest without that header gets its own hash.
        let digest = parse_digest(&digest)?;
        if Digest::of_bytes(&bytes) != digest {
            return Err(RegistryError::Transport(format!(
                "manifest verification failed for digest {digest}"
            )));
        }
        Ok(Manifest {
            media_type: declared_media_type(&bytes),
            bytes,
            digest,
        })
    }

    async fn fetch_blob(
        &self,
        repository: &Reference,
        desc: &Descriptor,
        offset: u64,
    ) -> Result<BlobStream> {
        let oref = oci_reference(repository);
        let scheme = self.scheme(repository.domain());
        let client = self.client_for(repository.domain());
        let digest = desc.digest.to_string();
        let layer = LayerDescriptor {
            digest: &digest,
            urls: &None,
        };
        let (sized, start) = if offset == 0 {
            client.pull_blob_stream(&oref, &layer).await.map(|s| (s, 0))
        } else {
            // A partial response is not verified by oci-client; the store verifies the whole.
            client
                .pull_blob_stream_partial(&oref, &layer, offset, None)
                .await
                .map(|r| match r {
                    BlobResponse::Full(s) => (s, 0),
                    BlobResponse::Partial(s) => (s, offset),
                })
        }
        .map_err(|e| translate(e, repository, scheme, self.authenticated()))?;
        let what = digest.clone();
        // oci-client verifies the digest at the end of a full stream; its error names
        // neither the layer nor Docker's wording.
        let stream = sized
            .stream
            .map(move |item| {
                item.map_err(|e| {
                    if e.to_string().to_lowercase().contains("digest") {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("filesystem layer verification failed for digest {what}"),
                        )
                    } else {
                        e
                    }
                })
            })
            .boxed();
        Ok(BlobStream {
            length: sized.content_length,
            start,
            stream,
        })
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
        };
        assert!(is_insecure("10.0.0.1:5000", &some));
    }
}
