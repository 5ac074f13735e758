//! Security options (`HostConfig.SecurityOpt`, `--security-opt`), checked at create as dockerd
//! checks them (`parseSecurityOpt`), so that a bad one fails the create, not a later start.

use std::fmt;

use super::InvalidValue;

/// One security option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    /// `no-new-privileges[=bool]`.
    NoNewPrivileges(bool),
    /// `writable-cgroups[=bool]`.
    WritableCgroups(bool),
    /// `seccomp=unconfined`, or a profile (its JSON, as the CLI sends it).
    Seccomp(String),
    /// `apparmor=<profile>` (accepted; Berth applies no AppArmor profile).
    Apparmor(String),
    /// `label=<opt>` or `disable` (accepted; Berth applies no SELinux label).
    Label(String),
    /// `systempaths=unconfined`: the CLI turns it into empty masked and read-only paths.
    SystemPaths(String),
}

impl SecurityOpt {
    /// Parses one option with dockerd's messages (`key=value`, or the deprecated `key:value`).
    pub fn parse(opt: &str) -> Result<SecurityOpt, InvalidValue> {
        match opt {
            "no-new-privileges" => return Ok(SecurityOpt::NoNewPrivileges(true)),
            "writable-cgroups" => return Ok(SecurityOpt::WritableCgroups(true)),
            "disable" => return Ok(SecurityOpt::Label("disable".into())),
            _ => {}
        }
        let split = if opt.contains('=') {
            opt.split_once('=')
        } else {
            opt.split_once(':')
        };
        let Some((k, v)) = split else {
            return Err(InvalidValue(format!("invalid --security-opt 1: {opt:?}")));
        };
        let invalid = || InvalidValue(format!("invalid --security-opt 2: {opt:?}"));
        Ok(match k {
            "label" => SecurityOpt::Label(v.into()),
            "apparmor" => SecurityOpt::Apparmor(v.into()),
            "seccomp" => SecurityOpt::Seccomp(v.into()),
            "systempaths" => SecurityOpt::SystemPaths(v.into()),
            "no-new-privileges" => SecurityOpt::NoNewPrivileges(go_bool(v).ok_or_else(invalid)?),
            "writable-cgroups" => SecurityOpt::WritableCgroups(go_bool(v).ok_or_else(invalid)?),
            _ => return Err(invalid()),
        })
    }
}

impl fmt::Display for SecurityOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecurityOpt::NoNewPrivileges(b) => write!(f, "no-new-privileges={b}"),
            SecurityOpt::WritableCgroups(b) => write!(f, "writable-cgroups={b}"),
            SecurityOpt::Seccomp(v) => write!(f, "seccomp={v}"),
            SecurityOpt::Apparmor(v) => write!(f, "apparmor={v}"),
            SecurityOpt::Label(v) => write!(f, "label={v}"),
            SecurityOpt::SystemPaths(v) => write!(f, "systempaths={v}"),
        }
    }
}

/// Go's `strconv.ParseBool`, which dockerd uses for these values.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A container's security options, in order (a later option overrides an earlier one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityOpts(pub Vec<SecurityOpt>);

impl SecurityOpts {
    /// Parses every option; the first bad one is the error.
    pub fn parse(opts: &[String]) -> Result<SecurityOpts, InvalidValue> {
        opts.iter()
            .map(|o| SecurityOpt::parse(o))
            .collect::<Result<_, _>>()
            .map(SecurityOpts)
    }

    /// Whether the process may not gain privileges (`no-new-privileges`).
    pub fn no_new_privileges(&self) -> bool {
        self.0
            .iter()
            .rev()
            .find_map(|o| match o {
                SecurityOpt::NoNewPrivileges(b) => Some(*b),
                _ => None,
            })
            .unwrap_or(false)
    }

    /// The seccomp setting (`unconfined` or a profile), when one is given.
    pub fn seccomp(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|o| match o {
            SecurityOpt::Seccomp(v) => Some(v.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<SecurityOpts, InvalidValue> {
        SecurityOpts::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_parse_as_dockerd_parses_them() {
        let o = parse(&["seccomp=unconfined", "no-new-privileges", "label=disable"]).unwrap();
        assert_eq!(o.seccomp(), Some("unconfined"));
        assert!(o.no_new_privileges());
        let o = parse(&["no-new-privileges", "no-new-privileges=false", "seccomp:{}"]).unwrap();
        assert!(!o.no_new_privileges());
        assert_eq!(o.seccomp(), Some("{}"));
        assert_eq!(parse(&[]).unwrap(), SecurityOpts::default());
        assert_eq!(
            SecurityOpt::parse("apparmor=unconfined").unwrap(),
            SecurityOpt::Apparmor("unconfined".into())
        );
        assert_eq!(
            SecurityOpt::parse("systempaths=unconfined")
                .unwrap()
                .to_string(),
            "systempaths=unconfined"
        );
    }

    #[test]
    fn bad_options_get_dockerds_messages() {
        let err = |v: &str| SecurityOpt::parse(v).unwrap_err().to_string();
        assert_eq!(err("foo"), "invalid --security-opt 1: \"foo\"");
        assert_eq!(err("foo=bar"), "invalid --security-opt 2: \"foo=bar\"");
        assert_eq!(
            err("no-new-privileges=maybe"),
            "invalid --security-opt 2: \"no-new-privileges=maybe\""
        );
        assert!(parse(&["seccomp=unconfined", "bogus:1"]).is_err());
    }
}
