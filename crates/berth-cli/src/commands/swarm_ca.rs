//! `swarm ca`: shows the cluster's root CA, or rotates it (`--rotate`, optionally to a given
//! `--ca-cert`/`--ca-key`) and follows the rotation as the docker CLI does: it polls `/swarm`
//! and `/nodes` until every node has a certificate from the new root and trusts it.

use std::collections::BTreeMap;

use anyhow::Result;
use berth_client::Query;
use clap::Args;
use http::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Env;
use super::swarm::call;
use crate::output;

#[derive(Debug, Args)]
pub struct CaArgs {
    /// Path to the PEM-formatted root CA certificate to use for the new cluster
    #[arg(long, value_name = "pem-file")]
    pub ca_cert: Option<String>,
    /// Path to the PEM-formatted root CA key to use for the new cluster
    #[arg(long, value_name = "pem-file")]
    pub ca_key: Option<String>,
    /// Validity period for node certificates (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub cert_expiry: Option<String>,
    /// Specifications of one or more certificate signing endpoints
    #[arg(long, value_name = "external-ca")]
    pub external_ca: Vec<String>,
    /// Exit immediately instead of waiting for the root rotation to converge
    #[arg(short, long)]
    pub detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    pub quiet: bool,
    /// Rotate the swarm CA - if no certificate or key are provided, new ones will be generated
    #[arg(long)]
    pub rotate: bool,
}

/// A `pem-file` flag's contents, with the docker CLI's check.
fn pem_file(flag: &str, path: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("invalid argument \"{path}\" for \"--{flag}\" flag: {e}"))?;
    if !text.contains("-----BEGIN ") {
        anyhow::bail!(
            "invalid argument \"{path}\" for \"--{flag}\" flag: file contents must be in PEM format"
        );
    }
    Ok(text)
}

fn display_trust_root(swarm: &Value) -> Result<()> {
    let root = swarm["TLSInfo"]["TrustRoot"].as_str().unwrap_or_default();
    if root.is_empty() {
        anyhow::bail!("No CA information available");
    }
    output::out(&format!("{}\n", root.trim()));
    Ok(())
}

pub async fn run(env: &Env, a: CaArgs) -> Result<()> {
    let swarm = call(env, Method::GET, "/swarm", &Query::new(), None).await?;
    if !a.rotate {
        for (flag, set) in [
            ("ca-cert", a.ca_cert.is_some()),
            ("ca-key", a.ca_key.is_some()),
            ("cert-expiry", a.cert_expiry.is_some()),
            ("external-ca", !a.external_ca.is_empty()),
        ] {
            if set {
                anyhow::bail!("`--{flag}` flag requires the `--rotate` flag to update the CA");
            }
        }
        return display_trust_root(&swarm);
    }
    if !a.external_ca.is_empty() {
        anyhow::bail!("external CAs are not supported by berth");
    }
    if a.ca_cert.is_some() && a.ca_key.is_none() {
        anyhow::bail!(
            "the --ca-cert flag requires that a --ca-key flag and/or --external-ca flag be provided as well"
        );
    }
    let cert = a
        .ca_cert
        .as_deref()
        .map(|p| pem_file("ca-cert", p))
        .transpose()?;
    let key = a
        .ca_key
        .as_deref()
        .map(|p| pem_file("ca-key", p))
        .transpose()?;
    let mut spec = swarm["Spec"].clone();
    if let Some(expiry) = &a.cert_expiry {
        let nanos = berth_api::duration::parse_go_duration(expiry).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid argument \"{expiry}\" for \"--cert-expiry\" flag: time: invalid duration \"{expiry}\""
            )
        })?;
        spec["CAConfig"]["NodeCertExpiry"] = json!(nanos);
    }
    let cert = cert.unwrap_or_default();
    let key = key.unwrap_or_default();
    if cert.is_empty() && key.is_empty() {
        let force = spec["CAConfig"]["ForceRotate"].as_u64().unwrap_or(0);
        spec["CAConfig"]["ForceRotate"] = json!(force + 1);
    }
    spec["CAConfig"]["SigningCACert"] = json!(cert);
    spec["CAConfig"]["SigningCAKey"] = json!(key);
    let mut q = Query::new();
    q.push("version", swarm["Version"]["Index"].to_string());
    call(env, Method::POST, "/swarm/update", &q, Some(&spec)).await?;
    if a.detach {
        return Ok(());
    }
    follow(env, a.quiet).await?;
    if a.quiet {
        // The docker CLI prints nothing at all with `-q`, not even the new root.
        return Ok(());
    }
    let swarm = call(env, Method::GET, "/swarm", &Query::new(), None).await?;
    display_trust_root(&swarm)
}

/// Polls until the rotation converged (docker's `RootRotationProgress`): every node's
/// certificate issued by the cluster's root, and every node trusting it.
async fn follow(env: &Env, quiet: bool) -> Result<()> {
    let mut shown = BTreeMap::new();
    loop {
        let swarm = call(env, Method::GET, "/swarm", &Query::new(), None).await?;
        let nodes = call(env, Method::GET, "/nodes", &Query::new(), None).await?;
        let want = &swarm["TLSInfo"];
        let root = want["TrustRoot"].as_str().unwrap_or_default();
        let nodes = nodes.as_array().cloned().unwrap_or_default();
        let total = nodes.len();
        let certs = nodes
            .iter()
            .filter(|n| {
                let t = &n["Description"]["TLSInfo"];
                t["CertIssuerPublicKey"] == want["CertIssuerPublicKey"]
                    && t["CertIssuerSubject"] == want["CertIssuerSubject"]
            })
            .count();
        let roots = nodes
            .iter()
            .filter(|n| n["Description"]["TLSInfo"]["TrustRoot"] == root)
            .count();
        let in_progress = swarm["RootRotationInProgress"] == true;
        let roots_shown = if certs == total && !in_progress {
            roots
        } else {
            0
        };
        let lines = [
            (
                "desired root digest",
                format!("sha256:{}", hex::encode(Sha256::digest(root.as_bytes()))),
            ),
            (
                "  rotated TLS certificates",
                format!("[{certs}/{total} nodes]"),
            ),
            (
                "  rotated CA certificates",
                format!(" [{roots_shown}/{total} nodes]"),
            ),
        ];
        if !quiet {
            for (id, text) in lines {
                if shown.get(id) != Some(&text) {
                    output::out(&format!("{id}: {text}\n"));
                    shown.insert(id, text);
                }
            }
        }
        if certs == total && !in_progress && roots == total {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
