//! [`Remote`] over plain HTTP requests: manifests read with a size cap, blobs streamed from
//! an offset, authenticated by [`crate::auth`] (oci-client's token auth knows neither identity
//! tokens nor client certificates, and its `pull()` buffers whole layers in memory; its error
//! types remain the vocabulary registry errors are classified in). Errors are reworded as
//! Docker words them.

use std::error::Error as _;
use std::sync::{Arc, Mutex, Once};

use berth_image::{Digest, Reference};
use futures_util::StreamExt;
use oci_client::errors::OciDistributionError;

use super::endpoint::{self, ClientCache, Clients, Endpoint};
use super::manifest::media_types;
use super::{BlobStream, Descriptor, Manifest, RegistryError, Remote, Result};
use crate::auth::Auth;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP, besides loopback ones
    /// (127.0.0.0/8, ::1 and `localhost` are insecure by default, as in dockerd).
    pub insecure_registries: Vec<String>,
    /// Mirrors by registry (`docker.io` for Docker Hub's `registry-mirrors`): endpoints
    /// (`http[s]://host[:port]/`) tried in order before the registry itself.
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// dockerd's `certs.d`: `<dir>/<host[:port]>/ca.crt` is trusted for that registry.
    pub certs_dir: Option<std::path::PathBuf>,
}

