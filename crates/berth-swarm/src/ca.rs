//! The cluster's root CA and Docker's join tokens. `swarm init` makes the CA (rcgen); a token
//! is `SWMTKN-1-<CA digest>-<secret>`, both base 36 as swarmkit's `ca.GenerateJoinToken`, so a
//! joining node can check that the manager it reached holds the CA the token names.

use sha2::{Digest, Sha256};

use crate::types::RootCa;

/// Makes a self-signed root CA (ECDSA P-256, as swarmkit's default).
pub fn new_root_ca() -> anyhow::Result<RootCa> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "swarm-ca");
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let cert = params.self_signed(&key)?;
    let digest = hex::encode(Sha256::digest(cert.der()));
    Ok(RootCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        digest: format!("sha256:{digest}"),
    })
}

/// Big-endian bytes in base 36, left-padded with zeros to `width`.
fn base36(bytes: &[u8], width: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = bytes.to_vec();
    let mut digits = Vec::new();
    while n.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// A new join token for the CA: 50 characters of digest, 25 of random secret.
pub fn join_token(ca: &RootCa) -> String {
    let digest = hex::decode(ca.digest.trim_start_matches("sha256:")).unwrap_or_default();
    let secret: [u8; 16] = rand::random();
    format!("SWMTKN-1-{}-{}", base36(&digest, 50), base36(&secret, 25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_docker_shape_and_name_the_ca() {
        let ca = new_root_ca().unwrap();
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let token = join_token(&ca);
        let parts: Vec<&str> = token.split('-').collect();
        assert_eq!(parts.len(), 4, "{token}");
        assert_eq!((parts[0], parts[1]), ("SWMTKN", "1"));
        assert_eq!((parts[2].len(), parts[3].len()), (50, 25));
        assert_ne!(join_token(&ca), token, "secrets differ");
        assert!(join_token(&ca).starts_with(&format!("SWMTKN-1-{}", parts[2])));
        assert_eq!(base36(&[0, 36], 3), "010");
    }
}
