//! TLS to a daemon's tcp listener, as the docker CLI does it: `--tlsverify` checks the
//! daemon's certificate against a CA file (and its name against the host), or against the
//! system's trust store when there is no CA file; `--tls` alone encrypts without checking who
//! answers; a client certificate and key are presented when given (a daemon with
//! `--tlsverify` requires one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::Error;

/// The TLS material of a connection: paths, as the flags and contexts give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The CA the daemon's certificate must be signed by (with `verify`); none: the system's
    /// trust store.
    pub ca: Option<PathBuf>,
    /// The client's certificate and key, presented to daemons that verify clients.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Check the daemon's certificate and name (`--tlsverify`); off, `--tls` only encrypts.
    pub verify: bool,
}

/// A ready rustls client configuration (cheap to clone).
#[derive(Clone)]
pub struct TlsConfig(pub(crate) Arc<rustls::ClientConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidTls(message)
}

/// rustls needs a process-wide crypto provider; Berth builds with ring.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| invalid(format!("could not read {what} {}: {e}", path.display())))
}

fn certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

impl TlsOptions {
    /// Loads the files into a client configuration (TLS 1.2 and 1.3).
    pub fn load(&self) -> Result<TlsConfig, Error> {
        install_crypto_provider();
        let builder = rustls::ClientConfig::builder_with_protocol_versions(&[
            &rustls::version::TLS13,
            &rustls::version::TLS12,
        ]);
        let builder = if self.verify {
            let mut roots = rustls::RootCertStore::empty();
            match &self.ca {
                Some(ca) => {
                    for cert in certificates("CA certificate", ca)? {
                        roots.add(cert).map_err(|e| {
                            invalid(format!("CA certificate {}: {e}", ca.display()))
                        })?;
                    }
                }
                None => roots = system_roots()?,
            }
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(
                    rustls::crypto::ring::default_provider(),
                )))
        };
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates("certificate", cert)?;
                let key_der = PrivateKeyDer::from_pem_slice(&read("key", key)?).map_err(|e| {
                    invalid(format!("key {}: no PEM private key ({e})", key.display()))
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    invalid(format!(
                        "the key {} does not go with the certificate {}: {e}",
                        key.display(),
                        cert.display()
                    ))
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(invalid(
                    "a client certificate needs its key and a key its certificate (--tlscert and --tlskey)"
                        .into(),
                ));
            }
        };
        Ok(TlsConfig(Arc::new(config)))
    }
}

/// The system's trust store (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`), for a
/// daemon checked without a CA of its own (a daemon behind a publicly trusted certificate).
fn system_roots() -> Result<rustls::RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(invalid(format!(
            "no CA certificate to check the daemon with: give one with --tlscacert (the system's trust store has none{})",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )));
    }
    Ok(roots)
}

/// The name the daemon's certificate must carry: the host part of `host:port`.
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>, Error> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        invalid(format!(
            "{host:?} cannot be checked against a certificate: {e}"
        ))
    })
}

/// `--tls` without `--tlsverify`: any certificate is accepted (docker's
/// `InsecureSkipVerify`), but the handshake's signatures are still checked, so the connection
/// is at least encrypted to whoever holds that certificate's key.
#[derive(Debug)]
struct AnyServerCert(rustls::crypto::CryptoProvider);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_incomplete_material() {
        // Without a CA, the system's trust store (this machine has one).
        let verify_without_ca = TlsOptions {
            verify: true,
            ..Default::default()
        };
        assert!(verify_without_ca.load().is_ok());
        let cert_without_key = TlsOptions {
            cert: Some("/nonexistent/cert.pem".into()),
            ..Default::default()
        };
        assert!(cert_without_key.load().is_err());
        let missing_ca = TlsOptions {
            verify: true,
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let text = missing_ca.load().unwrap_err().to_string();
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
        assert!(TlsOptions::default().load().is_ok());
        assert!(server_name("127.0.0.1:2376").is_ok());
        assert!(server_name("[::1]:2376").is_ok());
        assert!(server_name("daemon.lan:2376").is_ok());
    }
}
