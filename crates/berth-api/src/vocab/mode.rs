//! Namespace modes (`PidMode`, `IpcMode`, `UTSMode`, `CgroupnsMode`) and network modes
//! (`NetworkMode`). Both are strings on the wire; these types are what the daemon matches on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InvalidValue;

const CONTAINER_PREFIX: &str = "container:";

/// A namespace mode: whose namespace a container's process joins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NamespaceMode {
    /// Not set (`""`): the daemon's default for the namespace.
    #[default]
    Default,
    /// `private`: a namespace of its own.
    Private,
    /// `host`: the host's.
    Host,
    /// `shareable` (IPC): its own, which other containers may join.
    Shareable,
    /// `none` (IPC): its own, without `/dev/shm`.
    None,
    /// `container:<name or id>`: another container's.
    Container(String),
}

impl NamespaceMode {
    /// Parses a mode. `container:` needs a target; other words are not modes.
    pub fn parse(s: &str) -> Result<NamespaceMode, InvalidValue> {
        Ok(match s {
            "" => NamespaceMode::Default,
            "private" => NamespaceMode::Private,
            "host" => NamespaceMode::Host,
            "shareable" => NamespaceMode::Shareable,
            "none" => NamespaceMode::None,
            _ => match s.strip_prefix(CONTAINER_PREFIX) {
                Some(target) if !target.is_empty() => NamespaceMode::Container(target.into()),
                _ => return Err(InvalidValue(format!("invalid namespace mode: {s}"))),
            },
        })
    }

    /// The container whose namespace is joined, for `container:<target>`.
    pub fn container(&self) -> Option<&str> {
        match self {
            NamespaceMode::Container(t) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for NamespaceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceMode::Default => Ok(()),
            NamespaceMode::Private => f.write_str("private"),
            NamespaceMode::Host => f.write_str("host"),
            NamespaceMode::Shareable => f.write_str("shareable"),
            NamespaceMode::None => f.write_str("none"),
            NamespaceMode::Container(t) => write!(f, "{CONTAINER_PREFIX}{t}"),
        }
    }
}

impl FromStr for NamespaceMode {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NamespaceMode::parse(s)
    }
}

impl Serialize for NamespaceMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NamespaceMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NamespaceMode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A network mode (`HostConfig.NetworkMode`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Not set (`""`): the default bridge.
    #[default]
    Unset,
    /// `default`: the default bridge (kept apart from [`NetworkMode::Unset`] so that the
    /// string given is the string shown).
    Default,
    /// `bridge`: the default bridge network.
    Bridge,
    /// `host`: the host's network namespace.
    Host,
    /// `none`: a namespace with loopback only.
    None,
    /// `container:<name or id>`: another container's namespace (the target may be empty in
    /// a request: looking it up fails then).
    Container(String),
    /// A user-defined network, by name or id.
    Named(String),
}

impl NetworkMode {
    /// Parses a mode; every string is one (a name not otherwise known is a network's).
    pub fn parse(s: &str) -> NetworkMode {
        match s {
            "" => NetworkMode::Unset,
            "default" => NetworkMode::Default,
            "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            _ => match s.strip_prefix(CONTAINER_PREFIX) {
                Some(target) => NetworkMode::Container(target.into()),
                None => NetworkMode::Named(s.into()),
            },
        }
    }

    /// The container whose network namespace is joined, for `container:<target>`.
    pub fn container(&self) -> Option<&str> {
        match self {
            NetworkMode::Container(t) => Some(t),
            _ => None,
        }
    }

    /// Whether this is the daemon's default (`""` or `default`): the default bridge.
    pub fn is_default(&self) -> bool {
        matches!(self, NetworkMode::Unset | NetworkMode::Default)
    }

    /// Whether the container uses the host's network.
    pub fn is_host(&self) -> bool {
        *self == NetworkMode::Host
    }

    /// Whether this is a user-defined network (where names resolve through the embedded DNS).
    pub fn is_user_defined(&self) -> bool {
        matches!(self, NetworkMode::Named(_))
    }

    /// Whether the container has no endpoints of its own (`host`, `none`, `container:<id>`):
    /// it cannot join other networks, nor publish ports of its own.
    pub fn shares_netns(&self) -> bool {
        matches!(
            self,
            NetworkMode::Host | NetworkMode::None | NetworkMode::Container(_)
        )
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkMode::Unset => Ok(()),
            NetworkMode::Default => f.write_str("default"),
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Container(t) => write!(f, "{CONTAINER_PREFIX}{t}"),
            NetworkMode::Named(n) => f.write_str(n),
        }
    }
}

impl From<&str> for NetworkMode {
    fn from(s: &str) -> Self {
        NetworkMode::parse(s)
    }
}

impl Serialize for NetworkMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetworkMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(NetworkMode::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_modes_parse_and_keep_their_spelling() {
        for s in ["", "private", "host", "shareable", "none", "container:web"] {
            let m = NamespaceMode::parse(s).unwrap();
            assert_eq!(m.to_string(), s);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<NamespaceMode>(&json).unwrap(), m);
        }
        assert_eq!(
            NamespaceMode::parse("container:abc").unwrap().container(),
            Some("abc")
        );
        assert_eq!(
            NamespaceMode::parse("container:").unwrap_err().to_string(),
            "invalid namespace mode: container:"
        );
        assert!(NamespaceMode::parse("sideways").is_err());
    }

    #[test]
    fn network_modes_parse_every_string() {
        assert!(NetworkMode::parse("").is_default());
        assert!(NetworkMode::parse("default").is_default());
        assert!(!NetworkMode::parse("bridge").is_default());
        assert!(NetworkMode::parse("host").is_host());
        assert_eq!(NetworkMode::parse("container:db").container(), Some("db"));
        assert_eq!(NetworkMode::parse("container:").container(), Some(""));
        assert!(NetworkMode::parse("backend").is_user_defined());
        assert!(!NetworkMode::parse("bridge").is_user_defined());
        for s in ["host", "none", "container:db", "container:"] {
            assert!(NetworkMode::parse(s).shares_netns(), "{s}");
        }
        for s in ["", "default", "bridge", "backend"] {
            assert!(!NetworkMode::parse(s).shares_netns(), "{s}");
        }
        for s in [
            "",
            "default",
            "bridge",
            "host",
            "none",
            "container:db",
            "backend",
        ] {
            assert_eq!(NetworkMode::parse(s).to_string(), s);
            let json = serde_json::to_string(&NetworkMode::parse(s)).unwrap();
            assert_eq!(
                serde_json::from_str::<NetworkMode>(&json).unwrap(),
                NetworkMode::parse(s)
            );
        }
    }

    /// `HostConfig.NetworkMode` is typed, with the string given kept on the wire and in
    /// records (`""` and `default` stay apart).
    #[test]
    fn a_host_configs_network_mode_keeps_its_string() {
        for s in ["", "default", "bridge", "none", "container:db", "backend"] {
            let h: crate::models::HostConfig =
                serde_json::from_str(&format!(r#"{{"NetworkMode":"{s}"}}"#)).unwrap();
            assert_eq!(h.network_mode, NetworkMode::parse(s));
            assert_eq!(serde_json::to_value(&h).unwrap()["NetworkMode"], s);
        }
    }
}
