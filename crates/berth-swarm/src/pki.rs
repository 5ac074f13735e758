//! Node certificates from the cluster CA, a node's identity on disk, and reading join tokens.
//!
//! A node certificate names the node as swarmkit's do (CN = node ID, OU = `swarm-manager` or
//! `swarm-worker`, O = cluster ID) and also carries both as DNS names, which is what the
//! transport checks (webpki verifies names, it does not hand out subjects). Managers issue the
//! key with the certificate and send both over the TLS channel the joining node verified
//! against its token's CA digest (swarmkit sends a CSR instead; rcgen parses CSRs only with
//! its x509-parser feature, which is not in this build).

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::types::RootCa;

/// swarmkit's answer to a token it cannot read.
pub const INVALID_TOKEN: &str = "invalid join token";

/// This node's certificate, key and the CA it trusts: `<swarm dir>/certificates/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: String,
    /// `manager` or `worker` (the API's spelling).
    pub role: String,
    pub cluster_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    /// A manager's Raft data-encryption key (base64; [`crate::autolock::DataKey`]), made at its
    /// first start.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_key: String,
    /// With autolock: `key_pem` and `data_key` sealed with the unlock key ([`crate::autolock`]), `key_pem`
    /// then empty on disk.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_sealed: String,
}

/// What autolock seals: the node's TLS key and its Raft data key.
#[derive(Serialize, Deserialize)]
struct SealedKeys {
    key_pem: String,
    #[serde(default)]
    data_key: String,
}

fn identity_path(dir: &Path) -> PathBuf {
    dir.join("certificates").join("identity.json")
}

impl Identity {
    /// The identity, its key unsealed with the unlock key remembered for `dir` (left empty
    /// while the manager is locked).
    pub fn load(dir: &Path) -> Option<Identity> {
        let mut id = Self::load_raw(dir)?;
        if !id.key_sealed.is_empty()
            && let Some(key) = crate::autolock::remembered(dir)
            && let Some(plain) = crate::autolock::open(&key, &id.key_sealed)
        {
            let keys: SealedKeys = serde_json::from_slice(&plain).ok()?;
            id.key_pem = keys.key_pem;
            id.data_key = keys.data_key;
            id.key_sealed.clear();
        }
        Some(id)
    }

    /// The identity as on disk.
    pub fn load_raw(dir: &Path) -> Option<Identity> {
        let bytes = std::fs::read(identity_path(dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the key on disk is sealed (autolock) and is not open in memory.
    pub fn is_sealed(&self) -> bool {
        !self.key_sealed.is_empty()
    }

    /// Writes the identity (mode 0600: it holds the node's key).
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut on_disk = self.clone();
        if let Some(key) = crate::autolock::remembered(dir)
            && !self.key_pem.is_empty()
        {
            let keys = SealedKeys {
                key_pem: self.key_pem.clone(),
                data_key: self.data_key.clone(),
            };
            on_disk.key_sealed = crate::autolock::seal(&key, &serde_json::to_vec(&keys)?)?;
            on_disk.key_pem.clear();
            on_disk.data_key.clear();
        }
        let path = identity_path(dir);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        // A name of its own per write: renewal and autolock's resealing may write at once.
        let tmp = path.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&on_disk)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    pub fn role_name(&self) -> &'static str {
        role_name(&self.role)
    }
}

/// The certificate OU (and DNS name) of an API role.
pub fn role_name(role: &str) -> &'static str {
    if role == "manager" {
        crate::transport::MANAGER_ROLE
    } else {
        crate::transport::WORKER_ROLE
    }
}

/// swarmkit's default node certificate lifetime (90 days).
pub const DEFAULT_CERT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);
/// swarmkit's shortest (`ca.MinNodeCertExpiration`).
pub const MIN_CERT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The node certificate lifetime a cluster spec asks for (`CAConfig.NodeCertExpiry`, ns).
pub fn cert_expiry(spec: &serde_json::Value) -> std::time::Duration {
    spec["CAConfig"]["NodeCertExpiry"]
        .as_u64()
        .filter(|ns| *ns > 0)
        .map(std::time::Duration::from_nanos)
        .unwrap_or(DEFAULT_CERT_EXPIRY)
}

/// A node certificate from the cluster's CA, valid as long as its spec says.
pub fn issue_for(
    cluster: &crate::types::Cluster,
    node_id: &str,
    role: &str,
) -> anyhow::Result<Identity> {
    let expiry = cert_expiry(&cluster.spec);
    match &cluster.root_rotation {
        // During a root rotation: signed by the new root, sent with the new root as the old
        // one cross-signed it, and still trusting the old root (`crate::rotation`).
        Some(r) => {
            let mut id = issue_with_expiry(&r.ca, &cluster.meta.id, node_id, role, expiry)?;
            if !id.cert_pem.ends_with('\n') {
                id.cert_pem.push('\n');
            }
            id.cert_pem.push_str(&r.cross_signed_pem);
            id.ca_pem = cluster.root_ca.cert_pem.clone();
            Ok(id)
        }
        None => issue_with_expiry(&cluster.root_ca, &cluster.meta.id, node_id, role, expiry),
    }
}

