//! Log drivers (`HostConfig.LogConfig.Type`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InvalidValue;

/// A log driver Berth has. Its options are checked by the runtime's log writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogDriver {
    /// `json-file`, the default (also for an empty type).
    #[default]
    JsonFile,
    /// `local`: the compact file format.
    Local,
    /// `none`: the output is dropped; `logs` cannot read it.
    None,
}

impl LogDriver {
    /// Parses a driver name with dockerd's message for one it does not have.
    pub fn parse(s: &str) -> Result<LogDriver, InvalidValue> {
        match s {
            "" | "json-file" => Ok(LogDriver::JsonFile),
            "local" => Ok(LogDriver::Local),
            "none" => Ok(LogDriver::None),
            other => Err(InvalidValue(format!(
                "logger: no log driver named '{other}' is registered"
            ))),
        }
    }

    /// Docker's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogDriver::JsonFile => "json-file",
            LogDriver::Local => "local",
            LogDriver::None => "none",
        }
    }

    /// Whether `logs` and attach can read what it wrote.
    pub fn readable(self) -> bool {
        self != LogDriver::None
    }
}

impl fmt::Display for LogDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogDriver {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogDriver::parse(s)
    }
}

impl Serialize for LogDriver {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogDriver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        LogDriver::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_parse_with_dockerds_message() {
        assert_eq!(LogDriver::parse("").unwrap(), LogDriver::JsonFile);
        for d in [LogDriver::JsonFile, LogDriver::Local, LogDriver::None] {
            assert_eq!(LogDriver::parse(d.as_str()).unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<LogDriver>(&json).unwrap(), d);
        }
        assert!(!LogDriver::None.readable());
        assert_eq!(
            LogDriver::parse("syslog").unwrap_err().to_string(),
            "logger: no log driver named 'syslog' is registered"
        );
    }
}
