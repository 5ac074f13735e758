//! Image references, parsed and normalised as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `host:5000/a/b:tag` keeps its registry, and
//! `name@sha256:<hex>` pins a manifest digest.

use std::fmt;

use crate::digest::{Digest, is_full_hex};
use crate::error::{ReferenceError, Result};

/// The registry Docker assumes when a name has none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag Docker assumes when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A normalised image reference: a domain, a path, and optionally a tag and/or a digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference the way the docker CLI does (Docker's `ParseNormalizedNamed`).
    pub fn parse_normalized(s: &str) -> Result<Reference> {
        if is_full_hex(s) {
            return Err(ReferenceError::InvalidReference(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (domain, remainder) = split_domain(s);
        // Docker reports uppercase in the repository part with a dedicated message.
        let remote_name = match remainder.find([':', '@']) {
            Some(i) => &remainder[..i],
            None => remainder.as_str(),
        };
        if remote_name.to_lowercase() != remote_name {
            return Err(ReferenceError::InvalidReference(format!(
                "invalid reference format: repository name ({remote_name}) must be lowercase"
            )));
        }
        let (name_part, digest) = match remainder.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|_| ReferenceError::invalid_reference())?),
            ),
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match name_part.rfind(':') {
            Some(i) if !name_part[i..].contains('/') => {
                (&name_part[..i], Some(name_part[i + 1..].to_string()))
            }
            _ => (name_part, None),
        };
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::invalid_reference());
        }
        if !valid_domain(&domain) || !valid_path(path) {
            return Err(ReferenceError::invalid_reference());
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::InvalidReference(format!(
                "invalid reference format: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
            )));
        }
        Ok(Reference {
            domain,
            path: path.to_string(),
            tag,
            digest,
        })
    }

    /// Parses a reference for tagging: a name with optional tag, never a digest; `latest` when
    /// no tag is given.
    pub fn parse_tag_target(s: &str) -> Result<Reference> {
        let r = Reference::parse_normalized(s)?;
        if r.digest.is_some() {
            return Err(ReferenceError::invalid_reference());
        }
        Ok(r.with_default_tag())
    }

    /// Adds the `latest` tag when the reference has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// The same repository pinned to a digest, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The repository without tag or digest.
    pub fn repository(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// The full repository name, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The registry host (and port).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The short name Docker shows, e.g. `busybox` or `myreg:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The short form with tag and digest, e.g. `busybox:latest` (what RepoTags shows).
    pub fn familiar_string(&self) -> String {
        self.render(self.familiar_name())
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    fn render(&self, mut out: String) -> String {
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(&d.to_string());
        }
        out
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(self.name()))
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse_normalized(s)
    }
}

/// Docker's `splitDockerDomain`: the first component is a registry only if it looks like a host
/// (has a `.` or `:`, or is `localhost`, and is not a lowercase-only word).
fn split_domain(name: &str) -> (String, String) {
    let (domain, mut remainder) = match name.find('/') {
        Some(i) => {
            let first = &name[..i];
            let looks_like_host =
                first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first;
            if looks_like_host {
                (first.to_string(), name[i + 1..].to_string())
            } else {
                (DEFAULT_DOMAIN.to_string(), name.to_string())
            }
        }
        None => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Path components: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`, joined by `/`.
fn valid_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(valid_path_component)
}

fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A host name (labels of `[a-zA-Z0-9-]`, not starting or ending with `-`) or a bracketed IPv6
/// address, with an optional numeric port.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, tail)) => {
                if addr.is_empty() || !addr.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
                    return false;
                }
                match tail {
                    "" => return true,
                    t => match t.strip_prefix(':') {
                        Some(p) => ("x", Some(p)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        let table: &[(&str, &str, &str)] = &[
            ("busybox", "docker.io/library/busybox", "busybox"),
            (
                "busybox:latest",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "library/busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "docker.io/library/busybox",
                "docker.io/library/busybox",
                "busybox",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox",
                "busybox",
            ),
            ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            (
                "host:5000/a/b:tag",
                "host:5000/a/b:tag",
                "host:5000/a/b:tag",
            ),
            ("localhost/x", "localhost/x", "localhost/x"),
            (
                "localhost:5000/x:1",
                "localhost:5000/x:1",
                "localhost:5000/x:1",
            ),
            (
                "quay.io/coreos/etcd",
                "quay.io/coreos/etcd",
                "quay.io/coreos/etcd",
            ),
            ("[::1]:5000/img:t", "[::1]:5000/img:t", "[::1]:5000/img:t"),
            (
                "a-b.c.d/e---f_g__h:T_1.x-y",
                "a-b.c.d/e---f_g__h:T_1.x-y",
                "a-b.c.d/e---f_g__h:T_1.x-y",
            ),
        ];
        for (input, full, familiar) in table {
            let r = Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *full, "{input}");
            assert_eq!(r.familiar_string(), *familiar, "{input}");
        }
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse_normalized(&format!("busybox@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(r.familiar_string(), format!("busybox@sha256:{HEX}"));
        // A digest suppresses the default tag.
        assert_eq!(r.clone().with_default_tag(), r);

        let r = Reference::parse_normalized(&format!("busybox:1@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert!(r.digest().is_some());
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.familiar_name(), "busybox");

        let r = Reference::parse_normalized("busybox")
            .unwrap()
            .with_default_tag();
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            ":tag",
            "busybox:",
            "busybox:tag with space",
            "-busybox",
            "busybox-",
            "a//b",
            "a/b/",
            "busy..box",
            "busybox@sha256:abc",
            "busybox@md5:abc",
            "host:port/x",
            "host:5000/x:-bad",
            "UPPER.example.com/a:b:c",
            "a_b.com/x",
        ] {
            let err = Reference::parse_normalized(bad).expect_err(bad);
            assert!(
                err.to_string().starts_with("invalid reference format"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn uppercase_gets_dockers_message() {
        let err = Reference::parse_normalized("Busybox").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        // An uppercase first component is a registry host, which may have capitals.
        assert!(Reference::parse_normalized("Example.com/app").is_ok());
    }

    #[test]
    fn bare_hex_ids_are_not_names() {
        let err = Reference::parse_normalized(HEX).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot specify 64-byte hexadecimal strings")
        );
    }

    #[test]
    fn tag_targets_refuse_digests() {
        assert!(Reference::parse_tag_target(&format!("a@sha256:{HEX}")).is_err());
        assert_eq!(
            Reference::parse_tag_target("a").unwrap().to_string(),
            "docker.io/library/a:latest"
        );
    }
}