/// A node certificate and key for `node_id` in `role` (`manager`/`worker`), valid 90 days
/// (swarmkit's default expiry).
pub fn issue(ca: &RootCa, cluster_id: &str, node_id: &str, role: &str) -> anyhow::Result<Identity> {
    issue_with_expiry(ca, cluster_id, node_id, role, DEFAULT_CERT_EXPIRY)
}

/// A node certificate valid for `expiry` from now (backdated an hour, for clock skew).
pub fn issue_with_expiry(
    ca: &RootCa,
    cluster_id: &str,
    node_id: &str,
    role: &str,
    expiry: std::time::Duration,
) -> anyhow::Result<Identity> {
    let (ca_cert, ca_key) = crate::rotation::issuer(ca)?;
    let ou = role_name(role);
    let mut params = rcgen::CertificateParams::new(vec![ou.to_string(), node_id.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node_id);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, ou);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, cluster_id);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + expiry;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    Ok(Identity {
        node_id: node_id.to_string(),
        role: role.to_string(),
        cluster_id: cluster_id.to_string(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: ca.cert_pem.clone(),
        data_key: String::new(),
        key_sealed: String::new(),
    })
}

/// A join token's parts: the CA digest (hex) and the whole token.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinToken {
    pub ca_digest_hex: String,
    pub token: String,
}

fn from_base36(s: &str) -> Option<Vec<u8>> {
    // Big-endian base 36 to bytes (32 for a sha256 digest).
    let mut out = vec![0u8; 32];
    for c in s.chars() {
        let mut carry = c.to_digit(36)?;
        for b in out.iter_mut().rev() {
            let v = u32::from(*b) * 36 + carry;
            *b = (v & 0xff) as u8;
            carry = v >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(out)
}

/// Reads `SWMTKN-1-<digest>-<secret>` as swarmkit's `ParseJoinToken` does.
pub fn parse_token(token: &str) -> Result<JoinToken, String> {
    let parts: Vec<&str> = token.split('-').collect();
    if parts.len() != 4 || parts[0] != "SWMTKN" || parts[1] != "1" || parts[3].len() != 25 {
        return Err(INVALID_TOKEN.into());
    }
    let digest = from_base36(parts[2]).ok_or_else(|| INVALID_TOKEN.to_string())?;
    Ok(JoinToken {
        ca_digest_hex: hex::encode(digest),
        token: token.to_string(),
    })
}

/// Checks a fetched CA against the token's digest, with swarmkit's message.
pub fn check_ca(token: &JoinToken, ca_pem: &str) -> Result<(), String> {
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| format!("invalid root CA from the manager: {e}"))?;
    let digest = hex::encode(Sha256::digest(der.as_ref()));
    if digest != token.ca_digest_hex {
        return Err(format!(
            "remote CA does not match fingerprint. Expected: {}",
            token.ca_digest_hex
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_ca_and_certificates_chain_to_it() {
        let ca = crate::ca::new_root_ca().unwrap();
        let token = parse_token(&crate::ca::join_token(&ca)).unwrap();
        assert_eq!(format!("sha256:{}", token.ca_digest_hex), ca.digest);
        check_ca(&token, &ca.cert_pem).unwrap();
        let other = crate::ca::new_root_ca().unwrap();
        let err = check_ca(&token, &other.cert_pem).unwrap_err();
        assert!(err.starts_with("remote CA does not match fingerprint. Expected: "));
        assert_eq!(parse_token("SWMTKN-1-abc").unwrap_err(), INVALID_TOKEN);
        let id = issue(&ca, "cluster1", "node1abc", "worker").unwrap();
        // The certificate verifies against the CA for its role and node ID.
        let der = CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap();
        let ee = webpki::EndEntityCert::try_from(&der).unwrap();
        let name = rustls::pki_types::ServerName::try_from("swarm-worker").unwrap();
        ee.verify_is_valid_for_subject_name(&name).unwrap();
        let name = rustls::pki_types::ServerName::try_from("swarm-manager").unwrap();
        assert!(ee.verify_is_valid_for_subject_name(&name).is_err());
        crate::transport::server_config(&ca.cert_pem, &id.cert_pem, &id.key_pem).unwrap();
    }
}
