//! Certificate renewal and root CA rotation, as swarmkit does them.
//!
//! Renewal: every node renews its certificate at a random point between 50 % and 80 % of its
//! lifetime ([`crate::certs::renew_delay`]); a new `--cert-expiry` applies from the next
//! renewal. Managers issue their own (every manager holds the CA key in the replicated
//! store); workers ask a manager ([`crate::transport::Request::Renew`]).
//!
//! Rotation (`swarm ca --rotate`, `CAConfig.ForceRotate` / `SigningCACert` + `SigningCAKey`):
//! 1. the update makes a new root (or takes the given pair) and cross-signs it with the current
//!    root ([`cross_sign`]): same subject and key as the new root, issued by the old one;
//! 2. while the rotation is on, every certificate is signed by the new key and sent with the
//!    cross-signed certificate as its chain, so nodes that still trust only the old root accept
//!    it; nodes see that their issuer is not the wanted one and renew at once;
//! 3. once every node that is not down reports (its `Description.TLSInfo`) a certificate from
//!    the new key, the leader makes the new root the cluster's root and new join tokens name
//!    its digest ([`finish_if_converged`]); nodes then trust only the new root.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::Proposer;
use crate::certs::{self, LiveTls};
use crate::pki::Identity;
use crate::store::{Command, Op, Store};
use crate::transport::{Answer, CallError, Client, Peer, RemoteError, Request};
use crate::types::{Cluster, Object, RootCa, RootRotation};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A certificate's subject as rcgen builds names, string types kept (a child's issuer name
/// must equal its issuer's subject byte for byte).
pub fn distinguished_name(cert_pem: &str) -> anyhow::Result<rcgen::DistinguishedName> {
    let info = certs::pem_info(cert_pem)?;
    let entries = yasna::parse_der(&info.subject, |r| {
        r.collect_sequence_of(|r| {
            r.collect_set_of(|r| {
                r.read_sequence(|r| {
                    let oid = r.next().read_oid()?;
                    let raw = r.next().read_der()?;
                    Ok((oid.components().to_vec(), raw))
                })
            })
        })
    })
    .map_err(|e| anyhow::anyhow!("reading a certificate subject: {e}"))?;
    let mut dn = rcgen::DistinguishedName::new();
    for (oid, raw) in entries.into_iter().flatten() {
        let (tag, body) = split_tlv(&raw)?;
        let text = String::from_utf8_lossy(body).into_owned();
        let value = match tag {
            0x13 => rcgen::PrintableString::try_from(text.clone())
                .map(rcgen::DnValue::PrintableString)
                .unwrap_or(rcgen::DnValue::Utf8String(text)),
            0x16 => rcgen::Ia5String::try_from(text.clone())
                .map(rcgen::DnValue::Ia5String)
                .unwrap_or(rcgen::DnValue::Utf8String(text)),
            _ => rcgen::DnValue::Utf8String(text),
        };
        dn.push(rcgen::DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// A DER element's tag and contents.
fn split_tlv(raw: &[u8]) -> anyhow::Result<(u8, &[u8])> {
    let bad = || anyhow::anyhow!("malformed DER element");
    let tag = *raw.first().ok_or_else(bad)?;
    let first = *raw.get(1).ok_or_else(bad)?;
    let start = if first < 0x80 {
        2
    } else {
        2 + usize::from(first & 0x7f)
    };
    Ok((tag, raw.get(start..).ok_or_else(bad)?))
}

/// The CA as an issuer for rcgen: its subject and key (rcgen needs a certificate object to
/// sign with; what a child names and is verified by is the subject and the key).
pub fn issuer(ca: &RootCa) -> anyhow::Result<(rcgen::Certificate, rcgen::KeyPair)> {
    let key = rcgen::KeyPair::from_pem(&ca.key_pem)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name = distinguished_name(&ca.cert_pem)?;
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok((cert, key))
}

/// The new root's certificate as issued by the old root: same subject and key as `new`, so
/// a certificate `new` signs chains through it to `old`.
pub fn cross_sign(old: &RootCa, new: &RootCa) -> anyhow::Result<String> {
    let (old_cert, old_key) = issuer(old)?;
    let new_key = rcgen::KeyPair::from_pem(&new.key_pem)?;
    let info = certs::pem_info(&new.cert_pem)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name = distinguished_name(&new.cert_pem)?;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::OffsetDateTime::now_utc() - Duration::from_secs(3600);
    params.not_after = info.not_after;
    Ok(params.signed_by(&new_key, &old_cert, &old_key)?.pem())
}

/// A root from a user's certificate and key (`swarm ca --ca-cert --ca-key`), checked as
/// swarmkit's `NewRootCA` and `validateCAConfig` do, with their texts.
pub fn root_from_pair(cert_pem: &str, key_pem: &str) -> Result<RootCa, String> {
    let certs = certs::pem_certs(cert_pem).unwrap_or_default();
    let Some(first) = certs.first() else {
        return Err("no valid root CA certificates found".into());
    };
    if certs.len() > 1 {
        return Err("the desired CA certificate cannot contain multiple certificates".into());
    }
    let info = certs::parse_cert(first)
        .map_err(|_| "could not parse the desired CA certificate".to_string())?;
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|_| "malformed private key".to_string())?;
    if key.public_key_der() != info.spki {
        return Err("certificate key mismatch".into());
    }
    // swarmkit's `minRootExpiration`.
    if info.not_after < time::OffsetDateTime::now_utc() + time::Duration::days(365) {
        return Err("CA certificate expires too soon".into());
    }
    use sha2::{Digest, Sha256};
    Ok(RootCa {
        cert_pem: pem_of(first),
        key_pem: key_pem.to_string(),
        digest: format!("sha256:{}", hex::encode(Sha256::digest(first.as_ref()))),
    })
}

fn pem_of(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn same_cert(a: &str, b: &str) -> bool {
    match (certs::pem_certs(a), certs::pem_certs(b)) {
        (Ok(a), Ok(b)) => !a.is_empty() && a == b,
        _ => false,
    }
}

fn start(cluster: &mut Cluster, new: RootCa) -> Result<(), String> {
    let cross = cross_sign(&cluster.root_ca, &new).map_err(|e| {
        tracing::error!(error = %e, "cross-signing the new root");
        "unable to generate a cross-signed certificate for root rotation".to_string()
    })?;
    cluster.root_rotation = Some(RootRotation {
        ca: new,
        cross_signed_pem: cross,
    });
    Ok(())
}

/// Applies a new spec's `CAConfig` (already in `cluster.spec`) as swarmkit's
/// `validateCAConfig`: maybe starts, replaces or aborts a root rotation. The signing key never
/// stays in the spec. Errors are swarmkit's (InvalidArgument) texts.
pub fn apply_ca_config(cluster: &mut Cluster) -> Result<(), String> {
    let cfg = cluster.spec["CAConfig"].clone();
    if let Some(o) = cluster.spec["CAConfig"].as_object_mut() {
        o.remove("SigningCAKey");
    }
    let cert = cfg["SigningCACert"].as_str().unwrap_or_default().trim();
    let key = cfg["SigningCAKey"].as_str().unwrap_or_default();
    let force = cfg["ForceRotate"].as_u64().unwrap_or(0);
    if !cfg["ExternalCAs"].as_array().is_none_or(|a| a.is_empty()) {
        return Err("external CAs are not supported by this engine".into());
    }
    if !key.is_empty() && cert.is_empty() {
        return Err(
            "if a signing CA key is provided, the signing CA cert must also be provided".into(),
        );
    }
    if cert.is_empty() {
        if force != cluster.last_forced_rotation {
            let new = crate::ca::new_root_ca().map_err(|e| e.to_string())?;
            start(cluster, new)?;
            cluster.last_forced_rotation = force;
        }
        return Ok(());
    }
    let rotating_to = cluster
        .root_rotation
        .as_ref()
        .map(|r| r.ca.cert_pem.clone());
    if key.is_empty() {
        // Without a key only the current certificates may be named (an external CA would
        // sign for any other).
        if same_cert(cert, &cluster.root_ca.cert_pem)
            || rotating_to.as_deref().is_some_and(|r| same_cert(cert, r))
        {
            return Ok(());
        }
        return Err("there must be at least one valid, reachable external CA corresponding to the desired CA certificate".into());
    }
    let new = root_from_pair(cert, key)?;
    if same_cert(cert, &cluster.root_ca.cert_pem) {
        cluster.root_ca.key_pem = new.key_pem;
        cluster.root_rotation = None;
        cluster.last_forced_rotation = force;
        return Ok(());
    }
    if key.trim() == cluster.root_ca.key_pem.trim() {
        return Err("Cannot update to a cert with an identical key".into());
    }
    if let Some(r) = cluster.root_rotation.as_mut()
        && same_cert(cert, &r.ca.cert_pem)
    {
        r.ca.key_pem = new.key_pem;
        cluster.last_forced_rotation = force;
        return Ok(());
    }
    start(cluster, new)?;
    cluster.last_forced_rotation = force;
    Ok(())
}

/// The key of the CA that signs node certificates now (the rotation's new root while one is
/// on), base64 of its SubjectPublicKeyInfo.
pub fn signer_key(cluster: &Cluster) -> String {
    let pem = cluster
        .root_rotation
        .as_ref()
        .map(|r| r.ca.cert_pem.as_str())
        .unwrap_or(&cluster.root_ca.cert_pem);
    certs::pem_info(pem)
        .map(|i| b64(&i.spki))
        .unwrap_or_default()
}

/// On the leader: once every node that is not down has a certificate from the rotation's
/// root, that root becomes the cluster's, with new join tokens (swarmkit's
/// `finishRootRotation`).
pub async fn finish_if_converged(store: &Store, proposer: &dyn Proposer) {
    let Some(cluster) = store.view(|s| s.cluster().cloned()) else {
        return;
    };
    let Some(rotation) = cluster.root_rotation.clone() else {
        return;
    };
    let want = signer_key(&cluster);
    let converged = store.view(|s| {
        s.nodes
            .values()
            .filter(|n| n.status.state != "down")
            .all(|n| n.description["TLSInfo"]["CertIssuerPublicKey"] == want.as_str())
    });
    if !converged {
        return;
    }
    let mut next = cluster.clone();
    next.root_ca = rotation.ca;
    next.root_rotation = None;
    next.join_tokens.worker = crate::ca::join_token(&next.root_ca);
    next.join_tokens.manager = crate::ca::join_token(&next.root_ca);
    next.meta.updated_at = crate::types::now();
    let expect = Some(cluster.meta.version.index);
    match proposer
        .propose(Command::one(Op::Update {
            object: Object::Cluster(next),
            expect,
        }))
        .await
    {
        Ok(()) => tracing::info!("root CA rotation complete"),
        Err(e) => tracing::debug!(error = %e, "finishing the root rotation"),
    }
}

/// What a worker learns of the CA with its assignments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CaState {
    /// The root nodes should trust (PEM).
    pub trust_root: String,
    /// [`signer_key`]: a certificate from another key must be renewed.
    pub signer_key: String,
}

impl CaState {
    pub fn of(cluster: &Cluster) -> CaState {
        CaState {
            trust_root: cluster.root_ca.cert_pem.clone(),
            signer_key: signer_key(cluster),
        }
    }
}

/// A node asking for a new certificate (renewal, or a rotation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    pub node_id: String,
}

/// On a manager: a new certificate for the node the caller's certificate names, in the role
/// that certificate holds (role changes go through promotion and demotion).
pub fn handle_renew(store: &Store, peer: &Peer, req: &RenewRequest) -> Answer {
    peer.authorize(&req.node_id, None)?;
    let (cluster, node) =
        store.view(|s| (s.cluster().cloned(), s.nodes.get(&req.node_id).cloned()));
    let Some(cluster) = cluster else {
        return Err(RemoteError::new("unavailable", "no cluster yet"));
    };
    if node.is_none() {
        return Err(RemoteError::new(
            "removed",
            "node is no longer part of the swarm (it was removed)",
        ));
    }
    let role = if peer.is_manager() {
        "manager"
    } else {
        "worker"
    };
    let identity = crate::pki::issue_for(&cluster, &req.node_id, role)
        .map_err(|e| RemoteError::new("internal", format!("issuing a certificate: {e:#}")))?;
    serde_json::to_value(identity).map_err(|e| RemoteError::new("internal", e.to_string()))
}

/// What a node does next with its certificate.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// A new certificate (due, or not from the wanted signer).
    Renew,
    /// Trust the cluster's root (a rotation finished).
    Trust(String),
    Nothing,
}

