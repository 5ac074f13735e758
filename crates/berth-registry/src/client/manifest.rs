//! Manifest kinds (Docker schema 2 manifest and list, OCI manifest and index, schema 1 to
//! refuse) and platform selection in an index, as Docker does it.

use berth_image::Digest;
use serde::Deserialize;

use super::{Descriptor, RegistryError, Result};

pub mod media_types {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

    /// What a pull accepts, best first. Schema 1 is accepted only to refuse it with Docker's
    /// message instead of a registry's "manifest unknown".
    pub const ACCEPT: &[&str] = &[
        OCI_INDEX,
        DOCKER_LIST,
        OCI_MANIFEST,
        DOCKER_MANIFEST,
        SCHEMA1_SIGNED,
        SCHEMA1,
    ];
}

/// An OS/architecture/variant triple (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// The host's platform, in Go's (and so Docker's) architecture names.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os[/arch[/variant]]`, normalising as containerd's `platforms.Parse` does for
    /// the usual aliases (`x86_64` → `amd64`, `aarch64` → `arm64`).
    pub fn parse(text: &str) -> Result<Platform> {
        let invalid = || {
            RegistryError::Invalid(format!(
                "\"{text}\": unknown operating system or architecture: invalid argument"
            ))
        };
        let mut parts = text.split('/');
        let os = parts.next().filter(|s| !s.is_empty()).ok_or_else(invalid)?;
        let host = Platform::host();
        let architecture = parts.next().unwrap_or(&host.architecture);
        let variant = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return Err(invalid());
        }
        let (architecture, variant) = match (architecture, variant) {
            ("x86_64" | "x86-64" | "amd64", _) => ("amd64", None),
            ("aarch64" | "arm64", v) => ("arm64", v.filter(|v| v != "v8")),
            ("armhf", _) => ("arm", Some("v7".to_string())),
            ("armel", _) => ("arm", Some("v6".to_string())),
            (a, v) => (a, v),
        };
        Ok(Platform {
            os: os.to_lowercase(),
            architecture: architecture.to_string(),
            variant,
        })
    }

    /// Whether an index entry for `entry` serves this platform. A missing variant on either
    /// side matches any (arm64's `v8` is its default and counts as none).
    pub fn matches(&self, entry: &Platform) -> bool {
        let norm = |p: &Platform| {
            let v = p.variant.clone().filter(|v| !v.is_empty());
            if p.architecture == "arm64" {
                v.filter(|v| v != "v8")
            } else {
                v
            }
        };
        if self.os != entry.os || self.architecture != entry.architecture {
            return false;
        }
        match (norm(self), norm(entry)) {
            (Some(a), Some(b)) => a == b,
            // Wanted a plain arm64/amd64 etc.: any variant will do; wanted a variant: the
            // entry must name it (except arm64's default).
            (None, _) => true,
            (Some(_), None) => false,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<Platform>,
}

impl RawDescriptor {
    fn descriptor(&self) -> Result<Descriptor> {
        Ok(Descriptor {
            media_type: self.media_type.clone(),
            digest: Digest::parse(&self.digest)
                .map_err(|e| RegistryError::Invalid(format!("invalid descriptor: {e}")))?,
            size: u64::try_from(self.size).map_err(|_| {
                RegistryError::Invalid(format!("invalid size {} of {}", self.size, self.digest))
            })?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: i64,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
}

/// A manifest parsed enough to pull it.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// An image: its media type (from the body, else the kind), config and layers.
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// An index or manifest list: its entries and their platforms.
    Index(Vec<(Descriptor, Option<Platform>)>),
}

/// Docker's refusal of schema 1 (moby's `DeprecatedSchema1ImageError`; `reference` is the
/// full name, `docker.io/library/x:tag`).
pub(crate) fn schema1_refusal(reference: &str) -> RegistryError {
    RegistryError::Invalid(format!(
        "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. Suggest the author of {reference} to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/"
    ))
}

/// Parses a manifest body; `reference` (the full name) names it in errors.
pub(crate) fn parse(bytes: &[u8], reference: &str) -> Result<Parsed> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Invalid(format!("invalid manifest of {reference}: {e}")))?;
    let media_type = raw.media_type.clone().unwrap_or_default();
    if raw.schema_version == 1
        || media_type == media_types::SCHEMA1
        || media_type == media_types::SCHEMA1_SIGNED
    {
        return Err(schema1_refusal(reference));
    }
    if let Some(entries) = raw.manifests
        && (media_type.is_empty()
            || media_type == media_types::OCI_INDEX
            || media_type == media_types::DOCKER_LIST)
    {
        return entries
            .iter()
            .map(|e| Ok((e.descriptor()?, e.platform.clone())))
            .collect::<Result<Vec<_>>>()
            .map(Parsed::Index);
    }
    match (raw.config, raw.layers) {
        (Some(config), Some(layers))
            if media_type.is_empty()
                || media_type == media_types::OCI_MANIFEST
                || media_type == media_types::DOCKER_MANIFEST =>
        {
            Ok(Parsed::Image {
                media_type: if media_type.is_empty() {
                    media_types::OCI_MANIFEST.to_string()
                } else {
                    media_type
                },
                config: config.descriptor()?,
                layers: layers
                    .iter()
                    .map(RawDescriptor::descriptor)
                    .collect::<Result<_>>()?,
            })
        }
        _ => Err(RegistryError::Invalid(format!(
            "unsupported manifest media type for {reference}: {media_type:?}"
        ))),
    }
}

/// The entry of an index `platform` selects: the first that matches, as Docker's matcher
/// picks among equals. Entries without a platform are skipped (attestations and the like).
pub(crate) fn select<'a>(
    entries: &'a [(Descriptor, Option<Platform>)],
    platform: &Platform,
) -> Result<&'a Descriptor> {
    entries
        .iter()
        .find(|(_, p)| p.as_ref().is_some_and(|p| platform.matches(p)))
        .map(|(d, _)| d)
        .ok_or_else(|| {
            RegistryError::NotFound(format!(
                "no matching manifest for {platform} in the manifest list entries"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn parses_platforms_with_aliases() {
        assert_eq!(
            Platform::parse("linux/arm64").unwrap(),
            p("linux", "arm64", None)
        );
        assert_eq!(
            Platform::parse("linux/aarch64/v8").unwrap(),
            p("linux", "arm64", None)
        );
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap(),
            p("linux", "amd64", None)
        );
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap(),
            p("linux", "arm", Some("v7"))
        );
        assert!(Platform::parse("").is_err());
        assert!(Platform::parse("linux/arm/v7/x").is_err());
    }

    #[test]
    fn matches_variants_as_docker() {
        let want = p("linux", "arm64", None);
        assert!(want.matches(&p("linux", "arm64", Some("v8"))));
        assert!(!want.matches(&p("linux", "amd64", None)));
        assert!(p("linux", "arm", Some("v7")).matches(&p("linux", "arm", Some("v7"))));
        assert!(!p("linux", "arm", Some("v7")).matches(&p("linux", "arm", Some("v6"))));
        assert!(!p("linux", "arm", Some("v7")).matches(&p("linux", "arm", None)));
    }

    #[test]
    fn refuses_schema1_and_selects_in_an_index() {
        let err = parse(br#"{"schemaVersion":1,"name":"x"}"#, "r:1").unwrap_err();
        assert!(
            err.to_string()
                .contains("schema 1 support has been removed")
        );
        let d = |n: char| format!("sha256:{}", n.to_string().repeat(64));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
            {{"mediaType":"{}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{}","digest":"{}","size":2,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            media_types::OCI_INDEX,
            media_types::OCI_MANIFEST,
            d('a'),
            media_types::OCI_MANIFEST,
            d('b')
        );
        let Parsed::Index(entries) = parse(index.as_bytes(), "r").unwrap() else {
            panic!("not an index")
        };
        assert_eq!(
            select(&entries, &p("linux", "amd64", None))
                .unwrap()
                .digest
                .to_string(),
            d('b')
        );
        assert_eq!(
            select(&entries, &p("linux", "arm64", None)).unwrap().size,
            1
        );
        let err = select(&entries, &p("linux", "s390x", None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no matching manifest for linux/s390x in the manifest list entries"
        );
    }
}
