//! Restart policies: `no`, `always`, `unless-stopped`, `on-failure[:N]`.

use std::fmt;

use super::InvalidValue;
use crate::models::RestartPolicy as ApiRestartPolicy;

/// A validated restart policy. The wire form is the API's `{"Name", "MaximumRetryCount"}`
/// ([`RestartPolicy::parse`] and [`RestartPolicy::to_api`]); `Display` gives Docker's
/// `name[:count]` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// `on-failure` with its maximum retry count (0: unlimited).
    OnFailure(i64),
}

impl RestartPolicy {
    /// Validates a HostConfig restart policy, with dockerd's messages.
    pub fn parse(p: &ApiRestartPolicy) -> Result<RestartPolicy, InvalidValue> {
        let invalid = |m: &str| InvalidValue(format!("invalid restart policy: {m}"));
        let policy = match p.name.as_str() {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(p.maximum_retry_count),
            other => {
                return Err(invalid(&format!(
                    "unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                )));
            }
        };
        if p.maximum_retry_count < 0 {
            return Err(invalid("maximum retry count can't be negative"));
        }
        if p.maximum_retry_count > 0 && !matches!(policy, RestartPolicy::OnFailure(_)) {
            return Err(invalid(
                "maximum retry count can only be used with 'on-failure'",
            ));
        }
        Ok(policy)
    }

    /// The policy of a stored record, checked when it was created: a record from an older
    /// daemon that no longer parses never restarts.
    pub fn of_record(p: &ApiRestartPolicy) -> RestartPolicy {
        RestartPolicy::parse(p).unwrap_or(RestartPolicy::No)
    }

    /// Docker's name for the policy.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure(_) => "on-failure",
        }
    }

    /// The API's form.
    pub fn to_api(self) -> ApiRestartPolicy {
        ApiRestartPolicy {
            name: self.name().into(),
            maximum_retry_count: match self {
                RestartPolicy::OnFailure(n) => n,
                _ => 0,
            },
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::OnFailure(n) if *n > 0 => write!(f, "on-failure:{n}"),
            p => f.write_str(p.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(name: &str, n: i64) -> ApiRestartPolicy {
        ApiRestartPolicy {
            name: name.into(),
            maximum_retry_count: n,
        }
    }

    #[test]
    fn policies_parse_with_dockerds_messages() {
        assert_eq!(RestartPolicy::parse(&rp("", 0)).unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse(&rp("on-failure", 3)).unwrap(),
            RestartPolicy::OnFailure(3)
        );
        assert_eq!(
            RestartPolicy::parse(&rp("sometimes", 0))
                .unwrap_err()
                .to_string(),
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        );
        assert!(RestartPolicy::parse(&rp("always", 2)).is_err());
        assert!(RestartPolicy::parse(&rp("on-failure", -1)).is_err());
        assert_eq!(
            RestartPolicy::of_record(&rp("sometimes", 0)),
            RestartPolicy::No
        );
    }

    #[test]
    fn the_api_form_round_trips() {
        for p in [
            RestartPolicy::No,
            RestartPolicy::Always,
            RestartPolicy::UnlessStopped,
            RestartPolicy::OnFailure(0),
            RestartPolicy::OnFailure(5),
        ] {
            assert_eq!(RestartPolicy::parse(&p.to_api()).unwrap(), p);
        }
        assert_eq!(RestartPolicy::OnFailure(5).to_string(), "on-failure:5");
        assert_eq!(RestartPolicy::UnlessStopped.to_string(), "unless-stopped");
    }
}