/// Decides, from the node's identity and what the cluster wants.
pub fn step(identity: &Identity, ca: &CaState, due: bool) -> Step {
    let issuer = certs::issuer_of(identity)
        .map(|(_, k)| b64(&k))
        .unwrap_or_default();
    if due || (!ca.signer_key.is_empty() && issuer != ca.signer_key) {
        return Step::Renew;
    }
    if !ca.trust_root.is_empty() && !same_cert(&identity.ca_pem, &ca.trust_root) {
        return Step::Trust(ca.trust_root.clone());
    }
    Step::Nothing
}

/// Keeps the Raft data key and the rest of this node's state across a new certificate.
fn renewed(old: &Identity, mut new: Identity) -> Identity {
    new.data_key = old.data_key.clone();
    new
}

/// A manager's side: renews its own certificate, follows the cluster's root, and shows its
/// `TLSInfo` in its node object. Runs until `stop`.
pub async fn follow(
    dir: PathBuf,
    node_id: String,
    proposer: Arc<dyn Proposer>,
    peers: Arc<crate::raft_network::Peers>,
    stop: CancellationToken,
) {
    let mut next: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Some(live) = certs::live(&dir) else {
            continue;
        };
        let Some(id) = live.identity() else {
            continue;
        };
        let store = proposer.store();
        let Some(cluster) = store.view(|s| s.cluster().cloned()) else {
            continue;
        };
        let due_at = *next.get_or_insert_with(|| Instant::now() + certs::next_renewal(&id));
        let changed = match step(&id, &CaState::of(&cluster), Instant::now() >= due_at) {
            Step::Renew => match crate::pki::issue_for(&cluster, &id.node_id, &id.role) {
                Ok(new) => {
                    let new = renewed(&id, new);
                    next = Some(Instant::now() + certs::next_renewal(&new));
                    Some(new)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing this manager's certificate");
                    None
                }
            },
            Step::Trust(root) => Some(Identity {
                ca_pem: root,
                ..id.clone()
            }),
            Step::Nothing => None,
        };
        if let Some(new) = changed {
            match certs::install(&dir, &new) {
                Ok(_) => {
                    tracing::info!(node = %node_id, "new TLS certificate or root in use");
                    peers.reset();
                }
                Err(e) => tracing::warn!(error = %e, "saving the renewed certificate"),
            }
        }
        show_tls_info(&live, &node_id, proposer.as_ref()).await;
    }
}

