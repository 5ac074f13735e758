//! Daemon addresses: `unix:///run/berth/berth.sock`, `tcp://127.0.0.1:2375`,
//! `ssh://user@host:22`.

use std::fmt;
use std::path::PathBuf;

use crate::Error;

/// The default daemon address.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// Where the daemon listens. TLS over tcp is the client's ([`crate::Client::with_tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
    /// A daemon reached by running `ssh ... berth system dial-stdio` on its host.
    Ssh(SshSpec),
}

/// `ssh://[user@]host[:port][/socket/path]`, docker's ssh host syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The daemon's socket on the remote host, when not its default.
    pub socket: Option<String>,
}

impl SshSpec {
    /// The `ssh` arguments that run `remote_command` on the host, as the docker CLI builds
    /// them: a connect timeout, no pseudo-terminal (no login shell), `-l`/`-p`, then `--` so
    /// a host name cannot be taken for an option.
    pub fn ssh_args(&self, remote_command: &str) -> Vec<String> {
        let mut args: Vec<String> = vec!["-o".into(), "ConnectTimeout=30".into(), "-T".into()];
        if let Some(user) = &self.user {
            args.extend(["-l".into(), user.clone()]);
        }
        if let Some(port) = self.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        args.extend(["--".into(), self.host.clone(), remote_command.to_string()]);
        if let Some(socket) = &self.socket {
            args.push(format!("--host=unix://{socket}"));
        }
        args.extend(["system".into(), "dial-stdio".into()]);
        args
    }
}

impl Host {
    /// Parses docker's host syntax. `tcp://host` without a port gets 2375, as Docker does for
    /// plain HTTP; `http://` is accepted as a synonym of `tcp://`.
    pub fn parse(text: &str) -> Result<Host, Error> {
        Host::parse_for(text, false)
    }

    /// [`Host::parse`], with docker's default port for TLS (2376) when `tls` is on.
    pub fn parse_for(text: &str, tls: bool) -> Result<Host, Error> {
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
            let port = if tls { 2376 } else { 2375 };
            return Ok(Host::Tcp(if has_port {
                addr.to_string()
            } else {
                format!("{addr}:{port}")
            }));
        }
        if let Some(rest) = text.strip_prefix("ssh://") {
            return parse_ssh(rest)
                .map(Host::Ssh)
                .map_err(|reason| invalid(&reason));
        }
        if text.starts_with('/') {
            return Ok(Host::Unix(PathBuf::from(text)));
        }
        Err(invalid(
            "unsupported protocol (use unix://, tcp:// or ssh://)",
        ))
    }
}

/// `[user@]host[:port][/path]`, refusing what docker refuses (a password, a query).
fn parse_ssh(rest: &str) -> Result<SshSpec, String> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if rest.contains('?') || rest.contains('#') {
        return Err("query parameters and fragments are not allowed".into());
    }
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((user, hostport)) => {
            if user.contains(':') {
                return Err("plain-text password is not supported".into());
            }
            (Some(user.to_string()).filter(|u| !u.is_empty()), hostport)
        }
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("hostname is empty".into());
    }
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| format!("invalid port {p:?}")))
        .transpose()?;
    let socket = Some(path.to_string()).filter(|p| !p.trim_matches('/').is_empty());
    Ok(SshSpec {
        user,
        host: host.to_string(),
        port,
        socket,
    })
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp(addr) => write!(f, "tcp://{addr}"),
            Host::Ssh(spec) => {
                f.write_str("ssh://")?;
                if let Some(user) = &spec.user {
                    write!(f, "{user}@")?;
                }
                if spec.host.contains(':') {
                    write!(f, "[{}]", spec.host)?;
                } else {
                    f.write_str(&spec.host)?;
                }
                if let Some(port) = spec.port {
                    write!(f, ":{port}")?;
                }
                f.write_str(spec.socket.as_deref().unwrap_or(""))
            }
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
        assert_eq!(
            Host::parse_for("tcp://example", true).unwrap(),
            Host::Tcp("example:2376".into())
        );
    }

    #[test]
    fn parses_ssh_hosts_and_builds_docker_ssh_arguments() {
        let Host::Ssh(spec) = Host::parse("ssh://me@box.lan:2222").unwrap() else {
            panic!("not ssh");
        };
        assert_eq!(spec.user.as_deref(), Some("me"));
        assert_eq!(spec.port, Some(2222));
        assert_eq!(
            spec.ssh_args("berth").join(" "),
            "-o ConnectTimeout=30 -T -l me -p 2222 -- box.lan berth system dial-stdio"
        );
        let Host::Ssh(spec) = Host::parse("ssh://box/run/b.sock").unwrap() else {
            panic!("not ssh");
        };
        assert_eq!(
            spec.ssh_args("berth").join(" "),
            "-o ConnectTimeout=30 -T -- box berth --host=unix:///run/b.sock system dial-stdio"
        );
        assert_eq!(
            Host::parse("ssh://me@[::1]:22").unwrap().to_string(),
            "ssh://me@[::1]:22"
        );
        assert!(Host::parse("ssh://me:pw@box").is_err());
        assert!(Host::parse("ssh://").is_err());
        assert!(Host::parse("ssh://box?x=1").is_err());
    }
}
