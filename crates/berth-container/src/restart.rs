//! Restart policies (`no`, `always`, `unless-stopped`, `on-failure[:N]`) and Docker's back-off
//! between restarts: 100 ms, doubling after each quick exit, back to 100 ms once a container
//! stayed up for 10 s, never more than a minute.

use std::time::Duration;

use berth_api::models::RestartPolicy;

use crate::error::{Result, invalid};

/// First delay before a restart.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between restarts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A container that stayed up this long resets the back-off.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// A validated restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    No,
    Always,
    UnlessStopped,
    /// `on-failure` with its maximum retry count (0: unlimited).
    OnFailure(i64),
}

impl Policy {
    /// Validates a HostConfig restart policy with Docker's messages.
    pub fn parse(p: &RestartPolicy) -> Result<Policy> {
        let policy = match p.name.as_str() {
            "" | "no" => Policy::No,
            "always" => Policy::Always,
            "unless-stopped" => Policy::UnlessStopped,
            "on-failure" => Policy::OnFailure(p.maximum_retry_count),
            other => {
                return Err(invalid(format!(
                    "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                )));
            }
        };
        if p.maximum_retry_count < 0 {
            return Err(invalid(
                "invalid restart policy: maximum retry count can't be negative",
            ));
        }
        if p.maximum_retry_count > 0 && !matches!(policy, Policy::OnFailure(_)) {
            return Err(invalid(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            ));
        }
        Ok(policy)
    }

    /// Whether a container that just exited with `exit_code` should be restarted.
    /// `restart_count` counts the restarts done so far.
    pub fn should_restart(
        self,
        exit_code: i64,
        manually_stopped: bool,
        restart_count: i64,
    ) -> bool {
        if manually_stopped {
            return false;
        }
        match self {
            Policy::No => false,
            Policy::Always | Policy::UnlessStopped => true,
            Policy::OnFailure(max) => exit_code != 0 && (max == 0 || restart_count < max),
        }
    }

    /// Whether the container comes back when the daemon starts.
    pub fn restart_on_daemon_start(
        self,
        exit_code: i64,
        manually_stopped: bool,
        restart_count: i64,
    ) -> bool {
        match self {
            Policy::Always => true,
            _ => self.should_restart(exit_code, manually_stopped, restart_count),
        }
    }
}

/// The delay before the next restart, given the previous delay and how long the container
/// ran this time.
pub fn next_backoff(previous: Option<Duration>, ran_for: Duration) -> Duration {
    match previous {
        _ if ran_for >= BACKOFF_RESET_AFTER => BACKOFF_START,
        None => BACKOFF_START,
        Some(p) => (p * 2).min(BACKOFF_MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(name: &str, n: i64) -> RestartPolicy {
        RestartPolicy {
            name: name.into(),
            maximum_retry_count: n,
        }
    }

    #[test]
    fn parses_and_validates() {
        assert_eq!(Policy::parse(&rp("", 0)).unwrap(), Policy::No);
        assert_eq!(Policy::parse(&rp("always", 0)).unwrap(), Policy::Always);
        assert_eq!(
            Policy::parse(&rp("on-failure", 3)).unwrap(),
            Policy::OnFailure(3)
        );
        assert_eq!(
            Policy::parse(&rp("sometimes", 0)).unwrap_err().to_string(),
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        );
        assert_eq!(
            Policy::parse(&rp("always", 2)).unwrap_err().to_string(),
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        );
        assert!(Policy::parse(&rp("on-failure", -1)).is_err());
    }

    #[test]
    fn restart_decisions() {
        assert!(!Policy::No.should_restart(1, false, 0));
        assert!(Policy::Always.should_restart(0, false, 5));
        assert!(!Policy::Always.should_restart(0, true, 0));
        assert!(!Policy::OnFailure(0).should_restart(0, false, 0));
        assert!(Policy::OnFailure(2).should_restart(1, false, 1));
        assert!(!Policy::OnFailure(2).should_restart(1, false, 2));
        assert!(Policy::OnFailure(0).should_restart(1, false, 100));
        assert!(Policy::Always.restart_on_daemon_start(0, true, 0));
        assert!(!Policy::UnlessStopped.restart_on_daemon_start(0, true, 0));
        assert!(Policy::UnlessStopped.restart_on_daemon_start(0, false, 0));
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let quick = Duration::from_millis(50);
        let mut d = next_backoff(None, quick);
        assert_eq!(d, Duration::from_millis(100));
        d = next_backoff(Some(d), quick);
        assert_eq!(d, Duration::from_millis(200));
        d = next_backoff(Some(d), quick);
        assert_eq!(d, Duration::from_millis(400));
        assert_eq!(
            next_backoff(Some(d), Duration::from_secs(11)),
            BACKOFF_START
        );
        assert_eq!(
            next_backoff(Some(Duration::from_secs(50)), quick),
            BACKOFF_MAX
        );
    }
}