/// Writes this manager's `Description.TLSInfo` when it changed.
async fn show_tls_info(live: &LiveTls, node_id: &str, proposer: &dyn Proposer) {
    let Some(id) = live.identity() else {
        return;
    };
    let info = certs::node_tls_info(&id);
    let Some(mut node) = proposer
        .store()
        .view(|s| s.nodes.get(node_id).map(|n| crate::types::Node::clone(n)))
    else {
        return;
    };
    if node.description["TLSInfo"] == info || !node.description.is_object() {
        return;
    }
    node.description["TLSInfo"] = info;
    let expect = Some(node.meta.version.index);
    let _ = proposer
        .propose(Command::one(Op::Update {
            object: Object::Node(node),
            expect,
        }))
        .await;
}

/// A worker's side, after each answered session call: renews through the manager at `addr`
/// or takes the new root. Answers whether the identity changed (kept connections must go).
pub async fn worker_follow(
    dir: &std::path::Path,
    live: &LiveTls,
    client: &Client,
    addr: &str,
    ca: &CaState,
    next: &mut Option<Instant>,
) -> bool {
    let Some(id) = live.identity() else {
        return false;
    };
    let due_at = *next.get_or_insert_with(|| Instant::now() + certs::next_renewal(&id));
    let new = match step(&id, ca, Instant::now() >= due_at) {
        Step::Renew => {
            let req = Request::Renew(RenewRequest {
                node_id: id.node_id.clone(),
            });
            match crate::transport::call_as::<Identity>(client, addr, &req, Duration::from_secs(10))
                .await
            {
                Ok(new) => {
                    *next = Some(Instant::now() + certs::next_renewal(&new));
                    renewed(&id, new)
                }
                Err(e) => {
                    if !matches!(e, CallError::Remote(ref r) if r.kind == "removed") {
                        tracing::warn!(error = %e, "renewing this node's certificate");
                    }
                    *next = Some(Instant::now() + Duration::from_secs(5));
                    return false;
                }
            }
        }
        Step::Trust(root) => Identity { ca_pem: root, ..id },
        Step::Nothing => return false,
    };
    match certs::install(dir, &new) {
        Ok(_) => {
            tracing::info!(node = %new.node_id, "new TLS certificate or root in use");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "saving the renewed certificate");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    fn verifies(root_pem: &str, id: &Identity) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs::pem_certs(root_pem).unwrap() {
            roots.add(c).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let chain: Vec<CertificateDer<'static>> = certs::pem_certs(&id.cert_pem).unwrap();
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(id.role_name()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_ok()
    }

    fn cluster() -> Cluster {
        Cluster {
            meta: crate::types::Meta::new("c1".into()),
            root_ca: crate::ca::new_root_ca().unwrap(),
            spec: serde_json::json!({"CAConfig": {}}),
            ..Default::default()
        }
    }

    #[test]
    fn rotation_cross_signs_so_old_and_new_roots_both_verify_until_it_ends() {
        let mut c = cluster();
        let old_root = c.root_ca.cert_pem.clone();
        let before = crate::pki::issue_for(&c, "n1", "worker").unwrap();
        // Same ForceRotate: nothing happens.
        apply_ca_config(&mut c).unwrap();
        assert!(c.root_rotation.is_none());
        c.spec["CAConfig"]["ForceRotate"] = 1.into();
        apply_ca_config(&mut c).unwrap();
        let rotation = c.root_rotation.clone().expect("rotation started");
        assert_eq!(c.last_forced_rotation, 1);
        // During: certificates from the new key, chained to the old root.
        let during = crate::pki::issue_for(&c, "n1", "worker").unwrap();
        assert_eq!(during.ca_pem, old_root);
        assert!(
            verifies(&old_root, &during),
            "cross-signed chain to the old root"
        );
        assert!(
            verifies(&rotation.ca.cert_pem, &during),
            "and to the new root"
        );
        assert!(verifies(&old_root, &before));
        assert!(
            !verifies(&rotation.ca.cert_pem, &before),
            "old leaf not under the new root"
        );
        let ca = CaState::of(&c);
        assert_eq!(step(&before, &ca, false), Step::Renew);
        assert_eq!(step(&during, &ca, false), Step::Nothing);
        assert_eq!(step(&during, &ca, true), Step::Renew);
        // After: the new root alone.
        c.root_ca = rotation.ca.clone();
        c.root_rotation = None;
        let ca = CaState::of(&c);
        assert_eq!(
            step(&during, &ca, false),
            Step::Trust(rotation.ca.cert_pem.clone())
        );
        let after = crate::pki::issue_for(&c, "n1", "worker").unwrap();
        assert!(verifies(&rotation.ca.cert_pem, &after));
        assert!(!verifies(&old_root, &after));
    }

    #[test]
    fn a_given_pair_must_match_with_swarmkit_texts() {
        let mut c = cluster();
        let a = crate::ca::new_root_ca().unwrap();
        let b = crate::ca::new_root_ca().unwrap();
        c.spec["CAConfig"]["SigningCACert"] = a.cert_pem.clone().into();
        c.spec["CAConfig"]["SigningCAKey"] = b.key_pem.clone().into();
        assert_eq!(
            apply_ca_config(&mut c).unwrap_err(),
            "certificate key mismatch"
        );
        c.spec["CAConfig"]["SigningCAKey"] = "nope".into();
        assert_eq!(
            apply_ca_config(&mut c).unwrap_err(),
            "malformed private key"
        );
        c.spec["CAConfig"]["SigningCAKey"] = a.key_pem.clone().into();
        apply_ca_config(&mut c).unwrap();
        assert!(
            c.spec["CAConfig"].get("SigningCAKey").is_none(),
            "key not kept"
        );
        let r = c.root_rotation.clone().unwrap();
        assert!(same_cert(&r.ca.cert_pem, &a.cert_pem));
        // The same certificate again (as `swarm update` sends the spec back): no new rotation.
        apply_ca_config(&mut c).unwrap();
        assert_eq!(
            c.root_rotation.as_ref().unwrap().cross_signed_pem,
            r.cross_signed_pem
        );
        // A foreign subject survives issuing (names compared byte for byte).
        let dn = distinguished_name(&a.cert_pem).unwrap();
        assert!(format!("{dn:?}").contains("swarm-ca"));
    }
}
