//! Content digests as the registry accepts them: `sha256:<64 hex>` and `sha512:<128 hex>`
//! (OCI image spec's registered algorithms), with a hasher for either. berth-reference's
//! `Digest` is sha256 only, the image store's need; a registry must take both.

use std::fmt;

use sha2::Digest as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// A validated digest: a known algorithm and lowercase hex of the right length, so it is safe
/// as a path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a string is not a digest; the HTTP layer answers `DIGEST_INVALID` or, for an
/// algorithm it does not know, `UNSUPPORTED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestParseError {
    Malformed,
    UnknownAlgorithm(String),
}

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, DigestParseError> {
        let (alg, hex) = s.split_once(':').ok_or(DigestParseError::Malformed)?;
        // The OCI grammar: algorithm components of [a-z0-9] joined by [+._-].
        if alg.is_empty()
            || !alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        {
            return Err(DigestParseError::Malformed);
        }
        let algorithm =
            Algorithm::parse(alg).ok_or_else(|| DigestParseError::UnknownAlgorithm(alg.into()))?;
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestParseError::Malformed);
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(bytes);
        h.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

/// A running hash of either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_algorithms_and_refuses_the_rest() {
        let d = Digest::of(Algorithm::Sha512, b"x");
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        let d = Digest::of(Algorithm::Sha256, b"x");
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert_eq!(
            Digest::parse("sha256:../../etc"),
            Err(DigestParseError::Malformed)
        );
        assert_eq!(
            Digest::parse(&format!("sha256:{}", "A".repeat(64))),
            Err(DigestParseError::Malformed)
        );
        assert_eq!(
            Digest::parse(&format!("md5:{}", "a".repeat(32))),
            Err(DigestParseError::UnknownAlgorithm("md5".into()))
        );
        assert_eq!(Digest::parse("sha256"), Err(DigestParseError::Malformed));
    }
}
