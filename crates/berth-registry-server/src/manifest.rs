//! What the registry reads from a manifest: the blobs and manifests it references (which must
//! exist before it is accepted, and which garbage collection keeps), its `subject` (the
//! referrers API) and the fields of its referrer descriptor. The bytes are stored as sent.

use serde_json::Value;

use crate::digest::Digest;
use crate::error::{RegistryError, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest's references, parsed at the edge.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The media type: `Content-Type` as sent, else the `mediaType` field.
    pub media_type: String,
    pub blobs: Vec<Digest>,
    pub manifests: Vec<Digest>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: Option<Value>,
}

fn descriptor_digest(d: &Value, field: &str) -> Result<Digest> {
    let s = d
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| RegistryError::ManifestInvalid(format!("{field} has no digest")))?;
    Digest::parse(s)
        .map_err(|_| RegistryError::ManifestInvalid(format!("{field} digest {s:?} is malformed")))
}

/// Layers that live elsewhere (Windows base layers) are referenced by URL, not stored.
fn is_foreign(d: &Value) -> bool {
    d.get("urls")
        .and_then(Value::as_array)
        .is_some_and(|u| !u.is_empty())
        && d.get("mediaType")
            .and_then(Value::as_str)
            .is_some_and(|m| m.contains("foreign") || m.contains("nondistributable"))
}

pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::ManifestInvalid(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| RegistryError::ManifestInvalid("not a JSON object".into()))?;
    let field_type = obj.get("mediaType").and_then(Value::as_str);
    let media_type = content_type
        .filter(|c| !c.is_empty() && *c != "application/octet-stream")
        .or(field_type)
        .unwrap_or(OCI_MANIFEST)
        .to_string();
    if let (Some(field), Some(sent)) = (field_type, content_type)
        && sent != field
        && sent.contains("manifest")
    {
        return Err(RegistryError::ManifestInvalid(format!(
            "mediaType {field:?} differs from Content-Type {sent:?}"
        )));
    }
    match obj.get("schemaVersion").and_then(Value::as_i64) {
        Some(2) => {}
        other => {
            return Err(RegistryError::ManifestInvalid(format!(
                "schemaVersion {other:?} is not supported (2 only)"
            )));
        }
    }
    let mut parsed = Parsed {
        media_type,
        artifact_type: obj
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_string),
        annotations: obj.get("annotations").cloned(),
        ..Parsed::default()
    };
    if let Some(manifests) = obj.get("manifests") {
        let list = manifests
            .as_array()
            .ok_or_else(|| RegistryError::ManifestInvalid("manifests is not a list".into()))?;
        for m in list {
            parsed.manifests.push(descriptor_digest(m, "manifests[]")?);
        }
    } else {
        if let Some(config) = obj.get("config") {
            parsed.blobs.push(descriptor_digest(config, "config")?);
            if parsed.artifact_type.is_none() {
                parsed.artifact_type = config
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
        for field in ["layers", "blobs"] {
            if let Some(list) = obj.get(field) {
                let list = list.as_array().ok_or_else(|| {
                    RegistryError::ManifestInvalid(format!("{field} is not a list"))
                })?;
                for l in list.iter().filter(|l| !is_foreign(l)) {
                    parsed.blobs.push(descriptor_digest(l, field)?);
                }
            }
        }
    }
    if let Some(subject) = obj.get("subject") {
        parsed.subject = Some(descriptor_digest(subject, "subject")?);
    }
    Ok(parsed)
}

/// The descriptor of a referrer, as the referrers API lists it.
pub fn referrer_descriptor(parsed: &Parsed, digest: &Digest, size: usize) -> Value {
    let mut d = serde_json::json!({
        "mediaType": parsed.media_type,
        "digest": digest.to_string(),
        "size": size,
    });
    if let Some(a) = &parsed.artifact_type {
        d["artifactType"] = Value::String(a.clone());
    }
    if let Some(a) = &parsed.annotations {
        d["annotations"] = a.clone();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_an_image_an_index_and_an_artifact() {
        let a = Digest::of(crate::digest::Algorithm::Sha256, b"a").to_string();
        let b = Digest::of(crate::digest::Algorithm::Sha512, b"b").to_string();
        let img = serde_json::json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,
            "config":{"mediaType":"application/vnd.example+json","digest":a,"size":1},
            "layers":[{"digest":b,"size":1},
                {"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":a,"size":1,"urls":["http://x"]}],
            "subject":{"digest":a,"size":1}});
        let p = parse(img.to_string().as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.subject.unwrap().to_string(), a);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.example+json")
        );
        let idx = serde_json::json!({"schemaVersion":2,"manifests":[{"digest":a,"size":1}]});
        let p = parse(idx.to_string().as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(p.manifests.len(), 1);
        assert_eq!(p.media_type, OCI_INDEX);
        assert!(parse(b"[]", None).is_err());
        assert!(parse(b"{\"schemaVersion\":1}", None).is_err());
        let bad = serde_json::json!({"schemaVersion":2,"layers":[{"digest":"sha256:zz"}]});
        assert!(parse(bad.to_string().as_bytes(), None).is_err());
    }
}
