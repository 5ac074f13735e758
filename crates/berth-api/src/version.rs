//! API versions: which the daemon claims, and how a request's `/v1.NN/` prefix is checked.

use std::cmp::Ordering;
use std::fmt;

use crate::ApiError;

/// The newest API version Berth implements (what docker CLI 28.3+ sends).
pub const MAX_API_VERSION: ApiVersion = ApiVersion {
    major: 1,
    minor: 51,
};
/// The oldest API version Berth still serves, as Docker 28 does.
pub const MIN_API_VERSION: ApiVersion = ApiVersion {
    major: 1,
    minor: 24,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    /// Parses `1.51` (no `v`).
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (major, minor) = text.split_once('.')?;
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    /// Checks a version a client asked for in its path, with Docker's messages.
    pub fn check_supported(self) -> Result<ApiVersion, ApiError> {
        if self > MAX_API_VERSION {
            return Err(ApiError::invalid(format!(
                "client version {self} is too new. Maximum supported API version is {MAX_API_VERSION}"
            )));
        }
        if self < MIN_API_VERSION {
            return Err(ApiError::invalid(format!(
                "client version {self} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
            )));
        }
        Ok(self)
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= ApiVersion { major, minor }
    }
}

impl PartialOrd for ApiVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ApiVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor).cmp(&(other.major, other.minor))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Splits a request path into its version prefix and the rest: `/v1.41/images/json` →
/// `(Some("1.41"), "/images/json")`; unversioned paths pass through.
pub fn split_version_prefix(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let candidate = &rest[..end];
        if !candidate.is_empty() && candidate.chars().all(|c| c.is_ascii_digit() || c == '.') {
            let remainder = &rest[end..];
            return (
                Some(candidate),
                if remainder.is_empty() { "/" } else { remainder },
            );
        }
    }
    (None, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_split() {
        assert_eq!(
            split_version_prefix("/v1.41/images/json"),
            (Some("1.41"), "/images/json")
        );
        assert_eq!(split_version_prefix("/images/json"), (None, "/images/json"));
        assert_eq!(split_version_prefix("/version"), (None, "/version"));
        assert_eq!(
            split_version_prefix("/v1.51/_ping"),
            (Some("1.51"), "/_ping")
        );
    }

    #[test]
    fn bounds_use_dockers_messages() {
        let too_new = ApiVersion::parse("1.52")
            .unwrap()
            .check_supported()
            .unwrap_err();
        assert_eq!(
            too_new.message,
            "client version 1.52 is too new. Maximum supported API version is 1.51"
        );
        assert!(
            ApiVersion::parse("1.23")
                .unwrap()
                .check_supported()
                .is_err()
        );
        assert!(ApiVersion::parse("1.24").unwrap().check_supported().is_ok());
        assert!(ApiVersion::parse("1.5").unwrap() < ApiVersion::parse("1.24").unwrap());
    }
}
