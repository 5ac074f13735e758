//! A node's TLS identity as the transport uses it, replaceable while the node runs, and what
//! the rest of swarm mode reads from certificates (serial, validity, issuer).
//!
//! The transport's rustls configurations are built once per listener or client, but they do
//! not hold a certificate or a root themselves: a resolver hands out the current certificate
//! and key, and verifiers check peers against the current roots ([`LiveTls`]). Swapping the
//! holder's content ([`install`]) makes every new handshake use the new identity, which is
//! how certificate renewal and root rotation take effect without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::pki::Identity;

/// What the swarm reads from a certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// The serial number, hex.
    pub serial: String,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    /// The issuer and subject names, DER (as Go's `RawIssuer`/`RawSubject`).
    pub issuer: Vec<u8>,
    pub subject: Vec<u8>,
    /// The SubjectPublicKeyInfo, DER (Go's `RawSubjectPublicKeyInfo`).
    pub spki: Vec<u8>,
}

fn read_time(r: yasna::BERReader) -> yasna::ASN1Result<time::OffsetDateTime> {
    if r.lookahead_tag()? == yasna::tags::TAG_UTCTIME {
        Ok(*r.read_utctime()?.datetime())
    } else {
        Ok(*r.read_generalized_time()?.datetime())
    }
}

/// Reads a certificate's TBS fields (RFC 5280 §4.1).
pub fn parse_cert(der: &[u8]) -> anyhow::Result<CertInfo> {
    yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let info = r.next().read_sequence(|r| {
                r.read_optional(|r| r.read_tagged(yasna::Tag::context(0), |r| r.read_u64()))?;
                let (serial, _) = r.next().read_bigint_bytes()?;
                r.next().read_der()?;
                let issuer = r.next().read_der()?;
                let (not_before, not_after) = r
                    .next()
                    .read_sequence(|r| Ok((read_time(r.next())?, read_time(r.next())?)))?;
                let subject = r.next().read_der()?;
                let spki = r.next().read_der()?;
                while r.read_optional(|r| r.read_der())?.is_some() {}
                Ok(CertInfo {
                    serial: hex::encode(serial),
                    not_before,
                    not_after,
                    issuer,
                    subject,
                    spki,
                })
            })?;
            r.next().read_der()?;
            r.next().read_bitvec_bytes()?;
            Ok(info)
        })
    })
    .map_err(|e| anyhow::anyhow!("reading a certificate: {e}"))
}

/// The certificates of a PEM bundle, in order.
pub fn pem_certs(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    Ok(CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>()?)
}

/// The first certificate of a PEM bundle, read.
pub fn pem_info(pem: &str) -> anyhow::Result<CertInfo> {
    let certs = pem_certs(pem)?;
    let first = certs
        .first()
        .ok_or_else(|| anyhow::anyhow!("no certificate in PEM"))?;
    parse_cert(first)
}

/// Who issued a node certificate: the name on it, and the key of the certificate that follows
/// it in its chain (a rotation's cross-signed root) or else of the root it trusts; as
/// swarmkit's node `TLSInfo` shows it.
pub fn issuer_of(identity: &Identity) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let chain = pem_certs(&identity.cert_pem)?;
    let leaf = parse_cert(chain.first().map(|c| c.as_ref()).unwrap_or_default())?;
    let key = match chain.get(1) {
        Some(next) => parse_cert(next)?.spki,
        None => pem_info(&identity.ca_pem)?.spki,
    };
    Ok((leaf.issuer, key))
}

/// A node's `Description.TLSInfo` (byte fields base64, as Go's JSON encodes `[]byte`).
pub fn node_tls_info(identity: &Identity) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (subject, key) = issuer_of(identity).unwrap_or_default();
    serde_json::json!({
        "TrustRoot": identity.ca_pem,
        "CertIssuerSubject": b64(&subject),
        "CertIssuerPublicKey": b64(&key),
    })
}

/// The cluster's `TLSInfo` for its root: the root's own subject and key.
pub fn root_tls_info(ca_pem: &str) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let info = pem_info(ca_pem).ok();
    serde_json::json!({
        "TrustRoot": ca_pem,
        "CertIssuerSubject": info.as_ref().map(|i| b64(&i.subject)).unwrap_or_default(),
        "CertIssuerPublicKey": info.as_ref().map(|i| b64(&i.spki)).unwrap_or_default(),
    })
}

