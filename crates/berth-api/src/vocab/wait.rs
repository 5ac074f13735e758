//! `POST /containers/{id}/wait?condition=`.

use std::fmt;
use std::str::FromStr;

use super::InvalidValue;

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitCondition {
    /// The container is not running (now, or once its current run ends). The default.
    #[default]
    NotRunning,
    /// The container's next exit, even if it is not running now.
    NextExit,
    /// The container's removal.
    Removed,
}

impl WaitCondition {
    /// Parses the `condition` query parameter (empty: `not-running`).
    pub fn parse(s: &str) -> Result<WaitCondition, InvalidValue> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(InvalidValue(format!("invalid condition: {other:?}"))),
        }
    }

    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitCondition::NotRunning => "not-running",
            WaitCondition::NextExit => "next-exit",
            WaitCondition::Removed => "removed",
        }
    }
}

impl FromStr for WaitCondition {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WaitCondition::parse(s)
    }
}

impl fmt::Display for WaitCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_and_print_as_docker_spells_them() {
        assert_eq!(WaitCondition::parse("").unwrap(), WaitCondition::NotRunning);
        for c in [
            WaitCondition::NotRunning,
            WaitCondition::NextExit,
            WaitCondition::Removed,
        ] {
            assert_eq!(c.to_string().parse::<WaitCondition>().unwrap(), c);
        }
        assert_eq!(
            WaitCondition::parse("soon").unwrap_err().to_string(),
            "invalid condition: \"soon\""
        );
    }
}
