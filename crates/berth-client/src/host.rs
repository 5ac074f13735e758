//! Daemon addresses: `unix:///run/berth/berth.sock`, `tcp://127.0.0.1:2375`.

use std::fmt;
use std::path::PathBuf;

use crate::Error;

/// The default daemon address.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// Where the daemon listens. TLS over tcp is a later addition: it will be a field of `Tcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl Host {
    /// Parses docker's host syntax. `tcp://host` without a port gets 2375, as Docker does for
    /// plain HTTP; `http://` is accepted as a synonym of `tcp://`.
    pub fn parse(text: &str) -> Result<Host, Error> {
        let invalid = |reason: &str| Error::InvalidHost {
            host: text.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = text.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid("empty socket path"));
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        let rest = text
            .strip_prefix("tcp://")
            .or_else(|| text.strip_prefix("http://"));
        if let Some(rest) = rest {
            let addr = rest.trim_end_matches('/');
            if addr.is_empty() {
                return Err(invalid("empty address"));
            }
            if addr.contains('/') {
                return Err(invalid("paths are not supported in tcp addresses"));
            }
            let has_port = match addr.rfind(':') {
                Some(i) => !addr.ends_with(']') && addr[i + 1..].parse::<u16>().is_ok(),
                None => false,
            };
            return Ok(Host::Tcp(if has_port {
                addr.to_string()
            } else {
                format!("{addr}:2375")
            }));
        }
        if text.starts_with('/') {
            return Ok(Host::Unix(PathBuf::from(text)));
        }
        Err(invalid("unsupported protocol (use unix:// or tcp://)"))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_host_syntax() {
        assert_eq!(
            Host::parse("unix:///run/berth/berth.sock").unwrap(),
            Host::Unix("/run/berth/berth.sock".into())
        );
        assert_eq!(
            Host::parse("tcp://127.0.0.1:2375").unwrap(),
            Host::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            Host::parse("tcp://example").unwrap(),
            Host::Tcp("example:2375".into())
        );
        assert!(Host::parse("ftp://x").is_err());
        assert!(Host::parse("unix://").is_err());
        assert_eq!(
            Host::parse("unix:///tmp/x.sock").unwrap().to_string(),
            "unix:///tmp/x.sock"
        );
    }
}