/// Test-only knob: renew every this many seconds instead of at 50–80 % of the lifetime (the
/// shortest lifetime the API allows is an hour).
pub const RENEW_ENV: &str = "BERTH_SWARM_CERT_RENEW_SECS";

/// The shortest wait between two renewals on the normal schedule: a certificate of the
/// shortest lifetime is backdated an hour, so its 50 % point is already past when it arrives.
const MIN_RENEW_WAIT: Duration = Duration::from_secs(60);

/// When to renew a certificate valid from `not_before` to `not_after`, seen at `now`: at
/// `fraction` (0..1) of the way between 50 % and 80 % of its lifetime, as swarmkit's
/// `calculateRandomExpiry` (whole minutes; nothing negative).
pub fn renew_delay(
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
    now: time::OffsetDateTime,
    fraction: f64,
) -> Duration {
    let minutes = (not_after - not_before).whole_minutes().max(0) as f64;
    let (lo, hi) = ((minutes * 0.5) as i64, (minutes * 0.8) as i64);
    let pick = if hi - lo < 1 {
        lo
    } else {
        lo + ((hi - lo) as f64 * fraction.clamp(0.0, 0.999_999)) as i64
    };
    let at = not_before + time::Duration::minutes(pick);
    let left = at - now;
    if left.is_negative() {
        Duration::ZERO
    } else {
        Duration::from_secs(left.whole_seconds() as u64)
    }
}

/// How long this node waits before renewing `identity`'s certificate.
pub fn next_renewal(identity: &Identity) -> Duration {
    if let Some(secs) = std::env::var(RENEW_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_secs(secs);
    }
    match pem_info(&identity.cert_pem) {
        Ok(info) => renew_delay(
            info.not_before,
            info.not_after,
            time::OffsetDateTime::now_utc(),
            rand::random::<f64>(),
        )
        .max(MIN_RENEW_WAIT),
        Err(_) => MIN_RENEW_WAIT,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the holder hands out now.
struct Current {
    identity: Option<Identity>,
    key: Option<Arc<CertifiedKey>>,
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<dyn ServerCertVerifier>,
}

impl Current {
    fn new(ca_pem: &str, identity: Option<&Identity>) -> anyhow::Result<Current> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certs(ca_pem)? {
            roots.add(cert)?;
        }
        let roots = Arc::new(roots);
        let clients =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .allow_unauthenticated()
                .build()?;
        let servers =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()?;
        let key = match identity {
            Some(id) if !id.key_pem.is_empty() => {
                let chain = pem_certs(&id.cert_pem)?;
                let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())?;
                let key = rustls::crypto::ring::sign::any_supported_type(&key)?;
                Some(Arc::new(CertifiedKey::new(chain, key)))
            }
            _ => None,
        };
        Ok(Current {
            identity: identity.cloned(),
            key,
            clients,
            servers,
        })
    }
}

/// A node's certificate, key and trusted roots, swappable.
pub struct LiveTls {
    current: RwLock<Arc<Current>>,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveTls")
    }
}

impl LiveTls {
    /// Trusts `ca_pem`; presents `identity`'s certificate (none: a joining node).
    pub fn new(ca_pem: &str, identity: Option<&Identity>) -> anyhow::Result<Arc<LiveTls>> {
        Ok(Arc::new(LiveTls {
            current: RwLock::new(Arc::new(Current::new(ca_pem, identity)?)),
        }))
    }

    pub fn from_identity(identity: &Identity) -> anyhow::Result<Arc<LiveTls>> {
        Self::new(&identity.ca_pem, Some(identity))
    }

    /// From now on, handshakes present `identity` and trust its `ca_pem`.
    pub fn set(&self, identity: &Identity) -> anyhow::Result<()> {
        let next = Arc::new(Current::new(&identity.ca_pem, Some(identity))?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn get(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The identity handshakes present now.
    pub fn identity(&self) -> Option<Identity> {
        self.get().identity.clone()
    }

    /// A server configuration that always presents the current certificate and checks client
    /// certificates against the current roots (clients may present none).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(Live(self.clone())))
            .with_cert_resolver(Arc::new(Live(self.clone())));
        Ok(Arc::new(config))
    }

    /// A client configuration that checks servers against the current roots and presents the
    /// current certificate, if any.
    pub fn client_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Live(self.clone())))
            .with_client_cert_resolver(Arc::new(Live(self.clone())));
        Ok(Arc::new(config))
    }
}