/// Credentials for a registry, as a client sent them (`X-Registry-Auth`).
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    /// HTTP basic auth, or exchanged for a token where the registry asks for one.
    Basic { username: String, password: String },
    /// An identity token (an OAuth2 refresh token a login obtained), exchanged at the
    /// registry's token service for access tokens.
    Identity { username: String, token: String },
    /// A registry bearer token (`registrytoken`).
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Identity { username, .. } => write!(f, "Identity({username}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// A registry client.
pub struct OciRemote {
    /// The HTTP clients (connection pool, TLS files) of each endpoint.
    clients: ClientCache,
    options: RemoteOptions,
    credentials: Credentials,
    /// The endpoint (index in [`endpoint::endpoints`]) that served a registry's manifest:
    /// its blobs are asked there first.
    preferred: Mutex<std::collections::HashMap<String, usize>>,
    /// Authentication by endpoint (`scheme://host`).
    auths: Mutex<std::collections::HashMap<String, Arc<Auth>>>,
}

/// The largest manifest read (containerd's and distribution's limit): a registry sending a
/// bigger one is refused before its body is read.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// rustls needs a process-wide crypto provider; Berth builds with ring (aws-lc-rs, the
/// default, costs minutes of cmake build).
pub(crate) fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `repository:<path>:pull`.
fn pull_scope(reference: &Reference) -> Vec<String> {
    vec![format!("repository:{}:pull", reference.path())]
}

impl OciRemote {
    pub fn new(options: RemoteOptions) -> OciRemote {
        install_crypto_provider();
        OciRemote {
            clients: ClientCache::default(),
            options,
            credentials: Credentials::Anonymous,
            preferred: Mutex::default(),
            auths: Mutex::default(),
        }
    }

    /// Sends `credentials` to the registries this client talks to.
    pub fn with_credentials(mut self, credentials: Credentials) -> OciRemote {
        self.credentials = credentials;
        self
    }

    /// Checks the credentials against `registry` (`host[:port]`), as `docker login` has the
    /// daemon do: `GET /v2/` with them, on each of the registry's endpoints until one answers
    /// (HTTPS, then HTTP for an insecure registry). Where the registry wants tokens, the
    /// token service is asked for a refresh token too: the identity token returned (empty when
    /// it gave none), which the client keeps instead of the password.
    pub async fn check_login(&self, registry: &str) -> Result<String> {
        let reference = Reference::parse_normalized(&format!("{registry}/berth-login-check"))
            .map_err(|e| RegistryError::Invalid(e.to_string()))?
            .with_default_tag();
        let mut last = None;
        for ep in endpoint::endpoints(registry, &self.options)
            .into_iter()
            .filter(|ep| !ep.mirror)
        {
            let clients = self.clients.get(&ep, &self.options)?;
            let url = format!("{}/v2/", ep.base());
            let auth = Auth::new(ep.base(), self.credentials.clone()).for_login();
            let fail = |e| {
                translate(
                    OciDistributionError::RequestError(e),
                    &reference,
                    ep.scheme,
                    true,
                )
            };
            let response = match auth
                .send(&clients.http, &[], || clients.http.get(&url), fail)
                .await
            {
                Ok(r) => r,
                // Not reachable this way: the next endpoint (plain HTTP) is tried.
                Err(e @ RegistryError::Transport(_)) => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = response.status();
            if status.is_success() {
                // dockerd answers the identity token it logged in with when the service
                // gave no new one.
                return Ok(auth
                    .refresh_token()
                    .unwrap_or_else(|| match &self.credentials {
                        Credentials::Identity { token, .. } => token.clone(),
                        _ => String::new(),
                    }));
            }
            let refused = format!(
                "login attempt to {url} failed with status: {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            );
            if status == reqwest::StatusCode::UNAUTHORIZED {
                // Wrong credentials: not tried elsewhere (dockerd neither).
                return Err(RegistryError::Unauthorized(refused));
            }
            last = Some(RegistryError::Transport(refused));
        }
        Err(last.unwrap_or_else(|| RegistryError::Transport("no endpoint".into())))
    }

    /// The tags of `repository` (`GET /v2/<name>/tags/list`, every page), from its mirrors in
    /// order, then from the registry itself.
    pub async fn list_tags(&self, repository: &Reference) -> Result<Vec<String>> {
        let mut last = None;
        for ep in endpoint::endpoints(repository.domain(), &self.options) {
            match self.tags_from(&ep, repository).await {
                Ok(tags) => return Ok(tags),
                Err(e) if ep.mirror => {
                    tracing::info!(mirror = %ep.host, repository = %repository, error = %e, "mirror failed, trying the next endpoint");
                }
                Err(e @ RegistryError::Transport(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Transport("no endpoint".into())))
    }

    async fn tags_from(&self, ep: &Endpoint, repository: &Reference) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let clients = self.clients.get(ep, &self.options)?;
        let auth = self.auth_for(ep);
        let fail =
            |e: OciDistributionError| translate(e, repository, ep.scheme, self.authenticated());
        let mut url = format!("{}/v2/{}/tags/list", ep.base(), repository.path());
        let mut tags = Vec::new();
        // Bounded: a registry whose pages never end is not followed forever.
        for _ in 0..10_000 {
            let response = auth
                .send(
                    &clients.http,
                    &pull_scope(repository),
                    || clients.http.get(&url),
                    |e| fail(OciDistributionError::RequestError(e)),
                )
                .await?;
            let status = response.status();
            // The next page, if any: `Link: </v2/...?last=x&n=y>; rel="next"`.
            let next = response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.contains("rel=\"next\""))
                .and_then(|v| Some(v[v.find('<')? + 1..v.find('>')?].to_string()));
            let body = response
                .bytes()
                .await
                .map_err(|e| fail(OciDistributionError::RequestError(e)))?;
            if status != reqwest::StatusCode::OK {
                let body = &body[..body.len().min(64 << 10)];
                return Err(fail(registry_status_error(status, body, &url)));
            }
            let page: TagList = serde_json::from_slice(&body).map_err(|e| {
                RegistryError::Transport(format!(
                    "invalid tag list for {}: {e}",
                    repository.familiar_name()
                ))
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) if n.starts_with('/') => url = format!("{}{n}", ep.base()),
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Err(RegistryError::Transport(format!(
            "the tag list of {} does not end",
            repository.familiar_name()
        )))
    }

    fn authenticated(&self) -> bool {
        !matches!(self.credentials, Credentials::Anonymous)
    }

    /// The endpoints of `registry`, the one that served its manifest first.
    fn ordered_endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut list = endpoint::endpoints(registry, &self.options);
        let preferred = self
            .preferred
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(registry)
            .copied();
        if let Some(i) = preferred.filter(|&i| i < list.len()) {
            let first = list.remove(i);
            list.insert(0, first);
        }
        list
    }

    /// The authentication of `ep`: the registry's credentials, none for a mirror.
    fn auth_for(&self, ep: &Endpoint) -> Arc<Auth> {
        let base = ep.base();
        self.auths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(base.clone())
            .or_insert_with(|| {
                let credentials = if ep.mirror {
                    Credentials::Anonymous
                } else {
                    self.credentials.clone()
                };
                Arc::new(Auth::new(base, credentials))
            })
            .clone()
    }

    /// The manifest `reference` names, from `ep`, read with oci-client's authentication but
    /// through a plain request: its size is checked before its body is read, and the body is
    /// never read past [`MAX_MANIFEST_SIZE`].
    async fn get_manifest(&self, ep: &Endpoint, reference: &Reference) -> Result<Manifest> {
        let clients: Clients = self.clients.get(ep, &self.options)?;
        let auth = self.auth_for(ep);
        let fail =
            |e: OciDistributionError| translate(e, reference, ep.scheme, self.authenticated());
        let target = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        let url = format!("{}/v2/{}/manifests/{target}", ep.base(), reference.path());
        let response = auth
            .send(
                &clients.http,
                &pull_scope(reference),
                || {
                    clients
                        .http
                        .get(&url)
                        .header(reqwest::header::ACCEPT, media_types::ACCEPT.join(", "))
                },
                |e| fail(OciDistributionError::RequestError(e)),
            )
            .await?;
        let status = response.status();
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        let limit = if status.is_success() {
            MAX_MANIFEST_SIZE
        } else {
            // An error body is a short JSON document.
            64 << 10
        };
        let too_large = |size: String| {
            RegistryError::Invalid(format!(
                "manifest for {} is too large: {size} bytes, more than the {MAX_MANIFEST_SIZE} bytes a manifest may have",
                reference.familiar_string()
            ))
        };
        if status.is_success()
            && let Some(length) = response.content_length()
            && length > limit
        {
            return Err(too_large(length.to_string()));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| fail(OciDistributionError::RequestError(e)))?;
            if (body.len() + chunk.len()) as u64 > limit {
                if status.is_success() {
                    return Err(too_large(format!("over {limit}")));
                }
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if status != reqwest::StatusCode::OK {
            return Err(fail(registry_status_error(status, &body, &url)));
        }
        // The bytes must match the digest asked for, or else the one the registry names.
        let digest = Digest::of_bytes(&body);
        if let Some(expected) = reference.digest().cloned().or(header_digest)
            && expected != digest
        {
            return Err(RegistryError::Transport(format!(
                "manifest verification failed for digest {expected}"
            )));
        }
        Ok(Manifest {
            media_type: declared_media_type(&body),
            bytes: body.into(),
            digest,
        })
    }
}

/// A registry's answer other than 200, as oci-client classifies it (so that [`translate`]
/// words it).
fn registry_status_error(
    status: reqwest::StatusCode,
    body: &[u8],
    url: &str,
) -> OciDistributionError {
    let url = url.to_string();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError { url };
    }
    if status.is_client_error()
        && let Ok(envelope) = serde_json::from_slice::<oci_client::errors::OciEnvelope>(body)
    {
        return OciDistributionError::RegistryError { envelope, url };
    }
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url,
        message: String::from_utf8_lossy(body).into_owned(),
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
            let text = crate::pool::error_chain(&e);
            if text.contains("UnknownIssuer") {
                // Go's wording, as Docker reports it.
                return RegistryError::Transport(format!(
                    "Get \"{url}\": tls: failed to verify certificate: x509: certificate signed by unknown authority"
                ));
            }
            if text.contains("NotValidForName") {
                return RegistryError::Transport(format!(
                    "Get \"{url}\": tls: failed to verify certificate: x509: certificate is not valid for {}",
                    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
                ));
            }
            if refused {
                // Docker pings /v2/ first and reports Go's dial error.
                RegistryError::Transport(format!(
                    "Get \"{url}\": dial tcp {registry}: connect: connection refused"
                ))
            } else {
                RegistryError::Transport(format!("Get \"{url}\": {}", crate::pool::error_chain(&e)))
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
    /// From the registry's mirrors in order, then from the registry itself (whose error is
    /// the one reported when every endpoint fails).
    async fn fetch_manifest(&self, reference: &Reference) -> Result<Manifest> {
        let registry = reference.domain();
        let endpoints = endpoint::endpoints(registry, &self.options);
        let mut last = None;
        for (i, ep) in endpoints.iter().enumerate() {
            match self.get_manifest(ep, reference).await {
                Ok(m) => {
                    self.preferred
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(registry.to_string(), i);
                    return Ok(m);
                }
                Err(e) if ep.mirror => {
                    tracing::info!(mirror = %ep.host, image = %reference, error = %e, "mirror failed, trying the next endpoint");
                }
                // An insecure registry not reachable over HTTPS: plain HTTP next.
                Err(e @ RegistryError::Transport(_)) => {
                    tracing::debug!(endpoint = %ep.base(), image = %reference, error = %e, "endpoint failed, trying the next one");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Transport("no endpoint".into())))
    }

    async fn fetch_blob(
        &self,
        repository: &Reference,
        desc: &Descriptor,
        offset: u64,
    ) -> Result<BlobStream> {
        let mut last = None;
        for ep in self.ordered_endpoints(repository.domain()) {
            match self.blob_from(&ep, repository, desc, offset).await {
                Ok(b) => return Ok(b),
                Err(e) => {
                    tracing::info!(endpoint = %ep.host, blob = %desc.digest, error = %e, "blob fetch failed");
                    // The registry's own error wins over a mirror's.
                    if !ep.mirror || last.is_none() {
                        last = Some(e);
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Transport("no endpoint".into())))
    }
}

impl OciRemote {
    /// The blob `desc` from `ep`, from byte `offset` on, authenticated as the manifest was
    /// (the token is reused; a 401 gets a fresh one once).
    async fn blob_from(
        &self,
        ep: &Endpoint,
        repository: &Reference,
        desc: &Descriptor,
        offset: u64,
    ) -> Result<BlobStream> {
        let clients = self.clients.get(ep, &self.options)?;
        let auth = self.auth_for(ep);
        let fail =
            |e: OciDistributionError| translate(e, repository, ep.scheme, self.authenticated());
        let url = format!(
            "{}/v2/{}/blobs/{}",
            ep.base(),
            repository.path(),
            desc.digest
        );
        let response = auth
            .send(
                &clients.http,
                &pull_scope(repository),
                || {
                    let request = clients.http.get(&url);
                    if offset > 0 {
                        request.header(reqwest::header::RANGE, format!("bytes={offset}-"))
                    } else {
                        request
                    }
                },
                |e| fail(OciDistributionError::RequestError(e)),
            )
            .await?;
        let status = response.status();
        let start = match status {
            reqwest::StatusCode::PARTIAL_CONTENT if offset > 0 => offset,
            reqwest::StatusCode::OK => 0,
            _ => {
                let body = response.bytes().await.unwrap_or_default();
                let body = &body[..body.len().min(64 << 10)];
                return Err(fail(registry_status_error(status, body, &url)));
            }
        };
        let length = response.content_length();
        // The store verifies the blob's digest as it writes it.
        let stream = response
            .bytes_stream()
            .map(|item| item.map_err(std::io::Error::other))
            .boxed();
        Ok(BlobStream {
            length,
            start,
            stream,
        })
    }
}