/// The rustls hooks over a [`LiveTls`].
#[derive(Debug)]
struct Live(Arc<LiveTls>);

impl rustls::server::ResolvesServerCert for Live {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.get().key.clone()
    }
}

impl rustls::client::ResolvesClientCert for Live {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.get().key.clone()
    }
    fn has_certs(&self) -> bool {
        self.0.get().key.is_some()
    }
}

impl ClientCertVerifier for Live {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        // `GetCa` and `Join` come from nodes without a certificate yet.
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would borrow from a root set that may be replaced; clients pick their one
        // certificate regardless.
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .get()
            .clients
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .clients
            .verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .clients
            .verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().clients.supported_verify_schemes()
    }
}

impl ServerCertVerifier for Live {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .get()
            .servers
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .servers
            .verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .servers
            .verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().servers.supported_verify_schemes()
    }
}

/// The holder of each swarm directory's identity in this process (a daemon has one).
static LIVE: Mutex<Option<HashMap<PathBuf, Arc<LiveTls>>>> = Mutex::new(None);

/// The holder for `dir`, now presenting `identity` (made on first use).
pub fn for_dir(dir: &Path, identity: &Identity) -> anyhow::Result<Arc<LiveTls>> {
    let mut map = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let map = map.get_or_insert_with(HashMap::new);
    if let Some(live) = map.get(dir) {
        live.set(identity)?;
        return Ok(live.clone());
    }
    let live = LiveTls::from_identity(identity)?;
    map.insert(dir.to_path_buf(), live.clone());
    Ok(live)
}

/// The holder for `dir`, if this process made one.
pub fn live(dir: &Path) -> Option<Arc<LiveTls>> {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(dir).cloned())
}

/// A new identity for `dir`: written atomically (sealed under autolock), then presented by
/// every new handshake.
pub fn install(dir: &Path, identity: &Identity) -> anyhow::Result<Arc<LiveTls>> {
    identity.save(dir)?;
    for_dir(dir, identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_lifetime() {
        let nb = time::OffsetDateTime::UNIX_EPOCH;
        let na = nb + time::Duration::hours(100);
        let at = |f: f64, now_h: i64| renew_delay(nb, na, nb + time::Duration::hours(now_h), f);
        assert_eq!(at(0.0, 0), Duration::from_secs(50 * 3600));
        let late = at(0.999_999, 0);
        assert!(late < Duration::from_secs(80 * 3600) && late > Duration::from_secs(79 * 3600));
        assert_eq!(at(0.5, 10), Duration::from_secs(55 * 3600));
        // Past the point: at once.
        assert_eq!(at(0.0, 90), Duration::ZERO);
        // The shortest lifetime (an hour, backdated an hour): between now and 36 minutes.
        let now = time::OffsetDateTime::now_utc();
        let d = renew_delay(
            now - time::Duration::hours(1),
            now + time::Duration::hours(1),
            now,
            0.99,
        );
        assert!(d <= Duration::from_secs(36 * 60), "{d:?}");
    }

    #[test]
    fn certificates_read_back_and_the_holder_swaps() {
        let ca = crate::ca::new_root_ca().unwrap();
        let id = crate::pki::issue(&ca, "c1", "node1", "worker").unwrap();
        let info = pem_info(&id.cert_pem).unwrap();
        let root = pem_info(&ca.cert_pem).unwrap();
        assert_eq!(info.issuer, root.subject);
        assert!(info.not_after - info.not_before > time::Duration::days(89));
        let (subject, key) = issuer_of(&id).unwrap();
        assert_eq!((subject, key), (root.subject.clone(), root.spki.clone()));
        let live = LiveTls::from_identity(&id).unwrap();
        let again = crate::pki::issue(&ca, "c1", "node1", "worker").unwrap();
        live.set(&again).unwrap();
        assert_eq!(live.identity().unwrap().cert_pem, again.cert_pem);
        assert_ne!(pem_info(&again.cert_pem).unwrap().serial, info.serial);
        live.server_config().unwrap();
        live.client_config().unwrap();
    }
}
